"""The dev stack, wired for real: exactly what the Pulumi program renders, run on loopback.

No cluster exists here, so the rendered configuration is proven by running the real processes
with it (see ``services.py`` for the mechanics and the few intentional deviations):

* PostgreSQL 15 serves the CNPG Cluster's ``serverTLSSecret`` and its ``spec.postgresql.pg_hba``
  (+ CNPG's own catch-all, :func:`services.cnpg_hba`), with ``enableSuperuserAccess: false``
  emulated (the superuser has no password; administration only over the unix socket). MLflow's
  role and databases are created as CloudNativePG's instance manager would, from the Cluster's
  ``spec.managed.roles`` (password from the basic-auth Secret) and the ``Database`` objects
  (:mod:`operators`).
* MinIO is the real server of the pinned release (engine/build.sh builds it from its Go module)
  running the StatefulSet's container: its args and env, the certificate it mounts, the root
  credentials from its env-file Secret. The MinIO bootstrap Job's real script (the rendered
  ConfigMap, exactly the Job's env and volumes) runs with the real ``mc`` and makes the bucket and
  MLflow's user: the bucket MLflow uses, with the keys it is given, is the one the bootstrap made
  (the bootstrap itself, least privilege and bad input: ``test_object_store.py``).
* The migration Job's containers (initContainers in order, then containers) and the MLflow
  Deployment's container run with their exact command/args/env, secretKeyRefs resolved from the
  rendered Secrets, and their volumes (projected CA Secrets, the auth-config Secret, emptyDirs)
  materialised. MLflow runs unpatched (3.18: multipart transfers are advertised only on opt-in).
* In-cluster names (``mlflow-pg-rw.mlflow-dev.svc:5432``, ``minio.mlflow-dev.svc:9000``) stay
  in every URI; only their *addresses* are substituted (DNS shim / ``PGHOSTADDR``), so
  ``verify-full`` checks the real names against the certificates' SANs.
* A "laptop" client knows only the stack outputs ``trackingUrl``/``adminUser``/
  ``adminPassword``; the shim maps the tracking URL's host:port to the server (dev has no
  ingress TLS, so this stands in for the ingress, Host header unchanged) and denies every
  in-cluster name.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

from tools.loopback import operators, wiring
from tools.loopback import services as svc

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
PG_HOST = f"mlflow-pg-rw.{NAMESPACE}.svc"
PG_PORT = 5432
S3_HOST = f"minio.{NAMESPACE}.svc"
S3_PORT = 9000
NOT_IN_PG_SANS = "mlflow-pg-rw.mlflow-prod.svc"  # a plausible name the certificate must not cover
SERVER_INFO = "/api/3.0/mlflow/server-info"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
INFRA_ENV = {"PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "PYTHONPATH", "K8S_DNS_SHIM", "PGHOSTADDR"}
MIB = 1024 * 1024
BIG_ARTIFACT_BYTES = 3 * MIB
# Client tuning only (allowed): make the big artifact cross the multipart thresholds so the
# client's /server-info driven decision is exercised. No MLFLOW_ENABLE_PROXY_MULTIPART_* at all.
CLIENT_TUNING = {
    "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(MIB),
    "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(MIB),
    "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": str(MIB),
    "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(MIB),
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
PARALLEL_CLIENTS = 4

# --------------------------------------------------------------------------- the laptop client

LAPTOP_CLIENT = (
    svc.CLIENT_PRELUDE
    + r'''
import json, logging, os, sys, tempfile, time
import requests

# Record every HTTP request the client makes (MLflow uses requests.Session underneath).
seen = []
_send = requests.Session.send
def _recording_send(self, request, **kwargs):
    u = requests.utils.urlparse(request.url)
    seen.append([request.method, u.hostname, u.port, u.path])
    return _send(self, request, **kwargs)
requests.Session.send = _recording_send

capture_shim_denials(logging.getLogger())

import mlflow
from mlflow import MlflowClient

mode = os.environ["CLIENT_MODE"]
tracking = os.environ["MLFLOW_TRACKING_URI"]
creds = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
work = tempfile.mkdtemp(dir=os.getcwd())
client = MlflowClient()
out = {"mode": mode}


def read_back(run_id):
    """Everything a user would look at again: run, params, metrics, artifacts (bytes)."""
    run = client.get_run(run_id)
    files = []
    def walk(path=None):
        for f in client.list_artifacts(run_id, path):
            if f.is_dir:
                walk(f.path)
            else:
                files.append([f.path, f.file_size])
    walk()
    dst = mlflow.artifacts.download_artifacts(
        run_id=run_id, dst_path=tempfile.mkdtemp(dir=work))
    return {
        "experiment_name": client.get_experiment(run.info.experiment_id).name,
        "status": run.info.status,
        "artifact_uri": run.info.artifact_uri,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "loss_history": [[m.step, m.value] for m in
                         sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)],
        "artifacts": sorted(files),
        "downloaded": {p: sha(os.path.join(dst, p)) for p, _ in files},
    }


def server_info():
    r = requests.get(tracking + "/api/3.0/mlflow/server-info", auth=creds, timeout=10)
    return r.status_code, (r.json() if r.status_code == 200 else r.text[:300])


if mode == "roundtrip":
    out["no_credentials_status"] = requests.get(
        tracking + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code
    out["server_info_status"], out["server_info"] = server_info()
    small = os.path.join(work, "small.txt")
    big = os.path.join(work, "big.bin")
    write(small, b"hello from the laptop\n" * 20)
    write(big, os.urandom(int(os.environ["BIG_ARTIFACT_BYTES"])))
    exp_id = mlflow.set_experiment(os.environ["EXPERIMENT_NAME"]).experiment_id
    with mlflow.start_run() as run:
        mlflow.log_params({"alpha": "0.5", "layers": "3"})
        mlflow.log_metric("loss", 0.5, step=0)
        mlflow.log_metric("loss", 0.25, step=1)
        mlflow.log_metric("accuracy", 0.875)
        mlflow.log_artifact(small)
        mlflow.log_artifact(big, artifact_path="data")
    run_id = run.info.run_id

    # What the client decided, and why: the threshold is crossed, nothing forces the
    # path by env, so /server-info (as the server answered it) made the choice.
    from mlflow.environment_variables import (
        MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD, MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD,
        MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    repo = get_artifact_repository(run.info.artifact_uri)
    out["client_decision"] = {
        "repo": type(repo).__name__,
        "big_crosses_threshold": os.path.getsize(big) >= MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE.get(),
        "forced_by_env": MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD.is_set()
                         or MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD.is_set(),
        "capabilities": repo._fetch_server_capabilities(),
        "would_multipart_upload_big": repo._should_multipart_upload(big),
    }
    out.update(run_id=run_id, experiment_id=exp_id,
               uploaded={"small.txt": sha(small), "data/big.bin": sha(big)},
               sizes={"small.txt": os.path.getsize(small), "data/big.bin": os.path.getsize(big)},
               read=read_back(run_id))

elif mode == "readback":
    out["server_info_status"], out["server_info"] = server_info()
    out["read"] = read_back(os.environ["RUN_ID"])
    out["experiment_runs"] = sorted(
        r.info.run_id for r in client.search_runs([os.environ["EXPERIMENT_ID"]]))

elif mode == "parallel":
    worker = os.environ["WORKER"]
    payload = os.path.join(work, f"worker-{worker}.bin")
    write(payload, os.urandom(256 * 1024))
    # Barrier: all clients have imported mlflow before any of them starts writing.
    barrier = os.environ["BARRIER_DIR"]
    open(os.path.join(barrier, f"ready-{worker}"), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(barrier)) < int(os.environ["BARRIER_N"]):
        if time.monotonic() > deadline:
            raise SystemExit("barrier timeout")
        time.sleep(0.05)
    out["t_start"] = time.time()
    with mlflow.start_run(experiment_id=os.environ["EXPERIMENT_ID"],
                          run_name=f"parallel-{worker}") as run:
        mlflow.log_params({"worker": worker, "lr": "0.01"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(payload, artifact_path="out")
    out["t_end"] = time.time()
    out.update(run_id=run.info.run_id, uploaded={f"out/worker-{worker}.bin": sha(payload)},
               read=read_back(run.info.run_id))

out["requests"] = seen
out["shim_denials"] = shim_denials[:5]
print(json.dumps(out))
'''
)


# --------------------------------------------------------------------------- rendered material


_one = wiring.one
_host_port = wiring.host_port


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def _san_dns_names(cert_pem: str) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


# --------------------------------------------------------------------------- services


class ServerRunner:
    """Starts/stops ``mlflow server`` from the same rendered container spec (for the restart)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.server: svc.MlflowServer | None = None
        self.pids: list[int] = []
        self._cm = None

    def start(self) -> svc.MlflowServer:
        assert self._cm is None
        self._cm = svc.mlflow_server_from_container(**self.kwargs)
        self.server = self._cm.__enter__()
        self.pids.append(self.server.process.pid)
        return self.server

    def stop(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)

    def restart(self) -> svc.MlflowServer:
        self.stop()
        return self.start()


