"""OpenTelemetry traces into a deployed stack: the OpenTelemetry SDK exports spans over OTLP/HTTP to the
tracking server's `/v1/traces`, then MLflow's client finds them in the experiment.

The tracking URL and credentials come from the environment, as the stack outputs give them (README.md,
Quickstart), plus the experiment the traces go to:

    export MLFLOW_TRACKING_URI=$(pulumi stack output trackingUrl)
    export MLFLOW_TRACKING_USERNAME=$(pulumi stack output adminUser)
    export MLFLOW_TRACKING_PASSWORD=$(pulumi stack output adminPassword --show-secrets)
    export MLFLOW_EXPERIMENT_NAME=otel-traces     # or MLFLOW_EXPERIMENT_ID=<id>; default: otel-traces
    python examples/otel_traces.py

Needs `pip install mlflow opentelemetry-exporter-otlp-proto-http` (the exporter is not one of MLflow's
dependencies; requirements-dev.txt pins the version tested). What an exporter needs (docs/tracing.md):

    endpoint   <trackingUrl>/v1/traces                  (OTLP over HTTP, protobuf; the ingress route of the API)
    headers    x-mlflow-experiment-id: <experiment id>  (required: the experiment the spans land in)
               Authorization: Basic base64(user:password)  (EDIT on that experiment, or an admin)

The same can be set without code for any OTel SDK: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-mlflow-experiment-id=<id>,authorization=Basic%20<base64>".

The script finds (or creates) the experiment through MLflow's client, emits one trace (a parent span and
two children, with attributes), flushes, then reads the trace back through MlflowClient (get_trace and
search_traces) and exits non-zero unless every span landed in the experiment. The last line printed is a
JSON summary.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

from mlflow import MlflowClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

DEFAULT_EXPERIMENT = "otel-traces"
EXPERIMENT_HEADER = "x-mlflow-experiment-id"  # the header MLflow's /v1/traces reads the experiment from
# What the example emits: span name -> parent name (None: the root) and attributes.
SPANS: dict[str, tuple[str | None, dict]] = {
    "answer-question": (None, {"app.question": "what is MLflow?", "app.user": "example"}),
    "retrieve-documents": ("answer-question", {"retrieval.top_k": 3, "retrieval.index": "docs"}),
    "generate-answer": ("answer-question", {"llm.model": "stub-model", "llm.tokens": 42}),
}


class RecordingExporter(OTLPSpanExporter):
    """The OTLP/HTTP exporter, remembering the outcome of each export (a refused export, 401 or 403,
    only reaches the OTel SDK's log otherwise)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.results: list[SpanExportResult] = []

    def export(self, spans):
        result = super().export(spans)
        self.results.append(result)
        return result


def experiment_id(client: MlflowClient) -> str:
    """MLFLOW_EXPERIMENT_ID if set, else the experiment named MLFLOW_EXPERIMENT_NAME (created if missing)."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"]).experiment_id
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def exporter_for(tracking_uri: str, username: str, password: str, experiment: str) -> RecordingExporter:
    """OTLP/HTTP (protobuf) to the tracking server's /v1/traces, with basic auth and the experiment header.
    TLS is verified against the system CAs, or OTEL_EXPORTER_OTLP_CERTIFICATE / REQUESTS_CA_BUNDLE."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return RecordingExporter(
        endpoint=tracking_uri.rstrip("/") + "/v1/traces",
        headers={EXPERIMENT_HEADER: experiment, "Authorization": f"Basic {token}"},
        timeout=30,
    )


def emit(provider: TracerProvider) -> int:
    """One trace: the root span and its two children, each with its attributes. Returns the trace id."""
    tracer = provider.get_tracer("examples.otel_traces")
    root_name = next(name for name, (parent, _) in SPANS.items() if parent is None)
    with tracer.start_as_current_span(root_name, attributes=SPANS[root_name][1]) as root:
        for name, (parent, attributes) in SPANS.items():
            if parent == root_name:
                with tracer.start_as_current_span(name, attributes=attributes):
                    time.sleep(0.01)  # stands in for the work
        root.set_attribute("app.answer_length", 128)
        return root.get_span_context().trace_id


def landed(client: MlflowClient, experiment: str, trace_id: str, attempts: int = 20) -> tuple[dict | None, str]:
    """The trace as MLflow stores it, once every span is there, or None and why not."""
    why = "not found"
    for _ in range(attempts):
        try:
            found = client.get_trace(trace_id)
        except Exception as exc:  # not there yet (or no permission to read it)
            why = f"get_trace: {exc}"
        else:
            spans = {s.name: s for s in found.data.spans}
            if set(spans) >= set(SPANS):
                listed = [t.info.trace_id for t in client.search_traces(locations=[experiment], max_results=100)]
                return {
                    "experiment_id": found.info.experiment_id,
                    "state": str(found.info.state),
                    "listed_by_search_traces": trace_id in listed,
                    "spans": {
                        name: {
                            "parent": next((p.name for p in spans.values() if p.span_id == s.parent_id), None),
                            "attributes": {k: v for k, v in s.attributes.items() if not k.startswith("mlflow.")},
                        }
                        for name, s in spans.items()
                    },
                }, ""
            why = f"spans so far: {sorted(spans)}"
        time.sleep(0.5)
    return None, why


def main() -> int:
    missing = [
        v
        for v in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        if not os.environ.get(v)
    ]
    if missing:
        print(f"set {', '.join(missing)} from the stack outputs first (see README.md, Quickstart)", file=sys.stderr)
        return 2
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri)
    experiment = experiment_id(client)
    exporter = exporter_for(
        tracking_uri, os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"], experiment
    )
    print(f"exporting to {exporter._endpoint} (experiment {experiment})")

    # A service.name resource as any instrumented application sets. In an application, also
    # `trace.set_tracer_provider(provider)` so instrumentation libraries export through it.
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-traces-example"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    otel_trace_id = emit(provider)
    flushed = provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    if not flushed or not exporter.results or any(r != SpanExportResult.SUCCESS for r in exporter.results):
        print(
            f"export failed (flushed={flushed}, results={[r.name for r in exporter.results]}): check the URL, "
            "the credentials and the user's permission on the experiment (EDIT)",
            file=sys.stderr,
        )
        return 1

    mlflow_trace_id = "tr-" + trace.format_trace_id(otel_trace_id)
    stored, why = landed(client, experiment, mlflow_trace_id)
    if stored is None:
        print(f"trace {mlflow_trace_id} did not land in experiment {experiment}: {why}", file=sys.stderr)
        return 1
    expected_parents = {name: parent for name, (parent, _) in SPANS.items()}
    problems = []
    if stored["experiment_id"] != experiment:
        problems.append(f"in experiment {stored['experiment_id']}, not {experiment}")
    if not stored["listed_by_search_traces"]:
        problems.append("search_traces does not list it")
    if {n: s["parent"] for n, s in stored["spans"].items()} != expected_parents:
        problems.append(f"span tree {stored['spans']}")
    for name, (_, attributes) in SPANS.items():
        if any(stored["spans"][name]["attributes"].get(k) != v for k, v in attributes.items()):
            problems.append(f"{name} attributes {stored['spans'][name]['attributes']}")
    if problems:
        print(f"trace {mlflow_trace_id}: " + "; ".join(problems), file=sys.stderr)
        return 1

    print(f"trace {mlflow_trace_id} in experiment {experiment}: open {tracking_uri} to see it")
    print(json.dumps({"endpoint": exporter._endpoint, "trace_id": mlflow_trace_id, **stored}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
