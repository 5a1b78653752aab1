"""What a stack asks of the cluster: Kubernetes quantities, the footprint of every pod and Job, MLflow's
worker count, and the PostgreSQL connections MLflow can hold. Shared by the configuration rules (the PR
budget, the memory checks), the wiring (max_connections) and the benchmark."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.minio_store import BOOTSTRAP_CPU_REQUEST, BOOTSTRAP_MEMORY_REQUEST
from components.mlflow_gc import GC_CPU_REQUEST, GC_MEMORY_REQUEST
from components.mlflow_server import MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST
from components.postgres_backup import BACKUP_SIDECAR_CPU_REQUEST, BACKUP_SIDECAR_MEMORY_REQUEST

if TYPE_CHECKING:
    from config.model import StackConfig

# The Kubernetes quantity grammar (resource.Quantity): a decimal, then an exponent or one suffix.
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIX: dict[str | None, float] = {
    None: 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
# One uvicorn worker's resident memory, and what one replica needs besides its workers.
WORKER_MEMORY_BYTES = 150 * 2**20
SERVER_BASE_MEMORY_BYTES = 128 * 2**20
# MLflow 3.18's job runner: 10 more processes (huey consumers), measured 1950 MiB PSS for a 1-worker
# server with it against 379 MiB without.
JOB_RUNNER_MEMORY_BYTES = 1600 * 2**20
# PR stacks share a cluster with many others: their steady state plus the migration Job must fit.
PR_MEMORY_BUDGET_BYTES = 1024**3
PR_CPU_BUDGET_MILLICORES = 500


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number: CPU in cores ("250m" -> 0.25), memory in bytes ("1Gi")."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, exponent, suffix = match.groups()
    return float(number) * (10 ** int(exponent[1:]) if exponent else _SUFFIX[suffix])


def parse_quantity(value: Any) -> float | None:
    """A quantity from configuration: None when malformed."""
    try:
        return quantity(value)
    except ValueError:
        return None


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def mlflow_workers(requested: int, cpu_limit: str) -> int:
    """mlflowWorkers, or (0) one per whole core of the CPU limit (at least one)."""
    return requested or max(1, int(parse_quantity(cpu_limit) or 1))


def mlflow_memory(workers: int, job_runner: bool = False) -> int:
    """What one MLflow replica needs: its workers, and the job runner's processes when on."""
    return SERVER_BASE_MEMORY_BYTES + workers * WORKER_MEMORY_BYTES + (JOB_RUNNER_MEMORY_BYTES if job_runner else 0)


def _sum(parts: list[tuple[int, str, str]]) -> tuple[float, float]:
    return (
        sum(count * (parse_quantity(cpu) or 0) for count, cpu, _ in parts),
        sum(count * (parse_quantity(memory) or 0) for count, _, memory in parts),
    )


def footprint(c: StackConfig, with_operations: bool = True) -> tuple[float, float]:
    """Total requested (CPU cores, memory bytes): every pod of the stack plus its Jobs."""
    parts = [
        (c.mlflow_replicas, c.mlflow_cpu_request, c.mlflow_memory_request),
        (1, MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST),
    ]
    if c.postgres_in_cluster:
        parts.append((c.postgres_instances, c.postgres_cpu_request, c.postgres_memory_request))
    if c.object_store_in_cluster:
        parts += [
            (c.minio_replicas, c.minio_cpu_request, c.minio_memory_request),
            (1, BOOTSTRAP_CPU_REQUEST, BOOTSTRAP_MEMORY_REQUEST),
        ]
    cpu, memory = _sum(parts)
    if with_operations:
        extra_cpu, extra_memory = operations_footprint(c)
        cpu, memory = cpu + extra_cpu, memory + extra_memory
    return cpu, memory


def operations_footprint(c: StackConfig) -> tuple[float, float]:
    """(CPU cores, memory bytes) the operations add: the backup sidecar per instance, the gc Job."""
    parts = []
    if c.backup_store_needed:
        parts.append((c.postgres_instances, BACKUP_SIDECAR_CPU_REQUEST, BACKUP_SIDECAR_MEMORY_REQUEST))
    if c.gc_on:
        parts.append((1, GC_CPU_REQUEST, GC_MEMORY_REQUEST))
    return _sum(parts)


# --------------------------------------------------------------------------- PostgreSQL connection budget
# What MLflow can hold open at once, so PostgreSQL's max_connections is sized for it (in-cluster) or a
# server that cannot take it is refused (postgresMaxConnections). Counted from MLflow 3.18's source:
# each uvicorn worker opens one SQLAlchemy engine per store, tracking, model registry and basic auth
# (mlflow/store/tracking|model_registry/sqlalchemy_store.py, mlflow/server/auth/sqlalchemy_store.py),
# each pooling up to mlflowDbPoolSize + mlflowDbMaxOverflow connections.
ENGINES_PER_WORKER = 3
# `mlflow server` itself opens the tracking and registry stores once before it starts uvicorn and
# keeps their pooled connection for its life (measured: tests/integration/test_connection_budget.py).
SERVER_PROCESS_CONNECTIONS = 2
# With mlflowJobRunner on: the job runner and its huey consumers (one per MLflow 3.18 job type, and
# one for periodic tasks), an engine each.
JOB_RUNNER_PROCESSES = 9
# A single-threaded command (a migration Job step, mlflow gc): its connection and one nested session.
COMMAND_CONNECTIONS = 2
# Rolling updates start a new pod before an old one stops (the Deployment's maxSurge: 1).
SURGE_PODS = 1
# PostgreSQL keeps these slots for superusers (superuser_reserved_connections, set explicitly);
# CloudNativePG's instance manager connects as superuser (status, the metrics exporter per database,
# backups) and may use ordinary slots as well.
SUPERUSER_RESERVED_CONNECTIONS = 3
INSTANCE_MANAGER_CONNECTIONS = 5


@dataclass(frozen=True)
class ConnectionBudget:
    """The connections MLflow's role can hold at once, and PostgreSQL's max_connections that fits them."""

    per_pod: int
    pods: int  # replicas and the surge pod of a rolling update
    commands: int  # the migration Job and mlflow gc
    reserved: int  # superuser slots and the instance manager's connections

    @property
    def mlflow(self) -> int:
        return self.pods * self.per_pod + self.commands

    @property
    def max_connections(self) -> int:
        return self.mlflow + self.reserved


def connection_budget(c: StackConfig) -> ConnectionBudget:
    per_engine = c.mlflow_db_pool_size + c.mlflow_db_max_overflow
    per_pod = c.mlflow_worker_count * ENGINES_PER_WORKER * per_engine + SERVER_PROCESS_CONNECTIONS
    if c.job_runner_on:
        per_pod += JOB_RUNNER_PROCESSES * per_engine
    return ConnectionBudget(
        per_pod=per_pod,
        pods=c.mlflow_replicas + SURGE_PODS,
        commands=COMMAND_CONNECTIONS * (2 if c.gc_on else 1),
        reserved=SUPERUSER_RESERVED_CONNECTIONS + INSTANCE_MANAGER_CONNECTIONS,
    )


def max_connections(c: StackConfig) -> int:
    """An in-cluster server's max_connections: postgresMaxConnections, or (0) the budget."""
    return c.postgres_max_connections or connection_budget(c).max_connections