def _managed_role(r) -> SimpleNamespace:
    """MLflow's role as the operator sees it: the Cluster's managed role + its password Secret."""
    role = _one(r.cluster["spec"]["managed"]["roles"], "managed role")
    secret_name = role["passwordSecret"]["name"]
    return SimpleNamespace(
        spec=role, name=role["name"], secret_obj=r.secret_obj(secret_name), password=r.secrets[secret_name]["password"]
    )


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    r = wiring.render("dev", namespace=NAMESPACE)
    # The names the brief expects the stack to render -- and that stay in every URI.
    assert (r.pg_host, r.pg_port) == (PG_HOST, PG_PORT)
    assert (r.s3_host, r.s3_port) == (S3_HOST, S3_PORT)
    role = _managed_role(r)

    work = tmp_path_factory.mktemp("wired")
    pg_ca, minio_ca = work / "postgres-ca.crt", work / "object-store-ca.crt"
    pg_ca.write_text(r.pg_tls["ca.crt"])
    minio_ca.write_text(r.minio_tls["ca.crt"])
    pg_ip = svc.free_loopback_address(r.pg_port)
    s3_ip = svc.free_loopback_address(r.s3_port)
    mlflow_ip = svc.free_loopback_address(int(r.container["ports"][0]["containerPort"]))
    host_map = {r.pg_host: pg_ip, r.s3_host: s3_ip}

    with contextlib.ExitStack() as stack:
        # enableSuperuserAccess: false -> no password for the superuser, socket access only.
        assert r.cluster["spec"]["enableSuperuserAccess"] is False
        pg = stack.enter_context(wiring.rendered_postgres(r, work, pg_ip))
        s3 = stack.enter_context(wiring.rendered_minio(r, work, s3_ip))

        # What CloudNativePG's instance manager does with the rendered objects (local superuser).
        role_actions = operators.cnpg_reconcile_roles(pg, r.cluster, r.objects)
        database_actions = operators.cnpg_reconcile_databases(pg, r.cluster, r.databases)

        # The MinIO bootstrap Job (its real script, the real mc): the bucket and MLflow's user.
        bootstrap = wiring.MinioBootstrap(r, work / "minio-bootstrap", host_map, s3)
        bootstrap_run = bootstrap.run()
        # The bucket MLflow uses is the one the bootstrap created (not taken from config).
        bucket = _one(list(bootstrap_run.state["buckets"]), "bucket created by the bootstrap")

        # The migration Job: initContainers in order, then its containers.
        job_runs = wiring.run_migration_job(r, host_map, work, timeout=150)

        files = svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps)
        runner = ServerRunner(
            container=r.container,
            secrets=r.secrets,
            files_by_mount=files,
            host_map=host_map,
            workdir=work / "mlflow",
            listen_addr=mlflow_ip,
            config_maps=r.config_maps,
            timeout=150,
        )
        stack.callback(runner.stop)
        runner.start()

        tracking_host, tracking_port = _host_port(r.outputs["trackingUrl"], 80)
        yield SimpleNamespace(
            r=r,
            work=work,
            pg=pg,
            s3=s3,
            pg_ca=pg_ca,
            minio_ca=minio_ca,
            host_map=host_map,
            role=role,
            role_actions=role_actions,
            database_actions=database_actions,
            bootstrap=bootstrap,
            bootstrap_run=bootstrap_run,
            bucket=bucket,
            job_runs=job_runs,
            runner=runner,
            tracking_host=tracking_host,
            tracking_port=tracking_port,
        )


