"""Stack configuration: read once, validated as a whole, turned into typed settings.

Pulumi.yaml's `config:` block is the one declaration of every key (type, default, description);
this module reads the defaults from it so the two can never disagree. Every value is checked
before any resource is registered: a bad stack fails `pulumi preview` with one message that names
each key, its value and the fix, and nothing is created.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import ipaddress
import json
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import yaml
from pulumi.runtime import config as runtime_config

from components.barman_cloud_plugin import BarmanCloudPluginArgs
from components.cnpg_operator import CnpgOperatorArgs
from components.external_object_store import ExternalObjectStoreArgs
from components.external_postgres import ExternalPostgresArgs
from components.k8s import labels as _k8s_labels
from components.k8s import selector as _k8s_selector
from components.minio_store import BOOTSTRAP_CPU_REQUEST, BOOTSTRAP_MEMORY_REQUEST, MinioStoreArgs
from components.minio_store import SERVICE as MINIO_SERVICE
from components.mlflow_gc import GC_CPU_REQUEST, GC_MEMORY_REQUEST, MlflowGarbageCollectorArgs
from components.mlflow_server import MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST, MlflowServerArgs
from components.mlflow_server import SERVER_LABELS as _MLFLOW_SERVER_LABELS
from components.monitoring import PlatformMonitoringArgs
from components.platform_namespace import PlatformNamespaceArgs
from components.postgres_backup import BACKUP_SIDECAR_CPU_REQUEST, BACKUP_SIDECAR_MEMORY_REQUEST, PostgresBackupArgs
from components.postgres_cluster import PostgresClusterArgs
from tools import pulumi_yaml

PROJECT_FILE = Path(__file__).resolve().parent / "Pulumi.yaml"
PROJECT_NAME = "mlflow-platform"
PROFILES = ("dev", "prod", "pr")
# The stack that owns what is cluster-wide (the CloudNativePG operator, the Barman Cloud plugin).
CLUSTER_PROFILE = "cluster"
# CloudNativePG features the environments use: managed roles, Database objects, CNPG-I plugins.
MIN_OPERATOR_VERSION = (1, 26, 0)
POSTGRES_MODES = ("inCluster", "external")
JOB_RUNNER_MODES = ("auto", "on", "off")
ARTIFACT_TRANSFER_MODES = ("proxied", "direct")
# Before 3.18 MLflow advertises presigned multipart transfers for every S3 destination (no opt-in):
# clients of a proxied stack would be sent to an endpoint they cannot reach.
MIN_MLFLOW_VERSION = (3, 18, 0)
# One uvicorn worker's resident memory, and what one replica needs besides its workers.
WORKER_MEMORY_BYTES = 150 * 2**20
SERVER_BASE_MEMORY_BYTES = 128 * 2**20
# MLflow 3.18's job runner: 10 more processes (huey consumers), measured 1950 MiB PSS for a 1-worker
# server with it against 379 MiB without.
JOB_RUNNER_MEMORY_BYTES = 1600 * 2**20
S3_MIN_PART_BYTES = 5 * 2**20
S3_MAX_PART_BYTES = 5 * 2**30
OBJECT_STORE_MODES = ("inCluster", "external", "externalMinio")
_IN_CLUSTER_INSTEAD = (
    "the runner no longer connects to in-cluster data services: the CloudNativePG operator "
    "creates MLflow's role and databases, and a Job inside the cluster creates the bucket and user"
)
# Keys of earlier versions: a stack file that still sets one fails with what replaced it.
REMOVED_KEYS = {
    **{
        key: _IN_CLUSTER_INSTEAD
        for key in (
            "postgresAdminAccess",
            "postgresAdminNodePort",
            "minioAdminAccess",
            "minioAdminHost",
            "minioAdminNodePort",
            "adminSourceRanges",
        )
    },
    "postgresAdminHost": _IN_CLUSTER_INSTEAD + " (for an existing server use postgresMode: external with postgresHost)",
    "installCnpgOperator": "the cluster stack owns the CloudNativePG operator (`make up STACK=cluster`); "
    "environment stacks find it through clusterStack (README: Quickstart)",
}
TLS_ALGORITHMS = ("ECDSA", "RSA")
# PR stacks share a cluster with many others: their steady state plus the migration Job must fit.
PR_MEMORY_BUDGET_BYTES = 1024**3
PR_CPU_BUDGET_MILLICORES = 500

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_STORAGE = re.compile(r"^([1-9][0-9]*)(Mi|Gi|Ti)$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_MINIO_TAG = re.compile(r"^RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$")
_PR_STACK = re.compile(r"^pr-[0-9]+$")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)
_UNITS = {
    None: 1,
    "m": 0.001,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; RunError makes Pulumi print it without a stack trace."""


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def as_k8s(self) -> dict:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class TlsSettings:
    algorithm: str
    validity_days: int
    early_renewal_days: int
    self_signed: bool


@dataclass(frozen=True)
class IngressSettings:
    domain: str
    class_name: str
    tls_secret_name: str
    cluster_issuer: str

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_secret_name or self.cluster_issuer)


@dataclass(frozen=True)
class ExternalPostgres:
    """An existing PostgreSQL server: pulumi-postgresql creates MLflow's role and databases there."""

    host: str
    port: int
    admin_user: str
    admin_password: str
    ca_file: str
    ca_pem: str


@dataclass(frozen=True)
class ObjectStoreSettings:
    """Where artifacts live. endpoint/ca/credentials apply to the external modes only."""

    mode: str
    bucket: str
    region: str
    endpoint: str
    ca_file: str
    ca_pem: str
    access_key: str
    secret_key: str
    admin_user: str
    admin_password: str

    @property
    def in_cluster(self) -> bool:
        return self.mode == "inCluster"


@dataclass(frozen=True)
class PostgresSettings:
    instances: int
    image: str
    storage_size: str
    storage_class: str
    resources: Resources
    # Where the operator runs when no cluster stack tells (clusterStack empty).
    operator_namespace: str
    external: ExternalPostgres | None
    # postgresMaxConnections: 0 sizes an in-cluster server's max_connections from the connection budget.
    max_connections: int = 0

    @property
    def in_cluster(self) -> bool:
        return self.external is None


@dataclass(frozen=True)
class MinioSettings:
    image: str
    replicas: int
    storage_size: str
    storage_class: str
    resources: Resources
    # Publish the S3 API through the ingress (minio-<namespace>.<ingressDomain>).
    ingress: bool = False


@dataclass(frozen=True)
class MlflowSettings:
    version: str
    image_repository: str
    replicas: int
    workers: int
    resources: Resources
    auth: bool
    admin_user: str
    job_execution: bool = True
    scratch_size: str = "2Gi"
    request_timeout_seconds: int = 600
    auth_cache_seconds: int = 30
    artifact_transfer: str = "proxied"
    multipart_threshold: str = "500Mi"
    multipart_chunk_size: str = "100Mi"
    # SQLAlchemy pool of each store in each worker, and the encryption passphrase's version.
    db_pool_size: int = 10
    db_max_overflow: int = 5
    kek_version: int = 1

    @property
    def image(self) -> str:
        return f"{self.image_repository}:v{self.version}-full"


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    profile: str
    namespace: str
    kubeconfig: str
    kube_context: str
    render_directory: str
    ingress: IngressSettings
    tls: TlsSettings
    postgres: PostgresSettings
    minio: MinioSettings
    object_store: ObjectStoreSettings
    mlflow: MlflowSettings
    allow_storage_layout_change: bool
    # The stack that owns the operator and the backup plugin ("" when someone else manages them).
    cluster_stack: str
    # Backups, metrics, garbage collection (the "day-2" keys).
    operations: OperationsSettings

    @property
    def protect_data(self) -> bool:
        """prod: a mistaken destroy or rename must not lose the database or the bucket."""
        return self.profile == "prod"

    @property
    def ephemeral(self) -> bool:
        """pr: `pulumi destroy` must leave nothing behind (PVCs, bucket contents)."""
        return self.profile == "pr"


def declared_config(project_file: Path = PROJECT_FILE) -> dict[str, dict]:
    """The `config:` block of Pulumi.yaml: key -> {type, default, description}, read as the CLI reads it."""
    return pulumi_yaml.load(project_file, name=project_file.name)["config"]


