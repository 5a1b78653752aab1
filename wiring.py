"""The one place that maps the configuration model and earlier components' outputs onto each component's
(flat, Input-typed) Args. One direction only: the model and outputs in, Args out; __main__.py creates
the components in order and passes each the Args built here.
"""

from __future__ import annotations

from typing import Any

import pulumi

import sizing
from components import minio_store, postgres_cluster
from components.barman_cloud_plugin import BarmanCloudPluginArgs
from components.cnpg_operator import CnpgOperatorArgs
from components.external_object_store import ExternalObjectStore, ExternalObjectStoreArgs
from components.external_postgres import ExternalPostgres, ExternalPostgresArgs
from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_containers import CLIENT_POD_LABELS, POSTGRES_CA_PATH
from components.mlflow_gc import MlflowGarbageCollectorArgs
from components.mlflow_server import MlflowServer, MlflowServerArgs
from components.monitoring import PlatformMonitoringArgs
from components.platform_namespace import PlatformNamespaceArgs
from components.postgres_backup import (
    BACKUP_SIDECAR_CPU_REQUEST,
    BACKUP_SIDECAR_MEMORY_REQUEST,
    PostgresBackup,
    PostgresBackupArgs,
)
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
from components.publishing import Publication
from config import StackConfig
from config.checks import project_path, read_ca_bundle

# The components an environment's data lives in, in-cluster or external: both kinds publish the same outputs.
ObjectStore = MinioStore | ExternalObjectStore
Database = PostgresCluster | ExternalPostgres


# --------------------------------------------------------------------------- the cluster stack
def operator_args(c: StackConfig) -> CnpgOperatorArgs:
    return CnpgOperatorArgs(
        chart_version=c.cnpg_chart_version,
        namespace=c.cnpg_operator_namespace,
        chart_repository=c.cnpg_chart_repository,
        chart_path=c.cnpg_chart_path,
        values=c.cnpg_chart_values,
        owner=f"{pulumi.get_project()}.{c.stack}",
    )


def plugin_args(c: StackConfig) -> BarmanCloudPluginArgs | None:
    if not c.barman_plugin:
        return None
    crd = c.barman_plugin_crd
    return BarmanCloudPluginArgs(
        namespace=c.cnpg_operator_namespace,
        image=c.barman_plugin_image,
        sidecar_image=c.barman_plugin_sidecar_image,
        crd_source=crd if crd.startswith(("https://", "http://")) else str(project_path(crd)),
    )


# --------------------------------------------------------------------------- an environment stack
def namespace_args(
    c: StackConfig, operator_namespace: pulumi.Input[str], storage_layout: pulumi.Input[dict]
) -> PlatformNamespaceArgs:
    return PlatformNamespaceArgs(
        name=c.namespace, protect=c.protect_data, operator_namespace=operator_namespace, storage_layout=storage_layout
    )


def publication(c: StackConfig) -> Publication:
    """Where the stack's public hosts are served (MLflow's; MinIO's with minioIngress)."""
    return Publication(
        mode=c.publish_mode,
        domain=c.ingress_domain,
        ingress_class_name=c.ingress_class_name,
        ingress_tls_secret_name=c.ingress_tls_secret_name,
        ingress_cluster_issuer=c.ingress_cluster_issuer,
        gateway_name=c.gateway_name,
        gateway_namespace=c.gateway_namespace,
        gateway_listener=c.gateway_listener,
        gateway_https=c.gateway_https,
    )


def _tls(c: StackConfig) -> dict[str, Any]:
    return {
        "tls_algorithm": c.tls_algorithm,
        "tls_validity_days": c.tls_validity_days,
        "tls_early_renewal_days": c.tls_early_renewal_days,
        "tls_self_signed": c.tls_self_signed,
    }