def _laptop(w, mode: str, name: str, check: bool = True, **env):
    """A laptop process that knows only the stack outputs (and in-cluster names are denied)."""
    server = w.runner.server
    proc = svc.run_python_client(
        # A bound, not a proof: generous because the machine may be shared with heavy jobs.
        LAPTOP_CLIENT,
        workdir=w.work,
        name=name,
        check=check,
        timeout=300,
        host_map={f"{w.tracking_host}:{w.tracking_port}": f"{server.address}:{server.port}"},
        deny=("*.svc", "*.svc.cluster.local"),
        env={
            "MLFLOW_TRACKING_URI": w.r.outputs["trackingUrl"],
            "MLFLOW_TRACKING_USERNAME": w.r.outputs["adminUser"],
            "MLFLOW_TRACKING_PASSWORD": w.r.outputs["adminPassword"],
            **CLIENT_TUNING,
            "CLIENT_MODE": mode,
            **env,
        },
    )
    if not check:
        return proc
    return svc.last_json_line(proc.stdout)


def _http(server, path: str, host: str, auth: tuple[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.address, server.port, timeout=15)
    headers = {"Host": host}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _s3_objects(w, prefix: str) -> dict[str, int]:
    with svc.dns_patched(w.host_map):
        client = w.s3.client(endpoint_name=w.r.s3_host, ca_file=str(w.minio_ca))
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=w.bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _assert_proxied_only(result: dict, tracking_host: str) -> None:
    """Every request went to the tracking URL host; no presigned/multipart endpoint was used."""
    hosts = {h for _, h, _, _ in result["requests"]}
    assert hosts == {tracking_host}, hosts
    assert not [p for _, _, _, p in result["requests"] if "/mlflow-artifacts/mpu/" in p or "/presigned/" in p]
    assert result["shim_denials"] == []


@pytest.fixture(scope="module")
def first_run(wired):
    return _laptop(
        wired,
        "roundtrip",
        "laptop-roundtrip",
        EXPERIMENT_NAME="wired-stack",
        BIG_ARTIFACT_BYTES=str(BIG_ARTIFACT_BYTES),
    )


@pytest.fixture(scope="module")
def after_restart(wired, first_run):
    old = wired.runner.server
    old_pid = old.process.pid
    new = wired.runner.restart()
    assert not old.process.alive()
    return SimpleNamespace(
        old_pid=old_pid,
        server=new,
        result=_laptop(
            wired,
            "readback",
            "laptop-after-restart",
            RUN_ID=first_run["run_id"],
            EXPERIMENT_ID=first_run["experiment_id"],
        ),
    )


@pytest.fixture(scope="module")
def parallel_runs(wired, first_run, after_restart):
    barrier = wired.work / "barrier"
    barrier.mkdir()

    def one(i: int):
        return _laptop(
            wired,
            "parallel",
            f"laptop-parallel-{i}",
            check=False,
            WORKER=str(i),
            EXPERIMENT_ID=first_run["experiment_id"],
            BARRIER_DIR=str(barrier),
            BARRIER_N=str(PARALLEL_CLIENTS),
        )

    with ThreadPoolExecutor(PARALLEL_CLIENTS) as pool:
        procs = list(pool.map(one, range(PARALLEL_CLIENTS)))
    return procs


# --------------------------------------------------------------------------- tests


def test_rendered_material_is_self_consistent(wired):
    r, role = wired.r, wired.role
    # MLflow's role is a managed role of the Cluster, its password in a basic-auth Secret for it.
    assert role.spec["login"] is True and role.spec.get("ensure", "present") == "present"
    assert role.secret_obj["type"] == "kubernetes.io/basic-auth"
    assert r.secrets[role.secret_obj["metadata"]["name"]]["username"] == role.name
    # No superuser access at all: no superuser Secret, none for postgres anywhere in the stack.
    assert r.cluster["spec"]["enableSuperuserAccess"] is False
    assert "superuserSecret" not in r.cluster["spec"]
    assert not [n for n, data in r.secrets.items() if data.get("username") == "postgres"]
    # The two Database objects of this Cluster, owned by that role.
    assert {(d["spec"]["name"], d["spec"]["owner"], d["spec"]["cluster"]["name"]) for d in r.databases} == {
        ("mlflow", role.name, r.cluster["metadata"]["name"]),
        ("mlflow_auth", role.name, r.cluster["metadata"]["name"]),
    }
    # The URIs carry exactly that role and those databases, and no password (they reach argv): libpq
    # gets the role's Secret's password as PGPASSWORD.
    for key, db in (("backend-store-uri", "mlflow"), ("auth-database-uri", "mlflow_auth")):
        env_secret = next(s for s in r.secrets.values() if key in s)
        uri = urlsplit(env_secret[key].replace("postgresql+psycopg2://", "postgresql://"))
        assert (unquote(uri.username), uri.password) == (role.name, None)
        assert env_secret["postgres-password"] == role.password == r.env["PGPASSWORD"]
        assert (uri.hostname, uri.port, uri.path) == (PG_HOST, PG_PORT, f"/{db}")
        assert "sslmode=verify-full" in uri.query
    # TLS-only pg_hba as CNPG renders it; the server certificate covers the URI host.
    assert r.pg_hba[0] == "hostnossl all all all reject"
    assert PG_HOST in _san_dns_names(r.pg_tls["tls.crt"])
    assert NOT_IN_PG_SANS not in _san_dns_names(r.pg_tls["tls.crt"])
    assert S3_HOST in _san_dns_names(r.minio_tls["tls.crt"])
    # Distinct private CAs per service (the wrong-CA negatives below rely on that).
    assert r.pg_tls["ca.crt"] != r.minio_tls["ca.crt"]
    # MLflow writes to the bucket the bootstrap Job created, which is the stack's output.
    assert f"s3://{wired.bucket}/artifacts" in r.container["args"]
    assert r.outputs["bucket"] == wired.bucket
    # The pods' egress policy covers exactly what this run uses: DNS, PostgreSQL, MinIO.
    egress = _one(
        [
            p
            for p in r.ev.k8s("NetworkPolicy")
            if p["spec"].get("policyTypes") == ["Egress"]
            and p["spec"]["podSelector"]["matchLabels"].items() <= r.pod_labels.items()
        ],
        "MLflow egress NetworkPolicy",
    )
    ports = {
        (port["port"], port.get("protocol", "TCP"))
        for rule in egress["spec"]["egress"]
        for port in rule.get("ports", [])
    }
    assert ports == {(53, "UDP"), (53, "TCP"), (PG_PORT, "TCP"), (S3_PORT, "TCP")}


def test_operator_created_role_and_databases_from_the_rendered_objects(wired):
    pg, role = wired.pg, wired.role
    assert wired.role_actions == [
        {"name": role.name, "action": "created", "password_from": role.secret_obj["metadata"]["name"]}
    ]
    assert pg.execute(
        "SELECT rolcanlogin, rolsuper, rolinherit, rolcreatedb, rolcreaterole, "
        "shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
        (role.name,),
    ) == [(True, False, True, False, False, role.spec["comment"])]
    assert sorted(
        pg.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname NOT IN ('postgres', 'template0', 'template1')"
        )
    ) == [("mlflow", role.name), ("mlflow_auth", role.name)]
    assert [a["status"] for a in wired.database_actions] == [{"applied": True}] * 2
    # Reconciling again (the operator loops) changes nothing and fails on nothing.
    assert operators.cnpg_reconcile_roles(pg, wired.r.cluster, wired.r.objects)[0]["action"] == "altered"
    assert len(operators.cnpg_reconcile_databases(pg, wired.r.cluster, wired.r.databases)) == 2


