"""Configuration: one typed model (config/), Pulumi.yaml generated from it, validated as a whole, clear errors,
nothing created."""

import pulumi
import pytest

import config
import sizing
from components.minio_store import BOOTSTRAP_CPU_REQUEST, BOOTSTRAP_MEMORY_REQUEST
from components.mlflow_server import MIGRATION_JOB_CPU_REQUEST, MIGRATION_JOB_MEMORY_REQUEST
from config import ConfigError, project_file
from tests.stacks import (
    EXTERNAL_CA_FILE,
    EXTERNAL_MINIO,
    EXTERNAL_POSTGRES,
    EXTERNAL_S3,
    assert_refused,
    load,
    problem_line,
)
from tools.mock_engine import Secret, evaluate_stack


def test_every_declared_key_has_type_default_and_description():
    for key, spec in project_file.read().items():
        assert spec.get("type") in ("string", "integer", "boolean", "array", "object"), key
        assert "default" in spec, key
        assert len(spec.get("description", "")) > 20, key


def test_pulumi_yaml_declares_exactly_the_model_key_by_key():
    """The CLI reads Pulumi.yaml (and hands its defaults to the program): generated from the model by
    `make docs`, so each key's type, default and description live in config/model.py only."""
    declared, modelled = project_file.read(), project_file.declared()
    assert list(declared) == list(modelled)
    for key in modelled:
        assert declared[key] == modelled[key], key
    assert project_file.rendered() == project_file.PROJECT_FILE.read_text(encoding="utf-8"), "run `make docs`"
    assert declared.keys().isdisjoint(config.REMOVED_KEYS)


def test_footprint_counts_every_pod_and_job_of_the_services_in_the_cluster():
    s = load("dev")
    assert (s.profile, s.namespace, s.postgres_instances, s.mlflow_replicas) == ("dev", "mlflow-dev", 1, 1)
    assert s.mlflow_image_ref == "ghcr.io/mlflow/mlflow:v3.18.0-full"
    q = sizing.parse_quantity
    jobs_cpu = q(MIGRATION_JOB_CPU_REQUEST) + q(BOOTSTRAP_CPU_REQUEST)
    jobs_memory = q(MIGRATION_JOB_MEMORY_REQUEST) + q(BOOTSTRAP_MEMORY_REQUEST)
    cpu, memory = sizing.footprint(s, with_operations=False)
    parts = [(s.resources(service))["requests"] for service in ("mlflow", "postgres", "minio")]
    assert cpu == pytest.approx(sum(q(r["cpu"]) for r in parts) + jobs_cpu)
    assert memory == sum(q(r["memory"]) for r in parts) + jobs_memory
    # An external object store takes MinIO and its bootstrap Job out of the cluster.
    external = load("dev", **EXTERNAL_S3)
    cpu_external, memory_external = sizing.footprint(external, with_operations=False)
    assert memory - memory_external == q(s.minio_memory_request) + q(BOOTSTRAP_MEMORY_REQUEST)
    assert cpu - cpu_external == pytest.approx(q(s.minio_cpu_request) + q(BOOTSTRAP_CPU_REQUEST))
    pr = load("pr-42")
    cpu, memory = sizing.footprint(pr, with_operations=False)
    assert memory <= sizing.PR_MEMORY_BUDGET_BYTES and cpu * 1000 <= sizing.PR_CPU_BUDGET_MILLICORES