class _Reader:
    """Reads raw config values with Pulumi.yaml's defaults and collects every problem."""

    def __init__(self, config: pulumi.Config, declared: dict[str, dict]):
        self._config = config
        self._declared = declared
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.errors.append(f"  - {self._config.name}:{key} = {json.dumps(value)}: {problem}. Fix: {fix}")

    def raw(self, key: str) -> Any:
        spec = self._declared[key]
        text = self._config.get(key)
        if text is None:
            return spec["default"]
        kind = spec["type"]
        if kind == "string":
            return text
        try:
            value = json.loads(text) if kind in ("integer", "array") else text
        except json.JSONDecodeError:
            value = None
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "array" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if kind == "object":
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                return value
        self.fail(
            key,
            text,
            f"expected {'a list of strings' if kind == 'array' else 'an ' + kind if kind in ('integer', 'object') else 'a ' + kind}",
            f"`pulumi config set {key}{' --path' if kind in ('array', 'object') else ''} <{kind}>`",
        )
        return spec["default"]

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key)
        if value not in choices:
            self.fail(key, value, "unknown value", f"use one of {', '.join(choices)}")
            return choices[0]
        return value

    def checked(self, key: str, valid: Callable[[Any], bool], problem: str, fix: str) -> Any:
        value = self.raw(key)
        if not valid(value):
            self.fail(key, value, problem, fix)
        return value

    def integer(self, key: str, low: int, high: int, fix: str | None = None) -> int:
        return self.checked(
            key,
            lambda v: low <= v <= high,
            f"must be between {low} and {high}",
            fix or f"set a value from {low} to {high}",
        )

    def quantity(self, key: str, memory: bool) -> str:
        example = "256Mi or 1Gi" if memory else "100m or 1"
        return self.checked(
            key,
            lambda v: (parse_quantity(v) or 0) > 0,
            "not a positive Kubernetes quantity",
            f"use a quantity such as {example}",
        )

    def storage(self, key: str) -> str:
        return self.checked(
            key,
            lambda v: bool(_STORAGE.match(v)),
            "not a storage size",
            "use a whole number with a binary suffix, e.g. 1Gi, 500Mi or 1Ti",
        )

    def image(
        self, key: str, tag_rule: Callable[[str], bool] = lambda tag: True, tag_hint: str = "an explicit version tag"
    ) -> str:
        def valid(value: str) -> bool:
            match = _IMAGE.match(value)
            if not match:
                return False
            if match["digest"]:
                return True
            tag = match["tag"]
            return bool(tag) and tag != "latest" and tag_rule(tag)

        return self.checked(
            key, valid, "image must be pinned", f"use repository:tag with {tag_hint}, or repository@sha256:<digest>"
        )

    def resources(self, prefix: str) -> Resources:
        return Resources(
            cpu_request=self.quantity(f"{prefix}CpuRequest", memory=False),
            memory_request=self.quantity(f"{prefix}MemoryRequest", memory=True),
            cpu_limit=self.quantity(f"{prefix}CpuLimit", memory=False),
            memory_limit=self.quantity(f"{prefix}MemoryLimit", memory=True),
        )

    def secret(self, key: str) -> str:
        """A value that must be secret config (encrypted in the stack file, masked in logs)."""
        full_key = f"{self._config.name}:{key}"
        value = runtime_config.get_config(full_key)
        # The CLI hands the program every declared key, unset ones with their (empty) default.
        if not value:
            return self._declared[key]["default"]
        if not runtime_config.is_config_secret(full_key):
            self.errors.append(
                f"  - {full_key} is set in plain text: it is a credential. "
                f"Fix: `pulumi config set --secret {key} <value>` (and remove the plain value)"
            )
        return value

    def ca_file(self, key: str) -> tuple[str, str]:
        """(path, PEM) of a CA bundle committed to the repository; read, never written."""
        path = self.raw(key)
        if not path:
            return "", ""
        fix = "commit the PEM bundle to the repository and give its path relative to the project directory"
        candidate = Path(path)
        if candidate.is_absolute() or ".." in candidate.parts:
            self.fail(key, path, "must be a path inside the project directory", fix)
            return path, ""
        try:
            pem = (PROJECT_FILE.parent / candidate).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            self.fail(key, path, "file not found or not readable", fix)
            return path, ""
        if not is_pem_certificates(pem):
            self.fail(
                key, path, "not a PEM file of CA certificates", "use a file of -----BEGIN CERTIFICATE----- blocks"
            )
        return path, pem

    def unknown_keys(self) -> None:
        """Keys the stack sets that Pulumi.yaml does not declare: typos must not be ignored."""
        prefix = f"{self._config.name}:"
        for full_key in sorted(set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())):
            if not full_key.startswith(prefix):
                continue
            key = full_key[len(prefix) :]
            if key in self._declared:
                continue
            if key in REMOVED_KEYS:
                self.errors.append(
                    f"  - {full_key} was removed: {REMOVED_KEYS[key]}. Fix: delete it from Pulumi.<stack>.yaml"
                )
                continue
            nearest = difflib.get_close_matches(key, self._declared, n=1, cutoff=0.6)
            hint = f"did you mean {nearest[0]}? " if nearest else ""
            self.errors.append(
                f"  - {full_key} is not a setting of this project. Fix: {hint}"
                "see the configuration reference in README.md (declared in Pulumi.yaml)"
            )


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity in base units (cores or bytes); None when malformed."""
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    return float(match[1]) * _UNITS[match[2]] if match else None


def quantity(value: str) -> float:
    """A quantity already validated (a malformed one here is a bug, not a user error)."""
    parsed = parse_quantity(value)
    if parsed is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return parsed


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value))


def _empty_or(valid: Callable[[str], bool]) -> Callable[[str], bool]:
    """The check of an optional key: empty (unset), or valid."""
    return lambda value: value == "" or valid(value)


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


def profile_for_stack(stack: str) -> str:
    if stack == CLUSTER_PROFILE:
        return CLUSTER_PROFILE
    if _PR_STACK.match(stack):
        return "pr"
    return "prod" if stack.startswith("prod") else "dev"


def load_settings(
    config: pulumi.Config | None = None, stack: str | None = None, project: str | None = None
) -> Settings:
    """Read and validate the whole stack configuration, or raise ConfigError listing every problem."""
    project = project or pulumi.get_project()
    stack = stack or pulumi.get_stack()
    read = _Reader(config or pulumi.Config(project), declared_config())

    namespace = f"mlflow-{stack}"
    if not _DNS_LABEL.match(namespace):
        read.errors.append(
            f"  - stack name {json.dumps(stack)}: the namespace {namespace} is not a DNS-1123 label. "
            "Fix: use a stack name of lowercase letters, digits and '-' (at most 56 characters), e.g. dev or pr-42"
        )
    profile = read.raw("profile") or profile_for_stack(stack)
    if profile == CLUSTER_PROFILE:
        read.fail(
            "profile",
            profile,
            "the cluster profile owns cluster-wide services only, not an environment",
            "deploy it as its own stack (`make up STACK=cluster`), and use dev, prod or pr here",
        )
        profile = "dev"
    if profile not in PROFILES:
        read.fail("profile", profile, "unknown profile", f"use one of {', '.join(PROFILES)}, or leave it empty")
        profile = "dev"

    read.unknown_keys()
    domain = read.checked(
        "ingressDomain", is_dns_name, "not a DNS domain", "use a domain such as localtest.me or mlflow.example.com"
    )
    if len(f"mlflow-{namespace}") > 63:
        read.fail(
            "ingressDomain",
            domain,
            f"host label mlflow-{namespace} is longer than 63 characters",
            "use a shorter stack name",
        )
    ingress = IngressSettings(
        domain=domain,
        class_name=read.checked(
            "ingressClassName",
            _empty_or(is_dns_label),
            "not a valid IngressClass name",
            "use e.g. nginx or traefik, or leave it empty",
        ),
        tls_secret_name=read.checked(
            "ingressTlsSecretName",
            _empty_or(is_dns_subdomain),
            "not a valid Secret name",
            "use a DNS-1123 name or leave it empty",
        ),
        cluster_issuer=read.checked(
            "ingressClusterIssuer",
            _empty_or(is_dns_subdomain),
            "not a valid ClusterIssuer name",
            "use a DNS-1123 name or leave it empty",
        ),
    )
    if ingress.tls_secret_name and ingress.cluster_issuer:
        read.fail(
            "ingressClusterIssuer",
            ingress.cluster_issuer,
            "conflicts with ingressTlsSecretName",
            "set only one of ingressTlsSecretName and ingressClusterIssuer",
        )

    tls = TlsSettings(
        algorithm=read.choice("tlsAlgorithm", TLS_ALGORITHMS),
        validity_days=read.integer("tlsValidityDays", 7, 3650),
        early_renewal_days=read.integer("tlsEarlyRenewalDays", 1, 365),
        self_signed=read.raw("tlsSelfSigned"),
    )
    if tls.early_renewal_days >= tls.validity_days:
        read.fail(
            "tlsEarlyRenewalDays",
            tls.early_renewal_days,
            "must be shorter than tlsValidityDays",
            f"use fewer than {tls.validity_days} days",
        )

    postgres = PostgresSettings(
        instances=read.integer("postgresInstances", 1, 9),
        image=read.image("postgresImage", lambda tag: tag[0].isdigit(), "a PostgreSQL version tag such as 17.5"),
        storage_size=read.storage("postgresStorageSize"),
        storage_class=read.raw("postgresStorageClass"),
        resources=read.resources("postgres"),
        operator_namespace=_operator_namespace(read),
        external=_external_postgres(read) if read.choice("postgresMode", POSTGRES_MODES) == "external" else None,
    )
    if postgres.in_cluster:
        _postgres_external_keys_unset(read)
    minio = MinioSettings(
        image=read.image(
            "minioImage",
            lambda tag: bool(_MINIO_TAG.match(tag)),
            "a MinIO release tag such as RELEASE.2025-09-07T16-13-09Z",
        ),
        replicas=read.checked(
            "minioReplicas",
            lambda v: v == 1 or 4 <= v <= 16,
            "MinIO runs either one server or an erasure set of 4 to 16",
            "set 1 (single drive) or 4..16 (distributed, HA)",
        ),
        storage_size=read.storage("minioStorageSize"),
        storage_class=read.raw("minioStorageClass"),
        resources=read.resources("minio"),
        ingress=read.raw("minioIngress"),
    )
    object_store = _object_store(read)
    mlflow_resources = read.resources("mlflow")
    mlflow_workers = _mlflow_workers(read, mlflow_resources)
    mlflow_replicas = read.integer("mlflowReplicas", 1, 20)
    mlflow = MlflowSettings(
        version=_mlflow_version(read),
        image_repository=read.checked(
            "mlflowImage",
            lambda v: bool(_IMAGE.match(v)) and ":" not in v.rsplit("/", 1)[-1] and "@" not in v,
            "must be a repository without tag",
            "use e.g. ghcr.io/mlflow/mlflow; the tag comes from mlflowVersion",
        ),
        replicas=mlflow_replicas,
        workers=mlflow_workers,
        resources=mlflow_resources,
        auth=read.raw("mlflowAuth"),
        admin_user=read.checked(
            "mlflowAdminUser",
            lambda v: bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v)),
            "not a valid user name",
            "use letters, digits, '.', '_' or '-'",
        ),
        job_execution=_job_runner(read, mlflow_replicas, mlflow_workers, mlflow_resources),
        scratch_size=read.storage("mlflowScratchSize"),
        request_timeout_seconds=read.integer("mlflowRequestTimeoutSeconds", 30, 3600),
        auth_cache_seconds=read.integer("mlflowAuthCacheSeconds", 0, 3600),
        **_artifact_transfer(read, object_store, minio, ingress),
        db_pool_size=read.integer("mlflowDbPoolSize", 1, 100),
        db_max_overflow=read.integer("mlflowDbMaxOverflow", 0, 100),
        kek_version=read.integer("mlflowKekVersion", 1, 1000),
    )
    kubeconfig, kube_context = _kubernetes_target(read)
    allow_layout_change = read.raw("allowStorageLayoutChange")
    render_directory = _render_directory(read, kubeconfig, kube_context, postgres)
    for prefix, res in (("postgres", postgres.resources), ("minio", minio.resources), ("mlflow", mlflow.resources)):
        _check_requests_within_limits(read, prefix, res)

    operations = _operations(read, profile, postgres, object_store)
    postgres = dataclasses.replace(
        postgres, max_connections=read.integer("postgresMaxConnections", 0, 10000, "set 0 (sized) or up to 10000")
    )
    _check_connection_budget(read, postgres, mlflow, operations)
    if profile == "prod":
        if postgres.in_cluster and postgres.instances < 2:
            read.fail(
                "postgresInstances",
                postgres.instances,
                "prod must run PostgreSQL highly available",
                "set postgresInstances to 3",
            )
        if mlflow.replicas < 2:
            read.fail(
                "mlflowReplicas",
                mlflow.replicas,
                "prod must run MLflow highly available",
                "set mlflowReplicas to 2 or more",
            )
    if profile == "pr":
        _check_pr_budget(read, postgres, minio, mlflow, object_store.in_cluster, operations)

    if read.errors:
        raise ConfigError(
            f"invalid configuration for stack {stack} ({len(read.errors)} problem(s)); nothing was created:\n"
            + "\n".join(read.errors)
        )
    return Settings(
        project=project,
        stack=stack,
        profile=profile,
        namespace=namespace,
        kubeconfig=kubeconfig,
        kube_context=kube_context,
        render_directory=render_directory,
        ingress=ingress,
        tls=tls,
        postgres=postgres,
        minio=minio,
        object_store=object_store,
        mlflow=mlflow,
        allow_storage_layout_change=allow_layout_change,
        cluster_stack=_cluster_stack(read),
        operations=operations,
    )


def _mlflow_version(read: _Reader) -> str:
    version = read.checked(
        "mlflowVersion",
        lambda v: bool(_VERSION.match(v)),
        "not an MLflow version",
        "use X.Y.Z, e.g. 3.18.0 (the image tag v<version>-full is derived from it)",
    )
    if _VERSION.match(version) and tuple(int(p) for p in version.split(".")) < MIN_MLFLOW_VERSION:
        read.fail(
            "mlflowVersion",
            version,
            "MLflow before 3.18.0 advertises presigned multipart transfers for "
            "any S3 destination, sending clients to an object store endpoint they cannot reach",
            "use 3.18.0 or newer (the default)",
        )
    return version


def _mlflow_workers(read: _Reader, resources: Resources) -> int:
    """mlflowWorkers, or (0) one per whole core of the CPU limit; all of them must fit the memory limit."""
    workers = read.integer("mlflowWorkers", 0, 16, "set 0 (sized to mlflowCpuLimit) or 1 to 16")
    cpu, memory = parse_quantity(resources.cpu_limit), parse_quantity(resources.memory_limit)
    if workers == 0:
        workers = max(1, int(cpu or 1))
    if memory and SERVER_BASE_MEMORY_BYTES + workers * WORKER_MEMORY_BYTES > memory:
        read.fail(
            "mlflowWorkers",
            read.raw("mlflowWorkers"),
            f"{workers} workers need about {(SERVER_BASE_MEMORY_BYTES + workers * WORKER_MEMORY_BYTES) / 2**20:.0f}Mi, "
            f"over mlflowMemoryLimit ({resources.memory_limit})",
            "lower mlflowWorkers (or mlflowCpuLimit when it is 0), or raise mlflowMemoryLimit",
        )
    return max(workers, 1)


def _job_runner(read: _Reader, replicas: int, workers: int, resources: Resources) -> bool:
    """mlflowJobRunner: off by default (its processes need ~1.6 GiB); when on it must fit the memory limit."""
    mode = read.choice("mlflowJobRunner", JOB_RUNNER_MODES)
    enabled = {"on": True, "off": False}.get(mode, replicas == 1)
    needed = SERVER_BASE_MEMORY_BYTES + workers * WORKER_MEMORY_BYTES + JOB_RUNNER_MEMORY_BYTES
    memory = parse_quantity(resources.memory_limit)
    if enabled and memory and needed > memory:
        read.fail(
            "mlflowJobRunner",
            mode,
            f"MLflow's job runner and {workers} worker(s) need about {needed / 2**20:.0f}Mi, "
            f"over mlflowMemoryLimit ({resources.memory_limit})",
            f"set mlflowJobRunner off, or raise mlflowMemoryLimit to at least {-(-needed // 2**30):.0f}Gi",
        )
    return enabled


def _artifact_transfer(
    read: _Reader, store: ObjectStoreSettings, minio: MinioSettings, ingress: IngressSettings
) -> dict:
    """artifactTransferMode and its thresholds; direct only where the signed URLs work for clients."""
    mode = read.choice("artifactTransferMode", ARTIFACT_TRANSFER_MODES)
    threshold = read.checked(
        "artifactMultipartThreshold",
        lambda v: bool(_STORAGE.match(v)) and quantity(v) >= S3_MIN_PART_BYTES,
        "not a size of at least 5Mi",
        "use a binary size such as 100Mi or 1Gi",
    )
    chunk = read.checked(
        "artifactMultipartChunkSize",
        lambda v: bool(_STORAGE.match(v)) and S3_MIN_PART_BYTES <= quantity(v) <= S3_MAX_PART_BYTES,
        "S3 multipart parts are 5Mi to 5Gi",
        "use a binary size such as 10Mi or 100Mi",
    )
    if minio.ingress and not store.in_cluster:
        read.fail(
            "minioIngress",
            True,
            f"objectStoreMode is {store.mode}: there is no in-cluster MinIO to publish",
            "remove minioIngress",
        )
    elif minio.ingress and not ingress.tls_enabled:
        read.fail(
            "minioIngress",
            True,
            "the S3 endpoint would be published over plain HTTP (credentials, signed URLs and artifacts in clear)",
            "set ingressTlsSecretName or ingressClusterIssuer",
        )
    if mode == "direct" and store.in_cluster and not (minio.ingress and ingress.tls_enabled):
        read.fail(
            "artifactTransferMode",
            mode,
            "MLflow signs URLs for the S3 endpoint it uses itself; the "
            "in-cluster MinIO (minio.<namespace>.svc, private CA) is neither reachable nor trusted outside "
            "the cluster",
            "publish MinIO through the ingress with a trusted certificate (minioIngress: true "
            "and ingressTlsSecretName or ingressClusterIssuer), use objectStoreMode external/externalMinio, "
            "or keep artifactTransferMode proxied",
        )
    return {"artifact_transfer": mode, "multipart_threshold": threshold, "multipart_chunk_size": chunk}


def client_environment(s: Settings) -> dict[str, str]:
    """What an MLflow client should set for this stack (exported as the output clientEnvironment)."""
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(s.mlflow.request_timeout_seconds)}
    if s.mlflow.artifact_transfer == "direct":
        threshold = str(int(quantity(s.mlflow.multipart_threshold)))
        chunk = str(int(quantity(s.mlflow.multipart_chunk_size)))
        env.update(
            {
                "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": threshold,
                "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": threshold,
                "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": chunk,
                "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": chunk,
            }
        )
    return env


def _render_directory(read: _Reader, kubeconfig: str, kube_context: str, postgres: PostgresSettings) -> str:
    directory = read.raw("renderYamlToDirectory")
    if not directory:
        return ""
    if Path(directory) == Path("."):
        read.fail(
            "renderYamlToDirectory",
            directory,
            "would write manifests over the project",
            "use a directory of its own such as rendered/dev",
        )
    for key, value in (("kubeconfig", kubeconfig), ("kubeContext", kube_context)):
        if value:
            read.fail(
                key,
                "(set)",
                "renderYamlToDirectory writes manifests instead of talking to a cluster",
                f"unset {key}, or unset renderYamlToDirectory to deploy to a cluster",
            )
    return directory


def _postgres_external_keys_unset(read: _Reader) -> None:
    for key in ("postgresHost", "postgresCaFile"):
        if read.raw(key):
            read.fail(
                key, read.raw(key), "only used with postgresMode external", "remove it, or set postgresMode: external"
            )
    if read.secret("postgresAdminPassword"):
        read.fail(
            "postgresAdminPassword",
            "(set)",
            "only used with postgresMode external",
            "remove it, or set postgresMode: external",
        )


def _external_postgres(read: _Reader) -> ExternalPostgres:
    host = read.checked(
        "postgresHost",
        is_dns_name,
        "postgresMode is external: needs the server's DNS name",
        "`pulumi config set postgresHost db.example.com` (the name in its certificate)",
    )
    ca_file, ca_pem = read.ca_file("postgresCaFile")
    if not ca_file:
        read.fail(
            "postgresCaFile",
            ca_file,
            "postgresMode is external: MLflow verifies the server (verify-full)",
            "commit the server's CA bundle and `pulumi config set postgresCaFile certs/db-ca.pem`",
        )
    password = read.secret("postgresAdminPassword")
    if not password:
        read.fail(
            "postgresAdminPassword",
            "",
            "postgresMode is external: pulumi-postgresql needs the admin login",
            "`pulumi config set --secret postgresAdminPassword <password>`",
        )
    return ExternalPostgres(
        host=host,
        port=read.integer("postgresPort", 1, 65535),
        admin_user=read.checked(
            "postgresAdminUser",
            lambda v: bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", v)),
            "not a PostgreSQL role name",
            "use e.g. postgres",
        ),
        admin_password=password,
        ca_file=ca_file,
        ca_pem=ca_pem,
    )


def _object_store(read: _Reader) -> ObjectStoreSettings:
    mode = read.choice("objectStoreMode", OBJECT_STORE_MODES)
    store = {
        "mode": mode,
        "bucket": read.checked(
            "bucket",
            is_bucket_name,
            "not a valid S3 bucket name",
            "use 3-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
        ),
        "region": read.checked(
            "s3Region",
            lambda v: bool(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]+", v)),
            "not an S3 region",
            "use e.g. us-east-1",
        ),
        "endpoint": read.raw("s3Endpoint"),
        "access_key": read.raw("s3AccessKey"),
        "secret_key": read.secret("s3SecretKey"),
        "admin_user": read.raw("s3AdminUser"),
        "admin_password": read.secret("s3AdminPassword"),
    }
    store["ca_file"], store["ca_pem"] = read.ca_file("s3CaFile")
    required = {
        "external": ("s3Endpoint", "s3AccessKey", "s3SecretKey"),
        "externalMinio": ("s3Endpoint", "s3AdminUser", "s3AdminPassword"),
    }.get(mode, ())
    names = {
        "s3Endpoint": "endpoint",
        "s3AccessKey": "access_key",
        "s3SecretKey": "secret_key",
        "s3AdminUser": "admin_user",
        "s3AdminPassword": "admin_password",
    }
    for key in required:
        if not store[names[key]]:
            secret = "--secret " if key in ("s3SecretKey", "s3AdminPassword") else ""
            read.fail(key, "", f"objectStoreMode is {mode}: required", f"`pulumi config set {secret}{key} <value>`")
    if store["endpoint"] and not is_https_endpoint(store["endpoint"]):
        read.fail(
            "s3Endpoint",
            store["endpoint"],
            "not an https URL of a host (and optional port)",
            "use e.g. https://s3.eu-west-1.amazonaws.com or https://minio.example.com:9000; plain http is refused",
        )
    if mode == "inCluster":
        for key in ("s3Endpoint", "s3CaFile", "s3AccessKey", "s3SecretKey", "s3AdminUser", "s3AdminPassword"):
            value = store["ca_file" if key == "s3CaFile" else names[key]]
            if value:
                # Name the value, except a credential's.
                read.fail(
                    key,
                    "(set)" if key in ("s3SecretKey", "s3AdminPassword") else value,
                    "only used with objectStoreMode external or externalMinio",
                    "remove it, or set objectStoreMode",
                )
    return ObjectStoreSettings(**store)


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and all(_DNS_LABEL.match(label) for label in value.split("."))


def _check_requests_within_limits(read: _Reader, prefix: str, res: Resources) -> None:
    for kind in ("Cpu", "Memory"):
        request = parse_quantity(getattr(res, f"{kind.lower()}_request"))
        limit = parse_quantity(getattr(res, f"{kind.lower()}_limit"))
        if request is not None and limit is not None and request > limit:
            read.fail(
                f"{prefix}{kind}Request",
                getattr(res, f"{kind.lower()}_request"),
                f"exceeds {prefix}{kind}Limit ({getattr(res, f'{kind.lower()}_limit')})",
                f"lower {prefix}{kind}Request or raise {prefix}{kind}Limit",
            )


def footprint(
    postgres: PostgresSettings,
    minio: MinioSettings,
    mlflow: MlflowSettings,
    minio_in_cluster: bool = True,
    operations: OperationsSettings | None = None,
) -> tuple[float, float]:
    """Total requested (CPU cores, memory bytes): every pod of the stack plus its Jobs."""
    parts = [
        (mlflow.replicas, mlflow.resources.cpu_request, mlflow.resources.memory_request),
        (1, MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST),
    ]
    if postgres.in_cluster:
        parts.append((postgres.instances, postgres.resources.cpu_request, postgres.resources.memory_request))
    if minio_in_cluster:
        parts += [
            (minio.replicas, minio.resources.cpu_request, minio.resources.memory_request),
            (1, BOOTSTRAP_CPU_REQUEST, BOOTSTRAP_MEMORY_REQUEST),
        ]
    cpu = sum(count * (parse_quantity(c) or 0) for count, c, _ in parts)
    memory = sum(count * (parse_quantity(m) or 0) for count, _, m in parts)
    if operations is not None:  # the backup sidecars (one per instance) and the gc CronJob's pod
        extra_cpu, extra_memory = operations_footprint(postgres, operations)
        cpu, memory = cpu + extra_cpu, memory + extra_memory
    return cpu, memory


def _check_pr_budget(
    read: _Reader,
    postgres: PostgresSettings,
    minio: MinioSettings,
    mlflow: MlflowSettings,
    minio_in_cluster: bool,
    operations: OperationsSettings | None = None,
) -> None:
    cpu, memory = footprint(postgres, minio, mlflow, minio_in_cluster, operations)
    if memory > PR_MEMORY_BUDGET_BYTES:
        read.fail(
            "mlflowMemoryRequest",
            mlflow.resources.memory_request,
            f"a PR stack requests {memory / 2**20:.0f}Mi in total, over its 1024Mi budget",
            "lower the *MemoryRequest keys or the replica counts in profiles/pr.yaml",
        )
    if cpu * 1000 > PR_CPU_BUDGET_MILLICORES:
        read.fail(
            "mlflowCpuRequest",
            mlflow.resources.cpu_request,
            f"a PR stack requests {cpu * 1000:.0f}m CPU in total, over its 500m budget",
            "lower the *CpuRequest keys or the replica counts in profiles/pr.yaml",
        )


# --------------------------------------------------------------------------- PostgreSQL connection budget
# What MLflow can hold open at once, so PostgreSQL's max_connections is sized for it (in-cluster) or a
# server that cannot take it is refused (postgresMaxConnections). Counted from MLflow 3.18's source:
# each uvicorn worker opens one SQLAlchemy engine per store, tracking, model registry and basic auth
# (mlflow/store/tracking|model_registry/sqlalchemy_store.py, mlflow/server/auth/sqlalchemy_store.py),
# each pooling up to mlflowDbPoolSize + mlflowDbMaxOverflow connections.
ENGINES_PER_WORKER = 3
# `mlflow server` itself opens the tracking and registry stores once before it starts uvicorn and
# keeps their pooled connection for its life (measured: tests/integration/test_connection_budget.py).
SERVER_PROCESS_CONNECTIONS = 2
# With mlflowJobRunner on: the job runner and its huey consumers (one per MLflow 3.18 job type, and
# one for periodic tasks), an engine each.
JOB_RUNNER_PROCESSES = 9
# A single-threaded command (a migration Job step, mlflow gc): its connection and one nested session.
COMMAND_CONNECTIONS = 2
# Rolling updates start a new pod before an old one stops (the Deployment's maxSurge: 1).
SURGE_PODS = 1
# PostgreSQL keeps these slots for superusers (superuser_reserved_connections, set explicitly);
# CloudNativePG's instance manager connects as superuser (status, the metrics exporter per database,
# backups) and may use ordinary slots as well.
SUPERUSER_RESERVED_CONNECTIONS = 3
INSTANCE_MANAGER_CONNECTIONS = 5


@dataclass(frozen=True)
class ConnectionBudget:
    """The connections MLflow's role can hold at once, and PostgreSQL's max_connections that fits them."""

    per_pod: int
    pods: int  # replicas and the surge pod of a rolling update
    commands: int  # the migration Job and mlflow gc
    reserved: int  # superuser slots and the instance manager's connections

    @property
    def mlflow(self) -> int:
        return self.pods * self.per_pod + self.commands

    @property
    def max_connections(self) -> int:
        return self.mlflow + self.reserved

    def max_connections_for(self, postgres: PostgresSettings) -> int:
        """An in-cluster server's max_connections: postgresMaxConnections, or (0) the budget."""
        return postgres.max_connections or self.max_connections


