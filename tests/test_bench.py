"""Tests of bench/bench.py's analyses: critical path, footprint, parallel data services.

Small synthetic graphs and pods pin the arithmetic; the real pr-42 stack is checked against its
budget and for PostgreSQL/MinIO coming up independently. No timing is asserted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sizing  # noqa: E402
from bench import bench  # noqa: E402

GI, MI = 2**30, 2**20


# --------------------------------------------------------------------------- quantities
@pytest.mark.parametrize(
    "text, value",
    [
        ("250m", 0.25),
        ("1", 1.0),
        ("1.5", 1.5),
        ("2000m", 2.0),
        ("1Gi", GI),
        ("192Mi", 192 * MI),
        ("1G", 1e9),
        ("500M", 5e8),
        ("1e3", 1000.0),
        ("128974848", 128974848.0),
        ("64Ki", 65536.0),
        (3, 3.0),
    ],
)
def test_parse_quantity(text, value):
    assert sizing.quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1 Gi", "Gi", "1GB", "abc", "1.2.3"])
def test_parse_quantity_rejects_garbage(text):
    with pytest.raises(ValueError):
        sizing.quantity(text)


# --------------------------------------------------------------------------- footprint
def container(name, cpu=None, memory=None, cpu_limit=None, memory_limit=None, **extra):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v is not None}
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "resources": resources, **extra}


def test_pod_sums_app_containers():
    pod = {"containers": [container("a", "100m", "128Mi", "1", "256Mi"), container("b", "50m", "64Mi", "500m", "64Mi")]}
    assert bench.pod_amounts(pod, "requests") == {"cpu": pytest.approx(0.15), "memory": 192 * MI}
    assert bench.pod_amounts(pod, "limits") == {"cpu": pytest.approx(1.5), "memory": 320 * MI}


def test_pod_init_containers_count_their_largest_not_their_sum():
    # Like the migration Job: steps run one after another as init containers, then the last step.
    pod = {
        "initContainers": [container("step1", "50m", "192Mi"), container("step2", "200m", "64Mi")],
        "containers": [container("step3", "100m", "128Mi")],
    }
    assert bench.pod_amounts(pod) == {"cpu": pytest.approx(0.2), "memory": 192 * MI}


def test_pod_sidecar_init_containers_add_to_everything_after_them():
    pod = {
        "initContainers": [
            container("proxy", "100m", "64Mi", restartPolicy="Always"),
            container("migrate", "300m", "32Mi"),
        ],
        "containers": [container("app", "200m", "256Mi")],
    }
    # init phase: migrate + proxy = 400m / 96Mi; running: app + proxy = 300m / 320Mi
    assert bench.pod_amounts(pod) == {"cpu": pytest.approx(0.4), "memory": 320 * MI}


def test_missing_request_defaults_to_limit_and_missing_limit_is_unbounded():
    pod = {"containers": [container("a", cpu_limit="300m", memory="100Mi")]}
    assert bench.pod_amounts(pod, "requests") == {"cpu": pytest.approx(0.3), "memory": 100 * MI}
    assert bench.pod_amounts(pod, "limits") == {"cpu": pytest.approx(0.3), "memory": None}
    assert bench.pod_amounts({"containers": [container("b")]}, "requests") == {"cpu": 0.0, "memory": 0.0}


def manifests():
    template = {"spec": {"containers": [container("c", "100m", "128Mi", "1", "256Mi")]}}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "template": template},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "store"},
            "spec": {"replicas": 2, "template": template},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {
                        "initContainers": [container("i", "400m", "64Mi", "1", "64Mi")],
                        "containers": [container("c", "100m", "512Mi", "1", "1Gi")],
                    }
                }
            },
        },
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "pg"},
            "spec": {
                "instances": 3,
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            },
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}, "spec": {"type": "ClusterIP"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
    ]


def test_workloads_multiply_pods_and_skip_non_workloads():
    items = {w.name: w for w in bench.workloads(manifests())}
    assert set(items) == {"web", "store", "once", "pg"}
    assert (items["web"].pods, items["store"].pods, items["once"].pods, items["pg"].pods) == (3, 2, 1, 3)
    assert items["web"].total("requests", "cpu") == pytest.approx(0.3)
    assert items["once"].total("requests", "cpu") == pytest.approx(0.4)  # the init step is larger
    assert items["once"].total("requests", "memory") == 512 * MI  # the container is larger
    assert items["pg"].total("requests", "memory") == 3 * GI
    assert items["pg"].total("limits", "cpu") == pytest.approx(6.0)


def test_workload_labels_follow_objects():
    names = [w.name for w in bench.workloads(manifests(), labels=[f"r{i}" for i in range(6)])]
    assert names == ["r0", "r1", "r2", "r3"]
    with pytest.raises(ValueError):
        bench.workloads(manifests(), labels=["too-few"])


def test_footprint_totals():
    totals = bench.footprint_totals(bench.workloads(manifests()))
    # cpu: 3*100m + 2*100m + 400m + 3*500m = 2400m; memory: 5*128Mi + 512Mi + 3Gi
    assert totals["requests"]["cpu"] == pytest.approx(2.4)
    assert totals["requests"]["memory"] == 5 * 128 * MI + 512 * MI + 3 * GI
    assert totals["limits"]["cpu"] == pytest.approx(5 * 1 + 1 + 6)
    unbounded = bench.footprint_totals(
        bench.workloads(
            [{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [container("c", "1m", "1Mi")]}}]
        )
    )
    assert unbounded["limits"] == {"cpu": None, "memory": None}


@pytest.mark.parametrize(
    "cpu, memory, passed",
    [
        (0.5, GI, True),
        (0.3, GI - 1, True),
        (0.501, GI, False),
        (0.2, GI + 1, False),
    ],
)
def test_pr_budget_edges(cpu, memory, passed):
    result = bench.pr_budget_check({"requests": {"cpu": cpu, "memory": memory}})
    assert result["passed"] is passed


# --------------------------------------------------------------------------- critical path
def test_critical_path_prefers_weight_over_length():
    weights = {"a": 1, "b": 0, "c": 0, "d": 0, "e": 1, "x": 1, "y": 1}
    deps = {
        "b": {"a"},
        "c": {"b"},
        "d": {"c"},
        "e": {"d"},  # a* b c d e*: weight 2, 5 nodes
        "y": {"x"},
    }  # x* y*: weight 2, 2 nodes
    weight, chain = bench.critical_path(weights, deps)
    assert weight == 2 and chain == ["a", "b", "c", "d", "e"]  # tie on weight -> more nodes
    weights["y"], weights["x"] = 1, 1
    deps["y"] = {"x", "e"}
    assert bench.critical_path(weights, deps) == (3, ["a", "b", "c", "d", "e", "y"])


def test_critical_path_diamond_takes_heavier_branch():
    weights = {"ns": 0, "pg": 1, "op": 1, "s3": 1, "job": 1, "app": 1}
    deps = {"pg": {"ns", "op"}, "s3": {"ns"}, "op": {"ns"}, "job": {"pg", "s3"}, "app": {"job"}}
    weight, chain = bench.critical_path(weights, deps)
    assert weight == 4 and chain == ["ns", "op", "pg", "job", "app"]
    assert bench.critical_nodes(weights, deps) == {"ns", "op", "pg", "job", "app"}
    levels = bench.finish_levels(weights, deps)
    assert levels["pg"] == 2 and levels["s3"] == 1 and levels["app"] == 4


def test_critical_nodes_include_every_tied_chain():
    weights = {"a": 1, "b": 1, "c": 1, "z": 0}
    deps = {"c": {"a", "b"}, "z": {"a"}}
    assert bench.critical_nodes(weights, deps) == {"a", "b", "c"}


def test_critical_path_rejects_cycles_and_handles_empty():
    with pytest.raises(ValueError):
        bench.critical_path({"a": 1, "b": 1}, {"a": {"b"}, "b": {"a"}})
    assert bench.critical_path({}, {}) == (0, [])


# --------------------------------------------------------------------------- graph from registrations
@dataclass
class Reg:
    name: str
    type: str
    custom: bool = True
    parent: str = ""
    inputs: dict = field(default_factory=dict)
    dependencies: list = field(default_factory=list)
    property_dependencies: dict = field(default_factory=dict)
    provider: str = ""

    @property
    def urn(self) -> str:
        return f"urn:pulumi:s::p::{self.type}::{self.name}"


def synthetic_stack(pg_waits_for_minio: bool = False) -> list[Reg]:
    k8s = Reg("k8s", "pulumi:providers:kubernetes")
    ref = k8s.urn + "::k8s-id"
    pg = Reg("postgres", "mlflow-platform:index:PostgresCluster", custom=False)
    s3 = Reg("minio", "mlflow-platform:index:MinioStore", custom=False)
    lb = Reg(
        "pg-admin", "kubernetes:core/v1:Service", parent=pg.urn, provider=ref, inputs={"spec": {"type": "LoadBalancer"}}
    )
    cluster = Reg(
        "pg-cluster",
        "kubernetes:postgresql.cnpg.io/v1:Cluster",
        parent=pg.urn,
        provider=ref,
        inputs={"metadata": {"annotations": {"pulumi.com/waitFor": "condition=Ready"}}},
        dependencies=[lb.urn],
    )
    sql = Reg("pg-provider", "pulumi:providers:postgresql", parent=pg.urn, dependencies=[cluster.urn])
    role = Reg("pg-role", "postgresql:index/role:Role", parent=pg.urn, provider=sql.urn + "::id")
    sts = Reg("minio-sts", "kubernetes:apps/v1:StatefulSet", parent=s3.urn, provider=ref)
    svc = Reg("minio-svc", "kubernetes:core/v1:Service", parent=s3.urn, provider=ref, inputs={"spec": {}})
    mp = Reg("minio-provider", "pulumi:providers:minio", parent=s3.urn, dependencies=[sts.urn])
    bucket = Reg("minio-bucket", "minio:index/s3Bucket:S3Bucket", parent=s3.urn, provider=mp.urn + "::id")
    app = Reg(
        "app",
        "kubernetes:apps/v1:Deployment",
        provider=ref,
        property_dependencies={"spec": [role.urn]},
        dependencies=[s3.urn],
    )  # a component dependency
    if pg_waits_for_minio:
        cluster.dependencies.append(sts.urn)
    return [k8s, pg, s3, lb, cluster, sql, role, sts, svc, mp, bucket, app]


def test_readiness_weights():
    weights = {r.name: bench.readiness_weight(r) for r in synthetic_stack()}
    assert weights == {
        "k8s": 0,
        "postgres": 0,
        "minio": 0,
        "pg-admin": 1,
        "pg-cluster": 1,
        "pg-provider": 0,
        "pg-role": 0,
        "minio-sts": 1,
        "minio-svc": 0,
        "minio-provider": 0,
        "minio-bucket": 0,
        "app": 1,
    }
    assert bench.readiness_weight(Reg("r", "kubernetes:helm.sh/v3:Release", inputs={"skipAwait": True})) == 0
    assert bench.readiness_weight(Reg("r", "kubernetes:helm.sh/v3:Release", inputs={})) == 1
    assert (
        bench.readiness_weight(
            Reg("j", "kubernetes:batch/v1:Job", inputs={"metadata": {"annotations": {"pulumi.com/skipAwait": "true"}}})
        )
        == 0
    )
    assert bench.readiness_weight(Reg("c", "kubernetes:postgresql.cnpg.io/v1:Cluster", inputs={})) == 0


def test_graph_edges_providers_and_component_expansion():
    regs = synthetic_stack()
    graph = bench.build_graph(regs)
    urn = {r.name: r.urn for r in regs}
    names = lambda urns: {graph.names[u] for u in urns}  # noqa: E731
    assert set(graph.names.values()) == {r.name for r in regs if r.custom}  # components are not nodes
    assert names(graph.deps[urn["pg-role"]]) == {"pg-provider"}  # waits for its provider
    assert names(graph.deps[urn["minio-bucket"]]) == {"minio-provider"}
    assert names(graph.deps[urn["app"]]) == {
        "k8s",
        "pg-role",
        "minio-sts",
        "minio-svc",
        "minio-provider",
        "minio-bucket",
    }  # component -> descendants
    assert graph.component_refs == 1
    assert names(graph.deps[urn["pg-cluster"]]) == {"pg-admin", "k8s"}  # the parent is not a dependency
    weight, chain = bench.critical_path(graph.weights, graph.deps)
    assert weight == 3
    assert [graph.names[u] for u in chain] == ["k8s", "pg-admin", "pg-cluster", "pg-provider", "pg-role", "app"]


def test_data_services_independence_detects_a_cross_dependency():
    regs = synthetic_stack()
    result = bench.data_services_parallel(regs)
    assert result["independent"]
    assert result["readiness_levels"] == {"postgres": {"pg-cluster": 2}, "minio": {"minio-sts": 1}}
    assert result["backups_wait_for_minio"] == result["postgres_uses_from_minio"] == []
    coupled = bench.data_services_parallel(synthetic_stack(pg_waits_for_minio=True))
    assert not coupled["independent"]
    assert coupled["postgres_waits_for_minio"] == ["minio-sts"]
    assert coupled["minio_waits_for_postgres"] == []


def test_taking_an_object_created_at_once_is_not_waiting():
    regs = synthetic_stack()
    cluster, svc = (next(r for r in regs if r.name == n) for n in ("pg-cluster", "minio-svc"))
    cluster.dependencies.append(svc.urn)  # a ClusterIP Service: no readiness gate
    result = bench.data_services_parallel(regs)
    assert result["independent"] and result["postgres_uses_from_minio"] == ["minio-svc"], result


def test_backups_may_wait_for_the_store_they_write_to_but_the_database_may_not():
    regs = synthetic_stack()
    pg, cluster, sts = (next(r for r in regs if r.name == n) for n in ("postgres", "pg-cluster", "minio-sts"))
    backup = Reg(
        "pg-backup",
        "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup",
        parent=pg.urn,
        provider=cluster.provider,
        dependencies=[sts.urn],
    )
    result = bench.data_services_parallel([*regs, backup])
    assert result["independent"] and result["backups_wait_for_minio"] == ["minio-sts"], result
    cluster.dependencies.append(backup.urn)  # the database waiting for its backup: coupled again
    coupled = bench.data_services_parallel([*regs, backup])
    assert not coupled["independent"] and coupled["postgres_waits_for_minio"] == ["minio-sts"], coupled


# --------------------------------------------------------------------------- the real program
@pytest.fixture(scope="module")
def pr_stack():
    return bench.run_program("pr-42")


def test_real_pr_stack_footprint_within_budget(pr_stack):
    items = bench.workloads(pr_stack.k8s_objects)
    kinds = sorted(w.kind for w in items)
    # Every pod-running object must be seen, or the sum would be vacuously small.
    assert kinds == ["Cluster", "Deployment", "Job", "Job", "StatefulSet"], kinds
    assert sorted(w.name.rsplit("-", 1)[0] for w in items if w.kind == "Job") == ["minio-bootstrap", "mlflow-migrate"]
    totals = bench.footprint_totals(items)
    budget = bench.pr_budget_check(totals)
    assert budget["memory_ok"], f"PR stack requests {totals['requests']['memory'] / MI:.0f}Mi > 1024Mi"
    assert budget["cpu_ok"], f"PR stack requests {totals['requests']['cpu'] * 1000:.0f}m CPU > 500m"
    for w in items:
        assert w.per_pod["requests"]["cpu"] > 0 and w.per_pod["requests"]["memory"] > 0, w.name


@pytest.mark.parametrize("stack", ["dev", "pr-42"])
def test_sizing_footprint_matches_what_the_program_deploys(stack):
    """sizing.py enforces the PR budget on its own arithmetic: it must count what bench counts from the
    rendered objects (every pod, the migration and bootstrap Jobs included)."""
    import config
    from tools.mock_engine import set_stack_config

    ev = bench.run_program(stack)
    totals = bench.footprint_totals(bench.workloads(ev.k8s_objects))
    set_stack_config(stack)
    cpu, memory = sizing.footprint(config.load(stack))
    assert totals["requests"]["cpu"] == pytest.approx(cpu)
    assert totals["requests"]["memory"] == pytest.approx(memory)


def test_real_pr_stack_postgres_and_minio_come_up_independently(pr_stack):
    graph = bench.build_graph(pr_stack.registrations)
    result = bench.data_services_parallel(pr_stack.registrations, graph)
    assert result["independent"], result
    # The readiness gates exist (else independence would be vacuous).
    assert "postgres-cluster" in result["readiness_levels"]["postgres"]
    assert "minio-statefulset" in result["readiness_levels"]["minio"]
    # ...and the graph is wired: MLflow waits for both of them (through the providers, roles, bucket).
    deployment = [u for u, t in graph.types.items() if t == "kubernetes:apps/v1:Deployment"]
    assert len(deployment) == 1
    upstream = {graph.names[u] for u in graph.ancestors(deployment)}
    assert {"postgres-cluster", "minio-statefulset"} <= upstream, sorted(upstream)


def test_real_prod_database_does_not_wait_for_minio_only_its_backups_do():
    result = bench.data_services_parallel(bench.run_program("prod").registrations)
    assert result["independent"], result
    # The first backup needs the bucket the bootstrap Job creates.
    assert result["backups_wait_for_minio"] == ["minio-bootstrap", "minio-statefulset"], result
    # The Cluster archives WAL from its first start: it takes the backup store's credentials and CA.
    assert {"minio-barman-credentials", "minio-tls-ca-secret"} <= set(result["postgres_uses_from_minio"]), result


def test_run_program_runs_another_program_through_the_mock_engine():
    ev = bench.run_program("dev", bench.COMPONENT_DEPS_PROBE)
    assert "consumer" in [r.name for r in ev.registrations] and "mlflow-deployment" not in [
        r.name for r in ev.registrations
    ]
    from tools import mock_engine

    assert mock_engine.MAIN == ROOT / "__main__.py"  # unchanged for everyone else


# =========================================================================== server benchmark (pure parts)
from bench.server import server_bench as sb  # noqa: E402


def test_settle_waits_for_a_quiet_window_and_reports_the_cpu_burnt_meanwhile():
    clock = {"t": 0.0}
    # CPU seconds read at each call: start, then (before, after) per window; busy, busy, quiet.
    readings = iter([0.0, 0.0, 1.8, 1.8, 3.5, 3.5, 3.6])

    def sleep(seconds):
        clock["t"] += seconds

    result = sb.settle(lambda: next(readings), sleep=sleep, now=lambda: clock["t"], window=2.0, max_share=0.1)
    assert result == {"seconds": 6.0, "cpu_s": pytest.approx(3.6), "settled": True}


def test_settle_gives_up_at_the_timeout_and_says_so():
    clock, cpu = {"t": 0.0}, {"s": 0.0}

    def sleep(seconds):
        clock["t"] += seconds
        cpu["s"] += seconds  # a whole CPU busy, forever

    result = sb.settle(lambda: cpu["s"], sleep=sleep, now=lambda: clock["t"], window=2.0, timeout=10.0)
    assert result["settled"] is False and result["seconds"] == 10.0 and result["cpu_s"] == 10.0


def _sample(round_no, requests, wall, cpu=1.0, sessions=0, latencies=None):
    return {
        "round": round_no,
        "requests": requests,
        "wall_s": wall,
        "cpu_s": cpu,
        "load1": 1.0,
        "db_sessions": sessions,
        "latencies": latencies or [0.1] * requests,
    }


def test_summarize_takes_the_median_round_and_pools_latencies_and_costs():
    samples = [
        _sample(0, 100, 1.0, cpu=1.0, sessions=10, latencies=[0.01] * 100),
        _sample(1, 100, 4.0, cpu=1.0, sessions=0, latencies=[0.02] * 100),
        _sample(2, 100, 2.0, cpu=1.0, sessions=5, latencies=[0.03] * 95 + [1.0] * 5),
    ]
    s = sb.summarize(samples, per_request=100)
    assert s["requests_per_s"] == 50.0 and s["requests_per_s_min"] == 25.0 and s["requests_per_s_max"] == 100.0
    assert s["metrics_per_s"] == 5000.0
    assert s["cpu_ms_per_request"] == pytest.approx(10.0)
    assert s["db_sessions_per_100_requests"] == 5.0
    assert s["p50_ms"] == pytest.approx(20.0) and s["p99_ms"] == pytest.approx(1000.0)
    # A server without a database (SQLite) has no session count, not zero.
    assert sb.summarize([_sample(0, 10, 1.0, sessions=None)])["db_sessions_per_100_requests"] is None


def test_paired_ratio_compares_rounds_measured_back_to_back():
    ours = [_sample(0, 100, 1.0), _sample(1, 100, 2.0), _sample(2, 100, 1.0)]
    peer = [_sample(0, 100, 2.0), _sample(1, 100, 2.0), _sample(2, 100, 0.5)]
    r = sb.paired_ratio(ours, peer)
    # Pairs 2.0, 1.0, 0.5: their median is 1.0, where the ratio of the servers' medians (100 / 50) would say
    # 2.0 -- one round of load on the peer alone does not decide; the spread shows the drift.
    assert r == {"median": 1.0, "min": 0.5, "max": 2.0, "rounds": 3}
    with pytest.raises(ValueError):
        sb.paired_ratio(ours, [_sample(7, 1, 1.0)])


def test_ceiling_is_the_best_measured_configuration_per_direction():
    ceilings = {
        "8 MiB parts": {"upload_MBps": 70.0, "download_MBps": 40.0},
        "100 MiB": {"upload_MBps": 50.0, "download_MBps": 120.0},
    }
    best = sb.best_ceiling(ceilings)
    assert best == {
        "upload_MBps": 70.0,
        "upload_from": "8 MiB parts",
        "download_MBps": 120.0,
        "download_from": "100 MiB",
    }
    share = sb.share_of_ceiling({"upload_MBps": 63.0, "download_MBps": 60.0}, best)
    assert share == {"upload": pytest.approx(0.9), "download": pytest.approx(0.5), "worst": pytest.approx(0.5)}


def test_worker_count_and_mlflows_default():
    assert sb.workers_in(["mlflow", "server", "--host", "h", "--workers", "3"]) == 3
    assert sb.workers_in(["mlflow", "server"]) == sb.MLFLOW_DEFAULT_WORKERS
    from importlib.util import find_spec

    spec = find_spec("mlflow")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "server" / "__init__.py").read_text()
    assert f"workers or {sb.MLFLOW_DEFAULT_WORKERS}" in source  # MLflow's own default, still


def test_direct_clients_use_the_stacks_part_size_and_only_a_lower_upload_threshold():
    from components.mlflow_server import DIRECT_DOWNLOAD_CHUNK_BYTES
    from config import project_file

    declared = project_file.declared()
    env = sb.direct_client_environment(declared)
    chunk = int(sizing.quantity(declared["artifactMultipartChunkSize"]["default"]))
    assert env["MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE"] == str(chunk)
    assert env["MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE"] == str(DIRECT_DOWNLOAD_CHUNK_BYTES)
    assert int(env["MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"]) == sb.DIRECT_THRESHOLD < sb.LARGE
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(declared["mlflowRequestTimeoutSeconds"]["default"])
    assert chunk < sb.LARGE  # the 256 MiB file goes over several presigned parts


def test_rendered_auth_cache_and_databases_are_read_from_the_rendered_material():
    ini = (
        "[mlflow]\ndatabase_uri = postgresql+psycopg2://u:p%%40ss@db:5432/mlflow_auth?sslmode=verify-full\n"
        "auth_cache_ttl_seconds = 30\n"
    )
    secrets = {"env": {"x": "y"}, "auth": {"basic_auth.ini": ini}}
    assert sb.auth_cache_seconds(secrets) == 30 and sb.auth_cache_seconds({"env": {}}) == 0
    r = SimpleNamespace(env={"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://u:p@db:5432/mlflow"}, secrets=secrets)
    assert sb.ours_databases(r) == ("mlflow", "mlflow_auth")


def _api_summary(rps, cpu_ms=10.0, sessions=1.0):
    return {
        "requests_per_s": rps,
        "requests_per_s_min": rps * 0.9,
        "requests_per_s_max": rps * 1.1,
        "metrics_per_s": rps,
        "p50_ms": 50.0,
        "p95_ms": 90.0,
        "p99_ms": 120.0,
        "cpu_ms_per_request": cpu_ms,
        "db_sessions_per_100_requests": sessions,
        "warmup_cpu_ms_per_client": cpu_ms * 2,
    }


def _synthetic_report(ours_over_peer: float, proxied: float = 0.6, direct: float = 0.95) -> dict:
    workloads = sb.API_WORKLOADS
    rounds = {w: [_sample(i, 100, 1.0) for i in range(3)] for w in workloads}
    samples = {
        "ours": {w: [_sample(i, 100, 1.0 / ours_over_peer) for i in range(3)] for w in workloads},
        "peer": rounds,
        "peer-equal": rounds,
        "default": rounds,
    }
    summaries = {
        "ours": {w: _api_summary(100 * ours_over_peer, cpu_ms=12.0, sessions=2.0) for w in workloads},
        "peer": {w: _api_summary(100.0) for w in workloads},
        "peer-equal": {w: _api_summary(90.0) for w in workloads},
        "default": {w: _api_summary(80.0, sessions=None) for w in workloads},
    }
    ceiling = {"upload_MBps": 100.0, "download_MBps": 100.0, "upload_from": "a", "download_from": "a"}
    same = {"upload_MBps": 50.0, "download_MBps": 50.0}
    results = {n: {"api": summaries[n], "client_retries": 0} for n in summaries}
    transfers = {"ours": proxied, "ours-direct": direct, "peer": 0.5, "default": 2.0}
    for name, share in transfers.items():
        big = {"upload_MBps": 100 * share, "download_MBps": 100 * share, "presigned_ranges_MBps": 300.0}
        results.setdefault(name, {"client_retries": 0})["artifacts"] = {"256MiB": big, "1MiB": big, "server_cpu_s": 1.0}
    startup = {"seconds": 20.0, "cpu_s": 15.0, "settled": True, "pss_mib": 2000.0}
    report = {
        "mlflow_version": "3.18.0",
        "cpus": 2,
        "rounds": 3,
        "load_before": [1.0, 2.0, 3.0],
        "load_after": [4.0, 5.0, 6.0],
        "results": results,
        "servers": {
            n: {"workers": w, "startup": startup, "database": "d", "auth": "a"}
            for n, w in (("ours", 1), ("ours-direct", 1), ("peer", 4), ("peer-equal", 1), ("default", 4))
        },
        "ratios": {
            "ours/peer": sb.compare(samples, summaries, "ours", "peer"),
            "ours/peer-equal": sb.compare(samples, summaries, "ours", "peer-equal"),
        },
        "ceilings": {sb.CEILING_BOTO3_DEFAULT: same, "boto3 100 MiB parts": ceiling},
        "ceiling": ceiling,
        "shares": {n: sb.share_of_ceiling(results[n]["artifacts"]["256MiB"], ceiling) for n in sb.ARTIFACT_SERVERS},
        "shares_same_pattern": {
            n: sb.share_of_ceiling(results[n]["artifacts"]["256MiB"], same) for n in sb.ARTIFACT_SERVERS
        },
        "ceiling_pattern": {
            n: "boto3 100 MiB parts" if n == "ours-direct" else sb.CEILING_BOTO3_DEFAULT for n in sb.ARTIFACT_SERVERS
        },
        "costs": {
            "auth_hash_cpu_ms": 120.0,
            "auth_cache_seconds": 30,
            "pg_connect_cpu_ms": {"verify-full": 11.0, "no TLS": 6.0},
        },
        "pool": "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=10",
        "direct_chunk_mib": 100.0,
    }
    report["verdicts"] = sb.verdicts(report)
    report["where_the_time_goes"] = sb.where_the_time_goes(report)
    return report


@pytest.mark.parametrize(
    "ratio, proxied, direct, expected",
    [
        (0.90, 0.50, 0.90, ["MET", "MET", "MET"]),
        (0.89, 0.49, 0.89, ["MISSED", "MISSED", "MISSED"]),
        (1.20, 0.83, 0.67, ["MET", "MET", "MISSED"]),
    ],
)
def test_verdicts_apply_the_issue_targets_at_their_edges(ratio, proxied, direct, expected):
    lines = _synthetic_report(ratio, proxied, direct)["verdicts"]
    targets = [line for line in lines if not line.startswith("(")]
    assert [line.rsplit("-> ", 1)[1].split(" (")[0] for line in targets] == expected
    assert "<= 10% throughput vs the peer's default" in targets[0] and f"{ratio:.2f}" in targets[0]
    assert any("equal workers" in line for line in lines)  # the fairness check is stated, not scored
    # The same-access-pattern share is shown next to the verdict, never instead of it.
    assert f"parts this path uses, {sb.CEILING_BOTO3_DEFAULT}: {proxied * 2:.0%})" in targets[1]


def test_report_states_the_setup_ratios_targets_and_where_the_time_goes(tmp_path):
    report = _synthetic_report(0.95)
    text = sb.render(report)
    for needed in (
        "load average (1, 5, 15 min) before [1.0, 2.0, 3.0], after [4.0, 5.0, 6.0]",
        f"alone on CPU {sb.SERVER_CPU}",
        "| ours | 1 |",
        "| peer | 4 |",
        "| peer-equal | 1 |",
        "| ours/peer | log_metric | 0.95",
        "| ours/peer-equal | log_metric |",
        "S3 ceiling (best per direction)",
        "## Targets",
        "## Where the time goes",
        "120 ms of CPU",
        "11.0 ms of CPU with TLS verify-full",
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=10",
        "of boto3 with the same parts",
        "cost ours 24 ms of CPU per client, peer-equal 20 ms",
        "streamed in 1 MiB pieces come at 300 MB/s against MLflow's 95 MB/s",
    ):
        assert needed in text, needed
    # Every API server x workload has a row; the direct server reports the large artifact only... here both.
    assert sum(line.startswith("| ours | ") for line in text.splitlines()) >= len(sb.API_WORKLOADS)
    sb.chart(report, tmp_path / "server.png")
    assert (tmp_path / "server.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# =========================================================================== OpenTelemetry traces (pure parts)
from bench.server import trace_bench as tb  # noqa: E402


def test_otlp_request_is_traces_of_a_root_and_its_children_with_attributes():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    ids = [bytes([1] * 16), bytes([2] * 16)]
    parsed = ExportTraceServiceRequest.FromString(tb.otlp_request(ids, 3, service="svc", start_ns=10**18))
    (resource,) = parsed.resource_spans
    assert [(a.key, a.value.string_value) for a in resource.resource.attributes] == [("service.name", "svc")]
    spans = [s for scope in resource.scope_spans for s in scope.spans]
    assert len(spans) == 6
    for trace_id in ids:
        mine = [s for s in spans if s.trace_id == trace_id]
        roots = [s for s in mine if not s.parent_span_id]
        assert len(roots) == 1 and len({s.span_id for s in mine}) == 3
        assert all(s.parent_span_id == roots[0].span_id for s in mine if s is not roots[0])
        assert all(s.end_time_unix_nano > s.start_time_unix_nano >= 10**18 for s in mine)
        assert {a.key for a in mine[1].attributes} == {"bench.step", "bench.note"}
    with pytest.raises(ValueError):
        tb.otlp_request([b"short"])


def test_trace_summary_takes_the_median_round_pools_latencies_and_costs_cpu_per_1000_spans():
    samples = [
        {"round": 0, "wall_s": 1.0, "cpu_s": 1.0, "requests": 10, "spans": 500, "latencies": [0.01] * 10},
        {"round": 1, "wall_s": 2.0, "cpu_s": 1.0, "requests": 10, "spans": 500, "latencies": [0.03] * 10},
        {"round": 2, "wall_s": 1.0, "cpu_s": 1.0, "requests": 20, "spans": 1000, "latencies": [0.02] * 20},
    ]
    m = tb.summarize_traces(samples)
    assert m["spans_per_s"] == 500 and m["spans_per_s_min"] == 250 and m["spans_per_s_max"] == 1000
    assert m["requests_per_s"] == 10 and m["spans"] == 2000
    assert m["cpu_ms_per_1000_spans"] == pytest.approx(1500)
    assert m["p50_ms"] == pytest.approx(20) and m["p99_ms"] == pytest.approx(30)


def test_trace_rounds_alternate_servers_and_pair_ours_with_the_peer(monkeypatch):
    from types import SimpleNamespace

    calls = []
    rates = {"ours": 400.0, "peer": 500.0}

    def fake_sample(target, experiment_id, cpu_seconds, round_no, *, seconds):
        calls.append((round_no, target["name"], experiment_id, cpu_seconds()))
        return {
            "round": round_no,
            "wall_s": 1.0,
            "cpu_s": 0.5,
            "requests": 2,
            "spans": rates[target["name"]] + round_no,
            "latencies": [0.01, 0.02],
        }

    monkeypatch.setattr(tb, "trace_sample", fake_sample)
    monkeypatch.setattr(tb, "_experiment", lambda target, label: f"exp-{label}")
    focused = []
    live = {n: SimpleNamespace(target={"name": n}, pgid=pgid) for n, pgid in (("default", 1), ("ours", 2), ("peer", 3))}
    out = tb.measure(live, lambda _live, name: focused.append(name), lambda pgid: float(pgid), rounds=3, seconds=1)
    assert [(r, n) for r, n, _, _ in calls] == [
        (0, "ours"),
        (0, "peer"),
        (1, "peer"),
        (1, "ours"),
        (2, "ours"),
        (2, "peer"),
    ]
    assert focused == [n for _, n, _, _ in calls]
    assert {(n, e, cpu) for _, n, e, cpu in calls} == {("ours", "exp-ours", 2.0), ("peer", "exp-peer", 3.0)}
    assert set(out["results"]) == {"ours", "peer"}  # the default server is not measured
    assert out["ours/peer"] == pytest.approx(401 / 501)
    assert out["results"]["ours"]["spans_per_s"] == 401
    assert all("latencies" not in s for s in out["rounds"]["ours"])


def test_report_has_the_trace_section_when_measured():
    report = _synthetic_report(0.95)
    assert "OpenTelemetry traces" not in sb.render(report)
    sample = {"round": 0, "wall_s": 1.0, "cpu_s": 0.2, "requests": 20, "spans": 1000, "latencies": [0.05] * 20}
    report["traces"] = {
        "setup": {"clients": 4, "seconds": 8.0, "spans_per_batch": 50, "spans_per_trace": 5},
        "results": {"ours": tb.summarize_traces([sample]), "peer": tb.summarize_traces([sample])},
        "ours/peer": 0.9,
    }
    text = sb.render(report)
    assert "OpenTelemetry traces (OTLP/HTTP protobuf to /v1/traces): 4 client processes" in text
    assert "| ours | 1000 | 1000-1000 | 20.0 | 50.0 | 50.0 | 50.0 | 200 |" in text
    assert "| ours/peer (median of rounds) | 0.90 |" in text
    assert text.index("OpenTelemetry traces") < text.index("## Targets")
