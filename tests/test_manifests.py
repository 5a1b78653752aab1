"""Every rendered Kubernetes object is valid: schemas, checkov and Pod Security `restricted`.

Each stack is rendered once per session with `tools/render.py`: dev, prod and pr-42 from their
stack files, stacks in the external modes (EXTERNAL_STACKS: config overrides, secret keys as
secret config, CA bundles from tests/fixtures) and in the other publish modes (PUBLISH_STACKS:
Gateway API routes, nothing published). The files in build/manifests/<stack>/ are what
checkov scans and the objects are what the other checks read.

1. kubernetes-validate, strict (unknown fields rejected), against Kubernetes 1.29 (the oldest the
   CloudNativePG chart supports) and the newest version kubernetes-validate ships.
2. CloudNativePG custom resources (kubernetes-validate has no schema for them: Cluster, Database)
   against the CRD's openAPIV3Schema from ../shared/schemas/cloudnative-pg and against the full CRD
   manifests in ../shared/crds/cloudnative-pg, made strict the way the API server is.
   Gateway API objects (HTTPRoute, BackendTLSPolicy) against the standard-channel CRDs of
   sigs.k8s.io/gateway-api that `make engine` copies to engine/bin/crds/gateway-api, made strict the
   same way (structure, types, enums, patterns, lengths, required fields; not the CEL rules
   (x-kubernetes-validations), which the live layer's API server enforces), plus what a Gateway
   would otherwise find only at run time: the Services, ports and CA ConfigMap they name exist.
3. checkov, offline: no failed check; every skip carries a reason.
4. Pod Security Standard `restricted` on every pod template (initContainers included), the MinIO
   bootstrap Job's among them.
5. The stack namespace enforces `restricted` and holds every object but the operator's namespace.

Every check has a negative test beside it, so a checker that silently accepts everything fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stacks import GATEWAY_ROUTE  # noqa: E402
from tools import local_cluster  # noqa: E402
from tools.mock_engine import Secret  # noqa: E402
from tools.render import Rendered, render_stack  # noqa: E402

EXTERNAL_CA = "tests/fixtures/external-ca.pem"  # a CA bundle committed for these stacks
# Stacks in the external modes: name -> config overrides (credentials as secret config).
EXTERNAL_STACKS: dict[str, dict] = {
    # External PostgreSQL (no CNPG object, no operator), in-cluster MinIO with its bootstrap Job.
    "ext-db": {
        "postgresMode": "external",
        "postgresHost": "mlflow-db.example.com",
        "postgresCaFile": EXTERNAL_CA,
        "postgresAdminPassword": Secret("rendered-admin-password"),
    },
    # In-cluster PostgreSQL, external S3 with a public CA.
    "ext-s3": {
        "objectStoreMode": "external",
        "s3Endpoint": "https://s3.eu-west-1.amazonaws.com",
        "s3Region": "eu-west-1",
        "s3AccessKey": "AKIARENDEREDEXAMPLE",
        "s3SecretKey": Secret("rendered-secret-key"),
    },
    # Both external: an external MinIO behind a private CA; nothing stateful in the cluster.
    "ext-all": {
        "postgresMode": "external",
        "postgresHost": "mlflow-db.example.com",
        "postgresCaFile": EXTERNAL_CA,
        "postgresAdminPassword": Secret("rendered-admin-password"),
        "objectStoreMode": "externalMinio",
        "s3Endpoint": "https://minio.example.com:9000",
        "s3CaFile": EXTERNAL_CA,
        "s3AdminUser": "platform-admin",
        "s3AdminPassword": Secret("rendered-minio-password"),
    },
}
# Stacks in the other publish modes (publishMode, issue 19.2): a Gateway API HTTPRoute for MLflow; MinIO
# published too for direct transfers (its HTTPRoute, a BackendTLSPolicy and the CA ConfigMap it names);
# nothing published at all.
PUBLISH_STACKS: dict[str, dict] = {
    "gw-route": GATEWAY_ROUTE,
    "gw-direct": {**GATEWAY_ROUTE, "minioIngress": True, "artifactTransferMode": "direct"},
    "unpublished": {"publishMode": "none"},
}
STACK_CONFIG = {**EXTERNAL_STACKS, **PUBLISH_STACKS}
STACKS = ["dev", "prod", "pr-42", *EXTERNAL_STACKS, *PUBLISH_STACKS]
# The stack that owns the operator (a Helm release: its chart's objects are the chart's) and the plugin.
CLUSTER_STACK = "cluster"


@dataclass(frozen=True)
class Expected:
    """What each stack must render: the CloudNativePG kinds, MinIO in the cluster, the operator's namespace."""

    cnpg: dict
    minio: bool
    operator: bool


IN_CLUSTER_PG = {"Cluster": 1, "Database": 2}
EXPECTED = {
    # The operator and its namespace belong to the cluster stack (CLUSTER_STACK): no environment renders them.
    "dev": Expected(IN_CLUSTER_PG, minio=True, operator=False),
    # prod backs up by default: a ScheduledBackup (and a plugin ObjectStore, checked in section 6).
    "prod": Expected({**IN_CLUSTER_PG, "ScheduledBackup": 1}, minio=True, operator=False),
    "pr-42": Expected(IN_CLUSTER_PG, minio=True, operator=False),
    "ext-db": Expected({}, minio=True, operator=False),
    "ext-s3": Expected(IN_CLUSTER_PG, minio=False, operator=False),
    "ext-all": Expected({}, minio=False, operator=False),
    "gw-route": Expected(IN_CLUSTER_PG, minio=True, operator=False),
    "gw-direct": Expected(IN_CLUSTER_PG, minio=True, operator=False),
    "unpublished": Expected(IN_CLUSTER_PG, minio=True, operator=False),
}
# What publishes each stack (every other stack: MLflow's Ingress).
PUBLISHED_KINDS = {
    "gw-route": {"HTTPRoute": 1},
    "gw-direct": {"HTTPRoute": 2, "BackendTLSPolicy": 1},
    "unpublished": {},
}
OLDEST_K8S = "1.29"  # the oldest Kubernetes the CloudNativePG chart (0.29.0 / operator 1.30) supports
MINIMUM_NEWEST_K8S = Version("1.33")

SHARED = ROOT.parent / "shared"
CNPG_SCHEMA_DIR = SHARED / "schemas" / "cloudnative-pg"
CNPG_CRD_DIR = SHARED / "crds" / "cloudnative-pg"
CNPG_GROUP = "postgresql.cnpg.io"

POD_BEARING_KINDS = {
    "Pod",
    "PodTemplate",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
}


