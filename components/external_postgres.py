"""ExternalPostgres: MLflow's role and databases on an existing server (RDS, Cloud SQL, ...).

This is the one place where the machine running Pulumi connects to a database: it reaches the
server by design, so pulumi-postgresql creates the role and databases there with verify-full
against a CA bundle committed to the repository (every checkout, CI included, has it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql
import pulumi_random as random

from components.k8s import PART_OF
from components.postgres_database import ROLE_PASSWORD_SPECIAL, PostgresDatabase, postgres_uri


@dataclass
class ExternalPostgresArgs:
    namespace: pulumi.Input[str]
    host: str
    admin_user: str
    admin_password: pulumi.Input[str]
    # Path of the server's CA bundle relative to the project directory, and its content.
    ca_file: str
    ca_pem: str
    client_ca_path: str
    port: int = 5432
    # A read-only replica of the server (same port, CA and role), for MLflow's reads; "" reads from `host`.
    replica_host: str = ""
    role_name: str = "mlflow"
    database_name: str = "mlflow"
    auth_database_name: str = "mlflow_auth"
    protect_data: bool = False


class ExternalPostgres(PostgresDatabase):
    """Role and databases through pulumi-postgresql; the CA as a Secret for MLflow. Same outputs as PostgresCluster."""

    def __init__(self, name: str, args: ExternalPostgresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:ExternalPostgres", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        provider = postgresql.Provider(
            f"{name}-admin-provider",
            host=args.host,
            port=args.port,
            username=args.admin_user,
            password=pulumi.Output.secret(args.admin_password),
            database="postgres",
            sslmode="verify-full",
            sslrootcert=args.ca_file,
            # Managed services give an admin that is not a superuser (e.g. rds_superuser).
            superuser=False,
            connect_timeout=30,
            opts=child,
        )
        sql = pulumi.ResourceOptions(parent=self, provider=provider)
        sql_data = pulumi.ResourceOptions.merge(
            sql, pulumi.ResourceOptions(protect=args.protect_data, retain_on_delete=args.protect_data)
        )
        password = random.RandomPassword(
            f"{name}-{args.role_name}-password",
            length=32,
            special=True,
            override_special=ROLE_PASSWORD_SPECIAL,
            opts=child,
        )
        role = postgresql.Role(
            f"{name}-{args.role_name}-role", name=args.role_name, login=True, password=password.result, opts=sql
        )
        databases = [
            postgresql.Database(f"{name}-{db}-database", name=db, owner=role.name, opts=sql_data)
            for db in (args.database_name, args.auth_database_name)
        ]
        ca_secret = k8s.core.v1.Secret(
            f"{name}-ca-secret",
            metadata={"namespace": args.namespace, "labels": {**PART_OF, "mlflow-platform/certificate": name}},
            type="Opaque",
            string_data={"ca.crt": args.ca_pem},
            opts=child,
        )

        self.host = pulumi.Output.from_input(args.host)
        self.port = pulumi.Output.from_input(args.port)
        self.database = databases[0].name
        self.auth_database = databases[1].name
        self.username = role.name
        self.password = pulumi.Output.secret(password.result)
        self.ca_pem = pulumi.Output.from_input(args.ca_pem)
        self.ca_secret_name = ca_secret.metadata.name
        self.sqlalchemy_uri = postgres_uri(role.name, args.host, args.port, self.database, args.client_ca_path)
        self.auth_sqlalchemy_uri = postgres_uri(
            role.name, args.host, args.port, self.auth_database, args.client_ca_path
        )
        if args.replica_host:
            self.read_sqlalchemy_uri = postgres_uri(
                role.name, args.replica_host, args.port, self.database, args.client_ca_path
            )
            self.read_auth_sqlalchemy_uri = postgres_uri(
                role.name, args.replica_host, args.port, self.auth_database, args.client_ca_path
            )
        # The server is outside the cluster: its port, whatever address the name resolves to.
        self.client_egress = pulumi.Output.from_input({"ports": [{"port": args.port, "protocol": "TCP"}]})
        self._register_database_outputs()
