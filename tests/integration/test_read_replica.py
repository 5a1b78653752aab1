"""Read replicas, for real: MLflow's reads on a streaming hot standby, its writes on the primary.

The dev stack rendered with ``postgresInstances: 2`` (``postgresReadReplica: auto`` turns the replica on)
runs as CloudNativePG would run it: the primary (the Cluster's certificate, pg_hba and parameters, the
operator's roles and databases, the migration Job) and a hot standby made from it by ``pg_basebackup``
over TLS with a replication role, streaming from it, serving the same certificate (its SANs include the
``-ro`` Service name, which MLflow verifies: verify-full). The DNS shim maps ``mlflow-pg-rw.<ns>.svc``
to the primary and ``mlflow-pg-ro.<ns>.svc`` to the standby; ``mlflow server`` runs with the rendered
args and env (``MLFLOW_READ_REPLICA_BACKEND_STORE_URI``) and basic_auth.ini (``read_database_uri``).

Both servers log every statement (``log_statement = all``, set on the primary before the standby is
copied from it), with the role and database in each line, so the tests see which server ran what:

- reads (search_runs, search_experiments, get_run, get_experiment) and the auth store's reads (the
  user and permission lookups of every request) run on the standby; the primary sees nothing from
  MLflow meanwhile;
- writes (create experiment/run, log metric) run on the primary;
- replication lag (replay paused on the standby): what a user sees right after a write, recorded in
  ``build/read-replica-lag.json`` and asserted, then everything appears once replay resumes;
- ``postgresReadReplica: off`` renders no replica URI and its server sends every query to the primary.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import json
import re
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
ON = {"postgresInstances": 2}
OFF = {"postgresInstances": 2, "postgresReadReplica": "off"}
RESULTS = Path(__file__).resolve().parents[2] / "build" / "read-replica-lag.json"
USER = ("replica-user", "replica-user-password-0123456789")
LATE_USER = ("late-user", "late-user-password-0123456789")
# log_line_prefix of the loopback PostgreSQL: '%m [%p] %q%u@%d %h '
LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] (?:(\S*)@(\S*) \S* )?([A-Z]+):  (.*)$")


class StatementLog:
    """The statements a PostgreSQL server logged (``log_statement = all``) since :meth:`mark`."""

    def __init__(self, server: svc.PostgresServer):
        self.path = Path(server.server_log)
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> list[tuple[str, str, str]]:
        """(role, database, statement) of each ``statement:`` entry logged since the mark."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        entries: list[list[str]] = []
        for line in text.splitlines():
            match = LOG_ENTRY.match(line)
            if match:
                entries.append([match.group(1) or "", match.group(2) or "", match.group(3), match.group(4)])
            elif entries and line.startswith("\t"):
                entries[-1][3] += "\n" + line[1:]
        return [
            (user, db, text[len("statement: ") :])
            for user, db, level, text in entries
            if level == "LOG" and text.startswith("statement: ")
        ]


def _call(server, method: str, path: str, body: dict | None = None, user=None) -> tuple[int, dict]:
    credentials = ":".join(user)
    headers = {
        "Host": f"localhost:{server.port}",
        "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        "Content-Type": "application/json",
    }
    conn = http.client.HTTPConnection(server.address, server.port, timeout=60)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        conn.close()
    try:
        payload = json.loads(text) if text else {}
    except ValueError:
        payload = {"text": text[:300]}
    return response.status, payload


class Api:
    def __init__(self, server, user):
        self.server, self.user = server, user

    def call(self, method: str, path: str, body: dict | None = None, user=None) -> tuple[int, dict]:
        return _call(self.server, method, "/api/2.0/mlflow/" + path, body, user or self.user)

    def ok(self, method: str, path: str, body: dict | None = None, user=None) -> dict:
        status, payload = self.call(method, path, body, user)
        assert status == 200, f"{method} {path}: {status} {payload}"
        return payload

    def get_run(self, run_id: str, user=None) -> tuple[int, dict]:
        return self.call("GET", f"runs/get?run_id={run_id}", user=user)

    def search_runs(self, experiment_id: str, user=None) -> list[str]:
        payload = self.ok("POST", "runs/search", {"experiment_ids": [experiment_id]}, user)
        return sorted(run["info"]["run_id"] for run in payload.get("runs", []))

    def metric(self, run_id: str, key: str) -> float | None:
        status, payload = self.get_run(run_id)
        assert status == 200, payload
        values = {m["key"]: m["value"] for m in payload["run"]["data"].get("metrics", [])}
        return values.get(key)


