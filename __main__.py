"""mlflow-platform: composes the platform's components; settings.py maps the configuration onto their Args.

Two kinds of stack run this program: the one `cluster` stack per Kubernetes cluster, which owns what
is cluster-wide (the CloudNativePG operator, the Barman Cloud plugin), and any number of environment
stacks (dev, prod, pr-N), each owning only its namespace's objects.
"""

import pulumi
import pulumi_kubernetes as k8s

import settings as config
from components.barman_cloud_plugin import BarmanCloudPlugin
from components.cnpg_operator import CnpgOperator
from components.external_object_store import ExternalObjectStore
from components.external_postgres import ExternalPostgres
from components.k8s import declared_state_wins, kept_with_data
from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_gc import MlflowGarbageCollector
from components.mlflow_server import CLIENT_POD_LABELS, POSTGRES_CA_PATH, MlflowServer
from components.monitoring import PlatformMonitoring
from components.platform_namespace import PlatformNamespace
from components.postgres_backup import PostgresBackup
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs


def kubernetes_provider(
    kubeconfig: str, context: str, render_directory: str = "", protect_data: bool = False
) -> pulumi.ResourceOptions:
    provider = k8s.Provider(
        "kubernetes",
        kubeconfig=kubeconfig or None,
        context=context or None,
        # GitOps mode: objects are written as YAML for Argo CD / Flux instead of being applied.
        render_yaml_to_directory=render_directory or None,
        # Creating an object that already exists fails instead of adopting it: stacks never take over
        # each other's objects (and a second owner of the CloudNativePG operator stops at once).
        upsert_existing_objects=False,
    )
    return pulumi.ResourceOptions(
        providers={"kubernetes": provider},
        transformations=[declared_state_wins, *([kept_with_data] if protect_data else [])],
    )


def deploy_target(kubeconfig: str, context: str, render_directory: str = "") -> dict[str, str]:
    """Where `up` sends the objects (context and API server), shown by preview before anything changes;
    not the kubeconfig's path, which differs between machines deploying the same stack."""
    target = config.deploy_target(kubeconfig, context, render_directory)
    target.pop("kubeconfig", None)
    return target


def read_stack_outputs(name: str) -> dict:
    """A stack's last deployed outputs, read by the engine as an invoke: nothing recorded in this
    stack's state, so `refresh` never sees it change (a StackReference would lag one deploy behind)."""
    result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": name}).value or {}
    return dict(result.get("outputs") or {})


def cluster_stack() -> None:
    """What every environment on this cluster shares, owned by exactly one stack."""
    settings = config.load_cluster_settings()
    cluster = kubernetes_provider(settings.kubeconfig, settings.kube_context)
    operator = CnpgOperator("cnpg-operator", settings.operator, opts=cluster)
    pulumi.export("cnpgOperatorNamespace", operator.namespace)
    pulumi.export("cnpgOperatorVersion", operator.version)
    if settings.plugin:
        # The plugin registers with a running operator, in its namespace.
        plugin = BarmanCloudPlugin(
            "barman-cloud-plugin",
            settings.plugin,
            opts=pulumi.ResourceOptions.merge(cluster, pulumi.ResourceOptions(depends_on=[operator])),
        )
        pulumi.export("barmanPluginVersion", plugin.version)
    else:
        pulumi.export("barmanPluginVersion", "")
    pulumi.export("deployTarget", deploy_target(settings.kubeconfig, settings.kube_context))
    pulumi.export("profile", config.CLUSTER_PROFILE)


def environment_stack() -> None:
    settings = config.load_settings()
    # Checked before anything is registered: a missing cluster stack, operator or plugin stops here.
    services = config.cluster_services(settings, read_stack_outputs)
    cluster = kubernetes_provider(
        settings.kubeconfig, settings.kube_context, settings.render_directory, settings.protect_data
    )
    operator_namespace = services.operator_namespace
    # Storage changes that would lose data are refused against the last deployment's layout.
    last_deployment = read_stack_outputs(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")
    storage_layout = config.checked_storage_layout(settings, last_deployment.get("storageLayout"))
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
    backup_args = config.backup_args(settings, namespace.name, store)
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
    pulumi.export("deployTarget", deploy_target(settings.kubeconfig, settings.kube_context, settings.render_directory))
    # What an MLflow client should set for this stack (request timeout; direct mode: multipart thresholds).
    pulumi.export("clientEnvironment", config.client_environment(settings))


if config.stack_profile() == config.CLUSTER_PROFILE:
    cluster_stack()
else:
    environment_stack()
