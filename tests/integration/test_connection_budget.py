"""The connection budget, for real: PostgreSQL's max_connections holds MLflow through a rolling restart.

sizing.py sizes the Cluster's max_connections from what MLflow can hold open (every worker's three
SQLAlchemy pools per pod, one more pod during a rollout, the migration Job and gc, plus CloudNativePG's
superuser connections). Here the rendered PostgreSQL enforces exactly that max_connections, with pools
made small (mlflowDbPoolSize 3, mlflowDbMaxOverflow 2) so the load below fills them:

- many concurrent clients (a non-admin user, so every request also reads permissions through the
  auth store) logging metrics, reading runs and searching registered models: all three stores busy;
- a rolling restart: a second server (the surge pod) starts under load, both serve, the migration Job
  and gc run meanwhile, then the first server stops;
- PostgreSQL's connections are sampled throughout: the peak is reported against the budget.

No client sees an error, PostgreSQL never answers "too many clients", and the peak stays within the
budget while exceeding what one server can hold (the two servers did overlap).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import sizing
from tools.loopback import operators, wiring
from tools.loopback import services as svc

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
CONFIG = {"mlflowDbPoolSize": 3, "mlflowDbMaxOverflow": 2}
CLIENTS = 48
USER = ("load-user", "load-user-password-0123456789")
REFUSALS = ("too many clients", "remaining connection slots are reserved")
RESULTS = Path(__file__).resolve().parents[2] / "build" / "connection-budget.json"


class Load:
    """CLIENTS threads sending requests to whichever servers are in `targets` (the Service's endpoints)."""

    def __init__(self, run_id: str, experiment_id: str):
        self.targets: list = []
        self.run_id, self.experiment_id = run_id, experiment_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "errors": 0}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        rng = random.Random(index)
        auth = "Basic " + base64.b64encode(":".join(USER).encode()).decode()
        step = 0
        while not self.stop.is_set():
            targets = list(self.targets)
            if not targets:
                time.sleep(0.05)
                continue
            server = rng.choice(targets)
            step += 1
            kind = rng.choice(("log", "get", "registry", "experiment"))
            method, path, body = {
                "log": (
                    "POST",
                    "/api/2.0/mlflow/runs/log-metric",
                    {"run_id": self.run_id, "key": f"c{index}", "value": step, "timestamp": 0, "step": step},
                ),
                "get": ("GET", f"/api/2.0/mlflow/runs/get?run_id={self.run_id}", None),
                "registry": ("GET", "/api/2.0/mlflow/registered-models/search?max_results=5", None),
                "experiment": ("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={self.experiment_id}", None),
            }[kind]
            try:
                status, text = _call(server, method, path, body, auth)
                failed = status >= 400
            except OSError as error:
                status, text, failed = 0, repr(error), True
            with self.lock:
                self.counts["errors" if failed else "ok"] += 1
                if failed and len(self.errors) < 20:
                    self.errors.append(f"{kind} {status} {text[:300]}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _call(server, method: str, path: str, body: dict | None, auth: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(server.address, server.port, timeout=120)
    headers = {"Host": f"localhost:{server.port}", "Authorization": auth, "Content-Type": "application/json"}
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class Sampler(threading.Thread):
    """PostgreSQL's client connections every 50 ms (as its superuser, over the socket)."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.pg, self.stop = pg, threading.Event()
        self.peak_mlflow = self.peak_total = 0
        self.samples = 0

    def run(self) -> None:
        conn = self.pg.connect_superuser()
        try:
            with conn.cursor() as cursor:
                while not self.stop.is_set():
                    cursor.execute(
                        "SELECT count(*) FILTER (WHERE usename = 'mlflow'), count(*) "
                        "FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    )
                    mlflow, total = cursor.fetchone()
                    self.peak_mlflow, self.peak_total = max(self.peak_mlflow, mlflow), max(self.peak_total, total)
                    self.samples += 1
                    time.sleep(0.05)
        finally:
            conn.close()


def _admin_call(server, r, method: str, path: str, body: dict | None = None, user=None) -> dict:
    credentials = ":".join(user or (r.outputs["adminUser"], r.outputs["adminPassword"]))
    status, text = _call(server, method, path, body, "Basic " + base64.b64encode(credentials.encode()).decode())
    assert status == 200, f"{method} {path}: {status} {text[:500]}"
    return json.loads(text) if text else {}


def _gc_container(r) -> tuple[dict, dict]:
    cron = wiring.one(r.ev.k8s("CronJob"), "gc CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return wiring.one(pod["containers"], "gc container"), pod


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    r = wiring.render("dev", config=CONFIG, namespace=NAMESPACE)
    parameters = r.cluster["spec"]["postgresql"]["parameters"]
    max_connections = int(parameters["max_connections"])
    reserved = sizing.SUPERUSER_RESERVED_CONNECTIONS + sizing.INSTANCE_MANAGER_CONNECTIONS
    work = tmp_path_factory.mktemp("budget")
    pg_ip = svc.free_loopback_address(r.pg_port)
    port = int(r.container["ports"][0]["containerPort"])
    ip_a, ip_b = svc.free_loopback_address(port), None
    host_map = {r.pg_host: pg_ip}
    out = SimpleNamespace(r=r, max_connections=max_connections, budget=max_connections - reserved)
    logs: list[str] = []
    with wiring.rendered_postgres(r, work, pg_ip) as pg:
        out.enforced = pg.execute("SHOW max_connections")[0][0]
        operators.cnpg_reconcile_roles(pg, r.cluster, r.objects)
        operators.cnpg_reconcile_databases(pg, r.cluster, r.databases)
        wiring.run_migration_job(r, host_map, work / "migrate-first")
        sampler = Sampler(pg)
        sampler.start()
        with contextlib.ExitStack() as stack:
            # The first server is stopped mid-test (the rollout's old pod): closed once, by whoever is first.
            old_pod = wiring.rendered_mlflow_server(r, host_map, work / "server-a", ip_a)
            server_a = old_pod.__enter__()
            running = [True]

            def stop_old_pod() -> None:
                if running.pop(0) if running else False:
                    old_pod.__exit__(None, None, None)

            stack.callback(stop_old_pod)
            _admin_call(server_a, r, "POST", "/api/2.0/mlflow/users/create", {"username": USER[0], "password": USER[1]})
            experiment_id = _admin_call(
                server_a, r, "POST", "/api/2.0/mlflow/experiments/create", {"name": "budget"}, user=USER
            )["experiment_id"]
            run_id = _admin_call(
                server_a, r, "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}, user=USER
            )["run"]["info"]["run_id"]
            load = stack.enter_context(Load(run_id, experiment_id))
            load.targets = [server_a]
            time.sleep(10)
            # The surge pod starts under load; it serves once ready (readiness probe), next to the old one.
            ip_b = svc.free_loopback_address(port)
            server_b = stack.enter_context(wiring.rendered_mlflow_server(r, host_map, work / "server-b", ip_b))
            load.targets = [server_a, server_b]
            # The migration Job (a new version's) and gc run during the rollout too.
            gc, gc_pod = _gc_container(r)
            gc_map = {**host_map, f"mlflow.{NAMESPACE}.svc:80": f"{ip_b}:{port}"}
            jobs = [
                lambda: wiring.run_migration_job(r, host_map, work / "migrate-during"),
                lambda: svc.run_container_job(
                    gc,
                    secrets=r.secrets,
                    config_maps=r.config_maps,
                    host_map=gc_map,
                    files_by_mount=svc.files_by_mount_from_pod(
                        gc_pod, gc, secrets=r.secrets, config_maps=r.config_maps
                    ),
                    workdir=work / "gc",
                    timeout=240,
                ),
            ]
            results: list = []
            workers = [threading.Thread(target=lambda job=job: results.append(job())) for job in jobs]
            for worker in workers:
                worker.start()
            time.sleep(15)
            for worker in workers:
                worker.join(timeout=300)
            out.jobs_done = len(results)
            # The old pod leaves the Service's endpoints, then stops; the new one carries on alone.
            load.targets = [server_b]
            time.sleep(1)
            logs.append(server_a.log_text())
            stop_old_pod()
            time.sleep(8)
            load.stop.set()
            for thread in load.threads:
                thread.join(timeout=120)
            out.counts, out.errors = dict(load.counts), list(load.errors)
            logs.append(server_b.log_text())
        sampler.stop.set()
        sampler.join(timeout=10)
        out.peak_mlflow, out.peak_total, out.samples = sampler.peak_mlflow, sampler.peak_total, sampler.samples
        logs += [str(result) for result in results]
    logs.append(pg.log_path.read_text(errors="replace"))
    out.refusals = [line for text in logs for line in text.splitlines() if any(r in line for r in REFUSALS)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": CONFIG,
                "max_connections": max_connections,
                "mlflow_budget": out.budget,
                "peak_mlflow_connections": out.peak_mlflow,
                "peak_client_connections": out.peak_total,
                "samples": out.samples,
                "requests": out.counts,
                "clients": CLIENTS,
            },
            indent=2,
        )
    )
    print(
        f"\nconnection budget: peak {out.peak_mlflow} MLflow connections of a budget of {out.budget} "
        f"(max_connections {max_connections}); {out.counts}"
    )
    yield out


def test_postgres_enforces_the_rendered_max_connections(rollout):
    # 2 pods (1 replica + the surge pod) x (1 worker x 3 stores x (3 + 2) + 2) + 2 (migration) + 2 (gc)
    assert rollout.budget == 2 * (3 * (3 + 2) + 2) + 2 + 2 == 38
    assert rollout.enforced == str(rollout.max_connections) == str(38 + 8)


def test_many_clients_through_a_rolling_restart_get_no_errors_and_postgres_refuses_no_one(rollout):
    assert rollout.jobs_done == 2, "the migration Job and gc ran during the rollout"
    assert rollout.counts["ok"] > 500 and rollout.counts["errors"] == 0, rollout.errors
    assert rollout.refusals == []


def test_the_peak_stays_within_the_budget_with_both_servers_holding_connections(rollout):
    per_pod = 3 * (3 + 2) + 2
    assert per_pod < rollout.peak_mlflow <= rollout.budget, (rollout.peak_mlflow, rollout.budget)
    assert rollout.peak_total <= rollout.max_connections