def _outcome(status: int, payload: dict) -> dict:
    """What a client sees: the status and MLflow's error code/message (its Python client raises
    MlflowException with that error code)."""
    message = re.sub(r"id=\w+", "id=<id>", payload.get("message") or payload.get("text") or "")
    return {"status": status, "error_code": payload.get("error_code"), "message": message[:200]}


def _by(statements, user: str, db: str | None = None) -> list[str]:
    return [text for u, d, text in statements if u == user and (db is None or d == db)]


def _host(uri: str) -> str:
    return urllib.parse.urlsplit(uri.replace("postgresql+psycopg2://", "postgresql://")).hostname or ""


OK = {"status": 200, "error_code": None, "message": ""}
# What a client saw with replay paused on the standby (MLflow 3.18; ids normalised to <id>): writes
# succeed (the primary), reads right after them miss them or return the old value (the standby), and
# every read MLflow makes on the way of a write or of an authorization check does too.
LAG_SEEN = {
    "create_run": OK,
    "log_metric_old_run": OK,
    "log_metric_new_run": OK,
    # the run just created: not found
    "get_new_run": {
        "status": 404,
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Run with id=<id> not found",
    },
    "search_runs": {"new_run_listed": False},
    # a metric just logged: the previous value (stale, not lost: the primary has the new one)
    "old_run_loss": 1.0,
    "old_run_loss_on_the_primary": 2.0,
    # a user just created: 401 (the auth store reads users on the standby)
    "new_user_request": {
        "status": 401,
        "error_code": None,
        "message": "You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to authenticate.",
    },
    # a non-admin's new experiment: created, but its MANAGE grant is not on the standby yet, so a run in it is refused
    "user_create_experiment": OK,
    "user_create_run_in_own_experiment": {"status": 403, "error_code": None, "message": "Permission denied"},
    # an experiment just created: create_run reads it (the standby) and fails
    "create_experiment": OK,
    "create_run_in_new_experiment": {
        "status": 404,
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "No Experiment with id=<id> exists",
    },
    "get_experiment_by_name": {
        "status": 404,
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Could not find experiment with name 'replica-lag-new'",
    },
    # mlflow.set_experiment("new name") creates it, then reads it back: MlflowException
    "python_client": {
        "set_experiment": "RESOURCE_DOES_NOT_EXIST: RESOURCE_DOES_NOT_EXIST: No Experiment with id=<id> exists",
        "experiment_visible": False,
    },
    "standby_paused": "paused",
    # replay resumed: everything is there
    "after_resume": {
        "get_new_run": 200,
        "new_run_listed": True,
        "old_run_loss": 2.0,
        "new_run_loss": 5.0,
        "new_user_request": 200,
        "create_run_in_new_experiment": 200,
        "user_create_run_in_own_experiment": 200,
    },
}

FLUENT_PAUSED = """
import json, re, mlflow
from mlflow.exceptions import MlflowException

def attempt(fn):
    try:
        fn()
        return "ok"
    except MlflowException as e:
        message = re.sub(r"id=\\w+", "id=<id>", e.message)
        return f"{e.error_code}: {message[:160]}"

out = {"set_experiment": attempt(lambda: mlflow.set_experiment("replica-lag-fluent"))}
client = mlflow.MlflowClient()
experiment = client.get_experiment_by_name("replica-lag-fluent")
out["experiment_visible"] = experiment is not None
print(json.dumps(out))
"""

