"""`make render STACK=<stack>`: write a stack's Kubernetes objects to YAML files for review.

`python -m tools.render [--config key=value]... [--out DIR] <stack>...` first runs `make check`'s
validation of each stack file (tools/check_config.py: a typo'd stack name or a bad value stops here,
nothing is written), then evaluates the program under the mocks of tools/mock_engine.py (no cluster, no
Pulumi CLI: the runtime venv of requirements.txt is enough) and writes every Kubernetes object it
would apply to `build/manifests/<stack>/NN-<kind>-<name>.yaml`, one object per file.

The same configuration writes the same files, byte for byte, on every run and machine, so two
renders compare with `diff -r` (review a change by rendering before and after it):

- the values the providers would generate (keys, certificates, passwords, name suffixes) come from
  a generator seeded by the stack and the resource, certificates valid from a fixed date
  (tools.mock_engine.SEEDED_NOW); they are placeholders, never real credentials;
- files are numbered in apply order (Namespaces, policies, accounts, Secrets, ConfigMaps, Services,
  workloads, Ingresses, then custom resources), then by namespace and name, not in the order the
  program happened to register them.

The directory is emptied first: a file left over from an earlier run would otherwise be reviewed as
if the program still rendered it. `config` overrides the stack file's keys (without the project
prefix), as `pulumi config set` would; a value wrapped in `tools.mock_engine.Secret` is secret config.
Objects the providers of the external modes create outside the cluster (pulumi-postgresql,
pulumi-minio) are not Kubernetes objects and are not written.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.mock_engine import Evaluation, evaluate_stack  # noqa: E402

BUILD_DIR = ROOT / "build" / "manifests"
DEFAULT_STACKS = ("dev", "prod", "pr-42")
USAGE = "usage: python -m tools.render [--config key=value]... [--out DIR] <stack>..."
# Helm's install order (kinds that others reference come first); other kinds (custom resources) after.
APPLY_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
)


@dataclass
class Rendered:
    stack: str
    directory: Path
    evaluation: Evaluation
    files: list[tuple[Path, dict]]  # (file, object) in apply order

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


def apply_order(obj: dict) -> tuple:
    kind = obj.get("kind", "")
    rank = APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)
    metadata = obj.get("metadata", {})
    return rank, kind, obj.get("apiVersion", ""), metadata.get("namespace", ""), str(metadata.get("name", ""))


def file_name(index: int, obj: dict) -> str:
    kind = obj.get("kind", "unknown").lower()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(obj.get("metadata", {}).get("name", "unnamed")))
    return f"{index:02d}-{kind}-{name}.yaml"


def render_stack(
    stack: str, config: dict | None = None, out_dir: Path | None = None, seed: str | None = None
) -> Rendered:
    """Evaluate `stack` once (with `config` overrides) and write its objects; returns the files with the objects.

    `seed` makes the generated values reproducible (the CLI seeds with the stack name); without it
    they are fresh, as a new stack's would be."""
    evaluation = evaluate_stack(stack, config=config, state=None if seed is None else {"seed": seed})
    directory = Path(out_dir) if out_dir else BUILD_DIR / stack
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    files = []
    for index, obj in enumerate(sorted(evaluation.k8s_objects, key=apply_order), 1):
        path = directory / file_name(index, obj)
        assert not path.exists(), f"two objects render to the same file {path}"
        path.write_text(to_yaml(obj), encoding="utf-8")
        files.append((path, obj))
    return Rendered(stack=stack, directory=directory, evaluation=evaluation, files=files)


def main(argv: list[str]) -> int:
    from config import ConfigError
    from tools import check_config

    stacks, config, out = [], {}, None
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "--out"):
            value = next(args, "")
            key, sep, text = value.partition("=")
            if arg == "--out" and value:
                out = Path(value)
            elif arg == "--config" and key and sep:
                config[key] = text
            else:
                print(USAGE, file=sys.stderr)
                return check_config.INVALID
        else:
            stacks.append(arg)
    if out is not None and len(stacks) != 1:
        print(f"--out takes one stack. {USAGE}", file=sys.stderr)
        return check_config.INVALID
    for stack in stacks or DEFAULT_STACKS:
        code, message = check_config.check(stack)
        if code:
            print(message, file=sys.stderr)
            return code
        try:
            rendered = render_stack(stack, config=config or None, out_dir=out, seed=f"render:{stack}")
        except ConfigError as error:
            print(error, file=sys.stderr)
            return check_config.INVALID
        shown = rendered.directory.relative_to(ROOT) if rendered.directory.is_relative_to(ROOT) else rendered.directory
        print(f"{stack}: {len(rendered.files)} objects -> {shown}")
        for path, _ in rendered.files:
            print(f"  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
