"""Pulumi.yaml's `config:` block, generated from StackConfig: the CLI reads the keys, types and defaults
from it (and hands the defaults to the program), so it must say exactly what the model says.

`make docs` rewrites the block; tests/test_config.py fails while the file is stale.

The credential keys (SecretStr in the model) are not declared `secret: true`: the CLI (3.274) writes an
unset key's default into the stack's config as plain text and then refuses it ("Stack 'dev' with
configuration key 'password' must be encrypted as it's secret"), so an optional credential would be
required of every stack. config.reader refuses a credential set in plain text instead, naming the key
and `pulumi config set --secret`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from config.checks import PROJECT_DIR
from config.reader import FIELDS, pulumi_type
from tools import pulumi_yaml

PROJECT_FILE = PROJECT_DIR / "Pulumi.yaml"
_BLOCK_HEADER = (
    "# Generated from config/model.py by `make docs` (the model is where each key, its default and its\n"
    "# check live); the CLI reads this block and hands every default to the program.\n"
    "config:\n"
)


def declared() -> dict[str, dict[str, Any]]:
    """key -> {type, default, description} as the model declares it, in the model's order."""
    declared = {}
    for key, (_, field) in FIELDS.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        declared[key] = {"type": pulumi_type(field), "default": default, "description": field.description or ""}
    return declared


def config_block() -> str:
    lines = [_BLOCK_HEADER]
    for key, spec in declared().items():
        # JSON scalars are YAML flow scalars: the CLI reads back exactly these values.
        lines.append(
            f"  {key}:\n    type: {spec['type']}\n    default: {json.dumps(spec['default'])}\n"
            f"    description: {json.dumps(spec['description'])}\n"
        )
    return "".join(lines)


def rendered(path: Path = PROJECT_FILE) -> str:
    """Pulumi.yaml with its config block regenerated (everything before the block kept as it is)."""
    text = path.read_text(encoding="utf-8")
    start = text.index(_BLOCK_HEADER) if _BLOCK_HEADER in text else text.index("config:\n")
    return text[:start] + config_block()


def read(path: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The config block as the CLI reads it."""
    block: dict[str, dict[str, Any]] = pulumi_yaml.load(path, name=path.name)["config"]
    return block


if __name__ == "__main__":
    PROJECT_FILE.write_text(rendered(), encoding="utf-8")
