"""Configuration: declared once in Pulumi.yaml, validated as a whole, clear errors, nothing created."""

import pulumi
import pytest

import settings
from tests.harness import PROJECT, evaluate_stack, stack_config


def load(stack="dev", **overrides):
    pulumi.runtime.set_all_config(stack_config(stack, overrides))
    return settings.load_settings(pulumi.Config(PROJECT), stack=stack, project=PROJECT)


def test_every_declared_key_has_type_default_and_description():
    for key, spec in settings.declared_config().items():
        assert spec.get("type") in ("string", "integer", "boolean", "array"), key
        assert "default" in spec, key
        assert len(spec.get("description", "")) > 20, key


def test_every_declared_key_is_read_and_nothing_else(monkeypatch):
    read = []
    original = settings._Reader.raw
    monkeypatch.setattr(settings._Reader, "raw", lambda self, key: read.append(key) or original(self, key))
    load("dev")
    assert set(read) == set(settings.declared_config())


def test_defaults_give_a_dev_stack_within_the_pr_budget():
    s = load("dev")
    assert (s.profile, s.namespace, s.postgres.instances, s.mlflow.replicas) == ("dev", "mlflow-dev", 1, 1)
    assert s.mlflow.image == "ghcr.io/mlflow/mlflow:v3.17.2-full"
    cpu, memory = settings.footprint(s.postgres, s.minio, s.mlflow)
    assert memory <= settings.PR_MEMORY_BUDGET_BYTES and cpu <= 0.5


@pytest.mark.parametrize("stack, profile", [("pr-7", "pr"), ("prod", "prod"), ("production-eu", "prod"),
                                            ("dev", "dev"), ("staging", "dev"), ("pr-x", "dev")])
def test_profile_follows_the_stack_name(stack, profile):
    assert settings.profile_for_stack(stack) == profile


BAD_INPUT = [
    ({"bucket": "My_Bucket"}, "bucket", "S3 bucket name"),
    ({"bucket": "ab"}, "bucket", "S3 bucket name"),
    ({"bucket": "192.168.1.1"}, "bucket", "S3 bucket name"),
    ({"bucket": "a..b"}, "bucket", "S3 bucket name"),
    ({"postgresInstances": 0}, "postgresInstances", "between 1 and 9"),
    ({"postgresInstances": "three"}, "postgresInstances", "expected an integer"),
    ({"mlflowAuth": "maybe"}, "mlflowAuth", "expected a boolean"),
    ({"mlflowVersion": "latest"}, "mlflowVersion", "not an MLflow version"),
    ({"mlflowImage": "ghcr.io/mlflow/mlflow:v3"}, "mlflowImage", "without tag"),
    ({"minioImage": "quay.io/minio/minio:latest"}, "minioImage", "pinned"),
    ({"minioImage": "quay.io/minio/minio"}, "minioImage", "pinned"),
    ({"postgresImage": "ghcr.io/cloudnative-pg/postgresql:latest"}, "postgresImage", "pinned"),
    ({"ingressDomain": "not a domain"}, "ingressDomain", "not a DNS domain"),
    ({"ingressDomain": "localhost"}, "ingressDomain", "not a DNS domain"),
    ({"postgresStorageSize": "10GB"}, "postgresStorageSize", "not a storage size"),
    ({"minioStorageSize": "0Gi"}, "minioStorageSize", "not a storage size"),
    ({"adminSourceRanges": ["10.0.0.1/8"]}, "adminSourceRanges", "not a CIDR"),
    ({"adminSourceRanges": ["everyone"]}, "adminSourceRanges", "not a CIDR"),
    ({"adminSourceRanges": []}, "adminSourceRanges", "must not be empty"),
    ({"mlflowMemoryRequest": "lots"}, "mlflowMemoryRequest", "quantity"),
    ({"mlflowCpuRequest": "2", "mlflowCpuLimit": "1"}, "mlflowCpuRequest", "exceeds mlflowCpuLimit"),
    ({"minioReplicas": 2}, "minioReplicas", "erasure set"),
    ({"postgresAdminAccess": "nodePort"}, "postgresAdminHost", "required when postgresAdminAccess is nodePort"),
    ({"postgresAdminAccess": "ingress"}, "postgresAdminAccess", "unknown value"),
    ({"minioAdminHost": "bad host!"}, "minioAdminHost", "not an IP address or DNS name"),
    ({"postgresAdminNodePort": 80}, "postgresAdminNodePort", "between 30000 and 32767"),
    ({"tlsAlgorithm": "DSA"}, "tlsAlgorithm", "unknown value"),
    ({"tlsEarlyRenewalDays": 800}, "tlsEarlyRenewalDays", "between 1 and 365"),
    ({"tlsValidityDays": 20, "tlsEarlyRenewalDays": 30}, "tlsEarlyRenewalDays", "shorter than tlsValidityDays"),
    ({"profile": "staging"}, "profile", "unknown profile"),
    ({"ingressTlsSecretName": "a", "ingressClusterIssuer": "b"}, "ingressClusterIssuer", "conflicts"),
    ({"s3Region": "mars"}, "s3Region", "not an S3 region"),
]


@pytest.mark.parametrize("overrides, key, problem", BAD_INPUT, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD_INPUT)])
def test_bad_input_names_the_key_the_value_and_the_fix(overrides, key, problem):
    with pytest.raises(settings.ConfigError) as raised:
        load("dev", **overrides)
    message = str(raised.value)
    line = next((l for l in message.splitlines() if f"{PROJECT}:{key} = " in l), None)
    assert line is not None, message
    assert problem in line and "Fix: " in line, line


def test_prod_must_be_highly_available():
    with pytest.raises(settings.ConfigError) as raised:
        load("prod", postgresInstances=1, mlflowReplicas=1)
    assert "postgresInstances = 1" in str(raised.value) and "mlflowReplicas = 1" in str(raised.value)


def test_pr_stacks_must_fit_their_budget_and_share_the_operator():
    with pytest.raises(settings.ConfigError) as raised:
        load("pr-1", mlflowReplicas=3, installCnpgOperator=True)
    message = str(raised.value)
    assert "over its 1024Mi budget" in message and "installCnpgOperator = true" in message


def test_stack_names_that_make_invalid_namespaces_are_refused():
    with pytest.raises(settings.ConfigError, match="stack name \"Dev_Stack\".*DNS-1123"):
        load("Dev_Stack")


def test_all_problems_are_reported_at_once():
    with pytest.raises(settings.ConfigError) as raised:
        load("dev", bucket="X", postgresInstances=0, tlsAlgorithm="DSA")
    assert "3 problem(s)" in str(raised.value)


def test_a_bad_stack_fails_before_any_resource_is_registered():
    with pytest.raises(settings.ConfigError) as raised:
        evaluate_stack("dev", {"bucket": "Invalid_Bucket"})
    assert raised.value.registrations == []
    # RunError: the CLI prints the message alone, without a Python stack trace.
    assert isinstance(raised.value, pulumi.RunError)