def connection_budget(mlflow: MlflowSettings, gc: bool) -> ConnectionBudget:
    per_engine = mlflow.db_pool_size + mlflow.db_max_overflow
    per_pod = mlflow.workers * ENGINES_PER_WORKER * per_engine + SERVER_PROCESS_CONNECTIONS
    if mlflow.job_execution:
        per_pod += JOB_RUNNER_PROCESSES * per_engine
    return ConnectionBudget(
        per_pod=per_pod,
        pods=mlflow.replicas + SURGE_PODS,
        commands=COMMAND_CONNECTIONS * (2 if gc else 1),
        reserved=SUPERUSER_RESERVED_CONNECTIONS + INSTANCE_MANAGER_CONNECTIONS,
    )


def _check_connection_budget(
    read: _Reader, postgres: PostgresSettings, mlflow: MlflowSettings, ops: OperationsSettings
) -> None:
    """postgresMaxConnections, when set, must hold MLflow's connections (and, in-cluster, the operator's)."""
    if not postgres.max_connections:
        return
    budget = connection_budget(mlflow, ops.gc)
    needed = budget.max_connections if postgres.in_cluster else budget.mlflow
    if postgres.max_connections >= needed:
        return
    per_engine = f"({mlflow.db_pool_size} + {mlflow.db_max_overflow})"
    runner = f" + job runner {JOB_RUNNER_PROCESSES} x {per_engine}" if mlflow.job_execution else ""
    operator = (
        f" + {budget.reserved} for PostgreSQL's superuser slots and CloudNativePG's instance manager"
        if postgres.in_cluster
        else ""
    )
    read.fail(
        "postgresMaxConnections",
        postgres.max_connections,
        f"MLflow can hold {budget.mlflow} connections: {mlflow.replicas} replica(s) + {SURGE_PODS} during a "
        f"rollout, each {mlflow.workers} worker(s) x {ENGINES_PER_WORKER} stores x {per_engine} "
        f"+ {SERVER_PROCESS_CONNECTIONS}{runner}, + {budget.commands} for the migration Job and gc{operator}",
        f"set postgresMaxConnections to at least {needed} (0 sizes an in-cluster server), or lower "
        "mlflowDbPoolSize, mlflowDbMaxOverflow, mlflowWorkers or mlflowReplicas",
    )


