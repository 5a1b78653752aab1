"""mlflow-platform: composes the platform's components from the validated stack settings."""

import pulumi
import pulumi_kubernetes as k8s

from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_server import CLIENT_POD_LABELS, POSTGRES_CA_PATH, MlflowServer, MlflowServerArgs
from components.platform_namespace import PlatformNamespace, PlatformNamespaceArgs
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
from settings import load_settings

settings = load_settings()

kubernetes = k8s.Provider(
    "kubernetes",
    kubeconfig=settings.kubeconfig or None,
    context=settings.kube_context or None,
)
cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})

namespace = PlatformNamespace("platform", PlatformNamespaceArgs(name=settings.namespace, protect=settings.protect_data), opts=cluster)

postgres = PostgresCluster("postgres", PostgresClusterArgs(
    namespace=namespace.name,
    stack=settings.stack,
    settings=settings.postgres,
    tls=settings.tls,
    client_pod_labels=CLIENT_POD_LABELS,
    client_ca_path=POSTGRES_CA_PATH,
    protect_data=settings.protect_data,
), opts=cluster)

store = MinioStore("minio", MinioStoreArgs(
    namespace=namespace.name,
    stack=settings.stack,
    settings=settings.minio,
    tls=settings.tls,
    ingress=settings.ingress,
    client_pod_labels=CLIENT_POD_LABELS,
    protect_data=settings.protect_data,
    ephemeral=settings.ephemeral,
), opts=cluster)

mlflow = MlflowServer("mlflow", MlflowServerArgs(
    namespace=namespace.name,
    settings=settings.mlflow,
    ingress=settings.ingress,
    region=settings.minio.region,
    backend_store_uri=postgres.sqlalchemy_uri,
    auth_database_uri=postgres.auth_sqlalchemy_uri,
    postgres_ca_secret_name=postgres.ca_secret_name,
    s3_endpoint_url=store.endpoint_url,
    bucket=store.bucket,
    access_key=store.access_key,
    secret_key=store.secret_key,
    minio_ca_secret_name=store.ca_secret_name,
), opts=cluster)

pulumi.export("trackingUrl", mlflow.tracking_url)
pulumi.export("internalUrl", mlflow.internal_url)
pulumi.export("namespace", namespace.name)
pulumi.export("bucket", store.bucket)
pulumi.export("adminUser", mlflow.admin_user)
pulumi.export("adminPassword", mlflow.admin_password)
pulumi.export("packageValues", mlflow.package_values)
pulumi.export("profile", settings.profile)