# --------------------------------------------------------------------------- rendering (once per stack)
_RENDERED: dict[str, Rendered] = {}


def rendered(stack: str) -> Rendered:
    """Evaluate and write `stack` the first time it is asked for; reuse it for the session."""
    if stack not in _RENDERED:
        config = STACK_CONFIG.get(stack)
        if config and EXTERNAL_CA in config.values() and not (ROOT / EXTERNAL_CA).is_file():
            pytest.fail(f"{EXTERNAL_CA} is missing: the external-mode stacks need a committed CA bundle")
        _RENDERED[stack] = render_stack(stack, config=config)
    return _RENDERED[stack]


def test_every_stack_renders_the_expected_object_set():
    """The stacks above cover what they claim: in-cluster and external modes, operator owner or not."""
    assert set(EXPECTED) == set(STACKS)
    summary = []
    for stack in STACKS:
        objects, expected = rendered(stack).objects, EXPECTED[stack]
        kinds = Counter(o["kind"] for o in objects)
        cnpg = Counter(o["kind"] for o in objects if is_cnpg(o))
        assert dict(cnpg) == expected.cnpg, f"{stack}: CloudNativePG objects {dict(cnpg)}"
        assert kinds["StatefulSet"] == int(expected.minio), f"{stack}: {kinds['StatefulSet']} StatefulSets"
        jobs = sorted(o["metadata"]["labels"]["app.kubernetes.io/name"] for o in objects if o["kind"] == "Job")
        assert jobs == sorted(["mlflow"] + (["minio"] if expected.minio else [])), f"{stack}: Jobs {jobs}"
        namespaces = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Namespace")
        assert namespaces == sorted([f"mlflow-{stack}"] + (["cnpg-system"] if expected.operator else [])), (
            f"{stack}: Namespaces {namespaces}"
        )
        assert kinds["Deployment"] == 1 and not any(
            o["kind"] == "Service" and o.get("spec", {}).get("type") in ("LoadBalancer", "NodePort") for o in objects
        )
        summary.append(f"{stack}={len(objects)}")
    print("\n[objects] " + " ".join(summary))


def is_cnpg(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] == CNPG_GROUP


# Custom resources with checks of their own (section 6): the Barman Cloud plugin's ObjectStore
# (its CRD in ../shared/crds) and the Prometheus operator's monitors (no CRD here: structural check).
OTHER_CUSTOM_GROUPS = ("barmancloud.cnpg.io", "monitoring.coreos.com")
GATEWAY_GROUP = "gateway.networking.k8s.io"  # HTTPRoute, BackendTLSPolicy: section 2, Gateway API


def is_gateway_api(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] == GATEWAY_GROUP


def is_other_custom_resource(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] in OTHER_CUSTOM_GROUPS


def describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


