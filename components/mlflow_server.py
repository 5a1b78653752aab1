"""MlflowServer: the MLflow tracking server, wired to PostgreSQL and MinIO through Outputs only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import k8s as kube
from components import publishing
from components.mlflow_containers import (
    CLIENT_POD_LABELS,
    CONTAINER_ENV,
    ENV_KEYS,
    OBJECT_STORE_CA_PATH,
    SECRET_ENV_REASON,
    ca_and_scratch,
    env_from_secret,
)
from components.publishing import Publication

PORT = 5000
SERVICE = "mlflow"
SERVER_LABELS = kube.labels("mlflow", "tracking-server")
# The server's pods (matchLabels form), for whoever selects them: monitoring, gc's egress rule.
POD_SELECTOR = kube.selector(SERVER_LABELS)
# Requests of one migration Job container: its share of a profile's footprint (quota sizing).
MIGRATION_JOB_CPU_REQUEST = "50m"
MIGRATION_JOB_MEMORY_REQUEST = "192Mi"
MIGRATION_LABELS = kube.labels("mlflow", "migration")
AUTH_CONFIG_PATH = "/etc/mlflow/auth/basic_auth.ini"
METRICS_DIR = "/var/lib/mlflow/prometheus"
# Server-side opt-ins of MLflow >= 3.18 (mlflow/server/handlers.py build_server_info_payload): only with
# them does /server-info advertise presigned multipart transfers; without them every byte is proxied.
DIRECT_TRANSFER_ENV = ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD")
# uvicorn keeps idle connections longer than ingress-nginx's upstream keepalive (60 s), so the proxy
# never reuses a connection the server is closing (a spurious 502).
KEEP_ALIVE_SECONDS = 75
# SQLAlchemy pool of each of a worker's stores (tracking, model registry, auth): connections kept and
# opened beyond them (mlflowDbPoolSize, mlflowDbMaxOverflow; sizing.py sizes PostgreSQL's
# max_connections from them). SQLAlchemy's default (5 kept) closes every connection beyond 5 after one
# use; a worker serving 8 concurrent clients then reopens one every other log_batch, each costing
# ~10 ms of CPU for TLS verify-full and SCRAM (make bench).
DB_POOL_ENV = ("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW")
# MLflow 3.18 encrypts the secrets it stores (AI gateway keys) under a key derived from this passphrase
# and version; unset, it uses a passphrase published in its source. One passphrase per version,
# generated per stack; mlflowKekVersion + 1 rotates (README: Rotating MLflow's encryption passphrase).
KEK_ENV = ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "MLFLOW_CRYPTO_KEK_VERSION")
# The migration Job's step that re-wraps the stored keys from the previous version's passphrase to the
# current one (`mlflow crypto rotate-kek`), the new passphrase from env, never an argument.
ROTATE_KEK_SCRIPT = (
    "import os; from mlflow.cli import cli; "
    "cli.main(['crypto', 'rotate-kek', '--yes', '--new-passphrase', "
    "os.environ.pop('MLFLOW_CRYPTO_KEK_NEW_PASSPHRASE')], prog_name='mlflow')"
)
# A rollout stuck this long (e.g. pods that Pod Security or a quota refuses) is failed by Kubernetes...
ROLLOUT_DEADLINE_SECONDS = 300
# ...and `up` gives up on the Deployment after this long, naming the reason ([ProgressDeadlineExceeded]).
ROLLOUT_TIMEOUT = "8m"


@dataclass
class MlflowServerArgs:
    namespace: pulumi.Input[str]
    version: str
    image: str
    # SQLAlchemy URIs without password; the role's password goes to libpq as PGPASSWORD.
    backend_store_uri: pulumi.Input[str]
    auth_database_uri: pulumi.Input[str]
    database_password: pulumi.Input[str]
    postgres_ca_secret_name: pulumi.Input[str]
    s3_endpoint_url: pulumi.Input[str]
    bucket: pulumi.Input[str]
    access_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]
    region: str
    # NetworkPolicy egress rules to the database and the object store (from their components).
    database_egress: pulumi.Input[Mapping]
    object_store_egress: pulumi.Input[Mapping]
    # How mlflow-<namespace>.<domain> is served: Ingress, HTTPRoute on a Gateway, or not published.
    publication: Publication
    # None: the object store's certificate is signed by a public CA the image trusts.
    object_store_ca_secret_name: pulumi.Input[str] | None = None
    replicas: int = 1
    workers: int = 1
    resources: Mapping[str, Mapping[str, str]] | None = None
    auth: bool = True
    admin_user: str = "admin"
    # Read-only URIs of the tracking and auth databases on PostgreSQL's replicas (None: reads go to the
    # primary). Searches and gets then run there; writes, and reads MLflow marks primary, stay on the primary.
    read_backend_store_uri: pulumi.Input[str] | None = None
    read_auth_database_uri: pulumi.Input[str] | None = None
    # proxied: every artifact byte goes through the server. direct: /server-info advertises presigned
    # multipart transfers (clients use them above their MLFLOW_MULTIPART_* thresholds): s3_endpoint_url
    # must then be an endpoint clients outside the cluster reach and trust, since MLflow signs for it.
    artifact_transfer: str = "proxied"
    # direct: the multipart threshold and upload part size clients should use (bytes; clientEnvironment).
    multipart_threshold_bytes: int = 500 * 2**20
    multipart_chunk_bytes: int = 16 * 2**20
    # MLflow's background job runner (huey, ~1.6 GiB more): off unless asked for; never on replicated
    # servers, where each would schedule.
    job_execution: bool = False
    # emptyDir /tmp: proxied uploads are spooled there before they go to the object store.
    scratch_size: str = "2Gi"
    # Ingress proxy timeouts; uvicorn has no per-request timeout, so this is the one bound.
    request_timeout_seconds: int = 600
    # MLflow 3.18's credential cache (basic_auth.ini auth_cache_ttl_seconds): without it every request
    # pays a password-hash check (werkzeug's scrypt, ~0.1 s of CPU); with it a revoked credential stays
    # valid on the other workers for at most this long. 0 turns it off.
    auth_cache_seconds: int = 30
    # Prometheus metrics at /metrics (--expose-prometheus, multiprocess files in an emptyDir); the
    # pod's own IP is then an allowed Host too, since Prometheus scrapes pods by address.
    metrics: bool = False
    # SQLAlchemy pool per store and worker (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / _MAX_OVERFLOW).
    db_pool_size: int = 10
    db_max_overflow: int = 5
    # Version of the encryption passphrase (MLFLOW_CRYPTO_KEK_VERSION): above 1, the migration Job first
    # re-wraps the stored keys from the previous version's passphrase (`mlflow crypto rotate-kek`).
    kek_version: int = 1


def allowed_hosts(namespace: str, fqdn: str | None) -> list[str]:
    """Host headers MLflow answers (3.x returns 403 to others): Service names, the published host (with
    any port: clients send one on non-default ports), port-forward."""
    names = [
        SERVICE,
        f"{SERVICE}.{namespace}",
        f"{SERVICE}.{namespace}.svc",
        f"{SERVICE}.{namespace}.svc.cluster.local",
        *([fqdn] if fqdn else []),
        "localhost",
        "127.0.0.1",
    ]
    return [pattern for name in names for pattern in (name, f"{name}:*")]


# MLflow's client downloads each presigned range whole in requests' 10 KiB reads (download_chunk,
# stream=False): small ranges do best. make bench, 256 MiB over TLS, by range size: 8 MiB 280 MB/s,
# 16-32 MiB 246, 64 MiB 190, 100 MiB 180 (two runs agree). Ranges have no part-count limit.
DIRECT_DOWNLOAD_CHUNK_BYTES = 8 * 2**20


def client_environment(args: MlflowServerArgs) -> dict[str, str]:
    """What an MLflow client should set for this server (the stack output clientEnvironment)."""
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(args.request_timeout_seconds)}
    if args.artifact_transfer == "direct":
        threshold = str(args.multipart_threshold_bytes)
        env.update(
            {
                "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": threshold,
                "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": threshold,
                "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(args.multipart_chunk_bytes),
                "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(DIRECT_DOWNLOAD_CHUNK_BYTES),
            }
        )
    return env


class MlflowServer(pulumi.ComponentResource):
    """Tracking server with proxied artifacts, basic auth, migrations, ingress, PDB and NetworkPolicy."""

    tracking_url: pulumi.Output[str]
    internal_url: pulumi.Output[str]
    fqdn: pulumi.Output[str]
    admin_user: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    # MlflowServer's env Secret: a Job acting as the server (gc) reads the same credentials.
    env_secret_name: pulumi.Output[str]
    # The S3 endpoint the server uses (and signs presigned URLs for): the artifact store clients see.
    s3_endpoint_url: pulumi.Output[str]
    # Resolves (to the Deployment's id) once the server's Deployment is rolled out.
    ready: pulumi.Output[str]
    # What an MLflow client should set for this server: request timeout; direct mode: multipart sizes.
    client_environment: dict[str, str]
    # The server's pods, in matchLabels form (POD_SELECTOR): for monitors and other pods' policies.
    pod_selector: dict[str, str]

    def __init__(self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:MlflowServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args
        fqdn = publishing.public_host(SERVICE, args.namespace, args.publication.domain)

        admin_password = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)
        flask_key = random.RandomPassword(f"{name}-flask-secret-key", length=64, special=False, opts=child)
        # One passphrase per version, named by it: the previous version's stays in state while the
        # current one is in use, so the migration Job can re-wrap from it.
        kek = {
            version: random.RandomPassword(f"{name}-kek-passphrase-v{version}", length=48, special=False, opts=child)
            for version in range(max(1, cfg.kek_version - 1), cfg.kek_version + 1)
        }
        env_values = {
            "backend-store-uri": args.backend_store_uri,
            "postgres-password": args.database_password,
            "aws-access-key-id": args.access_key,
            "aws-secret-access-key": args.secret_key,
            "crypto-kek-passphrase": kek[cfg.kek_version].result,
        }
        if args.read_backend_store_uri is not None:
            env_values["read-replica-backend-store-uri"] = args.read_backend_store_uri
        if cfg.kek_version > 1:
            env_values["crypto-kek-passphrase-previous"] = kek[cfg.kek_version - 1].result
        if cfg.auth:
            env_values.update(
                {
                    "auth-database-uri": args.auth_database_uri,
                    "flask-server-secret-key": flask_key.result,
                    "admin-password": admin_password.result,
                }
            )
        env_secret = k8s.core.v1.Secret(
            f"{name}-env",
            metadata={"namespace": args.namespace, "labels": SERVER_LABELS},
            type="Opaque",
            string_data=env_values,
            opts=child,
        )
        config_volumes, config_mounts = self._config_volumes(name, args, env_values, child)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", **kube.service_account(args.namespace, SERVER_LABELS), opts=child
        )
        migration = self._migration_job(name, args, env_secret, account, config_volumes, config_mounts)
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "namespace": args.namespace,
                "labels": SERVER_LABELS,
                "annotations": kube.checkov_skips({**kube.image_skips(), "CKV_K8S_35": SECRET_ENV_REASON}),
            },
            spec=self._deployment_spec(name, args, fqdn, env_secret, account, config_volumes, config_mounts),
            # A new version rolls out only after its schema migration completed.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[migration],
                custom_timeouts=pulumi.CustomTimeouts(create=ROLLOUT_TIMEOUT, update=ROLLOUT_TIMEOUT),
            ),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": SERVICE, "namespace": args.namespace, "labels": SERVER_LABELS},
            spec={
                "selector": kube.selector(SERVER_LABELS),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=child,
        )
        publishing.publish(
            name,
            args.publication,
            namespace=args.namespace,
            host=fqdn,
            service_name=SERVICE,
            port=80,
            labels=SERVER_LABELS,
            timeout_seconds=args.request_timeout_seconds,
            ingress_port={"name": "http"},
            ingress_annotations={
                # Artifacts of any size go through the proxy; long uploads must not be cut.
                "nginx.ingress.kubernetes.io/proxy-body-size": "0",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": str(args.request_timeout_seconds),
                "nginx.ingress.kubernetes.io/proxy-send-timeout": str(args.request_timeout_seconds),
            },
            parent=self,
        )
        if cfg.replicas > 1:
            kube.disruption_budget(f"{name}-pdb", args.namespace, SERVER_LABELS, {"minAvailable": 1}, self)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": SERVER_LABELS},
            # The tracking server is the platform's public face: anyone may reach its port.
            spec={
                "podSelector": {"matchLabels": kube.selector(SERVER_LABELS)},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": PORT, "protocol": "TCP"}]}],
            },
            opts=child,
        )
        # Server and Jobs talk to the database, the object store and DNS; never to the Kubernetes API.
        kube.egress_policy(
            f"{name}-egress",
            args.namespace,
            CLIENT_POD_LABELS,
            [args.database_egress, args.object_store_egress],
            parent=self,
        )

        self.fqdn = fqdn
        self.env_secret_name = env_secret.metadata.name
        self.internal_url = pulumi.Output.concat("http://", SERVICE, ".", args.namespace, ".svc")
        # Not published: clients inside the cluster (or through `kubectl port-forward`) use the Service.
        self.tracking_url = (
            pulumi.Output.concat(args.publication.scheme, "://", fqdn)
            if args.publication.published
            else self.internal_url
        )
        self.admin_user = pulumi.Output.from_input(cfg.admin_user if cfg.auth else "")
        self.admin_password = pulumi.Output.secret(admin_password.result if cfg.auth else "")
        self.s3_endpoint_url = pulumi.Output.from_input(args.s3_endpoint_url)
        self.ready = deployment.id
        self.pod_selector = dict(POD_SELECTOR)
        self.client_environment = client_environment(args)
        self.register_outputs(
            {
                "tracking_url": self.tracking_url,
                "internal_url": self.internal_url,
                "fqdn": self.fqdn,
                "admin_user": self.admin_user,
                "admin_password": self.admin_password,
                "env_secret_name": self.env_secret_name,
                "s3_endpoint_url": self.s3_endpoint_url,
                "ready": self.ready,
                "client_environment": self.client_environment,
            }
        )

    def _config_volumes(
        self, name: str, args: MlflowServerArgs, env_values: dict, child: pulumi.ResourceOptions
    ) -> tuple[list[dict], list[dict]]:
        """CA bundle, scratch and auth config: files shared by the server and the migration Job."""
        volumes, mounts = ca_and_scratch(
            args.postgres_ca_secret_name, args.object_store_ca_secret_name, args.scratch_size
        )
        if args.auth:
            auth_config = k8s.core.v1.Secret(
                f"{name}-auth-config",
                metadata={"namespace": args.namespace, "labels": SERVER_LABELS},
                type="Opaque",
                string_data={
                    "basic_auth.ini": pulumi.Output.all(
                        env_values["auth-database-uri"], args.read_auth_database_uri
                    ).apply(lambda uris: self._auth_ini(uris[0], uris[1], args.admin_user, args.auth_cache_seconds))
                },
                opts=child,
            )
            volumes.append({"name": "auth", "secret": {"secretName": auth_config.metadata.name, "defaultMode": 0o440}})
            mounts.append({"name": "auth", "mountPath": str(Path(AUTH_CONFIG_PATH).parent), "readOnly": True})
        return volumes, mounts

    @staticmethod
    def _auth_ini(database_uri: str, read_database_uri: str | None, admin_user: str, cache_seconds: int = 0) -> str:
        # configparser interpolates '%': a URL-encoded value must have it doubled.
        read = f"read_database_uri = {read_database_uri.replace('%', '%%')}\n" if read_database_uri else ""
        return (
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {database_uri.replace('%', '%%')}\n"
            f"{read}"
            f"admin_username = {admin_user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {cache_seconds}\n"
        )

    @staticmethod
    def _env(args: MlflowServerArgs, env_secret, names: list[str]) -> list[dict]:
        plain = {
            **CONTAINER_ENV,
            "MLFLOW_S3_ENDPOINT_URL": args.s3_endpoint_url,
            "AWS_DEFAULT_REGION": args.region,
            "AWS_CA_BUNDLE": OBJECT_STORE_CA_PATH,
            "MLFLOW_AUTH_CONFIG_PATH": AUTH_CONFIG_PATH,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if args.job_execution else "false",
            **dict.fromkeys(DIRECT_TRANSFER_ENV, "true"),
            DB_POOL_ENV[0]: str(args.db_pool_size),
            DB_POOL_ENV[1]: str(args.db_max_overflow),
            KEK_ENV[1]: str(args.kek_version),
        }
        return [
            env_from_secret(env_secret.metadata.name, var) if var in ENV_KEYS else {"name": var, "value": plain[var]}
            for var in names
        ]

    def _server_env_names(self, args: MlflowServerArgs) -> list[str]:
        names = [
            "MLFLOW_BACKEND_STORE_URI",
            *(["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"] if args.read_backend_store_uri is not None else []),
            "PGPASSWORD",
            *KEK_ENV,
            "MLFLOW_S3_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "HOME",
            "TMPDIR",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
            "MLFLOW_DISABLE_TELEMETRY",
            "DO_NOT_TRACK",
            *DB_POOL_ENV,
        ]
        if args.artifact_transfer == "direct":
            names += list(DIRECT_TRANSFER_ENV)
        if args.object_store_ca_secret_name is not None:
            names.append("AWS_CA_BUNDLE")
        auth = args.auth
        if auth:
            names += ["MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"]
        return names

    def _deployment_spec(self, name: str, args: MlflowServerArgs, fqdn, env_secret, account, volumes, mounts) -> dict:
        cfg = args
        server_args = [
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--workers",
            str(cfg.workers),
            "--uvicorn-opts",
            f"--timeout-keep-alive {KEEP_ALIVE_SECONDS}",
            "--serve-artifacts",
            "--artifacts-destination",
            pulumi.Output.concat("s3://", args.bucket, "/artifacts"),
            "--allowed-hosts",
            pulumi.Output.all(args.namespace, fqdn).apply(
                lambda v: ",".join(
                    allowed_hosts(v[0], v[1] if args.publication.published else None)
                    + (["$(POD_IP)", "$(POD_IP):*"] if cfg.metrics else [])
                )
            ),
        ]
        if args.publication.published:
            # Browsers send Origin even on same-origin POSTs: MLflow answers 403 to unlisted origins.
            server_args += ["--cors-allowed-origins", pulumi.Output.concat(args.publication.scheme, "://", fqdn)]
        if cfg.metrics:
            server_args += ["--expose-prometheus", METRICS_DIR]
        if cfg.auth:
            server_args += ["--app-name", "basic-auth"]
        probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
        pod_spec = {
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security_context(),
            "containers": [
                {
                    "name": "mlflow",
                    "image": cfg.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["mlflow"],
                    "args": server_args,
                    "env": self._env(args, env_secret, self._server_env_names(args))
                    + (
                        [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
                        if cfg.metrics
                        else []
                    ),
                    "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                    "resources": dict(cfg.resources or {}),
                    "securityContext": kube.container_security_context(),
                    "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
                    "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                    "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
                    "volumeMounts": [
                        *mounts,
                        {"name": "dshm", "mountPath": "/dev/shm"},
                        *([{"name": "metrics", "mountPath": METRICS_DIR}] if cfg.metrics else []),
                    ],
                }
            ],
            "volumes": [
                *volumes,
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                # prometheus_client's multiprocess files: one set per worker, fresh per pod.
                *([{"name": "metrics", **kube.writable_scratch("64Mi")}] if cfg.metrics else []),
            ],
        }
        if cfg.replicas > 1:
            pod_spec["topologySpreadConstraints"] = [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": kube.selector(SERVER_LABELS)},
                }
            ]
        return {
            "replicas": cfg.replicas,
            "revisionHistoryLimit": 3,
            # A rollout that makes no progress for this long is failed (the old pods keep serving:
            # maxUnavailable 0), and `up` reports it within the Deployment's timeout below.
            "progressDeadlineSeconds": ROLLOUT_DEADLINE_SECONDS,
            "selector": {"matchLabels": kube.selector(SERVER_LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": SERVER_LABELS}, "spec": pod_spec},
        }

    def _migration_job(
        self, name: str, args: MlflowServerArgs, env_secret, account, volumes, mounts
    ) -> k8s.batch.v1.Job:
        """`mlflow db upgrade` for the tracking schema, then the auth schema; replaced on every change.

        With kek_version above 1, `mlflow crypto rotate-kek` re-wraps the stored keys from the previous
        version's passphrase to the current one in between (idempotent: nothing left to re-wrap is a
        success), before the new pods, which use the new passphrase, roll out."""
        cfg = args
        common = [
            "MLFLOW_BACKEND_STORE_URI",
            "PGPASSWORD",
            "HOME",
            "TMPDIR",
            "MLFLOW_DISABLE_TELEMETRY",
            "DO_NOT_TRACK",
        ]
        # The URIs go into argv without password; libpq reads PGPASSWORD.
        steps: list[tuple[str, list[str], list[str], list[dict]]] = [
            ("upgrade-tracking-db", ["mlflow"], ["db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"], [])
        ]
        if cfg.kek_version > 1:
            secret = env_secret.metadata.name
            steps.append(
                (
                    "rotate-kek",
                    ["python"],
                    ["-c", ROTATE_KEK_SCRIPT],
                    [
                        env_from_secret(secret, KEK_ENV[0], source="MLFLOW_CRYPTO_KEK_PREVIOUS_PASSPHRASE"),
                        {"name": KEK_ENV[1], "value": str(cfg.kek_version - 1)},
                        env_from_secret(secret, "MLFLOW_CRYPTO_KEK_NEW_PASSPHRASE", source=KEK_ENV[0]),
                    ],
                )
            )
        if cfg.auth:
            steps.append(
                (
                    "upgrade-auth-db",
                    ["python"],
                    ["-m", "mlflow.server.auth", "db", "upgrade", "--url", "$(MLFLOW_AUTH_DATABASE_URI)"],
                    self._env(args, env_secret, ["MLFLOW_AUTH_DATABASE_URI"]),
                )
            )
        containers = [
            {
                "name": step,
                "image": cfg.image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "args": step_args,
                "env": self._env(args, env_secret, common) + extra_env,
                "volumeMounts": mounts,
                "securityContext": kube.container_security_context(),
                "resources": {
                    "requests": {"cpu": MIGRATION_JOB_CPU_REQUEST, "memory": MIGRATION_JOB_MEMORY_REQUEST},
                    "limits": {"cpu": "1", "memory": "512Mi"},
                },
            }
            for step, command, step_args, extra_env in steps
        ]
        return k8s.batch.v1.Job(
            f"{name}-migrate",
            metadata={
                "namespace": args.namespace,
                "labels": MIGRATION_LABELS,
                "annotations": kube.checkov_skips({**kube.image_skips(), "CKV_K8S_35": SECRET_ENV_REASON}),
            },
            # Init containers run in order: tracking schema first, (key rotation,) then auth schema.
            spec=kube.job_spec(
                MIGRATION_LABELS,
                account,
                containers[-1:],
                volumes,
                backoff_limit=4,
                deadline_seconds=900,
                init_containers=containers[:-1],
            ),
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="15m", update="15m")),
        )
