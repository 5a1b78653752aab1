"""OpenTelemetry traces through the published host, for real: `examples/otel_traces.py` and raw OTLP/HTTP
requests against the dev stack's server, through a TLS ingress stand-in on `mlflow-mlflow-dev.<domain>`.

The dev stack is rendered with an ingress certificate (``ingressTlsSecretName``: the tracking URL is
https). Its data services, migration Job and `mlflow server` run with the exact rendered command, args
and environment (--allowed-hosts with `host` and `host:*` patterns, basic auth). Two ingress stand-ins
(services.ingress_proxy, passing the Host header through as ingress-nginx does) serve the published host:
one on 443 (the client sends `Host: mlflow-mlflow-dev.localtest.me`), one on 8443 (it sends
`Host: mlflow-mlflow-dev.localtest.me:8443`, the form MLflow issue 22095 saw refused). The laptop trusts
the stand-in public CA through REQUESTS_CA_BUNDLE.

MLflow 3.18's basic auth on /v1/traces (mlflow/server/auth/__init__.py, _get_otel_validator): a FastAPI
route, authenticated by the ASGI middleware (no or wrong credentials: 401), then, for non-admins, the
create-in-experiment check of StartTrace: EDIT ("update") on the experiment named by
x-mlflow-experiment-id, and no DENY on traces. The stack's default_permission READ is not enough (403).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.server.trace_bench import otlp_request
from tools.loopback import services as svc
from tools.loopback import wiring

from .pki import CertificateAuthority
from .test_quickstart_example import readme_client_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "otel_traces.py"
NAMESPACE = "mlflow-dev"
TRACKING_HOST = f"mlflow-{NAMESPACE}.localtest.me"
ALT_PORT = 8443  # a second ingress port: the Host header carries it
CONFIG = {"ingressTlsSecretName": "wildcard-tls"}
USER, USER_PASSWORD = "otel-writer", "otel-writer-password-0123"


def _ingress(stack, work: Path, name: str, cert, server, ip: str, port: int):
    return stack.enter_context(
        svc.ingress_proxy(
            work / name,
            cert_pem=cert.cert_pem,
            key_pem=cert.key_pem,
            upstream_address=server.address,
            upstream_port=server.port,
            listen_addr=ip,
            port=port,
            timeout=120,
        )
    )


@pytest.fixture(scope="module")
def otel(tmp_path_factory):
    r = wiring.render("dev", config=CONFIG, namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("otel")
    public_ca = CertificateAuthority("stand-in-public-ca")
    cert = public_ca.issue("ingress", [TRACKING_HOST])
    ca_file = work / "public-ca.crt"
    ca_file.write_text(public_ca.cert_pem)
    pg_ip = svc.free_loopback_address(r.pg_port)
    s3_ip = svc.free_loopback_address(r.s3_port)
    mlflow_ip = svc.free_loopback_address(int(r.container["ports"][0]["containerPort"]))
    ip_443, ip_alt = svc.free_loopback_address(443), svc.free_loopback_address(ALT_PORT)
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip))
        server = stack.enter_context(
            wiring.rendered_mlflow_server(r, data.host_map, work / "mlflow", mlflow_ip, timeout=300)
        )
        ingress = _ingress(stack, work, "ingress-443", cert, server, ip_443, 443)
        ingress_alt = _ingress(stack, work, f"ingress-{ALT_PORT}", cert, server, ip_alt, ALT_PORT)
        laptop_map = {f"{TRACKING_HOST}:443": f"{ip_443}:443", f"{TRACKING_HOST}:{ALT_PORT}": f"{ip_alt}:{ALT_PORT}"}
        laptop_dir = work / "laptop"
        laptop_dir.mkdir()
        base_env = {
            **readme_client_env(r.outputs),
            "REQUESTS_CA_BUNDLE": str(ca_file),
            **r.outputs["clientEnvironment"],
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        yield SimpleNamespace(
            r=r,
            server=server,
            ingress=ingress,
            ingress_alt=ingress_alt,
            laptop_map=laptop_map,
            laptop_dir=laptop_dir,
            env=base_env,
            ca_file=str(ca_file),
            admin=(r.outputs["adminUser"], r.outputs["adminPassword"]),
        )


def run_example(otel, name: str, **env: str):
    proc = svc.run_python_client(
        EXAMPLE.read_text(encoding="utf-8"),
        workdir=otel.laptop_dir,
        name=name,
        env={**otel.env, **env},
        host_map=otel.laptop_map,
        timeout=300,
        check=False,
    )
    summary = svc.last_json_line(proc.stdout) if proc.returncode == 0 else None
    return SimpleNamespace(proc=proc, summary=summary)


def _explain(run) -> str:
    return f"exit {run.proc.returncode}\n{run.proc.stdout[-3000:]}\n{run.proc.stderr[-3000:]}"


class Laptop:
    """Raw HTTP from the test process to the published host (the DNS shim maps it to the stand-ins)."""

    def __init__(self, otel):
        import requests

        self.otel, self.session = otel, requests.Session()

    def __call__(self, method: str, url: str, **kwargs):
        # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE in the runner's environment.
        with svc.dns_patched(self.otel.laptop_map):
            return self.session.request(method, url, timeout=60, verify=self.otel.ca_file, **kwargs)

    def api(self, path: str, body: dict, auth=None, version: str = "2.0"):
        url = f"{self.otel.r.outputs['trackingUrl']}/api/{version}/mlflow/{path}"
        response = self("POST", url, json=body, auth=auth or self.otel.admin)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return response.json()

    def export(self, base: str, experiment_id: str, auth, trace_id: bytes, **headers: str):
        hdrs = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id, **headers}
        return self("POST", f"{base}/v1/traces", data=otlp_request([trace_id], 3), headers=hdrs, auth=auth)

    def trace_experiment(self, trace_id: bytes) -> str | None:
        url = f"{self.otel.r.outputs['trackingUrl']}/api/3.0/mlflow/traces/tr-{trace_id.hex()}"
        response = self("GET", url, auth=self.otel.admin)
        if response.status_code != 200:
            return None
        return response.json()["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"]


def _posts(proxy) -> list[str]:
    return [host for method, path, host in proxy.hosts_seen if method == "POST" and path == "/v1/traces"]


# --------------------------------------------------------------------------- the route, as rendered
def test_traces_take_the_api_route_the_rendered_objects_publish(otel):
    """Nothing separate is published for /v1/traces: the Ingress sends every path (prefix `/`) of the
    tracking host to the Service's http port, the Service to the container's port 5000, and the tracking
    server's NetworkPolicy admits TCP 5000 from anywhere (the ingress controller included)."""
    r = otel.r
    assert r.outputs["trackingUrl"] == f"https://{TRACKING_HOST}"
    ingress = wiring.one([o for o in r.objects if o["kind"] == "Ingress"], "Ingress")
    rule = wiring.one([x for x in ingress["spec"]["rules"] if x["host"] == TRACKING_HOST], "rule for the host")
    path = wiring.one(rule["http"]["paths"], "path")
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = wiring.one(
        [o for o in r.objects if o["kind"] == "Service" and o["metadata"]["name"] == backend["name"]], "Service"
    )
    port = wiring.one([p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]], "port")
    container_port = wiring.one([p for p in r.container["ports"] if p["name"] == port["targetPort"]], "port")
    assert container_port["containerPort"] == 5000
    assert all(v == r.pod_labels.get(k) for k, v in service["spec"]["selector"].items())
    admitting = [
        rule
        for o in r.objects
        if o["kind"] == "NetworkPolicy"
        and all(r.pod_labels.get(k) == v for k, v in o["spec"]["podSelector"].get("matchLabels", {}).items())
        for rule in o["spec"].get("ingress") or []
        if any(p.get("port") in (5000, "http") for p in rule.get("ports") or [])
    ]
    assert admitting and any("from" not in rule for rule in admitting), admitting
    allowed = otel.server.argv[otel.server.argv.index("--allowed-hosts") + 1].split(",")
    assert {TRACKING_HOST, f"{TRACKING_HOST}:*"} <= set(allowed)