# --------------------------------------------------------------------------- 1. kubernetes-validate
def bundled_k8s_versions() -> list[Version]:
    """The Kubernetes versions kubernetes-validate ships strict schemas for (its package data)."""
    schema_root = Path(kubernetes_validate.__file__).resolve().parent / "kubernetes-json-schema"
    found = [
        Version(m.group(1))
        for d in schema_root.iterdir()
        if d.is_dir() and (m := re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", d.name))
    ]
    assert found, f"no strict schema directories under {schema_root}"
    return sorted(found)


def newest_k8s() -> str:
    newest = bundled_k8s_versions()[-1]
    return f"{newest.major}.{newest.minor}"


K8S_VERSIONS = [OLDEST_K8S, newest_k8s()]


def test_kubernetes_validate_ships_the_versions_we_validate_against():
    versions = bundled_k8s_versions()
    assert versions[-1] >= MINIMUM_NEWEST_K8S, (
        f"kubernetes-validate {kubernetes_validate.__version__} ships schemas up to {versions[-1]}; "
        f"need >= {MINIMUM_NEWEST_K8S}: upgrade kubernetes-validate"
    )
    assert Version(OLDEST_K8S) in {Version(f"{v.major}.{v.minor}") for v in versions}, (
        f"kubernetes-validate {kubernetes_validate.__version__} has no strict schemas for {OLDEST_K8S}"
    )


def k8s_errors(obj: dict, version: str) -> list[str]:
    """Strict-mode problems of one built-in object; a missing schema is an error, never a skip."""
    try:
        used = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "<root>"
        return [f"{describe(obj)} @ {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{describe(obj)}: {error.message} (a custom resource needs its own schema check)"]
    if used != version:  # kubernetes-validate falls back to an older schema set when asked for a missing one
        return [f"{describe(obj)}: validated against {used}, not {version}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("stack", [*STACKS, CLUSTER_STACK])
def test_builtin_objects_validate_strictly(stack: str, version: str):
    objects = [
        o for o in rendered(stack).objects if not (is_cnpg(o) or is_other_custom_resource(o) or is_gateway_api(o))
    ]
    assert objects, f"{stack}: rendered no built-in objects"
    errors = [e for obj in objects for e in k8s_errors(obj, version)]
    print(f"\n[kubernetes-validate] {stack} k8s {version}: {len(objects)} objects, {len(errors)} errors")
    assert not errors, f"{stack}, Kubernetes {version}, strict:\n" + "\n".join(errors)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_validation_rejects_a_misspelt_field(version: str):
    deployment = copy.deepcopy(next(o for o in rendered("dev").objects if o["kind"] == "Deployment"))
    assert k8s_errors(deployment, version) == []
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    assert any("replica" in e for e in k8s_errors(deployment, version))
    pod = deployment["spec"]["template"]["spec"]
    deployment["spec"]["replicas"] = deployment["spec"].pop("replica")
    pod["containers"][0]["securityContext"]["runAsNonroot"] = True
    assert any("runAsNonroot" in e for e in k8s_errors(deployment, version))


def test_kubernetes_validate_does_not_know_cnpg_objects():
    """Why CNPG objects go to the CRD-schema check: here they would only raise SchemaNotFoundError."""
    for obj in cnpg_objects("dev"):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(obj, OLDEST_K8S, strict=True)
        assert k8s_errors(obj, OLDEST_K8S), "a custom resource must not pass the built-in check silently"


# --------------------------------------------------------------------------- 2. CloudNativePG CRD schemas
LOGICAL = ("allOf", "anyOf", "oneOf", "not")


def strict_structural(schema: Any) -> Any:
    """The CRD schema as the API server applies it: unknown fields are errors, not pruned silently.

    Every object node with `properties` gets `additionalProperties: false` unless it sets
    `x-kubernetes-preserve-unknown-fields` (an embedded resource also keeps apiVersion/kind/metadata).
    Logical junctors are left alone: in a structural schema they only restrict fields the outer
    node already declares, so closing them could reject valid objects. OpenAPI's `nullable` becomes
    a JSON-Schema null type.
    """
    if isinstance(schema, list):
        return [strict_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strict_structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, (dict, list)):
            out[key] = strict_structural(value)
        else:
            out[key] = value
    if (
        "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
        if out.get("x-kubernetes-embedded-resource"):
            out["properties"] = {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                **out["properties"],
            }
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def cnpg_schema_file(kind: str, version: str) -> Path:
    return CNPG_SCHEMA_DIR / f"{kind.lower()}-{CNPG_GROUP}-{version}.json"


def load_cnpg_schema(kind: str, version: str) -> dict:
    if not CNPG_SCHEMA_DIR.is_dir():
        pytest.fail(
            f"CloudNativePG CRD schemas are missing: {CNPG_SCHEMA_DIR} does not exist. It comes with "
            f"the shared tree at ../shared (see shared/README.md); without it CNPG objects go unchecked."
        )
    path = cnpg_schema_file(kind, version)
    if not path.is_file():
        pytest.fail(f"no CRD schema for {CNPG_GROUP}/{version} {kind}: expected {path}")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert (document.get("group"), document.get("version"), document.get("kind")) == (CNPG_GROUP, version, kind), (
        f"{path} describes {document.get('group')}/{document.get('version')} {document.get('kind')}"
    )
    assert "openAPIV3Schema" in document, f"{path} has no openAPIV3Schema"
    return document


def load_cnpg_crd(kind: str, version: str) -> dict:
    """The openAPIV3Schema of `kind`/`version` from the full CRD manifests (../shared/crds), as served."""
    if not CNPG_CRD_DIR.is_dir():
        pytest.fail(
            f"CloudNativePG CRD manifests are missing: {CNPG_CRD_DIR} does not exist. It comes with "
            f"the shared tree at ../shared (see shared/README.md); without it CNPG objects go unchecked."
        )
    for path in sorted(CNPG_CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            spec = (crd or {}).get("spec") or {}
            if (
                crd.get("kind") != "CustomResourceDefinition"
                or spec.get("group") != CNPG_GROUP
                or spec.get("names", {}).get("kind") != kind
            ):
                continue
            assert spec.get("scope") == "Namespaced", f"{path}: {kind} is {spec.get('scope')}, not Namespaced"
            served = {v["name"]: v for v in spec.get("versions", []) if v.get("served")}
            if version not in served:
                pytest.fail(f"{path}: {CNPG_GROUP} {kind} does not serve {version} (serves {sorted(served)})")
            return served[version]["schema"]["openAPIV3Schema"]
    pytest.fail(f"no CustomResourceDefinition for {CNPG_GROUP}/{version} {kind} in {CNPG_CRD_DIR}")


# Where a CNPG schema comes from: the extracted schemas, or the CRD manifests the API server serves.
CNPG_SOURCES = {
    "schemas": lambda kind, version: load_cnpg_schema(kind, version)["openAPIV3Schema"],
    "crds": load_cnpg_crd,
}
_STRICT_VALIDATORS: dict[tuple[str, ...], jsonschema.Draft7Validator] = {}


def strict_validator(key: tuple[str, ...], load_schema: Callable[[], dict]) -> jsonschema.Draft7Validator:
    """The strict (API-server-like) validator of a CRD's schema, built once per `key`."""
    if key not in _STRICT_VALIDATORS:
        schema = strict_structural(load_schema())
        jsonschema.Draft7Validator.check_schema(schema)
        _STRICT_VALIDATORS[key] = jsonschema.Draft7Validator(schema)
    return _STRICT_VALIDATORS[key]


def cnpg_validator(kind: str, version: str, source: str = "schemas") -> jsonschema.Draft7Validator:
    return strict_validator((source, kind, version), lambda: CNPG_SOURCES[source](kind, version))


def custom_resource_errors(
    obj: dict, group: str, validator: Callable[[str, str], jsonschema.Draft7Validator]
) -> list[str]:
    """A custom resource of `group` against its CRD's strict schema (`validator(kind, version)`), and its
    metadata against the strict standard ObjectMeta (the CRD leaves metadata open)."""
    api_group, _, version = str(obj.get("apiVersion", "")).partition("/")
    if api_group != group or not version:
        return [f"{describe(obj)}: apiVersion {obj.get('apiVersion')!r} is not {group}/<version>"]
    kind = obj.get("kind", "")
    errors = [
        f"{describe(obj)} @ {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator(kind, version).iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]
    meta = obj.get("metadata") or {}
    return errors + [
        e.replace("ConfigMap/", f"{kind}/")
        for e in k8s_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, OLDEST_K8S)
    ]


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def cnpg_errors(obj: dict, source: str = "schemas") -> list[str]:
    errors = custom_resource_errors(obj, CNPG_GROUP, lambda kind, version: cnpg_validator(kind, version, source))
    meta = obj.get("metadata") or {}
    for field in ("name", "namespace"):
        value = meta.get(field)
        if not value:
            errors.append(f"{describe(obj)}: metadata.{field} is missing")
        # CNPG derives Services and Pods from the cluster name: it must be a DNS label.
        elif not (len(value) <= 63 and DNS_LABEL.fullmatch(value)):
            errors.append(f"{describe(obj)}: metadata.{field} {value!r} is not a DNS-1123 label")
    return errors


def cnpg_objects(stack: str) -> list[dict]:
    return [o for o in rendered(stack).objects if is_cnpg(o)]


@pytest.mark.parametrize("source", sorted(CNPG_SOURCES))
@pytest.mark.parametrize("stack", STACKS)
def test_cnpg_objects_match_the_crd_schema(stack: str, source: str):
    objects = cnpg_objects(stack)
    assert dict(Counter(o["kind"] for o in objects)) == EXPECTED[stack].cnpg, f"{stack}: unexpected CNPG objects"
    if source == "schemas":  # ../shared/schemas extracts Cluster and Database only; the CRDs have every kind
        objects = [o for o in objects if cnpg_schema_file(o["kind"], o["apiVersion"].split("/")[1]).is_file()]
    errors = [e for obj in objects for e in cnpg_errors(obj, source)]
    print(f"\n[cnpg {source}] {stack}: {len(objects)} CloudNativePG objects, {len(errors)} errors")
    assert not errors, f"{stack}: CloudNativePG objects do not match the CRD ({source}):\n" + "\n".join(errors)


def test_shared_schemas_agree_with_the_crd_manifests():
    """../shared/schemas holds the schemas extracted from ../shared/crds: the two must not drift apart."""
    rendered_kinds = {(o["kind"], o["apiVersion"].split("/")[1]) for s in STACKS for o in cnpg_objects(s)}
    assert rendered_kinds == {("Cluster", "v1"), ("Database", "v1"), ("ScheduledBackup", "v1")}
    for kind, version in sorted(rendered_kinds - {("ScheduledBackup", "v1")}):
        assert load_cnpg_schema(kind, version)["openAPIV3Schema"] == load_cnpg_crd(kind, version), (
            f"{kind} {version}: {cnpg_schema_file(kind, version)} differs from the CRD in {CNPG_CRD_DIR}"
        )


def test_cnpg_schema_dir_is_present():
    for kind in ("Cluster", "Database"):  # fails, naming ../shared, when the schemas are absent
        load_cnpg_schema(kind, "v1")
        load_cnpg_crd(kind, "v1")


@pytest.mark.parametrize(
    "source, setting, message",
    [("schemas", "CNPG_SCHEMA_DIR", "schemas are missing"), ("crds", "CNPG_CRD_DIR", "CRD manifests are missing")],
)
def test_missing_cnpg_schemas_fail_the_check(monkeypatch, tmp_path, source: str, setting: str, message: str):
    monkeypatch.setattr(sys.modules[__name__], setting, tmp_path / "shared" / source / "cloudnative-pg")
    monkeypatch.setattr(sys.modules[__name__], "_STRICT_VALIDATORS", {})
    for obj in cnpg_objects("dev"):  # the Cluster and the Databases alike
        with pytest.raises(pytest.fail.Exception, match=message):
            cnpg_errors(obj, source)


def test_a_cnpg_kind_without_a_crd_fails_the_check(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_STRICT_VALIDATORS", {})
    pooler = {"apiVersion": f"{CNPG_GROUP}/v1", "kind": "Poolr", "metadata": {"name": "p", "namespace": "n"}}
    for source in CNPG_SOURCES:
        with pytest.raises(pytest.fail.Exception, match="Poolr"):
            cnpg_errors(pooler, source)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["spec"].__setitem__("instance", c["spec"].pop("instances")), "instance"),  # misspelt, top of spec
        (lambda c: c["spec"]["storage"].__setitem__("sizee", "1Gi"), "sizee"),  # unknown, nested
        (lambda c: c["spec"]["affinity"].__setitem__("enablePodAntiAfinity", True), "enablePodAntiAfinity"),
        (lambda c: c.__setitem__("sepc", {}), "sepc"),  # unknown, top level
        (lambda c: c["spec"].__setitem__("instances", "3"), "instances"),  # wrong type
        (lambda c: c["spec"].__setitem__("instances", 0), "instances"),  # below minimum
        (lambda c: c["metadata"].pop("namespace"), "namespace"),
        (lambda c: c["metadata"].__setitem__("labelz", {}), "labelz"),  # unknown ObjectMeta field
        (lambda c: c.__setitem__("kind", "Clustr"), "Clustr"),
    ],
    ids=[
        "misspelt-instances",
        "nested-unknown",
        "misspelt-affinity",
        "unknown-top-level",
        "wrong-type",
        "below-minimum",
        "no-namespace",
        "unknown-metadata",
        "wrong-kind",
    ],
)
def test_cnpg_check_rejects_broken_clusters(mutate, expected: str):
    assert_cnpg_check_rejects(cnpg_object("dev", "Cluster"), mutate, expected)


def cnpg_object(stack: str, kind: str) -> dict:
    return copy.deepcopy(next(o for o in cnpg_objects(stack) if o["kind"] == kind))


def assert_cnpg_check_rejects(obj: dict, mutate, expected: str) -> None:
    """The object passes both checks as rendered, and each reports `expected` once it is mutated."""
    for source in CNPG_SOURCES:
        broken = copy.deepcopy(obj)
        assert cnpg_errors(broken, source) == []
        mutate(broken)
        try:
            errors = cnpg_errors(broken, source)
        except pytest.fail.Exception as failure:  # a kind without a schema fails the test itself
            errors = [str(failure)]
        assert any(expected in e for e in errors), f"{source}: {expected!r} not reported: {errors}"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["spec"].__setitem__("ownr", d["spec"].pop("owner")), "ownr"),  # misspelt, top of spec
        (lambda d: d["spec"].__setitem__("databaseReclaimPolicy", "keep"), "databaseReclaimPolicy"),  # not in the enum
        (lambda d: d["spec"]["cluster"].__setitem__("nmae", "mlflow-pg"), "nmae"),  # unknown, nested
        (lambda d: d["spec"].pop("name"), "name"),  # required
        (lambda d: d["spec"].__setitem__("ensure", "exists"), "ensure"),  # not in the enum
        (lambda d: d.__setitem__("kind", "Databse"), "Databse"),
    ],
    ids=["misspelt-owner", "bad-reclaim-policy", "nested-unknown", "no-name", "bad-ensure", "wrong-kind"],
)
def test_cnpg_check_rejects_broken_databases(mutate, expected: str):
    database = cnpg_object("dev", "Database")
    assert database["spec"]["databaseReclaimPolicy"] == "retain"
    assert_cnpg_check_rejects(database, mutate, expected)