def object_store_args(c: StackConfig, namespace: pulumi.Input[str]) -> MinioStoreArgs | ExternalObjectStoreArgs:
    if c.object_store_in_cluster:
        # The stack's MinIO holds the backups unless backupS3Endpoint names another store.
        backups: dict[str, Any] = (
            {"backup_bucket": c.backup_bucket, "backup_client_pod_labels": postgres_cluster.POD_LABELS}
            if c.backup_store_needed and not c.backup_s3_endpoint
            else {}
        )
        return MinioStoreArgs(
            namespace=namespace,
            image=c.minio_image,
            replicas=c.minio_replicas,
            storage_size=c.minio_storage_size,
            storage_class=c.minio_storage_class,
            resources=c.resources("minio"),
            bucket=c.bucket,
            region=c.s3_region,
            client_pod_labels=CLIENT_POD_LABELS,
            protect_data=c.protect_data,
            ephemeral=c.ephemeral,
            **_tls(c),
            publication=publication(c) if c.minio_ingress else Publication(mode="none"),
            public_timeout_seconds=c.mlflow_request_timeout_seconds,
            metrics_public=c.metrics_on,
            **backups,
        )
    credentials: dict[str, Any] = (
        {"admin_user": c.s3_admin_user, "admin_password": pulumi.Output.secret(c.s3_admin_password.get_secret_value())}
        if c.object_store_mode == "externalMinio"
        else {"access_key": c.s3_access_key, "secret_key": pulumi.Output.secret(c.s3_secret_key.get_secret_value())}
    )
    return ExternalObjectStoreArgs(
        namespace=namespace,
        endpoint=c.s3_endpoint,
        bucket=c.bucket,
        region=c.s3_region,
        ca_file=c.s3_ca_file,
        ca_pem=read_ca_bundle(c.s3_ca_file),
        protect_data=c.protect_data,
        ephemeral=c.ephemeral,
        **credentials,
    )


def backup_args(c: StackConfig, namespace: pulumi.Input[str], store: ObjectStore) -> PostgresBackupArgs | None:
    """The ObjectStore, when the stack archives or restores."""
    if not c.backup_store_needed:
        return None
    common: dict[str, Any] = dict(
        namespace=namespace,
        server_name=c.backup_server,
        region=c.s3_region,
        retention=c.backup_retention,
        wal_archiving=c.backups_on,
        restore_from=c.postgres_restore_source,
        restore_target_time=c.postgres_restore_target_time,
        sidecar_resources=sizing.resources(BACKUP_SIDECAR_CPU_REQUEST, BACKUP_SIDECAR_MEMORY_REQUEST, "1", "512Mi"),
        protect_data=c.protect_data,
    )
    if c.backup_s3_endpoint:
        return PostgresBackupArgs(
            destination_path=f"s3://{c.backup_bucket}/",
            endpoint_url=c.backup_s3_endpoint.rstrip("/"),
            access_key=c.backup_s3_access_key,
            secret_key=pulumi.Output.secret(c.backup_s3_secret_key.get_secret_value()),
            ca_pem=read_ca_bundle(c.backup_s3_ca_file),
            **common,
        )
    # Without backupS3Endpoint the stack's own MinIO holds the backups (config.rules refuses other stores).
    assert isinstance(store, MinioStore), "backups without backupS3Endpoint need the in-cluster MinIO"
    return PostgresBackupArgs(
        destination_path=pulumi.Output.concat("s3://", store.backup_bucket, "/"),
        # The bucket and barman's user exist once the store's bootstrap ran (its bucket output).
        destination_ready=store.bucket,
        endpoint_url=store.endpoint_url,
        ca_secret_name=store.ca_secret_name,
        credentials_secret_name=store.backup_credentials_secret_name,
        **common,
    )


def database_args(
    c: StackConfig,
    namespace: pulumi.Input[str],
    operator_namespace: pulumi.Input[str],
    backup: PostgresBackup | None = None,
) -> PostgresClusterArgs | ExternalPostgresArgs:
    """`backup`: the PostgresBackup component (its outputs go into the Cluster spec), or None."""
    if not c.postgres_in_cluster:
        return ExternalPostgresArgs(
            namespace=namespace,
            host=c.postgres_host,
            port=c.postgres_port,
            replica_host=c.postgres_replica_host if c.read_replica_on else "",
            admin_user=c.postgres_admin_user,
            admin_password=pulumi.Output.secret(c.postgres_admin_password.get_secret_value()),
            ca_file=c.postgres_ca_file,
            ca_pem=read_ca_bundle(c.postgres_ca_file),
            client_ca_path=POSTGRES_CA_PATH,
            protect_data=c.protect_data,
        )
    backups: dict[str, Any] = {}
    if backup is not None:
        backups["plugins"] = backup.plugins
        if c.backups_on:
            backups.update(backup_schedule=c.backup_schedule, backup_destination_ready=backup.ready)
        if c.postgres_restore_source:
            backups.update(bootstrap=backup.bootstrap, external_clusters=backup.external_clusters)
    return PostgresClusterArgs(
        namespace=namespace,
        instances=c.postgres_instances,
        image=c.postgres_image,
        storage_size=c.postgres_storage_size,
        storage_class=c.postgres_storage_class,
        resources=c.resources("postgres"),
        client_pod_labels=CLIENT_POD_LABELS,
        client_ca_path=POSTGRES_CA_PATH,
        operator_namespace=operator_namespace,
        protect_data=c.protect_data,
        ephemeral=c.ephemeral,
        max_connections=sizing.max_connections(c),
        superuser_reserved_connections=sizing.SUPERUSER_RESERVED_CONNECTIONS,
        read_replicas=c.read_replica_on,
        **_tls(c),
        **backups,
    )


