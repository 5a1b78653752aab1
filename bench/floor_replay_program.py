"""REPLAY floor: the real program's resources registered again, with no program code (bench/replay.py).

`bench.bench` records the real program's registrations once and points BENCH_REPLAY_FILE at the
recording. This program loads the floor's SDK modules, then registers every recorded resource with
its class, final inputs and options, registers the components' outputs and exports the stack outputs.
"""

import importlib
import json
import os
from pathlib import Path

import pulumi

from bench import floor_program  # noqa: F401  same SDK modules as the floor
from bench.replay import RECORDING_ENV


def _secret(values: dict, secret_keys: list) -> dict:
    return {k: (pulumi.Output.secret(v) if k in secret_keys else v) for k, v in values.items()}


recording = json.loads(Path(os.environ[RECORDING_ENV]).read_text())
made: list = []
for entry in recording["resources"]:
    opts = pulumi.ResourceOptions(
        parent=made[entry["parent"]] if entry["parent"] is not None else None,
        provider=made[entry["provider"]] if entry["provider"] is not None else None,
        depends_on=[made[i] for i in entry["depends_on"]],
        protect=entry["protect"], retain_on_delete=entry["retain_on_delete"],
        delete_before_replace=entry["delete_before_replace"],
    )
    if entry["component"]:
        made.append(pulumi.ComponentResource(entry["type"], entry["name"], None, opts))
    else:
        cls = getattr(importlib.import_module(entry["module"]), entry["class"])
        made.append(cls(entry["name"], opts=opts, **_secret(entry["kwargs"], entry["secret_kwargs"])))

for entry, resource in zip(recording["resources"], made):
    if entry["component"]:
        resource.register_outputs(_secret(entry["outputs"], entry["secret_outputs"]))

for name, value in _secret(recording["exports"], recording["secret_exports"]).items():
    pulumi.export(name, value)
