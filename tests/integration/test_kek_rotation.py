"""MLflow's key-encryption passphrase, for real: generated per stack, used, and rotated.

MLflow 3.18 encrypts the secrets it stores (AI gateway keys) with per-secret keys wrapped by a key
derived from MLFLOW_CRYPTO_KEK_PASSPHRASE and MLFLOW_CRYPTO_KEK_VERSION; unset, it uses a passphrase
published in its source (and logs a warning when it does). Here, on real PostgreSQL with exactly the
rendered containers:

1. The dev stack (mlflowKekVersion 1): the migration Job, then the server; a gateway secret is stored
   through the API. The server reports and logs no default passphrase; the stored key opens with the
   stack's passphrase (as the server's env gives it) and not with MLflow's default one.
2. The same stack with mlflowKekVersion 2 (the providers' state kept, as across `pulumi up`s): its
   migration Job re-wraps the stored keys (`mlflow crypto rotate-kek`, the new passphrase from env);
   the secret then opens with the new passphrase and version only, and the new server serves it.
3. The v2 migration Job again (every later `pulumi up` that replaces it): nothing left to re-wrap.
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.loopback import operators, wiring
from tools.loopback import services as svc

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
DEFAULT_PASSPHRASE_WARNING = "MLFLOW_CRYPTO_KEK_PASSPHRASE not set"
API_KEY = "sk-test-0123456789abcdef"  # the gateway secret's value (a made-up provider key)
# Reads the secret as the server would, in a process with the server container's env and mounts.
DECRYPT = """
import json, os
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
store = SqlAlchemyStore(os.environ["MLFLOW_BACKEND_STORE_URI"], "/tmp/artifacts")
print("SECRET=" + json.dumps(store._get_decrypted_secret(os.environ["SECRET_ID"])))
"""


def _request(server, method: str, path: str, auth: tuple[str, str], body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(server.address, server.port, timeout=30)
    headers = {
        "Host": f"localhost:{server.port}",
        "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode(),
        "Content-Type": "application/json",
    }
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, (json.loads(text) if text.startswith("{") else {"text": text})
    finally:
        conn.close()


def _decrypt(r, host_map: dict, workdir: Path, secret_id: str, drop_env: tuple[str, ...] = ()) -> SimpleNamespace:
    """The server container's env and mounts, running DECRYPT instead of `mlflow server`."""
    container = {
        **r.container,
        "name": "decrypt",
        "command": ["python", "-c", DECRYPT],
        "args": [],
        "env": [e for e in r.container["env"] if e["name"] not in drop_env],
    }
    prepared, rc, output = svc.run_container_job(
        container,
        secrets=r.secrets,
        config_maps=r.config_maps,
        host_map=host_map,
        files_by_mount=svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps),
        workdir=workdir,
        field_values={"status.podIP": "127.0.0.1"},
        extra_env={"SECRET_ID": secret_id},
        timeout=120,
        check=False,
    )
    value = next((json.loads(line[7:]) for line in output.splitlines() if line.startswith("SECRET=")), None)
    return SimpleNamespace(rc=rc, output=output, value=value, env=prepared.env)


