"""PostgresBackup: where a CloudNativePG Cluster archives WAL and base backups (Barman Cloud plugin).

One `barmancloud.cnpg.io/v1 ObjectStore` (destination, endpoint, CA and credentials from Secrets,
retention policy) and the pieces of the Cluster spec that use it, as outputs for PostgresCluster:

- `plugins`: `spec.plugins[]` with the plugin as WAL archiver (when archiving is on);
- `external_clusters` + `bootstrap`: recovery by configuration, from a server's backups in this
  store (`bootstrap.recovery.source` + `externalClusters[].plugin`), to a target time or the end
  of the archive.

The plugin and cert-manager are cluster-wide and belong to whoever owns the CloudNativePG
operator. Unless told not to (GitOps rendering, where no cluster is reachable), this component
reads the plugin's Deployment before the ObjectStore is created: a missing plugin fails preview
with "resource ... does not exist", a plugin that is not running fails with PLUGIN_NOT_READY
instead of a Cluster that waits for its archiver until the create timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF

PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
PLUGIN_DEPLOYMENT = "barman-cloud"
RECOVERY_SOURCE = "origin"
# The plugin's sidecar in every instance pod (it runs barman-cloud-wal-archive / -backup).
BACKUP_SIDECAR_CPU_REQUEST = "50m"
BACKUP_SIDECAR_MEMORY_REQUEST = "128Mi"
PLUGIN_NOT_READY = (
    "the Barman Cloud plugin is not running: deployment {namespace}/{name} has {ready} ready "
    "replica(s). Backups need the plugin (and cert-manager) installed by whoever owns the "
    "CloudNativePG operator: README, Backups and point-in-time recovery, Installing the plugin. "
    "Or set backups: off"
)


class PluginNotReady(pulumi.RunError):
    """Printed by Pulumi without a stack trace, like a configuration error."""


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
    # Where the plugin runs (the operator's namespace) and whether to check it is running.
    plugin_namespace: pulumi.Input[str] = "cnpg-system"
    check_plugin: bool = True
    object_store_name: str = "postgres-backups"
    protect_data: bool = False


class PostgresBackup(pulumi.ComponentResource):
    """The ObjectStore and the Cluster spec fragments that archive to it or restore from it."""

    object_store_name: pulumi.Output[str]
    plugins: pulumi.Output[list]
    external_clusters: pulumi.Output[list]
    bootstrap: pulumi.Output[dict | None]

    def __init__(self, name: str, args: PostgresBackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:PostgresBackup", name, None, opts)
        depends: list = []
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
        if args.check_plugin:
            depends.append(self._plugin_check(name, args))
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
        annotations: dict = {}
        if args.check_plugin:
            # Creating the store waits for the check: a stopped plugin fails the update here.
            annotations["mlflow-platform/plugin-checked"] = self.plugin_ready_replicas.apply(lambda _: "true")
        store = k8s.apiextensions.CustomResource(
            f"{name}-object-store",
            api_version="barmancloud.cnpg.io/v1",
            kind="ObjectStore",
            metadata={
                "name": args.object_store_name,
                "namespace": args.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends, protect=args.protect_data),
        )
        store_name = store.metadata["name"]
        self.object_store_name = store_name
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
                "plugins": self.plugins,
                "external_clusters": self.external_clusters,
                "bootstrap": self.bootstrap,
            }
        )

    def _plugin_check(self, name: str, args: PostgresBackupArgs) -> pulumi.Resource:
        """Read the plugin's Deployment: not there -> the read fails; not ready -> PluginNotReady."""
        deployment = k8s.apps.v1.Deployment.get(
            f"{name}-plugin",
            pulumi.Output.concat(args.plugin_namespace, "/", PLUGIN_DEPLOYMENT),
            opts=pulumi.ResourceOptions(parent=self),
        )

        def ready(values: Sequence) -> int:
            status, namespace = values
            replicas = int((status or {}).get("ready_replicas") or (status or {}).get("readyReplicas") or 0)
            if replicas < 1:
                raise PluginNotReady(
                    PLUGIN_NOT_READY.format(namespace=namespace, name=PLUGIN_DEPLOYMENT, ready=replicas)
                )
            return replicas

        self.plugin_ready_replicas = pulumi.Output.all(deployment.status, args.plugin_namespace).apply(ready)
        return deployment
