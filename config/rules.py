"""The rules between keys, run by StackConfig's model validator once every value passed its own check.

Each rule adds a problem (key, value, problem, fix) instead of raising, so `make check` reports them all.
"""

from __future__ import annotations

import json
import tarfile
from typing import TYPE_CHECKING, Any

import yaml

import sizing
from config.checks import is_dns_label, is_dns_name, project_path
from config.problems import Problems

if TYPE_CHECKING:
    from config.model import StackConfig

CREDENTIALS = ("postgres_admin_password", "s3_secret_key", "s3_admin_password", "backup_s3_secret_key")


def environment_rules(c: StackConfig, problems: Problems) -> None:
    """An environment stack (dev, prod, pr-<n>): everything its namespace holds."""
    if not is_dns_label(c.namespace):
        problems.append(
            f"  - stack name {json.dumps(c.stack)}: the namespace {c.namespace} is not a DNS-1123 label. "
            "Fix: use a stack name of lowercase letters, digits and '-' (at most 56 characters), e.g. dev or pr-42"
        )
    _ingress(c, problems)
    if c.tls_early_renewal_days >= c.tls_validity_days:
        problems.add(
            "tlsEarlyRenewalDays",
            c.tls_early_renewal_days,
            "must be shorter than tlsValidityDays",
            f"use fewer than {c.tls_validity_days} days",
        )
    _postgres(c, problems)
    _object_store(c, problems)
    _mlflow_memory(c, problems)
    _artifact_transfer(c, problems)
    _kubernetes_target(c, problems)
    if c.render_yaml_to_directory:
        for key, value in (("kubeconfig", c.target_kubeconfig), ("kubeContext", c.target_context)):
            if value:
                problems.add(
                    key,
                    "(set)",
                    "renderYamlToDirectory writes manifests instead of talking to a cluster",
                    f"unset {key}, or unset renderYamlToDirectory to deploy to a cluster",
                )
    for service in ("postgres", "minio", "mlflow"):
        _requests_within_limits(c, service, problems)
    _operations(c, problems)
    _connection_budget(c, problems)
    if c.profile == "prod":
        if c.postgres_in_cluster and c.postgres_instances < 2:
            problems.add(
                "postgresInstances",
                c.postgres_instances,
                "prod must run PostgreSQL highly available",
                "set postgresInstances to 3",
            )
        if c.mlflow_replicas < 2:
            problems.add(
                "mlflowReplicas",
                c.mlflow_replicas,
                "prod must run MLflow highly available",
                "set mlflowReplicas to 2 or more",
            )
    if c.profile == "pr":
        _pr_budget(c, problems)


_INGRESS_KEYS = {
    "ingressClassName": "ingress_class_name",
    "ingressTlsSecretName": "ingress_tls_secret_name",
    "ingressClusterIssuer": "ingress_cluster_issuer",
}
_GATEWAY_KEYS = {
    "gatewayName": "gateway_name",
    "gatewayNamespace": "gateway_namespace",
    "gatewayListener": "gateway_listener",
}


def _ingress(c: StackConfig, problems: Problems) -> None:
    """publishMode and the keys of the other modes: a key the chosen mode ignores is a mistake."""
    if c.publish_mode != "ingress":
        for key, field in _INGRESS_KEYS.items():
            if getattr(c, field):
                problems.add(
                    key,
                    getattr(c, field),
                    f"only used with publishMode ingress (publishMode is {c.publish_mode})",
                    "remove it"
                    + ("; the Gateway's listener carries the certificate" if c.publish_mode == "httpRoute" else ""),
                )
    if c.publish_mode != "httpRoute":
        for key, field in _GATEWAY_KEYS.items():
            if getattr(c, field):
                problems.add(
                    key,
                    getattr(c, field),
                    "only used with publishMode httpRoute",
                    "remove it, or set publishMode: httpRoute",
                )
    elif not c.gateway_name:
        problems.add(
            "gatewayName",
            "",
            "publishMode is httpRoute: the routes need a Gateway to attach to",
            "`pulumi config set gatewayName <gateway>` (and gatewayNamespace when it lives elsewhere)",
        )
    if len(f"mlflow-{c.namespace}") > 63:
        problems.add(
            "ingressDomain",
            c.ingress_domain,
            f"host label mlflow-{c.namespace} is longer than 63 characters",
            "use a shorter stack name",
        )
    if c.ingress_tls_secret_name and c.ingress_cluster_issuer:
        problems.add(
            "ingressClusterIssuer",
            c.ingress_cluster_issuer,
            "conflicts with ingressTlsSecretName",
            "set only one of ingressTlsSecretName and ingressClusterIssuer",
        )


