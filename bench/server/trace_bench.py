"""OpenTelemetry trace ingestion, measured in the server benchmark (server_bench.main calls `measure`).

TRACE_CLIENTS client processes each export OTLP/HTTP protobuf batches (TRACE_SPANS_PER_BATCH spans: traces of
TRACE_SPANS_PER_TRACE spans, a root and its children, a few attributes each) to `/v1/traces` with the
experiment header, back to back for TRACE_SECONDS, on each server of TRACE_SERVERS in turn (the measured one
alone on its CPU), for TRACE_ROUNDS rounds in alternating order. Ours authenticates every request (basic
auth, EDIT on the experiment: the admin here) and stores in PostgreSQL over TLS; the peer has no auth.
Reported: spans ingested per second (median of rounds, min-max), requests per second, request latency
percentiles and the server's CPU per 1,000 spans. `otlp_request` is also the raw payload of
tests/integration/test_otel_traces.py.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

TRACE_SERVERS = ("ours", "peer")
TRACE_CLIENTS = 4
TRACE_SECONDS = 8.0
TRACE_ROUNDS = 3
TRACE_SPANS_PER_TRACE = 5
TRACE_SPANS_PER_BATCH = 50  # 10 traces per export request (the SDK's BatchSpanProcessor sends up to 512)
OTLP_PATH = "/v1/traces"
EXPERIMENT_HEADER = "x-mlflow-experiment-id"


def otlp_request(
    trace_ids: list[bytes],
    spans_per_trace: int = TRACE_SPANS_PER_TRACE,
    *,
    service: str = "trace-bench",
    start_ns: int | None = None,
) -> bytes:
    """An OTLP ExportTraceServiceRequest (protobuf bytes): per 16-byte trace id, a root span and
    `spans_per_trace - 1` children of it, each with a few attributes, one service resource."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def attribute(key: str, value: str | int) -> KeyValue:
        any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        return KeyValue(key=key, value=any_value)

    start = time.time_ns() if start_ns is None else start_ns
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(attribute("service.name", service))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "bench.server.trace_bench"
    for trace_id in trace_ids:
        if len(trace_id) != 16:
            raise ValueError("an OTLP trace id is 16 bytes")
        root_id = trace_id[:4] + (1).to_bytes(4, "big")
        for i in range(spans_per_trace):
            span = scope.spans.add()
            span.trace_id = trace_id
            span.span_id = trace_id[:4] + (i + 1).to_bytes(4, "big")
            if i:
                span.parent_span_id = root_id
            span.name = "request" if i == 0 else f"step-{i}"
            span.kind = Span.SPAN_KIND_SERVER if i == 0 else Span.SPAN_KIND_INTERNAL
            span.start_time_unix_nano = start + i * 1000
            span.end_time_unix_nano = start + (spans_per_trace - i) * 1_000_000
            span.attributes.extend([attribute("bench.step", i), attribute("bench.note", "ingested by trace_bench")])
            span.status.code = Status.STATUS_CODE_OK
    return request.SerializeToString()


def _session(target: Mapping[str, Any], experiment_id: str):
    import requests

    session = requests.Session()
    session.headers.update(
        {"Host": target["host_header"], "Content-Type": "application/x-protobuf", EXPERIMENT_HEADER: experiment_id}
    )
    if target.get("auth"):
        session.auth = tuple(target["auth"])
    return session


