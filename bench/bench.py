"""`make bench`: the tracking server we deploy, side by side with its peers; footprint; critical path.

    venv/bin/python -m bench.bench                 # everything: server benchmark + the static reports
    venv/bin/python -m bench.bench --static-only   # only sections 2-4 (seconds, no servers)
    venv/bin/python -m bench.bench --json          # the static reports as JSON
    venv/bin/python -m bench.bench --check         # exit 1 when a static check fails (PR budget, parallel)

1. The tracking server (bench/server/server_bench.py): ours (the dev stack's rendered argv/env, PostgreSQL with
   the stack's TLS material verify-full, auth, S3 over TLS), the peers' setup (community Helm chart
   style, at MLflow's default workers and at ours') and MLflow's own default, on this machine in one
   run: each measured alone on one CPU once settled, in interleaved rounds; the S3 ceiling; targets and
   where the time goes; table + chart under build/bench/.
2. Resource counts per stack, by type.
3. Deployment critical path over the recorded dependency graph, weighted by readiness waits.
4. CPU/memory requests and limits of every pod template, per stack; the PR budget check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizing import quantity

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
COMPONENT_DEPS_PROBE = BENCH_DIR / "component_deps_probe.py"
STACKS = ("dev", "prod", "pr-42")
# PR review stacks: the whole stack (steady state + migration Job) must fit these requests.
PR_MEMORY_BUDGET_BYTES = 1024**3
PR_CPU_BUDGET_CORES = 0.5

COMPONENT_TYPES = {
    "postgres": "mlflow-platform:index:PostgresCluster",
    "minio": "mlflow-platform:index:MinioStore",
}
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
# PostgreSQL's backups write into the object store (prod: the in-cluster MinIO), so they must wait for its
# bucket and credentials; the database itself must not.
BACKUP_TYPES = {
    "kubernetes:barmancloud.cnpg.io/v1:ObjectStore",
    "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup",
}
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:core/v1:Pod",
}


# =========================================================================== quantities
def format_cpu(cores: float | None) -> str:
    if cores is None:
        return "unbounded"
    millis = cores * 1000
    return f"{millis:.0f}m" if abs(millis - round(millis)) < 1e-6 else f"{millis:.3f}m"


def format_memory(size: float | None) -> str:
    if size is None:
        return "unbounded"
    mib = size / 2**20
    if mib >= 1024 and (mib / 1024).is_integer():
        return f"{mib / 1024:.0f}Gi"
    return f"{mib:.0f}Mi" if abs(mib - round(mib)) < 1e-9 else f"{mib:.1f}Mi"


# =========================================================================== footprint
RESOURCES = ("cpu", "memory")
SECTIONS = ("requests", "limits")


def container_amounts(container: Mapping, section: str) -> dict[str, float | None]:
    """What one container asks for. A missing request defaults to the limit (as the API server does),
    else 0; a missing limit is unbounded (None)."""
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    out: dict[str, float | None] = {}
    for name in RESOURCES:
        if section == "requests":
            raw = requests.get(name, limits.get(name))
            out[name] = quantity(raw) if raw is not None else 0.0
        else:
            out[name] = quantity(limits[name]) if name in limits else None
    return out


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _max(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(a, b)


def pod_amounts(pod_spec: Mapping, section: str = "requests") -> dict[str, float | None]:
    """Effective per-pod amount, as the scheduler computes it.

    max(sum(app containers) + sum(sidecars), max over plain init containers of (init + sidecars
    started before it)); a sidecar is an init container with restartPolicy: Always. Init containers
    run one at a time, so a Job whose steps are init containers needs its largest step, not the sum.
    """
    out: dict[str, float | None] = {}
    containers = pod_spec.get("containers") or []
    inits = pod_spec.get("initContainers") or []
    for name in RESOURCES:
        sidecars_so_far: float | None = 0.0
        init_peak: float | None = 0.0
        for init in inits:
            amount = container_amounts(init, section)[name]
            if init.get("restartPolicy") == "Always":
                sidecars_so_far = _add(sidecars_so_far, amount)
                init_peak = _max(init_peak, sidecars_so_far)
            else:
                init_peak = _max(init_peak, _add(amount, sidecars_so_far))
        app: float | None = sidecars_so_far
        for container in containers:
            app = _add(app, container_amounts(container, section)[name])
        out[name] = _max(app, init_peak)
    return out


@dataclass
class Workload:
    kind: str
    name: str
    pods: int
    per_pod: dict  # section -> resource -> amount (None = unbounded)
    note: str = ""

    def total(self, section: str, resource: str) -> float | None:
        amount = self.per_pod[section][resource]
        return None if amount is None else amount * self.pods


def _pods_of_template(obj: Mapping) -> tuple[int, Mapping, str] | None:
    """(pod count, pod spec, note) for a Kubernetes object that runs pods; None for the rest."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return int(spec.get("replicas", 1)), spec["template"]["spec"], ""
    if kind == "Job":
        return int(spec.get("parallelism", 1)), spec["template"]["spec"], "runs to completion"
    if kind == "CronJob":
        job = spec["jobTemplate"]["spec"]
        return int(job.get("parallelism", 1)), job["template"]["spec"], "scheduled"
    if kind == "Pod":
        return 1, spec, ""
    if kind == "DaemonSet":
        return 1, spec["template"]["spec"], "per node; counted once"
    return None


