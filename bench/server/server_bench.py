"""The tracking server we deploy, measured side by side on this machine (`make bench`; not a test).

Servers:
  ours         `mlflow server` with exactly the dev stack's rendered argv/env (tools/loopback: the
               rendered container, Secrets and volumes), PostgreSQL with the stack's TLS material and
               verify-full, basic auth on every request, S3 over TLS: the real MinIO of the pinned release
               running the StatefulSet's container (engine/build.sh builds it), with MLflow's own user;
               its --workers is what the stack renders for the dev stack's CPU limit.
  ours-direct  the same with the two opt-ins artifactTransferMode direct renders
               (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD/DOWNLOAD); clients reach S3 directly (in the
               cluster: through the ingress host; here the S3 server itself) with the multipart part
               size the stack exports in clientEnvironment.
  peer         the community Helm chart's way with its PostgreSQL option and default values: same MLflow,
               `--backend-store-uri postgresql://...` without TLS, no auth, `--serve-artifacts` to the same
               S3, MLflow's default workers (4); same PostgreSQL server.
  peer-equal   the peer with ours' worker count: the secure defaults' cost without the worker difference.
  default      `mlflow server` with no arguments (SQLite and local artifacts in a scratch directory).
  ours-replica ours plus what postgresReadReplica renders, reading from a streaming standby: search_runs
               only, beside ours (bench/server/replica_bench.py).

Fairness:
  * one CPU: the measured server runs alone on CPU 1 (the dev stack's 1-CPU limit); the idle servers are
    parked on CPU 0, with the clients, PostgreSQL and S3 (and whatever else the machine runs).
  * settled: `/health` answers seconds before MLflow's job runner has started (8 huey consumers, each
    importing MLflow). A server is measured only once its process group has used < 10% of a CPU for
    2 s; the CPU seconds it burnt until then are reported.
  * interleaved: the API servers run at the same time; every workload runs on each server in turn, for
    ROUNDS rounds in alternating order, so load from outside the benchmark hits them alike. Throughput
    is the median over rounds; ratios are medians of per-round pairs; latencies pool all rounds.
Workloads: 8 client processes logging metrics (log_metric; log_batch of 100), search_runs over 1,000
runs, OpenTelemetry spans/s through /v1/traces (bench/server/trace_bench.py: ours and the peer),
artifact upload/download of 1 MiB and 256 MiB (median of repeats); the S3 server's own throughput
(boto3 straight to it over TLS with MLflow's keys, at its default part size and at the stack's part size;
the better one per direction) is the ceiling. Beside MLflow's client, a minimal client streaming the same
bytes in 1 MiB pieces (through the tracking server; from the same presigned ranges in direct mode), and
direct mode at other part sizes (MLFLOW_MULTIPART_UPLOAD/DOWNLOAD_CHUNK_SIZE). Loops are bounded in count; everything listens on 127.0.0.0/8.
Output: a table on stdout, build/bench/server.md, build/bench/server.json and build/bench/server.png.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "bench"
MIB = 2**20
CLIENTS = 8
SINGLE_PER_CLIENT = 30
BATCH_PER_CLIENT = 6
BATCH_SIZE = 100
SEARCH_RUNS = 1000
SEARCH_CLIENTS, SEARCH_PER_CLIENT = 2, 3
ROUNDS = 5
API_WORKLOADS = ("log_metric", "log_batch", "search_runs")
SMALL, LARGE = 1 * MIB, 256 * MIB
SMALL_REPEATS, LARGE_REPEATS = 5, 2
# direct mode: the bench lowers only the upload threshold (the stack's default is 500Mi) so that 256 MiB
# crosses it; the part size is the stack's clientEnvironment value.
DIRECT_THRESHOLD = 64 * MIB
# direct mode at other part sizes (MiB), besides the stack's own: which setting serves MLflow's client best.
DIRECT_SWEEP_MIB = (8, 16, 32, 64)
SERVER_CPU, PARK_CPU = 1, 0
# A server is settled once its process group used less than this share of a CPU over one window.
SETTLE_WINDOW_S, SETTLE_MAX_SHARE, SETTLE_TIMEOUT_S = 2.0, 0.10, 240.0
CEILING_BOTO3_DEFAULT = "boto3 default (8 MiB parts)"
MLFLOW_DEFAULT_WORKERS = 4  # `mlflow server` without --workers (mlflow/server/__init__.py: workers or 4)
NAMESPACE = "mlflow-dev"
PEER_DB, PEER_PASSWORD = "mlflow_peer", "peer-password-0123456789"
PEER_EQUAL_DB = "mlflow_peer_equal"
API_SERVERS = ("ours", "peer", "peer-equal", "default")
ARTIFACT_SERVERS = ("ours", "ours-direct", "peer", "default")
# Connection-reset retries of the client processes (shared across the forked pool).
RETRIES = multiprocessing.get_context("fork").Value("i", 0, lock=False)
TARGETS = {"secure_cost": 0.10, "proxied_of_ceiling": 0.50, "direct_of_ceiling": 0.90}


# --------------------------------------------------------------------------- small pure helpers
def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentiles(latencies: list[float]) -> dict:
    """p50/p95/p99 in ms of latencies in seconds (nearest rank)."""
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


def settle(
    read_cpu: Callable[[], float],
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
    window: float = SETTLE_WINDOW_S,
    max_share: float = SETTLE_MAX_SHARE,
    timeout: float = SETTLE_TIMEOUT_S,
) -> dict:
    """Wait until a process group uses less than `max_share` of a CPU over `window` seconds.

    Returns how long that took, the CPU seconds the group used meanwhile, and whether it settled
    before `timeout` (a server that never settles is measured anyway, and the report says so)."""
    start, cpu_start = now(), read_cpu()
    while True:
        before = read_cpu()
        sleep(window)
        after = read_cpu()
        if after - before < max_share * window:
            return {"seconds": now() - start, "cpu_s": after - cpu_start, "settled": True}
        if now() - start >= timeout:
            return {"seconds": now() - start, "cpu_s": after - cpu_start, "settled": False}


def summarize(samples: list[dict], per_request: int = 1) -> dict:
    """One server x workload over its rounds: median throughput (and the spread), pooled latencies,
    server CPU per request and new PostgreSQL sessions per 100 requests."""
    requests = sum(s["requests"] for s in samples)
    rates = [s["requests"] / s["wall_s"] for s in samples]
    sessions = [s["db_sessions"] for s in samples]
    return {
        "rounds": len(samples),
        "requests": requests,
        "requests_per_s": median(rates),
        "requests_per_s_min": min(rates),
        "requests_per_s_max": max(rates),
        "metrics_per_s": median(rates) * per_request,
        "cpu_ms_per_request": sum(s["cpu_s"] for s in samples) / requests * 1000,
        "db_sessions_per_100_requests": (
            None if any(x is None for x in sessions) else sum(sessions) / requests * 100  # type: ignore[misc]
        ),
        "load1": [round(s["load1"], 2) for s in samples],
        # The first request(s) of each client after the gap between rounds (see api_sample).
        "warmup_cpu_ms_per_client": (
            sum(s.get("warm_cpu_s", 0.0) for s in samples)
            / max(1, sum(s.get("warm_clients", 0) for s in samples))
            * 1000
        ),
        **percentiles([x for s in samples for x in s["latencies"]]),
    }


def paired_ratio(ours: list[dict], other: list[dict]) -> dict:
    """Throughput ratio of two servers, round by round (each pair measured back to back): median, min, max."""
    by_round = {s["round"]: s["requests"] / s["wall_s"] for s in other}
    ratios = [s["requests"] / s["wall_s"] / by_round[s["round"]] for s in ours if s["round"] in by_round]
    if not ratios:
        raise ValueError("no common rounds")
    return {"median": median(ratios), "min": min(ratios), "max": max(ratios), "rounds": len(ratios)}


def best_ceiling(ceilings: Mapping[str, Mapping[str, float]]) -> dict:
    """The S3 ceiling per direction: the best of the measured boto3 configurations (and which one)."""
    out: dict[str, Any] = {}
    for direction in ("upload_MBps", "download_MBps"):
        name = max(ceilings, key=lambda n: ceilings[n][direction])
        out[direction], out[direction.replace("_MBps", "_from")] = ceilings[name][direction], name
    return out


def share_of_ceiling(transfer: Mapping[str, float], ceiling: Mapping[str, float]) -> dict:
    up = transfer["upload_MBps"] / ceiling["upload_MBps"]
    down = transfer["download_MBps"] / ceiling["download_MBps"]
    return {"upload": up, "download": down, "worst": min(up, down)}


def workers_in(argv: list[str]) -> int:
    """uvicorn workers of an `mlflow server` command line (MLflow's default when absent)."""
    for flag in ("--workers", "-w"):
        if flag in argv:
            return int(argv[argv.index(flag) + 1])
    return MLFLOW_DEFAULT_WORKERS


def direct_client_environment(declared: Mapping[str, Mapping] | None = None) -> dict[str, str]:
    """What a client of a direct-mode stack sets (MlflowServer's clientEnvironment at the declared defaults),
    with the upload threshold lowered to DIRECT_THRESHOLD so the 256 MiB file goes over presigned parts."""
    import sizing
    from components.mlflow_server import client_environment
    from config import project_file

    declared = declared or project_file.declared()
    server = SimpleNamespace(
        request_timeout_seconds=declared["mlflowRequestTimeoutSeconds"]["default"],
        artifact_transfer="direct",
        multipart_threshold_bytes=int(sizing.quantity(declared["artifactMultipartThreshold"]["default"])),
        multipart_chunk_bytes=int(sizing.quantity(declared["artifactMultipartChunkSize"]["default"])),
    )
    env = client_environment(server)  # type: ignore[arg-type]
    env["MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"] = str(DIRECT_THRESHOLD)
    return env


# --------------------------------------------------------------------------- processes
def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp
            pids.append(int(entry))
    return pids


def _group_cpu_seconds(pgid: int) -> float:
    """user+system CPU of every live process in a process group (the server, its uvicorn workers, its
    job runner and huey consumers)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _group_pss_mib(pgid: int) -> float:
    """Proportional set size of a process group (shared pages split between their users)."""
    total = 0
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def _pin(pgid: int, cpu: int) -> None:
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def _focus(live: Mapping[str, Any], measured: str) -> None:
    """The measured server alone on SERVER_CPU, every other live server parked on PARK_CPU."""
    for name, srv in live.items():
        if name != measured:
            _pin(srv.pgid, PARK_CPU)
    _pin(live[measured].pgid, SERVER_CPU)


# --------------------------------------------------------------------------- tracking API clients
def _session(target: dict):
    import requests

    session = requests.Session()
    session.headers["Host"] = target["host_header"]
    if target.get("auth"):
        session.auth = tuple(target["auth"])
    return session


def _api(session, target: dict, path: str, body: dict) -> dict:
    import requests

    try:
        response = session.post(f"{target['url']}/api/2.0/mlflow/{path}", json=body, timeout=120)
    except requests.ConnectionError:
        # The server closed an idle kept-alive connection as the request went out (uvicorn's default
        # keep-alive is 5 s): nothing was processed; retry once on a new connection, and count it.
        RETRIES.value += 1
        response = session.post(f"{target['url']}/api/2.0/mlflow/{path}", json=body, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
    return response.json()


def _metric_client(job: tuple) -> list[float]:
    """One client process: its own run, `count` requests of one kind, latency of each."""
    target, kind, count, experiment_id = job
    session = _session(target)
    run_id = _api(
        session, target, "runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)}
    )["run"]["info"]["run_id"]
    latencies = []
    for i in range(count):
        now = int(time.time() * 1000)
        if kind == "log_metric":
            body, path = (
                {"run_id": run_id, "key": "loss", "value": 1.0 / (i + 1), "timestamp": now, "step": i},
                "runs/log-metric",
            )
        else:
            body, path = (
                {
                    "run_id": run_id,
                    "metrics": [
                        {"key": f"m{k}", "value": float(k), "timestamp": now, "step": i} for k in range(BATCH_SIZE)
                    ],
                },
                "runs/log-batch",
            )
        start = time.perf_counter()
        _api(session, target, path, body)
        latencies.append(time.perf_counter() - start)
    return latencies


def _create_runs(job: tuple) -> int:
    target, experiment_id, count = job
    session = _session(target)
    for i in range(count):
        _api(
            session,
            target,
            "runs/create",
            {"experiment_id": experiment_id, "start_time": i, "tags": [{"key": "seed", "value": str(i)}]},
        )
    return count


def _search_client(job: tuple) -> list[float]:
    target, experiment_id, count = job
    session = _session(target)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        found = _api(
            session,
            target,
            "runs/search",
            {"experiment_ids": [experiment_id], "max_results": 1000, "order_by": ["attributes.start_time DESC"]},
        )
        latencies.append(time.perf_counter() - start)
        if len(found.get("runs", [])) < SEARCH_RUNS:
            raise RuntimeError(f"search returned {len(found.get('runs', []))} runs")
    return latencies


def _parallel(jobs: list, function) -> list:
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        return pool.map(function, jobs)


def _experiment(target: dict, label: str) -> str:
    return _api(_session(target), target, "experiments/create", {"name": f"bench-{label}-{time.time_ns()}"})[
        "experiment_id"
    ]


def prepare_api(srv) -> None:
    """Per server, before the rounds: one experiment per workload, the 1,000 runs search_runs reads, and a
    warm-up of every workload (pools, caches, the auth cache)."""
    t = srv.target
    srv.experiments = {kind: _experiment(t, kind) for kind in API_WORKLOADS}
    _parallel([(t, srv.experiments["search_runs"], SEARCH_RUNS // CLIENTS)] * CLIENTS, _create_runs)
    for kind in ("log_metric", "log_batch"):
        _parallel([(t, kind, 2, _experiment(t, f"warmup-{kind}"))] * CLIENTS, _metric_client)
    _parallel([(t, srv.experiments["search_runs"], 1)], _search_client)


def api_sample(srv, kind: str, round_no: int, db_sessions: Callable[[], int | None]) -> dict:
    """One workload on one server: wall time, server CPU, new database sessions, latencies.

    The same clients first send one request each, unmeasured (its CPU is recorded): the sample is the
    sustained rate, not the cost of the first requests after an idle gap (an expired credential cache,
    connections the pool dropped), which the warm-up numbers show separately."""
    t = srv.target
    if kind == "search_runs":
        jobs, function = [(t, srv.experiments[kind], SEARCH_PER_CLIENT)] * SEARCH_CLIENTS, _search_client
        warm_jobs = [(t, srv.experiments[kind], 1)] * SEARCH_CLIENTS
    else:
        count = SINGLE_PER_CLIENT if kind == "log_metric" else BATCH_PER_CLIENT
        jobs, function = [(t, kind, count, srv.experiments[kind])] * CLIENTS, _metric_client
        warm_jobs = [(t, kind, 1, srv.experiments[kind])] * CLIENTS
    context = multiprocessing.get_context("fork")
    with context.Pool(len(jobs)) as pool:
        cpu_before = _group_cpu_seconds(srv.pgid)
        pool.map(function, warm_jobs)
        warm_cpu = _group_cpu_seconds(srv.pgid) - cpu_before
        load1, sessions_before = os.getloadavg()[0], db_sessions()
        cpu_before, start = _group_cpu_seconds(srv.pgid), time.perf_counter()
        results = pool.map(function, jobs)
        wall, cpu = time.perf_counter() - start, _group_cpu_seconds(srv.pgid) - cpu_before
        sessions_after = db_sessions()
    latencies = [x for r in results for x in r]
    return {
        "round": round_no,
        "requests": len(latencies),
        "wall_s": wall,
        "cpu_s": cpu,
        "load1": load1,
        "db_sessions": None if sessions_before is None else sessions_after - sessions_before,  # type: ignore[operator]
        "warm_clients": len(warm_jobs),
        "warm_cpu_s": warm_cpu,
        "latencies": latencies,
    }


# --------------------------------------------------------------------------- artifacts and S3
ARTIFACT_CLIENT = r"""
import json, os, statistics, sys, tempfile, time
import mlflow
from mlflow import MlflowClient
work = tempfile.mkdtemp(dir=os.getcwd())
client = MlflowClient()
experiment = client.create_experiment(f"bench-artifacts-{time.time_ns()}")
out = {}
for label, size, repeats in json.loads(os.environ["CASES"]):
    path = os.path.join(work, f"{label}.bin")
    with open(path, "wb") as handle:
        for _ in range(size // (1 << 20)):
            handle.write(os.urandom(1 << 20))
    up, down = [], []
    for _ in range(repeats):
        run_id = client.create_run(experiment).info.run_id
        start = time.perf_counter()
        client.log_artifact(run_id, path)
        up.append(time.perf_counter() - start)
        dst = tempfile.mkdtemp(dir=work)
        start = time.perf_counter()
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{label}.bin", dst_path=dst)
        down.append(time.perf_counter() - start)
        if os.path.getsize(os.path.join(dst, f"{label}.bin")) != size:
            raise SystemExit("short download")
        os.remove(os.path.join(dst, f"{label}.bin"))
    os.remove(path)
    out[label] = {"upload_s": statistics.median(up), "download_s": statistics.median(down)}
    if os.environ.get("PROXIED_PROBE"):
        # The same bytes through the tracking server, streamed in 1 MiB pieces by a minimal client: what
        # the server gives, MLflow's client aside.
        import requests
        uri = client.get_run(run_id).info.artifact_uri
        url = (os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow-artifacts/artifacts/"
               + uri.split(":/", 1)[1].lstrip("/") + f"/{label}.bin")
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) \
            if os.environ.get("MLFLOW_TRACKING_USERNAME") else None
        start = time.perf_counter()
        with requests.get(url, auth=auth, stream=True, timeout=600) as response:
            response.raise_for_status()
            got = sum(len(piece) for piece in response.iter_content(1 << 20))
        if got != size:
            raise SystemExit("short stream")
        out[label]["streamed_s"] = time.perf_counter() - start
    if os.environ.get("PRESIGNED_PROBE"):
        # The same presigned ranges MLflow's client fetched, read in parallel by streaming them in 1 MiB
        # pieces: what the object store gives a client through those URLs, MLflow's client aside.
        import threading
        import requests
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
        signed = repo._get_presigned_download_url(f"{label}.bin")
        chunk = int(os.environ["MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE"])
        def fetch(first, last):
            headers = {**(signed.headers or {}), "Range": f"bytes={first}-{last}"}
            with requests.get(signed.url, headers=headers, stream=True, timeout=600) as response:
                response.raise_for_status()
                got = sum(len(piece) for piece in response.iter_content(1 << 20))
            if got != last - first + 1:
                raise SystemExit("short range")
        threads = [threading.Thread(target=fetch, args=(a, min(a + chunk, size) - 1)) for a in range(0, size, chunk)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out[label]["presigned_ranges_s"] = time.perf_counter() - start
print(json.dumps(out))
"""


def artifact_workloads(srv, client_env: dict, work: Path, cases: tuple) -> dict:
    from tools.loopback import services as svc

    target = srv.target
    work.mkdir(parents=True, exist_ok=True)
    env = {
        "MLFLOW_TRACKING_URI": target["tracking_uri"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
        "CASES": json.dumps(cases),
        **client_env,
    }
    if target.get("auth"):
        env.update(MLFLOW_TRACKING_USERNAME=target["auth"][0], MLFLOW_TRACKING_PASSWORD=target["auth"][1])
    cpu_before = _group_cpu_seconds(srv.pgid)
    proc = svc.run_python_client(
        ARTIFACT_CLIENT,
        workdir=work,
        env=env,
        host_map=target["host_map"],
        deny=(),
        name=f"artifacts-{time.time_ns()}",
        timeout=1200,
    )
    cpu = _group_cpu_seconds(srv.pgid) - cpu_before
    result = svc.last_json_line(proc.stdout)
    out: dict[str, Any] = {}
    for label, size, _ in cases:
        out[label] = {
            "upload_MBps": size / MIB / result[label]["upload_s"],
            "download_MBps": size / MIB / result[label]["download_s"],
        }
        if "presigned_ranges_s" in result[label]:
            out[label]["presigned_ranges_MBps"] = size / MIB / result[label]["presigned_ranges_s"]
        if "streamed_s" in result[label]:
            out[label]["streamed_MBps"] = size / MIB / result[label]["streamed_s"]
    out["server_cpu_s"] = cpu
    return out


def s3_ceiling(env, work: Path, part_size: int | None) -> dict:
    """boto3 straight to the S3 server over TLS, with MLflow's keys into MLflow's bucket (what the server
    itself may do): 256 MiB up and down, at boto3's default transfer settings (part_size None: 8 MiB
    parts) or with parts of part_size."""
    from boto3.s3.transfer import TransferConfig

    from tools.loopback import services as svc

    path = work / "ceiling.bin"
    if not path.exists():
        with open(path, "wb") as handle:
            for _ in range(LARGE // MIB):
                handle.write(os.urandom(MIB))
    config = TransferConfig() if part_size is None else TransferConfig(multipart_chunksize=part_size)
    key = f"bench-ceiling/{time.time_ns()}.bin"
    with svc.dns_patched(env.host_map):
        client = env.s3.client(
            endpoint_name=env.r.s3_host,
            ca_file=env.ca,
            access_key=env.r.env["AWS_ACCESS_KEY_ID"],
            secret_key=env.r.env["AWS_SECRET_ACCESS_KEY"],
        )
        start = time.perf_counter()
        client.upload_file(str(path), env.bucket, key, Config=config)
        up = time.perf_counter() - start
        start = time.perf_counter()
        client.download_file(env.bucket, key, str(work / "ceiling.out"), Config=config)
        down = time.perf_counter() - start
        client.delete_object(Bucket=env.bucket, Key=key)
    (work / "ceiling.out").unlink()
    return {"upload_MBps": LARGE / MIB / up, "download_MBps": LARGE / MIB / down}


# --------------------------------------------------------------------------- unit costs
def auth_hash_cpu_ms(checks: int = 3) -> float:
    """CPU of one basic-auth password check without the cache: MLflow stores werkzeug's default hash."""
    from werkzeug.security import check_password_hash, generate_password_hash

    stored = generate_password_hash("bench-password-0123456789")
    times = []
    for _ in range(checks):
        start = time.process_time()
        check_password_hash(stored, "bench-password-0123456789")
        times.append(time.process_time() - start)
    return median(times) * 1000


def pg_connect_cpu_ms(env, work: Path, connections: int = 10) -> dict:
    """Client CPU of opening one PostgreSQL connection (what a server pays for each new pooled
    connection): ours (TLS verify-full + SCRAM) and the peer's (SCRAM, no TLS)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(env.r.env["MLFLOW_BACKEND_STORE_URI"])
    ca = work / "postgres-ca.crt"
    ca.write_text(env.r.pg_tls["ca.crt"])
    address = env.host_map[env.r.pg_host]
    modes = {
        "verify-full": {
            "user": url.username,
            "password": env.r.env["PGPASSWORD"],  # the URI carries none (it reaches argv)
            "dbname": url.database,
            "sslmode": "verify-full",
            "sslrootcert": str(ca),
        },
        "no TLS": {"user": PEER_DB, "password": PEER_PASSWORD, "dbname": PEER_DB, "sslmode": "disable"},
    }
    out = {}
    for mode, params in modes.items():
        start = time.process_time()
        for _ in range(connections):
            psycopg2.connect(host=env.r.pg_host, hostaddr=address, port=env.r.pg_port, **params).close()
        out[mode] = (time.process_time() - start) / connections * 1000
    return out


# --------------------------------------------------------------------------- the servers
@contextlib.contextmanager
def environment(work: Path):
    """The dev stack's data services, as the integration layer runs them."""
    from tools.loopback import services as svc
    from tools.loopback import wiring

    r = wiring.render("dev", namespace=NAMESPACE)
    pg_ip, s3_ip = svc.free_loopback_address(r.pg_port), svc.free_loopback_address(r.s3_port)
    host_map = {r.pg_host: pg_ip, r.s3_host: s3_ip}
    work.mkdir(parents=True, exist_ok=True)
    (work / "minio-ca.crt").write_text(r.minio_tls["ca.crt"])
    # The peers connect without TLS: one rule for their role, before the stack's TLS-only rules.
    hba = svc.cnpg_hba([f"host {PEER_DB},{PEER_EQUAL_DB} {PEER_DB} all scram-sha-256", *r.pg_hba])
    with wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip, hba_rules=hba) as data:
        pg, s3 = data.pg, data.s3
        pg.ensure_role(PEER_DB, PEER_PASSWORD)
        for database in (PEER_DB, PEER_EQUAL_DB):
            pg.ensure_database(database, PEER_DB)
        yield SimpleNamespace(r=r, pg=pg, s3=s3, host_map=host_map, ca=str(work / "minio-ca.crt"), bucket=data.bucket)


