"""bench/server/replica_bench.py's pure parts: the ours-replica server is ours plus exactly what
postgresReadReplica renders; its summary and report section. No timing is asserted."""

from __future__ import annotations

import configparser
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.server import replica_bench, server_bench  # noqa: E402
from tools.loopback import wiring  # noqa: E402

NAMESPACE = "mlflow-dev"


def test_ours_replica_is_ours_plus_what_the_program_renders_for_a_replica():
    ours = wiring.render("dev", namespace=NAMESPACE)
    two = wiring.render("dev", config={"postgresInstances": 2}, namespace=NAMESPACE)
    container, secrets, ro_host = replica_bench.rendered_replica_material(ours, NAMESPACE)
    assert ro_host == two.pg_ro_host == f"mlflow-pg-ro.{NAMESPACE}.svc"
    assert container["args"] == ours.container["args"] == two.container["args"]
    added = [e for e in container["env"] if e not in ours.container["env"]]
    assert added == [{"name": replica_bench.REPLICA_ENV, "value": two.env[replica_bench.REPLICA_ENV]}]
    assert ours.env["PGPASSWORD"] not in added[0]["value"]

    def ini(secrets_) -> dict:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(replica_bench.auth_ini_of(secrets_)[1])
        return dict(parser["mlflow"])

    assert ini(secrets) == {**ini(ours.secrets), "read_database_uri": ini(two.secrets)["read_database_uri"]}
    # The originals are untouched (ours keeps running from them).
    assert "read_database_uri" not in ini(ours.secrets)
    assert all(e["name"] != replica_bench.REPLICA_ENV for e in ours.container["env"])


def _sample(round_no: int, requests: int, wall: float) -> dict:
    return {
        "round": round_no,
        "requests": requests,
        "wall_s": wall,
        "cpu_s": 0.5,
        "load1": 1.0,
        "db_sessions": 0,
        "warm_clients": 2,
        "warm_cpu_s": 0.1,
        "latencies": [wall / requests] * requests,
    }


def test_summary_says_where_the_transactions_ran_and_pairs_the_rounds():
    samples = {
        "ours": [_sample(0, 6, 2.0), _sample(1, 6, 3.0)],
        "ours-replica": [_sample(0, 6, 1.0), _sample(1, 6, 3.0)],
    }
    placements = {
        "ours": replica_bench.placement(8, (100, 50), (124, 50)),
        "ours-replica": replica_bench.placement(8, (124, 50), (126, 74)),
    }
    out = replica_bench.summarize(samples, placements, server_bench.summarize, server_bench.paired_ratio)
    ours, replica = out["results"]["ours"], out["results"]["ours-replica"]
    assert ours["primary_xacts_per_request"] == 3 and ours["standby_xacts_per_request"] == 0
    assert replica["primary_xacts_per_request"] == 0.25 and replica["standby_xacts_per_request"] == 3
    assert out["ours-replica/ours"] == {"median": 1.5, "min": 1.0, "max": 2.0, "rounds": 2}
    out["setup"] = {"runs": 1000, "clients": 2, "searches_per_client": 3, "rounds": 2}
    text = "\n".join(replica_bench.render_lines(out))
    assert "| ours-replica | 4.0 | 2.0-6.0 |" in text and "| ours-replica/ours (median of rounds) | 1.50 |" in text
    # server_bench measures it beside ours and puts the section in its report.
    assert "replica_bench.measure(" in inspect.getsource(server_bench.main)
    assert "replica_bench.render_lines(" in inspect.getsource(server_bench.render)