def test_postgres_has_no_superuser_login_over_the_network(wired):
    """enableSuperuserAccess: false -- the superuser has no password, so the catch-all
    `host all all all scram-sha-256` rule admits no TCP login as postgres, TLS or not."""
    import psycopg2

    pg = wired.pg
    assert pg.execute("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = %s", (pg.superuser,)) == [(True,)]
    for password in (pg.superuser_password, ""):
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed|no password supplied"):
            pg.connect_tcp(
                host_name=PG_HOST, sslrootcert=str(wired.pg_ca), user=pg.superuser, password=password, dbname="postgres"
            )
    # Control: the same path as MLflow's role works.
    pg.connect_tcp(
        host_name=PG_HOST,
        sslrootcert=str(wired.pg_ca),
        user=wired.role.name,
        password=wired.role.password,
        dbname="mlflow",
    ).close()


def test_migration_job_ran_in_order_against_tls_postgres(wired):
    job = wired.job_runs
    assert [j.name for j in job] == ["upgrade-tracking-db", "upgrade-auth-db"]
    assert all(j.rc == 0 for j in job)
    assert "Creating initial MLflow database tables" in job[0].output
    for j in job:  # libpq got the real name in the URI plus the loopback hostaddr
        assert j.prepared.added_env["PGHOSTADDR"] == wired.pg.host
        assert f"@{PG_HOST}:{PG_PORT}/" in j.prepared.argv[-1]
    assert wired.pg.execute("SELECT count(*) FROM alembic_version", dbname="mlflow") == [(1,)]
    assert wired.pg.execute("SELECT count(*) FROM alembic_version_auth", dbname="mlflow_auth") == [(1,)]
    # The server found both schemas ready (it did not create them itself).
    assert "Creating initial MLflow database tables" not in wired.runner.server.log_text()


