"""What makes one configuration value valid, as pydantic validators that say the problem and the fix.

Each check raises `invalid(problem, fix)`; config.reader turns it into the one-line message
`  - mlflow-platform:<key> = <value>: <problem>. Fix: <fix>` that `make check` and `pulumi preview` print.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from sizing import parse_quantity, quantity

# Relative paths in configuration are the project directory's, where the CLI runs the program.
PROJECT_DIR = Path(__file__).resolve().parent.parent
PROFILES = ("dev", "prod", "pr")
# The profile of the one stack per cluster that owns what is cluster-wide.
CLUSTER_PROFILE = "cluster"
SWITCHES = ("auto", "on", "off")
POSTGRES_MODES = ("inCluster", "external")
OBJECT_STORE_MODES = ("inCluster", "external", "externalMinio")
ARTIFACT_TRANSFER_MODES = ("proxied", "direct")
TLS_ALGORITHMS = ("ECDSA", "RSA")
PUBLISH_MODES = ("ingress", "httpRoute", "none")
# Before 3.18 MLflow advertises presigned multipart transfers for every S3 destination (no opt-in):
# clients of a proxied stack would be sent to an endpoint they cannot reach.
MIN_MLFLOW_VERSION = (3, 18, 0)
S3_MIN_PART_BYTES = 5 * 2**20
S3_MAX_PART_BYTES = 5 * 2**30

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_STORAGE = re.compile(r"^([1-9][0-9]*)(Mi|Gi|Ti)$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_MINIO_TAG = re.compile(r"^RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def invalid(problem: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{problem}", {"problem": problem, "fix": fix})


def check(valid: Callable[[Any], bool], problem: str, fix: str) -> AfterValidator:
    def validate(value: Any) -> Any:
        if not valid(value):
            raise invalid(problem, fix)
        return value

    return AfterValidator(validate)


def between(low: int, high: int, fix: str | None = None) -> AfterValidator:
    return check(
        lambda v: low <= v <= high, f"must be between {low} and {high}", fix or f"set a value from {low} to {high}"
    )


def one_of(choices: tuple[str, ...], problem: str = "unknown value", fix: str | None = None) -> AfterValidator:
    return check(lambda v: v in choices, problem, fix or f"use one of {', '.join(choices)}")


def matches(pattern: str) -> Callable[[str], bool]:
    return lambda value: re.fullmatch(pattern, value) is not None


def empty_or(valid: Callable[[str], bool]) -> Callable[[str], bool]:
    """The check of an optional key: empty (unset), or valid."""
    return lambda value: value == "" or valid(value)


# --------------------------------------------------------------------------- predicates
def is_storage_size(value: str) -> bool:
    return bool(_STORAGE.match(value))


def is_version(value: str) -> bool:
    return bool(_VERSION.match(value))


def version_tuple(version: str) -> tuple[int, ...]:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and all(_DNS_LABEL.match(label) for label in value.split("."))


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_dns_name(value: str) -> bool:
    labels = value.split(".")
    return (
        len(value) <= 253
        and len(labels) >= 2
        and all(_DNS_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_bucket_name(value: str) -> bool:
    """S3 bucket naming rules (also MinIO's)."""
    return (
        3 <= len(value) <= 63
        and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", value) is not None
        and ".." not in value
        and ".-" not in value
        and "-." not in value
        and not is_ip(value)
        and not value.startswith(("xn--", "sthree-"))
        and not value.endswith(("-s3alias", "--ol-s3"))
    )


def is_pem_certificates(text: str) -> bool:
    """One or more PEM certificate blocks whose bodies decode."""
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        return False
    try:
        for block in blocks:
            ssl.PEM_cert_to_DER_cert(block)
    except ValueError:
        return False
    return True


def is_https_endpoint(value: str) -> bool:
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port_ok
        and (is_dns_name(host) or is_ip(host))
        and parts.path in ("", "/")
        and not parts.query
        and not parts.username
    )


def is_label_map(value: Any) -> bool:
    """Kubernetes labels: [prefix/]name keys (prefix a DNS subdomain) and string values of 63 at most."""

    def key_ok(key: str) -> bool:
        prefix, _, name = key.rpartition("/")
        return bool(_LABEL_NAME.match(name)) and (not prefix or is_dns_subdomain(prefix))

    return isinstance(value, dict) and all(
        isinstance(k, str) and key_ok(k) and isinstance(v, str) and bool(_LABEL_VALUE.match(v))
        for k, v in value.items()
    )


