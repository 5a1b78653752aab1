"""Stack configuration: read once, validated as a whole, turned into typed settings.

Pulumi.yaml's `config:` block is the one declaration of every key (type, default, description);
this module reads the defaults from it so the two can never disagree. Every value is checked
before any resource is registered: a bad stack fails `pulumi preview` with one message that names
each key, its value and the fix, and nothing is created.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import yaml

PROJECT_FILE = Path(__file__).resolve().parent / "Pulumi.yaml"
PROFILES = ("dev", "prod", "pr")
ADMIN_ACCESS_MODES = ("loadBalancer", "nodePort")
MINIO_ADMIN_ACCESS_MODES = ("loadBalancer", "nodePort", "ingress")
TLS_ALGORITHMS = ("ECDSA", "RSA")
# PR stacks share a cluster with many others: their steady state plus the migration Job must fit.
PR_MEMORY_BUDGET_BYTES = 1024**3
PR_CPU_BUDGET_MILLICORES = 500
MIGRATION_JOB_CPU_REQUEST = "50m"
MIGRATION_JOB_MEMORY_REQUEST = "192Mi"

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
_UNITS = {
    None: 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
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
class AdminEndpoint:
    """How the machine running Pulumi reaches a data service to configure it."""

    access: str
    host: str
    node_port: int
    source_ranges: tuple[str, ...]


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
class PostgresSettings:
    instances: int
    image: str
    storage_size: str
    storage_class: str
    resources: Resources
    install_operator: bool
    operator_chart_version: str
    operator_namespace: str
    admin: AdminEndpoint


@dataclass(frozen=True)
class MinioSettings:
    image: str
    replicas: int
    storage_size: str
    storage_class: str
    resources: Resources
    bucket: str
    region: str
    admin: AdminEndpoint


@dataclass(frozen=True)
class MlflowSettings:
    version: str
    image_repository: str
    replicas: int
    workers: int
    resources: Resources
    auth: bool
    admin_user: str

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
    ingress: IngressSettings
    tls: TlsSettings
    postgres: PostgresSettings
    minio: MinioSettings
    mlflow: MlflowSettings

    @property
    def protect_data(self) -> bool:
        """prod: a mistaken destroy or rename must not lose the database or the bucket."""
        return self.profile == "prod"

    @property
    def ephemeral(self) -> bool:
        """pr: `pulumi destroy` must leave nothing behind (PVCs, bucket contents)."""
        return self.profile == "pr"


def declared_config(project_file: Path = PROJECT_FILE) -> dict[str, dict]:
    """The `config:` block of Pulumi.yaml: key -> {type, default, description}."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(project_file, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)["config"]


class _Reader:
    """Reads raw config values with Pulumi.yaml's defaults and collects every problem."""

    def __init__(self, config: pulumi.Config, declared: dict[str, dict]):
        self._config = config
        self._declared = declared
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.errors.append(
            f"  - {self._config.name}:{key} = {json.dumps(value)}: {problem}. Fix: {fix}"
        )

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
        self.fail(key, text, f"expected {'a list of strings' if kind == 'array' else 'an ' + kind if kind == 'integer' else 'a ' + kind}",
                  f"`pulumi config set {key}{' --path' if kind == 'array' else ''} <{kind}>`")
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

    def integer(self, key: str, low: int, high: int, fix: Optional[str] = None) -> int:
        return self.checked(
            key, lambda v: low <= v <= high, f"must be between {low} and {high}",
            fix or f"set a value from {low} to {high}",
        )

    def quantity(self, key: str, memory: bool) -> str:
        example = "256Mi or 1Gi" if memory else "100m or 1"
        return self.checked(
            key, lambda v: parse_quantity(v) is not None and parse_quantity(v) > 0,
            "not a positive Kubernetes quantity", f"use a quantity such as {example}",
        )

    def storage(self, key: str) -> str:
        return self.checked(
            key, lambda v: bool(_STORAGE.match(v)), "not a storage size",
            "use a whole number with a binary suffix, e.g. 1Gi, 500Mi or 1Ti",
        )

    def image(self, key: str, tag_rule: Callable[[str], bool] = lambda tag: True,
              tag_hint: str = "an explicit version tag") -> str:
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

    def admin_endpoint(self, prefix: str, modes: tuple[str, ...], source_ranges: tuple[str, ...]) -> AdminEndpoint:
        access = self.choice(f"{prefix}AdminAccess", modes)
        host = self.checked(
            f"{prefix}AdminHost", lambda v: v == "" or is_ip(v) or is_dns_name(v),
            "not an IP address or DNS name", "use e.g. 127.0.0.1 or db.example.com, or leave it empty",
        )
        if access == "nodePort" and not host:
            self.fail(f"{prefix}AdminHost", host, f"required when {prefix}AdminAccess is nodePort",
                      f"`pulumi config set {prefix}AdminHost <a node's IP or name>`")
        node_port = self.integer(f"{prefix}AdminNodePort", 30000, 32767)
        return AdminEndpoint(access=access, host=host, node_port=node_port, source_ranges=source_ranges)