# --------------------------------------------------------------------------- stored data across updates
# Config changes that Kubernetes cannot apply to existing data in place, and the manual path for each.
_LAYOUT_MANUAL_PATHS = {
    "minioReplicas": "MinIO cannot turn its drives into another erasure layout in place: mirror the bucket "
    "into a store with the new layout (README: Changing storage, MinIO servers)",
    "minioStorageSize": "MinIO's volumeClaimTemplates are immutable: expand the PVCs by hand where the "
    "StorageClass allows it (README: Changing storage, MinIO volumes)",
    "minioStorageClass": "existing MinIO volumes keep their StorageClass: mirror the bucket into new volumes "
    "(README: Changing storage, MinIO volumes)",
    "postgresStorageSize": "PostgreSQL volumes only grow (CloudNativePG expands them in place): restore into a "
    "smaller cluster instead (README: Changing storage, PostgreSQL)",
    "postgresStorageClass": "existing PostgreSQL volumes keep their StorageClass: CloudNativePG moves instances "
    "one by one if you replace them (README: Changing storage, PostgreSQL)",
    "postgresMode": "the database would move without its data: dump and restore it first "
    "(README: Changing storage, moving the database)",
    "objectStoreMode": "artifacts would stay in the old store: mirror them first (README: Changing storage, "
    "moving artifacts)",
    "bucket": "recorded runs point at the old bucket: mirror it first (README: Changing storage, moving artifacts)",
}


