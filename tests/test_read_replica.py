"""Read replicas (issue 19.1), rendered: which stacks send MLflow's reads to a replica, and how.

MLflow 3.18 reads the replica's URI from MLFLOW_READ_REPLICA_BACKEND_STORE_URI (tracking and model
registry stores) and basic_auth.ini's read_database_uri (auth store). tests/integration/test_read_replica.py
runs it for real against a streaming standby.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from psycopg2.extensions import parse_dsn

import config
from tests.stacks import EXTERNAL_POSTGRES, container, env_value, mounted_file, pod_of, sans, tls_secret
from tools.loopback import services as svc
from tools.loopback.services import expand_k8s_vars, k8s_config_maps, k8s_secrets, resolve_container_env
from tools.mock_engine import evaluate_stack, set_stack_config

REPLICA_ENV = "MLFLOW_READ_REPLICA_BACKEND_STORE_URI"


def load(stack="dev", **overrides):
    set_stack_config(stack, overrides)
    return config.load(stack)


def server_of(ev) -> dict:
    return container(ev, "Deployment", "mlflow-deployment", "mlflow")


def auth_ini(ev) -> configparser.SectionProxy:
    server = server_of(ev)
    pod = pod_of(ev, "Deployment", "mlflow-deployment")
    ini = configparser.ConfigParser()
    ini.read_string(mounted_file(ev, pod, server, env_value(ev, server, "MLFLOW_AUTH_CONFIG_PATH")))
    return ini["mlflow"]


def role_password(ev) -> str:
    return ev.one("random:index/randomPassword:RandomPassword", "postgres-mlflow-password").outputs["result"]


@pytest.mark.parametrize(
    "stack, overrides, on",
    [
        ("dev", {}, False),
        ("dev", {"postgresInstances": 2}, True),
        ("dev", {"postgresInstances": 2, "postgresReadReplica": "off"}, False),
        ("prod", {}, True),
        ("prod", {"postgresReadReplica": "off"}, False),
        ("dev", EXTERNAL_POSTGRES, False),
        ("dev", {**EXTERNAL_POSTGRES, "postgresReplicaHost": "db-ro.example.com"}, True),
        ("dev", {**EXTERNAL_POSTGRES, "postgresReplicaHost": "db-ro.example.com", "postgresReadReplica": "off"}, False),
    ],
)
def test_auto_reads_from_a_replica_when_there_is_one(stack, overrides, on):
    assert load(stack, **overrides).read_replica_on is on


def test_prod_sends_reads_to_the_ro_service_with_the_primary_s_tls_and_credentials(prod):
    server = server_of(prod)
    namespace = prod.outputs["namespace"]
    primary = urlsplit(env_value(prod, server, "MLFLOW_BACKEND_STORE_URI"))
    replica = urlsplit(env_value(prod, server, REPLICA_ENV))
    assert primary.hostname == f"mlflow-pg-rw.{namespace}.svc"
    assert replica.hostname == f"mlflow-pg-ro.{namespace}.svc"
    # Everything but the host is the primary's: role, port, database, verify-full against the same CA file.
    assert (replica.scheme, replica.username, replica.port, replica.path) == (
        primary.scheme,
        primary.username,
        primary.port,
        primary.path,
    )
    assert parse_qs(replica.query) == parse_qs(primary.query)
    assert parse_qs(replica.query)["sslmode"] == ["verify-full"]
    # No password in the URI: libpq takes the role's from PGPASSWORD (the standby has the same roles).
    assert replica.password is None and env_value(prod, server, "PGPASSWORD") == role_password(prod)
    # verify-full: the server certificate CloudNativePG serves on every instance names the -ro Service.
    dns, _ = sans(tls_secret(prod, "postgres-tls")["tls.crt"])
    assert replica.hostname in dns
    ini = auth_ini(prod)
    auth_primary, auth_replica = urlsplit(ini["database_uri"]), urlsplit(ini["read_database_uri"])
    assert auth_primary.hostname == primary.hostname and auth_replica.hostname == replica.hostname
    assert auth_replica.path == auth_primary.path == "/mlflow_auth" and auth_replica.password is None
    assert parse_qs(auth_replica.query) == parse_qs(auth_primary.query)


def test_the_replica_uri_never_reaches_argv_and_carries_no_password(prod):
    objects = prod.k8s_objects
    secrets, config_maps = k8s_secrets(objects), k8s_config_maps(objects)
    server = server_of(prod)
    env = resolve_container_env(
        server, secrets=secrets, config_maps=config_maps, field_values={"status.podIP": "10.0.0.1"}
    )
    argv = [expand_k8s_vars(a, env) for a in [*(server.get("command") or []), *(server.get("args") or [])]]
    assert not any("mlflow-pg-" in a or "postgresql" in a for a in argv)
    assert env[REPLICA_ENV].startswith("postgresql+psycopg2://mlflow@mlflow-pg-ro.")
    password = role_password(prod)
    assert password not in env[REPLICA_ENV] and password not in " ".join(argv)
    assert password not in auth_ini(prod)["read_database_uri"]
    # From the env Secret (not a literal value in the Deployment).
    [entry] = [e for e in server["env"] if e["name"] == REPLICA_ENV]
    assert entry["valueFrom"]["secretKeyRef"]["key"] == "read-replica-backend-store-uri"


@pytest.mark.parametrize(
    "stack, overrides",
    [("dev", {}), ("prod", {"postgresReadReplica": "off"}), ("dev", EXTERNAL_POSTGRES)],
    ids=["dev", "prod-off", "external-without-replica"],
)
def test_without_a_replica_every_query_goes_to_the_primary(stack, overrides):
    ev = evaluate_stack(stack, config=overrides)
    server = server_of(ev)
    assert REPLICA_ENV not in {e["name"] for e in server["env"]}
    assert "read_database_uri" not in auth_ini(ev)
    secrets = k8s_secrets(ev.k8s_objects)
    assert not any("read-replica" in key or "-ro." in value for s in secrets.values() for key, value in s.items())


def test_external_mode_reads_from_postgres_replica_host():
    ev = evaluate_stack("dev", config={**EXTERNAL_POSTGRES, "postgresReplicaHost": "db-ro.example.com"})
    server = server_of(ev)
    primary = urlsplit(env_value(ev, server, "MLFLOW_BACKEND_STORE_URI"))
    replica = urlsplit(env_value(ev, server, REPLICA_ENV))
    assert (primary.hostname, replica.hostname) == ("db.example.com", "db-ro.example.com")
    assert replica.port == primary.port == 6432 and replica.password is None
    assert parse_qs(replica.query) == parse_qs(primary.query)
    ini = auth_ini(ev)
    assert urlsplit(ini["read_database_uri"]).hostname == "db-ro.example.com"


# The integration layer: one process, two PostgreSQL names at two loopback addresses.
LIBPQ_PROBE = """
import json, psycopg2
psycopg2._connect = lambda dsn, **kwargs: dsn  # what libpq would be given
print(json.dumps([
    psycopg2.connect("postgresql://mlflow@mlflow-pg-rw.ns.svc:5432/mlflow?sslmode=verify-full"),
    psycopg2.connect(host="mlflow-pg-ro.ns.svc", port=5432, dbname="mlflow", sslmode="verify-full"),
    psycopg2.connect(host="elsewhere.example", port=5432, dbname="mlflow"),
    psycopg2.connect(host="mlflow-pg-ro.ns.svc", hostaddr="127.0.0.1", port=5432),
]))
"""


def test_the_dns_shim_gives_each_libpq_connection_the_address_of_its_host(tmp_path):
    host_map = {"mlflow-pg-rw.ns.svc": "127.0.0.7", "mlflow-pg-ro.ns.svc": "127.0.0.8"}
    env = svc.base_env(tmp_path, **svc.shim_env(host_map, libpq=True))
    done = subprocess.run(
        [sys.executable, "-c", LIBPQ_PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    rw, ro, other, explicit = (parse_dsn(d) for d in json.loads(done.stdout))
    # The address is substituted, the name kept (verify-full checks it against the certificate).
    assert (rw["host"], rw["hostaddr"], rw["sslmode"]) == ("mlflow-pg-rw.ns.svc", "127.0.0.7", "verify-full")
    assert (ro["host"], ro["hostaddr"]) == ("mlflow-pg-ro.ns.svc", "127.0.0.8")
    assert "hostaddr" not in other and explicit["hostaddr"] == "127.0.0.1"
    # Without libpq mode nothing is wrapped (one PostgreSQL name: PGHOSTADDR does it).
    env = svc.base_env(tmp_path, **svc.shim_env(host_map))
    done = subprocess.run(
        [sys.executable, "-c", LIBPQ_PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert all("hostaddr" not in parse_dsn(d) for d in json.loads(done.stdout)[:3])
