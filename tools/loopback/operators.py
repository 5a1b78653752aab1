"""What the controllers and providers do with the rendered objects, done here for real.

No cluster runs here, so whoever would create MLflow's role and databases is emulated, from the
rendered objects / registered resources only:

* :func:`cnpg_reconcile_roles` and :func:`cnpg_reconcile_databases`: CloudNativePG's instance
  manager applying the Cluster's ``spec.managed.roles`` (password from the
  ``kubernetes.io/basic-auth`` Secret named by ``passwordSecret``) and the ``postgresql.cnpg.io/v1
  Database`` objects of that Cluster. Like the instance manager it works as the local superuser
  over the unix socket (never over TCP, never through MLflow's URI).
* :func:`pulumi_postgresql_apply`: pulumi-postgresql creating ``Role``/``Database`` resources on
  an external server, connecting as the provider's admin login over TCP with its ``sslmode``
  and ``sslrootcert`` (a path relative to the project directory, as the CLI runs there), with
  ``superuser=false`` semantics (ownership through a temporary role grant).

Fields these emulations do not implement raise ``NotImplementedError`` instead of being
ignored: a rendered setting is either applied or the test fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg2 import sql

from . import services as svc

ROLE_FLAGS = {
    "login": "LOGIN",
    "inherit": "INHERIT",
    "superuser": "SUPERUSER",
    "createdb": "CREATEDB",
    "createrole": "CREATEROLE",
    "replication": "REPLICATION",
    "bypassrls": "BYPASSRLS",
}
# CNPG's defaults for a managed role (api/v1 RoleConfiguration): inherit true, the rest false.
ROLE_DEFAULTS = {
    "login": False,
    "inherit": True,
    "superuser": False,
    "createdb": False,
    "createrole": False,
    "replication": False,
    "bypassrls": False,
}
ROLE_KEYS = {"name", "ensure", "comment", "passwordSecret", "connectionLimit", *ROLE_FLAGS}
DATABASE_KEYS = {"name", "owner", "cluster", "ensure", "databaseReclaimPolicy"}


def _rendered_secret(objects: list[dict], name: str, namespace: str) -> dict:
    found = [
        o
        for o in objects
        if o.get("kind") == "Secret"
        and o["metadata"].get("name") == name
        and o["metadata"].get("namespace") == namespace
    ]
    if len(found) != 1:
        raise LookupError(f"passwordSecret {name!r}: {len(found)} rendered Secrets in {namespace}")
    return found[0]


def cnpg_reconcile_roles(pg: svc.PostgresServer, cluster: dict, objects: list[dict]) -> list[dict]:
    """Apply ``cluster.spec.managed.roles``; returns what was done per role."""
    namespace = cluster["metadata"]["namespace"]
    secrets = svc.k8s_secrets(objects, namespace=namespace)
    done = []
    for role in (cluster["spec"].get("managed") or {}).get("roles") or []:
        unknown = set(role) - ROLE_KEYS
        if unknown:
            raise NotImplementedError(f"managed role {role['name']}: fields {sorted(unknown)}")
        name = role["name"]
        exists = bool(pg.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)))
        if role.get("ensure", "present") == "absent":
            if exists:
                pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
            done.append({"name": name, "action": "dropped" if exists else "absent"})
            continue
        flags = [ROLE_FLAGS[k] if role.get(k, ROLE_DEFAULTS[k]) else "NO" + ROLE_FLAGS[k] for k in ROLE_FLAGS]
        parts = [
            sql.SQL(" ".join(flags)),
            sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(role.get("connectionLimit", -1)))),
        ]
        password_from = None
        if role.get("passwordSecret"):
            secret_name = role["passwordSecret"]["name"]
            obj = _rendered_secret(objects, secret_name, namespace)
            if obj.get("type") != "kubernetes.io/basic-auth":
                raise ValueError(
                    f"role {name}: passwordSecret {secret_name} has type "
                    f"{obj.get('type')!r}, CNPG requires kubernetes.io/basic-auth"
                )
            data = secrets[secret_name]
            if data.get("username") != name:  # CNPG refuses a Secret for another user
                raise ValueError(f"role {name}: passwordSecret {secret_name} is for user {data.get('username')!r}")
            parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(data["password"])))
            password_from = secret_name
        verb = "ALTER" if exists else "CREATE"
        pg.execute(sql.SQL(verb + " ROLE {} WITH ").format(sql.Identifier(name)) + sql.SQL(" ").join(parts))
        if "comment" in role:
            pg.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(role["comment"])))
        done.append({"name": name, "action": "altered" if exists else "created", "password_from": password_from})
    return done


def cnpg_reconcile_databases(pg: svc.PostgresServer, cluster: dict, databases: list[dict]) -> list[dict]:
    """Apply the ``Database`` objects that target ``cluster``; returns their would-be status."""
    cluster_name = cluster["metadata"]["name"]
    done = []
    for obj in databases:
        spec = obj["spec"]
        if spec["cluster"]["name"] != cluster_name:
            continue
        unknown = set(spec) - DATABASE_KEYS
        if unknown:
            raise NotImplementedError(f"Database {obj['metadata']['name']}: fields {sorted(unknown)}")
        name, owner = spec["name"], spec["owner"]
        exists = bool(pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))
        if spec.get("ensure", "present") == "absent":
            if exists:
                pg.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        elif exists:
            pg.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
        else:
            pg.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        done.append({"object": obj["metadata"]["name"], "name": name, "owner": owner, "status": {"applied": True}})
    return done


def pulumi_postgresql_apply(
    provider: Mapping[str, Any],
    roles: list[Mapping[str, Any]],
    databases: list[Mapping[str, Any]],
    *,
    hostaddr: str,
    project_dir: Path,
) -> dict:
    """Create ``roles`` then ``databases`` (registered inputs) through the provider's login."""
    import psycopg2

    if str(provider.get("superuser", "true")).lower() == "true":
        raise NotImplementedError("only superuser=false (managed services) is emulated")
    sslrootcert = project_dir / provider["sslrootcert"]  # relative to where `pulumi` runs
    conn = psycopg2.connect(
        host=provider["host"],
        hostaddr=hostaddr,
        port=int(provider.get("port", 5432)),
        user=provider["username"],
        password=provider["password"],
        dbname=provider.get("database", "postgres"),
        sslmode=provider["sslmode"],
        sslrootcert=str(sslrootcert),
        connect_timeout=int(provider.get("connectTimeout", 30)),
    )
    conn.autocommit = True
    admin = provider["username"]
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ssl_used = cur.fetchone()[0]
            for role in roles:
                cur.execute(
                    sql.SQL("CREATE ROLE {} WITH {} PASSWORD {}").format(
                        sql.Identifier(role["name"]),
                        sql.SQL("LOGIN" if role.get("login") else "NOLOGIN"),
                        sql.Literal(role["password"]),
                    )
                )
            for db in databases:
                # Not a superuser: the provider grants itself the owner role for the CREATE.
                owner = sql.Identifier(db["owner"])
                cur.execute(sql.SQL("GRANT {} TO {}").format(owner, sql.Identifier(admin)))
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db["name"]), owner))
                cur.execute(sql.SQL("REVOKE {} FROM {}").format(owner, sql.Identifier(admin)))
    finally:
        conn.close()
    return {"ssl": ssl_used, "sslrootcert": str(sslrootcert)}