def storage_layout(s: Settings) -> dict[str, Any]:
    """What the stored data was created with; exported as the stack output storageLayout."""
    layout: dict[str, Any] = {
        "postgresMode": "external" if s.postgres.external else "inCluster",
        "objectStoreMode": s.object_store.mode,
        "bucket": s.object_store.bucket,
    }
    if s.postgres.in_cluster:
        layout.update(postgresStorageSize=s.postgres.storage_size, postgresStorageClass=s.postgres.storage_class)
    if s.object_store.in_cluster:
        layout.update(
            minioReplicas=s.minio.replicas,
            minioStorageSize=s.minio.storage_size,
            minioStorageClass=s.minio.storage_class,
        )
    return layout


def storage_layout_changes(previous: dict | None, current: dict) -> list[str]:
    """One line per unsafe change from the last deployed layout (none on a first deployment)."""
    problems = []
    for key, value in current.items():
        if not previous or key not in previous or previous[key] == value:
            continue
        old = int(previous[key]) if isinstance(previous[key], float) else previous[key]  # the engine sends floats
        if old == value:
            continue
        if key == "postgresStorageSize" and quantity(str(value)) > quantity(str(old)):
            continue  # growing is applied in place by CloudNativePG
        problems.append(
            f"  - {PROJECT_NAME}:{key} changed from {json.dumps(old)} to {json.dumps(value)}: "
            f"{_LAYOUT_MANUAL_PATHS[key]}. Fix: restore {json.dumps(old)}, or follow that path and "
            "run one `pulumi up` with allowStorageLayoutChange: true"
        )
    return problems


def checked_storage_layout(s: Settings, previous: pulumi.Input[dict | None]) -> pulumi.Output[dict]:
    """The current layout, once it is safe to apply against the last deployed one; else a ConfigError."""
    current = storage_layout(s)

    def check(last: dict | None) -> dict:
        problems = [] if s.ephemeral or s.allow_storage_layout_change else storage_layout_changes(last, current)
        if problems:
            raise ConfigError(
                f"stack {s.stack} would lose or strand stored data ({len(problems)} problem(s)); "
                "nothing was changed:\n" + "\n".join(problems)
            )
        return current

    return pulumi.Output.from_input(previous).apply(check)


# --------------------------------------------------------------------------- configuration -> component Args
# The one place that maps stack configuration onto the components' (flat, Input-typed) Args;
# __main__.py only wires components together through their outputs.
def namespace_args(
    s: Settings, operator_namespace: pulumi.Input[str], storage_layout: pulumi.Input[dict]
) -> PlatformNamespaceArgs:
    return PlatformNamespaceArgs(
        name=s.namespace, protect=s.protect_data, operator_namespace=operator_namespace, storage_layout=storage_layout
    )


def _tls_args(s: Settings) -> dict:
    return {
        "tls_algorithm": s.tls.algorithm,
        "tls_validity_days": s.tls.validity_days,
        "tls_early_renewal_days": s.tls.early_renewal_days,
        "tls_self_signed": s.tls.self_signed,
    }


def database_args(
    s: Settings,
    namespace: pulumi.Input[str],
    operator_namespace: pulumi.Input[str],
    client_pod_labels: dict,
    client_ca_path: str,
    backup=None,
) -> PostgresClusterArgs | ExternalPostgresArgs:
    """`backup`: the PostgresBackup component (its outputs go into the Cluster spec), or None."""
    pg = s.postgres
    if pg.external:
        return ExternalPostgresArgs(
            namespace=namespace,
            host=pg.external.host,
            port=pg.external.port,
            admin_user=pg.external.admin_user,
            admin_password=pulumi.Output.secret(pg.external.admin_password),
            ca_file=pg.external.ca_file,
            ca_pem=pg.external.ca_pem,
            client_ca_path=client_ca_path,
            protect_data=s.protect_data,
        )
    return PostgresClusterArgs(
        namespace=namespace,
        instances=pg.instances,
        image=pg.image,
        storage_size=pg.storage_size,
        storage_class=pg.storage_class,
        resources=pg.resources.as_k8s(),
        client_pod_labels=client_pod_labels,
        client_ca_path=client_ca_path,
        operator_namespace=operator_namespace,
        protect_data=s.protect_data,
        ephemeral=s.ephemeral,
        max_connections=connection_budget(s.mlflow, s.operations.gc).max_connections_for(pg),
        superuser_reserved_connections=SUPERUSER_RESERVED_CONNECTIONS,
        **_tls_args(s),
        **_cluster_backup_args(s, backup),
    )


def object_store_args(
    s: Settings, namespace: pulumi.Input[str], client_pod_labels: dict
) -> MinioStoreArgs | ExternalObjectStoreArgs:
    store = s.object_store
    if store.in_cluster:
        return MinioStoreArgs(
            namespace=namespace,
            image=s.minio.image,
            replicas=s.minio.replicas,
            storage_size=s.minio.storage_size,
            storage_class=s.minio.storage_class,
            resources=s.minio.resources.as_k8s(),
            bucket=store.bucket,
            region=store.region,
            client_pod_labels=client_pod_labels,
            protect_data=s.protect_data,
            ephemeral=s.ephemeral,
            **_tls_args(s),
            public_domain=s.ingress.domain if s.minio.ingress else "",
            ingress_class_name=s.ingress.class_name,
            ingress_tls_secret_name=s.ingress.tls_secret_name,
            ingress_cluster_issuer=s.ingress.cluster_issuer,
            ingress_timeout_seconds=s.mlflow.request_timeout_seconds,
            **_minio_operations_args(s),
        )
    credentials: dict[str, Any] = (
        {"admin_user": store.admin_user, "admin_password": pulumi.Output.secret(store.admin_password)}
        if store.mode == "externalMinio"
        else {"access_key": store.access_key, "secret_key": pulumi.Output.secret(store.secret_key)}
    )
    return ExternalObjectStoreArgs(
        namespace=namespace,
        endpoint=store.endpoint,
        bucket=store.bucket,
        region=store.region,
        ca_file=store.ca_file,
        ca_pem=store.ca_pem,
        protect_data=s.protect_data,
        ephemeral=s.ephemeral,
        **credentials,
    )