def test_server_runs_the_rendered_container_unpatched_with_multipart_off(wired):
    r, server = wired.r, wired.runner.server
    # $(POD_IP) (metrics: the pod's own address is an allowed Host) is expanded as the kubelet does;
    # the metrics emptyDir's mount path is rewritten like every mount path.
    expected = [
        svc._rewrite(svc.expand_k8s_vars(a, {"POD_IP": server.address}), server.path_map)
        for a in [*r.container["command"], *r.container["args"]]
    ]
    i = expected.index("--host")
    assert server.argv == [*expected[: i + 1], server.address, *expected[i + 2 :]]
    assert set(server.added_env) <= INFRA_ENV
    for name, value in r.env.items():  # every rendered env var, only mount paths rewritten
        if name == "POD_IP":  # the downward API: this pod's address
            assert server.env[name] == server.address
            continue
        if name not in server.added_env:
            assert server.env[name] == svc._rewrite(value, server.path_map), name
    assert server.env["MLFLOW_S3_ENDPOINT_URL"] == f"https://{S3_HOST}:{S3_PORT}"
    assert f"@{PG_HOST}:{PG_PORT}/" in server.env["MLFLOW_BACKEND_STORE_URI"]
    assert server.env["AWS_CA_BUNDLE"] == str(server.host_path("/etc/mlflow/ca/object-store-ca.crt"))
    assert server.host_path("/etc/mlflow/ca/object-store-ca.crt").read_text() == r.minio_tls["ca.crt"]
    assert server.host_path("/etc/mlflow/ca/postgres-ca.crt").read_text() == r.pg_tls["ca.crt"]
    assert "REQUESTS_CA_BUNDLE" not in server.env and "SSL_CERT_FILE" not in server.env

    # Nothing patches MLflow: the container sets no PYTHONPATH (the DNS shim's is the only entry)
    # and no multipart opt-in, and the venv runs the release the stack renders.
    assert "PYTHONPATH" not in r.env
    assert server.env["PYTHONPATH"] == str(svc.SHIM_DIR)
    assert not {"MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"} & set(r.env)
    assert r.container["image"].endswith(f":v{_mlflow_version()}-full")
    # So /server-info reports no multipart transfers (MLflow 3.18's default without the opt-ins;
    # test_artifact_transfer_modes shows the same server code answering true when opted in).
    creds = (r.outputs["adminUser"], r.outputs["adminPassword"])
    status, body = _http(server, SERVER_INFO, wired.tracking_host, auth=creds)
    assert status == 200, body
    info = json.loads(body)
    assert info["multipart_uploads_enabled"] is False
    assert info["multipart_downloads_enabled"] is False
    assert info["store_type"] == "SqlStore"

    # The server's own PostgreSQL sessions are TLS (verify-full passed on the real name).
    assert _http(server, SEARCH, wired.tracking_host, auth=creds)[0] == 200
    sessions = wired.pg.execute(
        "SELECT a.datname, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = %s",
        (wired.role.name,),
    )
    assert sessions and all(ssl for _, ssl in sessions), sessions
    # ... and the admin was bootstrapped from the rendered Secret into the auth database.
    assert wired.pg.execute("SELECT username, is_admin FROM users", dbname="mlflow_auth") == [
        (r.outputs["adminUser"], True)
    ]