def parse_quantity(value: Any) -> Optional[float]:
    """A Kubernetes quantity in base units (cores or bytes); None when malformed."""
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    return float(match[1]) * _UNITS[match[2]] if match else None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_dns_name(value: str) -> bool:
    labels = value.split(".")
    return (
        len(value) <= 253 and len(labels) >= 2 and all(_DNS_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_bucket_name(value: str) -> bool:
    """S3 bucket naming rules (also MinIO's)."""
    return (
        3 <= len(value) <= 63
        and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", value) is not None
        and ".." not in value and ".-" not in value and "-." not in value
        and not is_ip(value)
        and not value.startswith(("xn--", "sthree-"))
        and not value.endswith(("-s3alias", "--ol-s3"))
    )


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=True)
        return True
    except ValueError:
        return False


def profile_for_stack(stack: str) -> str:
    if _PR_STACK.match(stack):
        return "pr"
    return "prod" if stack.startswith("prod") else "dev"


def load_settings(config: Optional[pulumi.Config] = None, stack: Optional[str] = None,
                  project: Optional[str] = None) -> Settings:
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
    if profile not in PROFILES:
        read.fail("profile", profile, "unknown profile", f"use one of {', '.join(PROFILES)}, or leave it empty")
        profile = "dev"

    source_ranges = tuple(read.raw("adminSourceRanges"))
    for cidr in source_ranges:
        if not is_cidr(cidr):
            read.fail("adminSourceRanges", cidr, "not a CIDR block (host bits must be zero)",
                      "list networks such as 203.0.113.0/24 or 198.51.100.7/32")
    if not source_ranges:
        read.fail("adminSourceRanges", [], "must not be empty", "list the CIDRs of the machines that run pulumi")

    domain = read.checked("ingressDomain", is_dns_name, "not a DNS domain",
                          "use a domain such as localtest.me or mlflow.example.com")
    if len(f"mlflow-{namespace}") > 63:
        read.fail("ingressDomain", domain, f"host label mlflow-{namespace} is longer than 63 characters",
                  "use a shorter stack name")
    ingress = IngressSettings(
        domain=domain,
        class_name=read.checked("ingressClassName", lambda v: v == "" or bool(_DNS_LABEL.match(v)),
                                "not a valid IngressClass name", "use e.g. nginx or traefik, or leave it empty"),
        tls_secret_name=read.checked("ingressTlsSecretName", lambda v: v == "" or is_dns_subdomain(v),
                                     "not a valid Secret name", "use a DNS-1123 name or leave it empty"),
        cluster_issuer=read.checked("ingressClusterIssuer", lambda v: v == "" or is_dns_subdomain(v),
                                    "not a valid ClusterIssuer name", "use a DNS-1123 name or leave it empty"),
    )
    if ingress.tls_secret_name and ingress.cluster_issuer:
        read.fail("ingressClusterIssuer", ingress.cluster_issuer, "conflicts with ingressTlsSecretName",
                  "set only one of ingressTlsSecretName and ingressClusterIssuer")

    tls = TlsSettings(
        algorithm=read.choice("tlsAlgorithm", TLS_ALGORITHMS),
        validity_days=read.integer("tlsValidityDays", 7, 3650),
        early_renewal_days=read.integer("tlsEarlyRenewalDays", 1, 365),
        self_signed=read.raw("tlsSelfSigned"),
    )
    if tls.early_renewal_days >= tls.validity_days:
        read.fail("tlsEarlyRenewalDays", tls.early_renewal_days, "must be shorter than tlsValidityDays",
                  f"use fewer than {tls.validity_days} days")

    postgres = PostgresSettings(
        instances=read.integer("postgresInstances", 1, 9),
        image=read.image("postgresImage", lambda tag: tag[0].isdigit(), "a PostgreSQL version tag such as 17.5"),
        storage_size=read.storage("postgresStorageSize"),
        storage_class=read.raw("postgresStorageClass"),
        resources=read.resources("postgres"),
        install_operator=read.raw("installCnpgOperator"),
        operator_chart_version=read.checked("cnpgChartVersion", lambda v: bool(_VERSION.match(v)),
                                            "not a chart version", "use X.Y.Z, e.g. 0.29.0"),
        operator_namespace=read.checked("cnpgOperatorNamespace", lambda v: bool(_DNS_LABEL.match(v)),
                                        "not a namespace name", "use a DNS-1123 label, e.g. cnpg-system"),
        admin=read.admin_endpoint("postgres", ADMIN_ACCESS_MODES, source_ranges),
    )
    minio = MinioSettings(
        image=read.image("minioImage", lambda tag: bool(_MINIO_TAG.match(tag)),
                         "a MinIO release tag such as RELEASE.2025-09-07T16-13-09Z"),
        replicas=read.checked("minioReplicas", lambda v: v == 1 or 4 <= v <= 16,
                              "MinIO runs either one server or an erasure set of 4 to 16",
                              "set 1 (single drive) or 4..16 (distributed, HA)"),
        storage_size=read.storage("minioStorageSize"),
        storage_class=read.raw("minioStorageClass"),
        resources=read.resources("minio"),
        bucket=read.checked("bucket", is_bucket_name, "not a valid S3 bucket name",
                            "use 3-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"),
        region=read.checked("s3Region", lambda v: bool(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]+", v)),
                            "not an S3 region", "use e.g. us-east-1"),
        admin=read.admin_endpoint("minio", MINIO_ADMIN_ACCESS_MODES, source_ranges),
    )
    mlflow = MlflowSettings(
        version=read.checked("mlflowVersion", lambda v: bool(_VERSION.match(v)), "not an MLflow version",
                             "use X.Y.Z, e.g. 3.17.2 (the image tag v<version>-full is derived from it)"),
        image_repository=read.checked("mlflowImage", lambda v: bool(_IMAGE.match(v)) and ":" not in v.rsplit("/", 1)[-1] and "@" not in v,
                                      "must be a repository without tag", "use e.g. ghcr.io/mlflow/mlflow; the tag comes from mlflowVersion"),
        replicas=read.integer("mlflowReplicas", 1, 20),
        workers=read.integer("mlflowWorkers", 1, 16),
        resources=read.resources("mlflow"),
        auth=read.raw("mlflowAuth"),
        admin_user=read.checked("mlflowAdminUser", lambda v: bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v)),
                                "not a valid user name", "use letters, digits, '.', '_' or '-'"),
    )
    kubeconfig = read.raw("kubeconfig")
    kube_context = read.raw("kubeContext")
    for prefix, res in (("postgres", postgres.resources), ("minio", minio.resources), ("mlflow", mlflow.resources)):
        _check_requests_within_limits(read, prefix, res)

    if profile == "prod":
        if postgres.instances < 2:
            read.fail("postgresInstances", postgres.instances, "prod must run PostgreSQL highly available",
                      "set postgresInstances to 3")
        if mlflow.replicas < 2:
            read.fail("mlflowReplicas", mlflow.replicas, "prod must run MLflow highly available",
                      "set mlflowReplicas to 2 or more")
    if profile == "pr":
        _check_pr_budget(read, postgres, minio, mlflow)
        if postgres.install_operator:
            read.fail("installCnpgOperator", True, "PR stacks share the cluster's CloudNativePG operator",
                      "set installCnpgOperator to false (profiles/pr.yaml does)")

    if read.errors:
        raise ConfigError(
            f"invalid configuration for stack {stack} ({len(read.errors)} problem(s)); nothing was created:\n"
            + "\n".join(read.errors)
        )
    return Settings(
        project=project, stack=stack, profile=profile, namespace=namespace, kubeconfig=kubeconfig,
        kube_context=kube_context, ingress=ingress, tls=tls, postgres=postgres, minio=minio, mlflow=mlflow,
    )


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and all(_DNS_LABEL.match(label) for label in value.split("."))