def mlflow_args(s: Settings, namespace: pulumi.Input[str], database, store) -> MlflowServerArgs:
    """`database` and `store` are the data components; only their outputs are used."""
    m, ingress = s.mlflow, s.ingress
    # Direct transfers from an in-cluster MinIO: MLflow signs URLs for the endpoint it uses, so it uses
    # the published one (through the ingress, whose certificate the image's public CAs verify).
    public = m.artifact_transfer == "direct" and s.object_store.in_cluster
    endpoint = (
        {
            "s3_endpoint_url": store.public_endpoint_url,
            "object_store_ca_secret_name": None,
            "object_store_egress": store.public_client_egress,
        }
        if public
        else {
            "s3_endpoint_url": store.endpoint_url,
            "object_store_ca_secret_name": store.ca_secret_name,
            "object_store_egress": store.client_egress,
        }
    )
    return MlflowServerArgs(
        namespace=namespace,
        version=m.version,
        image=m.image,
        replicas=m.replicas,
        workers=m.workers,
        resources=m.resources.as_k8s(),
        auth=m.auth,
        admin_user=m.admin_user,
        backend_store_uri=database.sqlalchemy_uri,
        auth_database_uri=database.auth_sqlalchemy_uri,
        database_password=database.password,
        postgres_ca_secret_name=database.ca_secret_name,
        database_egress=database.client_egress,
        bucket=store.bucket,
        access_key=store.access_key,
        secret_key=store.secret_key,
        region=s.object_store.region,
        **endpoint,
        ingress_domain=ingress.domain,
        ingress_class_name=ingress.class_name,
        ingress_tls_secret_name=ingress.tls_secret_name,
        ingress_cluster_issuer=ingress.cluster_issuer,
        artifact_transfer=m.artifact_transfer,
        job_execution=m.job_execution,
        scratch_size=m.scratch_size,
        request_timeout_seconds=m.request_timeout_seconds,
        auth_cache_seconds=m.auth_cache_seconds,
        metrics=s.operations.metrics,
        db_pool_size=m.db_pool_size,
        db_max_overflow=m.db_max_overflow,
        kek_version=m.kek_version,
    )


# --------------------------------------------------------------------------- day-2 operations
# Backups with point-in-time recovery (Barman Cloud plugin), metrics, garbage collection.
SWITCHES = ("auto", "on", "off")
_RETENTION = re.compile(r"^[1-9][0-9]*[dwm]$")
_GC_AGE = re.compile(r"^(?=\d)(\d+(\.\d+)?d)?(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_NAMES = {
    "month": ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    "dow": ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
}
# (name, low, high) of the five standard fields; CloudNativePG's ScheduledBackup puts seconds first.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("dow", 0, 7))


@dataclass(frozen=True)
class BackupSettings:
    """Where PostgreSQL's WAL and base backups go, how long they stay, and what to restore from."""

    enabled: bool
    bucket: str
    schedule: str
    retention: str
    server_name: str
    # "" with in-cluster MinIO: the stack's MinIO; else an https S3 endpoint.
    endpoint: str
    ca_file: str
    ca_pem: str
    access_key: str
    secret_key: str
    restore_source: str
    restore_target_time: str

    @property
    def store_needed(self) -> bool:
        """An ObjectStore exists to archive into or to restore from."""
        return self.enabled or bool(self.restore_source)


@dataclass(frozen=True)
class OperationsSettings:
    backup: BackupSettings
    metrics: bool
    prometheus_operator: bool
    prometheus_namespace: str
    gc: bool
    gc_schedule: str
    gc_older_than: str
    # Labels of the ServiceMonitors/PodMonitor (what the Prometheus operator selects them by).
    monitoring_labels: dict = dataclasses.field(default_factory=dict)


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def is_label_map(value: Any) -> bool:
    """Kubernetes labels: [prefix/]name keys (prefix a DNS subdomain) and string values of 63 at most."""

    def key_ok(key: str) -> bool:
        prefix, _, name = key.rpartition("/")
        return bool(_LABEL_NAME.match(name)) and (not prefix or is_dns_subdomain(prefix))

    return isinstance(value, dict) and all(
        isinstance(k, str) and key_ok(k) and isinstance(v, str) and bool(_LABEL_VALUE.match(v))
        for k, v in value.items()
    )


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