def workloads(objects: Iterable[Mapping], labels: Iterable[str] | None = None) -> list[Workload]:
    """Every pod-running object in a list of Kubernetes manifests, with its per-pod amounts.

    `labels` (same order as `objects`) names each workload; by default its metadata.name."""
    found = []
    objects = list(objects)
    names = list(labels) if labels is not None else [(o.get("metadata") or {}).get("name", "?") for o in objects]
    if len(names) != len(objects):
        raise ValueError("one label per object")
    for obj, name in zip(objects, names, strict=True):
        kind = obj.get("kind")
        if kind == "Cluster" and str(obj.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
            spec = obj.get("spec") or {}
            pod = {"containers": [{"name": "postgres", "resources": spec.get("resources") or {}}]}
            found.append(
                Workload(
                    kind,
                    name,
                    int(spec.get("instances", 1)),
                    {s: pod_amounts(pod, s) for s in SECTIONS},
                    "CNPG instances x spec.resources",
                )
            )
            continue
        pods = _pods_of_template(obj)
        if pods is None:
            continue
        count, pod_spec, note = pods
        found.append(Workload(kind, name, count, {s: pod_amounts(pod_spec, s) for s in SECTIONS}, note))
    return found


def footprint_totals(items: Iterable[Workload]) -> dict[str, dict[str, float | None]]:
    totals: dict[str, dict[str, float | None]] = {s: {r: 0.0 for r in RESOURCES} for s in SECTIONS}
    for item in items:
        for section in SECTIONS:
            for resource in RESOURCES:
                totals[section][resource] = _add(totals[section][resource], item.total(section, resource))
    return totals


def pr_budget_check(totals: Mapping) -> dict[str, Any]:
    cpu, memory = totals["requests"]["cpu"], totals["requests"]["memory"]
    return {
        "cpu_requested": cpu,
        "memory_requested": memory,
        "cpu_budget": PR_CPU_BUDGET_CORES,
        "memory_budget": PR_MEMORY_BUDGET_BYTES,
        "cpu_ok": cpu <= PR_CPU_BUDGET_CORES + 1e-9,
        "memory_ok": memory <= PR_MEMORY_BUDGET_BYTES,
        "passed": cpu <= PR_CPU_BUDGET_CORES + 1e-9 and memory <= PR_MEMORY_BUDGET_BYTES,
    }


# =========================================================================== dependency graph
@dataclass
class Graph:
    """Custom resources (nodes, by URN) and what each waits for before the engine creates it."""

    names: dict[str, str]  # urn -> resource name
    types: dict[str, str]  # urn -> type token
    weights: dict[str, int]  # urn -> 1 if the engine waits for readiness, else 0
    deps: dict[str, set[str]]  # urn -> urns it waits for
    component_refs: int = 0  # dependencies that named a component (expanded here)
    provider_edges: int = 0  # edges added because a resource waits for its provider
    descendants: dict[str, set[str]] = field(default_factory=dict)  # component urn -> custom descendants

    def ancestors(self, urns: Iterable[str]) -> set[str]:
        """Everything the given nodes wait for, transitively (the nodes themselves excluded)."""
        seen: set[str] = set()
        stack = [d for u in urns for d in self.deps.get(u, ())]
        while stack:
            urn = stack.pop()
            if urn not in seen:
                seen.add(urn)
                stack.extend(self.deps.get(urn, ()))
        return seen


def readiness_weight(reg) -> int:
    """1 for resources whose creation waits for something to come up, 0 for plain API objects."""
    inputs = reg.inputs or {}
    annotations = (inputs.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get("pulumi.com/skipAwait", "")).lower() == "true":
        return 0
    if reg.type in WORKLOAD_TYPES:
        return 1
    if reg.type == HELM_RELEASE:
        return 0 if inputs.get("skipAwait") else 1
    if reg.type == "kubernetes:core/v1:Service":
        return 1 if (inputs.get("spec") or {}).get("type") == "LoadBalancer" else 0
    if reg.type.startswith("kubernetes:") and "pulumi.com/waitFor" in annotations:
        return 1  # e.g. the CNPG Cluster with waitFor: condition=Ready
    return 0


def _provider_urn(ref: str) -> str:
    return ref.rsplit("::", 1)[0] if ref else ""


def build_graph(registrations: Iterable) -> Graph:
    """Nodes: custom resources. Edges: `dependencies`, property dependencies and the resource's
    provider (the engine creates a resource only once its provider is configured; this is how the
    MinIO bucket waits for the MinIO StatefulSet). A dependency on a component stands for all of its
    custom descendants. Being a child of a component is not a dependency."""
    regs = list(registrations)
    by_urn = {r.urn: r for r in regs}
    children: dict[str, list[str]] = defaultdict(list)
    for r in regs:
        if r.parent:
            children[r.parent].append(r.urn)

    def custom_descendants(urn: str) -> set[str]:
        out, stack = set(), list(children.get(urn, ()))
        while stack:
            u = stack.pop()
            if u in by_urn and by_urn[u].custom:
                out.add(u)
            stack.extend(children.get(u, ()))
        return out

    graph = Graph(names={}, types={}, weights={}, deps={})
    for r in regs:
        if not r.custom:
            graph.descendants[r.urn] = custom_descendants(r.urn)
    for r in regs:
        if not r.custom:
            continue
        graph.names[r.urn], graph.types[r.urn], graph.weights[r.urn] = r.name, r.type, readiness_weight(r)
        wanted = set(r.dependencies)
        for urns in (r.property_dependencies or {}).values():
            wanted.update(urns)
        provider = _provider_urn(r.provider)
        if provider and provider in by_urn and provider not in wanted:
            graph.provider_edges += 1
        if provider:
            wanted.add(provider)
        deps: set[str] = set()
        for urn in wanted:
            target = by_urn.get(urn)
            if target is not None and not target.custom:
                graph.component_refs += 1
                deps.update(graph.descendants[urn])
            elif target is not None:
                deps.add(urn)
        deps.discard(r.urn)
        graph.deps[r.urn] = deps
    return graph


def critical_path(weights: Mapping[str, int], deps: Mapping[str, Iterable[str]]) -> tuple[int, list[str]]:
    """Longest chain by summed weight in a DAG (deps: node -> nodes it waits for).

    Returns (weight, chain from first to last). Ties go to the chain with more nodes, then to the
    alphabetically first node, so the answer is deterministic. Raises ValueError on a cycle.
    """
    nodes = set(weights) | set(deps) | {d for ds in deps.values() for d in ds}
    waits = {n: set(deps.get(n, ())) for n in nodes}
    users: dict[str, set[str]] = defaultdict(set)
    for node, ds in waits.items():
        for d in ds:
            users[d].add(node)
    pending = {n: len(ds) for n, ds in waits.items()}
    ready = sorted(n for n, count in pending.items() if count == 0)
    best: dict[str, tuple[int, int]] = {}
    previous: dict[str, str | None] = {}
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        own = (int(weights.get(node, 0)), 1)
        choice, score = None, (0, 0)
        for d in sorted(waits[node]):
            if best[d] > score:
                choice, score = d, best[d]
        best[node] = (score[0] + own[0], score[1] + own[1])
        previous[node] = choice
        for user in users[node]:
            pending[user] -= 1
            if pending[user] == 0:
                ready.append(user)
        ready.sort(reverse=True)
    if done != len(nodes):
        raise ValueError("the dependency graph has a cycle: " + ", ".join(sorted(n for n in nodes if pending[n])))
    if not nodes:
        return 0, []
    end = min(nodes, key=lambda n: (-best[n][0], -best[n][1], n))
    chain = [end]
    while previous[chain[-1]] is not None:
        chain.append(previous[chain[-1]])
    return best[end][0], chain[::-1]


def critical_nodes(weights: Mapping[str, int], deps: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node that lies on SOME chain of maximal weight (there can be several, tied)."""
    nodes = set(weights) | set(deps) | {d for ds in deps.values() for d in ds}
    before = finish_levels(weights, deps)  # weight of the heaviest chain ending at the node (inclusive)
    users: dict[str, set[str]] = defaultdict(set)
    for node in nodes:
        for d in deps.get(node, ()):
            users[d].add(node)
    after: dict[str, int] = {}  # weight of the heaviest chain starting at the node (inclusive)
    order = sorted(nodes, key=lambda n: before[n], reverse=True)

    def tail(node: str) -> int:
        if node not in after:
            after[node] = int(weights.get(node, 0)) + max((tail(u) for u in users[node]), default=0)
        return after[node]

    for node in order:
        tail(node)
    best = max(before.values(), default=0)
    return {n for n in nodes if before[n] + after[n] - int(weights.get(n, 0)) == best}


def finish_levels(weights: Mapping[str, int], deps: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """For each node: readiness waits on the longest chain ending with it (its earliest 'finish step')."""
    memo: dict[str, int] = {}

    def level(node: str, trail: frozenset = frozenset()) -> int:
        if node in memo:
            return memo[node]
        if node in trail:
            raise ValueError(f"cycle through {node}")
        inner = trail | {node}
        memo[node] = int(weights.get(node, 0)) + max((level(d, inner) for d in deps.get(node, ())), default=0)
        return memo[node]

    for node in set(weights) | set(deps) | {d for ds in deps.values() for d in ds}:
        level(node)
    return memo


def independent(graph: Graph, group_a: set[str], group_b: set[str]) -> dict[str, Any]:
    """Whether two groups of resources come up in parallel: nothing in either group waits, even
    transitively, for a readiness gate (weight 1) in the other. What one group takes from the other
    that is created at once (a Secret, a plain Service) is listed apart: it does not serialise them."""

    def waits(group: set[str], other: set[str]) -> tuple[list[str], list[str]]:
        upstream = graph.ancestors(group) & other
        gated = sorted({graph.names[u] for u in upstream if graph.weights[u]})
        return gated, sorted({graph.names[u] for u in upstream if not graph.weights[u]})

    a_waits_for_b, a_uses_from_b = waits(group_a, group_b)
    b_waits_for_a, b_uses_from_a = waits(group_b, group_a)
    return {
        "independent": not a_waits_for_b and not b_waits_for_a,
        "a_waits_for_b": a_waits_for_b,
        "b_waits_for_a": b_waits_for_a,
        "a_uses_from_b": a_uses_from_b,
        "b_uses_from_a": b_uses_from_a,
    }


def data_services_parallel(ev_registrations: list, graph: Graph | None = None) -> dict[str, Any]:
    """PostgreSQL (PostgresCluster component) vs MinIO (MinioStore component): none of each one's
    custom resources waits for the other's readiness, except PostgreSQL's backups (BACKUP_TYPES),
    which write into the store: what they wait for is reported apart."""
    graph = graph or build_graph(ev_registrations)
    groups = {}
    for key, typ in COMPONENT_TYPES.items():
        components = [r.urn for r in ev_registrations if r.type == typ]
        if len(components) != 1:
            raise AssertionError(f"expected one {typ}, found {len(components)}")
        groups[key] = graph.descendants[components[0]]
    backups = {u for u in groups["postgres"] if graph.types[u] in BACKUP_TYPES}
    result = independent(graph, groups["postgres"] - backups, groups["minio"])
    levels = finish_levels(graph.weights, graph.deps)
    ready = {}
    for key, group in groups.items():
        gates = [u for u in group if graph.weights[u] and graph.types[u] != "kubernetes:core/v1:Service"]
        ready[key] = {graph.names[u]: levels[u] for u in sorted(gates, key=lambda u: graph.names[u])}
    return {
        "independent": result["independent"],
        "postgres_waits_for_minio": result["a_waits_for_b"],
        "minio_waits_for_postgres": result["b_waits_for_a"],
        "postgres_uses_from_minio": result["a_uses_from_b"],
        "minio_uses_from_postgres": result["b_uses_from_a"],
        "backups_wait_for_minio": sorted(
            {graph.names[u] for u in graph.ancestors(backups) & groups["minio"] if graph.weights[u]}
        ),
        "readiness_levels": ready,
    }


# =========================================================================== running programs
def run_program(stack: str, program: Path | None = None, config: dict | None = None):
    """evaluate_stack for `stack` (tools/mock_engine.py), on the real program or another one (the floor, a probe)."""
    from tools import mock_engine

    return mock_engine.evaluate_stack(stack, config, program=program)


# =========================================================================== static analyses
def count_resources(registrations: list) -> dict:
    custom = [r for r in registrations if r.custom]
    components = [r for r in registrations if not r.custom]
    return {
        "custom": len(custom),
        "components": len(components),
        "total": len(registrations),
        "by_type": dict(sorted(Counter(r.type for r in registrations).items())),
    }


def sdk_expands_component_dependencies() -> dict:
    """Run bench/component_deps_probe.py: `consumer` depends_on a component with a nested component."""
    ev = run_program("dev", COMPONENT_DEPS_PROBE)
    consumer = next(r for r in ev.registrations if r.name == "consumer")
    names = {r.urn: r.name for r in ev.registrations}
    got = sorted(names.get(u, u) for u in consumer.dependencies)
    return {"consumer_dependencies": got, "expanded": got == ["group-a", "group-inner-b"]}


def analyse_stack(stack: str) -> dict:
    ev = run_program(stack)
    graph = build_graph(ev.registrations)
    weight, chain = critical_path(graph.weights, graph.deps)
    critical = critical_nodes(graph.weights, graph.deps)
    # ev.k8s_objects lists the Kubernetes registrations in order; label each by its Pulumi name.
    k8s_regs = [r for r in ev.registrations if r.custom and r.type.startswith("kubernetes:") and r.type != HELM_RELEASE]
    objects = ev.k8s_objects
    labels = [r.name for r in k8s_regs] if len(k8s_regs) == len(objects) else None
    kind_order = {"Cluster": 0, "StatefulSet": 1, "Deployment": 2, "Job": 3}
    items = sorted(workloads(objects, labels), key=lambda w: (kind_order.get(w.kind, 9), w.name))
    totals = footprint_totals(items)
    helm = [r.name for r in ev.registrations if r.type == HELM_RELEASE]
    return {
        "counts": count_resources(ev.registrations),
        "critical_path": {
            "length": weight,
            "chain": [{"name": graph.names[u], "type": graph.types[u], "weight": graph.weights[u]} for u in chain],
            "nodes": len(graph.names),
            "edges": sum(len(d) for d in graph.deps.values()),
            "provider_edges": graph.provider_edges,
            "component_refs_expanded": graph.component_refs,
            "critical_gates": sorted(graph.names[u] for u in critical if graph.weights[u]),
        },
        "parallel": data_services_parallel(ev.registrations, graph),
        "footprint": {
            "workloads": [
                {
                    "kind": w.kind,
                    "name": w.name,
                    "pods": w.pods,
                    "per_pod": w.per_pod,
                    "total": {s: {r: w.total(s, r) for r in RESOURCES} for s in SECTIONS},
                    "note": w.note,
                }
                for w in items
            ],
            "totals": totals,
            "not_counted": [
                f"helm Release {n}: the chart's pods (CNPG operator) run in its own namespace" for n in helm
            ],
            "pr_budget": pr_budget_check(totals),
        },
    }


# =========================================================================== report
def render(report: dict) -> str:
    out: list[str] = []
    add = out.append
    add("mlflow-platform: resources, critical path, footprint")
    add("=" * 100)
    stacks = report["stacks"]
    add("2. Resources per stack (recorded registrations; the implicit pulumi:pulumi:Stack root is not counted)")
    add(f"   {'stack':8}{'custom':>8}{'components':>12}{'total':>8}")
    for name, data in stacks.items():
        c = data["counts"]
        add(f"   {name:8}{c['custom']:>8}{c['components']:>12}{c['total']:>8}")
    all_types = sorted({t for d in stacks.values() for t in d["counts"]["by_type"]})
    add(f"   {'by type':64}" + "".join(f"{s:>7}" for s in stacks))
    for typ in all_types:
        add(f"   {typ:64}" + "".join(f"{d['counts']['by_type'].get(typ, 0):>7}" for d in stacks.values()))
    add("")
    add("3. Deployment critical path. Nodes: custom resources. Edges: dependencies + property dependencies + the")
    add("   resource's provider (the engine creates a resource only after configuring its provider, e.g. the")
    add("   MinIO bucket waits for the minio provider, which depends on the StatefulSet); a dependency on a")
    add("   component = all its custom descendants; a parent is not a dependency. Weight 1 (*) = the engine")
    add("   waits for readiness: Deployment/StatefulSet/Job, CNPG Cluster (pulumi.com/waitFor), helm Release,")
    add("   LoadBalancer Service; everything else 0.")
    probe = report.get("sdk_component_expansion")
    if probe:
        found = ", ".join(f"{s}: {d['critical_path']['component_refs_expanded']}" for s, d in stacks.items())
        add(
            f"   The SDK already expands depends_on=[component] into the component's custom descendants: "
            f"{'yes' if probe['expanded'] else 'NO'}"
        )
        add(
            f"   (probe program: consumer -> {probe['consumer_dependencies']}); component URNs left in the recorded "
            f"graphs: {found}."
        )
    for name, data in stacks.items():
        cp = data["critical_path"]
        chain = cp["chain"]
        add(f"   {name}: LENGTH {cp['length']} readiness waits: {' -> '.join(c['name'] for c in chain if c['weight'])}")
        add(
            f"     chain ({len(chain)} resources): {' -> '.join(c['name'] + ('*' if c['weight'] else '') for c in chain)}"
        )
        add(f"     every readiness gate on some longest chain (ties): {', '.join(cp['critical_gates'])}")
        add(f"     graph: {cp['nodes']} nodes, {cp['edges']} edges ({cp['provider_edges']} only via the provider)")
        par = data["parallel"]
        verdict = "independent -> they come up in parallel" if par["independent"] else "NOT independent"
        levels = "; ".join(
            f"{k}: " + ", ".join(f"{n} at wait {lvl}" for n, lvl in v.items())
            for k, v in par["readiness_levels"].items()
        )
        add(f"     PostgreSQL vs MinIO: {verdict} ({levels})")
        if par["postgres_uses_from_minio"] or par["minio_uses_from_postgres"]:
            add(
                f"       created at once, no wait: postgres uses from minio {par['postgres_uses_from_minio']}; "
                f"minio uses from postgres {par['minio_uses_from_postgres']}"
            )
        if par["backups_wait_for_minio"]:
            add(f"       PostgreSQL's backups wait for the store they write to: {par['backups_wait_for_minio']}")
        if not par["independent"]:
            add(
                f"       postgres waits for minio: {par['postgres_waits_for_minio']}; "
                f"minio waits for postgres: {par['minio_waits_for_postgres']}"
            )
    add("")
    add("4. CPU/memory per stack: pods x per-pod amount; per pod = max(sum of containers, largest init")
    add("   container) as the scheduler counts it; CNPG Cluster = instances x spec.resources; a missing limit")
    add("   is unbounded. Steady state + the migration Job (no rolling-update surge).")
    for name, data in stacks.items():
        fp = data["footprint"]
        add(f"   {name}")
        add(f"     {'workload':38}{'pods':>5}{'cpu req':>10}{'mem req':>10}{'cpu lim':>11}{'mem lim':>11}")
        for w in fp["workloads"]:
            t = w["total"]
            add(
                f"     {w['kind'] + '/' + w['name']:38}{w['pods']:>5}{format_cpu(t['requests']['cpu']):>10}"
                f"{format_memory(t['requests']['memory']):>10}{format_cpu(t['limits']['cpu']):>11}"
                f"{format_memory(t['limits']['memory']):>11}"
            )
        t = fp["totals"]
        add(
            f"     {'TOTAL':38}{'':>5}{format_cpu(t['requests']['cpu']):>10}{format_memory(t['requests']['memory']):>10}"
            f"{format_cpu(t['limits']['cpu']):>11}{format_memory(t['limits']['memory']):>11}"
        )
        for note in fp["not_counted"]:
            add(f"     not counted: {note}")
        if name.startswith("pr-"):
            b = fp["pr_budget"]
            add(
                f"     PR targets: memory requested {format_memory(b['memory_requested'])} <= 1Gi "
                f"{'PASS' if b['memory_ok'] else 'FAIL'}; cpu requested {format_cpu(b['cpu_requested'])} <= 500m "
                f"{'PASS' if b['cpu_ok'] else 'FAIL'}  => {'PASS' if b['passed'] else 'FAIL'}"
            )
    add("")
    add(
        f"All checks: {'PASS' if report['checks_passed'] else 'FAIL'} ("
        + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in report["checks"].items())
        + ")"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the static reports as JSON (no server benchmark)")
    parser.add_argument("--static-only", action="store_true", help="skip the server benchmark (section 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a static check fails")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if not (args.json or args.static_only):
        from bench.server import server_bench

        server_bench.main()
    report: dict[str, Any] = {
        "stacks": {stack: analyse_stack(stack) for stack in STACKS},
        "sdk_component_expansion": sdk_expands_component_dependencies(),
    }
    checks = {
        "pr_footprint": all(
            d["footprint"]["pr_budget"]["passed"] for s, d in report["stacks"].items() if s.startswith("pr-")
        ),
        "data_services_parallel": all(d["parallel"]["independent"] for d in report["stacks"].values()),
    }
    report["checks"] = checks
    report["checks_passed"] = all(checks.values())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 1 if args.check and not report["checks_passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