def _read_replica(c: StackConfig, problems: Problems) -> None:
    if c.postgres_read_replica != "on":
        return
    if c.postgres_in_cluster and c.postgres_instances < 2:
        problems.add(
            "postgresReadReplica",
            "on",
            f"postgresInstances is {c.postgres_instances}: there is no replica to read from",
            "raise postgresInstances to 2 or more, or set postgresReadReplica to auto or off",
        )
    elif not c.postgres_in_cluster and not c.postgres_replica_host:
        problems.add(
            "postgresReadReplica",
            "on",
            "postgresMode is external: the replica's host is not known",
            "`pulumi config set postgresReplicaHost <replica DNS name>`, or set postgresReadReplica to auto or off",
        )


def _postgres(c: StackConfig, problems: Problems) -> None:
    password = c.postgres_admin_password.get_secret_value()
    _read_replica(c, problems)
    if c.postgres_in_cluster:
        for key, value in (
            ("postgresHost", c.postgres_host),
            ("postgresReplicaHost", c.postgres_replica_host),
            ("postgresCaFile", c.postgres_ca_file),
        ):
            if value:
                problems.add(
                    key, value, "only used with postgresMode external", "remove it, or set postgresMode: external"
                )
        if password:
            problems.add(
                "postgresAdminPassword",
                "(set)",
                "only used with postgresMode external",
                "remove it, or set postgresMode: external",
            )
        return
    if not is_dns_name(c.postgres_host):
        problems.add(
            "postgresHost",
            c.postgres_host,
            "postgresMode is external: needs the server's DNS name",
            "`pulumi config set postgresHost db.example.com` (the name in its certificate)",
        )
    if not c.postgres_ca_file:
        problems.add(
            "postgresCaFile",
            "",
            "postgresMode is external: MLflow verifies the server (verify-full)",
            "commit the server's CA bundle and `pulumi config set postgresCaFile certs/db-ca.pem`",
        )
    if c.postgres_replica_host and not is_dns_name(c.postgres_replica_host):
        problems.add(
            "postgresReplicaHost",
            c.postgres_replica_host,
            "not the replica's DNS name",
            "use the name in the replica's certificate, e.g. db-ro.example.com (MLflow verifies it: verify-full)",
        )
    if not password:
        problems.add(
            "postgresAdminPassword",
            "",
            "postgresMode is external: pulumi-postgresql needs the admin login",
            "`pulumi config set --secret postgresAdminPassword <password>`",
        )


_STORE_KEYS = {
    "s3Endpoint": "s3_endpoint",
    "s3CaFile": "s3_ca_file",
    "s3AccessKey": "s3_access_key",
    "s3SecretKey": "s3_secret_key",
    "s3AdminUser": "s3_admin_user",
    "s3AdminPassword": "s3_admin_password",
}
_REQUIRED_STORE_KEYS = {
    "external": ("s3Endpoint", "s3AccessKey", "s3SecretKey"),
    "externalMinio": ("s3Endpoint", "s3AdminUser", "s3AdminPassword"),
}


def value_of(c: StackConfig, field: str) -> Any:
    value = getattr(c, field)
    return value.get_secret_value() if field in CREDENTIALS else value


def _object_store(c: StackConfig, problems: Problems) -> None:
    mode = c.object_store_mode
    for key in _REQUIRED_STORE_KEYS.get(mode, ()):
        if not value_of(c, _STORE_KEYS[key]):
            secret = "--secret " if _STORE_KEYS[key] in CREDENTIALS else ""
            problems.add(key, "", f"objectStoreMode is {mode}: required", f"`pulumi config set {secret}{key} <value>`")
    if mode != "inCluster":
        return
    for key, field in _STORE_KEYS.items():
        if value_of(c, field):
            # Name the value, except a credential's.
            problems.add(
                key,
                "(set)" if field in CREDENTIALS else value_of(c, field),
                "only used with objectStoreMode external or externalMinio",
                "remove it, or set objectStoreMode",
            )


