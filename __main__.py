"""mlflow-platform: the platform's components, created in order, each fed by the configuration model
(config/) and earlier components' outputs through wiring.py.

Two kinds of stack run this program: the one `cluster` stack per Kubernetes cluster, which owns what
is cluster-wide (the CloudNativePG operator, the Barman Cloud plugin), and any number of environment
stacks (dev, prod, pr-N), each owning only its namespace's objects.
"""

import pulumi
import pulumi_kubernetes as k8s

import config
import safety
import wiring
from components.barman_cloud_plugin import BarmanCloudPlugin
from components.cnpg_operator import CnpgOperator
from components.external_object_store import ExternalObjectStore
from components.external_postgres import ExternalPostgres
from components.k8s import declared_state_wins, kept_with_data
from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_gc import MlflowGarbageCollector
from components.mlflow_server import MlflowServer
from components.monitoring import PlatformMonitoring
from components.package_values import package_values
from components.platform_namespace import PlatformNamespace
from components.postgres_backup import PostgresBackup
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs


def kubernetes_provider(c: config.StackConfig) -> pulumi.ResourceOptions:
    provider = k8s.Provider(
        "kubernetes",
        kubeconfig=c.target_kubeconfig or None,
        context=c.target_context or None,
        # GitOps mode: objects are written as YAML for Argo CD / Flux instead of being applied.
        render_yaml_to_directory=c.render_yaml_to_directory or None,
        # Creating an object that already exists fails instead of adopting it: stacks never take over
        # each other's objects (and a second owner of the CloudNativePG operator stops at once).
        upsert_existing_objects=False,
    )
    return pulumi.ResourceOptions(
        providers={"kubernetes": provider},
        transformations=[declared_state_wins, *([kept_with_data] if c.protect_data else [])],
    )


def deploy_target(c: config.StackConfig) -> dict[str, str]:
    """Where `up` sends the objects (context and API server), shown by preview before anything changes;
    not the kubeconfig's path, which differs between machines deploying the same stack."""
    target = safety.deploy_target(c.target_kubeconfig, c.target_context, c.render_yaml_to_directory)
    target.pop("kubeconfig", None)
    return target


def cluster_stack(c: config.StackConfig) -> None:
    """What every environment on this cluster shares, owned by exactly one stack."""
    cluster = kubernetes_provider(c)
    operator = CnpgOperator("cnpg-operator", wiring.operator_args(c), opts=cluster)
    plugin_args = wiring.plugin_args(c)
    # The plugin registers with a running operator, in its namespace.
    plugin = (
        BarmanCloudPlugin(
            "barman-cloud-plugin",
            plugin_args,
            opts=pulumi.ResourceOptions.merge(cluster, pulumi.ResourceOptions(depends_on=[operator])),
        )
        if plugin_args
        else None
    )
    pulumi.export("cnpgOperatorNamespace", operator.namespace)
    pulumi.export("cnpgOperatorVersion", operator.version)
    pulumi.export("barmanPluginVersion", plugin.version if plugin else "")
    pulumi.export("deployTarget", deploy_target(c))
    pulumi.export("profile", c.profile)


def environment_stack(c: config.StackConfig) -> None:
    # Checked before anything is registered: a missing cluster stack, operator or plugin stops here.
    services = safety.cluster_services(c)
    # Storage changes that would lose data are refused against the last deployment's layout.
    storage_layout = safety.checked_storage_layout(c, safety.last_deployment(c).get("storageLayout"))
    cluster = kubernetes_provider(c)
    namespace = PlatformNamespace(
        "platform", wiring.namespace_args(c, services.operator_namespace, storage_layout), opts=cluster
    )

    store_args = wiring.object_store_args(c, namespace.name)
    store = (
        MinioStore("minio", store_args, opts=cluster)
        if isinstance(store_args, MinioStoreArgs)
        else ExternalObjectStore("minio", store_args, opts=cluster)
    )

    # Where PostgreSQL archives WAL and base backups (and restores from): the Cluster spec uses its outputs.
    backup_args = wiring.backup_args(c, namespace.name, store)
    backup = PostgresBackup("postgres-backup", backup_args, opts=cluster) if backup_args else None

    database_args = wiring.database_args(c, namespace.name, services.operator_namespace, backup)
    database = (
        PostgresCluster("postgres", database_args, opts=cluster)
        if isinstance(database_args, PostgresClusterArgs)
        else ExternalPostgres("postgres", database_args, opts=cluster)
    )

    mlflow = MlflowServer("mlflow", wiring.mlflow_args(c, namespace.name, database, store), opts=cluster)

    gc_args = wiring.gc_args(c, namespace.name, mlflow, database, store)
    if gc_args:
        MlflowGarbageCollector("mlflow-gc", gc_args, opts=cluster)
    monitoring_args = wiring.monitoring_args(c, namespace.name, mlflow, store)
    if monitoring_args:
        PlatformMonitoring("monitoring", monitoring_args, opts=cluster)

    pulumi.export("trackingUrl", mlflow.tracking_url)
    pulumi.export("internalUrl", mlflow.internal_url)
    pulumi.export("namespace", namespace.name)
    pulumi.export("bucket", store.bucket)
    pulumi.export("adminUser", mlflow.admin_user)
    pulumi.export("adminPassword", mlflow.admin_password)
    pulumi.export(
        "packageValues", package_values(mlflow, database, store, c.mlflow_version, c.s3_region, c.ingress_domain)
    )
    pulumi.export("profile", c.profile)
    pulumi.export("storageLayout", storage_layout)
    pulumi.export("deployTarget", deploy_target(c))
    pulumi.export("clientEnvironment", mlflow.client_environment)


stack_config = config.load()
if stack_config.profile == config.CLUSTER_PROFILE:
    cluster_stack(stack_config)
else:
    environment_stack(stack_config)
