"""The policy pack against every resource the real program registers: the stacks pass their own baseline."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.stacks import DEFAULT_STACKS, EXTERNAL_MINIO, EXTERNAL_POSTGRES, MODE_STACKS
from tools.mock_engine import evaluate_stack

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
        args = SimpleNamespace(
            resource_type=reg.type,
            props=reg.inputs,
            urn=reg.urn,
            name=reg.name,
            opts=SimpleNamespace(protect=reg.protect),
        )
        for policy in baseline.POLICY_SPECS:
            policy.validate(
                args, lambda message, urn=None, p=policy.name, r=reg: found.append(f"{p}: {r.name}: {message}")
            )
    return found


@pytest.mark.parametrize(
    "stack, config",
    [(stack, {}) for stack in DEFAULT_STACKS] + list(MODE_STACKS.values()),
    ids=list(DEFAULT_STACKS) + list(MODE_STACKS),
)
def test_every_resource_passes_the_baseline(stack, config):
    ev = evaluate_stack(stack, config)
    assert len([r for r in ev.registrations if r.custom]) >= 20
    assert violations(ev) == []


def test_the_baseline_catches_a_weakened_stack():
    ev = evaluate_stack("dev", {**EXTERNAL_POSTGRES, **EXTERNAL_MINIO})
    assert violations(ev) == []
    deployment = ev.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "MLFLOW_S3_IGNORE_TLS", "value": "true"}
    )
    ev.one("pulumi:providers:postgresql", "postgres-admin-provider").inputs["sslmode"] = "require"
    ev.one("pulumi:providers:minio", "minio-admin-provider").inputs["minioInsecure"] = "true"
    bootstrap = evaluate_stack("dev").one("kubernetes:batch/v1:Job", "minio-bootstrap")
    bootstrap.inputs["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "MINIO_ROOT_PASSWORD", "value": "planted"}
    )
    ev.registrations.append(bootstrap)
    found = violations(ev)
    assert any("mlflow-deployment" in v and "tls-required" in v for v in found), found
    assert any("postgres-admin-provider" in v and "verify-full" in v for v in found), found
    assert any("minio-admin-provider" in v and "minioInsecure" in v for v in found), found
    assert any("minio-bootstrap" in v and "no-plaintext-secrets-in-env" in v for v in found), found


def test_the_baseline_catches_unprotected_data_in_prod():
    ev = evaluate_stack("prod")
    assert violations(ev) == []
    ev.one("kubernetes:apps/v1:StatefulSet", "minio-statefulset").protect = False
    ev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster").protect = False
    found = violations(ev)
    assert sorted(v.split(":", 2)[1].strip() for v in found) == ["minio-statefulset", "postgres-cluster"], found
    assert all(v.startswith("protected-data-in-prod:") for v in found), found
