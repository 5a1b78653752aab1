"""The tracking server we deploy, measured side by side on this machine (`make bench`; not a test).

Servers (one at a time, each pinned to one CPU like the dev stack's 1-CPU limit; clients, PostgreSQL
and S3 run on the other CPUs):
  ours         `mlflow server` with exactly the dev stack's rendered argv/env (tests/integration: the
               rendered container, Secrets and volumes), PostgreSQL with the stack's TLS material and
               verify-full, basic auth on every request, S3 over TLS (moto with MinIO's certificate).
  ours-direct  the same with the two opt-ins artifactTransferMode direct renders
               (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD/DOWNLOAD); clients reach S3 directly
               (in the cluster: through the ingress host; here the S3 server itself).
  peer         the community Helm chart's way with its PostgreSQL option and default values: same MLflow,
               `--backend-store-uri postgresql://...` without TLS, no auth, `--serve-artifacts` to the same
               S3, MLflow's default workers; same PostgreSQL server.
  default      `mlflow server` with no arguments (SQLite and local artifacts in a scratch directory).
Workloads: N concurrent client processes logging metrics (log_metric; log_batch of 100), search_runs over
1,000 runs, artifact upload/download of 1 MiB and 256 MiB; the S3 server's own throughput (boto3 straight
to it over TLS) is the ceiling. Loops are bounded in count; everything listens on 127.0.0.0/8.
Output: a table on stdout, build/bench/server.md, build/bench/server.json and build/bench/server.png.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
MIB = 2**20
CLIENTS = 8
SINGLE_PER_CLIENT = 25
BATCH_PER_CLIENT = 5
BATCH_SIZE = 100
SEARCH_RUNS = 1000
SEARCH_CLIENTS, SEARCH_PER_CLIENT = 2, 3
SMALL, LARGE = 1 * MIB, 256 * MIB
SMALL_REPEATS = 5
# direct mode: files from this size go over presigned multipart URLs (the client-side settings the
# stack exports as clientEnvironment, set for the benchmark so that 256 MiB crosses them).
DIRECT_THRESHOLD, DIRECT_CHUNK = 64 * MIB, 32 * MIB
SERVER_CPU = 1
NAMESPACE = "mlflow-dev"
PEER_DB, PEER_PASSWORD = "mlflow_peer", "peer-password-0123456789"
# Connection-reset retries of the client processes (shared across the forked pool).
RETRIES = multiprocessing.get_context("fork").Value("i", 0, lock=False)
TARGETS = {"secure_cost": 0.10, "proxied_of_ceiling": 0.50, "direct_of_ceiling": 0.90}


# --------------------------------------------------------------------------- measurements
def _group_cpu_seconds(pgid: int) -> float:
    """user+system CPU of every live process in a process group (the server, its uvicorn workers, its
    job runner)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _pin(pgid: int, cpu: int) -> None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    os.sched_setaffinity(int(entry), {cpu})


def _percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


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


def _measure(server, target: dict, jobs: list, function) -> tuple[float, float, list]:
    """(wall seconds, server CPU seconds, results) of running the jobs in parallel client processes."""
    context = multiprocessing.get_context("fork")
    with context.Pool(len(jobs)) as pool:
        cpu_before, start = _group_cpu_seconds(server.process.pid), time.perf_counter()
        results = pool.map(function, jobs)
        wall, cpu = time.perf_counter() - start, _group_cpu_seconds(server.process.pid) - cpu_before
    return wall, cpu, results


