"""Policy functions of the ``mlflow-platform-baseline`` policy pack.

The pack holds only what nothing else checks on the real stack before it is applied. Pod Security
``restricted`` is not here: the stack namespace enforces it server-side
(``pod-security.kubernetes.io/enforce: restricted``) and tests/test_manifests.py proves every
rendered pod passes it offline.

This module is deliberately free of any dependency on the Pulumi engine or on
``pulumi_policy``: every ``validate_*`` function takes an object that looks like
``pulumi_policy.ResourceValidationArgs`` (``resource_type``, ``props``, ``name``,
``urn`` ...) and a ``report_violation(message)`` callable, so the functions can
be unit tested with plain dicts and are wired into a ``PolicyPack`` by
``__main__.py``.

Unknown values
--------------
During ``pulumi preview`` the engine hands the pack resource inputs in which
values that depend on not-yet-created resources are *unknown* (represented by
sentinel strings, wrapped in proxies that raise on access).  The SDK's default
behaviour when a policy touches such a value is to skip the *whole* policy for
that resource with an advisory note.  To keep the checks useful during preview,
the props are first copied into plain Python data (keeping the sentinels) and
each individual check that meets an unknown value is skipped; every other check
still runs.  During ``pulumi up`` the inputs are fully resolved, so every check
runs on real values before the resource is created or updated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

ReportViolation = Callable[..., None]

# ---------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------

# Sentinels used by the Pulumi engine for values that are unknown during preview
# (pulumi_policy.proxy.UNKNOWN_*_VALUE; part of the engine's wire protocol).
_UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)


class _Unknown:
    """Marker for a value that is unknown during preview (one instance: ``UNKNOWN``)."""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<unknown>"


UNKNOWN = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def to_plain(value: Any) -> Any:
    """Deep-copy ``value`` into plain dicts/lists without triggering the
    unknown-value proxy of pulumi_policy; unknown sentinels become ``UNKNOWN``."""
    if isinstance(value, str):
        return UNKNOWN if value in _UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        inner: Any = value
        if not isinstance(value, dict):
            try:  # pulumi_policy proxies expose their target without unknown checks
                inner = value["__target"]
            except Exception:  # pylint: disable=broad-except
                inner = None
        if isinstance(inner, dict):
            return {k: to_plain(v) for k, v in inner.items()}
        return {k: to_plain(_raw_get(value, k)) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        inner_seq: Any = value
        if not isinstance(value, (list, tuple)):
            try:
                inner_seq = value["__target"]  # type: ignore[index]
            except Exception:  # pylint: disable=broad-except
                inner_seq = None
        if isinstance(inner_seq, (list, tuple)):
            return [to_plain(v) for v in inner_seq]
        return [to_plain(_raw_get(value, i)) for i in range(len(value))]
    return value


def _raw_get(mapping: Mapping, key: Any) -> Any:
    try:
        return mapping[key]
    except Exception:  # pylint: disable=broad-except  # unknown-value proxies raise
        return UNKNOWN


def dig(obj: Any, *path: Any, default: Any = None) -> Any:
    """Follow ``path`` through dicts/lists; ``UNKNOWN`` propagates."""
    cur = obj
    for key in path:
        if is_unknown(cur):
            return UNKNOWN
        if isinstance(cur, dict):
            if key not in cur or cur[key] is None:
                return default
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(key, int):
            if key >= len(cur):
                return default
            cur = cur[key]
        else:
            return default
    return cur


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return []


def _truthy(value: Any) -> bool:
    """Booleans may arrive as bools or (provider config) as JSON strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(value, (int, float)):
        return value != 0
    return False


def _props(args: Any) -> dict:
    props = to_plain(getattr(args, "props", None) or {})
    return props if isinstance(props, dict) else {}


def _label(args: Any) -> str:
    """Human readable resource reference used in every violation message."""
    rtype = getattr(args, "resource_type", "?")
    kind = rtype.rsplit(":", 1)[-1] if ":" in rtype else rtype
    return f"{kind} '{getattr(args, 'name', '?')}' ({rtype})"


# ---------------------------------------------------------------------------
# Pod specs and containers
# ---------------------------------------------------------------------------

