"""Metrics and garbage collection, for real, with the dev stack as rendered (metrics and gc on by
default there; gc's age rendered as 1s so that a run deleted a moment ago qualifies).

* MLflow runs with the rendered `--expose-prometheus <emptyDir>` and its pod IP among the allowed
  hosts; Prometheus' scrape (Host: <pod IP>:5000, basic auth as the ServiceMonitor would) shows the
  request counters growing by the client round trip.
* The gc CronJob's container runs with its exact command/args/env (the server's env Secret and CA
  volume): the deleted run's rows and its artifacts in the bucket are gone, the live run's are not.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"

CLIENT = (
    svc.CLIENT_PRELUDE
    + r"""
import json, os, tempfile
import mlflow
from mlflow import MlflowClient

work = tempfile.mkdtemp(dir=os.getcwd())
client = MlflowClient()
exp = mlflow.set_experiment("operations").experiment_id
ids = {}
for name in ("live", "deleted"):
    path = os.path.join(work, f"{name}.txt")
    write(path, (name * 100).encode())
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_param("which", name)
        mlflow.log_metric("loss", 0.5)
        mlflow.log_artifact(path)
    ids[name] = run.info.run_id
client.delete_run(ids["deleted"])
print(json.dumps({"experiment_id": exp, **ids}))
"""
)


def scrape(server, auth) -> tuple[int, str]:
    conn = http.client.HTTPConnection(server.address, server.port, timeout=15)
    headers = {
        "Host": f"{server.address}:{server.port}",  # Prometheus scrapes the pod by its address
        "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode(),
    }
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def request_count(text: str) -> float:
    """mlflow_http_request_total summed over every label set."""
    return sum(float(m[1]) for m in re.finditer(r"^mlflow_http_request_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    r = wiring.render("dev", config={"mlflowGcOlderThan": "1s"}, namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("operations")
    pg_ip = svc.free_loopback_address(r.pg_port)
    s3_ip = svc.free_loopback_address(r.s3_port)
    mlflow_ip = svc.free_loopback_address(int(r.container["ports"][0]["containerPort"]))
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip))
        pg, s3, bucket, host_map = data.pg, data.s3, data.bucket, data.host_map
        server = stack.enter_context(
            svc.mlflow_server_from_container(
                r.container,
                secrets=r.secrets,
                config_maps=r.config_maps,
                host_map=host_map,
                workdir=work / "mlflow",
                files_by_mount=svc.files_by_mount_from_pod(
                    r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps
                ),
                listen_addr=mlflow_ip,
                timeout=300,
            )
        )
        auth = (r.outputs["adminUser"], r.outputs["adminPassword"])
        before = scrape(server, auth)
        tracking_host = wiring.host_port(r.outputs["trackingUrl"], 80)
        client = svc.run_python_client(
            CLIENT,
            workdir=work,
            name="client",
            timeout=300,
            host_map={f"{tracking_host[0]}:{tracking_host[1]}": f"{server.address}:{server.port}"},
            env={
                "MLFLOW_TRACKING_URI": r.outputs["trackingUrl"],
                "MLFLOW_TRACKING_USERNAME": auth[0],
                "MLFLOW_TRACKING_PASSWORD": auth[1],
                "MLFLOW_DISABLE_TELEMETRY": "true",
            },
        )
        runs = svc.last_json_line(client.stdout)
        after = scrape(server, auth)
        unauthenticated = http.client.HTTPConnection(server.address, server.port, timeout=15)
        unauthenticated.request("GET", "/metrics", headers={"Host": f"{server.address}:{server.port}"})
        anonymous_status = unauthenticated.getresponse().status
        unauthenticated.close()

        def objects() -> dict[str, int]:
            with svc.dns_patched(host_map):
                s3c = s3.client(endpoint_name=r.s3_host, ca_file=server.env["AWS_CA_BUNDLE"])
                pages = s3c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="artifacts/")
                return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

        def rows(run_id: str) -> dict[str, int]:
            return {
                table: pg.execute(f"SELECT count(*) FROM {table} WHERE run_uuid = %s", (run_id,), dbname="mlflow")[0][0]
                for table in ("runs", "params", "metrics", "latest_metrics")
            }

        before_gc = {"objects": objects(), "live": rows(runs["live"]), "deleted": rows(runs["deleted"])}
        [cron] = r.ev.k8s("CronJob")
        job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        [gc] = job_pod["containers"]
        internal = wiring.host_port(r.outputs["internalUrl"], 80)
        _, rc, output = svc.run_container_job(
            gc,
            secrets=r.secrets,
            config_maps=r.config_maps,
            workdir=work / "gc",
            timeout=300,
            host_map={**host_map, f"{internal[0]}:{internal[1]}": f"{server.address}:{server.port}"},
            files_by_mount=svc.files_by_mount_from_pod(job_pod, gc, secrets=r.secrets, config_maps=r.config_maps),
        )
        after_gc = {"objects": objects(), "live": rows(runs["live"]), "deleted": rows(runs["deleted"])}
        yield SimpleNamespace(
            r=r,
            server=server,
            before=before,
            after=after,
            anonymous_status=anonymous_status,
            runs=runs,
            before_gc=before_gc,
            after_gc=after_gc,
            gc=gc,
            gc_rc=rc,
            gc_output=output,
        )


def test_metrics_count_the_client_round_trip(ops):
    assert "--expose-prometheus" in ops.r.container["args"]
    (status_before, text_before), (status_after, text_after) = ops.before, ops.after
    assert status_before == status_after == 200
    assert ops.anonymous_status == 401  # basic auth covers /metrics too (the ServiceMonitor authenticates)
    grown = request_count(text_after) - request_count(text_before)
    print(f"\n[metrics] mlflow_http_request_total {request_count(text_before):.0f} -> {request_count(text_after):.0f}")
    # Two runs: experiment, create/log/update, artifact uploads, delete -- at least a dozen requests.
    assert grown >= 12, (request_count(text_before), request_count(text_after))
    assert re.search(r'^mlflow_http_request_total\{.*status="200".*\}', text_after, re.M)


def test_gc_deletes_the_deleted_run_and_leaves_the_live_one(ops):
    live, deleted = ops.runs["live"], ops.runs["deleted"]
    assert ops.gc_rc == 0, ops.gc_output[-3000:]
    assert f"Run with ID {deleted} has been permanently deleted." in ops.gc_output
    assert live not in ops.gc_output
    before, after = ops.before_gc, ops.after_gc
    assert before["deleted"] == {"runs": 1, "params": 1, "metrics": 1, "latest_metrics": 1}
    assert after["deleted"] == {"runs": 0, "params": 0, "metrics": 0, "latest_metrics": 0}
    assert after["live"] == before["live"] == {"runs": 1, "params": 1, "metrics": 1, "latest_metrics": 1}
    deleted_keys = {k for k in before["objects"] if f"/{deleted}/" in k}
    live_keys = {k for k in before["objects"] if f"/{live}/" in k}
    assert deleted_keys and live_keys
    assert not deleted_keys & set(after["objects"])
    assert {k: after["objects"][k] for k in live_keys} == {k: before["objects"][k] for k in live_keys}
    print(
        f"\n[gc] removed {len(deleted_keys)} artifact object(s) and the rows of run {deleted}; "
        f"run {live} kept ({len(live_keys)} object(s))"
    )
