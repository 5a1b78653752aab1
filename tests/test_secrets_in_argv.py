"""No secret in any process's command line.

A container's command and args are expanded by the kubelet (`$(VAR)` from the container's own env,
secretKeyRefs included) and become the process's argv: readable by every user on the node
(/proc/<pid>/cmdline, ps) and shown by the container runtime's inspect. So every container of every
stack is expanded here as the kubelet does, and no secret value (generated passwords and keys, in
plain or URL-encoded form, as in a URI) may appear in the result. Secrets reach processes through env
(secretKeyRef) and files only: the database password as libpq's PGPASSWORD, the URIs without it.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tools.loopback.services import expand_k8s_vars, k8s_config_maps, k8s_secrets, resolve_container_env
from tools.mock_engine import evaluate_stack

STACKS = [
    ("dev", None),
    ("prod", None),
    ("pr-42", None),
    # A rotation of MLflow's encryption passphrase adds a migration step holding two passphrases.
    ("dev", {"mlflowKekVersion": 2}),
]


class _AnyField(dict):
    """Downward API values (fieldRef): none of them is a secret."""

    def __bool__(self) -> bool:
        return True

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"<{key}>"


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    found = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            found.append((f"CronJob/{obj['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            found.append((f"Pod/{obj['metadata']['name']}", spec))
    return found


def argv_as_the_kubelet_runs_it(container: dict, secrets: dict, config_maps: dict) -> tuple[list[str], dict]:
    env = resolve_container_env(container, secrets=secrets, config_maps=config_maps, field_values=_AnyField())
    argv = [expand_k8s_vars(a, env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    return argv, env


@pytest.mark.parametrize(("stack", "config"), STACKS, ids=[f"{s}-{c}" if c else s for s, c in STACKS])
def test_no_container_gets_a_secret_in_its_argv(stack, config):
    ev = evaluate_stack(stack, config=config)
    objects = ev.k8s_objects
    secrets, config_maps = k8s_secrets(objects), k8s_config_maps(objects)
    values = ev.secret_values()
    forms = {form for value in values for form in (value, quote(value, safe=""), quote(value))}
    assert len(values) >= 5, "the stack's generated secrets were found"

    containers, leaks, secret_env = 0, [], set()
    for owner, pod in pod_specs(objects):
        for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
            containers += 1
            argv, env = argv_as_the_kubelet_runs_it(container, secrets, config_maps)
            secret_env |= {name for name, value in env.items() if value in values}
            leaks += [
                f"{owner} container {container['name']}: argument {i}"
                for i, arg in enumerate(argv)
                if any(form in arg for form in forms)
            ]
    assert not leaks, f"secret values in argv: {leaks}"
    # The scan saw the credentials the containers do get (through env): the database password among them.
    assert containers >= 3 and "PGPASSWORD" in secret_env and "MLFLOW_AUTH_ADMIN_PASSWORD" in secret_env


def test_database_clients_get_the_password_from_libpq_env_and_uris_without_it():
    ev = evaluate_stack("dev", config={"mlflowKekVersion": 2})
    objects = ev.k8s_objects
    secrets, config_maps = k8s_secrets(objects), k8s_config_maps(objects)
    role_password = ev.one("random:index/randomPassword:RandomPassword", "postgres-mlflow-password").outputs["result"]
    clients = 0
    for owner, pod in pod_specs(objects):
        for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
            _, env = argv_as_the_kubelet_runs_it(container, secrets, config_maps)
            uris = [v for k, v in env.items() if k in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI")]
            if not uris:
                continue
            clients += 1
            assert env["PGPASSWORD"] == role_password, f"{owner} {container['name']}"
            for uri in uris:
                assert uri.startswith("postgresql+psycopg2://mlflow@"), f"{owner} {container['name']}: {uri}"
    # server, migration (tracking, key rotation, auth) and gc
    assert clients == 5