def parse_rfc3339(value: str) -> _dt.datetime | None:
    """An RFC 3339 timestamp with its offset (Z or +hh:mm), else None."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _switch(read: _Reader, key: str, auto: bool) -> bool:
    return {"on": True, "off": False}.get(read.choice(key, SWITCHES), auto)


def _operations(
    read: _Reader, profile: str, postgres: PostgresSettings, store: ObjectStoreSettings, now: _dt.datetime | None = None
) -> OperationsSettings:
    backup_switch = read.choice("backups", SWITCHES)
    if backup_switch == "on" and not postgres.in_cluster:
        read.fail(
            "backups",
            "on",
            "an external PostgreSQL server is backed up by whoever runs it",
            "remove backups (or set it to auto/off), or use postgresMode: inCluster",
        )
    enabled = postgres.in_cluster and {"on": True, "off": False}.get(backup_switch, profile == "prod")
    endpoint, (ca_file, ca_pem) = read.raw("backupS3Endpoint"), read.ca_file("backupS3CaFile")
    access_key, secret_key = read.raw("backupS3AccessKey"), read.secret("backupS3SecretKey")
    bucket = read.checked(
        "backupBucket",
        is_bucket_name,
        "not a valid S3 bucket name",
        "use 3-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
    )
    server_name = read.checked(
        "backupServerName",
        _empty_or(is_dns_label),
        "not a server name",
        "use a DNS-1123 label such as mlflow-pg-2, or leave it empty",
    )
    source = read.checked(
        "postgresRestoreSource",
        _empty_or(is_dns_label),
        "not a server name",
        "use the backupServerName of the stack whose backups you restore "
        "(mlflow-pg unless it set one), or leave it empty",
    )
    target = read.raw("postgresRestoreTargetTime")
    backup = BackupSettings(
        enabled=enabled,
        bucket=bucket,
        schedule=read.checked(
            "backupSchedule",
            lambda v: cron_problem(v, seconds=True) is None,
            f"not a six-field cron schedule ({cron_problem(read.raw('backupSchedule'), True)})",
            "use seconds first, e.g. '0 0 2 * * *' (02:00:00 daily) or @daily",
        ),
        retention=read.checked(
            "backupRetention",
            lambda v: bool(_RETENTION.match(v)),
            "not a retention period",
            "use a whole number of days, weeks or months: 30d, 4w or 3m",
        ),
        server_name=server_name or "mlflow-pg",
        endpoint=endpoint,
        ca_file=ca_file,
        ca_pem=ca_pem,
        access_key=access_key,
        secret_key=secret_key,
        restore_source=source,
        restore_target_time=target,
    )
    if target:
        when = parse_rfc3339(target)
        if not source:
            read.fail(
                "postgresRestoreTargetTime",
                target,
                "a restore needs a source: the backups to restore from",
                "set postgresRestoreSource to the server name of those backups (mlflow-pg by default), "
                "or remove postgresRestoreTargetTime",
            )
        if when is None:
            read.fail(
                "postgresRestoreTargetTime",
                target,
                "not an RFC 3339 time with an offset",
                "use e.g. 2026-05-04T10:42:00+02:00 or 2026-05-04T08:42:00Z",
            )
        elif when > (now or _dt.datetime.now(_dt.UTC)):
            read.fail(
                "postgresRestoreTargetTime",
                target,
                "is in the future: nothing was archived there yet",
                "use a time in the past, or remove it to replay the whole archive",
            )
    if source and not postgres.in_cluster:
        read.fail(
            "postgresRestoreSource",
            source,
            "restores into an in-cluster PostgreSQL (CloudNativePG) only",
            "remove it, or use postgresMode: inCluster",
        )
    if source and enabled and source == backup.server_name:
        read.fail(
            "backupServerName",
            server_name,
            f"the restored cluster would archive its WAL onto the backups of {source} that it restores from",
            f"give the new timeline its own name, e.g. `pulumi config set backupServerName {source}-2`",
        )
    if backup.store_needed:
        _backup_target(read, backup, store)
    elif endpoint or ca_file or access_key or secret_key:
        read.fail(
            "backupS3Endpoint",
            endpoint or "(unset)",
            "backup target keys are set but backups are off",
            "set backups: on, or remove the backupS3* keys",
        )

    metrics = _switch(read, "metrics", profile != "pr")
    operator = read.raw("prometheusOperator")
    if operator and not metrics:
        read.fail("prometheusOperator", True, "there are no metrics to scrape with metrics: off", "set metrics: on")
    gc = _switch(read, "mlflowGc", profile != "pr")
    return OperationsSettings(
        backup=backup,
        metrics=metrics,
        prometheus_operator=operator,
        prometheus_namespace=read.checked(
            "prometheusNamespace",
            is_dns_label,
            "not a namespace name",
            "use the namespace Prometheus runs in, e.g. monitoring",
        ),
        gc=gc,
        gc_schedule=read.checked(
            "mlflowGcSchedule",
            lambda v: cron_problem(v) is None,
            f"not a five-field cron schedule ({cron_problem(read.raw('mlflowGcSchedule'))})",
            "use minute hour day-of-month month day-of-week, e.g. '30 3 * * *', or @daily",
        ),
        gc_older_than=read.checked(
            "mlflowGcOlderThan",
            lambda v: bool(_GC_AGE.match(v)),
            "not an age mlflow gc understands",
            "use #d#h#m#s, e.g. 30d or 12h",
        ),
        monitoring_labels=read.checked(
            "monitoringLabels",
            is_label_map,
            "not a map of Kubernetes labels",
            "use label keys and string values, e.g. `pulumi config set --path monitoringLabels.release prometheus`",
        ),
    )


def _backup_target(read: _Reader, backup: BackupSettings, store: ObjectStoreSettings) -> None:
    if backup.endpoint:
        if not is_https_endpoint(backup.endpoint):
            read.fail(
                "backupS3Endpoint",
                backup.endpoint,
                "not an https URL of a host (and optional port)",
                "use e.g. https://s3.eu-west-1.amazonaws.com; plain http is refused",
            )
        for key, value in (("backupS3AccessKey", backup.access_key), ("backupS3SecretKey", backup.secret_key)):
            if not value:
                secret = "--secret " if key == "backupS3SecretKey" else ""
                read.fail(
                    key,
                    "",
                    "backupS3Endpoint is set: the backup user's key pair is required",
                    f"`pulumi config set {secret}{key} <value>`",
                )
        return
    for key, value in (
        ("backupS3CaFile", backup.ca_file),
        ("backupS3AccessKey", backup.access_key),
        ("backupS3SecretKey", "(set)" if backup.secret_key else ""),
    ):
        if value:
            read.fail(key, value, "only used with backupS3Endpoint", "remove it, or set backupS3Endpoint")
    if not store.in_cluster:
        read.fail(
            "backupS3Endpoint",
            "",
            f"objectStoreMode is {store.mode}: there is no in-cluster MinIO to back up to",
            "set backupS3Endpoint (with backupS3AccessKey/backupS3SecretKey) to an S3 endpoint for backups",
        )
    elif backup.bucket == store.bucket:
        read.fail(
            "backupBucket",
            backup.bucket,
            "is MLflow's artifact bucket; backups get a bucket and user of their own",
            "use another name, e.g. postgres-backups",
        )


def operations_footprint(postgres: PostgresSettings, ops: OperationsSettings) -> tuple[float, float]:
    """(CPU cores, memory bytes) the operations add: the backup sidecar per instance, the gc Job."""
    parts = []
    if ops.backup.store_needed and postgres.in_cluster:
        parts.append((postgres.instances, BACKUP_SIDECAR_CPU_REQUEST, BACKUP_SIDECAR_MEMORY_REQUEST))
    if ops.gc:
        parts.append((1, GC_CPU_REQUEST, GC_MEMORY_REQUEST))
    return (
        sum(n * (parse_quantity(c) or 0) for n, c, _ in parts),
        sum(n * (parse_quantity(m) or 0) for n, _, m in parts),
    )


def backup_args(s: Settings, namespace: pulumi.Input[str], store) -> PostgresBackupArgs | None:
    """The ObjectStore, when the stack archives or restores; `store` is the artifact store component."""
    backup = s.operations.backup
    if not (backup.store_needed and s.postgres.in_cluster):
        return None
    sidecar = {
        "requests": {"cpu": BACKUP_SIDECAR_CPU_REQUEST, "memory": BACKUP_SIDECAR_MEMORY_REQUEST},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    common: dict[str, Any] = dict(
        namespace=namespace,
        server_name=backup.server_name,
        region=s.object_store.region,
        retention=backup.retention,
        wal_archiving=backup.enabled,
        restore_from=backup.restore_source,
        restore_target_time=backup.restore_target_time,
        sidecar_resources=sidecar,
        protect_data=s.protect_data,
    )
    if backup.endpoint:
        return PostgresBackupArgs(
            destination_path=f"s3://{backup.bucket}/",
            endpoint_url=backup.endpoint.rstrip("/"),
            access_key=backup.access_key,
            secret_key=pulumi.Output.secret(backup.secret_key),
            ca_pem=backup.ca_pem,
            **common,
        )
    return PostgresBackupArgs(
        destination_path=pulumi.Output.concat("s3://", store.backup_bucket, "/"),
        # The bucket and barman's user exist once the store's bootstrap ran (its bucket output).
        destination_ready=store.bucket,
        endpoint_url=store.endpoint_url,
        ca_secret_name=store.ca_secret_name,
        credentials_secret_name=store.backup_credentials_secret_name,
        **common,
    )


def gc_args(s: Settings, namespace: pulumi.Input[str], mlflow, database, store) -> MlflowGarbageCollectorArgs | None:
    if not s.operations.gc:
        return None
    return MlflowGarbageCollectorArgs(
        namespace=namespace,
        image=s.mlflow.image,
        env_secret_name=mlflow.env_secret_name,
        postgres_ca_secret_name=database.ca_secret_name,
        tracking_url=mlflow.internal_url,
        object_store_ca_secret_name=store.ca_secret_name,
        schedule=s.operations.gc_schedule,
        older_than=s.operations.gc_older_than,
        auth=s.mlflow.auth,
        admin_user=s.mlflow.admin_user,
    )


def monitoring_args(s: Settings, namespace: pulumi.Input[str], mlflow, store) -> PlatformMonitoringArgs | None:
    ops = s.operations
    if not (ops.metrics and ops.prometheus_operator):
        return None
    minio = (
        {
            "minio_selector": MINIO_POD_SELECTOR,
            "minio_ca_secret_name": store.ca_secret_name,
            "minio_server_name": pulumi.Output.concat("minio.", namespace, ".svc"),
        }
        if s.object_store.in_cluster
        else {}
    )
    return PlatformMonitoringArgs(
        namespace=namespace,
        prometheus_namespace=ops.prometheus_namespace,
        mlflow_selector=MLFLOW_SERVER_SELECTOR,
        mlflow_password_secret_name=mlflow.env_secret_name if s.mlflow.auth else None,
        mlflow_user=s.mlflow.admin_user,
        postgres_selector={"cnpg.io/cluster": "mlflow-pg"} if s.postgres.in_cluster else None,
        monitor_labels=ops.monitoring_labels,
        **minio,
    )


MINIO_POD_SELECTOR = _k8s_selector(_k8s_labels(MINIO_SERVICE, "object-store"))
MLFLOW_SERVER_SELECTOR = _k8s_selector(_MLFLOW_SERVER_LABELS)


def _cluster_backup_args(s: Settings, backup) -> dict:
    if backup is None:
        return {}
    ops = s.operations.backup
    args: dict = {"plugins": backup.plugins}
    if ops.enabled:
        args.update(backup_schedule=ops.schedule, backup_destination_ready=backup.ready)
    if ops.restore_source:
        args.update(bootstrap=backup.bootstrap, external_clusters=backup.external_clusters)
    return args


def _minio_operations_args(s: Settings) -> dict:
    """The stack's MinIO holds the backups unless backupS3Endpoint names another store."""
    ops = s.operations
    args: dict = {"metrics_public": ops.metrics}
    if ops.backup.store_needed and s.postgres.in_cluster and not ops.backup.endpoint:
        args.update(backup_bucket=ops.backup.bucket, backup_client_pod_labels={"cnpg.io/cluster": "mlflow-pg"})
    return args


# --------------------------------------------------------------------------- where the stack deploys
# The standard pulumi-kubernetes keys a Pulumi user sets (`pulumi config set kubernetes:context ...`),
# honoured by the program's own provider; any other kubernetes:* key would be ignored, so it is refused.
KUBERNETES_KEYS = {"context": "kubeContext", "kubeconfig": "kubeconfig"}


def _kubernetes_target(read: _Reader) -> tuple[str, str]:
    """(kubeconfig, context) from this project's keys or the standard kubernetes:* ones."""
    standard = pulumi.Config("kubernetes")
    chosen: dict[str, str] = {}
    for std_key, our_key in KUBERNETES_KEYS.items():
        ours, theirs = read.raw(our_key), standard.get(std_key) or ""
        if ours and theirs and ours != theirs:
            read.fail(
                our_key,
                ours,
                f"conflicts with kubernetes:{std_key} = {json.dumps(theirs)}",
                f"set only one of {our_key} and kubernetes:{std_key}",
            )
        chosen[std_key] = ours or theirs
    for full_key in sorted(set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())):
        if full_key.startswith("kubernetes:") and full_key.split(":", 1)[1] not in KUBERNETES_KEYS:
            read.errors.append(
                f"  - {full_key} is not read by this program's Kubernetes provider. Fix: remove it "
                f"(honoured: {', '.join('kubernetes:' + k for k in KUBERNETES_KEYS)})"
            )
    return chosen["kubeconfig"], chosen["context"]


def deploy_target(kubeconfig: str, context: str, render_directory: str = "") -> dict[str, str]:
    """Where `up` will send objects (context and API server URL), read from the kubeconfig the
    provider will use; shown by `make check` and as the stack output deployTarget."""
    if render_directory:
        return {"renderYamlToDirectory": render_directory}
    source, document = _kubeconfig_document(kubeconfig)
    name = context or str(document.get("current-context") or "")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or [] if isinstance(c, dict)}
    clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or [] if isinstance(c, dict)}
    server = str(clusters.get(contexts.get(name, {}).get("cluster"), {}).get("server") or "(unknown)")
    return {"context": name or "(none)", "server": server, "kubeconfig": source}


def _kubeconfig_document(kubeconfig: str) -> tuple[str, dict]:
    """(where it came from, parsed kubeconfig) as the provider finds it: the config value (a path
    or the YAML itself), else $KUBECONFIG's first existing file, else ~/.kube/config."""
    import os

    if kubeconfig and "\n" in kubeconfig:
        source, text = "(inline in stack config)", kubeconfig
    else:
        candidates = [kubeconfig] if kubeconfig else [*os.environ.get("KUBECONFIG", "").split(os.pathsep)]
        candidates = [c for c in candidates if c] or [str(Path.home() / ".kube" / "config")]
        path = next((Path(c).expanduser() for c in candidates if Path(c).expanduser().is_file()), None)
        if path is None:
            return candidates[0], {}
        source, text = str(path), path.read_text(encoding="utf-8", errors="replace")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return source, {}
    return source, document if isinstance(document, dict) else {}