def test_laptop_round_trip_through_tracking_url_only(wired, first_run):
    res = first_run
    assert res["no_credentials_status"] == 401
    assert res["server_info_status"] == 200
    assert res["server_info"]["multipart_uploads_enabled"] is False
    assert res["server_info"]["multipart_downloads_enabled"] is False
    # The big artifact crossed the (lowered) threshold, nothing forced the path by env: the
    # client followed /server-info and chose the proxied path.
    assert res["client_decision"] == {
        "repo": "MlflowArtifactsRepository",
        "big_crosses_threshold": True,
        "forced_by_env": False,
        "capabilities": {
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "artifacts_presigned_only": False,
        },
        "would_multipart_upload_big": False,
    }
    read = res["read"]
    assert read["experiment_name"] == "wired-stack"
    assert read["status"] == "FINISHED"
    assert read["artifact_uri"].startswith("mlflow-artifacts:/")
    assert read["params"] == {"alpha": "0.5", "layers": "3"}
    assert read["metrics"] == {"loss": 0.25, "accuracy": 0.875}
    assert read["loss_history"] == [[0, 0.5], [1, 0.25]]
    assert read["artifacts"] == [["data/big.bin", BIG_ARTIFACT_BYTES], ["small.txt", res["sizes"]["small.txt"]]]
    assert read["downloaded"] == res["uploaded"]
    _assert_proxied_only(res, wired.tracking_host)
    # ... and the client itself asked /server-info right before the big upload (its decision).
    calls = [(m, p) for m, _, _, p in res["requests"]]
    big_put = next(i for i, (m, p) in enumerate(calls) if m == "PUT" and p.endswith("/data/big.bin"))
    first_info = calls.index(("GET", SERVER_INFO))  # the explicit check above
    assert ("GET", SERVER_INFO) in calls[first_info + 1 : big_put]
    # The bytes live in the rendered bucket under the artifacts/ prefix.
    prefix = f"artifacts/{res['experiment_id']}/{res['run_id']}/artifacts/"
    objects = _s3_objects(wired, "artifacts/")
    assert objects.get(prefix + "small.txt") == res["sizes"]["small.txt"]
    assert objects.get(prefix + "data/big.bin") == BIG_ARTIFACT_BYTES