# --------------------------------------------------------------------------- cron and time
# A hand-written check, not croniter (7.0, maintained): croniter accepts backwards ranges (5-1) and
# any field count that Kubernetes' CronJob and CloudNativePG's ScheduledBackup (robfig/cron) refuse,
# and its errors do not name the field.
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_NAMES = {
    "month": ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    "dow": ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
}
# (name, low, high) of the five standard fields; CloudNativePG's ScheduledBackup puts seconds first.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("dow", 0, 7))


def cron_problem(value: str, seconds: bool = False) -> str | None:
    """Why `value` is not a cron schedule (five fields, or six with seconds first), else None."""
    if value in _CRON_MACROS:
        return None
    fields = value.split()
    specs = ((("second", 0, 59),) if seconds else ()) + _CRON_FIELDS
    if len(fields) != len(specs):
        return f"has {len(fields)} fields, expected {len(specs)} ({' '.join(name for name, _, _ in specs)})"
    for text, (name, low, high) in zip(fields, specs, strict=True):
        names = _CRON_NAMES.get(name if name != "day of month" else "", ())
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return f"{name} field {text!r}: step {step!r} is not a positive number"
            if base == "*" or (base == "?" and name in ("day of month", "dow")):
                continue
            bounds = base.split("-")
            if len(bounds) > 2:
                return f"{name} field {text!r} is not a value, range or step"
            numbers = []
            for bound in bounds:
                if bound.upper() in names:
                    numbers.append(names.index(bound.upper()) + (1 if name == "month" else 0))
                elif bound.isdigit() and low <= int(bound) <= high:
                    numbers.append(int(bound))
                else:
                    return f"{name} field {text!r}: {bound!r} is not in {low}-{high}"
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                return f"{name} field {text!r}: range runs backwards"
    return None


def _cron(seconds: bool, fix: str) -> AfterValidator:
    def validate(value: str) -> str:
        problem = cron_problem(value, seconds)
        if problem:
            raise invalid(f"not a {'six' if seconds else 'five'}-field cron schedule ({problem})", fix)
        return value

    return AfterValidator(validate)