def _check_requests_within_limits(read: _Reader, prefix: str, res: Resources) -> None:
    for kind in ("Cpu", "Memory"):
        request = parse_quantity(getattr(res, f"{kind.lower()}_request"))
        limit = parse_quantity(getattr(res, f"{kind.lower()}_limit"))
        if request is not None and limit is not None and request > limit:
            read.fail(f"{prefix}{kind}Request", getattr(res, f"{kind.lower()}_request"),
                      f"exceeds {prefix}{kind}Limit ({getattr(res, f'{kind.lower()}_limit')})",
                      f"lower {prefix}{kind}Request or raise {prefix}{kind}Limit")


def footprint(postgres: PostgresSettings, minio: MinioSettings, mlflow: MlflowSettings) -> tuple[float, float]:
    """Total requested (CPU cores, memory bytes): every pod of the stack plus the migration Job."""
    parts = [
        (postgres.instances, postgres.resources.cpu_request, postgres.resources.memory_request),
        (minio.replicas, minio.resources.cpu_request, minio.resources.memory_request),
        (mlflow.replicas, mlflow.resources.cpu_request, mlflow.resources.memory_request),
        (1, MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST),
    ]
    cpu = sum(count * (parse_quantity(c) or 0) for count, c, _ in parts)
    memory = sum(count * (parse_quantity(m) or 0) for count, _, m in parts)
    return cpu, memory


def _check_pr_budget(read: _Reader, postgres: PostgresSettings, minio: MinioSettings, mlflow: MlflowSettings) -> None:
    cpu, memory = footprint(postgres, minio, mlflow)
    if memory > PR_MEMORY_BUDGET_BYTES:
        read.fail("mlflowMemoryRequest", mlflow.resources.memory_request,
                  f"a PR stack requests {memory / 2**20:.0f}Mi in total, over its 1024Mi budget",
                  "lower the *MemoryRequest keys or the replica counts in profiles/pr.yaml")
    if cpu * 1000 > PR_CPU_BUDGET_MILLICORES:
        read.fail("mlflowCpuRequest", mlflow.resources.cpu_request,
                  f"a PR stack requests {cpu * 1000:.0f}m CPU in total, over its 500m budget",
                  "lower the *CpuRequest keys or the replica counts in profiles/pr.yaml")
