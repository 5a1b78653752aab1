#!/usr/bin/env bash
# TEST TOOLING of mlflow-platform: builds what this project's tests and benchmark run, here; never use
# these binaries to deploy anything real (they report versions ending in +mlflow-platform-test).
#
# Builds the Pulumi engine pieces this project runs with into engine/bin/, from
# Go modules fetched through the Go module proxy (pinned by the go.mod/go.sum
# files beside this script). Idempotent: a binary whose inputs (Go version,
# go.mod/go.sum, sources, flags) are unchanged is not rebuilt.
#
#   engine/build.sh            build what is missing or stale
#   ENGINE_FORCE=1 ...         rebuild everything
#   ENGINE_JOBS=N ...          go build -p N (default: number of CPUs, at most 2)
#   ENGINE_ONLY="cli tls" ...  build a subset (cli, kubernetes, random, tls, kube, kwok, minio, mc, gateway-api)
#
# Uses the normal Go caches (GOMODCACHE, GOCACHE); point them elsewhere to
# measure a cold build.
set -euo pipefail

ENGINE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${ENGINE_BIN:-${ENGINE_DIR}/bin}"   # ENGINE_BIN=DIR builds elsewhere
mkdir -p "${BIN}"

# Pinned versions (must match the go.mod files).
PULUMI_VERSION=v3.274.1                                     # pkg/v3 + sdk/v3 (CLI, language host SDK)
KUBERNETES_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199 # provider/v4 at tag v4.25.0
KUBERNETES_VERSION=4.25.0
# Every Pulumi binary built here reports its version with this build metadata (semver `+...`: ignored
# when versions are compared, so the SDKs' requested versions still match), so that none can be
# mistaken for an upstream release: the CLI and the kubernetes provider (upstream code), our own
# language host, and our native re-implementations of the bridged random/tls providers (which report
# the SDK version they are written against).
TEST_BUILD=mlflow-platform-test
PULUMI_REPORTED_VERSION="${PULUMI_VERSION}+${TEST_BUILD}"
KUBERNETES_REPORTED_VERSION="${KUBERNETES_VERSION}+${TEST_BUILD}"
RANDOM_VERSION="4.21.4+${TEST_BUILD}"
TLS_VERSION="5.6.2+${TEST_BUILD}"

export GOTOOLCHAIN=local
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0
JOBS="${ENGINE_JOBS:-$(n=$(nproc 2>/dev/null || echo 2); [ "$n" -gt 2 ] && n=2; echo "$n")}"
ONLY=" ${ENGINE_ONLY:-cli kubernetes random tls kube kwok minio mc gateway-api} "

log() { printf '[engine/build] %s\n' "$*" >&2; }

# stamp NAME FILES... : prints a digest of everything the binary depends on.
stamp() {
  local name=$1; shift
  {
    go version
    echo "$name $PULUMI_REPORTED_VERSION $KUBERNETES_MODULE_VERSION $KUBERNETES_REPORTED_VERSION $RANDOM_VERSION $TLS_VERSION"
    cat "${ENGINE_DIR}/build.sh"
    for f in "$@"; do [ -d "$f" ] && find "$f" -name '*.go' -print0 | sort -z | xargs -0 cat || cat "$f"; done
  } | sha256sum | cut -d' ' -f1
}

# up_to_date NAME DIGEST OUTPUTS... : true when every output exists and was built with DIGEST.
up_to_date() {
  local name=$1 digest=$2; shift 2
  [ "${ENGINE_FORCE:-0}" = 1 ] && return 1
  [ -f "${BIN}/.stamp-${name}" ] && [ "$(cat "${BIN}/.stamp-${name}")" = "$digest" ] || return 1
  for o in "$@"; do [ -x "${BIN}/$o" ] || return 1; done
}

timed() { local t0=$SECONDS; "$@"; log "  ... took $((SECONDS - t0))s"; }

