"""`make check STACK=<stack>`: validate a stack's configuration offline, before any `pulumi` command.

Reads Pulumi.<stack>.yaml (for pr-<n> without its own file: profiles/pr.yaml, as CI does) the way
the Pulumi CLI hands it to the program, runs the program's own validation (settings.load_settings),
and prints only the problems. Encrypted (secure) values count as set secret values: checking them
needs no passphrase. Exit codes: 0 valid, 2 invalid (or no such stack file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
from pulumi.runtime import config as runtime_config  # noqa: E402

import settings  # noqa: E402

PROJECT = settings.PROJECT_NAME
INVALID = 2


def stack_file(stack: str) -> Path:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists() and stack.startswith("pr-"):
        return ROOT / "profiles" / "pr.yaml"
    return path


def cli_config(document: dict) -> tuple[dict[str, str], list[str]]:
    """(config, secret keys) as the CLI passes a stack file's `config:` block to the program."""
    values, secret_keys = {}, []
    for key, value in (document.get("config") or {}).items():
        # The CLI reads a key without namespace as one of the project's (and saves it so).
        key = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = "(secret)"
            secret_keys.append(key)
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            values[key] = json.dumps(value)
        else:
            values[key] = str(value)
    return values, secret_keys


def check(stack: str) -> tuple[int, str]:
    path = stack_file(stack)
    if not path.exists():
        return INVALID, f"{stack}: no {path.name}. Fix: create it (copy Pulumi.dev.yaml) or use an existing stack"
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    runtime_config.set_all_config(*cli_config(document))
    try:
        loaded = settings.load_settings(pulumi.Config(PROJECT), stack=stack, project=PROJECT)
    except settings.ConfigError as error:
        return INVALID, str(error)
    return 0, f"{stack}: configuration is valid (profile {loaded.profile}, {path.relative_to(ROOT)})"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.check_config <stack>", file=sys.stderr)
        return INVALID
    code, message = check(argv[0])
    print(message, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
