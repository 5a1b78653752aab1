"""PostgresBackup: where a CloudNativePG Cluster archives WAL and base backups (Barman Cloud plugin).

One `barmancloud.cnpg.io/v1 ObjectStore` (destination, endpoint, CA and credentials from Secrets,
retention policy) and the pieces of the Cluster spec that use it, as outputs for PostgresCluster:

- `plugins`: `spec.plugins[]` with the plugin as WAL archiver (when archiving is on);
- `external_clusters` + `bootstrap`: recovery by configuration, from a server's backups in this
  store (`bootstrap.recovery.source` + `externalClusters[].plugin`), to a target time or the end
  of the archive.

The plugin is cluster-wide and belongs to the cluster stack (BarmanCloudPlugin); the environment
stack checks, from the cluster stack's outputs, that it runs before registering anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.barman_cloud_plugin import PLUGIN_NAME
from components.k8s import PART_OF

RECOVERY_SOURCE = "origin"
# Requests of the plugin's sidecar in each instance pod (barman-cloud-wal-archive / -backup): footprint share.
BACKUP_SIDECAR_CPU_REQUEST = "50m"
BACKUP_SIDECAR_MEMORY_REQUEST = "128Mi"


@dataclass
class PostgresBackupArgs:
    namespace: pulumi.Input[str]
    # s3://bucket[/prefix]/ ; the server name is added by the plugin (one folder per server).
    destination_path: pulumi.Input[str]
    # The cluster's name in the store for the WAL it archives (plugin parameter serverName).
    server_name: str
    # Secret with the key pair (keys access_key_key, secret_key_key), e.g. MinioStore's backup user;
    # or, without one, the key pair itself, put into a Secret here (an external endpoint).
    credentials_secret_name: pulumi.Input[str] | None = None
    access_key: pulumi.Input[str] | None = None
    secret_key: pulumi.Input[str] | None = None
    # The endpoint's CA: a Secret (key ca_key), or its PEM, put into a Secret here.
    ca_pem: str = ""
    endpoint_url: pulumi.Input[str] | None = None
    # Secret with the endpoint's CA (key ca_key); None trusts the sidecar image's public CAs.
    ca_secret_name: pulumi.Input[str] | None = None
    ca_key: str = "ca.crt"
    access_key_key: str = "access-key"
    secret_key_key: str = "secret-key"
    region: str = "us-east-1"
    # Recovery window of base backups and WAL, e.g. 30d, 4w, 3m.
    retention: str = "30d"
    # Archive this cluster's WAL (and take base backups) into the store.
    wal_archiving: bool = True
    # Restore from this server's backups (bootstrap.recovery); "" creates an empty cluster.
    restore_from: str = ""
    # RFC 3339 point in time to stop the restore at; "" replays the whole archive.
    restore_target_time: str = ""
    # Plugin sidecar in each instance pod.
    sidecar_resources: Mapping[str, Mapping[str, str]] | None = None
    object_store_name: str = "postgres-backups"
    protect_data: bool = False
    # Resolves once the destination (bucket, user, policy) exists, e.g. after MinIO's bootstrap Job:
    # the first base backup waits for it (WAL archiving retries on its own and does not).
    destination_ready: pulumi.Input[object] | None = None


class PostgresBackup(pulumi.ComponentResource):
    """The ObjectStore and the Cluster spec fragments that archive to it or restore from it."""

    object_store_name: pulumi.Output[str]
    # The ObjectStore's name, once the destination exists: what a base backup waits for.
    ready: pulumi.Output[str]
    plugins: pulumi.Output[list]
    external_clusters: pulumi.Output[list]
    bootstrap: pulumi.Output[dict | None]

    def __init__(self, name: str, args: PostgresBackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:PostgresBackup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {**PART_OF, "app.kubernetes.io/component": "postgres-backup"}
        credentials_secret_name = args.credentials_secret_name
        if credentials_secret_name is None:
            credentials_secret_name = k8s.core.v1.Secret(
                f"{name}-credentials",
                metadata={"namespace": args.namespace, "labels": labels},
                type="Opaque",
                string_data={args.access_key_key: args.access_key, args.secret_key_key: args.secret_key},
                opts=child,
            ).metadata.name
        ca_secret_name = args.ca_secret_name
        if ca_secret_name is None and args.ca_pem:
            ca_secret_name = k8s.core.v1.Secret(
                f"{name}-ca",
                metadata={"namespace": args.namespace, "labels": labels},
                type="Opaque",
                string_data={args.ca_key: args.ca_pem},
                opts=child,
            ).metadata.name
        configuration: dict = {
            "destinationPath": args.destination_path,
            "s3Credentials": {
                "accessKeyId": {"name": credentials_secret_name, "key": args.access_key_key},
                "secretAccessKey": {"name": credentials_secret_name, "key": args.secret_key_key},
            },
            # Compressed WAL and data: less bytes to the store, and the WAL restore proves them whole.
            "wal": {"compression": "gzip", "maxParallel": 2},
            "data": {"compression": "gzip", "jobs": 2},
        }
        if args.endpoint_url is not None:
            configuration["endpointURL"] = args.endpoint_url
        if ca_secret_name is not None:
            configuration["endpointCA"] = {"name": ca_secret_name, "key": args.ca_key}
        sidecar: dict = {"env": [{"name": "AWS_DEFAULT_REGION", "value": args.region}]}
        if args.sidecar_resources:
            sidecar["resources"] = dict(args.sidecar_resources)
        spec: dict = {
            "configuration": configuration,
            "retentionPolicy": args.retention,
            "instanceSidecarConfiguration": sidecar,
        }
        store = k8s.apiextensions.CustomResource(
            f"{name}-object-store",
            api_version="barmancloud.cnpg.io/v1",
            kind="ObjectStore",
            metadata={
                "name": args.object_store_name,
                "namespace": args.namespace,
                "labels": labels,
            },
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data),
        )
        store_name = store.metadata["name"]
        self.object_store_name = store_name
        self.ready = pulumi.Output.all(store_name, args.destination_ready).apply(lambda values: values[0])
        self.plugins = pulumi.Output.from_input(
            [
                {
                    "name": PLUGIN_NAME,
                    "enabled": True,
                    "isWALArchiver": True,
                    "parameters": {"barmanObjectName": store_name, "serverName": args.server_name},
                }
            ]
            if args.wal_archiving
            else []
        )
        if args.restore_from:
            self.external_clusters = pulumi.Output.from_input(
                [
                    {
                        "name": RECOVERY_SOURCE,
                        "plugin": {
                            "name": PLUGIN_NAME,
                            "parameters": {"barmanObjectName": store_name, "serverName": args.restore_from},
                        },
                    }
                ]
            )
            recovery: dict = {"source": RECOVERY_SOURCE}
            if args.restore_target_time:
                recovery["recoveryTarget"] = {"targetTime": args.restore_target_time}
            self.bootstrap = pulumi.Output.from_input({"recovery": recovery})
        else:
            self.external_clusters = pulumi.Output.from_input([])
            self.bootstrap = pulumi.Output.from_input(None)
        self.register_outputs(
            {
                "object_store_name": self.object_store_name,
                "ready": self.ready,
                "plugins": self.plugins,
                "external_clusters": self.external_clusters,
                "bootstrap": self.bootstrap,
            }
        )