build_cli() {
  cd "${ENGINE_DIR}/cli"
  local digest; digest=$(stamp cli go.mod go.sum pulumi-language-python)
  if up_to_date cli "$digest" pulumi pulumi-language-python pulumi-language-python-exec; then
    log "cli: up to date (pulumi ${PULUMI_REPORTED_VERSION})"; return
  fi
  # The CLI and our language host (on the same sdk/v3 version package) both report PULUMI_REPORTED_VERSION.
  local ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${PULUMI_REPORTED_VERSION}"
  log "cli: building pulumi ${PULUMI_REPORTED_VERSION}"
  timed go build -p "$JOBS" -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" \
    -o "${BIN}/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  log "cli: building pulumi-language-python"
  timed go build -p "$JOBS" -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" \
    -o "${BIN}/pulumi-language-python" ./pulumi-language-python
  # The language host runs programs through this script, shipped in the sdk/v3 module.
  go mod download github.com/pulumi/pulumi/sdk/v3
  local sdkdir; sdkdir=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  install -m 0755 "${sdkdir}/python/cmd/pulumi-language-python-exec" "${BIN}/pulumi-language-python-exec"
  echo "$digest" > "${BIN}/.stamp-cli"
}

build_kubernetes() {
  cd "${ENGINE_DIR}/plugins/kubernetes"
  local digest; digest=$(stamp kubernetes go.mod go.sum main.go)
  if up_to_date kubernetes "$digest" pulumi-resource-kubernetes; then
    log "kubernetes: up to date (${KUBERNETES_REPORTED_VERSION})"; return
  fi
  # The provider embeds its schema; upstream generates the embedded copies from
  # the schema.json/terraform-mapping.json shipped in the module: do the same.
  go mod download github.com/pulumi/pulumi-kubernetes/provider/v4
  local moddir; moddir=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
  python3 - "${moddir}/cmd/pulumi-resource-kubernetes" "${KUBERNETES_REPORTED_VERSION}" <<'PY'
import json, os, sys
src, version = sys.argv[1], sys.argv[2]
schema = json.load(open(src + "/schema.json"))
schema["version"] = version
mapping = json.load(open(src + "/terraform-mapping.json"))
for name, data in (("schema-embed.json", schema), ("terraform-mapping-embed.json", mapping)):
    text = json.dumps(data, separators=(",", ":"))
    try:
        if open(name).read() == text:
            continue
    except OSError:
        pass
    with open(name + ".tmp", "w") as f:
        f.write(text)
    os.replace(name + ".tmp", name)
PY
  log "kubernetes: building pulumi-resource-kubernetes ${KUBERNETES_REPORTED_VERSION} (${KUBERNETES_MODULE_VERSION})"
  timed go build -p "$JOBS" -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${KUBERNETES_REPORTED_VERSION}" \
    -o "${BIN}/pulumi-resource-kubernetes" .
  echo "$digest" > "${BIN}/.stamp-kubernetes"
}

build_native() { # NAME VERSION
  local name=$1 version=$2
  cd "${ENGINE_DIR}/plugins/native"
  local digest; digest=$(stamp "$name" go.mod go.sum internal "pulumi-resource-${name}")
  if up_to_date "$name" "$digest" "pulumi-resource-${name}"; then
    log "${name}: up to date (${version})"; return
  fi
  log "${name}: building pulumi-resource-${name} ${version}"
  timed go build -p "$JOBS" -trimpath -ldflags "-s -w -X main.version=${version}" \
    -o "${BIN}/pulumi-resource-${name}" "./pulumi-resource-${name}"
  echo "$digest" > "${BIN}/.stamp-${name}"
}

# --- local Kubernetes control plane (tools/local_cluster.py): wrapper modules kube/ and kwok/ ---
KUBE_VERSION=v1.36.3          # k8s.io/kubernetes; its staging modules at v0.36.3 (kube/go.mod replaces)
ETCD_VERSION=v3.6.8           # go.etcd.io/etcd/server/v3, as k8s.io/kubernetes v1.36.3 requires
KWOK_VERSION=v0.8.0           # sigs.k8s.io/kwok
KWOK_STAGES="node/fast node/heartbeat-with-lease pod/fast volume/fast"  # kustomize/stage/<dir> in the module

