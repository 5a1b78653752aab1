"""Reads the stack's configuration the way the Pulumi CLI hands it to the program, and validates it.

The CLI passes every key as text (Pulumi.yaml's defaults applied), integers, booleans and objects as
JSON, and says which keys are secret. One StackConfig comes out, or one ConfigError listing every
problem (each naming the key, the value and the fix) before any resource is registered.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from config.model import StackConfig
from config.problems import PROJECT_NAME, ConfigError, problem_line
from config.rules import CREDENTIALS, KUBERNETES_KEYS

_IN_CLUSTER_INSTEAD = (
    "the runner no longer connects to in-cluster data services: the CloudNativePG operator "
    "creates MLflow's role and databases, and a Job inside the cluster creates the bucket and user"
)
# Keys of earlier versions: a stack file that still sets one fails with what replaced it.
REMOVED_KEYS = {
    **{
        key: _IN_CLUSTER_INSTEAD
        for key in (
            "postgresAdminAccess",
            "postgresAdminNodePort",
            "minioAdminAccess",
            "minioAdminHost",
            "minioAdminNodePort",
            "adminSourceRanges",
        )
    },
    "postgresAdminHost": _IN_CLUSTER_INSTEAD + " (for an existing server use postgresMode: external with postgresHost)",
    "installCnpgOperator": "the cluster stack owns the CloudNativePG operator (`make up STACK=cluster`); "
    "environment stacks find it through clusterStack (README: Quickstart)",
}
# Pulumi.yaml's type of each field, which decides how the CLI encodes its value.
_PULUMI_TYPES = {int: "integer", bool: "boolean", dict: "object"}


def pulumi_type(field: FieldInfo) -> str:
    origin = getattr(field.annotation, "__origin__", field.annotation)
    return _PULUMI_TYPES.get(origin, "string")  # type: ignore[arg-type]


FIELDS = {field.alias or name: (name, field) for name, field in StackConfig.model_fields.items()}


def load(stack: str | None = None) -> StackConfig:
    """This stack's configuration, validated as a whole, or a ConfigError listing every problem."""
    stack = stack or pulumi.get_stack()
    given = _given_config()
    lines = _secrets_in_plain_text(given)
    lines += _foreign_kubernetes_keys()
    data = {key: _decoded(key, text) for key, text in given.items()}
    standard = pulumi.Config("kubernetes")
    context = {
        "stack": stack,
        "kubernetes": {key: standard.get(key) or "" for key in KUBERNETES_KEYS},
    }
    try:
        config = StackConfig.model_validate(data, context=context)
    except ValidationError as error:
        lines += _lines(error)
        failed = {e["loc"][0] for e in error.errors() if e["loc"]}
        if failed:
            # The rules between keys run once every value passed its own check: run them again with
            # the failed keys at their defaults, so that one `make check` reports everything.
            try:
                StackConfig.model_validate({k: v for k, v in data.items() if k not in failed}, context=context)
            except ValidationError as again:
                lines += [line for line in _lines(again) if line not in lines]
    else:
        if not lines:
            return config
    raise ConfigError(
        f"invalid configuration for stack {stack} ({len(lines)} problem(s)); nothing was created:\n" + "\n".join(lines)
    )


def _given_config() -> dict[str, str]:
    """key -> text of every key of this project the stack sets (and, from the CLI, every declared default)."""
    prefix = f"{PROJECT_NAME}:"
    given = {}
    for full_key in sorted(set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())):
        if full_key.startswith(prefix):
            value = runtime_config.get_config(full_key)
            if value is not None:
                given[full_key[len(prefix) :]] = value
    return given


def _decoded(key: str, text: str) -> Any:
    """The CLI's text as the field's type: integers, booleans and objects come as JSON."""
    kind = pulumi_type(FIELDS[key][1]) if key in FIELDS else "string"
    if kind == "string":
        return text
    try:
        return json.loads(text.lower() if kind == "boolean" else text)
    except json.JSONDecodeError:
        return text  # refused by the field's type, with the key named


def _secrets_in_plain_text(given: dict[str, str]) -> list[str]:
    lines = []
    for key, (name, _) in FIELDS.items():
        full_key = f"{PROJECT_NAME}:{key}"
        if name in CREDENTIALS and given.get(key) and not runtime_config.is_config_secret(full_key):
            lines.append(
                f"  - {full_key} is set in plain text: it is a credential. "
                f"Fix: `pulumi config set --secret {key} <value>` (and remove the plain value)"
            )
    return lines


def _foreign_kubernetes_keys() -> list[str]:
    """kubernetes:* keys the program's own provider would ignore."""
    return [
        f"  - {full_key} is not read by this program's Kubernetes provider. Fix: remove it "
        f"(honoured: {', '.join('kubernetes:' + k for k in KUBERNETES_KEYS)})"
        for full_key in sorted(set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env()))
        if full_key.startswith("kubernetes:") and full_key.split(":", 1)[1] not in KUBERNETES_KEYS
    ]


def _lines(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for e in error.errors(include_url=False):
        key = str(e["loc"][0]) if e["loc"] else ""
        ctx = e.get("ctx") or {}
        if e["type"] == "config_rules":
            lines += ctx["lines"]
        elif e["type"] == "extra_forbidden":
            lines.append(_unknown_key(key))
        elif e["type"] == "config":
            value = "(set)" if isinstance(e["input"], SecretStr) else e["input"]
            lines.append(problem_line(key, value, ctx["problem"], ctx["fix"]))
        else:  # the wrong type of value: the CLI's text, named with the type Pulumi.yaml declares
            kind = pulumi_type(FIELDS[key][1])
            article = "an" if kind in ("integer", "object") else "a"
            path = " --path" if kind == "object" else ""
            value = "(set)" if FIELDS[key][0] in CREDENTIALS else e["input"]
            lines.append(
                problem_line(key, value, f"expected {article} {kind}", f"`pulumi config set {key}{path} <{kind}>`")
            )
    return lines


def _unknown_key(key: str) -> str:
    """Keys the stack sets that the project does not declare: typos must not be ignored."""
    full_key = f"{PROJECT_NAME}:{key}"
    if key in REMOVED_KEYS:
        return f"  - {full_key} was removed: {REMOVED_KEYS[key]}. Fix: delete it from Pulumi.<stack>.yaml"
    nearest = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    hint = f"did you mean {nearest[0]}? " if nearest else ""
    return (
        f"  - {full_key} is not a setting of this project. Fix: {hint}"
        "see the configuration reference in docs/configuration.md (declared in config/model.py)"
    )
