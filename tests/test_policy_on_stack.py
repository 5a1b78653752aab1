"""The policy pack against every resource the real program registers: the stacks pass their own baseline."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness import evaluate_stack

ROOT = Path(__file__).resolve().parent.parent


def load_baseline():
    spec = importlib.util.spec_from_file_location("policy_baseline", ROOT / "policy" / "baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def violations(ev) -> list[str]:
    """Run every policy on every custom resource, with props as `pulumi preview` hands them over."""
    baseline = load_baseline()
    found = []
    for reg in ev.registrations:
        if not reg.custom:
            continue
        args = SimpleNamespace(resource_type=reg.type, props=reg.inputs, urn=reg.urn, name=reg.name)
        for policy in baseline.POLICY_SPECS:
            policy.validate(args, lambda message, urn=None, p=policy.name, r=reg: found.append(f"{p}: {r.name}: {message}"))
    return found


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-42"])
def test_every_resource_passes_the_baseline(stack):
    assert violations(evaluate_stack(stack)) == []


def test_the_baseline_catches_a_weakened_stack():
    ev = evaluate_stack("dev")
    deployment = ev.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MLFLOW_S3_IGNORE_TLS", "value": "true"})
    provider = ev.one("pulumi:providers:postgresql", "postgres-admin-provider")
    provider.inputs["sslmode"] = "require"
    found = violations(ev)
    assert any("mlflow-deployment" in v and "tls-required" in v for v in found), found
    assert any("postgres-admin-provider" in v for v in found), found