@contextlib.contextmanager
def serve(r, container: dict, secrets: dict, host_map: dict, work: Path):
    """`mlflow server` from a rendered container (its env and mounted files), on a loopback address;
    yields (server, how a client reaches it)."""
    from tools.loopback import services as svc

    files = svc.files_by_mount_from_pod(r.pod, container, secrets=secrets, config_maps=r.config_maps)
    ip = svc.free_loopback_address(5000)
    with svc.mlflow_server_from_container(
        container,
        secrets=secrets,
        files_by_mount=files,
        host_map=host_map,
        workdir=work,
        listen_addr=ip,
        config_maps=r.config_maps,
        timeout=300,
    ) as server:
        host = f"mlflow.{r.namespace}.svc"
        yield (
            server,
            {
                "url": f"http://{ip}:{server.port}",
                "host_header": host,
                "tracking_uri": f"http://{host}:{server.port}",
                "auth": [r.outputs["adminUser"], r.outputs["adminPassword"]],
                "host_map": {host: ip, **host_map},
            },
        )


@contextlib.contextmanager
def ours(env, work: Path, direct: bool = False):
    r = env.r
    container = json.loads(json.dumps(r.container))
    if direct:  # exactly what artifactTransferMode: direct adds to the container
        container["env"] += [
            {"name": n, "value": "true"}
            for n in ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD")
        ]
    with serve(r, container, r.secrets, env.host_map, work) as served:
        yield served