def test_strict_transformation_closes_objects_and_respects_preserve_unknown_fields():
    raw = load_cnpg_schema("Cluster", "v1")["openAPIV3Schema"]
    cluster = cnpg_object("dev", "Cluster")
    cluster["spec"]["instance"] = 1
    # The published schema alone accepts the typo: the API server would prune it without a word.
    assert not list(jsonschema.Draft7Validator(raw).iter_errors(cluster))
    assert list(jsonschema.Draft7Validator(strict_structural(raw)).iter_errors(cluster))

    schema = strict_structural(
        {
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "open": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "string"}},
                },
                "map": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "properties": {"b": {"type": "integer"}}},
                },
                "list": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "string"}}}},
                "maybe": {"type": "string", "nullable": True},
                "either": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            },
        }
    )
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid(
        {
            "closed": {"a": "x"},
            "open": {"a": "x", "anything": 1},
            "map": {"k": {"b": 1}},
            "list": [{"c": "x"}],
            "maybe": None,
            "either": 3,
        }
    )
    for bad in ({"closed": {"z": 1}}, {"map": {"k": {"z": 1}}}, {"list": [{"z": 1}]}, {"z": 1}):
        assert not validator.is_valid(bad), bad


# --------------------------------------------------------------------------- 2. Gateway API CRD schemas
GATEWAY_ENGINE_BIN = local_cluster.BIN  # engine/bin: its crds/gateway-api/ holds the CRDs