build_kube() {
  cd "${ENGINE_DIR}/kube"
  local digest; digest=$(stamp "kube ${KUBE_VERSION} ${ETCD_VERSION}" go.mod go.sum)
  if up_to_date kube "$digest" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; then
    log "kube: up to date (kubernetes ${KUBE_VERSION}, etcd ${ETCD_VERSION})"; return
  fi
  local minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
  local major=${KUBE_VERSION#v}; major=${major%%.*}
  local v ldflags="-s -w"
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${v}.gitVersion=${KUBE_VERSION} -X ${v}.gitMajor=${major} -X ${v}.gitMinor=${minor}"
    ldflags+=" -X ${v}.gitTreeState=clean -X ${v}.buildDate=1970-01-01T00:00:00Z"
  done
  local out; out=$(mktemp -d "${BIN}/.kube.XXXXXX")
  log "kube: building kube-apiserver kube-controller-manager kube-scheduler kubectl ${KUBE_VERSION}"
  timed go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "${out}/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  log "kube: building etcd ${ETCD_VERSION}"
  timed go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "${out}/etcd" go.etcd.io/etcd/server/v3
  mv -f "${out}"/* "${BIN}/" && rmdir "${out}"
  echo "$digest" > "${BIN}/.stamp-kube"
}

build_kwok() {
  cd "${ENGINE_DIR}/kwok"
  local digest; digest=$(stamp "kwok ${KWOK_VERSION}" go.mod go.sum)
  if up_to_date kwok "$digest" kwok && [ -f "${BIN}/kwok-stages.yaml" ]; then
    log "kwok: up to date (${KWOK_VERSION})"; return
  fi
  log "kwok: building kwok ${KWOK_VERSION}"
  timed go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "${BIN}/kwok" sigs.k8s.io/kwok/cmd/kwok
  # kwok simulates nothing without Stage objects: ship the ones its module carries
  # (kustomize/stage/...), concatenated into one file kwok reads with --config.
  go mod download sigs.k8s.io/kwok
  local moddir d f; moddir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  {
    echo "# Stage objects from sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage/{${KWOK_STAGES// /,}} (generated by engine/build.sh)"
    for d in $KWOK_STAGES; do
      for f in "${moddir}/kustomize/stage/${d}"/*.yaml; do
        case "$(basename "$f")" in kustomization.yaml) continue ;; esac
        grep -q '^kind: Stage$' "$f" || continue
        echo "---"; echo "# ${d}/$(basename "$f")"; cat "$f"
      done
    done
  } > "${BIN}/kwok-stages.yaml.tmp"
  mv -f "${BIN}/kwok-stages.yaml.tmp" "${BIN}/kwok-stages.yaml"
  echo "$digest" > "${BIN}/.stamp-kwok"
}

# --- object store test services (tests/integration, bench): wrapper modules objectstore/{minio,mc} ---
# AGPL-3.0 programs, run as separate processes by the tests only: never linked into or shipped
# with anything of ours. MinIO at the commit of the release Pulumi.yaml's minioImage deploys;
# mc at the release that image bundles (see objectstore/*/go.mod).
MINIO_RELEASE=RELEASE.2025-09-07T16-13-09Z
MINIO_COMMIT=07c3a429bfed433e49018cb0f78a52145d4bedeb
MC_RELEASE=RELEASE.2025-08-13T08-35-41Z
MC_COMMIT=7394ce0dd2a80935aded936b09fa12cbb3cb8096

build_minio_module() { # NAME PACKAGE RELEASE COMMIT EXTRA_TAGS
  local name=$1 pkg=$2 release=$3 commit=$4 tags=$5
  cd "${ENGINE_DIR}/objectstore/${name}"
  local digest; digest=$(stamp "${name} ${release} ${commit}" go.mod go.sum)
  if up_to_date "$name" "$digest" "$name"; then
    log "${name}: up to date (${release})"; return
  fi
  # Upstream's buildscripts/gen-ldflags.go, minus GOPATH/GOROOT.
  local version; version=$(sed -E 's/^RELEASE\.([0-9-]+)T([0-9]+)-([0-9]+)-([0-9]+)Z$/\1T\2:\3:\4Z/' <<<"$release")
  local x="-X ${pkg}/cmd"
  local ldflags="-s -w ${x}.Version=${version} ${x}.CopyrightYear=${version:0:4} ${x}.ReleaseTag=${release}"
  ldflags+=" ${x}.CommitID=${commit} ${x}.ShortCommitID=${commit:0:12}"
  log "${name}: building ${name} ${release}"
  timed go build -p "$JOBS" -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "${BIN}/${name}.tmp" "$pkg"
  mv -f "${BIN}/${name}.tmp" "${BIN}/${name}"
  echo "$digest" > "${BIN}/.stamp-${name}"
}
build_minio() { build_minio_module minio github.com/minio/minio "$MINIO_RELEASE" "$MINIO_COMMIT" kqueue; }
build_mc() { build_minio_module mc github.com/minio/mc "$MC_RELEASE" "$MC_COMMIT" ""; }

# --- Gateway API CRDs (tests/test_manifests.py, the live layer): wrapper module gateway-api/ ---
# Not a binary: the standard channel's CustomResourceDefinitions, config/crd/standard/*.yaml of the
# module (its ValidatingAdmissionPolicy file is left out), copied to bin/crds/gateway-api/.
GATEWAY_API_VERSION=v1.6.3    # sigs.k8s.io/gateway-api (gateway-api/go.mod, go.sum)

build_gateway_api() {
  cd "${ENGINE_DIR}/gateway-api"
  local digest; digest=$(stamp "gateway-api ${GATEWAY_API_VERSION}" go.mod go.sum)
  local out="${BIN}/crds/gateway-api"
  if [ "${ENGINE_FORCE:-0}" != 1 ] && [ -f "${BIN}/.stamp-gateway-api" ] \
    && [ "$(cat "${BIN}/.stamp-gateway-api")" = "$digest" ] && compgen -G "${out}/*.yaml" >/dev/null; then
    log "gateway-api: up to date (${GATEWAY_API_VERSION} CRDs, standard channel)"; return
  fi
  go mod download sigs.k8s.io/gateway-api   # verified against go.sum
  local moddir f n=0; moddir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
  rm -rf "${out}.tmp"; mkdir -p "${out}.tmp"
  for f in "${moddir}/config/crd/standard"/*.yaml; do
    grep -q '^kind: CustomResourceDefinition$' "$f" || continue
    grep -q "gateway.networking.k8s.io/bundle-version: ${GATEWAY_API_VERSION}\$" "$f" \
      && grep -q 'gateway.networking.k8s.io/channel: standard$' "$f" \
      || { log "gateway-api: $(basename "$f") is not a ${GATEWAY_API_VERSION} standard-channel CRD"; exit 1; }
    install -m 0644 "$f" "${out}.tmp/"; n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { log "gateway-api: no CRDs in ${moddir}/config/crd/standard"; exit 1; }
  rm -rf "${out}"; mkdir -p "$(dirname "${out}")"; mv "${out}.tmp" "${out}"
  log "gateway-api: ${n} CRDs of ${GATEWAY_API_VERSION} (standard channel) in ${out}"
  echo "$digest" > "${BIN}/.stamp-gateway-api"
}

t0=$SECONDS
case "$ONLY" in *" cli "*) build_cli ;; esac
case "$ONLY" in *" random "*) build_native random "$RANDOM_VERSION" ;; esac
case "$ONLY" in *" tls "*) build_native tls "$TLS_VERSION" ;; esac
case "$ONLY" in *" kubernetes "*) build_kubernetes ;; esac
case "$ONLY" in *" kube "*) build_kube ;; esac
case "$ONLY" in *" kwok "*) build_kwok ;; esac
case "$ONLY" in *" minio "*) build_minio ;; esac
case "$ONLY" in *" mc "*) build_mc ;; esac
case "$ONLY" in *" gateway-api "*) build_gateway_api ;; esac
log "done in $((SECONDS - t0))s: $(cd "$BIN" && ls | tr '\n' ' ')"
