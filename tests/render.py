"""Render a stack's Kubernetes objects to YAML files, one object per file.

`render_stack("dev")` evaluates the program under the mocks of `tests/harness.py` and writes every
Kubernetes object it would apply to `build/manifests/<stack>/NN-<kind>-<name>.yaml` (NN is the
registration order, so the files list in apply order). The directory is emptied first: a file
left over from an earlier run would otherwise be scanned as if the program still rendered it.

`config` overrides the stack file's keys (without the project prefix), as `pulumi config set`
would; a value wrapped in `tests.harness.Secret` is secret config (`--secret`), e.g.
`render_stack("ext", config={"postgresMode": "external", "postgresAdminPassword": Secret("pw"), ...})`.
Objects the providers of the external modes create outside the cluster (pulumi-postgresql,
pulumi-minio) are not Kubernetes objects and are not written.

CLI: `python -m tests.render [stack...]` (default: dev prod pr-42) prints where each file went;
`--config key=value` (repeatable) overrides a key for every stack given.

The Secrets' `stringData` holds the mocks' generated values (never real credentials); build/ is
git-ignored all the same.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.harness import ROOT, Evaluation, evaluate_stack

BUILD_DIR = ROOT / "build" / "manifests"
DEFAULT_STACKS = ("dev", "prod", "pr-42")


@dataclass
class Rendered:
    stack: str
    directory: Path
    evaluation: Evaluation
    files: list[tuple[Path, dict]]  # (file, object) in registration order

    @property
    def objects(self) -> list[dict]:
        return [obj for _, obj in self.files]


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (certificates, config files): readable and diffable."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(obj: dict) -> str:
    head = ("apiVersion", "kind", "metadata")
    obj = {**{k: obj[k] for k in head if k in obj}, **{k: v for k, v in obj.items() if k not in head}}
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def file_name(index: int, obj: dict) -> str:
    kind = obj.get("kind", "unknown").lower()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(obj.get("metadata", {}).get("name", "unnamed")))
    return f"{index:02d}-{kind}-{name}.yaml"


def render_stack(stack: str, config: dict | None = None, out_dir: Path | None = None) -> Rendered:
    """Evaluate `stack` once (with `config` overrides) and write its objects; returns the files with the objects."""
    evaluation = evaluate_stack(stack, config=config)
    directory = Path(out_dir) if out_dir else BUILD_DIR / stack
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    files = []
    for index, obj in enumerate(evaluation.k8s_objects, 1):
        path = directory / file_name(index, obj)
        assert not path.exists(), f"two objects render to the same file {path}"
        path.write_text(to_yaml(obj), encoding="utf-8")
        files.append((path, obj))
    return Rendered(stack=stack, directory=directory, evaluation=evaluation, files=files)


def main(argv: list[str]) -> int:
    stacks, config = [], {}
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            key, _, value = next(args, "").partition("=")
            if not key or not _:
                print("usage: python -m tests.render [--config key=value]... [stack...]", file=sys.stderr)
                return 2
            config[key] = value
        else:
            stacks.append(arg)
    for stack in stacks or DEFAULT_STACKS:
        rendered = render_stack(stack, config=config or None)
        print(f"{stack}: {len(rendered.files)} objects -> {rendered.directory.relative_to(ROOT)}")
        for path, _ in rendered.files:
            print(f"  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