def _mlflow_memory(c: StackConfig, problems: Problems) -> None:
    """All workers (and the job runner when on) must fit mlflowMemoryLimit."""
    workers, memory = c.mlflow_worker_count, sizing.parse_quantity(c.mlflow_memory_limit)
    if memory and sizing.mlflow_memory(workers) > memory:
        problems.add(
            "mlflowWorkers",
            c.mlflow_workers,
            f"{workers} workers need about {sizing.mlflow_memory(workers) / 2**20:.0f}Mi, "
            f"over mlflowMemoryLimit ({c.mlflow_memory_limit})",
            "lower mlflowWorkers (or mlflowCpuLimit when it is 0), or raise mlflowMemoryLimit",
        )
    needed = sizing.mlflow_memory(workers, job_runner=True)
    if c.job_runner_on and memory and needed > memory:
        problems.add(
            "mlflowJobRunner",
            c.mlflow_job_runner,
            f"MLflow's job runner and {workers} worker(s) need about {needed / 2**20:.0f}Mi, "
            f"over mlflowMemoryLimit ({c.mlflow_memory_limit})",
            f"set mlflowJobRunner off, or raise mlflowMemoryLimit to at least {-(-needed // 2**30):.0f}Gi",
        )


def _artifact_transfer(c: StackConfig, problems: Problems) -> None:
    """minioIngress only publishes an in-cluster MinIO over TLS; direct transfers need signed URLs clients reach."""
    if c.minio_ingress and not c.object_store_in_cluster:
        problems.add(
            "minioIngress",
            True,
            f"objectStoreMode is {c.object_store_mode}: there is no in-cluster MinIO to publish",
            "remove minioIngress",
        )
    elif c.minio_ingress and c.publish_mode == "none":
        problems.add(
            "minioIngress", True, "publishMode is none: nothing is published", "remove minioIngress, or set publishMode"
        )
    elif c.minio_ingress and not c.public_tls:
        problems.add(
            "minioIngress",
            True,
            "the S3 endpoint would be published over plain HTTP (credentials, signed URLs and artifacts in clear)",
            "set ingressTlsSecretName or ingressClusterIssuer"
            if c.publish_mode == "ingress"
            else "serve the Gateway listener over HTTPS (gatewayHttps: true)",
        )
    if c.artifact_transfer_mode == "direct" and c.object_store_in_cluster and not (c.minio_ingress and c.public_tls):
        problems.add(
            "artifactTransferMode",
            c.artifact_transfer_mode,
            "MLflow signs URLs for the S3 endpoint it uses itself; the "
            "in-cluster MinIO (minio.<namespace>.svc, private CA) is neither reachable nor trusted outside "
            "the cluster",
            "publish MinIO with a trusted certificate (minioIngress: true, with ingressTlsSecretName or "
            "ingressClusterIssuer, or with publishMode httpRoute on an HTTPS listener), use objectStoreMode "
            "external/externalMinio, or keep artifactTransferMode proxied",
        )


# The standard pulumi-kubernetes keys a Pulumi user sets (`pulumi config set kubernetes:context ...`),
# honoured by the program's own provider; config.reader refuses any other kubernetes:* key.
KUBERNETES_KEYS = {"context": "kubeContext", "kubeconfig": "kubeconfig"}


def _kubernetes_target(c: StackConfig, problems: Problems) -> None:
    for standard_key, key in KUBERNETES_KEYS.items():
        ours = c.kube_context if key == "kubeContext" else c.kubeconfig
        theirs = c._kubernetes.get(standard_key, "")
        if ours and theirs and ours != theirs:
            problems.add(
                key,
                ours,
                f"conflicts with kubernetes:{standard_key} = {json.dumps(theirs)}",
                f"set only one of {key} and kubernetes:{standard_key}",
            )


def _requests_within_limits(c: StackConfig, service: str, problems: Problems) -> None:
    for kind in ("cpu", "memory"):
        request, limit = getattr(c, f"{service}_{kind}_request"), getattr(c, f"{service}_{kind}_limit")
        if sizing.quantity(request) > sizing.quantity(limit):
            key, limit_key = f"{service}{kind.title()}Request", f"{service}{kind.title()}Limit"
            problems.add(key, request, f"exceeds {limit_key} ({limit})", f"lower {key} or raise {limit_key}")