def mlflow_args(
    c: StackConfig, namespace: pulumi.Input[str], database: Database, store: ObjectStore
) -> MlflowServerArgs:
    # Direct transfers from an in-cluster MinIO: MLflow signs URLs for the endpoint it uses, so it uses
    # the published one (through the ingress, whose certificate the image's public CAs verify).
    endpoint: dict[str, Any] = (
        {
            "s3_endpoint_url": store.public_endpoint_url,
            "object_store_ca_secret_name": None,
            "object_store_egress": store.public_client_egress,
        }
        if c.artifact_transfer_mode == "direct" and isinstance(store, MinioStore)
        else {
            "s3_endpoint_url": store.endpoint_url,
            "object_store_ca_secret_name": store.ca_secret_name,
            "object_store_egress": store.client_egress,
        }
    )
    return MlflowServerArgs(
        namespace=namespace,
        version=c.mlflow_version,
        image=c.mlflow_image_ref,
        replicas=c.mlflow_replicas,
        workers=c.mlflow_worker_count,
        resources=c.resources("mlflow"),
        auth=c.mlflow_auth,
        admin_user=c.mlflow_admin_user,
        backend_store_uri=database.sqlalchemy_uri,
        auth_database_uri=database.auth_sqlalchemy_uri,
        database_password=database.password,
        postgres_ca_secret_name=database.ca_secret_name,
        database_egress=database.client_egress,
        bucket=store.bucket,
        access_key=store.access_key,
        secret_key=store.secret_key,
        region=c.s3_region,
        **endpoint,
        publication=publication(c),
        read_backend_store_uri=database.read_sqlalchemy_uri,
        read_auth_database_uri=database.read_auth_sqlalchemy_uri,
        artifact_transfer=c.artifact_transfer_mode,
        multipart_threshold_bytes=int(sizing.quantity(c.artifact_multipart_threshold)),
        multipart_chunk_bytes=int(sizing.quantity(c.artifact_multipart_chunk_size)),
        job_execution=c.job_runner_on,
        scratch_size=c.mlflow_scratch_size,
        request_timeout_seconds=c.mlflow_request_timeout_seconds,
        auth_cache_seconds=c.mlflow_auth_cache_seconds,
        metrics=c.metrics_on,
        db_pool_size=c.mlflow_db_pool_size,
        db_max_overflow=c.mlflow_db_max_overflow,
        kek_version=c.mlflow_kek_version,
    )


def gc_args(
    c: StackConfig, namespace: pulumi.Input[str], mlflow: MlflowServer, database: Database, store: ObjectStore
) -> MlflowGarbageCollectorArgs | None:
    if not c.gc_on:
        return None
    return MlflowGarbageCollectorArgs(
        namespace=namespace,
        image=c.mlflow_image_ref,
        env_secret_name=mlflow.env_secret_name,
        postgres_ca_secret_name=database.ca_secret_name,
        tracking_url=mlflow.internal_url,
        object_store_ca_secret_name=store.ca_secret_name,
        schedule=c.mlflow_gc_schedule,
        older_than=c.mlflow_gc_older_than,
        auth=c.mlflow_auth,
        admin_user=c.mlflow_admin_user,
    )


def monitoring_args(
    c: StackConfig, namespace: pulumi.Input[str], mlflow: MlflowServer, store: ObjectStore
) -> PlatformMonitoringArgs | None:
    if not (c.metrics_on and c.prometheus_operator):
        return None
    minio: dict[str, Any] = (
        {
            "minio_selector": minio_store.POD_SELECTOR,
            "minio_ca_secret_name": store.ca_secret_name,
            "minio_server_name": pulumi.Output.concat("minio.", namespace, ".svc"),
        }
        if c.object_store_in_cluster
        else {}
    )
    return PlatformMonitoringArgs(
        namespace=namespace,
        prometheus_namespace=c.prometheus_namespace,
        mlflow_selector=mlflow.pod_selector,
        mlflow_password_secret_name=mlflow.env_secret_name if c.mlflow_auth else None,
        mlflow_user=c.mlflow_admin_user,
        postgres_selector=postgres_cluster.POD_LABELS if c.postgres_in_cluster else None,
        monitor_labels=c.monitoring_labels,
        **minio,
    )