def test_restart_loses_nothing(wired, first_run, after_restart):
    assert after_restart.server.process.pid != after_restart.old_pid
    assert wired.runner.pids == [after_restart.old_pid, after_restart.server.process.pid]
    res = after_restart.result
    assert res["server_info"]["multipart_uploads_enabled"] is False
    assert res["server_info"]["multipart_downloads_enabled"] is False
    assert res["read"] == first_run["read"]
    assert res["experiment_runs"] == [first_run["run_id"]]
    _assert_proxied_only(res, wired.tracking_host)
    # Same database: the restarted server neither re-created the admin nor the schema.
    log = wired.runner.server.log_text()
    assert log.count("Created admin user") == 1
    assert "Creating initial MLflow database tables" not in log


def test_parallel_clients_log_without_errors(wired, first_run, parallel_runs):
    failures = [(p.returncode, p.stderr[-2000:]) for p in parallel_runs if p.returncode != 0]
    assert failures == []
    results = [svc.last_json_line(p.stdout) for p in parallel_runs]
    # They really overlapped: every client started writing before any of them finished.
    assert max(x["t_start"] for x in results) < min(x["t_end"] for x in results)
    run_ids = {x["run_id"] for x in results}
    assert len(run_ids) == PARALLEL_CLIENTS
    objects = _s3_objects(wired, f"artifacts/{first_run['experiment_id']}/")
    for x in results:
        worker = x["read"]["params"]["worker"]
        assert x["read"]["params"] == {"worker": worker, "lr": "0.01"}
        assert x["read"]["loss_history"] == [[s, 1.0 / (s + 1)] for s in range(5)]
        assert x["read"]["downloaded"] == x["uploaded"]
        assert x["read"]["status"] == "FINISHED"
        key = f"artifacts/{first_run['experiment_id']}/{x['run_id']}/artifacts/out/worker-{worker}.bin"
        assert objects.get(key) == 256 * 1024
        _assert_proxied_only(x, wired.tracking_host)
    assert sorted(x["read"]["params"]["worker"] for x in results) == [str(i) for i in range(PARALLEL_CLIENTS)]
    rows = wired.pg.execute(
        "SELECT count(*) FROM runs WHERE experiment_id = %s AND status = 'FINISHED'",
        (int(first_run["experiment_id"]),),
        dbname="mlflow",
    )
    assert rows == [(1 + PARALLEL_CLIENTS,)]
    log = wired.runner.server.log_text()
    assert "Traceback" not in log, log[-3000:]