def _operations(c: StackConfig, problems: Problems) -> None:
    """Backups and restores (Barman Cloud plugin), metrics."""
    if c.backups == "on" and not c.postgres_in_cluster:
        problems.add(
            "backups",
            "on",
            "an external PostgreSQL server is backed up by whoever runs it",
            "remove backups (or set it to auto/off), or use postgresMode: inCluster",
        )
    source, target = c.postgres_restore_source, c.postgres_restore_target_time
    if target and not source:
        problems.add(
            "postgresRestoreTargetTime",
            target,
            "a restore needs a source: the backups to restore from",
            "set postgresRestoreSource to the server name of those backups (mlflow-pg by default), "
            "or remove postgresRestoreTargetTime",
        )
    if source and not c.postgres_in_cluster:
        problems.add(
            "postgresRestoreSource",
            source,
            "restores into an in-cluster PostgreSQL (CloudNativePG) only",
            "remove it, or use postgresMode: inCluster",
        )
    if source and c.backups_on and source == c.backup_server:
        problems.add(
            "backupServerName",
            c.backup_server_name,
            f"the restored cluster would archive its WAL onto the backups of {source} that it restores from",
            f"give the new timeline its own name, e.g. `pulumi config set backupServerName {source}-2`",
        )
    if c.backup_store_needed:
        _backup_target(c, problems)
    elif c.backup_s3_endpoint or c.backup_s3_ca_file or c.backup_s3_access_key or value_of(c, "backup_s3_secret_key"):
        problems.add(
            "backupS3Endpoint",
            c.backup_s3_endpoint or "(unset)",
            "backup target keys are set but backups are off",
            "set backups: on, or remove the backupS3* keys",
        )
    if c.prometheus_operator and not c.metrics_on:
        problems.add("prometheusOperator", True, "there are no metrics to scrape with metrics: off", "set metrics: on")


def _backup_target(c: StackConfig, problems: Problems) -> None:
    secret_key = value_of(c, "backup_s3_secret_key")
    if c.backup_s3_endpoint:
        for key, value in (("backupS3AccessKey", c.backup_s3_access_key), ("backupS3SecretKey", secret_key)):
            if not value:
                secret = "--secret " if key == "backupS3SecretKey" else ""
                problems.add(
                    key,
                    "",
                    "backupS3Endpoint is set: the backup user's key pair is required",
                    f"`pulumi config set {secret}{key} <value>`",
                )
        return
    for key, value in (
        ("backupS3CaFile", c.backup_s3_ca_file),
        ("backupS3AccessKey", c.backup_s3_access_key),
        ("backupS3SecretKey", "(set)" if secret_key else ""),
    ):
        if value:
            problems.add(key, value, "only used with backupS3Endpoint", "remove it, or set backupS3Endpoint")
    if not c.object_store_in_cluster:
        problems.add(
            "backupS3Endpoint",
            "",
            f"objectStoreMode is {c.object_store_mode}: there is no in-cluster MinIO to back up to",
            "set backupS3Endpoint (with backupS3AccessKey/backupS3SecretKey) to an S3 endpoint for backups",
        )
    elif c.backup_bucket == c.bucket:
        problems.add(
            "backupBucket",
            c.backup_bucket,
            "is MLflow's artifact bucket; backups get a bucket and user of their own",
            "use another name, e.g. postgres-backups",
        )


def _connection_budget(c: StackConfig, problems: Problems) -> None:
    """postgresMaxConnections, when set, must hold MLflow's connections (and, in-cluster, the operator's)."""
    if not c.postgres_max_connections:
        return
    budget = sizing.connection_budget(c)
    needed = budget.max_connections if c.postgres_in_cluster else budget.mlflow
    if c.postgres_max_connections >= needed:
        return
    per_engine = f"({c.mlflow_db_pool_size} + {c.mlflow_db_max_overflow})"
    runner = f" + job runner {sizing.JOB_RUNNER_PROCESSES} x {per_engine}" if c.job_runner_on else ""
    operator = (
        f" + {budget.reserved} for PostgreSQL's superuser slots and CloudNativePG's instance manager"
        if c.postgres_in_cluster
        else ""
    )
    problems.add(
        "postgresMaxConnections",
        c.postgres_max_connections,
        f"MLflow can hold {budget.mlflow} connections: {c.mlflow_replicas} replica(s) + {sizing.SURGE_PODS} during "
        f"a rollout, each {c.mlflow_worker_count} worker(s) x {sizing.ENGINES_PER_WORKER} stores x {per_engine} "
        f"+ {sizing.SERVER_PROCESS_CONNECTIONS}{runner}, + {budget.commands} for the migration Job and gc{operator}",
        f"set postgresMaxConnections to at least {needed} (0 sizes an in-cluster server), or lower "
        "mlflowDbPoolSize, mlflowDbMaxOverflow, mlflowWorkers or mlflowReplicas",
    )