def test_a_host_with_a_port_needs_the_host_port_pattern():
    """MLflow issue 22095: a Host header with a port matches `host:*`, never the bare `host` pattern."""
    from mlflow.server.security_utils import is_allowed_host_header

    with_port = f"{TRACKING_HOST}:{ALT_PORT}"
    assert not is_allowed_host_header([TRACKING_HOST], with_port)
    assert is_allowed_host_header([TRACKING_HOST, f"{TRACKING_HOST}:*"], with_port)
    assert is_allowed_host_header([TRACKING_HOST, f"{TRACKING_HOST}:*"], TRACKING_HOST)


# --------------------------------------------------------------------------- the example, through the ingress
def test_the_example_lands_its_spans_through_the_published_host_on_443(otel):
    before = len(otel.ingress.hosts_seen)
    run = run_example(otel, "example-443")
    assert run.proc.returncode == 0, _explain(run)
    s = run.summary
    assert s["endpoint"] == f"https://{TRACKING_HOST}/v1/traces"
    assert s["listed_by_search_traces"] is True
    assert set(s["spans"]) == {"answer-question", "retrieve-documents", "generate-answer"}
    assert s["spans"]["retrieve-documents"]["parent"] == "answer-question"
    assert s["spans"]["generate-answer"]["attributes"] == {"llm.model": "stub-model", "llm.tokens": 42}
    otel_posts = [h for m, p, h in otel.ingress.hosts_seen[before:] if (m, p) == ("POST", "/v1/traces")]
    assert otel_posts and set(otel_posts) == {TRACKING_HOST}  # no port in the Host header