@pytest.mark.parametrize(
    "stack, profile",
    [("pr-7", "pr"), ("prod", "prod"), ("production-eu", "prod"), ("dev", "dev"), ("staging", "dev"), ("pr-x", "dev")],
)
def test_profile_follows_the_stack_name(stack, profile):
    assert config.profile_for_stack(stack) == profile


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
    ({"mlflowMemoryRequest": "lots"}, "mlflowMemoryRequest", "quantity"),
    ({"mlflowCpuRequest": "2", "mlflowCpuLimit": "1"}, "mlflowCpuRequest", "exceeds mlflowCpuLimit"),
    ({"minioReplicas": 2}, "minioReplicas", "erasure set"),
    ({"tlsAlgorithm": "DSA"}, "tlsAlgorithm", "unknown value"),
    ({"tlsEarlyRenewalDays": 800}, "tlsEarlyRenewalDays", "between 1 and 365"),
    ({"tlsValidityDays": 20, "tlsEarlyRenewalDays": 30}, "tlsEarlyRenewalDays", "shorter than tlsValidityDays"),
    ({"profile": "staging"}, "profile", "unknown profile"),
    ({"ingressTlsSecretName": "a", "ingressClusterIssuer": "b"}, "ingressClusterIssuer", "conflicts"),
    ({"s3Region": "mars"}, "s3Region", "not an S3 region"),
    # issue 8: modes, external services, CA files, impossible combinations
    ({"postgresMode": "managed"}, "postgresMode", "unknown value"),
    ({"objectStoreMode": "s3"}, "objectStoreMode", "unknown value"),
    ({**EXTERNAL_POSTGRES, "postgresHost": ""}, "postgresHost", "needs the server's DNS name"),
    ({**EXTERNAL_POSTGRES, "postgresHost": "10.0.0.5"}, "postgresHost", "needs the server's DNS name"),
    ({**EXTERNAL_POSTGRES, "postgresCaFile": ""}, "postgresCaFile", "verify-full"),
    ({**EXTERNAL_POSTGRES, "postgresAdminPassword": Secret("")}, "postgresAdminPassword", "needs the admin login"),
    ({**EXTERNAL_POSTGRES, "postgresPort": 70000}, "postgresPort", "between 1 and 65535"),
    ({**EXTERNAL_POSTGRES, "postgresAdminUser": "bad user"}, "postgresAdminUser", "not a PostgreSQL role name"),
    ({**EXTERNAL_POSTGRES, "postgresCaFile": "tests/fixtures/missing.pem"}, "postgresCaFile", "file not found"),
    (
        {**EXTERNAL_POSTGRES, "postgresCaFile": "/etc/ssl/certs/ca-certificates.crt"},
        "postgresCaFile",
        "inside the project directory",
    ),
    ({**EXTERNAL_POSTGRES, "postgresCaFile": "../shared/ca.pem"}, "postgresCaFile", "inside the project directory"),
    ({**EXTERNAL_POSTGRES, "postgresCaFile": "Pulumi.yaml"}, "postgresCaFile", "not a PEM file"),
    ({**EXTERNAL_MINIO, "s3CaFile": "tests/fixtures/README.md"}, "s3CaFile", "not a PEM file"),
    ({**EXTERNAL_S3, "s3Endpoint": "http://s3.example.com"}, "s3Endpoint", "not an https URL"),
    ({**EXTERNAL_S3, "s3Endpoint": "https://s3.example.com/mlflow"}, "s3Endpoint", "not an https URL"),
    ({**EXTERNAL_S3, "s3Endpoint": ""}, "s3Endpoint", "objectStoreMode is external: required"),
    ({**EXTERNAL_S3, "s3AccessKey": ""}, "s3AccessKey", "objectStoreMode is external: required"),
    ({**EXTERNAL_S3, "s3SecretKey": Secret("")}, "s3SecretKey", "objectStoreMode is external: required"),
    ({**EXTERNAL_MINIO, "s3AdminUser": ""}, "s3AdminUser", "objectStoreMode is externalMinio: required"),
    (
        {**EXTERNAL_MINIO, "s3AdminPassword": Secret("")},
        "s3AdminPassword",
        "objectStoreMode is externalMinio: required",
    ),
    ({"postgresHost": "db.example.com"}, "postgresHost", "only used with postgresMode external"),
    ({"postgresCaFile": EXTERNAL_CA_FILE}, "postgresCaFile", "only used with postgresMode external"),
    (
        {"postgresAdminPassword": Secret("admin-pw-value")},
        "postgresAdminPassword",
        "only used with postgresMode external",
    ),
    ({"s3Endpoint": "https://s3.example.com"}, "s3Endpoint", "only used with objectStoreMode"),
    ({"s3AccessKey": "AKIA"}, "s3AccessKey", "only used with objectStoreMode"),
    ({"s3SecretKey": Secret("s3-secret-value")}, "s3SecretKey", "only used with objectStoreMode"),
    ({"s3AdminUser": "admin"}, "s3AdminUser", "only used with objectStoreMode"),
    ({"s3AdminPassword": Secret("minio-admin-value")}, "s3AdminPassword", "only used with objectStoreMode"),
    ({"s3CaFile": EXTERNAL_CA_FILE}, "s3CaFile", "only used with objectStoreMode"),
    # issue 19.1: read replicas
    ({"postgresReplicaHost": "db-ro.example.com"}, "postgresReplicaHost", "only used with postgresMode external"),
    ({"postgresReadReplica": "on"}, "postgresReadReplica", "postgresInstances is 1: there is no replica"),
    ({"postgresReadReplica": "sometimes"}, "postgresReadReplica", "unknown value"),
    ({**EXTERNAL_POSTGRES, "postgresReadReplica": "on"}, "postgresReadReplica", "the replica's host is not known"),
    ({**EXTERNAL_POSTGRES, "postgresReplicaHost": "10.0.0.6"}, "postgresReplicaHost", "not the replica's DNS name"),
    ({**EXTERNAL_POSTGRES, "postgresReplicaHost": "db ro"}, "postgresReplicaHost", "not the replica's DNS name"),
]