POD_SPEC_PATHS = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:core/v1:ReplicationController": ("spec", "template", "spec"),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
POD_BEARING_TYPES = frozenset(POD_SPEC_PATHS)

CNPG_CLUSTER_TYPE = "kubernetes:postgresql.cnpg.io/v1:Cluster"
HELM_RELEASE_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
POSTGRESQL_PROVIDER_TYPE = "pulumi:providers:postgresql"
MINIO_PROVIDER_TYPE = "pulumi:providers:minio"


def pod_spec_of(resource_type: str, props: dict) -> Any:
    """The PodSpec of a pod-bearing resource (None if not pod-bearing or absent,
    UNKNOWN if not known during preview)."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    spec = dig(props, *path)
    if is_unknown(spec) or isinstance(spec, dict):
        return spec
    return None


class Container(NamedTuple):
    field: str  # containers | initContainers | ephemeralContainers
    name: str
    spec: dict

    @property
    def label(self) -> str:
        kind = {
            "containers": "container",
            "initContainers": "initContainer",
            "ephemeralContainers": "ephemeralContainer",
        }[self.field]
        return f"{kind} '{self.name}'"


def iter_containers(
    pod_spec: Any, fields: tuple[str, ...] = ("containers", "initContainers", "ephemeralContainers")
) -> Iterator[Container]:
    if not isinstance(pod_spec, dict):
        return
    for field in fields:
        for idx, c in enumerate(_as_list(pod_spec.get(field))):
            if not isinstance(c, dict):
                continue
            name = c.get("name")
            if not isinstance(name, str) or not name:
                name = f"{field}[{idx}]"
            yield Container(field, name, c)


def _pod_spec_or_skip(args: Any) -> dict | None:
    if getattr(args, "resource_type", None) not in POD_BEARING_TYPES:
        return None
    spec = pod_spec_of(args.resource_type, _props(args))
    return spec if isinstance(spec, dict) else None


# ---------------------------------------------------------------------------
# 1. resource-limits
# ---------------------------------------------------------------------------
# Why: the PR budget (settings.py) sums requests, and a pod without limits can starve its
# neighbours on a shared cluster. checkov sees only the test stacks; this sees every real one.

RESOURCE_LIMITS_DESCRIPTION = (
    "Every container and initContainer must declare resources.requests.cpu, "
    "resources.requests.memory, resources.limits.cpu and resources.limits.memory."
)

_REQUIRED_RESOURCES = (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory"))


def _quantity_set(value: Any) -> bool:
    if is_unknown(value):
        return True  # decided at update time
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return value > 0
    return isinstance(value, str) and value.strip() not in ("", "0")


def validate_resource_limits(args: Any, report_violation: ReportViolation) -> None:
    pod = _pod_spec_or_skip(args)
    if pod is None:
        return
    where = _label(args)
    # Ephemeral (debug) containers cannot carry resources, so they are not checked.
    for c in iter_containers(pod, ("containers", "initContainers")):
        resources = c.spec.get("resources")
        if is_unknown(resources):
            continue
        missing = [f"{kind}.{res}" for kind, res in _REQUIRED_RESOURCES if not _quantity_set(dig(resources, kind, res))]
        if missing:
            report_violation(
                f"{where} {c.label}: missing resources {', '.join(missing)}. Set "
                f"resources.requests.{{cpu,memory}} and resources.limits.{{cpu,memory}}."
            )


# ---------------------------------------------------------------------------
# 2. no-plaintext-secrets-in-env
# ---------------------------------------------------------------------------
# Why: neither Pod Security nor checkov looks at env values; a literal password there ends up in
# the rendered manifest, the Pulumi state and `kubectl describe`.

NO_PLAINTEXT_SECRETS_DESCRIPTION = (
    "Containers must not carry secrets in plain text: env vars whose names look secret "
    "(PASSWORD, PASSWD, SECRET, TOKEN, ACCESS_KEY, PRIVATE_KEY, CREDENTIAL) must use valueFrom "
    "(secretKeyRef), and no env value, command or args may embed a URI with a password "
    "(scheme://user:password@host)."
)

SECRET_ENV_NAME_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
# scheme://user:password@  (password non-empty; stops at whitespace, '/', '?', '#', '@')
USERINFO_URI_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<user>[^\s/?#@:]*):(?P<password>[^\s/?#@]+)@")
# Passwords that are only a reference to another variable are not plaintext:
# $(VAR) is expanded by the kubelet from (secret-sourced) env, ${VAR}/$VAR by a shell.
_VAR_REFERENCE_RE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


def find_password_uris(text: Any) -> list[str]:
    """Masked ``scheme://user:***@`` strings for every URI in ``text`` whose
    userinfo carries a literal password."""
    if not isinstance(text, str):
        return []
    found = []
    for m in USERINFO_URI_RE.finditer(text):
        if _VAR_REFERENCE_RE.fullmatch(m.group("password")):
            continue
        found.append(f"{m.group('scheme')}://{m.group('user')}:***@")
    return found


def _labelled_containers(args: Any):
    """(container, "<resource> <container>" label) for every container of a pod-bearing resource."""
    pod = _pod_spec_or_skip(args)
    if pod is None:
        return
    where = _label(args)
    for c in iter_containers(pod):
        yield c, f"{where} {c.label}"


def validate_no_plaintext_secrets_in_env(args: Any, report_violation: ReportViolation) -> None:
    for c, cw in _labelled_containers(args):
        for env in _as_list(c.spec.get("env")):
            if not isinstance(env, dict):
                continue
            name = env.get("name")
            if not isinstance(name, str):
                continue
            value = env.get("value")
            has_value_from = env.get("valueFrom") is not None
            if SECRET_ENV_NAME_RE.search(name) and not has_value_from:
                report_violation(
                    f"{cw}: env var '{name}' looks like a secret but is set as a plain value. "
                    f"Store it in a Kubernetes Secret and use valueFrom.secretKeyRef."
                )
            for uri in find_password_uris(value):
                report_violation(
                    f"{cw}: env var '{name}' embeds a password in a URI ({uri}). Remove the "
                    f"password from the URI and pass it via valueFrom.secretKeyRef (e.g. "
                    f"reference it as $(VAR) or use PGPASSWORD/AWS_SECRET_ACCESS_KEY from a Secret)."
                )
        for field in ("command", "args"):
            for idx, item in enumerate(_as_list(c.spec.get(field))):
                for uri in find_password_uris(item):
                    report_violation(
                        f"{cw}: {field}[{idx}] embeds a password in a URI ({uri}). Reference a "
                        f"secret-sourced env var instead, e.g. postgresql://user:$(DB_PASSWORD)@host/db."
                    )


# ---------------------------------------------------------------------------
# 3. pinned-images
# ---------------------------------------------------------------------------
# Why: a mutable tag changes what runs without a diff. checkov checks container images only;
# this also covers the CNPG operand image and Helm chart versions.

PINNED_IMAGES_DESCRIPTION = (
    "Every container image must be pinned to an explicit tag other than 'latest' or to a digest "
    "(also CloudNativePG Cluster spec.imageName), and Helm releases must pin an exact chart version."
)

_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_EXACT_CHART_VERSION_RE = re.compile(r"v?\d+(\.\d+){0,2}(-[0-9A-Za-z.\-]+)?(\+[0-9A-Za-z.\-]+)?")


def image_pin_problem(image: Any) -> str | None:
    """None when ``image`` is pinned, otherwise a short description of the problem."""
    if is_unknown(image):
        return None
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    image = image.strip()
    if "@" in image:
        digest = image.split("@", 1)[1]
        if _DIGEST_RE.fullmatch(digest):
            return None
        return f"has a malformed digest in '{image}'"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"'{image}' has no tag (implicitly ':latest')"
    tag = last.rsplit(":", 1)[1]
    if not tag:
        return f"'{image}' has an empty tag"
    if tag.lower() == "latest":
        return f"'{image}' uses the mutable ':latest' tag"
    return None


def validate_pinned_images(args: Any, report_violation: ReportViolation) -> None:
    rtype = getattr(args, "resource_type", None)
    where = _label(args) if rtype else ""
    if rtype in POD_BEARING_TYPES:
        pod = _pod_spec_or_skip(args)
        for c in iter_containers(pod):
            problem = image_pin_problem(c.spec.get("image"))
            if problem:
                report_violation(
                    f"{where} {c.label}: image {problem}. Pin an explicit version tag "
                    f"(e.g. 'repo/name:1.2.3') or a digest ('repo/name@sha256:...')."
                )
    elif rtype == CNPG_CLUSTER_TYPE:
        image = dig(_props(args), "spec", "imageName")
        if image is not None:
            problem = image_pin_problem(image)
            if problem:
                report_violation(
                    f"{where}: spec.imageName {problem}. Pin an explicit PostgreSQL image tag "
                    f"(e.g. 'ghcr.io/cloudnative-pg/postgresql:16.4') or a digest."
                )
    elif rtype in HELM_RELEASE_TYPES:
        version = _props(args).get("version")
        if is_unknown(version):
            return
        if not isinstance(version, str) or not version.strip():
            report_violation(
                f"{where}: chart version is not set, so the newest chart would be installed. "
                f"Set `version` to an exact chart version (e.g. '0.22.1')."
            )
        elif not _EXACT_CHART_VERSION_RE.fullmatch(version.strip()):
            report_violation(
                f"{where}: chart version '{version}' is not an exact version. "
                f"Set `version` to an exact chart version (e.g. '0.22.1'), not a range or 'latest'."
            )


# ---------------------------------------------------------------------------
# 4. tls-required
# ---------------------------------------------------------------------------
# Why: every hop to PostgreSQL and MinIO must verify the server; nothing server-side enforces it.

TLS_REQUIRED_DESCRIPTION = (
    "Connections must use verified TLS: CloudNativePG Clusters must use their own server "
    "certificate/CA (spec.certificates.serverTLSSecret/serverCASecret) and reject non-TLS clients "
    "in pg_hba (hostnossl ... reject); the postgresql provider must use sslmode=verify-full; the "
    "minio provider must use minioSsl=true without minioInsecure; containers must not set "
    "MLFLOW_S3_IGNORE_TLS=true, a plain http:// S3 endpoint, or a PGSSLMODE/sslmode weaker than verify-full."
)

_HBA_METHODS = frozenset(
    {
        "trust",
        "reject",
        "scram-sha-256",
        "md5",
        "password",
        "gss",
        "sspi",
        "ident",
        "peer",
        "pam",
        "ldap",
        "radius",
        "cert",
        "bsd",
        "oauth",
    }
)
_HBA_ALL_ADDRESSES = frozenset({"all", "0.0.0.0/0", "::/0"})
_SSLMODE_PARAM_RE = re.compile(r"(?:^|[?&\s;])sslmode=([A-Za-z-]+)", re.IGNORECASE)
_S3_ENDPOINT_ENV = frozenset({"MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"})


def _hba_rule(line: str) -> tuple[str, str, str, str | None, str | None] | None:
    """(type, database, user, address, method) of one pg_hba line, None for blanks/comments."""
    tokens = line.split("#", 1)[0].split()
    if not tokens:
        return None
    kind = tokens[0].lower()
    if kind == "local":
        method = tokens[3].lower() if len(tokens) > 3 else None
        return kind, (tokens[1] if len(tokens) > 1 else ""), (tokens[2] if len(tokens) > 2 else ""), None, method
    if len(tokens) < 4:
        return kind, "", "", None, None
    method = next((t.lower() for t in tokens[4:] if t.lower() in _HBA_METHODS), None)
    return kind, tokens[1], tokens[2], tokens[3], method


def _check_pg_hba(pg_hba: Any) -> str | None:
    """None when pg_hba rejects every non-TLS TCP connection before any rule admits it."""
    if is_unknown(pg_hba):
        return None
    admitting_before: str | None = None
    for entry in _as_list(pg_hba):
        if is_unknown(entry):
            return None
        if not isinstance(entry, str):
            continue
        rule = _hba_rule(entry)
        if rule is None:
            continue
        kind, database, user, address, method = rule
        if (
            kind == "hostnossl"
            and method == "reject"
            and database == "all"
            and user == "all"
            and address in _HBA_ALL_ADDRESSES
        ):
            if admitting_before:
                return (
                    f"the rule '{admitting_before}' comes before the hostnossl reject rule and "
                    f"admits non-TLS connections (pg_hba is first-match). Move "
                    f"'hostnossl all all all reject' to the top of spec.postgresql.pg_hba"
                )
            return None
        if kind in ("host", "hostnossl") and method not in (None, "reject") and admitting_before is None:
            admitting_before = entry.strip()
    return (
        "spec.postgresql.pg_hba has no rule rejecting non-TLS connections. Add "
        "'hostnossl all all all reject' (or 0.0.0.0/0) as the first pg_hba entry"
    )


def _validate_cnpg_tls(args: Any, report_violation: ReportViolation) -> None:
    where = _label(args)
    spec = dig(_props(args), "spec")
    if is_unknown(spec):
        return
    spec = spec if isinstance(spec, dict) else {}
    certs = spec.get("certificates")
    if not is_unknown(certs):
        certs = certs if isinstance(certs, dict) else {}
        for field in ("serverTLSSecret", "serverCASecret"):
            val = certs.get(field)
            if not is_unknown(val) and (not isinstance(val, str) or not val.strip()):
                report_violation(
                    f"{where}: spec.certificates.{field} is not set. Create a kubernetes.io/tls "
                    f"Secret from the platform CA and reference it in spec.certificates.{field} so "
                    f"clients can verify the server (sslmode=verify-full)."
                )
    problem = _check_pg_hba(dig(spec, "postgresql", "pg_hba"))
    if problem:
        report_violation(f"{where}: {problem}.")


def _validate_postgresql_provider(args: Any, report_violation: ReportViolation) -> None:
    props = _props(args)
    mode = props.get("sslmode")
    if mode is None:
        mode = props.get("sslMode")
    if is_unknown(mode):
        return
    if not isinstance(mode, str) or mode.strip().lower() != "verify-full":
        current = "unset (defaults to 'prefer')" if mode is None else f"'{mode}'"
        report_violation(
            f"{_label(args)}: sslmode is {current}. Set sslmode='verify-full' (and sslrootcert "
            f"to the CA that signed the PostgreSQL server certificate)."
        )


def _validate_minio_provider(args: Any, report_violation: ReportViolation) -> None:
    props = _props(args)
    where = _label(args)
    ssl = props.get("minioSsl")
    if not is_unknown(ssl) and not _truthy(ssl):
        report_violation(
            f"{where}: minioSsl is {'unset' if ssl is None else repr(ssl)}, so the provider talks to "
            f"MinIO over plain HTTP. Set minio_ssl=True and serve MinIO with a TLS certificate."
        )
    insecure = props.get("minioInsecure")
    if not is_unknown(insecure) and _truthy(insecure):
        report_violation(
            f"{where}: minioInsecure is true, which disables certificate verification. Remove "
            f"minio_insecure and trust the CA via minio_cacert_file instead."
        )


def _validate_container_tls(args: Any, report_violation: ReportViolation) -> None:
    for c, cw in _labelled_containers(args):
        texts: list[tuple[str, Any]] = []
        for env in _as_list(c.spec.get("env")):
            if not isinstance(env, dict) or not isinstance(env.get("name"), str):
                continue
            name, value = env["name"], env.get("value")
            texts.append((f"env var '{name}'", value))
            if is_unknown(value):
                continue
            upper = name.upper()
            if upper == "MLFLOW_S3_IGNORE_TLS" and _truthy(value):
                report_violation(
                    f"{cw}: env MLFLOW_S3_IGNORE_TLS={value!r} disables TLS verification towards "
                    f"S3/MinIO. Remove it and trust the MinIO CA (e.g. AWS_CA_BUNDLE)."
                )
            elif upper == "PGSSLMODE":
                if env.get("valueFrom") is not None:
                    report_violation(
                        f"{cw}: env PGSSLMODE comes from valueFrom and cannot be verified. Set it "
                        f"as a literal value 'verify-full'."
                    )
                elif not isinstance(value, str) or value.strip().lower() != "verify-full":
                    report_violation(
                        f"{cw}: env PGSSLMODE={value!r} is weaker than verify-full. Set "
                        f"PGSSLMODE=verify-full (and PGSSLROOTCERT to the PostgreSQL CA)."
                    )
            elif upper in _S3_ENDPOINT_ENV and isinstance(value, str) and value.strip().lower().startswith("http://"):
                report_violation(f"{cw}: env {name}={value!r} uses plain http. Use an https:// endpoint for MinIO/S3.")
        for field in ("command", "args"):
            for idx, item in enumerate(_as_list(c.spec.get(field))):
                texts.append((f"{field}[{idx}]", item))
        for what, text in texts:
            if not isinstance(text, str):
                continue
            for m in _SSLMODE_PARAM_RE.finditer(text):
                if m.group(1).lower() != "verify-full":
                    report_violation(
                        f"{cw}: {what} sets sslmode={m.group(1)}, weaker than verify-full. Use sslmode=verify-full."
                    )


def validate_tls_required(args: Any, report_violation: ReportViolation) -> None:
    rtype = getattr(args, "resource_type", None)
    if rtype == CNPG_CLUSTER_TYPE:
        _validate_cnpg_tls(args, report_violation)
    elif rtype == POSTGRESQL_PROVIDER_TYPE:
        _validate_postgresql_provider(args, report_violation)
    elif rtype == MINIO_PROVIDER_TYPE:
        _validate_minio_provider(args, report_violation)
    elif rtype in POD_BEARING_TYPES:
        _validate_container_tls(args, report_violation)


# ---------------------------------------------------------------------------
# 5. protected-data-in-prod
# ---------------------------------------------------------------------------
# Why: in prod a mistaken destroy, rename or replacement must not delete the database or the
# bucket. The program sets protect=True from its profile; this catches a resource that misses it.
# A policy pack cannot read stack config, so "prod" is the stack name's default profile
# (settings.profile_for_stack: a stack named prod* is prod).

PROTECTED_DATA_DESCRIPTION = (
    "In a prod stack (stack name starting with 'prod'), every resource that holds data must be "
    "protected (protect=True): CloudNativePG Cluster and Database, StatefulSets and "
    "PersistentVolumeClaims, and the external PostgreSQL databases and MinIO buckets."
)

DATA_TYPES = frozenset(
    {
        CNPG_CLUSTER_TYPE,
        "kubernetes:postgresql.cnpg.io/v1:Database",
        "kubernetes:apps/v1:StatefulSet",  # MinIO: its volumes hold the artifacts
        "kubernetes:core/v1:PersistentVolumeClaim",
        "postgresql:index/database:Database",
        "minio:index/s3Bucket:S3Bucket",
    }
)


def stack_of(urn: Any) -> str:
    """The stack name in ``urn:pulumi:<stack>::<project>::<type>::<name>`` ("" if not a URN)."""
    if not isinstance(urn, str) or not urn.startswith("urn:pulumi:"):
        return ""
    return urn[len("urn:pulumi:") :].split("::", 1)[0]


def validate_protected_data_in_prod(args: Any, report_violation: ReportViolation) -> None:
    if getattr(args, "resource_type", None) not in DATA_TYPES:
        return
    if not stack_of(getattr(args, "urn", None)).startswith("prod"):
        return
    if getattr(getattr(args, "opts", None), "protect", False) is not True:
        report_violation(
            f"{_label(args)}: holds data in prod stack '{stack_of(args.urn)}' but is not protected. "
            f"Create it with pulumi.ResourceOptions(protect=True, retain_on_delete=True)."
        )


# ---------------------------------------------------------------------------
# Registry used by __main__.py and the tests
# ---------------------------------------------------------------------------


class PolicySpec(NamedTuple):
    name: str
    description: str
    validate: Callable[[Any, ReportViolation], None]


POLICY_SPECS: tuple[PolicySpec, ...] = (
    PolicySpec("resource-limits", RESOURCE_LIMITS_DESCRIPTION, validate_resource_limits),
    PolicySpec("no-plaintext-secrets-in-env", NO_PLAINTEXT_SECRETS_DESCRIPTION, validate_no_plaintext_secrets_in_env),
    PolicySpec("pinned-images", PINNED_IMAGES_DESCRIPTION, validate_pinned_images),
    PolicySpec("tls-required", TLS_REQUIRED_DESCRIPTION, validate_tls_required),
    PolicySpec("protected-data-in-prod", PROTECTED_DATA_DESCRIPTION, validate_protected_data_in_prod),
)

POLICY_NAMES = tuple(p.name for p in POLICY_SPECS)