def test_the_example_lands_its_spans_with_a_port_in_the_host_header(otel):
    """A non-admin user with EDIT on the experiment, through the second ingress port."""
    laptop = Laptop(otel)
    experiment = laptop.api("experiments/create", {"name": "otel-port-in-host"})["experiment_id"]
    laptop.api("users/create", {"username": USER, "password": USER_PASSWORD})
    laptop.api(
        "users/permissions/grant",
        {"username": USER, "resource_type": "experiment", "resource_id": experiment, "permission": "EDIT"},
        version="3.0",
    )
    run = run_example(
        otel,
        "example-port",
        MLFLOW_TRACKING_URI=f"https://{TRACKING_HOST}:{ALT_PORT}",
        MLFLOW_TRACKING_USERNAME=USER,
        MLFLOW_TRACKING_PASSWORD=USER_PASSWORD,
        MLFLOW_EXPERIMENT_ID=experiment,
    )
    assert run.proc.returncode == 0, _explain(run)
    assert run.summary["experiment_id"] == experiment
    assert len(run.summary["spans"]) == 3
    assert set(_posts(otel.ingress_alt)) == {f"{TRACKING_HOST}:{ALT_PORT}"}


# --------------------------------------------------------------------------- raw OTLP: host check and auth
@pytest.mark.parametrize("port", [443, ALT_PORT])
def test_raw_otlp_through_either_host_form(otel, port):
    laptop = Laptop(otel)
    base = f"https://{TRACKING_HOST}" + ("" if port == 443 else f":{port}")
    experiment = laptop.api("experiments/create", {"name": f"otel-raw-{port}-{time.time_ns()}"})["experiment_id"]
    trace_id = os.urandom(16)
    response = laptop.export(base, experiment, otel.admin, trace_id)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"] == "application/x-protobuf"
    assert laptop.trace_experiment(trace_id) == experiment


