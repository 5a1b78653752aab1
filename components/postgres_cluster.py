"""PostgresCluster: a CloudNativePG Cluster serving our certificate, plus MLflow's role and databases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql
import pulumi_random as random

from components.admin_endpoint import admin_address, admin_service, runner_ca_file, san_split
from components.k8s import labels as make_labels, service_dns_names
from components.tls_certificate import TlsCertificate, TlsCertificateArgs
from settings import PostgresSettings, TlsSettings

PORT = 5432
CNPG_CHART_REPO = "https://cloudnative-pg.github.io/charts"
SUPERUSER = "postgres"
# CNPG's own rules (local, streaming_replica by certificate) come first and its default
# `host all all all scram-sha-256` comes last: rejecting hostnossl in between refuses every
# connection that is not TLS, and the hostssl rule still asks for a password.
PG_HBA = [
    "hostnossl all all all reject",
    "hostssl all all all scram-sha-256",
]


@dataclass
class PostgresClusterArgs:
    namespace: pulumi.Input[str]
    stack: str
    settings: PostgresSettings
    tls: TlsSettings
    client_pod_labels: Mapping[str, str]
    client_ca_path: str
    cluster_name: str = "mlflow-pg"
    role_name: str = "mlflow"
    database_name: str = "mlflow"
    auth_database_name: str = "mlflow_auth"
    protect_data: bool = False


class PostgresCluster(pulumi.ComponentResource):
    """CloudNativePG Cluster with TLS only, a runner-reachable admin endpoint and MLflow's databases."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    database: pulumi.Output[str]
    auth_database: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    ca_secret_name: pulumi.Output[str]
    sqlalchemy_uri: pulumi.Output[str]
    auth_sqlalchemy_uri: pulumi.Output[str]
    admin_host: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow-platform:index:PostgresCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings
        cluster = args.cluster_name
        pod_labels = {"cnpg.io/cluster": cluster}
        admin_svc = admin_service(
            name, args.namespace, cfg.admin, PORT,
            pod_selector={**pod_labels, "cnpg.io/instanceRole": "primary"},
            labels=make_labels(cluster, "database-admin"), parent=self,
        )
        admin_host, admin_port = admin_address(cfg.admin, admin_svc, PORT)
        admin_dns, admin_ips = san_split(admin_host)
        dns_names = pulumi.Output.all(service_dns_names(
            [f"{cluster}-{kind}" for kind in ("rw", "ro", "r")], args.namespace), admin_dns,
        ).apply(lambda parts: parts[0] + parts[1])
        certificate = TlsCertificate(f"{name}-tls", TlsCertificateArgs(
            namespace=args.namespace, common_name=f"{cluster}-rw", dns_names=dns_names, ip_addresses=admin_ips,
            algorithm=args.tls.algorithm, validity_days=args.tls.validity_days,
            early_renewal_days=args.tls.early_renewal_days, self_signed=args.tls.self_signed,
        ), opts=child)

        superuser_password = random.RandomPassword(f"{name}-superuser-password", length=32, special=False, opts=child)
        superuser_secret = k8s.core.v1.Secret(
            f"{name}-superuser",
            metadata={"namespace": args.namespace, "labels": make_labels(cluster, "database")},
            type="kubernetes.io/basic-auth",
            string_data={"username": SUPERUSER, "password": superuser_password.result},
            opts=child,
        )
        operator = self._operator(name, cfg, child)
        data_opts = pulumi.ResourceOptions(parent=self, protect=args.protect_data, retain_on_delete=args.protect_data)
        cnpg_cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata={
                "name": cluster,
                "namespace": args.namespace,
                "labels": make_labels(cluster, "database"),
                # Dependants (roles, databases, MLflow) start only once the cluster serves.
                "annotations": {"pulumi.com/waitFor": "condition=Ready"},
            },
            spec=self._cluster_spec(cfg, certificate, superuser_secret),
            opts=pulumi.ResourceOptions.merge(data_opts, pulumi.ResourceOptions(
                depends_on=[operator] if operator else [],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
            )),
        )
        self._network_policy(name, args, pod_labels, operator_namespace=cfg.operator_namespace)

        provider = postgresql.Provider(
            f"{name}-admin-provider",
            host=admin_host,
            port=admin_port,
            username=SUPERUSER,
            password=superuser_password.result,
            database="postgres",
            sslmode="verify-full",
            sslrootcert=runner_ca_file(args.stack, f"{name}-ca", certificate.ca_pem),
            superuser=True,
            connect_timeout=30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cnpg_cluster]),
        )
        sql = pulumi.ResourceOptions(parent=self, provider=provider)
        sql_data = pulumi.ResourceOptions.merge(data_opts, pulumi.ResourceOptions(provider=provider))
        password = random.RandomPassword(
            f"{name}-{args.role_name}-password", length=32, special=True,
            # Characters that must be URL-encoded in a URI, so the encoding is always exercised.
            override_special="!#%&*()-_=+[]{}<>:?@/", opts=child,
        )
        role = postgresql.Role(
            f"{name}-{args.role_name}-role", name=args.role_name, login=True, password=password.result, opts=sql,
        )
        databases = [
            postgresql.Database(f"{name}-{db}-database", name=db, owner=role.name, opts=sql_data)
            for db in (args.database_name, args.auth_database_name)
        ]

        self.host = pulumi.Output.concat(cluster, "-rw.", args.namespace, ".svc")
        self.port = pulumi.Output.from_input(PORT)
        self.database = databases[0].name
        self.auth_database = databases[1].name
        self.username = role.name
        self.password = pulumi.Output.secret(password.result)
        self.ca_pem = certificate.ca_pem
        self.ca_secret_name = certificate.ca_secret_name
        self.admin_host = admin_host
        self.sqlalchemy_uri = self._uri(role.name, password.result, self.host, databases[0].name, args.client_ca_path)
        self.auth_sqlalchemy_uri = self._uri(role.name, password.result, self.host, databases[1].name, args.client_ca_path)
        self.register_outputs({
            "host": self.host, "port": self.port, "database": self.database, "auth_database": self.auth_database,
            "username": self.username, "password": self.password, "ca_pem": self.ca_pem,
            "ca_secret_name": self.ca_secret_name, "sqlalchemy_uri": self.sqlalchemy_uri,
            "auth_sqlalchemy_uri": self.auth_sqlalchemy_uri, "admin_host": self.admin_host,
        })

    @staticmethod
    def _uri(user, password, host, database, ca_path: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(pulumi.Output.all(user, password, host, database).apply(
            lambda v: (
                f"postgresql+psycopg2://{quote(v[0], safe='')}:{quote(v[1], safe='')}@{v[2]}:{PORT}/{v[3]}"
                f"?sslmode=verify-full&sslrootcert={quote(ca_path)}"
            )
        ))

    @staticmethod
    def _operator(name: str, cfg: PostgresSettings, child: pulumi.ResourceOptions) -> Optional[k8s.helm.v3.Release]:
        if not cfg.install_operator:
            return None
        return k8s.helm.v3.Release(
            f"{name}-operator",
            name="cnpg",
            chart="cloudnative-pg",
            version=cfg.operator_chart_version,
            repository_opts={"repo": CNPG_CHART_REPO},
            namespace=cfg.operator_namespace,
            create_namespace=True,
            # The operator's webhooks must be up before the Cluster is submitted.
            skip_await=False,
            opts=child,
        )

    @staticmethod
    def _cluster_spec(cfg: PostgresSettings, certificate: TlsCertificate, superuser_secret) -> dict:
        storage = {"size": cfg.storage_size}
        if cfg.storage_class:
            storage["storageClass"] = cfg.storage_class
        return {
            "instances": cfg.instances,
            "imageName": cfg.image,
            "storage": storage,
            "resources": cfg.resources.as_k8s(),
            "enableSuperuserAccess": True,
            "superuserSecret": {"name": superuser_secret.metadata.name},
            "certificates": {
                "serverTLSSecret": certificate.secret_name,
                "serverCASecret": certificate.ca_secret_name,
            },
            "postgresql": {"pg_hba": PG_HBA},
            # Spread instances over nodes when the cluster has several.
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
        }

    def _network_policy(self, name: str, args: PostgresClusterArgs, pod_labels: dict, operator_namespace: str) -> None:
        """PostgreSQL accepts MLflow, its own instances (replication), the operator and the runner's CIDRs."""
        cluster_peers = {"podSelector": {"matchLabels": pod_labels}}
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": make_labels(args.cluster_name, "database")},
            spec={
                "podSelector": {"matchLabels": pod_labels},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": dict(args.client_pod_labels)}}],
                     "ports": [{"port": PORT, "protocol": "TCP"}]},
                    {"from": [cluster_peers, {"namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": operator_namespace}}}],
                     # 8000: the instance manager's status endpoint, polled by the operator.
                     "ports": [{"port": PORT, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]},
                    {"from": [{"ipBlock": {"cidr": cidr}} for cidr in args.settings.admin.source_ranges],
                     "ports": [{"port": PORT, "protocol": "TCP"}]},
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
