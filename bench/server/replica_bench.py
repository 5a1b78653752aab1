"""search_runs with MLflow's reads on a read replica, beside the same server without one (`make bench`).

ours-replica  ours (the dev stack's rendered `mlflow server`) plus exactly what postgresReadReplica adds
              to it (MLFLOW_READ_REPLICA_BACKEND_STORE_URI and basic_auth.ini's read_database_uri, taken
              from the program rendered with postgresInstances: 2), reading from a streaming hot standby
              of the benchmark's PostgreSQL (tools/loopback/services.py postgres_standby: pg_basebackup
              over TLS, the Cluster's certificate, the -ro Service name verified).

Both servers read the same 1,000 runs (ours' search_runs experiment, replayed on the standby), in
alternating order for ROUNDS rounds, each alone on the server CPU. Beside throughput and latency: the
transactions of MLflow's database on the primary and on the standby per request (pg_stat_database), i.e.
where the reads went. One machine: the primary and the standby share its CPUs, so this measures what
routing costs or saves the tracking server, not the primary's offload a second PostgreSQL node gives.
"""

from __future__ import annotations

import configparser
import contextlib
import copy
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPLICA_ENV = "MLFLOW_READ_REPLICA_BACKEND_STORE_URI"
SERVERS = ("ours", "ours-replica")
AUTH_INI = "basic_auth.ini"
# PostgreSQL 15 flushes an idle backend's statistics (pg_stat_database) within 10 s (PGSTAT_IDLE_INTERVAL).
STATS_FLUSH_S = 11.0


def auth_ini_of(secrets: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
    """(Secret name, basic_auth.ini text) of the rendered auth configuration."""
    [found] = [(name, data[AUTH_INI]) for name, data in secrets.items() if AUTH_INI in data]
    return found


def with_read_replica(
    container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]], replica_uri: str, read_database_uri: str
) -> tuple[dict, dict]:
    """Copies of the MLflow container and Secrets with the replica's env var and basic_auth.ini line."""
    out_container = copy.deepcopy(dict(container))
    if any(e["name"] == REPLICA_ENV for e in out_container.get("env", [])):
        raise ValueError(f"{REPLICA_ENV} is already set")
    out_container["env"] = [*out_container.get("env", []), {"name": REPLICA_ENV, "value": replica_uri}]
    out_secrets = {name: dict(data) for name, data in secrets.items()}
    name, text = auth_ini_of(secrets)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.replace(" ", "").startswith("database_uri="))
    lines.insert(at + 1, f"read_database_uri = {read_database_uri}")
    out_secrets[name][AUTH_INI] = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return out_container, out_secrets


def rendered_replica_material(r: SimpleNamespace, namespace: str) -> tuple[dict, dict, str]:
    """ours' container and Secrets with what the program renders for a read replica (the dev stack with
    postgresInstances: 2); its URIs carry no password, so they are the same under any generated state.
    Returns (container, secrets, replica host)."""
    from tools.loopback import wiring

    two = wiring.render("dev", config={"postgresInstances": 2}, namespace=namespace)
    if two.container["args"] != r.container["args"] or two.pg_ro_host is None:
        raise RuntimeError("the replica stack's MLflow arguments differ from ours': not the same server")
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(auth_ini_of(two.secrets)[1])
    container, secrets = with_read_replica(
        r.container, r.secrets, two.env[REPLICA_ENV], ini["mlflow"]["read_database_uri"]
    )
    return container, secrets, two.pg_ro_host


def _transactions(pg, database: str) -> int:
    return int(
        pg.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,))[0][0]
    )


def placement(requests: int, before: tuple[int, int], after: tuple[int, int]) -> dict:
    """Transactions of MLflow's tracking database per request, on the primary and on the standby."""
    return {
        "primary_xacts_per_request": (after[0] - before[0]) / requests,
        "standby_xacts_per_request": (after[1] - before[1]) / requests,
    }


def summarize(
    samples: Mapping[str, list[dict]],
    placements: Mapping[str, Mapping[str, float]],
    summarize_api: Callable,
    paired_ratio: Callable,
) -> dict:
    """Per server: server_bench's search_runs summary plus where its database transactions ran."""
    results = {name: {**summarize_api(runs), **placements.get(name, {})} for name, runs in samples.items()}
    out: dict[str, Any] = {"results": results}
    if all(n in samples for n in SERVERS):
        out["ours-replica/ours"] = paired_ratio(samples["ours-replica"], samples["ours"])
    return out


