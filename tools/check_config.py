"""`make check STACK=<stack>`: validate a stack's configuration offline, before any `pulumi` command.

Reads Pulumi.<stack>.yaml (for pr-<n> without its own file: profiles/pr.yaml, as CI does) the way
the Pulumi CLI reads it and hands it to the program (tools/pulumi_yaml.py: YAML 1.2 as Go's yaml.v3
reads it, so `backups: on` is the string `on`; a repeated key or a syntax error is one line naming
file, line and column), runs the program's own validation (config.load),
and prints only the problems. Encrypted (secure) values count as set secret values: checking them
needs no passphrase. Exit codes: 0 valid, 2 invalid (or no such stack file).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulumi.runtime import config as runtime_config  # noqa: E402

import config  # noqa: E402
import safety  # noqa: E402
from tools import pulumi_yaml  # noqa: E402

PROJECT = config.PROJECT_NAME
INVALID = 2


def stack_file(stack: str) -> Path:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists() and stack.startswith("pr-"):
        return ROOT / "profiles" / "pr.yaml"
    return path


def cli_config(document: dict) -> tuple[dict[str, str], list[str]]:
    """(config, secret keys) as the CLI passes a stack file's `config:` block to the program.

    `document` is the file as the CLI reads it (tools.pulumi_yaml); values become the text the
    program receives (`on` stays `on`, 2 becomes `2`, lists and maps JSON)."""
    values, secret_keys = {}, []
    for key, value in (document.get("config") or {}).items():
        # The CLI reads a key without namespace as one of the project's (and saves it so).
        key = key if ":" in key else f"{PROJECT}:{key}"
        if pulumi_yaml.is_secure(value):
            values[key] = "(secret)"
            secret_keys.append(key)
        else:
            values[key] = pulumi_yaml.config_text(value)
    return values, secret_keys


def read_stack_file(path: Path) -> dict:
    """Pulumi.<stack>.yaml as the CLI reads it; a file it would refuse raises YamlError (one line)."""
    document = pulumi_yaml.load(path, name=str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise pulumi_yaml.YamlError(f"{path.name}: expected a mapping with a `config:` mapping")
    return document


def check(stack: str) -> tuple[int, str]:
    path = stack_file(stack)
    if not path.exists():
        return INVALID, f"{stack}: no {path.name}. Fix: create it (copy Pulumi.dev.yaml) or use an existing stack"
    try:
        document = read_stack_file(path)
    except pulumi_yaml.YamlError as error:
        return INVALID, f"{error}. Fix: correct the YAML of {path.name} (the Pulumi CLI refuses it too)"
    runtime_config.set_all_config(*cli_config(document))
    try:
        loaded = config.load(stack)
    except config.ConfigError as error:
        return INVALID, str(error)
    return 0, valid(stack, path, loaded)


def valid(stack: str, path: Path, loaded: config.StackConfig) -> str:
    """The verdict, and where `up` would send the objects: said before anything changes."""
    target = safety.deploy_target(loaded.target_kubeconfig, loaded.target_context, loaded.render_yaml_to_directory)
    where = (
        f"renders YAML into {target['renderYamlToDirectory']}"
        if loaded.render_yaml_to_directory
        else f"deploys to context {target['context']} ({target['server']}, kubeconfig {target['kubeconfig']})"
    )
    return f"{stack}: configuration is valid (profile {loaded.profile}, {path.relative_to(ROOT)}); {where}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.check_config <stack>", file=sys.stderr)
        return INVALID
    code, message = check(argv[0])
    print(message, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
