"""A first MLflow run against a deployed stack: parameters, metrics, an artifact and a model, then the
model loaded back through the tracking server.

The tracking URL and credentials come from the environment, as the stack outputs give them:

    export MLFLOW_TRACKING_URI=$(pulumi stack output trackingUrl)
    export MLFLOW_TRACKING_USERNAME=$(pulumi stack output adminUser)
    export MLFLOW_TRACKING_PASSWORD=$(pulumi stack output adminPassword --show-secrets)
    python examples/quickstart.py

Needs only `pip install mlflow` (3.x). The model is a plain `mlflow.pyfunc.PythonModel`, so no ML
library is involved; artifacts travel through the tracking server (proxied), never straight to the
object store. The last line printed is a JSON summary of what was logged.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc

EXPERIMENT = "quickstart"


class Scale(mlflow.pyfunc.PythonModel):
    """Multiplies every input by a factor: a model small enough to read, real enough to serve."""

    def __init__(self, factor: float):
        self.factor = factor

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return [x * self.factor for x in model_input]


def main() -> int:
    missing = [
        v
        for v in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        if not os.environ.get(v)
    ]
    if missing:
        print(f"set {', '.join(missing)} from the stack outputs first (see README.md, Quickstart)", file=sys.stderr)
        return 2
    print(f"tracking server: {mlflow.get_tracking_uri()}")

    experiment = mlflow.set_experiment(EXPERIMENT)
    factor = 2.5
    with mlflow.start_run(run_name="first-run") as run:
        mlflow.log_params({"factor": factor, "epochs": 3})
        for step, loss in enumerate((0.9, 0.5, 0.3)):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metric("accuracy", 0.91)

        with tempfile.TemporaryDirectory() as tmp:
            notes = Path(tmp) / "notes.txt"
            notes.write_text("logged by examples/quickstart.py\n", encoding="utf-8")
            mlflow.log_artifact(str(notes))

        # pip_requirements given: MLflow need not inspect the environment to write them.
        model_info = mlflow.pyfunc.log_model(name="model", python_model=Scale(factor), pip_requirements=["mlflow"])

    # Load the model back through the tracking URL (its files come from the server) and use it.
    model = mlflow.pyfunc.load_model(model_info.model_uri)
    prediction = model.predict([1.0, 2.0])
    if list(prediction) != [2.5, 5.0]:
        print(f"unexpected prediction {prediction!r}", file=sys.stderr)
        return 1

    print(f"run {run.info.run_id} in experiment {EXPERIMENT!r}: open {mlflow.get_tracking_uri()} to see it")
    print(
        json.dumps(
            {
                "experiment_id": experiment.experiment_id,
                "run_id": run.info.run_id,
                "model_uri": model_info.model_uri,
                "model_id": model_info.model_id,
                "prediction": list(prediction),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