def measure(
    env,
    work: Path,
    live: Mapping[str, Any],
    progress: Callable[[str], None] = lambda _msg: None,
    *,
    rounds: int | None = None,
) -> dict:
    """search_runs on ours (live, prepared by server_bench) and on ours-replica, started here."""
    from bench.server import server_bench as sb
    from tools.loopback import services as svc
    from tools.loopback import wiring

    r = env.r
    rounds = sb.ROUNDS if rounds is None else rounds
    database = sb.ours_databases(r)[0]
    container, secrets, ro_host = rendered_replica_material(r, r.namespace)
    ro_ip = svc.free_loopback_address(r.pg_port)
    with contextlib.ExitStack() as stack:
        progress("ours-replica: a streaming standby of the benchmark's PostgreSQL")
        standby = stack.enter_context(wiring.rendered_standby(r, env.pg, work / "standby", ro_ip))
        progress("ours-replica: starting and settling")
        host_map = {**env.host_map, ro_host: ro_ip}
        manager = sb.serve(r, container, secrets, host_map, work / "ours-replica")
        srv = sb.start_settled(stack, "ours-replica", manager, sb.ours_databases(r))
        servers = {"ours": live["ours"], "ours-replica": srv}
        everyone = {**live, "ours-replica": srv}
        srv.experiments = {"search_runs": live["ours"].experiments["search_runs"]}
        svc.wait_for_replay(env.pg, standby)
        sb._focus(everyone, "ours-replica")
        sb._parallel([(srv.target, srv.experiments["search_runs"], 1)], sb._search_client)  # warm-up
        samples: dict[str, list[dict]] = {n: [] for n in SERVERS}
        for round_no in range(rounds):
            order = list(SERVERS) if round_no % 2 == 0 else list(SERVERS)[::-1]
            for name in order:
                progress(f"replica round {round_no + 1}/{rounds}: {name}")
                sb._focus(everyone, name)
                counter = sb.db_session_counter(env, servers[name].databases)
                samples[name].append(sb.api_sample(servers[name], "search_runs", round_no, counter))
        # Where the reads went: one more sample each, between quiet waits for the statistics to arrive.
        placements = {}
        for name in SERVERS:
            progress(f"replica: {name}'s transactions on the primary and the standby")
            sb._focus(everyone, name)
            time.sleep(STATS_FLUSH_S)
            before = _transactions(env.pg, database), _transactions(standby, database)
            sample = sb.api_sample(servers[name], "search_runs", rounds, lambda: None)
            time.sleep(STATS_FLUSH_S)
            after = _transactions(env.pg, database), _transactions(standby, database)
            placements[name] = placement(sample["requests"] + sample["warm_clients"], before, after)
        sb._take_retries(srv)
        sb._pin(srv.pgid, sb.PARK_CPU)
        out = summarize(samples, placements, sb.summarize, sb.paired_ratio)
        out["setup"] = {
            "rounds": rounds,
            "clients": sb.SEARCH_CLIENTS,
            "searches_per_client": sb.SEARCH_PER_CLIENT,
            "runs": sb.SEARCH_RUNS,
            "replica_uri": container["env"][-1]["value"],
            "startup": srv.startup,
            "client_retries": srv.retries,
        }
        out["rounds"] = {n: [{k: v for k, v in s.items() if k != "latencies"} for s in samples[n]] for n in SERVERS}
    json.dumps(out)  # JSON-ready, like the rest of the report
    return out


def render_lines(replica: Mapping[str, Any]) -> list[str]:
    """The report's section (markdown lines)."""
    setup = replica["setup"]
    lines = [
        "",
        f"Read replica (bench/server/replica_bench.py): search_runs over {setup['runs']:,} runs, "
        f"{setup['clients']} clients x {setup['searches_per_client']} searches, {setup['rounds']} rounds; "
        "ours-replica is ours plus postgresReadReplica's env and basic_auth.ini line, reading from a "
        "streaming standby on the same machine (the primary's offload a second node gives is not measured).",
        "",
        "| server | search_runs req/s (median) | min-max | p50 ms | p95 ms | server CPU ms / req "
        "| primary xacts / req | standby xacts / req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in replica["results"].items():
        lines.append(
            f"| {name} | {m['requests_per_s']:.1f} | {m['requests_per_s_min']:.1f}-{m['requests_per_s_max']:.1f} | "
            f"{m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['cpu_ms_per_request']:.1f} | "
            f"{m['primary_xacts_per_request']:.1f} | {m['standby_xacts_per_request']:.1f} |"
        )
    if "ours-replica/ours" in replica:
        t = replica["ours-replica/ours"]
        lines.append(
            f"| ours-replica/ours (median of rounds) | {t['median']:.2f} | {t['min']:.2f}-{t['max']:.2f} | | | | | |"
        )
    return lines