@pytest.fixture(scope="module")
def rotation(tmp_path_factory):
    state: dict = {}
    v1 = wiring.render("dev", namespace=NAMESPACE, state=state)
    v2 = wiring.render("dev", config={"mlflowKekVersion": 2}, namespace=NAMESPACE, state=state)
    work = tmp_path_factory.mktemp("kek")
    pg_ip = svc.free_loopback_address(v1.pg_port)
    mlflow_ip = svc.free_loopback_address(int(v1.container["ports"][0]["containerPort"]))
    host_map = {v1.pg_host: pg_ip}
    admin = (v1.outputs["adminUser"], v1.outputs["adminPassword"])
    out = SimpleNamespace(v1=v1, v2=v2)
    with wiring.rendered_postgres(v1, work, pg_ip) as pg:
        operators.cnpg_reconcile_roles(pg, v1.cluster, v1.objects)
        operators.cnpg_reconcile_databases(pg, v1.cluster, v1.databases)
        out.migration_v1 = wiring.run_migration_job(v1, host_map, work / "v1")
        with wiring.rendered_mlflow_server(v1, host_map, work / "server-v1", mlflow_ip, timeout=150) as server:
            out.created = _request(
                server,
                "POST",
                "/api/3.0/mlflow/gateway/secrets/create",
                admin,
                {"secret_name": "openai-key", "secret_value": {"api_key": API_KEY}, "provider": "openai"},
            )
            out.secrets_config = _request(server, "GET", "/ajax-api/3.0/mlflow/gateway/secrets/config", admin)
            out.log_v1 = server.log_text()
        secret_id = out.created[1]["secret"]["secret_id"]
        out.stored_v1 = pg.execute("SELECT kek_version FROM secrets WHERE secret_id = %s", (secret_id,), "mlflow")
        out.v1_reads = _decrypt(v1, host_map, work / "decrypt-v1", secret_id)
        kek_env = ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "MLFLOW_CRYPTO_KEK_VERSION")
        out.default_reads = _decrypt(v1, host_map, work / "decrypt-default", secret_id, drop_env=kek_env)

        out.migration_v2 = wiring.run_migration_job(v2, host_map, work / "v2")
        out.stored_v2 = pg.execute("SELECT kek_version FROM secrets WHERE secret_id = %s", (secret_id,), "mlflow")
        out.v2_reads = _decrypt(v2, host_map, work / "decrypt-v2", secret_id)
        out.v1_reads_after = _decrypt(v1, host_map, work / "decrypt-v1-after", secret_id)
        with wiring.rendered_mlflow_server(v2, host_map, work / "server-v2", mlflow_ip, timeout=150) as server:
            out.info_v2 = _request(server, "GET", f"/api/3.0/mlflow/gateway/secrets/get?secret_id={secret_id}", admin)
            out.log_v2 = server.log_text()
        out.migration_v2_again = wiring.run_migration_job(v2, host_map, work / "v2-again")
    yield out


def test_the_server_uses_the_stacks_passphrase_not_mlflows_default(rotation):
    status, body = rotation.created
    assert status == 200, body
    assert rotation.secrets_config == (200, {"secrets_available": True, "using_default_passphrase": False})
    assert DEFAULT_PASSPHRASE_WARNING not in rotation.log_v1
    assert rotation.stored_v1 == [(1,)]
    assert rotation.v1_reads.rc == 0 and rotation.v1_reads.value == {"api_key": API_KEY}, rotation.v1_reads.output
    # Not readable with the passphrase MLflow's source publishes (which it warns about).
    assert rotation.default_reads.rc != 0 and rotation.default_reads.value is None
    assert DEFAULT_PASSPHRASE_WARNING in rotation.default_reads.output
    # One passphrase per stack, long and random; the version is the config key's.
    passphrase = rotation.v1_reads.env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]
    assert len(passphrase) >= 32 and rotation.v1_reads.env["MLFLOW_CRYPTO_KEK_VERSION"] == "1"


def test_raising_the_version_rotates_the_stored_keys_in_the_migration_job(rotation):
    v1_steps = [step.name for step in rotation.migration_v1]
    v2_steps = [step.name for step in rotation.migration_v2]
    assert v1_steps == ["upgrade-tracking-db", "upgrade-auth-db"]
    assert v2_steps == ["upgrade-tracking-db", "rotate-kek", "upgrade-auth-db"]
    rotate = rotation.migration_v2[1]
    assert rotate.rc == 0 and "Successfully rotated 1 encryption key from KEK v1 to v2" in rotate.output
    # Neither passphrase in the step's command line; both in its env, from the Secret.
    old = rotation.v1_reads.env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]
    new = rotation.v2_reads.env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]
    assert old != new
    assert not [arg for arg in rotate.prepared.argv if old in arg or new in arg]
    assert rotate.prepared.env["MLFLOW_CRYPTO_KEK_PASSPHRASE"] == old
    assert rotate.prepared.env["MLFLOW_CRYPTO_KEK_NEW_PASSPHRASE"] == new
    assert rotation.stored_v2 == [(2,)]


def test_the_stored_secret_survives_the_rotation(rotation):
    assert rotation.v2_reads.rc == 0, rotation.v2_reads.output
    assert rotation.v2_reads.value == {"api_key": API_KEY}
    assert rotation.v2_reads.env["MLFLOW_CRYPTO_KEK_VERSION"] == "2"
    # The old passphrase no longer opens it.
    assert rotation.v1_reads_after.rc != 0 and rotation.v1_reads_after.value is None
    status, body = rotation.info_v2
    assert status == 200 and body["secret"]["secret_name"] == "openai-key", body
    assert DEFAULT_PASSPHRASE_WARNING not in rotation.log_v2


def test_a_later_migration_job_has_nothing_left_to_rotate(rotation):
    again = rotation.migration_v2_again
    assert [step.rc for step in again] == [0, 0, 0]
    assert "No secrets found with kek_version=1. Nothing to rotate." in again[1].output
