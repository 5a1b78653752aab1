"""Replay floor: what registering exactly the real program's resources costs, with no program code.

`record(stack)` evaluates the real program under the harness once (untimed) and writes, in
registration order, every resource's Python class, its final inputs (top-level keys translated back
to the class's keyword arguments), which of them were secret, and its options (parent, provider,
dependencies, protect, retainOnDelete, deleteBeforeReplace), plus every component's registered
outputs and the stack's exports. (additionalSecretOutputs and type aliases are not recorded: the
SDK classes add them again themselves.)

bench/floor_replay_program.py replays that file: the same classes, the same inputs as literals, the
same options, through the same harness. What it does not do is everything the program itself does:
read and validate config, run the components' code, wire Outputs between resources. So

    real / floor-replay  = the program's own overhead on top of its resources,
    floor-replay / floor = what this set of resources costs on this SDK, over a one-resource program.

Known simplifications, all of which make the replay cheaper than the real registrations (so the
second ratio is a lower bound): inputs are literals rather than Outputs awaited across resources;
secrets are marked per top-level input rather than per nested path; custom timeouts are not
replayed; reads (the program's StackReference to its last deployment) are not registrations, so they
are neither recorded nor replayed, nor are dependencies on them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable

RECORDING_ENV = "BENCH_REPLAY_FILE"
_NO_ARGS_CLASS = {"apiVersion": "api_version"}  # apiextensions.CustomResource takes its kwargs as-is


@functools.cache
def _args_class(cls: type):
    """The generated Args/InitArgs input type of a resource class, or None (CustomResource)."""
    import sys

    from pulumi import _types

    module = sys.modules[cls.__module__]
    for name in (f"{cls.__name__}InitArgs", f"{cls.__name__}Args"):
        candidate = getattr(module, name, None)
        if isinstance(candidate, type) and _types.is_input_type(candidate):
            return candidate
    return None


def keyword_names(cls: type) -> dict[str, str]:
    """Wire (Pulumi) name -> Python keyword argument, for a resource class's top-level inputs."""
    from pulumi import _types

    args = _args_class(cls)
    if args is None:
        return dict(_NO_ARGS_CLASS)
    return {pulumi: python for python, pulumi in _types.input_type_py_to_pulumi_names(args).items()}


def _provider_config(cls: type, inputs: dict) -> dict:
    """A provider's inputs as its constructor takes them: the SDK sends non-string settings (bools,
    numbers) JSON-encoded, so those are decoded where the Args type says the setting is not a string."""
    from pulumi import _types

    args = _args_class(cls)
    types = _types.input_type_types(args) if args is not None else {}
    return {k: (json.loads(v) if isinstance(v, str) and types.get(k) in (bool, int, float) else v)
            for k, v in inputs.items()}


def _top_level(paths: Iterable[str]) -> set[str]:
    return {path.split(".")[0].split("[")[0] for path in paths}


def build_recording(registrations: list, classes: dict, component_outputs: dict, outputs: dict,
                    secret_outputs: set) -> dict:
    """The replayable form of one evaluation (see the module docstring)."""
    index = {reg.urn: i for i, reg in enumerate(registrations)}
    entries, dropped = [], {}
    for reg in registrations:
        entry: dict[str, Any] = {
            "type": reg.type, "name": reg.name, "component": not reg.custom,
            "parent": index.get(reg.parent),
            "provider": index.get(reg.provider.rsplit("::", 1)[0]) if reg.provider else None,
            "depends_on": sorted({index[urn] for urn in reg.dependencies if urn in index}),
            "protect": reg.protect, "retain_on_delete": reg.retain_on_delete,
            "delete_before_replace": reg.delete_before_replace,
        }
        if reg.custom:
            cls = classes[(reg.type, reg.name)]
            names = keyword_names(cls)
            inputs = _provider_config(cls, reg.inputs) if reg.type.startswith("pulumi:providers:") else reg.inputs
            known = inputs if _args_class(cls) is None else {k: v for k, v in inputs.items() if k in names}
            unknown = sorted(set(inputs) - set(known))
            if unknown:
                dropped[f"{reg.type} {reg.name}"] = unknown
            entry.update({
                "module": cls.__module__, "class": cls.__qualname__,
                "kwargs": {names.get(k, k): v for k, v in known.items()},
                "secret_kwargs": sorted(names.get(k, k) for k in _top_level(reg.secret_inputs) if k in known),
            })
        else:
            values, secret_paths = component_outputs.get(reg.urn, ({}, set()))
            entry.update({"outputs": values, "secret_outputs": sorted(_top_level(secret_paths))})
        entries.append(entry)
    return {"resources": entries, "exports": outputs, "secret_exports": sorted(secret_outputs),
            "dropped_inputs": dropped}


def record(stack: str, path: Path):
    """Evaluate the real program for `stack`, write its replayable recording to `path`; returns
    (recording, the evaluation it was recorded from)."""
    import pulumi

    from bench.bench import run_program

    classes: dict[tuple[str, str], type] = {}
    original = pulumi.Resource.__init__

    def spy(self, t, name, *args, **kwargs):
        classes.setdefault((t, name), type(self))
        return original(self, t, name, *args, **kwargs)

    pulumi.Resource.__init__ = spy
    try:
        ev = run_program(stack)
    finally:
        pulumi.Resource.__init__ = original
    recording = build_recording(ev.registrations, classes, ev.component_outputs, ev.outputs, ev.secret_outputs)
    path.write_text(json.dumps(recording))
    return recording, ev