def api_workloads(server, target: dict) -> dict:
    session = _session(target)
    out = {}
    for kind, count in (("log_metric", SINGLE_PER_CLIENT), ("log_batch", BATCH_PER_CLIENT)):
        experiment = _api(session, target, "experiments/create", {"name": f"bench-{kind}-{time.time_ns()}"})
        wall, cpu, results = _measure(
            server, target, [(target, kind, count, experiment["experiment_id"])] * CLIENTS, _metric_client
        )
        latencies = [x for r in results for x in r]
        per_request = 1 if kind == "log_metric" else BATCH_SIZE
        out[kind] = {
            "requests": len(latencies),
            "requests_per_s": len(latencies) / wall,
            "metrics_per_s": len(latencies) * per_request / wall,
            "cpu_s_per_1000_requests": cpu / len(latencies) * 1000,
            **_percentiles(latencies),
        }
    experiment = _api(session, target, "experiments/create", {"name": f"bench-search-{time.time_ns()}"})[
        "experiment_id"
    ]
    _measure(server, target, [(target, experiment, SEARCH_RUNS // CLIENTS)] * CLIENTS, _create_runs)
    wall, cpu, results = _measure(
        server, target, [(target, experiment, SEARCH_PER_CLIENT)] * SEARCH_CLIENTS, _search_client
    )
    latencies = [x for r in results for x in r]
    out["search_runs"] = {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "cpu_s_per_1000_requests": cpu / len(latencies) * 1000,
        **_percentiles(latencies),
    }
    return out


ARTIFACT_CLIENT = r"""
import json, os, sys, tempfile, time
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
    out[label] = {"upload_s": sorted(up)[len(up) // 2], "download_s": sorted(down)[len(down) // 2]}
print(json.dumps(out))
"""


def artifact_workloads(
    server,
    target: dict,
    client_env: dict,
    host_map: dict,
    work: Path,
    cases=(("1MiB", SMALL, SMALL_REPEATS), ("256MiB", LARGE, 1)),
) -> dict:
    from tests.integration import services as svc

    env = {
        "MLFLOW_TRACKING_URI": target["tracking_uri"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
        "CASES": json.dumps(cases),
        **client_env,
    }
    if target.get("auth"):
        env.update(MLFLOW_TRACKING_USERNAME=target["auth"][0], MLFLOW_TRACKING_PASSWORD=target["auth"][1])
    cpu_before = _group_cpu_seconds(server.process.pid)
    proc = svc.run_python_client(
        ARTIFACT_CLIENT,
        workdir=work,
        env=env,
        host_map=host_map,
        deny=(),
        name=f"artifacts-{int(time.time())}",
        timeout=1200,
    )
    cpu = _group_cpu_seconds(server.process.pid) - cpu_before
    result = svc.last_json_line(proc.stdout)
    out = {}
    for label, size, _ in cases:
        out[label] = {
            "upload_MBps": size / MIB / result[label]["upload_s"],
            "download_MBps": size / MIB / result[label]["download_s"],
        }
    out["server_cpu_s"] = cpu
    return out


def s3_ceiling(s3, endpoint_name: str, ca_file: str, host_map: dict, work: Path) -> dict:
    """boto3 straight to the S3 server over TLS (its default multipart transfer settings)."""
    from tests.integration import services as svc

    path = work / "ceiling.bin"
    with open(path, "wb") as handle:
        for _ in range(LARGE // MIB):
            handle.write(os.urandom(MIB))
    with svc.dns_patched(host_map):
        client = s3.client(endpoint_name=endpoint_name, ca_file=ca_file)
        client.create_bucket(Bucket="ceiling")
        start = time.perf_counter()
        client.upload_file(str(path), "ceiling", "ceiling.bin")
        up = time.perf_counter() - start
        start = time.perf_counter()
        client.download_file("ceiling", "ceiling.bin", str(work / "ceiling.out"))
        down = time.perf_counter() - start
    path.unlink()
    (work / "ceiling.out").unlink()
    return {"upload_MBps": LARGE / MIB / up, "download_MBps": LARGE / MIB / down}


# --------------------------------------------------------------------------- the servers
@contextlib.contextmanager
def environment(work: Path):
    """The dev stack's data services, as the integration layer runs them."""
    from tests.integration import services as svc
    from tests.integration import wiring

    r = wiring.render("dev", namespace=NAMESPACE)
    pg_ip, s3_ip = svc.free_loopback_address(r.pg_port), svc.free_loopback_address(r.s3_port)
    host_map = {r.pg_host: pg_ip, r.s3_host: s3_ip}
    work.mkdir(parents=True, exist_ok=True)
    (work / "minio-ca.crt").write_text(r.minio_tls["ca.crt"])
    # The peer connects without TLS: one rule for its own role, before the stack's TLS-only rules.
    hba = svc.cnpg_hba([f"host {PEER_DB} {PEER_DB} all scram-sha-256", *r.pg_hba])
    with wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip, s3_port=r.s3_port, hba_rules=hba) as data:
        pg, s3 = data.pg, data.s3
        pg.ensure_role(PEER_DB, PEER_PASSWORD)
        pg.ensure_database(PEER_DB, PEER_DB)
        yield SimpleNamespace(r=r, pg=pg, s3=s3, host_map=host_map, ca=str(work / "minio-ca.crt"))


@contextlib.contextmanager
def ours(env, work: Path, direct: bool = False):
    from tests.integration import services as svc

    r = env.r
    container = json.loads(json.dumps(r.container))
    if direct:  # exactly what artifactTransferMode: direct adds to the container
        container["env"] += [
            {"name": n, "value": "true"}
            for n in ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD")
        ]
    files = svc.files_by_mount_from_pod(r.pod, container, secrets=r.secrets, config_maps=r.config_maps)
    ip = svc.free_loopback_address(5000)
    with svc.mlflow_server_from_container(
        container,
        secrets=r.secrets,
        files_by_mount=files,
        host_map=env.host_map,
        workdir=work,
        listen_addr=ip,
        config_maps=r.config_maps,
        timeout=300,
    ) as server:
        host = f"mlflow.{NAMESPACE}.svc"
        yield (
            server,
            {
                "url": f"http://{ip}:{server.port}",
                "host_header": host,
                "tracking_uri": f"http://{host}:{server.port}",
                "auth": [r.outputs["adminUser"], r.outputs["adminPassword"]],
                "host_map": {host: ip, **env.host_map},
            },
        )


@contextlib.contextmanager
def peer(env, work: Path):
    from tests.integration import services as svc

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
            f"postgresql+psycopg2://{PEER_DB}:{PEER_PASSWORD}@{env.r.pg_host}:{env.r.pg_port}/{PEER_DB}"
            "?sslmode=disable",
            "--serve-artifacts",
            "--artifacts-destination",
            "s3://mlflow/peer",
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
    from tests.integration import services as svc

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


# --------------------------------------------------------------------------- report
def ratios(results: dict) -> dict:
    out = {}
    for workload in ("log_metric", "log_batch", "search_runs"):
        o, p = results["ours"]["api"][workload], results["peer"]["api"][workload]
        out[workload] = {
            "throughput": o["requests_per_s"] / p["requests_per_s"],
            "p95": o["p95_ms"] / p["p95_ms"],
            "cpu_per_request": o["cpu_s_per_1000_requests"] / p["cpu_s_per_1000_requests"],
        }
    return out


def render(report: dict) -> str:
    res, ceiling = report["results"], report["ceiling"]
    lines = [
        "# Tracking server benchmark",
        "",
        f"MLflow {report['mlflow_version']}; {report['cpus']} CPUs, load average before/after "
        f"{report['load_before']} / {report['load_after']}; servers pinned to CPU {SERVER_CPU}; "
        f"{CLIENTS} client processes; ours renders --workers {report['ours_workers']}, peer and default "
        "use MLflow's default (4).",
        "",
        "| server | workload | req/s | metrics/s | p50 ms | p95 ms | p99 ms | server CPU s / 1000 req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("ours", "peer", "default"):
        for workload, m in res[name]["api"].items():
            lines.append(
                f"| {name} | {workload} | {m['requests_per_s']:.1f} | {m.get('metrics_per_s', 0):.0f} | "
                f"{m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['p99_ms']:.1f} | "
                f"{m['cpu_s_per_1000_requests']:.2f} |"
            )
    lines += [
        "",
        "| server | artifact | upload MB/s | download MB/s | of ceiling (up / down) |",
        "|---|---|---:|---:|---:|",
    ]
    for name in ("ours", "ours-direct", "peer", "default"):
        for label in ("1MiB", "256MiB"):
            if label not in res[name]["artifacts"]:
                continue
            a = res[name]["artifacts"][label]
            share = (
                f"{a['upload_MBps'] / ceiling['upload_MBps']:.0%} / {a['download_MBps'] / ceiling['download_MBps']:.0%}"
                if label == "256MiB"
                else ""
            )
            lines.append(f"| {name} | {label} | {a['upload_MBps']:.1f} | {a['download_MBps']:.1f} | {share} |")
    lines.append(
        f"| S3 ceiling (boto3 direct) | 256MiB | {ceiling['upload_MBps']:.1f} | {ceiling['download_MBps']:.1f} | 100% |"
    )
    lines += ["", "| ours / peer | throughput | p95 latency | CPU per request |", "|---|---:|---:|---:|"]
    for workload, r in report["ratios"].items():
        lines.append(f"| {workload} | {r['throughput']:.2f} | {r['p95']:.2f} | {r['cpu_per_request']:.2f} |")
    lines.append("")
    lines.append(
        "Client retries after a connection the server closed (keep-alive race): "
        + ", ".join(f"{name} {r.get('client_retries', 0)}" for name, r in res.items())
    )
    lines += ["", "Targets:"]
    for line in report["verdicts"]:
        lines.append(f"- {line}")
    return "\n".join(lines) + "\n"


def verdicts(report: dict) -> list[str]:
    res, ceiling, out = report["results"], report["ceiling"], []
    worst = min(r["throughput"] for r in report["ratios"].values())
    out.append(
        f"secure defaults cost <= 10% throughput vs peer: worst ours/peer {worst:.2f} -> "
        f"{'MET' if worst >= 1 - TARGETS['secure_cost'] else 'MISSED'}"
    )
    for name, key, target in (
        ("ours", "proxied_of_ceiling", "proxied"),
        ("ours-direct", "direct_of_ceiling", "direct"),
    ):
        a = res[name]["artifacts"]["256MiB"]
        share = min(a["upload_MBps"] / ceiling["upload_MBps"], a["download_MBps"] / ceiling["download_MBps"])
        out.append(
            f"{target} 256 MiB >= {TARGETS[key]:.0%} of the S3 ceiling: worst direction {share:.0%} -> "
            f"{'MET' if share >= TARGETS[key] else 'MISSED'}"
        )
    return out


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    workloads, servers = ("log_metric", "log_batch", "search_runs"), ("ours", "peer", "default")
    width = 0.26
    for i, name in enumerate(servers):
        left.bar(
            [w + i * width for w in range(len(workloads))],
            [res[name]["api"][w]["requests_per_s"] for w in workloads],
            width,
            label=name,
        )
    left.set_xticks([w + width for w in range(len(workloads))], workloads)
    left.set_ylabel("requests/s")
    left.set_title("Tracking API (8 clients)")
    left.legend()
    names = ("ours", "ours-direct", "peer", "default")
    for i, direction in enumerate(("upload_MBps", "download_MBps")):
        right.bar(
            [n + i * 0.4 for n in range(len(names) + 1)],
            [res[n]["artifacts"]["256MiB"][direction] for n in names] + [report["ceiling"][direction]],
            0.4,
            label=direction.split("_")[0],
        )
    right.set_xticks([n + 0.2 for n in range(len(names) + 1)], [*names, "S3 ceiling"])
    right.set_ylabel("MB/s")
    right.set_title("256 MiB artifact")
    right.legend()
    fig.suptitle(f"MLflow {report['mlflow_version']} tracking server, load {report['load_before']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> dict:
    from importlib.metadata import version

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    OUT.mkdir(parents=True, exist_ok=True)
    progress = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    report = {
        "mlflow_version": version("mlflow"),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        work = Path(tmp)
        with environment(work / "env") as env:
            report["ours_workers"] = int(env.r.container["args"][env.r.container["args"].index("--workers") + 1])
            progress("S3 ceiling")
            report["ceiling"] = s3_ceiling(env.s3, env.r.s3_host, env.ca, env.host_map, work)
            direct_env = {
                "REQUESTS_CA_BUNDLE": env.ca,
                **{
                    f"MLFLOW_MULTIPART_{d}_{k}": str(v)
                    for d in ("UPLOAD", "DOWNLOAD")
                    for k, v in (("MINIMUM_FILE_SIZE", DIRECT_THRESHOLD), ("CHUNK_SIZE", DIRECT_CHUNK))
                },
            }
            runs = (
                ("ours", lambda w: ours(env, w), True, {}),
                ("ours-direct", lambda w: ours(env, w, direct=True), False, direct_env),
                ("peer", lambda w: peer(env, w), True, {}),
                ("default", lambda w: mlflow_default(env, w), True, {}),
            )
            for name, start, api, client_env in runs:
                progress(f"{name}: starting")
                with start(work / name) as (server, target):
                    _pin(server.process.pid, SERVER_CPU)
                    result = {}
                    if api:
                        progress(f"{name}: metrics and search")
                        result["api"] = api_workloads(server, target)
                    progress(f"{name}: artifacts")
                    cases = (
                        (("256MiB", LARGE, 1),)
                        if name == "ours-direct"
                        else (("1MiB", SMALL, SMALL_REPEATS), ("256MiB", LARGE, 1))
                    )
                    result["artifacts"] = artifact_workloads(
                        server, target, client_env, target["host_map"], work / name, cases
                    )
                    result["client_retries"], RETRIES.value = RETRIES.value, 0
                    report["results"][name] = result
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    (OUT / "server.json").write_text(json.dumps(report, indent=2))  # the measurements first
    report["ratios"] = ratios(report["results"])
    report["verdicts"] = verdicts(report)
    text = render(report)
    (OUT / "server.md").write_text(text)
    (OUT / "server.json").write_text(json.dumps(report, indent=2))
    chart(report, OUT / "server.png")
    print(text)
    print(f"(written: {OUT / 'server.md'}, {OUT / 'server.json'}, {OUT / 'server.png'})\n")
    return report


if __name__ == "__main__":
    main()