def test_the_host_check_is_on_an_unlisted_host_is_refused(otel):
    laptop = Laptop(otel)
    experiment = laptop.api("experiments/create", {"name": "otel-bad-host"})["experiment_id"]
    for host in ("evil.example.com", f"evil.example.com:{ALT_PORT}", f"{TRACKING_HOST}.evil.example.com"):
        trace_id = os.urandom(16)
        response = laptop.export(f"https://{TRACKING_HOST}", experiment, otel.admin, trace_id, Host=host)
        assert response.status_code == 403, (host, response.status_code, response.text[:300])
        assert "Invalid Host header" in response.text
        assert laptop.trace_experiment(trace_id) is None


def test_without_credentials_or_with_a_wrong_password_otlp_is_refused_with_401(otel):
    laptop = Laptop(otel)
    experiment = laptop.api("experiments/create", {"name": "otel-unauthenticated"})["experiment_id"]
    for base in (f"https://{TRACKING_HOST}", f"https://{TRACKING_HOST}:{ALT_PORT}"):
        for auth in (None, (otel.admin[0], "not-the-password")):
            trace_id = os.urandom(16)
            hdrs = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment}
            response = laptop("POST", f"{base}/v1/traces", data=otlp_request([trace_id], 3), headers=hdrs, auth=auth)
            assert response.status_code == 401, (base, auth is None, response.status_code, response.text[:300])
            assert response.headers.get("WWW-Authenticate") == 'Basic realm="mlflow"'
            assert laptop.trace_experiment(trace_id) is None


def test_a_user_without_edit_on_the_experiment_is_refused_with_403_and_edit_admits(otel):
    laptop = Laptop(otel)
    user, password = "otel-reader", "otel-reader-password-0123"
    experiment = laptop.api("experiments/create", {"name": "otel-permissions"})["experiment_id"]
    laptop.api("users/create", {"username": user, "password": password})
    base = f"https://{TRACKING_HOST}:{ALT_PORT}"
    # default_permission READ (the rendered basic_auth.ini), then an explicit READ grant: both refused.
    for grant in (None, "READ", "EDIT"):
        if grant == "EDIT":  # one grant per user and experiment: the READ one goes first
            laptop.api(
                "users/permissions/revoke",
                {"username": user, "resource_type": "experiment", "resource_id": experiment},
                version="3.0",
            )
        if grant:
            laptop.api(
                "users/permissions/grant",
                {"username": user, "resource_type": "experiment", "resource_id": experiment, "permission": grant},
                version="3.0",
            )
        trace_id = os.urandom(16)
        response = laptop.export(base, experiment, (user, password), trace_id)
        if grant == "EDIT":
            assert response.status_code == 200, response.text[:300]
            assert laptop.trace_experiment(trace_id) == experiment
        else:
            assert response.status_code == 403, (grant, response.status_code, response.text[:300])
            assert laptop.trace_experiment(trace_id) is None
    # EDIT on this experiment only: another experiment stays closed.
    other = laptop.api("experiments/create", {"name": "otel-permissions-other"})["experiment_id"]
    assert laptop.export(base, other, (user, password), os.urandom(16)).status_code == 403


def test_the_example_exits_non_zero_when_the_export_is_refused(otel):
    """A user who may read the experiment (default READ) but not write traces to it: exit 1, said why."""
    laptop = Laptop(otel)
    user, password = "otel-viewer", "otel-viewer-password-0123"
    experiment = laptop.api("experiments/create", {"name": "otel-refused"})["experiment_id"]
    laptop.api("users/create", {"username": user, "password": password})
    before = len(_posts(otel.ingress))
    run = run_example(
        otel,
        "example-refused",
        MLFLOW_TRACKING_USERNAME=user,
        MLFLOW_TRACKING_PASSWORD=password,
        MLFLOW_EXPERIMENT_ID=experiment,
    )
    assert run.proc.returncode == 1, _explain(run)
    assert "export failed" in run.proc.stderr and "FAILURE" in run.proc.stderr, _explain(run)
    assert len(_posts(otel.ingress)) > before  # it did reach /v1/traces