# A new experiment and a run in it, as fast as a script goes, 20 times, with replay running.
FLUENT_RACE = """
import json, mlflow
from mlflow.exceptions import MlflowException

failures = {}
for i in range(20):
    try:
        mlflow.set_experiment(f"replica-race-{i}")
        with mlflow.start_run():
            mlflow.log_metric("m", i)
    except MlflowException as e:
        key = f"{e.error_code}: {e.message.split(' with ')[0][:60]}"
        failures[key] = failures.get(key, 0) + 1
print(json.dumps({"attempts": 20, "failures": failures}))
"""


def _python_client(stack, code: str) -> dict:
    name = f"client-{len(list(stack.work.glob('client-*.py')))}"
    env = {
        "MLFLOW_TRACKING_URI": stack.server.url(),
        "MLFLOW_TRACKING_USERNAME": stack.admin[0],
        "MLFLOW_TRACKING_PASSWORD": stack.admin[1],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    done = svc.run_python_client(code, workdir=stack.work, env=env, name=name, timeout=180)
    return svc.last_json_line(done.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state: dict = {}
    r = wiring.render("dev", config=ON, namespace=NAMESPACE, state=state)
    off = wiring.render("dev", config=OFF, namespace=NAMESPACE, state=state)
    work = tmp_path_factory.mktemp("replica")
    port = int(r.container["ports"][0]["containerPort"])
    pg_ip, s3_ip = svc.free_loopback_address(r.pg_port), svc.free_loopback_address(9000)
    mlflow_ip = svc.free_loopback_address(port)
    ro_host = _host(r.env["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"])
    assert ro_host == r.pg_ro_host
    admin = (r.outputs["adminUser"], r.outputs["adminPassword"])
    with wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip) as data:
        # Every statement logged, on the primary and (copied by pg_basebackup) on the standby; commits
        # as CloudNativePG's PostgreSQL makes them (synchronous_commit on, the loopback server's is off).
        data.pg.execute("ALTER SYSTEM SET log_statement = 'all'")
        data.pg.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        data.pg.execute("SELECT pg_reload_conf()")
        with wiring.rendered_standby(r, data.pg, work / "standby", data.ro_ip) as standby:
            host_map = data.host_map
            with wiring.rendered_mlflow_server(r, host_map, work / "server", mlflow_ip) as server:
                yield SimpleNamespace(
                    r=r,
                    off=off,
                    work=work,
                    pg=data.pg,
                    standby=standby,
                    server=server,
                    host_map=host_map,
                    ro_host=ro_host,
                    admin=admin,
                    api=Api(server, admin),
                    primary_log=StatementLog(data.pg),
                    standby_log=StatementLog(standby),
                )


def test_the_standby_streams_from_the_primary_over_tls_with_the_rendered_certificate(stack):
    assert stack.ro_host == f"mlflow-pg-ro.{NAMESPACE}.svc"
    assert stack.standby.execute("SELECT pg_is_in_recovery()") == [(True,)]
    senders = stack.pg.execute(
        "SELECT usename, application_name, state, ssl FROM pg_stat_replication JOIN pg_stat_ssl USING (pid)"
    )
    assert senders == [(svc.REPLICATION_USER, "standby-1", "streaming", True)]
    # The server's URIs name the -rw and -ro Services; each psycopg2 connection gets its own address.
    env = stack.server.env
    assert _host(env["MLFLOW_BACKEND_STORE_URI"]) == stack.r.pg_host
    assert "PGHOSTADDR" not in stack.server.added_env
    assert json.loads(env["K8S_DNS_SHIM"])["libpq"] is True


def test_reads_run_on_the_standby_and_writes_on_the_primary(stack):
    api = stack.api
    stack.primary_log.mark()
    stack.standby_log.mark()
    experiment_id = api.ok("POST", "experiments/create", {"name": "replica-routing"})["experiment_id"]
    # create_run checks the experiment with a read (the standby): wait until it has the experiment (see the lag test).
    svc.wait_for_replay(stack.pg, stack.standby)
    run_id = api.ok("POST", "runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
    api.ok("POST", "runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 0, "step": 0})
    writes_primary, writes_standby = stack.primary_log.since_mark(), stack.standby_log.since_mark()
    svc.wait_for_replay(stack.pg, stack.standby)

    stack.primary_log.mark()
    stack.standby_log.mark()
    assert api.search_runs(experiment_id) == [run_id]
    api.ok("POST", "experiments/search", {"max_results": 10})
    assert api.get_run(run_id)[0] == 200
    api.ok("GET", f"experiments/get?experiment_id={experiment_id}")
    reads_primary, reads_standby = stack.primary_log.since_mark(), stack.standby_log.since_mark()

    tracking_writes = " ".join(_by(writes_primary, "mlflow", "mlflow"))
    for insert in ("INSERT INTO experiments", "INSERT INTO runs", "INSERT INTO metrics"):
        assert insert in tracking_writes, insert
    assert not any(t.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for _, _, t in writes_standby)

    tracking_reads = " ".join(_by(reads_standby, "mlflow", "mlflow"))
    assert "FROM runs" in tracking_reads and "FROM experiments" in tracking_reads
    # The auth store's reads (every request's user lookup) go to the standby too (read_database_uri).
    assert "FROM users" in " ".join(_by(reads_standby, "mlflow", "mlflow_auth"))
    # ...and the primary sees nothing from MLflow while it only reads.
    assert _by(reads_primary, "mlflow") == [], _by(reads_primary, "mlflow")[:5]
    # MLflow's connections to the standby: TLS (verify-full of the -ro name passed), to both databases.
    on_standby = stack.standby.execute(
        "SELECT DISTINCT datname, ssl FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) WHERE usename = 'mlflow'"
    )
    assert sorted(on_standby) == [("mlflow", True), ("mlflow_auth", True)]


def test_replication_lag_is_visible_to_a_reader_until_the_standby_replays(stack):
    api = stack.api
    api.ok("POST", "users/create", {"username": USER[0], "password": USER[1]})
    experiment_id = api.ok("POST", "experiments/create", {"name": "replica-lag"})["experiment_id"]
    svc.wait_for_replay(stack.pg, stack.standby)
    old_run = api.ok("POST", "runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
    api.ok("POST", "runs/log-metric", {"run_id": old_run, "key": "loss", "value": 1.0, "timestamp": 0, "step": 0})
    svc.wait_for_replay(stack.pg, stack.standby)
    seen: dict = {}

    stack.standby.execute("SELECT pg_wal_replay_pause()")
    try:
        # Writes succeed: they go to the primary.
        status, payload = api.call("POST", "runs/create", {"experiment_id": experiment_id})
        seen["create_run"] = _outcome(status, payload)
        new_run = payload["run"]["info"]["run_id"]
        status, payload = api.call(
            "POST", "runs/log-metric", {"run_id": old_run, "key": "loss", "value": 2.0, "timestamp": 1, "step": 1}
        )
        seen["log_metric_old_run"] = _outcome(status, payload)
        status, payload = api.call(
            "POST", "runs/log-metric", {"run_id": new_run, "key": "loss", "value": 5.0, "timestamp": 1, "step": 0}
        )
        seen["log_metric_new_run"] = _outcome(status, payload)
        # Reads right after, from the standby that has not replayed them.
        seen["get_new_run"] = _outcome(*api.get_run(new_run))
        seen["search_runs"] = {"new_run_listed": new_run in api.search_runs(experiment_id)}
        seen["old_run_loss"] = api.metric(old_run, "loss")
        seen["old_run_loss_on_the_primary"] = stack.pg.execute(
            "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'loss'", (old_run,), dbname="mlflow"
        )[0][0]
        # A user created now cannot sign in yet: the auth store reads users on the standby.
        api.ok("POST", "users/create", {"username": LATE_USER[0], "password": LATE_USER[1]})
        seen["new_user_request"] = _outcome(*api.call("POST", "experiments/search", {"max_results": 1}, LATE_USER))
        # A user's own new experiment: its MANAGE grant is on the primary only, the check reads the standby.
        status, payload = api.call("POST", "experiments/create", {"name": "replica-lag-user"}, USER)
        seen["user_create_experiment"] = _outcome(status, payload)
        user_experiment = payload.get("experiment_id")
        if user_experiment:
            seen["user_create_run_in_own_experiment"] = _outcome(
                *api.call("POST", "runs/create", {"experiment_id": user_experiment}, USER)
            )
        # The usual "new experiment, then a run in it" (mlflow.set_experiment + start_run).
        status, payload = api.call("POST", "experiments/create", {"name": "replica-lag-new"})
        seen["create_experiment"] = _outcome(status, payload)
        new_experiment = payload["experiment_id"]
        seen["create_run_in_new_experiment"] = _outcome(
            *api.call("POST", "runs/create", {"experiment_id": new_experiment})
        )
        seen["get_experiment_by_name"] = _outcome(
            *api.call("GET", "experiments/get-by-name?experiment_name=replica-lag-new")
        )
        # The same through MLflow's own client, as a user's script does it.
        seen["python_client"] = _python_client(stack, FLUENT_PAUSED)
        seen["standby_paused"] = stack.standby.execute("SELECT pg_get_wal_replay_pause_state()")[0][0]
    finally:
        stack.standby.execute("SELECT pg_wal_replay_resume()")
    svc.wait_for_replay(stack.pg, stack.standby)
    # Once replayed, everything is there.
    seen["after_resume"] = {
        "get_new_run": api.get_run(new_run)[0],
        "new_run_listed": new_run in api.search_runs(experiment_id),
        "old_run_loss": api.metric(old_run, "loss"),
        "new_run_loss": api.metric(new_run, "loss"),
        "new_user_request": api.call("POST", "experiments/search", {"max_results": 1}, LATE_USER)[0],
        "create_run_in_new_experiment": api.call("POST", "runs/create", {"experiment_id": new_experiment})[0],
    }
    if user_experiment:
        seen["after_resume"]["user_create_run_in_own_experiment"] = api.call(
            "POST", "runs/create", {"experiment_id": user_experiment}, USER
        )[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(seen, indent=2))
    print("\nreplication lag, what a client sees:\n" + json.dumps(seen, indent=2))
    assert seen == LAG_SEEN, seen


def test_a_new_experiment_and_its_first_run_race_the_replication(stack):
    """No pause: a script creating an experiment and a run in it at once. Recorded, not asserted:
    whether the standby has replayed the experiment when create_run reads it is a matter of
    milliseconds."""
    race = _python_client(stack, FLUENT_RACE)
    print("\nread-after-write race, replay running:", json.dumps(race))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**results, "race_without_pause": race}, indent=2))
    assert race["attempts"] == 20


def test_replica_off_renders_no_replica_uri_and_every_query_goes_to_the_primary(stack):
    off = stack.off
    assert "MLFLOW_READ_REPLICA_BACKEND_STORE_URI" not in off.env
    ini = configparser.ConfigParser()
    auth_files = [t for secret in off.secrets.values() for n, t in secret.items() if n == "basic_auth.ini"]
    ini.read_string(wiring.one(auth_files, "basic_auth.ini"))
    assert "read_database_uri" not in ini["mlflow"] and "-rw." in ini["mlflow"]["database_uri"]
    assert not any("-ro." in t for store in (off.secrets, off.config_maps) for o in store.values() for t in o.values())
    assert not any("-ro." in a for a in off.container.get("args", []))
    port = int(off.container["ports"][0]["containerPort"])
    ip = svc.free_loopback_address(port)
    with wiring.rendered_mlflow_server(off, stack.host_map, stack.work / "server-off", ip) as server:
        assert server.added_env["PGHOSTADDR"] == stack.pg.host
        api = Api(server, stack.admin)
        experiment_id = api.ok("POST", "experiments/create", {"name": "replica-off"})["experiment_id"]
        run_id = api.ok("POST", "runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
        stack.primary_log.mark()
        stack.standby_log.mark()
        assert api.search_runs(experiment_id) == [run_id]
        api.ok("POST", "experiments/search", {"max_results": 10})
        assert api.get_run(run_id)[0] == 200
        time.sleep(0.5)
        primary, standby = stack.primary_log.since_mark(), stack.standby_log.since_mark()
    assert "FROM runs" in " ".join(_by(primary, "mlflow", "mlflow"))
    assert "FROM users" in " ".join(_by(primary, "mlflow", "mlflow_auth"))
    assert _by(standby, "mlflow") == []
