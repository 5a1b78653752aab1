"""What MLflow needs from PostgreSQL, whoever provides it (PostgresCluster or ExternalPostgres)."""

from __future__ import annotations

from urllib.parse import quote

import pulumi

# Characters that must be URL-encoded in a URI, so the encoding is always exercised.
ROLE_PASSWORD_SPECIAL = "!#%&*()-_=+[]{}<>:?@/"


def postgres_uri(
    user: pulumi.Input[str],
    host: pulumi.Input[str],
    port: int,
    database: pulumi.Input[str],
    ca_path: str,
) -> pulumi.Output[str]:
    """MLflow's SQLAlchemy URI: TLS verify-full against the mounted CA, and no password.

    Commands take the URI as an argument (`mlflow db upgrade <uri>`, `mlflow gc --backend-store-uri`),
    where every process on the node sees it (/proc/<pid>/cmdline, ps): libpq reads the password from
    PGPASSWORD, set from the role's Secret, instead. Still kept secret (it names the server and role)."""
    return pulumi.Output.secret(
        pulumi.Output.all(user, host, database).apply(
            lambda v: (
                f"postgresql+psycopg2://{quote(v[0], safe='')}@{v[1]}:{port}/{v[2]}"
                f"?sslmode=verify-full&sslrootcert={quote(ca_path)}"
            )
        )
    )


class PostgresDatabase(pulumi.ComponentResource):
    """The outputs both database components register; MlflowServer's Args are wired from them."""

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
    # The same databases on the read-only replicas (None without replicas): MLflow's reads go there.
    read_sqlalchemy_uri: pulumi.Output[str] | None = None
    read_auth_sqlalchemy_uri: pulumi.Output[str] | None = None
    # NetworkPolicy egress rule that lets a client pod reach the server.
    client_egress: pulumi.Output[dict]

    OUTPUTS = (
        "host",
        "port",
        "database",
        "auth_database",
        "username",
        "password",
        "ca_pem",
        "ca_secret_name",
        "sqlalchemy_uri",
        "auth_sqlalchemy_uri",
        "read_sqlalchemy_uri",
        "read_auth_sqlalchemy_uri",
        "client_egress",
    )

    def _register_database_outputs(self) -> None:
        self.register_outputs({name: getattr(self, name) for name in self.OUTPUTS})