def parse_rfc3339(value: str) -> _dt.datetime | None:
    """An RFC 3339 timestamp with its offset (Z or +hh:mm), else None."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _past_time(value: str) -> str:
    if not value:
        return value
    when = parse_rfc3339(value)
    if when is None:
        raise invalid(
            "not an RFC 3339 time with an offset", "use e.g. 2026-05-04T10:42:00+02:00 or 2026-05-04T08:42:00Z"
        )
    if when > _dt.datetime.now(_dt.UTC):
        raise invalid(
            "is in the future: nothing was archived there yet",
            "use a time in the past, or remove it to replay the whole archive",
        )
    return value


# --------------------------------------------------------------------------- images and files
def pinned_image(
    tag_rule: Callable[[str], bool] = lambda tag: True, tag_hint: str = "an explicit version tag"
) -> AfterValidator:
    def valid(value: str) -> bool:
        match = _IMAGE.match(value)
        if not match:
            return False
        if match["digest"]:
            return True
        tag = match["tag"]
        return bool(tag) and tag != "latest" and tag_rule(tag)

    return check(valid, "image must be pinned", f"use repository:tag with {tag_hint}, or repository@sha256:<digest>")


def project_path(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_DIR / candidate


def read_ca_bundle(path: str) -> str:
    """The PEM text of a CA bundle key (already validated): "" when unset."""
    return (PROJECT_DIR / path).read_text(encoding="utf-8") if path else ""


def _ca_file(path: str) -> str:
    """A CA bundle committed to the repository: read, never written."""
    if not path:
        return path
    fix = "commit the PEM bundle to the repository and give its path relative to the project directory"
    candidate = Path(path)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise invalid("must be a path inside the project directory", fix)
    try:
        pem = (PROJECT_DIR / candidate).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise invalid("file not found or not readable", fix) from None
    if not is_pem_certificates(pem):
        raise invalid("not a PEM file of CA certificates", "use a file of -----BEGIN CERTIFICATE----- blocks")
    return path


def _mlflow_version(value: str) -> str:
    if not is_version(value):
        raise invalid(
            "not an MLflow version", "use X.Y.Z, e.g. 3.18.0 (the image tag v<version>-full is derived from it)"
        )
    if version_tuple(value) < MIN_MLFLOW_VERSION:
        raise invalid(
            "MLflow before 3.18.0 advertises presigned multipart transfers for "
            "any S3 destination, sending clients to an object store endpoint they cannot reach",
            "use 3.18.0 or newer (the default)",
        )
    return value


def _size_at_least(low: int, high: int) -> Callable[[str], bool]:
    return lambda v: is_storage_size(v) and low <= quantity(v) <= high


# --------------------------------------------------------------------------- the value types of the model
_BUCKET_FIX = "use 3-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
BucketName = Annotated[str, check(is_bucket_name, "not a valid S3 bucket name", _BUCKET_FIX)]
StorageSize = Annotated[
    str, check(is_storage_size, "not a storage size", "use a whole number with a binary suffix, e.g. 1Gi, 500Mi or 1Ti")
]
CpuQuantity = Annotated[
    str,
    check(
        lambda v: (parse_quantity(v) or 0) > 0, "not a positive Kubernetes quantity", "use a quantity such as 100m or 1"
    ),
]
MemoryQuantity = Annotated[
    str,
    check(
        lambda v: (parse_quantity(v) or 0) > 0,
        "not a positive Kubernetes quantity",
        "use a quantity such as 256Mi or 1Gi",
    ),
]
MultipartThreshold = Annotated[
    str,
    check(
        _size_at_least(S3_MIN_PART_BYTES, 2**63), "not a size of at least 5Mi", "use a binary size such as 100Mi or 1Gi"
    ),
]
MultipartChunkSize = Annotated[
    str,
    check(
        _size_at_least(S3_MIN_PART_BYTES, S3_MAX_PART_BYTES),
        "S3 multipart parts are 5Mi to 5Gi",
        "use a binary size such as 10Mi or 100Mi",
    ),
]
MlflowVersion = Annotated[str, AfterValidator(_mlflow_version)]
ImageRepository = Annotated[
    str,
    check(
        lambda v: bool(_IMAGE.match(v)) and ":" not in v.rsplit("/", 1)[-1] and "@" not in v,
        "must be a repository without tag",
        "use e.g. ghcr.io/mlflow/mlflow; the tag comes from mlflowVersion",
    ),
]
PostgresImage = Annotated[str, pinned_image(lambda tag: tag[0].isdigit(), "a PostgreSQL version tag such as 17.5")]
MinioImage = Annotated[
    str,
    pinned_image(lambda tag: bool(_MINIO_TAG.match(tag)), "a MinIO release tag such as RELEASE.2025-09-07T16-13-09Z"),
]
PluginImage = Annotated[str, pinned_image(tag_hint="the plugin's release tag, e.g. v0.14.0")]
MinioReplicas = Annotated[
    int,
    check(
        lambda v: v == 1 or 4 <= v <= 16,
        "MinIO runs either one server or an erasure set of 4 to 16",
        "set 1 (single drive) or 4..16 (distributed, HA)",
    ),
]
CaFile = Annotated[str, AfterValidator(_ca_file)]
HttpsEndpoint = Annotated[
    str,
    check(
        empty_or(is_https_endpoint),
        "not an https URL of a host (and optional port)",
        "use e.g. https://s3.eu-west-1.amazonaws.com or https://minio.example.com:9000; plain http is refused",
    ),
]
BackupEndpoint = Annotated[
    str,
    check(
        empty_or(is_https_endpoint),
        "not an https URL of a host (and optional port)",
        "use e.g. https://s3.eu-west-1.amazonaws.com; plain http is refused",
    ),
]
BackupSchedule = Annotated[str, _cron(True, "use seconds first, e.g. '0 0 2 * * *' (02:00:00 daily) or @daily")]
GcSchedule = Annotated[
    str, _cron(False, "use minute hour day-of-month month day-of-week, e.g. '30 3 * * *', or @daily")
]
RestoreTargetTime = Annotated[str, AfterValidator(_past_time)]
RenderDirectory = Annotated[
    str,
    check(
        lambda v: v == "" or Path(v) != Path("."),
        "would write manifests over the project",
        "use a directory of its own such as rendered/dev",
    ),
]
ClusterStackName = Annotated[
    str,
    check(
        empty_or(matches(r"([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+")),
        "not a stack name",
        "use the cluster stack's name (cluster), or org/project/stack, or leave it empty when someone else "
        "manages the operator (then cnpgOperatorNamespace says where it runs)",
    ),
]
ChartRepository = Annotated[
    str,
    check(
        lambda v: urlsplit(v).scheme in ("https", "http", "oci") and bool(urlsplit(v).netloc),
        "not a chart repository URL",
        "use e.g. https://cloudnative-pg.github.io/charts, or set cnpgChartPath for a local chart",
    ),
]
MonitoringLabels = Annotated[
    dict[str, Any],
    check(
        is_label_map,
        "not a map of Kubernetes labels",
        "use label keys and string values, e.g. `pulumi config set --path monitoringLabels.release prometheus`",
    ),
]