def gateway_crd_schema(kind: str, version: str) -> dict:
    """The openAPIV3Schema `kind`/`version` is served with, from the CRDs engine/build.sh copies out of
    sigs.k8s.io/gateway-api (standard channel); missing CRDs fail naming `make engine`."""
    try:
        crds = local_cluster.gateway_api_crds(GATEWAY_ENGINE_BIN)
    except local_cluster.ClusterError as error:
        pytest.fail(f"{error} (Gateway API objects are validated against those CRDs)", pytrace=False)
    for crd in crds:
        spec = crd["spec"]
        if spec["group"] != GATEWAY_GROUP or spec["names"]["kind"] != kind:
            continue
        assert spec["scope"] == "Namespaced", f"{kind} is {spec['scope']}, not Namespaced"
        served = {v["name"]: v for v in spec["versions"] if v.get("served")}
        if version not in served:
            pytest.fail(f"the Gateway API CRD of {kind} does not serve {version} (serves {sorted(served)})")
        return served[version]["schema"]["openAPIV3Schema"]
    pytest.fail(
        f"no Gateway API {local_cluster.GATEWAY_API_VERSION} standard-channel CRD for {kind} "
        f"(in {GATEWAY_ENGINE_BIN / local_cluster.GATEWAY_API_CRDS})"
    )


def gateway_errors(obj: dict) -> list[str]:
    errors = custom_resource_errors(
        obj,
        GATEWAY_GROUP,
        lambda kind, version: strict_validator(
            ("gateway-api", kind, version), lambda: gateway_crd_schema(kind, version)
        ),
    )
    meta = obj.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        errors.append(f"{describe(obj)}: metadata.name and metadata.namespace are required")
    return errors


def gateway_reference_errors(obj: dict, objects: list[dict]) -> list[str]:
    """What the API server accepts but a Gateway would fail on at run time: a backend Service or port,
    a policy target or a CA ConfigMap that the stack does not render, or a CA that is not PEM."""
    namespace = obj["metadata"]["namespace"]
    local = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["metadata"].get("namespace") == namespace}
    errors = []
    spec = obj.get("spec") or {}

    def service(name: str) -> dict | None:
        found = local.get(("Service", name))
        if found is None:
            errors.append(f"{describe(obj)}: Service {namespace}/{name} is not rendered")
        return found

    if obj["kind"] == "HTTPRoute":
        for rule in spec.get("rules", []):
            for ref in rule.get("backendRefs", []):
                if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
                    errors.append(f"{describe(obj)}: backendRef {ref} is not a Service")
                elif (target := service(ref["name"])) is not None:
                    ports = [p["port"] for p in target["spec"]["ports"]]
                    if ref.get("port") not in ports:
                        errors.append(f"{describe(obj)}: Service {ref['name']} has no port {ref.get('port')} ({ports})")
    elif obj["kind"] == "BackendTLSPolicy":
        for ref in spec.get("targetRefs", []):
            if (ref.get("group"), ref.get("kind")) != ("", "Service"):
                errors.append(f"{describe(obj)}: targetRef {ref} is not a Service")
            else:
                service(ref["name"])
        for ref in spec.get("validation", {}).get("caCertificateRefs", []):
            config_map = local.get(("ConfigMap", ref.get("name")))
            if (ref.get("group"), ref.get("kind")) != ("", "ConfigMap") or config_map is None:
                errors.append(f"{describe(obj)}: caCertificateRef {ref} is not a rendered ConfigMap")
            elif "BEGIN CERTIFICATE" not in (config_map.get("data") or {}).get("ca.crt", ""):
                errors.append(f"{describe(obj)}: ConfigMap {ref['name']} has no PEM ca.crt")
    return errors


def gateway_objects(stack: str) -> list[dict]:
    return [o for o in rendered(stack).objects if is_gateway_api(o)]


@pytest.mark.parametrize("stack", STACKS)
def test_gateway_api_objects_match_the_crd_schema(stack: str):
    objects = rendered(stack).objects
    published = Counter(o["kind"] for o in objects if o["kind"] in ("Ingress", "HTTPRoute", "BackendTLSPolicy"))
    assert dict(published) == PUBLISHED_KINDS.get(stack, {"Ingress": 1}), f"{stack}: published by {dict(published)}"
    found = gateway_objects(stack)
    errors = [e for obj in found for e in gateway_errors(obj) + gateway_reference_errors(obj, objects)]
    print(f"\n[gateway-api] {stack}: {len(found)} Gateway API objects, {len(errors)} errors")
    assert not errors, f"{stack}: Gateway API objects do not match the CRDs:\n" + "\n".join(errors)


def test_gateway_api_crds_are_the_pinned_standard_channel():
    crds = local_cluster.gateway_api_crds(GATEWAY_ENGINE_BIN)
    for crd in crds:
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/channel"] == "standard", crd["metadata"]["name"]
    go_mod = (ROOT / "engine" / "gateway-api" / "go.mod").read_text(encoding="utf-8")
    assert f"sigs.k8s.io/gateway-api {local_cluster.GATEWAY_API_VERSION}" in go_mod
    kinds = {crd["spec"]["names"]["kind"] for crd in crds}
    assert {"HTTPRoute", "BackendTLSPolicy", "Gateway", "GatewayClass", "ReferenceGrant"} <= kinds


def test_missing_gateway_api_crds_fail_naming_make_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "GATEWAY_ENGINE_BIN", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "_STRICT_VALIDATORS", {})
    with pytest.raises(pytest.fail.Exception, match=r"has no Gateway API CRDs: run `make engine`"):
        gateway_errors(gateway_objects("gw-route")[0])