def test_postgres_refuses_plaintext_wrong_ca_and_foreign_name(wired):
    import psycopg2

    login = {"user": wired.role.name, "password": wired.role.password, "dbname": "mlflow"}
    ok = wired.pg.connect_tcp(host_name=PG_HOST, sslrootcert=str(wired.pg_ca), **login)
    try:  # control: the rendered CA + the real name + the rendered password
        with ok.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
    finally:
        ok.close()
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        wired.pg.connect_tcp(host_name=PG_HOST, sslmode="disable", **login)
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        # MinIO's (rendered, valid, but foreign) CA does not vouch for PostgreSQL
        wired.pg.connect_tcp(host_name=PG_HOST, sslrootcert=str(wired.minio_ca), **login)
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        wired.pg.connect_tcp(host_name=NOT_IN_PG_SANS, sslrootcert=str(wired.pg_ca), **login)


def test_s3_endpoint_trusts_only_minio_ca(wired):
    from botocore.exceptions import SSLError

    with svc.dns_patched(wired.host_map):
        assert wired.s3.client(endpoint_name=S3_HOST, ca_file=str(wired.minio_ca)).head_bucket(Bucket=wired.bucket)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            wired.s3.client(endpoint_name=S3_HOST, ca_file=str(wired.pg_ca)).head_bucket(Bucket=wired.bucket)


def test_mlflow_requires_credentials_and_an_allowed_host(wired):
    server, host = wired.runner.server, wired.tracking_host
    creds = (wired.r.outputs["adminUser"], wired.r.outputs["adminPassword"])
    assert _http(server, SEARCH, host)[0] == 401
    assert _http(server, SEARCH, host, auth=(creds[0], "not-the-password"))[0] == 401
    assert _http(server, SEARCH, host, auth=creds)[0] == 200
    assert _http(server, SEARCH, "evil.example.com", auth=creds)[0] == 403
    # The pod's own address is allowed (Prometheus scrapes pods by IP); any other address is not.
    assert _http(server, SEARCH, f"{server.address}:{server.port}", auth=creds)[0] == 200
    assert _http(server, SEARCH, f"127.0.0.254:{server.port}", auth=creds)[0] == 403
    assert _http(server, SEARCH, f"mlflow.{NAMESPACE}.svc", auth=creds)[0] == 200


def test_server_wrote_only_to_its_emptydir_volumes(wired, parallel_runs):
    """The pod runs with readOnlyRootFilesystem: after all of the above the server (and its
    workers) wrote nothing outside the Deployment's emptyDir mounts -- not to its working
    directory, not next to the mounted Secrets/ConfigMaps."""
    r, server = wired.r, wired.runner.server
    cwd = server.log_path.parent
    assert {p.name for p in cwd.iterdir()} <= {"rootfs", "mlflow-server.log", "home"}
    assert not any((cwd / "home").iterdir())  # the helper's default HOME stayed unused
    volumes = {v["name"]: v for v in r.pod["volumes"]}
    writable = [m["mountPath"] for m in r.container["volumeMounts"] if "emptyDir" in volumes[m["name"]]]
    assert set(writable) == {"/tmp", "/home/mlflow", "/dev/shm", "/var/lib/mlflow/prometheus"}
    mounted = svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps)
    expected = {f"{mount}/{rel}" for mount, files in mounted.items() for rel in files}
    unexpected = []
    for path in server.root.rglob("*"):
        if not path.is_file():
            continue
        in_container = "/" + str(path.relative_to(server.root))
        if any(in_container.startswith(w + "/") for w in writable) or in_container in expected:
            continue
        if "__pycache__" in path.parts:  # bytecode cache: skipped silently on a read-only mount
            continue
        unexpected.append(in_container)
    assert unexpected == []