@contextlib.contextmanager
def peer(env, work: Path, workers: int | None = None, database: str = PEER_DB):
    from tools.loopback import services as svc

    ip = svc.free_loopback_address(5000)
    container = {
        "name": "mlflow",
        "command": ["mlflow"],
        "args": [
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            "5000",
            # psycopg2, the driver the -full image ships (a bare postgresql:// means psycopg 3 to MLflow 3.18).
            "--backend-store-uri",
            f"postgresql+psycopg2://{PEER_DB}:{PEER_PASSWORD}@{env.r.pg_host}:{env.r.pg_port}/{database}"
            "?sslmode=disable",
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://mlflow/{database}",
            *(["--workers", str(workers)] if workers else []),
        ],
        "env": [
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": f"https://{env.r.s3_host}:{env.r.s3_port}"},
            {"name": "AWS_ACCESS_KEY_ID", "value": env.r.env["AWS_ACCESS_KEY_ID"]},
            {"name": "AWS_SECRET_ACCESS_KEY", "value": env.r.env["AWS_SECRET_ACCESS_KEY"]},
            {"name": "AWS_CA_BUNDLE", "value": env.ca},
            {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        ],
    }
    with svc.mlflow_server_from_container(
        container, secrets={}, files_by_mount={}, host_map=env.host_map, workdir=work, listen_addr=ip, timeout=300
    ) as server:
        # MLflow's default allowed hosts: localhost, 127.0.0.1 and private ranges, not 127.0.0.x.
        yield (
            server,
            {
                "url": f"http://{ip}:{server.port}",
                "host_header": f"localhost:{server.port}",
                "tracking_uri": f"http://localhost:{server.port}",
                "host_map": {**env.host_map, f"localhost:{server.port}": f"{ip}:{server.port}"},
            },
        )


@contextlib.contextmanager
def mlflow_default(env, work: Path):
    """`mlflow server` with no arguments: it listens on 127.0.0.1:5000 itself."""
    from tools.loopback import services as svc

    container = {
        "name": "mlflow",
        "command": ["mlflow"],
        "args": ["server"],
        "env": [{"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"}],
    }
    with svc.mlflow_server_from_container(
        container, secrets={}, files_by_mount={}, host_map={}, workdir=work, listen_addr="127.0.0.1", timeout=300
    ) as server:
        if server.argv != ["mlflow", "server", "--host", "127.0.0.1"]:
            raise RuntimeError(f"unexpected argv {server.argv}")
        yield (
            server,
            {
                "url": "http://127.0.0.1:5000",
                "host_header": "127.0.0.1:5000",
                "tracking_uri": "http://127.0.0.1:5000",
                "host_map": {},
            },
        )


def start_settled(stack: contextlib.ExitStack, name: str, manager, databases: tuple = ()) -> SimpleNamespace:
    """Start a server, pin it to SERVER_CPU (like the pod's CPU limit) and wait until it is settled."""
    server, target = stack.enter_context(manager)
    pgid = server.process.pid
    _pin(pgid, SERVER_CPU)
    startup = settle(lambda: _group_cpu_seconds(pgid))
    startup["pss_mib"] = _group_pss_mib(pgid)
    return SimpleNamespace(
        name=name,
        server=server,
        target=target,
        pgid=pgid,
        workers=workers_in(server.argv),
        startup=startup,
        databases=databases,
        retries=0,
        experiments={},
    )


def db_session_counter(env, databases: tuple) -> Callable[[], int | None]:
    """Sessions PostgreSQL has established so far to these databases (pg_stat_database.sessions)."""

    def count() -> int | None:
        if not databases:
            return None
        names = ",".join(f"'{d}'" for d in databases)
        text = env.pg.psql(f"select coalesce(sum(sessions), 0) from pg_stat_database where datname in ({names})")
        return int(text.strip())

    return count


def _take_retries(srv) -> None:
    srv.retries += RETRIES.value
    RETRIES.value = 0


# --------------------------------------------------------------------------- report
def compare(samples: Mapping[str, Mapping[str, list[dict]]], summaries: Mapping, a: str, b: str) -> dict:
    out = {}
    for workload in API_WORKLOADS:
        sa, sb = summaries[a][workload], summaries[b][workload]
        out[workload] = {
            "throughput": paired_ratio(samples[a][workload], samples[b][workload]),
            "p95": sa["p95_ms"] / sb["p95_ms"],
            "cpu_per_request": sa["cpu_ms_per_request"] / sb["cpu_ms_per_request"],
        }
    return out


def verdicts(report: dict) -> list[str]:
    out = []
    vs_peer = report["ratios"]["ours/peer"]
    worst = min(vs_peer.values(), key=lambda r: r["throughput"]["median"])
    worst_name = next(w for w, r in vs_peer.items() if r is worst)
    value = worst["throughput"]["median"]
    out.append(
        f"secure defaults cost <= {TARGETS['secure_cost']:.0%} throughput vs the peer's default: worst ours/peer "
        f"{value:.2f} ({worst_name}) -> {'MET' if value >= 1 - TARGETS['secure_cost'] else 'MISSED'}"
    )
    equal = report["ratios"]["ours/peer-equal"]
    worst_equal = min(r["throughput"]["median"] for r in equal.values())
    out.append(f"(fairness check, not a target: at equal workers the worst ours/peer-equal is {worst_equal:.2f})")
    for name, key, label in (("ours", "proxied_of_ceiling", "proxied"), ("ours-direct", "direct_of_ceiling", "direct")):
        share, same = report["shares"][name]["worst"], report["shares_same_pattern"][name]["worst"]
        out.append(
            f"{label} 256 MiB >= {TARGETS[key]:.0%} of the S3 ceiling: worst direction {share:.0%} -> "
            f"{'MET' if share >= TARGETS[key] else 'MISSED'} (against boto3 with the parts this path uses, "
            f"{report['ceiling_pattern'][name]}: {same:.0%})"
        )
    return out


def where_the_time_goes(report: dict) -> list[str]:
    """Findings from this run's own measurements."""
    res, servers, costs = report["results"], report["servers"], report["costs"]
    lines = []
    startup = ", ".join(
        f"{n} {s['startup']['cpu_s']:.0f} CPU-s in {s['startup']['seconds']:.0f} s"
        + ("" if s["startup"]["settled"] else " (never settled)")
        for n, s in servers.items()
    )
    lines.append(
        "Start-up: /health answers before MLflow's job runner has started; its 8 huey consumers each import "
        f"MLflow. CPU burnt after /health until settled: {startup}. Measured before settling, the first "
        "workloads shared the one CPU with these imports (the earlier runs of this benchmark did)."
    )
    memory = ", ".join(f"{n} {s['startup']['pss_mib']:.0f} MiB" for n, s in servers.items())
    lines.append(
        f"Memory once settled (PSS of the whole process group): {memory}; most of it is the job runner "
        "and its consumers, not the uvicorn workers."
    )
    ow, pw = servers["ours"]["workers"], servers["peer"]["workers"]
    peer_gain = {
        w: res["peer"]["api"][w]["requests_per_s"] / res["peer-equal"]["api"][w]["requests_per_s"]
        for w in API_WORKLOADS
    }
    lines.append(
        f"Workers: ours renders {ow} (one per CPU of the limit), the peer runs MLflow's default {pw}, on the same "
        "CPU. The peer with "
        f"{pw} vs {ow} worker(s): "
        + ", ".join(f"{w} {g:.2f}x" for w, g in peer_gain.items())
        + " -- the part of ours/peer that is worker count, not security."
    )
    eq = report["ratios"]["ours/peer-equal"]
    cpu_delta = {
        w: res["ours"]["api"][w]["cpu_ms_per_request"] - res["peer-equal"]["api"][w]["cpu_ms_per_request"]
        for w in API_WORKLOADS
    }
    lines.append(
        "Secure defaults at equal workers (auth on every request, TLS verify-full to PostgreSQL, the "
        "Prometheus exporter): server CPU per request ours minus peer-equal "
        + ", ".join(f"{w} {d:+.1f} ms ({eq[w]['cpu_per_request']:.2f}x)" for w, d in cpu_delta.items())
        + ". A py-spy profile of log_metric (GIL samples, taken while writing this benchmark, not re-run "
        "here) puts the difference in MLflow's basic-auth app: its FastAPI permission middleware (a "
        "Starlette BaseHTTPMiddleware plus a scan of the routes) and the Flask before_request hook that "
        "loads the user from the auth database on every request; none of it is configurable."
    )
    warm = {n: res[n]["api"]["log_metric"]["warmup_cpu_ms_per_client"] for n in ("ours", "peer-equal")}
    lines.append(
        f"Password hash: a check costs {costs['auth_hash_cpu_ms']:.0f} ms of CPU (werkzeug's default scrypt). "
        f"Ours caches a checked credential for {costs['auth_cache_seconds']} s per worker "
        "(basic_auth.ini auth_cache_ttl_seconds, read by mlflow/server/auth/config.py and used by "
        "_authenticate_cached), so a busy client pays it about once per worker per window instead of on "
        "every request; once the entry has expired, every request already in flight pays it (MLflow does "
        "not coalesce them). Measured: the first requests of each client after the gap between samples "
        f"(runs/create + log_metric, unmeasured warm-up) cost ours {warm['ours']:.0f} ms of CPU per client, "
        f"peer-equal {warm['peer-equal']:.0f} ms; the samples themselves are sustained rates."
    )
    sessions = {
        n: {w: res[n]["api"][w]["db_sessions_per_100_requests"] for w in API_WORKLOADS}
        for n in ("ours", "peer", "peer-equal")
    }
    pg = costs["pg_connect_cpu_ms"]
    lines.append(
        f"PostgreSQL connections: opening one costs the server {pg['verify-full']:.1f} ms of CPU with TLS "
        f"verify-full (ours) and {pg['no TLS']:.1f} ms without (SCRAM alone). New sessions per 100 requests "
        "(connections the pool did not keep): "
        + "; ".join(
            f"{n} " + ", ".join(f"{w} {v:.0f}" for w, v in per.items() if v is not None) for n, per in sessions.items()
        )
        + ". SQLAlchemy keeps 5 connections per engine by default and closes any extra one after use; a "
        "single worker with 8 concurrent clients needs more, so ours renders "
        f"{report['pool']}."
    )
    c, direct = report["ceilings"], res["ours-direct"]["artifacts"]["256MiB"]
    proxied = res["ours"]["artifacts"]["256MiB"]
    streamed = (
        f" A minimal client streaming the same download through the tracking server in 1 MiB pieces gets "
        f"{proxied['streamed_MBps']:.0f} MB/s against MLflow's {proxied['download_MBps']:.0f} MB/s."
        if "streamed_MBps" in proxied
        else ""
    )
    lines.append(
        "Artifacts: the ceiling is MinIO's over TLS, boto3 with MLflow's keys into its bucket: "
        + "; ".join(f"{n} up {v['upload_MBps']:.0f} / down {v['download_MBps']:.0f} MB/s" for n, v in c.items())
        + ". The proxied server moves bytes with boto3's defaults (8 MiB ranges and parts; MLflow exposes no "
        "transfer settings) and stores an upload whole before it sends it on (two transfers in a row, at best "
        "half the ceiling)."
        + streamed
        + f" Direct clients use the stack's part size ({report['direct_chunk_mib']:.0f} MiB, clientEnvironment); "
        f"the server only signs URLs ({res['ours-direct']['artifacts']['server_cpu_s']:.1f} CPU-s for all "
        "direct transfers). The same presigned ranges streamed in 1 MiB pieces come at "
        f"{direct['presigned_ranges_MBps']:.0f} MB/s against MLflow's {direct['download_MBps']:.0f} MB/s: the "
        "direct download's gap is MLflow's client (mlflow/utils/request_utils.py download_chunk reads each "
        "range whole with stream=False, i.e. in requests' 10 KiB pieces, then writes it), not the server "
        "or the part size."
    )
    sweep = report.get("direct_sweep")
    if sweep:
        best_up = max(sweep, key=lambda m: sweep[m]["upload_MBps"])
        best_down = max(sweep, key=lambda m: sweep[m]["download_MBps"])
        lines.append(
            "Direct mode by part size (MLFLOW_MULTIPART_UPLOAD/DOWNLOAD_CHUNK_SIZE, one 256 MiB transfer each): "
            + "; ".join(
                f"{m} MiB up {v['upload_MBps']:.0f} / down {v['download_MBps']:.0f} MB/s" for m, v in sweep.items()
            )
            + f". Best for MLflow's client: {best_up} MiB parts up, {best_down} MiB down."
        )
    return lines


def render(report: dict) -> str:
    res, servers = report["results"], report["servers"]
    lines = [
        "# Tracking server benchmark",
        "",
        f"MLflow {report['mlflow_version']}; {report['cpus']} CPUs; load average (1, 5, 15 min) before "
        f"{report['load_before']}, after {report['load_after']}. {CLIENTS} client processes; "
        f"{report['rounds']} interleaved rounds; the measured server alone on CPU {SERVER_CPU}, the others "
        f"parked on CPU {PARK_CPU}; each measured only after settling (< {SETTLE_MAX_SHARE:.0%} CPU for "
        f"{SETTLE_WINDOW_S:.0f} s).",
        "",
        "| server | workers | PostgreSQL | auth | settled after | startup CPU s |",
        "|---|---:|---|---|---:|---:|",
    ]
    for name, s in servers.items():
        lines.append(
            f"| {name} | {s['workers']} | {s['database']} | {s['auth']} | {s['startup']['seconds']:.0f} s"
            f"{'' if s['startup']['settled'] else ' (not settled)'} | {s['startup']['cpu_s']:.1f} |"
        )
    lines += [
        "",
        "| server | workload | req/s (median) | min-max | metrics/s | p50 ms | p95 ms | p99 ms "
        "| server CPU ms / req | new DB sessions / 100 req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in API_SERVERS:
        for workload, m in res[name]["api"].items():
            sessions = m["db_sessions_per_100_requests"]
            lines.append(
                f"| {name} | {workload} | {m['requests_per_s']:.1f} | {m['requests_per_s_min']:.1f}-"
                f"{m['requests_per_s_max']:.1f} | {m['metrics_per_s'] if workload != 'search_runs' else 0:.0f} | "
                f"{m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['p99_ms']:.1f} | {m['cpu_ms_per_request']:.1f} | "
                f"{'-' if sessions is None else f'{sessions:.0f}'} |"
            )
    lines += [
        "",
        "| ratio | workload | throughput (median of rounds, min-max) | p95 latency | CPU per request |",
        "|---|---|---:|---:|---:|",
    ]
    for pair, by_workload in report["ratios"].items():
        for workload, r in by_workload.items():
            t = r["throughput"]
            lines.append(
                f"| {pair} | {workload} | {t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f}) | {r['p95']:.2f} | "
                f"{r['cpu_per_request']:.2f} |"
            )
    ceiling = report["ceiling"]
    lines += [
        "",
        "| server | artifact | upload MB/s | download MB/s | of the ceiling (up / down) "
        "| of boto3 with the same parts (up / down) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in ARTIFACT_SERVERS:
        for label in ("1MiB", "256MiB"):
            if label not in res[name]["artifacts"]:
                continue
            a = res[name]["artifacts"][label]
            shown = ["", ""]
            if label == "256MiB":
                for i, shares in enumerate((report["shares"][name], report["shares_same_pattern"][name])):
                    shown[i] = f"{shares['upload']:.0%} / {shares['download']:.0%}"
            lines.append(
                f"| {name} | {label} | {a['upload_MBps']:.1f} | {a['download_MBps']:.1f} | {shown[0]} | {shown[1]} |"
            )
    for name, c in report["ceilings"].items():
        lines.append(f"| S3 ceiling: {name} | 256MiB | {c['upload_MBps']:.1f} | {c['download_MBps']:.1f} | | |")
    lines.append(
        f"| S3 ceiling (best per direction) | 256MiB | {ceiling['upload_MBps']:.1f} | "
        f"{ceiling['download_MBps']:.1f} | 100% | |"
    )
    lines.append("")
    lines.append(
        "Client retries after a connection the server closed (keep-alive race): "
        + ", ".join(f"{name} {r.get('client_retries', 0)}" for name, r in res.items())
    )
    if "traces" in report:  # OpenTelemetry spans/s (bench/server/trace_bench.py)
        from bench.server import trace_bench

        lines += trace_bench.render_lines(report["traces"])
    if "replica" in report:  # search_runs with a read replica (bench/server/replica_bench.py)
        from bench.server import replica_bench

        lines += replica_bench.render_lines(report["replica"])
    lines += ["", "## Targets", ""]
    lines += [f"- {line}" for line in report["verdicts"]]
    lines += ["", "## Where the time goes", ""]
    lines += [f"- {line}" for line in report["where_the_time_goes"]]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / len(API_SERVERS)
    for i, name in enumerate(API_SERVERS):
        values = [res[name]["api"][w] for w in API_WORKLOADS]
        medians = [v["requests_per_s"] for v in values]
        spread = [
            [m - v["requests_per_s_min"] for m, v in zip(medians, values, strict=True)],
            [v["requests_per_s_max"] - m for m, v in zip(medians, values, strict=True)],
        ]
        left.bar(
            [w + i * width for w in range(len(API_WORKLOADS))],
            medians,
            width,
            yerr=spread,
            capsize=3,
            label=f"{name} ({report['servers'][name]['workers']}w)",
        )
    left.set_xticks([w + width * (len(API_SERVERS) - 1) / 2 for w in range(len(API_WORKLOADS))], API_WORKLOADS)
    left.set_ylabel("requests/s (median, min-max over rounds)")
    left.set_title(f"Tracking API, {CLIENTS} clients, server on 1 CPU")
    left.legend()
    names = [*ARTIFACT_SERVERS, "S3 ceiling"]
    for i, direction in enumerate(("upload_MBps", "download_MBps")):
        right.bar(
            [n + i * 0.4 for n in range(len(names))],
            [res[n]["artifacts"]["256MiB"][direction] for n in ARTIFACT_SERVERS] + [report["ceiling"][direction]],
            0.4,
            label=direction.split("_")[0],
        )
    right.set_xticks([n + 0.2 for n in range(len(names))], names)
    right.set_ylabel("MB/s")
    right.set_title("256 MiB artifact")
    right.legend()
    fig.suptitle(f"MLflow {report['mlflow_version']} tracking server, load average before {report['load_before']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the run
def auth_cache_seconds(secrets: Mapping[str, Mapping[str, str]]) -> int:
    """auth_cache_ttl_seconds of the rendered basic_auth.ini (MLflow's default 0 when absent)."""
    import configparser

    for data in secrets.values():
        if "basic_auth.ini" in data:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(data["basic_auth.ini"])
            return parser.getint("mlflow", "auth_cache_ttl_seconds", fallback=0)
    return 0


def ours_databases(r) -> tuple[str, ...]:
    """The tracking and auth databases of the rendered server (their new sessions are counted)."""
    import configparser

    from sqlalchemy.engine import make_url

    names = [make_url(r.env["MLFLOW_BACKEND_STORE_URI"]).database]
    for data in r.secrets.values():
        if "basic_auth.ini" in data:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(data["basic_auth.ini"])
            names.append(make_url(parser["mlflow"]["database_uri"]).database)
    return tuple(n for n in names if n)


def _pool_setting(env) -> str:
    pool = {k: v for k, v in env.r.env.items() if k.startswith("MLFLOW_SQLALCHEMYSTORE_")}
    return ", ".join(f"{k}={v}" for k, v in sorted(pool.items())) or "no pool settings (SQLAlchemy's 5 + 10)"


def main() -> dict:
    from importlib.metadata import version

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    OUT.mkdir(parents=True, exist_ok=True)
    progress = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {
        "mlflow_version": version("mlflow"),
        "cpus": os.cpu_count(),
        "rounds": ROUNDS,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "results": {},
        "servers": {},
    }
    direct_env = direct_client_environment()
    direct_chunk = int(direct_env["MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE"])
    report["direct_client_environment"] = direct_env
    report["direct_chunk_mib"] = direct_chunk / MIB
    # The ceiling is the best of boto3's defaults, the stack's part size and large (100 MiB) parts, so a
    # smaller part size cannot lower the bar the direct path is measured against.
    ceiling_configs = {
        CEILING_BOTO3_DEFAULT: None,
        f"boto3 {direct_chunk // MIB} MiB parts": direct_chunk,
        "boto3 100 MiB parts": 100 * MIB,
    }
    # The transfer shape each path uses against S3: the proxied server's boto3 defaults, the direct
    # client's presigned parts.
    report["ceiling_pattern"] = {
        name: f"boto3 {direct_chunk // MIB} MiB parts" if name == "ours-direct" else CEILING_BOTO3_DEFAULT
        for name in ARTIFACT_SERVERS
    }
    ceiling_samples: dict[str, list[dict]] = {name: [] for name in ceiling_configs}

    def measure_ceilings(env, work: Path) -> None:
        for name, part in ceiling_configs.items():
            progress(f"S3 ceiling, {name}")
            ceiling_samples[name].append(s3_ceiling(env, work, part))

    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        work = Path(tmp)
        with environment(work / "env") as env:
            report["pool"] = _pool_setting(env)
            report["costs"] = {
                "auth_hash_cpu_ms": auth_hash_cpu_ms(),
                "pg_connect_cpu_ms": pg_connect_cpu_ms(env, work),
                "auth_cache_seconds": auth_cache_seconds(env.r.secrets),
            }
            samples: dict[str, dict[str, list[dict]]] = {n: {w: [] for w in API_WORKLOADS} for n in API_SERVERS}
            with contextlib.ExitStack() as stack:
                live: dict[str, SimpleNamespace] = {}
                starts = (
                    ("default", lambda: mlflow_default(env, work / "default"), ()),
                    ("ours", lambda: ours(env, work / "ours"), ours_databases(env.r)),
                    ("peer", lambda: peer(env, work / "peer"), (PEER_DB,)),
                    (
                        "peer-equal",
                        lambda: peer(env, work / "peer-equal", workers=live["ours"].workers, database=PEER_EQUAL_DB),
                        (PEER_EQUAL_DB,),
                    ),
                )
                for name, manager, databases in starts:
                    progress(f"{name}: starting and settling")
                    live[name] = start_settled(stack, name, manager(), databases)
                    _pin(live[name].pgid, PARK_CPU)
                for name, srv in live.items():
                    progress(f"{name}: warm-up and 1,000 runs for search")
                    _focus(live, name)
                    prepare_api(srv)
                    _take_retries(srv)
                for round_no in range(ROUNDS):
                    order = list(live) if round_no % 2 == 0 else list(live)[::-1]
                    progress(f"round {round_no + 1}/{ROUNDS}: {', '.join(order)}")
                    for workload in API_WORKLOADS:
                        for name in order:
                            _focus(live, name)
                            counter = db_session_counter(env, live[name].databases)
                            samples[name][workload].append(api_sample(live[name], workload, round_no, counter))
                            _take_retries(live[name])
                from bench.server import trace_bench

                report["traces"] = trace_bench.measure(live, _focus, _group_cpu_seconds, progress)
                from bench.server import replica_bench  # search_runs, ours with and without a read replica

                report["replica"] = replica_bench.measure(env, work / "replica", live, progress)
                measure_ceilings(env, work)
                for name in ("ours", "peer", "default"):
                    progress(f"{name}: artifacts")
                    _focus(live, name)
                    report["results"][name] = {
                        "artifacts": artifact_workloads(
                            live[name],
                            {"PROXIED_PROBE": "1"},
                            work / f"{name}-artifacts",
                            (("1MiB", SMALL, SMALL_REPEATS), ("256MiB", LARGE, LARGE_REPEATS)),
                        )
                    }
                    _take_retries(live[name])
                for name, srv in live.items():
                    report["results"].setdefault(name, {})["client_retries"] = srv.retries
                    report["servers"][name] = {"workers": srv.workers, "startup": srv.startup}
            progress("ours-direct: starting and settling")
            with contextlib.ExitStack() as stack:
                srv = start_settled(stack, "ours-direct", ours(env, work / "ours-direct", direct=True))
                direct_client = {"REQUESTS_CA_BUNDLE": env.ca, "PRESIGNED_PROBE": "1", **direct_env}
                direct_runs = []
                for repeat in range(LARGE_REPEATS):
                    measure_ceilings(env, work)
                    progress(f"ours-direct: artifacts ({repeat + 1}/{LARGE_REPEATS})")
                    direct_runs.append(
                        artifact_workloads(srv, direct_client, work / f"direct-{repeat}", (("256MiB", LARGE, 1),))
                    )
                sweep: dict[int, dict] = {}
                for mib in DIRECT_SWEEP_MIB:
                    progress(f"ours-direct: artifacts with {mib} MiB parts")
                    chunk_env = {
                        **direct_client,
                        "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(mib * MIB),
                        "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(mib * MIB),
                    }
                    sweep[mib] = artifact_workloads(srv, chunk_env, work / f"direct-{mib}", (("256MiB", LARGE, 1),))[
                        "256MiB"
                    ]
                sweep[direct_chunk // MIB] = {
                    d: median(r["256MiB"][d] for r in direct_runs)
                    for d in ("upload_MBps", "download_MBps", "presigned_ranges_MBps")
                }
                report["direct_sweep"] = {str(k): sweep[k] for k in sorted(sweep)}
                _take_retries(srv)
                report["results"]["ours-direct"] = {
                    "artifacts": {
                        "256MiB": {
                            d: median(r["256MiB"][d] for r in direct_runs)
                            for d in ("upload_MBps", "download_MBps", "presigned_ranges_MBps")
                        },
                        "server_cpu_s": sum(r["server_cpu_s"] for r in direct_runs),
                    },
                    "client_retries": srv.retries,
                }
                report["servers"]["ours-direct"] = {"workers": srv.workers, "startup": srv.startup}
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    for name in API_SERVERS:
        report["results"][name]["api"] = {
            w: summarize(samples[name][w], BATCH_SIZE if w == "log_batch" else 1) for w in API_WORKLOADS
        }
        report["results"][name]["api_rounds"] = {
            w: [{k: v for k, v in s.items() if k != "latencies"} for s in samples[name][w]] for w in API_WORKLOADS
        }
    for name, s in report["servers"].items():
        s["database"] = {
            "ours": "TLS verify-full",
            "ours-direct": "TLS verify-full",
            "peer": "no TLS",
            "peer-equal": "no TLS",
        }.get(name, "SQLite")
        s["auth"] = "basic auth" if name.startswith("ours") else "none"
    (OUT / "server.json").write_text(json.dumps(report, indent=2))  # the measurements first
    summaries = {n: report["results"][n]["api"] for n in API_SERVERS}
    report["ratios"] = {
        "ours/peer": compare(samples, summaries, "ours", "peer"),
        "ours/peer-equal": compare(samples, summaries, "ours", "peer-equal"),
    }
    report["ceilings"] = {
        name: {d: median(x[d] for x in values) for d in ("upload_MBps", "download_MBps")}
        for name, values in ceiling_samples.items()
    }
    report["ceiling"] = best_ceiling(report["ceilings"])
    report["shares"] = {
        name: share_of_ceiling(report["results"][name]["artifacts"]["256MiB"], report["ceiling"])
        for name in ARTIFACT_SERVERS
    }
    report["shares_same_pattern"] = {
        name: share_of_ceiling(
            report["results"][name]["artifacts"]["256MiB"], report["ceilings"][report["ceiling_pattern"][name]]
        )
        for name in ARTIFACT_SERVERS
    }
    report["verdicts"] = verdicts(report)
    report["where_the_time_goes"] = where_the_time_goes(report)
    text = render(report)
    (OUT / "server.md").write_text(text)
    (OUT / "server.json").write_text(json.dumps(report, indent=2))
    chart(report, OUT / "server.png")
    print(text)
    print(f"(written: {OUT / 'server.md'}, {OUT / 'server.json'}, {OUT / 'server.png'})\n")
    return report


if __name__ == "__main__":
    main()
