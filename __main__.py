"""mlflow-platform: composes the platform's components; settings.py maps the configuration onto their Args."""

import pulumi
import pulumi_kubernetes as k8s

import settings as config
from components.cnpg_operator import CnpgOperator
from components.external_object_store import ExternalObjectStore
from components.external_postgres import ExternalPostgres
from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_gc import MlflowGarbageCollector
from components.mlflow_server import CLIENT_POD_LABELS, POSTGRES_CA_PATH, MlflowServer
from components.monitoring import PlatformMonitoring
from components.platform_namespace import PlatformNamespace
from components.postgres_backup import PostgresBackup
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs

settings = config.load_settings()

kubernetes = k8s.Provider(
    "kubernetes",
    kubeconfig=settings.kubeconfig or None,
    context=settings.kube_context or None,
    # GitOps mode: objects are written as YAML for Argo CD / Flux instead of being applied.
    render_yaml_to_directory=settings.render_directory or None,
    # Creating an object that already exists fails instead of adopting it: stacks never take over
    # each other's objects (and a second owner of the CloudNativePG operator stops at once).
    upsert_existing_objects=False,
)
cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})

operator_args = config.operator_args(settings)
operator = CnpgOperator("cnpg-operator", operator_args, opts=cluster) if operator_args else None
operator_namespace = operator.namespace if operator else settings.postgres.operator_namespace
# The outputs of this stack's last deployment: storage changes that would lose data are refused.
last_deployment = pulumi.StackReference(
    "last-deployment", stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
)
storage_layout = config.checked_storage_layout(settings, last_deployment.get_output("storageLayout"))
namespace = PlatformNamespace(
    "platform", config.namespace_args(settings, operator_namespace, storage_layout), opts=cluster
)

store_args = config.object_store_args(settings, namespace.name, CLIENT_POD_LABELS)
store = (
    MinioStore("minio", store_args, opts=cluster)
    if isinstance(store_args, MinioStoreArgs)
    else ExternalObjectStore("minio", store_args, opts=cluster)
)

# Where PostgreSQL archives WAL and base backups (and restores from): the Cluster spec uses its outputs.
backup_args = config.backup_args(settings, namespace.name, operator_namespace, store)
backup = PostgresBackup("postgres-backup", backup_args, opts=cluster) if backup_args else None

database_args = config.database_args(
    settings, namespace.name, operator_namespace, CLIENT_POD_LABELS, POSTGRES_CA_PATH, backup
)
database = (
    PostgresCluster("postgres", database_args, opts=cluster)
    if isinstance(database_args, PostgresClusterArgs)
    else ExternalPostgres("postgres", database_args, opts=cluster)
)

mlflow = MlflowServer("mlflow", config.mlflow_args(settings, namespace.name, database, store), opts=cluster)

gc_args = config.gc_args(settings, namespace.name, mlflow, database, store)
if gc_args:
    MlflowGarbageCollector("mlflow-gc", gc_args, opts=cluster)
monitoring_args = config.monitoring_args(settings, namespace.name, mlflow, store)
if monitoring_args:
    PlatformMonitoring("monitoring", monitoring_args, opts=cluster)

pulumi.export("trackingUrl", mlflow.tracking_url)
pulumi.export("internalUrl", mlflow.internal_url)
pulumi.export("namespace", namespace.name)
pulumi.export("bucket", store.bucket)
pulumi.export("adminUser", mlflow.admin_user)
pulumi.export("adminPassword", mlflow.admin_password)
pulumi.export("packageValues", mlflow.package_values)
pulumi.export("profile", settings.profile)
pulumi.export("storageLayout", storage_layout)
# What an MLflow client should set for this stack (request timeout; direct mode: multipart thresholds).
pulumi.export("clientEnvironment", config.client_environment(settings))