def _gateway_object(stack: str, kind: str, name: str) -> dict:
    return copy.deepcopy(
        next(o for o in gateway_objects(stack) if o["kind"] == kind and o["metadata"]["name"].startswith(name))
    )


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["spec"].__setitem__("hostname", r["spec"].pop("hostnames")), "hostname"),  # misspelt
        (lambda r: r["spec"]["parentRefs"][0].__setitem__("listener", "https"), "listener"),  # unknown, nested
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].__setitem__("port", "80"), "port"),  # wrong type
        (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].__setitem__("type", "Prefix"), "Prefix"),  # enum
        (lambda r: r["spec"].__setitem__("hostnames", ["MLflow_Host"]), "MLflow_Host"),  # pattern
        (lambda r: r["spec"]["rules"][0]["timeouts"].__setitem__("request", "10 minutes"), "10 minutes"),  # pattern
        (lambda r: r["spec"]["parentRefs"][0].pop("name"), "name"),  # required
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].__setitem__("name", "mlflw"), "mlflw"),  # no such Service
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].__setitem__("port", 8080), "no port 8080"),
        (lambda r: r["metadata"].__setitem__("labelz", {}), "labelz"),  # unknown ObjectMeta field
        (lambda r: r.__setitem__("kind", "HTTPRoutes"), "HTTPRoutes"),  # no such kind
    ],
    ids=[
        "misspelt-hostnames",
        "unknown-parent-field",
        "port-as-string",
        "path-type-enum",
        "bad-hostname",
        "bad-duration",
        "parent-without-name",
        "missing-service",
        "missing-port",
        "unknown-metadata",
        "wrong-kind",
    ],
)
def test_gateway_check_rejects_broken_routes(mutate, expected: str):
    assert_gateway_check_rejects(_gateway_object("gw-direct", "HTTPRoute", "mlflow-route"), mutate, expected)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda p: p["spec"]["validation"].pop("hostname"), "hostname"),  # required
        (lambda p: p["spec"]["targetRefs"][0].__setitem__("kind", 3), "kind"),  # wrong type
        (lambda p: p["spec"]["targetRefs"][0].__setitem__("name", "minio-s3"), "minio-s3"),  # no such Service
        (lambda p: p["spec"]["validation"]["caCertificateRefs"][0].__setitem__("name", "ca"), "caCertificateRef"),
        (lambda p: p["spec"].__setitem__("validatoin", p["spec"].pop("validation")), "validatoin"),  # misspelt
    ],
    ids=["no-hostname", "kind-not-a-string", "missing-service", "missing-ca-config-map", "misspelt-validation"],
)
def test_gateway_check_rejects_broken_backend_tls_policies(mutate, expected: str):
    policy = _gateway_object("gw-direct", "BackendTLSPolicy", "minio-backend-tls")
    assert_gateway_check_rejects(policy, mutate, expected)


def assert_gateway_check_rejects(obj: dict, mutate, expected: str) -> None:
    objects = rendered("gw-direct").objects
    assert gateway_errors(obj) + gateway_reference_errors(obj, objects) == []
    mutate(obj)
    try:
        errors = gateway_errors(obj) + gateway_reference_errors(obj, objects)
    except (pytest.fail.Exception, KeyError) as failure:  # a kind without a CRD fails the test itself
        errors = [str(failure)]
    assert any(expected in e for e in errors), f"{expected!r} not reported: {errors}"


@pytest.mark.parametrize("stack", sorted(PUBLISH_STACKS))
def test_publish_mode_stacks_pass_the_policy_baseline(stack: str):
    """The policy pack (tests/test_policy_on_stack.py) over every resource the publish-mode stacks register."""
    from tests.test_policy_on_stack import violations

    assert violations(rendered(stack).evaluation) == []


# --------------------------------------------------------------------------- 3. checkov
def checkov_binary() -> str:
    """$CHECKOV, else .venv-checkov/bin/checkov, else `checkov` on PATH; never a silent skip."""
    configured = os.environ.get("CHECKOV")
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"CHECKOV={configured} is not an executable file")
        return str(path)
    local = ROOT / ".venv-checkov" / "bin" / "checkov"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    on_path = shutil.which("checkov")
    if on_path:
        return on_path
    pytest.fail(
        "checkov not found: set CHECKOV=/path/to/checkov, or create the project's checkov venv with "
        "`python -m venv .venv-checkov && .venv-checkov/bin/pip install -r requirements-checkov.txt`"
    )


