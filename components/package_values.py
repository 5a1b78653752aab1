"""The classic MLflow package values file (e.g. for the Carvel package), from the deployed platform.

Ten keys rendered with PyYAML, from what MlflowServer runs with: its database (the URI with the
role's password put back in, since the package takes one URI), its object store and its ingress. A
secret Output, complete once the server's Deployment is rolled out.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import pulumi
import yaml

from components.mlflow_server import MlflowServer


class Database(Protocol):
    """What the values read of MLflow's database (PostgresCluster, ExternalPostgres)."""

    sqlalchemy_uri: pulumi.Output[str]
    password: pulumi.Output[str]


class ObjectStore(Protocol):
    """What the values read of MLflow's object store (MinioStore, ExternalObjectStore)."""

    bucket: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]


def uri_with_password(uri: str, password: str) -> str:
    """A database URI with the password in it, for consumers that take one URI (the package values)."""
    scheme, _, rest = uri.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}"


def render(values: dict[str, Any]) -> str:
    """The values file's text: sorted keys, block style."""
    return str(yaml.safe_dump(values, sort_keys=True, default_flow_style=False))


def package_values(
    mlflow: MlflowServer,
    database: Database,
    store: ObjectStore,
    version: str,
    region: str,
    ingress_domain: str,
) -> pulumi.Output[str]:
    """The values file for `mlflow` (wired to `database` and `store`), as a secret Output.

    `version`, `region` and `ingress_domain` are the ones the server was given (MlflowServerArgs)."""
    return pulumi.Output.secret(
        pulumi.Output.all(
            store.bucket,
            store.access_key,
            store.secret_key,
            pulumi.Output.all(database.sqlalchemy_uri, database.password).apply(lambda v: uri_with_password(*v)),
            mlflow.s3_endpoint_url,
            mlflow.fqdn,
            mlflow.ready,
        ).apply(
            lambda v: render(
                {
                    "region": region,
                    "artifact_store": v[4],
                    "access_key": v[1],
                    "secret_key": v[2],
                    "version": version,
                    "backing_store": v[3],
                    "ingress_fqdn": v[5],
                    "bucket": v[0],
                    "ignore_tls": "false",
                    "ingress_domain": ingress_domain,
                }
            )
        )
    )
