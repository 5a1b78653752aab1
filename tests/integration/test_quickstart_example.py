"""README's Quickstart, last step, for real: `examples/quickstart.py` against the dev stack's server.

The dev stack as rendered runs on loopback (PostgreSQL with its TLS material and pg_hba, the real MinIO
with its bootstrap Job, the migration Job, `mlflow server` with the exact command, args and environment
of the rendered container). The example then runs as a "laptop" process that knows only what README
tells users to export, taken from the stack outputs README names (trackingUrl, adminUser,
adminPassword), and reaches the server by the tracking URL's host name. It must exit 0; then a second
client, through MlflowClient, finds the run, its parameters and metrics, the artifact and the model.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "quickstart.py"
NAMESPACE = "mlflow-dev"

CHECK = r"""
import json, os, tempfile
from mlflow import MlflowClient

client = MlflowClient()
run = client.get_run(os.environ["QUICKSTART_RUN_ID"])
experiment = client.get_experiment(run.info.experiment_id)
notes = client.download_artifacts(run.info.run_id, "notes.txt", tempfile.mkdtemp(dir=os.getcwd()))
model = client.get_logged_model(os.environ["QUICKSTART_MODEL_ID"])
print(json.dumps({
    "experiment": experiment.name,
    "status": run.info.status,
    "params": run.data.params,
    "metrics": run.data.metrics,
    "loss_history": [m.value for m in client.get_metric_history(run.info.run_id, "loss")],
    "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
    "notes": open(notes, encoding="utf-8").read(),
    "model_run_id": model.source_run_id,
    "model_name": model.name,
    "model_files": sorted(a.path for a in client.list_logged_model_artifacts(model.model_id)),
}))
"""


def readme_client_env(outputs: dict) -> dict[str, str]:
    """What README's Quickstart exports (`export VAR=$(pulumi stack output <output>...)`), from `outputs`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    exports = re.findall(r"^export (MLFLOW_\w+)=\$\(pulumi stack output (\w+)", readme, re.M)
    assert exports, "README's Quickstart exports no MLFLOW_ variable from the stack outputs"
    return {variable: str(outputs[output]) for variable, output in exports}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    r = wiring.render("dev", namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("quickstart")
    pg_ip = svc.free_loopback_address(r.pg_port)
    s3_ip = svc.free_loopback_address(r.s3_port)
    mlflow_ip = svc.free_loopback_address(int(r.container["ports"][0]["containerPort"]))
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip))
        server = stack.enter_context(
            wiring.rendered_mlflow_server(r, data.host_map, work / "mlflow", mlflow_ip, timeout=300)
        )
        tracking_host, tracking_port = wiring.host_port(r.outputs["trackingUrl"], 80)
        # The laptop resolves the tracking URL's host (the ingress) to the server; in-cluster names stay denied.
        laptop = {f"{tracking_host}:{tracking_port}": f"{server.address}:{server.port}"}
        env = {**readme_client_env(r.outputs), "MLFLOW_DISABLE_TELEMETRY": "true"}
        laptop_dir = work / "laptop"
        laptop_dir.mkdir()
        example = svc.run_python_client(
            EXAMPLE.read_text(encoding="utf-8"),
            workdir=laptop_dir,
            name="quickstart",
            env=env,
            host_map=laptop,
            timeout=300,
            check=False,
        )
        summary = svc.last_json_line(example.stdout) if example.returncode == 0 else None
        check = None
        if summary is not None:
            check = svc.run_python_client(
                CHECK,
                workdir=laptop_dir,
                name="check",
                env={**env, "QUICKSTART_RUN_ID": summary["run_id"], "QUICKSTART_MODEL_ID": summary["model_id"]},
                host_map=laptop,
                timeout=300,
            )
        yield SimpleNamespace(r=r, env=env, example=example, summary=summary, check=check)


def test_the_example_reads_exactly_what_readme_exports(quickstart):
    assert quickstart.env.keys() >= {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert quickstart.env["MLFLOW_TRACKING_URI"] == quickstart.r.outputs["trackingUrl"]
    assert quickstart.env["MLFLOW_TRACKING_URI"].startswith("http://mlflow-mlflow-dev.")


def test_the_example_exits_0_and_loads_its_model_back(quickstart):
    example = quickstart.example
    assert example.returncode == 0, f"exit {example.returncode}\n{example.stdout[-3000:]}\n{example.stderr[-3000:]}"
    assert quickstart.summary["prediction"] == [2.5, 5.0]
    assert quickstart.summary["model_uri"].startswith("models:/")


def test_the_run_params_metrics_artifact_and_model_exist_through_the_tracking_server(quickstart):
    assert quickstart.check is not None, "the example failed; see the test above"
    found = svc.last_json_line(quickstart.check.stdout)
    assert found["experiment"] == "quickstart"
    assert found["status"] == "FINISHED"
    assert found["params"] == {"factor": "2.5", "epochs": "3"}
    assert found["metrics"] == {"loss": 0.3, "accuracy": 0.91}
    assert found["loss_history"] == [0.9, 0.5, 0.3]
    assert "notes.txt" in found["artifacts"]
    assert found["notes"] == "logged by examples/quickstart.py\n"
    assert found["model_run_id"] == quickstart.summary["run_id"]
    assert found["model_name"] == "model"
    assert {"MLmodel", "python_model.pkl"} <= set(found["model_files"])
