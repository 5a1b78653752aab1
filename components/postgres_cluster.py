"""PostgresCluster: a CloudNativePG Cluster serving our certificate, with MLflow's role and databases.

Everything happens inside the cluster: the role is declared in the Cluster's `spec.managed.roles`
and the databases as CloudNativePG `Database` objects, so the operator creates them. The machine
running Pulumi needs only the Kubernetes API, and the Cluster has no superuser access at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import k8s as kube
from components.barman_cloud_plugin import PLUGIN_NAME
from components.postgres_database import ROLE_PASSWORD_SPECIAL, PostgresDatabase, postgres_uri
from components.tls_certificate import TlsCertificate, TlsCertificateArgs

PORT = 5432
# The Cluster's default name (PostgresClusterArgs.cluster_name).
CLUSTER_NAME = "mlflow-pg"
# CNPG's own rules (local, streaming_replica by certificate) come first and its default
# `host all all all scram-sha-256` comes last: rejecting hostnossl in between refuses every
# connection that is not TLS, and the hostssl rule still asks for a password.
PG_HBA = [
    "hostnossl all all all reject",
    "hostssl all all all scram-sha-256",
]
# The instance manager's status endpoint, polled by the operator.
INSTANCE_STATUS_PORT = 8000


def instance_labels(cluster_name: str = CLUSTER_NAME) -> dict[str, str]:
    """The label CloudNativePG puts on every instance pod of `cluster_name` (matchLabels form)."""
    return {"cnpg.io/cluster": cluster_name}


# The default Cluster's instance pods: for policies that must admit them before the Cluster exists
# (the in-cluster MinIO holding the backups, created first). PostgresCluster.pod_selector once it does.
POD_LABELS = instance_labels()


@dataclass
class PostgresClusterArgs:
    namespace: pulumi.Input[str]
    instances: int
    image: str
    storage_size: str
    resources: Mapping[str, Mapping[str, str]]
    # Pods that may connect (MLflow's server and Jobs) and where they mount our CA.
    client_pod_labels: Mapping[str, str]
    client_ca_path: str
    # The CloudNativePG operator's namespace, admitted by the NetworkPolicy.
    operator_namespace: pulumi.Input[str] = "cnpg-system"
    storage_class: str = ""
    cluster_name: str = CLUSTER_NAME
    role_name: str = "mlflow"
    database_name: str = "mlflow"
    auth_database_name: str = "mlflow_auth"
    # prod: protect the Cluster and Database objects; retain databases when their objects go.
    protect_data: bool = False
    # pr: `pulumi destroy` drops the databases too.
    ephemeral: bool = False
    tls_algorithm: str = "ECDSA"
    tls_validity_days: int = 730
    tls_early_renewal_days: int = 30
    tls_self_signed: bool = False
    # Backups (PostgresBackup's outputs): spec.plugins (WAL archiver), and recovery by
    # configuration (spec.bootstrap + spec.externalClusters); None/empty leaves them out.
    plugins: pulumi.Input[Sequence[Mapping]] | None = None
    bootstrap: pulumi.Input[Mapping] | None = None
    external_clusters: pulumi.Input[Sequence[Mapping]] | None = None
    # Six-field cron (seconds first) of a ScheduledBackup through the plugin; "" takes none.
    backup_schedule: str = ""
    backup_plugin: str = PLUGIN_NAME
    # Resolves once the backup destination exists (PostgresBackup.ready): the first (immediate)
    # base backup is submitted only then.
    backup_destination_ready: pulumi.Input[str] | None = None
    # PostgreSQL's connection slots, sized by sizing.py from the clients' pools (0: PostgreSQL's
    # default, 100), and the slots of them only superusers (the instance manager) may take.
    max_connections: int = 0
    superuser_reserved_connections: int = 3
    # With instances > 1: publish URIs of the `-ro` Service (the replicas) for MLflow's reads.
    read_replicas: bool = False


class PostgresCluster(PostgresDatabase):
    """CloudNativePG Cluster with TLS only, MLflow's managed role and its two databases."""

    # The instances' pods, in matchLabels form (instance_labels(args.cluster_name)).
    pod_selector: dict[str, str]

    def __init__(self, name: str, args: PostgresClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:PostgresCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = args.cluster_name
        pod_labels = instance_labels(cluster)
        certificate = TlsCertificate(
            f"{name}-tls",
            TlsCertificateArgs(
                namespace=args.namespace,
                common_name=f"{cluster}-rw",
                dns_names=kube.service_dns_names([f"{cluster}-{kind}" for kind in ("rw", "ro", "r")], args.namespace),
                algorithm=args.tls_algorithm,
                validity_days=args.tls_validity_days,
                early_renewal_days=args.tls_early_renewal_days,
                self_signed=args.tls_self_signed,
            ),
            opts=child,
        )

        password = random.RandomPassword(
            f"{name}-{args.role_name}-password",
            length=32,
            special=True,
            # Characters that must be URL-encoded in a URI, so the encoding is always exercised.
            override_special=ROLE_PASSWORD_SPECIAL,
            opts=child,
        )
        role_secret = k8s.core.v1.Secret(
            f"{name}-{args.role_name}-credentials",
            metadata={
                "namespace": args.namespace,
                # The operator re-reads a labelled password Secret when it changes.
                "labels": {**kube.labels(cluster, "database"), "cnpg.io/reload": "true"},
            },
            type="kubernetes.io/basic-auth",
            string_data={"username": args.role_name, "password": password.result},
            opts=child,
        )
        data_opts = pulumi.ResourceOptions(parent=self, protect=args.protect_data, retain_on_delete=args.protect_data)
        cnpg_cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata={
                "name": cluster,
                "namespace": args.namespace,
                "labels": kube.labels(cluster, "database"),
                "annotations": {"pulumi.com/waitFor": "condition=Ready"},
            },
            spec=self._cluster_spec(args, certificate, role_secret),
            opts=pulumi.ResourceOptions.merge(
                data_opts,
                pulumi.ResourceOptions(
                    custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                ),
            ),
        )
        databases = [
            self._database(name, args, db, cnpg_cluster, data_opts)
            for db in (args.database_name, args.auth_database_name)
        ]
        self._network_policy(name, args, pod_labels)
        if args.backup_schedule:
            self._scheduled_backup(name, args, cnpg_cluster)

        self.host = pulumi.Output.concat(cluster, "-rw.", args.namespace, ".svc")
        self.port = pulumi.Output.from_input(PORT)
        # The names resolve once the operator reports the databases applied (their waitFor).
        self.database, self.auth_database = (
            db.id.apply(lambda _, n=db_name: n)
            for db, db_name in zip(databases, (args.database_name, args.auth_database_name), strict=True)
        )
        self.username = cnpg_cluster.id.apply(lambda _: args.role_name)
        self.password = pulumi.Output.secret(password.result)
        self.ca_pem = certificate.ca_pem
        self.ca_secret_name = certificate.ca_secret_name
        self.sqlalchemy_uri = postgres_uri(self.username, self.host, PORT, self.database, args.client_ca_path)
        self.auth_sqlalchemy_uri = postgres_uri(self.username, self.host, PORT, self.auth_database, args.client_ca_path)
        if args.read_replicas and args.instances > 1:
            # CloudNativePG's `-ro` Service: the hot standbys (our certificate names it too).
            replicas = pulumi.Output.concat(cluster, "-ro.", args.namespace, ".svc")
            self.read_sqlalchemy_uri = postgres_uri(self.username, replicas, PORT, self.database, args.client_ca_path)
            self.read_auth_sqlalchemy_uri = postgres_uri(
                self.username, replicas, PORT, self.auth_database, args.client_ca_path
            )
        self.client_egress = pulumi.Output.from_input(
            {
                "to": [{"podSelector": {"matchLabels": pod_labels}}],
                "ports": [{"port": PORT, "protocol": "TCP"}],
            }
        )
        self.pod_selector = instance_labels(cluster)
        self._register_database_outputs()

    @staticmethod
    def _cluster_spec(args: PostgresClusterArgs, certificate: TlsCertificate, role_secret) -> dict:
        storage = {"size": args.storage_size}
        if args.storage_class:
            storage["storageClass"] = args.storage_class
        return {
            "instances": args.instances,
            "imageName": args.image,
            "storage": storage,
            "resources": dict(args.resources),
            # Nobody, the runner included, ever logs in as postgres over the network.
            "enableSuperuserAccess": False,
            "certificates": {
                "serverTLSSecret": certificate.secret_name,
                "serverCASecret": certificate.ca_secret_name,
            },
            "postgresql": {
                "pg_hba": PG_HBA,
                **(
                    {
                        "parameters": {
                            "max_connections": str(args.max_connections),
                            "superuser_reserved_connections": str(args.superuser_reserved_connections),
                        }
                    }
                    if args.max_connections
                    else {}
                ),
            },
            "managed": {
                "roles": [
                    {
                        "name": args.role_name,
                        "ensure": "present",
                        "login": True,
                        "inherit": True,
                        "passwordSecret": {"name": role_secret.metadata.name},
                        "comment": "MLflow tracking server (mlflow-platform)",
                    }
                ]
            },
            # Spread instances over nodes when the cluster has several.
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
            **{
                key: value
                for key, value in (
                    ("plugins", args.plugins),
                    ("bootstrap", args.bootstrap),
                    ("externalClusters", args.external_clusters),
                )
                if value is not None
            },
            # A new cluster starts with MLflow's role owning its database, instead of CloudNativePG's
            # default `app` role and database: no login role is left that MLflow does not hold.
            **(
                {}
                if args.bootstrap is not None
                else {
                    "bootstrap": {
                        "initdb": {
                            "database": args.database_name,
                            "owner": args.role_name,
                            "secret": {"name": role_secret.metadata.name},
                        }
                    }
                }
            ),
        }

    def _scheduled_backup(self, name: str, args: PostgresClusterArgs, cnpg_cluster) -> None:
        """Base backups on a schedule through the plugin (WAL is archived continuously in between)."""
        k8s.apiextensions.CustomResource(
            f"{name}-scheduled-backup",
            api_version="postgresql.cnpg.io/v1",
            kind="ScheduledBackup",
            metadata={
                "name": f"{args.cluster_name}-daily",
                "namespace": args.namespace,
                "labels": kube.labels(args.cluster_name, "database"),
                # Submitted once the destination exists, so the immediate first backup finds its bucket.
                "annotations": {
                    "mlflow-platform/backup-destination": pulumi.Output.from_input(
                        args.backup_destination_ready or ""
                    ).apply(str)
                },
            },
            spec={
                "schedule": args.backup_schedule,
                "cluster": {"name": cnpg_cluster.metadata["name"]},
                "method": "plugin",
                "pluginConfiguration": {"name": args.backup_plugin},
                # The first base backup right away: point-in-time recovery starts from one.
                "immediate": True,
                "backupOwnerReference": "self",
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cnpg_cluster]),
        )

    def _database(
        self, name: str, args: PostgresClusterArgs, database: str, cnpg_cluster, data_opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{name}-{database}-database",
            api_version="postgresql.cnpg.io/v1",
            kind="Database",
            metadata={
                "name": f"{args.cluster_name}-{database.replace('_', '-')}",
                "namespace": args.namespace,
                "labels": kube.labels(args.cluster_name, "database"),
                # Dependants (the migration Job) start once the operator created the database.
                "annotations": {"pulumi.com/waitFor": "jsonpath={.status.applied}=true"},
            },
            spec={
                "name": database,
                "owner": args.role_name,
                # By name, not by the Cluster's output: without a dependency Pulumi deletes the Database
                # and the Cluster together, and the operator's cleanup of a deleted Cluster clears the
                # Database's finalizer. Deleting it first would wait for a running primary that may be gone.
                "cluster": {"name": args.cluster_name},
                "ensure": "present",
                # Only ephemeral stacks drop the database with its object; elsewhere it survives.
                "databaseReclaimPolicy": "delete" if args.ephemeral else "retain",
            },
            opts=pulumi.ResourceOptions.merge(
                data_opts,
                pulumi.ResourceOptions(
                    # Applied once the Cluster it waits for is ready (same timeout as the Cluster).
                    custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                ),
            ),
        )

    def _network_policy(self, name: str, args: PostgresClusterArgs, pod_labels: dict) -> None:
        """PostgreSQL accepts MLflow's pods, its own instances (replication) and the operator."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": kube.labels(args.cluster_name, "database")},
            spec={
                "podSelector": {"matchLabels": pod_labels},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": dict(args.client_pod_labels)}}],
                        "ports": [{"port": PORT, "protocol": "TCP"}],
                    },
                    {
                        "from": [
                            {"podSelector": {"matchLabels": pod_labels}},
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": args.operator_namespace}
                                }
                            },
                        ],
                        "ports": [{"port": PORT, "protocol": "TCP"}, {"port": INSTANCE_STATUS_PORT, "protocol": "TCP"}],
                    },
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