def checkov_env() -> dict[str, str]:
    """Offline and anonymous: no platform API key, no policy/mapping download, no update check."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BC_API", "PRISMA_", "CKV_API", "BC_PR", "BC_FROM", "BC_SOURCE"))
    }
    env.update(
        BC_SKIP_MAPPING="TRUE",
        CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",
        CKV_SKIP_PACKAGE_UPDATE_CHECK="true",
        LOG_LEVEL="WARNING",
    )
    return env


class Checkov:
    """One checkov run per stack; the selected stacks' runs start together (checkov is slow)."""

    def __init__(self, stacks: list[str]):
        self.stacks = stacks
        self.running: dict[str, subprocess.Popen] = {}
        self.reports: dict[str, dict] = {}

    def _start(self, stack: str) -> None:
        if stack in self.running or stack in self.reports:
            return
        # No --quiet: it drops the skipped checks (and their reasons) from the JSON report.
        command = [
            checkov_binary(),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "-o",
            "json",
            "-d",
            str(rendered(stack).directory),
        ]
        self.running[stack] = subprocess.Popen(
            command, cwd=ROOT, env=checkov_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def report(self, stack: str) -> dict:
        if stack not in self.reports:
            for other in [stack, *self.stacks]:
                self._start(other)
            process = self.running.pop(stack)
            stdout, stderr = process.communicate(timeout=900)
            # Exit 1 means failed checks, which the report lists; anything else is a crash.
            if process.returncode not in (0, 1):
                pytest.fail(f"checkov exited {process.returncode} for {stack}:\n{stderr[-4000:]}")
            try:
                report = json.loads(stdout)
            except json.JSONDecodeError:
                pytest.fail(f"checkov printed no JSON for {stack}:\n{stdout[-2000:]}\n{stderr[-4000:]}")
            reports = report if isinstance(report, list) else [report]
            kubernetes = [r for r in reports if r.get("check_type") == "kubernetes"]
            assert len(kubernetes) == 1, f"expected one kubernetes report from checkov, got {reports!r:.2000}"
            self.reports[stack] = kubernetes[0]
        return self.reports[stack]

    def close(self) -> None:
        for process in self.running.values():
            process.kill()
            process.communicate()
        self.running.clear()


@pytest.fixture(scope="session")
def checkov(request) -> Iterator[Checkov]:
    selected = [
        item.callspec.params["stack"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_checkov_passes" and hasattr(item, "callspec")
    ]
    runs = Checkov(list(dict.fromkeys(selected)))
    yield runs
    runs.close()


def skip_annotations(obj: dict) -> dict[str, str]:
    """check id -> reason of the object's checkov.io/skipN annotations."""
    found = {}
    for key, value in ((obj.get("metadata") or {}).get("annotations") or {}).items():
        if key.startswith("checkov.io/skip"):
            check, _, reason = value.partition("=")
            found[check] = reason
    return found


@pytest.mark.parametrize("stack", [*STACKS, CLUSTER_STACK])
def test_checkov_passes(stack: str, checkov: Checkov):
    render = rendered(stack)
    report = checkov.report(stack)
    results, summary = report["results"], report["summary"]
    failed, skipped, passed = results["failed_checks"], results["skipped_checks"], results["passed_checks"]
    counts = f"passed={summary['passed']} failed={summary['failed']} skipped={summary['skipped']}"
    skips = sorted({(c["check_id"], c["check_result"].get("suppress_comment") or "") for c in skipped})
    print(f"\n[checkov] {stack}: {counts} over {summary['resource_count']} resources")
    for check, reason in skips:
        print(f"  skip {check}: {reason}")

    assert not results.get("parsing_errors") and not summary.get("parsing_errors"), (
        f"checkov could not parse: {results.get('parsing_errors')}"
    )
    assert not failed and summary["failed"] == 0, f"{stack}: checkov {counts}\n" + "\n".join(
        f"  {c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})" for c in failed
    )
    assert summary["passed"] == len(passed) > 0 and summary["skipped"] == len(skipped)

    # Every skip carries a reason checkov read (it says "No comment provided" when there is none).
    unexplained = [
        f"{c['check_id']} on {c['resource']}"
        for c in skipped
        if (c["check_result"].get("suppress_comment") or "").strip() in ("", "No comment provided")
    ]
    assert not unexplained, f"{stack}: checkov skips without a reason: {unexplained}"

    # checkov looked at every workload, and each skip annotation matched a check it knows (a typo
    # in a check id would otherwise stay in the manifest, skipping nothing and explaining nothing).
    seen = {Path(c["file_path"]).name for c in passed + failed + skipped}
    for path, obj in render.files:
        if obj["kind"] in POD_BEARING_KINDS:
            assert path.name in seen, f"checkov reported nothing for {path.name}"
        reported = {c["check_id"] for c in skipped if Path(c["file_path"]).name == path.name}
        for check, reason in skip_annotations(obj).items():
            assert check in reported, f"{describe(obj)}: skip annotation for {check} matched no checkov check"
            assert reason.strip() and "=" not in reason, (
                f"{describe(obj)}: skip {check} needs a reason without '=' (checkov splits on it)"
            )


def test_checkov_binary_lookup_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("CHECKOV", str(tmp_path / "no-such-checkov"))
    with pytest.raises(pytest.fail.Exception, match="not an executable"):
        checkov_binary()
    monkeypatch.delenv("CHECKOV")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # no .venv-checkov there
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="checkov not found"):
        checkov_binary()


# --------------------------------------------------------------------------- 4. Pod Security `restricted`
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def pod_templates(obj: Any, path: str = "") -> Iterator[tuple[str, dict, dict]]:
    """(path, pod spec, pod metadata) of every pod spec anywhere in the object, whatever its kind."""
    if isinstance(obj, dict):
        spec = obj.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
            yield f"{path}.spec" if path else "spec", spec, obj.get("metadata") or {}
        for key, value in obj.items():
            yield from pod_templates(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from pod_templates(value, f"{path}[{index}]")


def restricted_violations(spec: dict, metadata: dict | None = None) -> list[str]:
    """What the `restricted` Pod Security Standard (latest) would refuse in this pod spec."""
    problems = []
    pod = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field}: true")
    if (pod.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("pod windowsOptions.hostProcess")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)} not allowed")
    for sysctl in pod.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl.get('name')}")
    if pod.get("runAsUser") == 0:
        problems.append("pod runAsUser: 0")
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"pod seccompProfile {pod_seccomp}")
    problems += _selinux_apparmor("pod", pod)
    for key, value in ((metadata or {}).get("annotations") or {}).items():
        if (
            key.startswith("container.apparmor.security.beta.kubernetes.io/")
            and value != "runtime/default"
            and not value.startswith("localhost/")
        ):
            problems.append(f"AppArmor annotation {key}: {value}")

    containers = [(kind, c) for kind in CONTAINER_LISTS for c in spec.get(kind) or []]
    if not spec.get("containers"):
        problems.append("no containers")
    for kind, container in containers:
        where = f"{kind}/{container.get('name')}"
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if ctx.get("runAsNonRoot") is False or not (ctx.get("runAsNonRoot") or pod.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser: 0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile {seccomp}")
        elif seccomp is None and pod_seccomp is None:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{where}: capabilities add {sorted(added)}")
        if ctx.get("procMount") not in (None, "Default"):
            problems.append(f"{where}: procMount {ctx['procMount']}")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{where}: windowsOptions.hostProcess")
        problems += _selinux_apparmor(where, ctx)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']}")
    return problems


def _selinux_apparmor(where: str, ctx: dict) -> list[str]:
    problems = []
    selinux = ctx.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"{where}: seLinuxOptions {selinux}")
    apparmor = (ctx.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"{where}: appArmorProfile {apparmor}")
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_template_is_restricted(stack: str):
    checked, problems = [], []
    for obj in rendered(stack).objects:
        templates = list(pod_templates(obj))
        if obj["kind"] in POD_BEARING_KINDS:
            assert templates, f"{describe(obj)} is pod-bearing but no pod spec was found in it"
        for path, spec, metadata in templates:
            checked.append(f"{describe(obj)} {path}")
            problems += [f"{describe(obj)} {path}: {p}" for p in restricted_violations(spec, metadata)]
    kinds = {o["kind"] for o in rendered(stack).objects if o["kind"] in POD_BEARING_KINDS}
    expected = (
        {"Deployment", "Job"}
        | ({"StatefulSet"} if EXPECTED[stack].minio else set())
        | ({"CronJob"} if stack != "pr-42" else set())
    )  # mlflow gc: on by default except in PR stacks
    assert kinds == expected, f"{stack}: workloads {kinds}, expected {expected}"
    bootstrap = [c for c in checked if c.startswith("Job/minio-bootstrap")]
    assert len(bootstrap) == int(EXPECTED[stack].minio), f"{stack}: MinIO bootstrap pod templates {bootstrap}"
    print(f"\n[pod security] {stack}: {len(checked)} pod templates, {len(problems)} violations")
    assert not problems, f"{stack}: Pod Security `restricted` violations:\n" + "\n".join(problems)


def _pod(obj_kind: str, stack: str = "dev", name: str | None = None) -> dict:
    """A deep copy of a real pod template (app.kubernetes.io/name `name`, if given)."""
    obj = next(
        o
        for o in rendered(stack).objects
        if o["kind"] == obj_kind and name in (None, o["metadata"]["labels"].get("app.kubernetes.io/name"))
    )
    return copy.deepcopy(obj["spec"]["template"])


