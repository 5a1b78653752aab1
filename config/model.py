"""The stack configuration as one typed model: every key of Pulumi.yaml's `config:` block, its type,
default, description and value check (config.checks), and the rules between keys (model validators).

Field names are the Pulumi keys in snake_case (`postgresInstances` -> postgres_instances); Pulumi.yaml's
`config:` block is generated from this model (`make docs`, config.project_file), so each default lives
here only. Properties resolve what the keys leave to the profile (backups, metrics, gc: auto).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

import sizing
from components.publishing import Publication
from config.checks import (
    ARTIFACT_TRANSFER_MODES,
    CLUSTER_PROFILE,
    OBJECT_STORE_MODES,
    POSTGRES_MODES,
    PROFILES,
    PUBLISH_MODES,
    SWITCHES,
    TLS_ALGORITHMS,
    BackupEndpoint,
    BackupSchedule,
    BucketName,
    CaFile,
    ChartRepository,
    ClusterStackName,
    CpuQuantity,
    GcSchedule,
    HttpsEndpoint,
    ImageRepository,
    MemoryQuantity,
    MinioImage,
    MinioReplicas,
    MlflowVersion,
    MonitoringLabels,
    MultipartChunkSize,
    MultipartThreshold,
    PluginImage,
    PostgresImage,
    RenderDirectory,
    RestoreTargetTime,
    StorageSize,
    between,
    check,
    empty_or,
    is_dns_label,
    is_dns_name,
    is_dns_subdomain,
    is_version,
    matches,
    one_of,
)
from config.problems import Problems
from config.rules import cluster_rules, environment_rules


class StackConfig(BaseModel):
    """Every key a stack sets (Pulumi.<stack>.yaml), validated as a whole."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        strict=True,
        frozen=True,
        validate_default=True,
    )

    profile_key: Annotated[
        str, one_of(("", CLUSTER_PROFILE, *PROFILES), "unknown profile", "use one of dev, prod, pr, or leave it empty")
    ] = Field(
        "",
        alias="profile",
        description="Stack profile: cluster, dev, prod or pr. Empty derives it from the stack name (cluster -> cluster, pr-<n> -> pr, prod* -> prod, anything else -> dev). cluster owns the cluster-wide services (one stack per cluster); prod protects data and requires HA; pr keeps the footprint within 1 GiB / 0.5 CPU and leaves nothing behind on destroy.",
    )
    kubeconfig: str = Field(
        "",
        description="Path to a kubeconfig file (or its contents) for the cluster; the standard kubernetes:kubeconfig key works too. Empty uses the ambient KUBECONFIG / ~/.kube/config. The stack output deployTarget and `make check` show the API server it resolves to.",
    )
    kube_context: str = Field(
        "",
        description="kubeconfig context to use; the standard kubernetes:context key works too. Empty uses the current context (shown by `make check` and the stack output deployTarget before anything changes).",
    )
    render_yaml_to_directory: RenderDirectory = Field(
        "",
        description="GitOps mode: write every Kubernetes object as YAML into this directory (absolute, or relative to the project directory) instead of applying it, for Argo CD or Flux to apply. Secrets are then written in plain text: keep the directory out of git or encrypt it (e.g. SOPS). Refused together with kubeconfig/kubeContext, and in the cluster stack (pulumi-kubernetes cannot render a Helm release): with Argo CD or Flux, install the operator and the plugin from their own manifests and set clusterStack empty. Readiness waits do not apply in this mode.",
    )
    publish_mode: Annotated[str, one_of(PUBLISH_MODES)] = Field(
        "ingress",
        description="How MLflow (and, with minioIngress, MinIO for direct transfers) is published as <service>-<namespace>.<ingressDomain>: ingress (an Ingress; the ingress* keys), httpRoute (a Gateway API HTTPRoute attached to gatewayName; TLS is the Gateway listener's, MinIO is re-encrypted with a BackendTLSPolicy and the stack's CA), or none (no public host: clients inside the cluster or `kubectl port-forward` use the Service; trackingUrl is then the internal URL). MLflow's allowed hosts and CORS origin follow the choice.",
    )
    gateway_name: Annotated[
        str, check(empty_or(is_dns_label), "not a Gateway name", "use the name of a Gateway (a DNS-1123 label)")
    ] = Field(
        "",
        description="publishMode httpRoute: the Gateway (gateway.networking.k8s.io/v1) the routes attach to. Its listener must allow routes from the stack's namespace (allowedRoutes).",
    )
    gateway_namespace: Annotated[
        str,
        check(empty_or(is_dns_label), "not a namespace name", "use the Gateway's namespace, or leave it empty"),
    ] = Field("", description="publishMode httpRoute: the Gateway's namespace. Empty: the stack's namespace.")
    gateway_listener: Annotated[
        str,
        check(
            empty_or(is_dns_subdomain),
            "not a listener name",
            "use the name of one of the Gateway's listeners, or leave it empty",
        ),
    ] = Field(
        "",
        description="publishMode httpRoute: the listener (sectionName) the routes attach to. Empty: every listener that accepts them.",
    )
    gateway_https: bool = Field(
        True,
        description="publishMode httpRoute: the Gateway listener terminates TLS with a certificate clients trust, so the public URLs are https (required for minioIngress). false publishes MLflow over plain HTTP (dev only).",
    )
    ingress_domain: Annotated[
        str, check(is_dns_name, "not a DNS domain", "use a domain such as localtest.me or mlflow.example.com")
    ] = Field(
        "localtest.me",
        description="DNS domain under which MLflow is published as mlflow-<namespace>.<domain> localtest.me resolves to 127.0.0.1, which suits k3d/kind with the ingress port mapped to the host.",
    )
    ingress_class_name: Annotated[
        str,
        check(empty_or(is_dns_label), "not a valid IngressClass name", "use e.g. nginx or traefik, or leave it empty"),
    ] = Field(
        "",
        description="IngressClass for MLflow's Ingress (e.g. nginx, traefik). Empty uses the cluster's default class.",
    )
    ingress_tls_secret_name: Annotated[
        str, check(empty_or(is_dns_subdomain), "not a valid Secret name", "use a DNS-1123 name or leave it empty")
    ] = Field(
        "",
        description="Existing kubernetes.io/tls Secret in the stack namespace serving the ingress hosts. Empty with no ingressClusterIssuer publishes MLflow over plain HTTP (dev only).",
    )
    ingress_cluster_issuer: Annotated[
        str,
        check(empty_or(is_dns_subdomain), "not a valid ClusterIssuer name", "use a DNS-1123 name or leave it empty"),
    ] = Field(
        "",
        description="cert-manager ClusterIssuer that issues the ingress certificate (adds the annotation and a TLS section). Empty disables it.",
    )
    mlflow_version: MlflowVersion = Field(
        "3.18.0",
        description="MLflow version (X.Y.Z), 3.18.0 or newer. Selects the image tag v<version>-full and the schema migration Job. Older versions are refused: before 3.18 MLflow advertises presigned multipart transfers for any S3 destination, sending clients to an endpoint they cannot reach in proxied mode.",
    )
    mlflow_image: ImageRepository = Field(
        "ghcr.io/mlflow/mlflow",
        description="MLflow image repository; the tag is v<mlflowVersion>-full (the plain image lacks psycopg2 and boto3).",
    )
    mlflow_replicas: Annotated[int, between(1, 20)] = Field(
        1, description="MLflow tracking server replicas. A PodDisruptionBudget is added when > 1."
    )
    mlflow_workers: Annotated[int, between(0, 16, "set 0 (sized to mlflowCpuLimit) or 1 to 16")] = Field(
        0,
        description="uvicorn workers per MLflow replica (each costs about 150 MiB of memory). 0 sizes them to mlflowCpuLimit: one per whole core (at least one); a request is CPU-bound Python, so more workers than cores only add memory.",
    )
    mlflow_job_runner: Annotated[str, one_of(SWITCHES)] = Field(
        "off",
        description="MLflow's background job runner (MLFLOW_SERVER_ENABLE_JOB_EXECUTION; runs GenAI evaluation, scorer and optimization jobs started from the UI): off (default: its 10 processes take about 1.6 GiB, more than the tracking server itself), on, or auto (on with one replica, off with more, where every replica would run the periodic jobs). When it runs, mlflowMemoryLimit must hold it (checked).",
    )
    mlflow_scratch_size: StorageSize = Field(
        "2Gi",
        description="Size limit of the MLflow pod's /tmp (emptyDir): a proxied upload is spooled there before it is written to the object store, so it bounds the concurrent proxied uploads of one replica. Binary suffix (Mi, Gi).",
    )
    mlflow_request_timeout_seconds: Annotated[int, between(30, 3600)] = Field(
        600,
        description="Ingress proxy read/send timeout for MLflow (and the published S3 endpoint). uvicorn has no per-request timeout; clients should set MLFLOW_HTTP_REQUEST_TIMEOUT to the same value (stack output clientEnvironment).",
    )
    mlflow_auth_cache_seconds: Annotated[int, between(0, 3600)] = Field(
        30,
        description="MLflow basic auth's credential cache (auth_cache_ttl_seconds, MLflow 3.18): a password is hash-checked once per worker per this many seconds instead of on every request (the check is werkzeug's scrypt, about 0.1 s of CPU; without the cache it dominates the tracking API's cost, see make bench). A changed or revoked password stays valid on other workers for at most this long. 0 checks every request.",
    )
    mlflow_db_pool_size: Annotated[int, between(1, 100)] = Field(
        10,
        description="PostgreSQL connections each of an MLflow worker's three stores (tracking, model registry, auth) keeps open (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE, 1 to 100). SQLAlchemy's default of 5 closes every connection beyond it after one use, and a worker serving 8 concurrent clients then pays TLS and SCRAM for a new one every other request (make bench). Sizes PostgreSQL's max_connections with mlflowDbMaxOverflow, mlflowWorkers and mlflowReplicas (docs/operations.md: Connection budget).",
    )
    mlflow_db_max_overflow: Annotated[int, between(0, 100)] = Field(
        5,
        description="Connections a store may open beyond mlflowDbPoolSize under load, closed after use (MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW, 0 to 100). Counted in the connection budget.",
    )
    mlflow_kek_version: Annotated[int, between(1, 1000)] = Field(
        1,
        description="Version of MLflow's key-encryption passphrase (MLFLOW_CRYPTO_KEK_PASSPHRASE, generated per stack and version; MLflow 3.18 encrypts the AI gateway keys it stores under it). Raise it by one to rotate: the migration Job re-wraps the stored keys with `mlflow crypto rotate-kek` before the new pods start (docs/operations.md: Rotating MLflow's encryption passphrase).",
    )
    artifact_transfer_mode: Annotated[str, one_of(ARTIFACT_TRANSFER_MODES)] = Field(
        "proxied",
        description="proxied: every artifact byte goes through the tracking server (authenticated, works wherever the tracking URL works). direct: the server advertises presigned multipart transfers, so clients move files above artifactMultipartThreshold straight to and from the object store. direct needs an endpoint clients outside the cluster reach and trust, because MLflow signs URLs for the endpoint it uses itself: objectStoreMode external/externalMinio, or inCluster with minioIngress (and ingress TLS).",
    )
    artifact_multipart_threshold: MultipartThreshold = Field(
        "500Mi",
        description="direct mode: uploads of at least this size go over presigned multipart URLs (smaller ones through the server). Downloads: MLflow 3.18 fetches every file from a presigned URL once the server opts in, whatever its size. A client-side MLflow setting: exported in the stack output clientEnvironment (MLFLOW_MULTIPART_UPLOAD/DOWNLOAD_MINIMUM_FILE_SIZE) for clients to set.",
    )
    artifact_multipart_chunk_size: MultipartChunkSize = Field(
        "16Mi",
        description="direct mode: part size of presigned multipart uploads (S3 allows 5Mi to 5Gi, and 10,000 parts: 16Mi uploads files up to 156 GiB; raise it for larger single files). Exported in clientEnvironment (MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE; downloads use 8 MiB ranges, MLflow's client is fastest with them). make bench, 256 MiB over TLS, three runs: 16Mi parts 401-433 MB/s up, at the S3 ceiling (100-110%); 32Mi 84-106%; 100Mi 80-95%.",
    )
    minio_ingress: bool = Field(
        False,
        description="objectStoreMode inCluster: publish MinIO's S3 API as minio-<namespace>.<ingressDomain> the way publishMode says, over TLS only: an Ingress with the ingress certificate (ingressTlsSecretName, which must then cover that host too, or ingressClusterIssuer), or an HTTPRoute on the Gateway's HTTPS listener (re-encrypted to MinIO with a BackendTLSPolicy). Needed for artifactTransferMode direct; MLflow then reaches MinIO through that host too, and must trust its certificate (a public CA).",
    )
    mlflow_cpu_request: CpuQuantity = Field(
        "100m", description="CPU request of each MLflow replica (Kubernetes quantity)."
    )
    mlflow_memory_request: MemoryQuantity = Field(
        "384Mi", description="Memory request of each MLflow replica (Kubernetes quantity)."
    )
    mlflow_cpu_limit: CpuQuantity = Field("1", description="CPU limit of each MLflow replica.")
    mlflow_memory_limit: MemoryQuantity = Field("1Gi", description="Memory limit of each MLflow replica.")
    mlflow_auth: bool = Field(
        True,
        description="Enable MLflow basic auth (users and permissions stored in PostgreSQL). Disabling it leaves the tracking server open to anyone who can reach the ingress.",
    )
    mlflow_admin_user: Annotated[
        str, check(matches(r"[A-Za-z0-9._-]{1,64}"), "not a valid user name", "use letters, digits, '.', '_' or '-'")
    ] = Field(
        "admin",
        description="MLflow admin user name; its password is generated and exported as the secret output adminPassword.",
    )
    postgres_instances: Annotated[int, between(1, 9)] = Field(
        1, description="CloudNativePG instances (1 primary + replicas). prod requires >= 2; 3 is recommended."
    )
    postgres_image: PostgresImage = Field(
        "ghcr.io/cloudnative-pg/postgresql:17.5", description="PostgreSQL operand image, pinned by tag or digest."
    )
    postgres_storage_size: StorageSize = Field(
        "1Gi", description="PVC size per PostgreSQL instance (binary suffix: Mi, Gi, Ti)."
    )
    postgres_storage_class: str = Field(
        "", description="StorageClass for PostgreSQL PVCs. Empty uses the cluster default."
    )
    postgres_cpu_request: CpuQuantity = Field("100m", description="CPU request per PostgreSQL instance.")
    postgres_memory_request: MemoryQuantity = Field("256Mi", description="Memory request per PostgreSQL instance.")
    postgres_cpu_limit: CpuQuantity = Field("1", description="CPU limit per PostgreSQL instance.")
    postgres_memory_limit: MemoryQuantity = Field("512Mi", description="Memory limit per PostgreSQL instance.")
    postgres_read_replica: Annotated[str, one_of(SWITCHES)] = Field(
        "auto",
        description="Send MLflow's reads (searches, gets; MLflow 3.18 --read-replica-backend-store-uri) to PostgreSQL's replicas: in-cluster CloudNativePG's -ro Service, external postgresReplicaHost, with the same TLS verify-full and credentials as the primary. Writes, and the reads MLflow pins to the primary, stay on the primary. auto: on with postgresInstances > 1 (or a postgresReplicaHost); a read right after a write may not see it yet for the replication lag (docs/operations.md: Read replicas). off keeps every query on the primary.",
    )
    postgres_max_connections: Annotated[int, between(0, 10000, "set 0 (sized) or up to 10000")] = Field(
        0,
        description="PostgreSQL connections for this stack. In-cluster: the server's max_connections; 0 sizes it from the connection budget (MLflow's pools in every replica, one more replica during a rollout, the migration Job, gc, and CloudNativePG's superuser connections), a value below that budget is refused. External: what the server lets MLflow's role open; below the budget is refused, 0 leaves it unchecked (docs/operations.md: Connection budget).",
    )
    cluster_stack: ClusterStackName = Field(
        "cluster",
        description="Environment stacks: the stack that owns the cluster-wide services (the CloudNativePG operator and the Barman Cloud plugin), read from its outputs before anything is created: a stack of this project (cluster), or org/project/stack. Empty when someone else manages the operator: then cnpgOperatorNamespace says where it runs, and backups assume the plugin is there.",
    )
    cnpg_chart_version: Annotated[str, check(is_version, "not a chart version", "use X.Y.Z, e.g. 0.29.0")] = Field(
        "0.29.0",
        description="Cluster stack: pinned version of the cloudnative-pg Helm chart (0.29.0 ships operator 1.30.0).",
    )
    cnpg_chart_repository: ChartRepository = Field(
        "https://cloudnative-pg.github.io/charts",
        description="Cluster stack: the Helm chart repository of the CloudNativePG operator chart.",
    )
    cnpg_chart_path: str = Field(
        "",
        description="Cluster stack, air-gapped clusters: a local cloudnative-pg chart directory or .tgz archive (absolute, or relative to the project directory), used instead of cnpgChartRepository/cnpgChartVersion.",
    )
    cnpg_chart_values: dict[str, Any] = Field(
        default_factory=lambda: {},
        description="Cluster stack: values passed to the operator chart unchanged (`pulumi config set --path 'cnpgChartValues.webhook.mutating.create' false`), checked against a local chart's values.schema.json by `make check` and by Helm at install.",
    )
    cnpg_operator_namespace: Annotated[
        str, check(is_dns_label, "not a namespace name", "use a DNS-1123 label, e.g. cnpg-system")
    ] = Field(
        "cnpg-system",
        description="Namespace of the CloudNativePG operator: where the cluster stack installs it and the Barman Cloud plugin. Environment stacks take it from the cluster stack (this key only when clusterStack is empty) and admit it through the PostgreSQL NetworkPolicy.",
    )
    barman_plugin: bool = Field(
        True,
        description="Cluster stack: install the Barman Cloud plugin (backups, point-in-time recovery) beside the operator, with its certificates made by pulumi-tls (no cert-manager needed).",
    )
    barman_plugin_image: PluginImage = Field(
        "ghcr.io/cloudnative-pg/plugin-barman-cloud:v0.14.0",
        description="Cluster stack: the Barman Cloud plugin's image, pinned.",
    )
    barman_plugin_sidecar_image: PluginImage = Field(
        "ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v0.14.0",
        description="Cluster stack: the image of the plugin's sidecar in every PostgreSQL instance pod, pinned to the plugin's release.",
    )
    barman_plugin_crd: str = Field(
        "https://raw.githubusercontent.com/cloudnative-pg/plugin-barman-cloud/v0.14.0/config/crd/bases/barmancloud.cnpg.io_objectstores.yaml",
        description="Cluster stack: the plugin's ObjectStore CRD, as a URL of its release or a local file (air-gapped clusters).",
    )
    postgres_mode: Annotated[str, one_of(POSTGRES_MODES)] = Field(
        "inCluster",
        description="Where MLflow's database lives: inCluster (a CloudNativePG Cluster in the stack namespace; the operator creates MLflow's role and databases, the runner needs only the Kubernetes API) or external (an existing server such as RDS or Cloud SQL; pulumi-postgresql creates the role and databases from the machine running Pulumi, which must reach postgresHost).",
    )
    postgres_host: str = Field(
        "",
        description="external mode: DNS name of the PostgreSQL server (must match its certificate; connections use sslmode=verify-full).",
    )
    postgres_replica_host: str = Field(
        "",
        description="external mode: the DNS name of a read-only replica of postgresHost (same port, CA and role; e.g. an RDS reader endpoint), for MLflow's reads (postgresReadReplica). Empty: reads go to postgresHost.",
    )
    postgres_port: Annotated[int, between(1, 65535)] = Field(5432, description="external mode: PostgreSQL port.")
    postgres_admin_user: Annotated[
        str, check(matches(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}"), "not a PostgreSQL role name", "use e.g. postgres")
    ] = Field(
        "postgres", description="external mode: login that may create roles and databases (e.g. the RDS master user)."
    )
    postgres_admin_password: SecretStr = Field(
        SecretStr(""),
        description="external mode: password of postgresAdminUser. Must be secret config: pulumi config set --secret postgresAdminPassword <password>.",
    )
    postgres_ca_file: CaFile = Field(
        "",
        description="external mode: path, relative to the project directory, of a PEM file in the repository with the CA(s) that sign the server certificate (e.g. the RDS global bundle). Committed so that every checkout (and destroy/refresh from CI) has it.",
    )
    minio_image: MinioImage = Field(
        "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
        description="MinIO image, pinned by RELEASE tag or digest (the community edition publishes no newer images).",
    )
    minio_replicas: MinioReplicas = Field(
        1, description="MinIO servers: 1 (single drive) or >= 4 (distributed erasure coding, HA)."
    )
    minio_storage_size: StorageSize = Field("2Gi", description="PVC size per MinIO server (binary suffix: Mi, Gi, Ti).")
    minio_storage_class: str = Field("", description="StorageClass for MinIO PVCs. Empty uses the cluster default.")
    minio_cpu_request: CpuQuantity = Field("100m", description="CPU request per MinIO server.")
    minio_memory_request: MemoryQuantity = Field("192Mi", description="Memory request per MinIO server.")
    minio_cpu_limit: CpuQuantity = Field("1", description="CPU limit per MinIO server.")
    minio_memory_limit: MemoryQuantity = Field("1Gi", description="Memory limit per MinIO server.")
    object_store_mode: Annotated[str, one_of(OBJECT_STORE_MODES)] = Field(
        "inCluster",
        description="Where artifacts live: inCluster (MinIO in the stack namespace; a bootstrap Job inside the cluster creates the bucket, MLflow's user and its bucket policy), external (an existing S3 endpoint; MLflow uses s3AccessKey/s3SecretKey, least privilege is yours) or externalMinio (an existing MinIO; pulumi-minio creates the bucket, a dedicated user and a bucket-scoped policy with s3AdminUser/s3AdminPassword from the machine running Pulumi).",
    )
    s3_endpoint: HttpsEndpoint = Field(
        "",
        description="external and externalMinio modes: https URL of the S3 API, e.g. https://s3.eu-west-1.amazonaws.com or https://minio.example.com:9000.",
    )
    s3_ca_file: CaFile = Field(
        "",
        description="external and externalMinio modes: path, relative to the project directory, of a PEM file in the repository with the CA of s3Endpoint. Empty trusts the image's public CAs.",
    )
    s3_access_key: str = Field("", description="external mode: access key id MLflow uses.")
    s3_secret_key: SecretStr = Field(
        SecretStr(""),
        description="external mode: secret access key MLflow uses. Must be secret config (pulumi config set --secret s3SecretKey ...).",
    )
    s3_admin_user: str = Field(
        "", description="externalMinio mode: MinIO user allowed to create buckets, users and policies."
    )
    s3_admin_password: SecretStr = Field(
        SecretStr(""), description="externalMinio mode: password of s3AdminUser. Must be secret config."
    )
    bucket: BucketName = Field("mlflow", description="S3 bucket for MLflow artifacts (S3 naming rules).")
    s3_region: Annotated[
        str, check(matches(r"[a-z]{2}(-[a-z]+)+-[0-9]+"), "not an S3 region", "use e.g. us-east-1")
    ] = Field("us-east-1", description="S3 region the object store reports and clients sign requests for.")
    allow_storage_layout_change: bool = Field(
        False,
        description="Stacks other than pr refuse, at preview, a change that Kubernetes cannot apply to stored data in place (minioReplicas, minioStorageSize, minioStorageClass, a smaller postgresStorageSize, postgresStorageClass, postgresMode, objectStoreMode, bucket). Set true for the one `pulumi up` that applies such a change after you followed the manual path in docs/operations.md (Changing storage), then set it back.",
    )
    tls_algorithm: Annotated[str, one_of(TLS_ALGORITHMS)] = Field(
        "ECDSA",
        description="Key algorithm of the generated CAs and server certificates: ECDSA (P-256) or RSA (2048 bits).",
    )
    tls_validity_days: Annotated[int, between(7, 3650)] = Field(
        730, description="Validity of server certificates in days (CAs live five times longer)."
    )
    tls_early_renewal_days: Annotated[int, between(1, 365)] = Field(
        30, description="A pulumi up this many days before expiry re-issues the certificate."
    )
    tls_self_signed: bool = Field(
        False,
        description="Issue self-signed server certificates instead of CA-signed ones (the certificate is then its own CA).",
    )
    backups: Annotated[str, one_of(SWITCHES)] = Field(
        "auto",
        description="PostgreSQL backups with point-in-time recovery through the Barman Cloud plugin (continuous WAL archiving + scheduled base backups into an ObjectStore): auto (on in prod, off elsewhere), on or off. Needs the Barman Cloud plugin, which the cluster stack installs by default (barmanPlugin; its certificates come from pulumi-tls, cert-manager is not needed); a stack that turns backups on (or restores) while its cluster stack runs no plugin stops at preview, before anything is created (docs/operations.md: Backups and point-in-time recovery). In-cluster PostgreSQL only.",
    )
    backup_bucket: BucketName = Field(
        "postgres-backups",
        description="Bucket for PostgreSQL backups. With the in-cluster MinIO the bootstrap Job creates it with a dedicated user (barman) allowed only to list, read, write and delete in it; with backupS3Endpoint it must exist.",
    )
    backup_schedule: BackupSchedule = Field(
        "0 0 2 * * *",
        description="When base backups are taken (CloudNativePG ScheduledBackup: six cron fields, seconds first, UTC; or @daily). WAL is archived continuously in between; the first base backup is taken right away, once the backup bucket and its user exist.",
    )
    backup_retention: Annotated[
        str,
        check(
            matches(r"[1-9][0-9]*[dwm]"),
            "not a retention period",
            "use a whole number of days, weeks or months: 30d, 4w or 3m",
        ),
    ] = Field(
        "30d",
        description="Recovery window of the backups (ObjectStore retentionPolicy): a whole number of days, weeks or months (30d, 4w, 3m). Older base backups and the WAL only they need are deleted.",
    )
    backup_server_name: Annotated[
        str,
        check(
            empty_or(is_dns_label), "not a server name", "use a DNS-1123 label such as mlflow-pg-2, or leave it empty"
        ),
    ] = Field(
        "",
        description="Name under which this cluster archives in the backup bucket (plugin parameter serverName). Empty: mlflow-pg. A cluster restored from its own backups must archive under a new name (e.g. mlflow-pg-2).",
    )
    backup_s3_endpoint: BackupEndpoint = Field(
        "",
        description="Back up to this https S3 endpoint instead of the stack's MinIO (required when objectStoreMode is not inCluster; recommended for prod, whose backups should not share the fate of the cluster). Needs backupS3AccessKey/backupS3SecretKey; backupBucket must exist.",
    )
    backup_s3_ca_file: CaFile = Field(
        "",
        description="backupS3Endpoint: path, relative to the project directory, of a PEM file in the repository with the endpoint's CA. Empty trusts the plugin sidecar's public CAs.",
    )
    backup_s3_access_key: str = Field(
        "",
        description="backupS3Endpoint: access key id of the backup user (least privilege: list/get/put/delete on backupBucket).",
    )
    backup_s3_secret_key: SecretStr = Field(
        SecretStr(""), description="backupS3Endpoint: secret access key of the backup user. Must be secret config."
    )
    postgres_restore_source: Annotated[
        str,
        check(
            empty_or(is_dns_label),
            "not a server name",
            "use the backupServerName of the stack whose backups you restore (mlflow-pg unless it set one), or leave it empty",
        ),
    ] = Field(
        "",
        description="Create the PostgreSQL cluster from backups instead of empty (bootstrap.recovery): the server name of the backups in the backup bucket (mlflow-pg unless the backed-up stack set backupServerName). Takes effect only when the Cluster is created (docs/operations.md: runbooks). Empty: no restore.",
    )
    postgres_restore_target_time: RestoreTargetTime = Field(
        "",
        description="With postgresRestoreSource: the point in time to restore to, RFC 3339 with an offset (2026-05-04T10:42:00+02:00), not in the future. Empty replays the whole archive.",
    )
    metrics: Annotated[str, one_of(SWITCHES)] = Field(
        "auto",
        description="Prometheus metrics: MLflow /metrics (--expose-prometheus), MinIO /minio/v2/metrics/cluster without a token, CloudNativePG's exporter (always on, port 9187). auto (on except in pr stacks), on or off.",
    )
    prometheus_operator: bool = Field(
        False,
        description="The cluster runs the Prometheus operator: create ServiceMonitors (MLflow, MinIO) and a PodMonitor (CloudNativePG), and admit prometheusNamespace to the metrics ports. Requires metrics.",
    )
    prometheus_namespace: Annotated[
        str, check(is_dns_label, "not a namespace name", "use the namespace Prometheus runs in, e.g. monitoring")
    ] = Field(
        "monitoring",
        description="Namespace Prometheus scrapes from (admitted by the NetworkPolicies when prometheusOperator is true).",
    )
    monitoring_labels: MonitoringLabels = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="Labels of the ServiceMonitors and the PodMonitor, which the Prometheus operator selects them by. kube-prometheus-stack's Prometheus selects monitors labelled release: <its Helm release name> (serviceMonitorSelectorNilUsesHelmValues: true), in every namespace: the default suits a release named kube-prometheus-stack. Set your Prometheus' serviceMonitorSelector/podMonitorSelector labels, e.g. {release: prometheus}.",
    )
    mlflow_gc: Annotated[str, one_of(SWITCHES)] = Field(
        "auto",
        description="A CronJob running `mlflow gc` to delete, rows and artifacts, the runs deleted more than mlflowGcOlderThan ago: auto (on except in pr stacks), on or off.",
    )
    mlflow_gc_schedule: GcSchedule = Field(
        "30 3 * * *", description="When mlflow gc runs (five cron fields, the cluster's time zone, or @daily)."
    )
    mlflow_gc_older_than: Annotated[
        str,
        check(
            matches(r"(?=\d)(\d+(\.\d+)?d)?(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?"),
            "not an age mlflow gc understands",
            "use #d#h#m#s, e.g. 30d or 12h",
        ),
    ] = Field("30d", description="mlflow gc deletes runs deleted longer ago than this (#d#h#m#s, e.g. 30d or 12h).")

    # The stack's name and the standard kubernetes:* keys, from the reader's validation context.
    _stack: str = PrivateAttr("")
    _kubernetes: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> StackConfig:
        context = info.context or {}
        self._stack = str(context.get("stack", ""))
        self._kubernetes = dict(context.get("kubernetes") or {})
        problems = Problems()
        (cluster_rules if self.profile == CLUSTER_PROFILE else environment_rules)(self, problems)
        if problems:
            raise rule_problems(problems)
        return self

    # ----------------------------------------------------------------------- where and what
    @property
    def stack(self) -> str:
        return self._stack

    @property
    def profile(self) -> str:
        """The profile key, or the stack name's: cluster, pr-<n> -> pr, prod* -> prod, else dev."""
        return self.profile_key or profile_for_stack(self._stack)

    @property
    def namespace(self) -> str:
        return f"mlflow-{self._stack}"

    @property
    def protect_data(self) -> bool:
        """prod: a mistaken destroy or rename must not lose the database or the bucket."""
        return self.profile == "prod"

    @property
    def ephemeral(self) -> bool:
        """pr: `pulumi destroy` must leave nothing behind (PVCs, bucket contents)."""
        return self.profile == "pr"

    @property
    def target_kubeconfig(self) -> str:
        """kubeconfig, or the standard kubernetes:kubeconfig key."""
        return self.kubeconfig or self._kubernetes.get("kubeconfig", "")

    @property
    def target_context(self) -> str:
        return self.kube_context or self._kubernetes.get("context", "")

    # ----------------------------------------------------------------------- services
    @property
    def postgres_in_cluster(self) -> bool:
        return self.postgres_mode == "inCluster"

    @property
    def object_store_in_cluster(self) -> bool:
        return self.object_store_mode == "inCluster"

    @property
    def public_tls(self) -> bool:
        """The public hosts are served over TLS with a certificate clients trust (the ingress's or the
        Gateway listener's), as the components decide it."""
        return Publication(
            mode=self.publish_mode,
            ingress_tls_secret_name=self.ingress_tls_secret_name,
            ingress_cluster_issuer=self.ingress_cluster_issuer,
            gateway_https=self.gateway_https,
        ).tls

    @property
    def read_replica_on(self) -> bool:
        auto = self.postgres_instances > 1 if self.postgres_in_cluster else bool(self.postgres_replica_host)
        return switch(self.postgres_read_replica, auto)

    @property
    def mlflow_image_ref(self) -> str:
        return f"{self.mlflow_image}:v{self.mlflow_version}-full"

    @property
    def mlflow_worker_count(self) -> int:
        return sizing.mlflow_workers(self.mlflow_workers, self.mlflow_cpu_limit)

    @property
    def job_runner_on(self) -> bool:
        """mlflowJobRunner: auto runs it with a single replica (its jobs are not shared between replicas)."""
        return switch(self.mlflow_job_runner, self.mlflow_replicas == 1)

    def resources(self, service: str) -> dict[str, Any]:
        """The Kubernetes resources of `service` (mlflow, postgres or minio) from its four keys."""
        return sizing.resources(*(getattr(self, f"{service}_{kind}") for kind in RESOURCE_KINDS))

    # ----------------------------------------------------------------------- day-2 operations
    @property
    def backups_on(self) -> bool:
        """WAL archiving and base backups: auto backs up prod; an external server is backed up by its owner."""
        return self.postgres_in_cluster and switch(self.backups, self.profile == "prod")

    @property
    def backup_server(self) -> str:
        return self.backup_server_name or "mlflow-pg"

    @property
    def backup_store_needed(self) -> bool:
        """An ObjectStore exists to archive into or to restore from."""
        return self.postgres_in_cluster and (self.backups_on or bool(self.postgres_restore_source))

    @property
    def metrics_on(self) -> bool:
        return switch(self.metrics, self.profile != "pr")

    @property
    def gc_on(self) -> bool:
        return switch(self.mlflow_gc, self.profile != "pr")


RESOURCE_KINDS = ("cpu_request", "memory_request", "cpu_limit", "memory_limit")


def switch(value: str, auto: bool) -> bool:
    return {"on": True, "off": False}.get(value, auto)


def profile_for_stack(stack: str) -> str:
    if stack == CLUSTER_PROFILE:
        return CLUSTER_PROFILE
    if re.fullmatch(r"pr-[0-9]+", stack):
        return "pr"
    return "prod" if stack.startswith("prod") else "dev"


def rule_problems(problems: Problems) -> PydanticCustomError:
    """The rules' problems as one validation error; config.reader prints each line."""
    return PydanticCustomError("config_rules", "{count} problem(s)", {"count": len(problems), "lines": tuple(problems)})