@pytest.mark.parametrize(
    "overrides, key, problem", BAD_INPUT, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD_INPUT)]
)
def test_bad_input_names_the_key_the_value_and_the_fix(overrides, key, problem):
    assert_refused(overrides, key, problem)


@pytest.mark.parametrize("key", sorted(config.REMOVED_KEYS))
def test_removed_keys_say_what_replaced_them(key):
    with pytest.raises(ConfigError) as raised:
        load("dev", **{key: "30432" if key.endswith("NodePort") else "x"})
    line = problem_line(str(raised.value), key)
    assert "was removed" in line and "Fix: delete it" in line, line
    if key == "installCnpgOperator":
        assert "the cluster stack owns the CloudNativePG operator (`make up STACK=cluster`)" in line, line
        return
    assert "CloudNativePG operator creates" in line and "Job inside the cluster" in line, line
    if key == "postgresAdminHost":
        assert "postgresMode: external" in line and "postgresHost" in line, line


@pytest.mark.parametrize(
    "typo, meant",
    [("mlflowReplica", "mlflowReplicas"), ("postgresInstance", "postgresInstances"), ("s3Endpiont", "s3Endpoint")],
)
def test_a_misspelled_key_suggests_the_declared_one(typo, meant):
    with pytest.raises(ConfigError) as raised:
        load("dev", **{typo: "2"})
    line = problem_line(str(raised.value), typo)
    assert f"did you mean {meant}?" in line and "is not a setting of this project" in line, line


def test_a_key_nothing_resembles_gets_no_suggestion():
    with pytest.raises(ConfigError) as raised:
        load("dev", zzzUnrelated="1")
    line = problem_line(str(raised.value), "zzzUnrelated")
    assert "did you mean" not in line and "configuration reference" in line


@pytest.mark.parametrize(
    "mode, key",
    [(EXTERNAL_POSTGRES, "postgresAdminPassword"), (EXTERNAL_S3, "s3SecretKey"), (EXTERNAL_MINIO, "s3AdminPassword")],
)
def test_credentials_in_plain_config_are_refused(mode, key):
    accepted = load("dev", **mode)  # the same value as secret config is fine
    assert accepted is not None
    plain = {**mode, key: mode[key].value}
    with pytest.raises(ConfigError) as raised:
        load("dev", **plain)
    line = problem_line(str(raised.value), key)
    assert "set in plain text" in line and f"pulumi config set --secret {key}" in line, line
    assert mode[key].value not in str(raised.value), "the error does not echo the credential"
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", plain)
    assert raised.value.registrations == []


def test_prod_must_be_highly_available():
    with pytest.raises(ConfigError) as raised:
        load("prod", postgresInstances=1, mlflowReplicas=1)
    assert "postgresInstances = 1" in str(raised.value) and "mlflowReplicas = 1" in str(raised.value)


def test_pr_stacks_must_fit_their_budget_and_share_the_operator():
    with pytest.raises(ConfigError) as raised:
        load("pr-1", mlflowReplicas=3, installCnpgOperator=True)
    message = str(raised.value)
    assert "over its 1024Mi budget" in message and "installCnpgOperator was removed: the cluster stack owns" in message


def test_stack_names_that_make_invalid_namespaces_are_refused():
    with pytest.raises(ConfigError, match='stack name "Dev_Stack".*DNS-1123'):
        load("Dev_Stack")


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        load("dev", bucket="X", postgresInstances=0, tlsAlgorithm="DSA")
    assert "3 problem(s)" in str(raised.value)


def test_a_bad_stack_fails_before_any_resource_is_registered():
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", {"bucket": "Invalid_Bucket"})
    assert raised.value.registrations == []
    # RunError: the CLI prints the message alone, without a Python stack trace.
    assert isinstance(raised.value, pulumi.RunError)