# --------------------------------------------------------------------------- the cluster stack
@dataclass(frozen=True)
class ClusterSettings:
    """The `cluster` profile: what one stack per cluster owns for every environment on it."""

    project: str
    stack: str
    kubeconfig: str
    kube_context: str
    operator: CnpgOperatorArgs
    plugin: BarmanCloudPluginArgs | None


def stack_profile(config: pulumi.Config | None = None, stack: str | None = None) -> str:
    return (config or pulumi.Config(PROJECT_NAME)).get("profile") or profile_for_stack(stack or pulumi.get_stack())


def load_cluster_settings(
    config: pulumi.Config | None = None, stack: str | None = None, project: str | None = None
) -> ClusterSettings:
    project = project or pulumi.get_project()
    stack = stack or pulumi.get_stack()
    read = _Reader(config or pulumi.Config(project), declared_config())
    read.unknown_keys()
    kubeconfig, kube_context = _kubernetes_target(read)
    if read.raw("renderYamlToDirectory"):
        read.fail(
            "renderYamlToDirectory",
            read.raw("renderYamlToDirectory"),
            "the cluster stack installs Helm releases, which pulumi-kubernetes cannot render",
            "unset it; GitOps users install the operator and plugin from their own charts (README: GitOps)",
        )
    chart_version = read.checked(
        "cnpgChartVersion", lambda v: bool(_VERSION.match(v)), "not a chart version", "use X.Y.Z, e.g. 0.29.0"
    )
    chart_path = read.raw("cnpgChartPath")
    values = read.raw("cnpgChartValues")
    local = _local_chart(read, chart_path) if chart_path else None
    if local is not None:
        local_version, schema = local
        if local_version != chart_version:
            read.fail(
                "cnpgChartVersion",
                chart_version,
                f"the local chart {chart_path} is version {local_version or '(none)'}",
                f"set cnpgChartVersion to {local_version}, or point cnpgChartPath at the {chart_version} chart",
            )
        _check_chart_values(read, values, schema)
    repository = read.checked(
        "cnpgChartRepository",
        lambda v: urlsplit(v).scheme in ("https", "http", "oci") and bool(urlsplit(v).netloc),
        "not a chart repository URL",
        "use e.g. https://cloudnative-pg.github.io/charts, or set cnpgChartPath for a local chart",
    )
    operator = CnpgOperatorArgs(
        chart_version=chart_version,
        namespace=_operator_namespace(read),
        chart_repository=repository,
        chart_path=chart_path,
        values=values,
        owner=f"{project}.{stack}",
    )
    plugin = None
    if read.raw("barmanPlugin"):
        crd = read.raw("barmanPluginCrd")
        if not crd.startswith(("https://", "http://")) and not _project_path(crd).is_file():
            read.fail(
                "barmanPluginCrd",
                crd,
                "file not found",
                "give the URL of the plugin release's ObjectStore CRD, or a path to a local copy",
            )
        plugin = BarmanCloudPluginArgs(
            namespace=operator.namespace,
            image=read.image("barmanPluginImage", tag_hint="the plugin's release tag, e.g. v0.14.0"),
            sidecar_image=read.image("barmanPluginSidecarImage", tag_hint="the plugin's release tag, e.g. v0.14.0"),
            crd_source=crd if crd.startswith(("https://", "http://")) else str(_project_path(crd)),
        )
    if read.errors:
        raise ConfigError(
            f"invalid configuration for stack {stack} ({len(read.errors)} problem(s)); nothing was created:\n"
            + "\n".join(read.errors)
        )
    return ClusterSettings(
        project=project, stack=stack, kubeconfig=kubeconfig, kube_context=kube_context, operator=operator, plugin=plugin
    )


def _operator_namespace(read: _Reader) -> str:
    return read.checked(
        "cnpgOperatorNamespace", is_dns_label, "not a namespace name", "use a DNS-1123 label, e.g. cnpg-system"
    )


def _project_path(path: str) -> Path:
    """Relative paths are the project directory's, where the CLI runs the program and the plugins."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_FILE.parent / candidate


def _local_chart(read: _Reader, chart_path: str) -> tuple[str, dict] | None:
    """(version, values.schema.json or {}) of a local chart directory or archive; None after a problem."""
    import tarfile

    path = _project_path(chart_path)
    fix = "give a chart directory (with Chart.yaml) or a chart archive (.tgz), relative to the project directory"
    files: dict[str, bytes] = {}
    try:
        if path.is_dir():
            files = {
                name: (path / name).read_bytes()
                for name in ("Chart.yaml", "values.schema.json")
                if (path / name).is_file()
            }
        elif path.is_file() and tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    top, _, name = member.name.partition("/")
                    handle = archive.extractfile(member) if name in ("Chart.yaml", "values.schema.json") else None
                    if handle:
                        files[name] = handle.read()
        else:
            read.fail("cnpgChartPath", chart_path, "no such chart directory or archive", fix)
            return None
        if "Chart.yaml" not in files:
            read.fail("cnpgChartPath", chart_path, "not a chart (no Chart.yaml)", fix)
            return None
        chart = yaml.safe_load(files["Chart.yaml"]) or {}
        schema = json.loads(files["values.schema.json"]) if "values.schema.json" in files else {}
    except (OSError, ValueError, yaml.YAMLError, tarfile.TarError) as error:
        read.fail("cnpgChartPath", chart_path, f"unreadable chart ({error})", fix)
        return None
    return str(chart.get("version") or ""), schema


def _check_chart_values(read: _Reader, values: dict, schema: dict) -> None:
    """Helm validates values against the chart's schema at install; do it before anything runs."""
    import jsonschema

    for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(top level)"
        read.fail(
            "cnpgChartValues",
            values,
            f"at {where}: {error.message}",
            "follow the chart's values.schema.json (its values.yaml documents every key)",
        )


def _cluster_stack(read: _Reader) -> str:
    return read.checked(
        "clusterStack",
        lambda v: v == "" or bool(re.fullmatch(r"([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+", v)),
        "not a stack name",
        "use the cluster stack's name (cluster), or org/project/stack, or leave it empty when someone else "
        "manages the operator (then cnpgOperatorNamespace says where it runs)",
    )


@dataclass(frozen=True)
class ClusterServices:
    """What an environment stack uses from the cluster stack (or, without one, from its own config)."""

    operator_namespace: str
    operator_version: str
    plugin_version: str


def cluster_services(s: Settings, read_stack_outputs: Callable[[str], dict]) -> ClusterServices:
    """The cluster stack's outputs, checked before anything is registered: a missing cluster stack,
    an operator too old, or a missing backup plugin stops preview with the command that fixes it."""
    needs_plugin = s.operations.backup.store_needed and s.postgres.in_cluster
    if not s.postgres.in_cluster:
        # An external PostgreSQL server needs neither the operator nor the backup plugin.
        return ClusterServices(s.postgres.operator_namespace, "", "")
    if not s.cluster_stack:
        return ClusterServices(s.postgres.operator_namespace, "", "(managed elsewhere)" if needs_plugin else "")
    name = s.cluster_stack if "/" in s.cluster_stack else f"{pulumi.get_organization()}/{s.project}/{s.cluster_stack}"
    key = f"{PROJECT_NAME}:clusterStack = {json.dumps(s.cluster_stack)}"
    create = f"`make up STACK={s.cluster_stack}`" if "/" not in s.cluster_stack else f"`pulumi up` of {name}"
    try:
        outputs = read_stack_outputs(name)
    except Exception as error:  # the engine's own message: unknown stack, no access...
        text = re.sub(r"^invoke of \S+ failed: ", "", str(error).strip())
        first_line = text.splitlines()[-1] if text else type(error).__name__
        raise ConfigError(
            f"stack {s.stack}: the cluster stack {name} cannot be read ({first_line}); nothing was created.\n"
            f"  - {key}. Fix: create it first with {create}, or set clusterStack to the stack that owns "
            "the CloudNativePG operator (empty if someone else manages it)"
        ) from None
    problems = []
    namespace = str(outputs.get("cnpgOperatorNamespace") or "")
    version = str(outputs.get("cnpgOperatorVersion") or "")
    plugin = str(outputs.get("barmanPluginVersion") or "")
    if s.postgres.in_cluster and not namespace:
        problems.append(f"  - {key}: it has no CloudNativePG operator deployed. Fix: run {create}")
    elif s.postgres.in_cluster and _version_tuple(version) < MIN_OPERATOR_VERSION:
        problems.append(
            f"  - {key}: its CloudNativePG operator is {version or 'of unknown version'}, this stack needs "
            f"{'.'.join(map(str, MIN_OPERATOR_VERSION))} or newer. Fix: raise cnpgChartVersion in "
            f"Pulumi.{s.cluster_stack}.yaml and run {create}"
        )
    if needs_plugin and not plugin:
        problems.append(
            f"  - {key}: it does not run the Barman Cloud plugin that backups need. Fix: set barmanPlugin: true "
            f"in Pulumi.{s.cluster_stack}.yaml and run {create}, or set backups: off here"
        )
    if problems:
        raise ConfigError(
            f"stack {s.stack} cannot use the cluster stack {name}; nothing was created:\n" + "\n".join(problems)
        )
    return ClusterServices(namespace or s.postgres.operator_namespace, version, plugin)


def _version_tuple(version: str) -> tuple[int, ...]:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in match.groups()) if match else (0,)