def _trace_client(job: tuple) -> dict:
    """One client process: export batches back to back until `seconds` have passed (or `batches` were
    sent, when given); every answer must be 200."""
    target, experiment_id, seconds, batches = job
    session = _session(target, experiment_id)
    url = f"{target['url']}{OTLP_PATH}"
    traces_per_batch = max(1, TRACE_SPANS_PER_BATCH // TRACE_SPANS_PER_TRACE)
    latencies: list[float] = []
    spans = 0
    deadline = time.perf_counter() + seconds
    while (batches is None and time.perf_counter() < deadline) or (batches is not None and len(latencies) < batches):
        body = otlp_request([os.urandom(16) for _ in range(traces_per_batch)])
        start = time.perf_counter()
        response = session.post(url, data=body, timeout=120)
        latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{OTLP_PATH}: {response.status_code} {response.text[:300]}")
        spans += traces_per_batch * TRACE_SPANS_PER_TRACE
    return {"requests": len(latencies), "spans": spans, "latencies": latencies}


def trace_sample(
    target: Mapping[str, Any],
    experiment_id: str,
    cpu_seconds: Callable[[], float],
    round_no: int,
    *,
    clients: int = TRACE_CLIENTS,
    seconds: float = TRACE_SECONDS,
) -> dict:
    """One round on one server: clients exporting for `seconds`; wall time, server CPU, spans, latencies."""
    jobs = [(dict(target), experiment_id, seconds, None)] * clients
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        pool.map(_trace_client, [(dict(target), experiment_id, 0.0, 1)] * clients)  # connections, auth cache
        cpu_before, start = cpu_seconds(), time.perf_counter()
        results = pool.map(_trace_client, jobs)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    return {
        "round": round_no,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests": sum(r["requests"] for r in results),
        "spans": sum(r["spans"] for r in results),
        "latencies": [x for r in results for x in r["latencies"]],
    }


def summarize_traces(samples: list[dict]) -> dict:
    """One server over its rounds: median spans/s (min-max), requests/s, pooled latency percentiles (ms)
    of one export request, server CPU per 1,000 spans."""
    from bench.server.server_bench import percentiles

    rates = [s["spans"] / s["wall_s"] for s in samples]
    spans = sum(s["spans"] for s in samples)
    return {
        "rounds": len(samples),
        "spans": spans,
        "spans_per_s": statistics.median(rates),
        "spans_per_s_min": min(rates),
        "spans_per_s_max": max(rates),
        "requests_per_s": statistics.median(s["requests"] / s["wall_s"] for s in samples),
        "cpu_ms_per_1000_spans": sum(s["cpu_s"] for s in samples) / spans * 1_000_000,
        **percentiles([x for s in samples for x in s["latencies"]]),
    }


def _experiment(target: Mapping[str, Any], label: str) -> str:
    session = _session(target, "")
    response = session.post(
        f"{target['url']}/api/2.0/mlflow/experiments/create",
        json={"name": f"bench-traces-{label}-{time.time_ns()}"},
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    if response.status_code != 200:
        raise RuntimeError(f"experiments/create: {response.status_code} {response.text[:300]}")
    return response.json()["experiment_id"]


def measure(
    live: Mapping[str, Any],
    focus: Callable[[Mapping[str, Any], str], None],
    group_cpu_seconds: Callable[[int], float],
    progress: Callable[[str], None] = lambda _msg: None,
    *,
    servers: tuple[str, ...] = TRACE_SERVERS,
    rounds: int = TRACE_ROUNDS,
    seconds: float = TRACE_SECONDS,
) -> dict:
    """Spans/s through each live server of `servers` (server_bench's SimpleNamespace: target, pgid)."""
    names = [n for n in servers if n in live]
    experiments = {n: _experiment(live[n].target, n) for n in names}
    samples: dict[str, list[dict]] = {n: [] for n in names}
    for round_no in range(rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            progress(f"traces round {round_no + 1}/{rounds}: {name}")
            focus(live, name)
            pgid = live[name].pgid
            samples[name].append(
                trace_sample(
                    live[name].target,
                    experiments[name],
                    lambda pgid=pgid: group_cpu_seconds(pgid),
                    round_no,
                    seconds=seconds,
                )
            )
    out: dict[str, Any] = {
        "setup": {
            "clients": TRACE_CLIENTS,
            "seconds": seconds,
            "spans_per_batch": TRACE_SPANS_PER_BATCH,
            "spans_per_trace": TRACE_SPANS_PER_TRACE,
        },
        "results": {n: summarize_traces(samples[n]) for n in names},
        "rounds": {n: [{k: v for k, v in s.items() if k != "latencies"} for s in samples[n]] for n in names},
    }
    if "ours" in samples and "peer" in samples:
        peer = {s["round"]: s["spans"] / s["wall_s"] for s in samples["peer"]}
        out["ours/peer"] = statistics.median(s["spans"] / s["wall_s"] / peer[s["round"]] for s in samples["ours"])
    return out


def render_lines(traces: Mapping[str, Any]) -> list[str]:
    """The report's section (markdown lines)."""
    setup = traces["setup"]
    lines = [
        "",
        f"OpenTelemetry traces (OTLP/HTTP protobuf to {OTLP_PATH}): {setup['clients']} client processes, "
        f"{setup['seconds']:.0f} s per round, {setup['spans_per_batch']} spans per request "
        f"(traces of {setup['spans_per_trace']}).",
        "",
        "| server | spans/s (median) | min-max | requests/s | p50 ms | p95 ms | p99 ms | server CPU ms / 1,000 spans |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in traces["results"].items():
        lines.append(
            f"| {name} | {m['spans_per_s']:.0f} | {m['spans_per_s_min']:.0f}-{m['spans_per_s_max']:.0f} | "
            f"{m['requests_per_s']:.1f} | {m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['p99_ms']:.1f} | "
            f"{m['cpu_ms_per_1000_spans']:.0f} |"
        )
    if "ours/peer" in traces:
        lines.append(f"| ours/peer (median of rounds) | {traces['ours/peer']:.2f} | | | | | | |")
    return lines
