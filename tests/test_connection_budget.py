"""PostgreSQL's connections sized with MLflow's pools, and a configuration that cannot fit refused.

MLflow 3.18 opens three SQLAlchemy pools per uvicorn worker (tracking, model registry, auth), each
up to mlflowDbPoolSize + mlflowDbMaxOverflow connections; a rollout runs one more pod; the migration
Job and gc connect too; CloudNativePG's instance manager and PostgreSQL's superuser slots take their
share. The in-cluster Cluster's max_connections holds all of it (PostgreSQL's default 100 does not:
prod's two replicas of two workers alone can hold 180). tests/integration/test_connection_budget.py
runs it under load on real PostgreSQL.
"""

from __future__ import annotations

import pytest

import sizing
from config import ConfigError
from tests.stacks import EXTERNAL_POSTGRES, container, env_value
from tools.mock_engine import evaluate_stack


def cluster_parameters(ev) -> dict:
    [cluster] = ev.k8s("Cluster")
    return cluster["spec"]["postgresql"]["parameters"]


@pytest.mark.parametrize(
    ("stack", "config", "max_connections"),
    [
        # (1 replica + 1 surge) x (1 worker x 3 stores x (10 + 5) + 2) + 2 migration + 2 gc + 3 + 5
        ("dev", None, 2 * (1 * 3 * 15 + 2) + 2 + 2 + 8),
        # (2 + 1) x (2 workers x 3 x 15 + 2) + 2 + 2 + 8
        ("prod", None, 3 * (2 * 3 * 15 + 2) + 2 + 2 + 8),
        # pr: no gc
        ("pr-42", None, 2 * (1 * 3 * 15 + 2) + 2 + 8),
        ("dev", {"mlflowDbPoolSize": 4, "mlflowDbMaxOverflow": 0, "mlflowWorkers": 2}, 2 * (2 * 3 * 4 + 2) + 4 + 8),
        # The job runner's processes hold pools too: 9 more per pod.
        (
            "dev",
            {"mlflowJobRunner": "on", "mlflowMemoryLimit": "3Gi"},
            2 * (1 * 3 * 15 + 2 + 9 * 15) + 4 + 8,
        ),
    ],
)
def test_max_connections_holds_every_pool_through_a_rollout(stack, config, max_connections):
    ev = evaluate_stack(stack, config)
    assert cluster_parameters(ev) == {
        "max_connections": str(max_connections),
        "superuser_reserved_connections": str(sizing.SUPERUSER_RESERVED_CONNECTIONS),
    }
    server = container(ev, "Deployment", "mlflow-deployment", "mlflow")
    pool = (config or {}).get("mlflowDbPoolSize", 10)
    overflow = (config or {}).get("mlflowDbMaxOverflow", 5)
    assert env_value(ev, server, "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE") == str(pool)
    assert env_value(ev, server, "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW") == str(overflow)
    [deployment] = ev.k8s("Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == sizing.SURGE_PODS


def test_prod_needs_more_than_postgres_default():
    assert int(cluster_parameters(evaluate_stack("prod"))["max_connections"]) > 100


def test_an_explicit_max_connections_is_used_when_it_fits():
    ev = evaluate_stack("dev", {"postgresMaxConnections": 150})
    assert cluster_parameters(ev)["max_connections"] == "150"


def test_a_max_connections_below_the_budget_is_refused_naming_the_keys():
    with pytest.raises(ConfigError) as refused:
        evaluate_stack("prod", {"postgresMaxConnections": 100})
    [line] = [line for line in str(refused.value).splitlines() if "postgresMaxConnections" in line]
    assert line.startswith("  - mlflow-platform:postgresMaxConnections = 100: MLflow can hold 280 connections")
    assert "2 replica(s) + 1 during a rollout, each 2 worker(s) x 3 stores x (10 + 5) + 2" in line
    assert "+ 8 for PostgreSQL's superuser slots and CloudNativePG's instance manager" in line
    assert "Fix: set postgresMaxConnections to at least 288" in line
    for key in ("mlflowDbPoolSize", "mlflowDbMaxOverflow", "mlflowWorkers", "mlflowReplicas"):
        assert key in line


def test_an_external_server_is_checked_against_what_mlflow_may_open():
    external = {**EXTERNAL_POSTGRES}
    # 0: the server's limit is unknown, nothing to check (and nothing to set: it is not ours).
    ev = evaluate_stack("dev", external)
    assert ev.k8s("Cluster") == []
    evaluate_stack("dev", {**external, "postgresMaxConnections": 98})  # MLflow's 98, no operator here
    with pytest.raises(ConfigError, match=r"postgresMaxConnections = 97: MLflow can hold 98 connections"):
        evaluate_stack("dev", {**external, "postgresMaxConnections": 97})


@pytest.mark.parametrize(
    ("key", "value"), [("mlflowDbPoolSize", 0), ("mlflowDbMaxOverflow", -1), ("postgresMaxConnections", -5)]
)
def test_pool_and_connection_keys_are_bounded(key, value):
    with pytest.raises(ConfigError, match=f"{key} = {value}: must be between"):
        evaluate_stack("dev", {key: value})