BROKEN = {
    "privileged": lambda s: s["containers"][0]["securityContext"].__setitem__("privileged", True),
    "privilege-escalation": lambda s: s["containers"][0]["securityContext"].__setitem__(
        "allowPrivilegeEscalation", True
    ),
    "escalation-unset": lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
    "root-allowed": lambda s: (
        s["securityContext"].pop("runAsNonRoot"),
        s["containers"][0]["securityContext"].pop("runAsNonRoot"),
    ),
    "container-root-allowed": lambda s: s["containers"][0]["securityContext"].__setitem__("runAsNonRoot", False),
    "uid-0": lambda s: s["containers"][0]["securityContext"].__setitem__("runAsUser", 0),
    "pod-uid-0": lambda s: s["securityContext"].__setitem__("runAsUser", 0),
    "seccomp-unset": lambda s: (
        s["securityContext"].pop("seccompProfile"),
        s["containers"][0]["securityContext"].pop("seccompProfile"),
    ),
    "seccomp-unconfined": lambda s: s["containers"][0]["securityContext"].__setitem__(
        "seccompProfile", {"type": "Unconfined"}
    ),
    "caps-not-dropped": lambda s: s["containers"][0]["securityContext"].__setitem__("capabilities", {}),
    "caps-added": lambda s: s["containers"][0]["securityContext"]["capabilities"].__setitem__("add", ["NET_ADMIN"]),
    "host-network": lambda s: s.__setitem__("hostNetwork", True),
    "host-pid": lambda s: s.__setitem__("hostPID", True),
    "host-ipc": lambda s: s.__setitem__("hostIPC", True),
    "host-path": lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    "nfs-volume": lambda s: s["volumes"].append({"name": "nfs", "nfs": {"server": "x", "path": "/"}}),
    "host-port": lambda s: s["containers"][0].setdefault("ports", []).append({"containerPort": 80, "hostPort": 80}),
    "unsafe-sysctl": lambda s: s["securityContext"].__setitem__("sysctls", [{"name": "kernel.msgmax", "value": "1"}]),
    "proc-mount": lambda s: s["containers"][0]["securityContext"].__setitem__("procMount", "Unmasked"),
    "selinux-user": lambda s: s["securityContext"].__setitem__("seLinuxOptions", {"user": "system_u"}),
    "apparmor": lambda s: s["containers"][0]["securityContext"].__setitem__("appArmorProfile", {"type": "Unconfined"}),
    "ephemeral-container": lambda s: s.__setitem__("ephemeralContainers", [{"name": "debug", "image": "busybox"}]),
}


@pytest.mark.parametrize("workload", ["Deployment", "Job"])
@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_restricted_checker_catches_a_broken_pod(breakage: str, workload: str):
    # Job: the MinIO bootstrap Job, whose image (MinIO's) runs as any non-root user too.
    template = _pod(workload, name="mlflow" if workload == "Deployment" else "minio")
    assert restricted_violations(template["spec"], template["metadata"]) == []
    BROKEN[breakage](template["spec"])
    assert restricted_violations(template["spec"], template["metadata"]), f"{breakage} went unnoticed"


def test_restricted_checker_reads_init_containers():
    template = _pod("Job", name="mlflow")
    assert template["spec"].get("initContainers"), "the migration Job is expected to have init containers"
    assert restricted_violations(template["spec"]) == []
    template["spec"]["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert any(v.startswith("initContainers/") for v in restricted_violations(template["spec"]))


def test_pod_templates_are_found_in_any_kind():
    cron = {
        "kind": "CronJob",
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "metadata": {},
                        "spec": {"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]},
                    }
                }
            }
        },
    }
    found = list(pod_templates(cron))
    assert [p for p, _, _ in found] == ["spec.jobTemplate.spec.template.spec"]
    assert restricted_violations(found[0][1])


# --------------------------------------------------------------------------- 5. the namespace enforces it
def namespace_violations(objects: list[dict], expected_name: str, operator_namespace: str | None = None) -> list[str]:
    """The stack namespace enforces `restricted` and holds every object; the operator's namespace
    (stacks that own the operator) is the only other object and holds nothing rendered here."""
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    expected = sorted([expected_name] + ([operator_namespace] if operator_namespace else []))
    if sorted(n["metadata"].get("name") for n in namespaces) != expected:
        return [f"expected exactly the Namespaces {expected}, found {[describe(n) for n in namespaces]}"]
    problems = []
    stack_namespace = next(n for n in namespaces if n["metadata"]["name"] == expected_name)
    label = (stack_namespace["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    if label != "restricted":
        problems.append(f"Namespace {expected_name}: pod-security.kubernetes.io/enforce is {label!r}, not 'restricted'")
    # The label protects only what lives in that namespace.
    problems += [
        f"{describe(o)} is in namespace {o['metadata'].get('namespace')!r}"
        for o in objects
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != expected_name
    ]
    return problems


def test_the_cluster_stacks_pods_and_namespace_are_restricted():
    """The plugin's pod meets Pod Security `restricted`, which the operator's namespace enforces."""
    objects = rendered(CLUSTER_STACK).objects
    templates = [(describe(o), t) for o in objects for t in pod_templates(o)]
    assert [name for name, _ in templates] and {o["kind"] for o in objects if o["kind"] in POD_BEARING_KINDS} == {
        "Deployment"
    }
    problems = [
        f"{name} {path}: {p}" for name, (path, spec, meta) in templates for p in restricted_violations(spec, meta)
    ]
    assert not problems, problems
    [namespace] = [o for o in objects if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("stack", STACKS)
def test_namespace_enforces_restricted(stack: str):
    objects = rendered(stack).objects
    problems = namespace_violations(objects, f"mlflow-{stack}", "cnpg-system" if EXPECTED[stack].operator else None)
    assert not problems, f"{stack}:\n" + "\n".join(problems)


@pytest.mark.parametrize("label", ["baseline", None])
def test_namespace_check_catches_a_weaker_namespace(label: str | None):
    objects = copy.deepcopy(rendered("dev").objects)
    assert namespace_violations(objects, "mlflow-dev") == []
    labels = next(o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == "mlflow-dev")["metadata"][
        "labels"
    ]
    if label is None:
        del labels["pod-security.kubernetes.io/enforce"]
    else:
        labels["pod-security.kubernetes.io/enforce"] = label
    assert namespace_violations(objects, "mlflow-dev")


def test_namespace_check_catches_an_object_elsewhere_or_an_extra_namespace():
    objects = copy.deepcopy(rendered("dev").objects)
    assert namespace_violations(objects, "mlflow-dev", "cnpg-system")  # an operator namespace it does not render
    next(o for o in objects if o["kind"] == "ConfigMap")["metadata"]["namespace"] = "cnpg-system"
    assert any("ConfigMap" in p for p in namespace_violations(objects, "mlflow-dev"))