def _pr_budget(c: StackConfig, problems: Problems) -> None:
    cpu, memory = sizing.footprint(c)
    if memory > sizing.PR_MEMORY_BUDGET_BYTES:
        problems.add(
            "mlflowMemoryRequest",
            c.mlflow_memory_request,
            f"a PR stack requests {memory / 2**20:.0f}Mi in total, over its 1024Mi budget",
            "lower the *MemoryRequest keys or the replica counts in profiles/pr.yaml",
        )
    if cpu * 1000 > sizing.PR_CPU_BUDGET_MILLICORES:
        problems.add(
            "mlflowCpuRequest",
            c.mlflow_cpu_request,
            f"a PR stack requests {cpu * 1000:.0f}m CPU in total, over its 500m budget",
            "lower the *CpuRequest keys or the replica counts in profiles/pr.yaml",
        )


# --------------------------------------------------------------------------- the cluster stack
def cluster_rules(c: StackConfig, problems: Problems) -> None:
    """The cluster stack: the CloudNativePG operator's chart and the Barman Cloud plugin."""
    _kubernetes_target(c, problems)
    if c.render_yaml_to_directory:
        problems.add(
            "renderYamlToDirectory",
            c.render_yaml_to_directory,
            "the cluster stack installs Helm releases, which pulumi-kubernetes cannot render",
            "unset it; GitOps users install the operator and plugin from their own charts (docs/gitops.md)",
        )
    if c.cnpg_chart_path:
        local = _local_chart(c.cnpg_chart_path, problems)
        if local is not None:
            local_version, schema = local
            if local_version != c.cnpg_chart_version:
                problems.add(
                    "cnpgChartVersion",
                    c.cnpg_chart_version,
                    f"the local chart {c.cnpg_chart_path} is version {local_version or '(none)'}",
                    f"set cnpgChartVersion to {local_version}, or point cnpgChartPath at the "
                    f"{c.cnpg_chart_version} chart",
                )
            _chart_values(c.cnpg_chart_values, schema, problems)
    crd = c.barman_plugin_crd
    if c.barman_plugin and not crd.startswith(("https://", "http://")) and not project_path(crd).is_file():
        problems.add(
            "barmanPluginCrd",
            crd,
            "file not found",
            "give the URL of the plugin release's ObjectStore CRD, or a path to a local copy",
        )


def _local_chart(chart_path: str, problems: Problems) -> tuple[str, dict[str, Any]] | None:
    """(version, values.schema.json or {}) of a local chart directory or archive; None after a problem."""
    path = project_path(chart_path)
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
                    _, _, name = member.name.partition("/")
                    handle = archive.extractfile(member) if name in ("Chart.yaml", "values.schema.json") else None
                    if handle:
                        files[name] = handle.read()
        else:
            problems.add("cnpgChartPath", chart_path, "no such chart directory or archive", fix)
            return None
        if "Chart.yaml" not in files:
            problems.add("cnpgChartPath", chart_path, "not a chart (no Chart.yaml)", fix)
            return None
        chart = yaml.safe_load(files["Chart.yaml"]) or {}
        schema = json.loads(files["values.schema.json"]) if "values.schema.json" in files else {}
    except (OSError, ValueError, yaml.YAMLError, tarfile.TarError) as error:
        problems.add("cnpgChartPath", chart_path, f"unreadable chart ({error})", fix)
        return None
    return str(chart.get("version") or ""), schema


def _chart_values(values: dict[str, Any], schema: dict[str, Any], problems: Problems) -> None:
    """Helm validates values against the chart's schema at install; do it before anything runs."""
    import jsonschema

    for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(top level)"
        problems.add(
            "cnpgChartValues",
            values,
            f"at {where}: {error.message}",
            "follow the chart's values.schema.json (its values.yaml documents every key)",
        )
