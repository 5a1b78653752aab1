"""Tests for the mlflow-platform-baseline policy pack (policy/)."""

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY_DIR = os.path.join(REPO, "policy")
if POLICY_DIR not in sys.path:
    sys.path.insert(0, POLICY_DIR)


def _load(name: str, filename: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(POLICY_DIR, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


baseline = _load("mlflow_policy_baseline", "baseline.py")

EXPECTED_POLICIES = {
    "resource-limits",
    "no-plaintext-secrets-in-env",
    "pinned-images",
    "tls-required",
    "protected-data-in-prod",
}

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # engine sentinel for unknown strings
UNKNOWN_OBJECT = "dd056dcd-154b-4c76-9bd3-c8f88648b5ff"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@dataclass
class FakeArgs:
    """Duck-typed pulumi_policy.ResourceValidationArgs."""

    resource_type: str
    props: Any
    name: str = "res"
    urn: str = ""
    opts: Any = None
    provider: Any = None
    stack_tags: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.urn:
            self.urn = f"urn:pulumi:dev::mlflow-platform::{self.resource_type}::{self.name}"


class Recorder:
    def __init__(self):
        self.messages: list[str] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        assert isinstance(message, str) and message
        self.messages.append(message)

    def has(self, *fragments: str) -> bool:
        return any(all(f in m for f in fragments) for m in self.messages)


def run(validate, resource_type, props, name="res", stack="dev", protect=False):
    rec = Recorder()
    urn = f"urn:pulumi:{stack}::mlflow-platform::{resource_type}::{name}"
    validate(FakeArgs(resource_type, props, name=name, urn=urn, opts=SimpleNamespace(protect=protect)), rec)
    return rec


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
RELEASE = "kubernetes:helm.sh/v3:Release"
PG_PROVIDER = "pulumi:providers:postgresql"
MINIO_PROVIDER = "pulumi:providers:minio"


def good_container(name="app", image="ghcr.io/mlflow/mlflow:v2.16.2"):
    return {
        "name": name,
        "image": image,
        "args": [
            "server",
            "--backend-store-uri",
            "postgresql://mlflow:$(DB_PASSWORD)@db-rw:5432/mlflow?sslmode=verify-full",
        ],
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secretKey"}}},
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "https://minio:9000"},
            {"name": "PGSSLMODE", "value": "verify-full"},
            {"name": "MLFLOW_S3_IGNORE_TLS", "value": "false"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    }


def good_pod_spec():
    return {"initContainers": [good_container("migrate")], "containers": [good_container()]}


def wrap(resource_type, pod_spec):
    meta = {"name": "x", "namespace": "mlflow-dev"}
    if resource_type == POD:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    if resource_type == CRONJOB:
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}},
        }
    return {"metadata": meta, "spec": {"template": {"metadata": {}, "spec": pod_spec}}}


def deployment(mutate=None, resource_type=DEPLOYMENT):
    spec = good_pod_spec()
    if mutate:
        mutate(spec)
    return wrap(resource_type, spec)


def container(spec, idx=0):
    return spec["containers"][idx]


def good_cluster():
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "db", "namespace": "mlflow-dev"},
        "spec": {
            "instances": 1,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:16.4",
            "certificates": {"serverTLSSecret": "db-server-tls", "serverCASecret": "db-ca"},
            "postgresql": {"pg_hba": ["hostnossl all all all reject", "hostssl all all all scram-sha-256"]},
        },
    }


ALL_VALIDATORS = [spec.validate for spec in baseline.POLICY_SPECS]
POD_TYPES = sorted(baseline.POD_BEARING_TYPES)


# ---------------------------------------------------------------------------
# compliant resources pass every policy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("resource_type", POD_TYPES)
def test_compliant_workload_passes_every_policy(resource_type):
    props = wrap(resource_type, good_pod_spec())
    for validate in ALL_VALIDATORS:
        rec = run(validate, resource_type, props)
        assert rec.messages == [], (validate.__name__, rec.messages)


@pytest.mark.parametrize(
    "resource_type,props",
    [
        (CLUSTER, good_cluster()),
        (
            RELEASE,
            {
                "chart": "cloudnative-pg",
                "version": "0.22.1",
                "repositoryOpts": {"repo": "https://cloudnative-pg.github.io/charts"},
            },
        ),
        (PG_PROVIDER, {"host": "localhost", "sslmode": "verify-full", "sslrootcert": "/tmp/ca.crt"}),
        (MINIO_PROVIDER, {"minioServer": "localhost:9000", "minioSsl": "true"}),
        (MINIO_PROVIDER, {"minioServer": "localhost:9000", "minioSsl": True, "minioInsecure": "false"}),
        ("kubernetes:core/v1:Secret", {"stringData": {"PASSWORD": "hunter2"}}),
        ("kubernetes:core/v1:Service", {"spec": {"ports": [{"port": 80}]}}),
    ],
)
def test_compliant_non_pod_resources_pass(resource_type, props):
    for validate in ALL_VALIDATORS:
        rec = run(validate, resource_type, props)
        assert rec.messages == [], (validate.__name__, rec.messages)


# ---------------------------------------------------------------------------
# 1. resource-limits
# ---------------------------------------------------------------------------

V_RES = baseline.validate_resource_limits


@pytest.mark.parametrize(
    "kind,res", [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")]
)
def test_resource_limits_each_missing_value(kind, res):
    props = deployment(lambda s: container(s)["resources"][kind].pop(res))
    rec = run(V_RES, DEPLOYMENT, props, name="mlflow")
    assert rec.has("Deployment 'mlflow'", "container 'app'", f"{kind}.{res}"), rec.messages
    assert len(rec.messages) == 1


def test_resource_limits_missing_entirely_and_init_container():
    def mutate(s):
        container(s).pop("resources")
        s["initContainers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "0"}}

    rec = run(V_RES, JOB, deployment(mutate, JOB))
    assert rec.has("container 'app'", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
    assert rec.has("initContainer 'migrate'", "requests.cpu", "requests.memory", "limits.memory")
    assert not rec.has("initContainer 'migrate'", "limits.cpu")


def test_resource_limits_cronjob():
    props = deployment(lambda s: container(s).pop("resources"), CRONJOB)
    assert run(V_RES, CRONJOB, props).has("CronJob", "container 'app'")


def test_resource_limits_unknown_quantities_are_not_reported():
    props = deployment(lambda s: container(s)["resources"]["limits"].update(memory=UNKNOWN_STRING))
    assert run(V_RES, DEPLOYMENT, props).messages == []


def test_resource_limits_numeric_quantities_ok():
    props = deployment(
        lambda s: container(s).update(
            resources={"requests": {"cpu": 0.5, "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
        )
    )
    assert run(V_RES, DEPLOYMENT, props).messages == []


# ---------------------------------------------------------------------------
# 2. no-plaintext-secrets-in-env
# ---------------------------------------------------------------------------

V_SEC = baseline.validate_no_plaintext_secrets_in_env


@pytest.mark.parametrize(
    "env_name",
    [
        "DB_PASSWORD",
        "postgres_password",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "GITHUB_TOKEN",
        "MLFLOW_TRACKING_TOKEN",
        "TLS_PRIVATE_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "MySecretValue",
    ],
)
def test_secret_named_env_with_plain_value(env_name):
    props = deployment(lambda s: container(s)["env"].append({"name": env_name, "value": "hunter2"}))
    rec = run(V_SEC, DEPLOYMENT, props, name="mlflow")
    assert rec.has("Deployment 'mlflow'", f"'{env_name}'", "valueFrom.secretKeyRef"), rec.messages
    assert not any("hunter2" in m for m in rec.messages)


def test_secret_named_env_in_init_container():
    props = deployment(lambda s: s["initContainers"][0]["env"].append({"name": "PGPASSWORD", "value": "x"}))
    assert run(V_SEC, DEPLOYMENT, props).has("initContainer 'migrate'", "PGPASSWORD")


def test_non_secret_env_with_plain_value_is_fine():
    props = deployment(lambda s: container(s)["env"].append({"name": "MLFLOW_HOST", "value": "0.0.0.0"}))
    assert run(V_SEC, DEPLOYMENT, props).messages == []


@pytest.mark.parametrize(
    "value",
    [
        "postgresql://mlflow:s3cr3t@db-rw:5432/mlflow",
        "postgresql+psycopg2://mlflow:p%40ss@db:5432/x?sslmode=verify-full",
        "--default-artifact-root s3://bucket --store postgresql://u:s3cr3t@db/mlflow",
    ],
)
def test_env_value_with_uri_password(value):
    props = deployment(lambda s: container(s)["env"].append({"name": "MLFLOW_BACKEND_STORE_URI", "value": value}))
    rec = run(V_SEC, DEPLOYMENT, props)
    assert rec.has("'MLFLOW_BACKEND_STORE_URI'", "embeds a password", ":***@"), rec.messages
    # the password itself never ends up in the violation message
    assert not any("s3cr3t" in m or "p%40ss" in m for m in rec.messages)


@pytest.mark.parametrize("field_name", ["args", "command"])
def test_args_and_command_with_uri_password(field_name):
    props = deployment(
        lambda s: container(s).update(
            {field_name: ["mlflow", "server", "--backend-store-uri", "postgresql://u:pw@db/mlflow"]}
        )
    )
    rec = run(V_SEC, DEPLOYMENT, props)
    assert rec.has(f"{field_name}[3]", "embeds a password"), rec.messages


@pytest.mark.parametrize(
    "value",
    [
        "postgresql://mlflow:$(DB_PASSWORD)@db/mlflow",
        "postgresql://mlflow:${DB_PASSWORD}@db/mlflow",
        "postgresql://mlflow@db/mlflow",
        "https://minio:9000/bucket",
        "http://host:8080/path?next=a@b",
    ],
)
def test_uri_without_literal_password_is_fine(value):
    props = deployment(lambda s: container(s)["args"].append(value))
    assert run(V_SEC, DEPLOYMENT, props).messages == []


# ---------------------------------------------------------------------------
# 3. pinned-images
# ---------------------------------------------------------------------------

V_PIN = baseline.validate_pinned_images


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/mlflow/mlflow:v2.16.2",
        "quay.io/minio/minio:RELEASE.2024-10-02T17-50-41Z",
        "localhost:5000/team/app:1.0",
        "ghcr.io/mlflow/mlflow@sha256:" + "a" * 64,
        "ghcr.io/mlflow/mlflow:latest@sha256:" + "b" * 64,
    ],
)
def test_pinned_images_ok(image):
    props = deployment(lambda s: container(s).update(image=image))
    assert run(V_PIN, DEPLOYMENT, props).messages == []


@pytest.mark.parametrize(
    "image,fragment",
    [
        ("ghcr.io/mlflow/mlflow", "no tag"),
        ("localhost:5000/team/app", "no tag"),
        ("ghcr.io/mlflow/mlflow:latest", ":latest"),
        ("busybox:LATEST", ":latest"),
        ("busybox:", "empty tag"),
        ("busybox@sha256:abc", "malformed digest"),
        ("", "has no image"),
    ],
)
def test_unpinned_images(image, fragment):
    props = deployment(lambda s: s["initContainers"][0].update(image=image))
    rec = run(V_PIN, DEPLOYMENT, props, name="mlflow")
    assert rec.has("Deployment 'mlflow'", "initContainer 'migrate'", fragment), rec.messages


def test_missing_image_key():
    props = deployment(lambda s: container(s).pop("image"), CRONJOB)
    assert run(V_PIN, CRONJOB, props).has("container 'app'", "has no image")


def test_cnpg_image_name():
    cluster = good_cluster()
    cluster["spec"]["imageName"] = "ghcr.io/cloudnative-pg/postgresql:latest"
    assert run(V_PIN, CLUSTER, cluster, name="db").has("Cluster 'db'", "spec.imageName", ":latest")
    cluster["spec"]["imageName"] = "ghcr.io/cloudnative-pg/postgresql"
    assert run(V_PIN, CLUSTER, cluster).has("spec.imageName", "no tag")
    cluster["spec"].pop("imageName")  # operator default image: allowed
    assert run(V_PIN, CLUSTER, cluster).messages == []


@pytest.mark.parametrize(
    "props,fragment",
    [
        ({"chart": "cloudnative-pg"}, "not set"),
        ({"chart": "cloudnative-pg", "version": ""}, "not set"),
        ({"chart": "cloudnative-pg", "version": "^0.22.0"}, "not an exact version"),
        ({"chart": "cloudnative-pg", "version": "0.22.x"}, "not an exact version"),
        ({"chart": "cloudnative-pg", "version": ">=0.20"}, "not an exact version"),
        ({"chart": "cloudnative-pg", "version": "latest"}, "not an exact version"),
    ],
)
def test_helm_release_version(props, fragment):
    rec = run(V_PIN, RELEASE, props, name="cnpg-operator")
    assert rec.has("Release 'cnpg-operator'", fragment), rec.messages


@pytest.mark.parametrize("version", ["0.22.1", "v1.2.3", "5.0.0-rc.1", "1.0.0+build.5"])
def test_helm_release_exact_versions(version):
    assert run(V_PIN, RELEASE, {"chart": "x", "version": version}).messages == []


# ---------------------------------------------------------------------------
# 4. tls-required
# ---------------------------------------------------------------------------

V_TLS = baseline.validate_tls_required


@pytest.mark.parametrize("cert_field", ["serverTLSSecret", "serverCASecret"])
def test_cnpg_missing_server_certificates(cert_field):
    cluster = good_cluster()
    cluster["spec"]["certificates"].pop(cert_field)
    rec = run(V_TLS, CLUSTER, cluster, name="db")
    assert rec.has("Cluster 'db'", f"spec.certificates.{cert_field} is not set"), rec.messages
    assert len(rec.messages) == 1


def test_cnpg_missing_certificates_block():
    cluster = good_cluster()
    cluster["spec"].pop("certificates")
    rec = run(V_TLS, CLUSTER, cluster)
    assert rec.has("serverTLSSecret") and rec.has("serverCASecret")


@pytest.mark.parametrize(
    "pg_hba,fragment",
    [
        (None, "no rule rejecting non-TLS"),
        ([], "no rule rejecting non-TLS"),
        (["hostssl all all all scram-sha-256"], "no rule rejecting non-TLS"),
        (["hostnossl all all all scram-sha-256"], "no rule rejecting non-TLS"),
        (["hostnossl mlflow mlflow 10.0.0.0/8 reject"], "no rule rejecting non-TLS"),
        (["# hostnossl all all all reject"], "no rule rejecting non-TLS"),
        (["host all all 0.0.0.0/0 md5", "hostnossl all all all reject"], "comes before the hostnossl reject"),
    ],
)
def test_cnpg_pg_hba_violations(pg_hba, fragment):
    cluster = good_cluster()
    if pg_hba is None:
        cluster["spec"].pop("postgresql")
    else:
        cluster["spec"]["postgresql"]["pg_hba"] = pg_hba
    rec = run(V_TLS, CLUSTER, cluster, name="db")
    assert rec.has("Cluster 'db'", fragment), rec.messages


@pytest.mark.parametrize(
    "pg_hba",
    [
        ["hostnossl all all 0.0.0.0/0 reject", "hostnossl all all ::/0 reject"],
        ["hostnossl\tall\tall\tall\treject  # no plaintext"],
        ["hostssl all all all scram-sha-256", "host all all all reject", "hostnossl all all all reject"],
    ],
)
def test_cnpg_pg_hba_ok(pg_hba):
    cluster = good_cluster()
    cluster["spec"]["postgresql"]["pg_hba"] = pg_hba
    assert run(V_TLS, CLUSTER, cluster).messages == []


@pytest.mark.parametrize(
    "props,fragment",
    [
        ({"host": "db"}, "unset"),
        ({"host": "db", "sslmode": "disable"}, "'disable'"),
        ({"host": "db", "sslmode": "require"}, "'require'"),
        ({"host": "db", "sslmode": "verify-ca"}, "'verify-ca'"),
        ({"host": "db", "sslMode": "prefer"}, "'prefer'"),
    ],
)
def test_postgresql_provider_sslmode(props, fragment):
    rec = run(V_TLS, PG_PROVIDER, props, name="pg")
    assert rec.has("postgresql 'pg'", fragment, "verify-full"), rec.messages


def test_postgresql_provider_deprecated_ssl_mode_ok():
    assert run(V_TLS, PG_PROVIDER, {"sslMode": "verify-full"}).messages == []


@pytest.mark.parametrize(
    "props,fragment",
    [
        ({"minioServer": "m:9000"}, "minioSsl is unset"),
        ({"minioServer": "m:9000", "minioSsl": "false"}, "minioSsl is 'false'"),
        ({"minioServer": "m:9000", "minioSsl": False}, "minioSsl is False"),
        ({"minioServer": "m:9000", "minioSsl": "true", "minioInsecure": "true"}, "minioInsecure is true"),
        ({"minioServer": "m:9000", "minioSsl": True, "minioInsecure": True}, "minioInsecure is true"),
    ],
)
def test_minio_provider(props, fragment):
    rec = run(V_TLS, MINIO_PROVIDER, props, name="minio")
    assert rec.has("minio 'minio'", fragment), rec.messages


@pytest.mark.parametrize(
    "env,fragment",
    [
        ({"name": "MLFLOW_S3_IGNORE_TLS", "value": "true"}, "MLFLOW_S3_IGNORE_TLS"),
        ({"name": "MLFLOW_S3_IGNORE_TLS", "value": "True"}, "MLFLOW_S3_IGNORE_TLS"),
        ({"name": "PGSSLMODE", "value": "require"}, "PGSSLMODE='require'"),
        ({"name": "PGSSLMODE", "value": "disable"}, "PGSSLMODE='disable'"),
        ({"name": "PGSSLMODE", "value": "verify-ca"}, "PGSSLMODE='verify-ca'"),
        ({"name": "PGSSLMODE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}, "valueFrom"),
        ({"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://minio:9000"}, "plain http"),
        ({"name": "MLFLOW_BACKEND_STORE_URI", "value": "postgresql://db/mlflow?sslmode=disable"}, "sslmode=disable"),
    ],
)
def test_container_tls_env(env, fragment):
    def mutate(s):
        envs = container(s)["env"]
        envs[:] = [e for e in envs if e["name"] != env["name"]] + [env]

    rec = run(V_TLS, DEPLOYMENT, deployment(mutate), name="mlflow")
    assert rec.has("Deployment 'mlflow'", "container 'app'", fragment), rec.messages


def test_container_tls_args_sslmode():
    props = deployment(
        lambda s: container(s).update(
            args=["server", "--backend-store-uri", "postgresql://mlflow:$(P)@db/mlflow?sslmode=require"]
        ),
        JOB,
    )
    assert run(V_TLS, JOB, props).has("args[2]", "sslmode=require")


# ---------------------------------------------------------------------------
# 5. protected-data-in-prod
# ---------------------------------------------------------------------------

V_PROT = baseline.validate_protected_data_in_prod
DATA_RESOURCES = [
    (CLUSTER, "postgres-cluster"),
    ("kubernetes:postgresql.cnpg.io/v1:Database", "postgres-mlflow-database"),
    (STATEFULSET, "minio-statefulset"),
    ("kubernetes:core/v1:PersistentVolumeClaim", "data"),
    ("postgresql:index/database:Database", "postgres-mlflow"),
    ("minio:index/s3Bucket:S3Bucket", "minio-bucket"),
]


@pytest.mark.parametrize("resource_type,name", DATA_RESOURCES)
@pytest.mark.parametrize("stack", ["prod", "prod-eu"])
def test_unprotected_data_in_prod(resource_type, name, stack):
    rec = run(V_PROT, resource_type, {}, name=name, stack=stack)
    assert rec.has(f"'{name}'", f"prod stack '{stack}'", "protect=True"), rec.messages
    assert run(V_PROT, resource_type, {}, name=name, stack=stack, protect=True).messages == []


@pytest.mark.parametrize("stack", ["dev", "pr-42", "staging"])
def test_data_outside_prod_needs_no_protection(stack):
    for resource_type, name in DATA_RESOURCES:
        assert run(V_PROT, resource_type, {}, name=name, stack=stack).messages == []


def test_stateless_resources_in_prod_need_no_protection():
    assert run(V_PROT, DEPLOYMENT, deployment(), stack="prod").messages == []
    assert run(V_PROT, "kubernetes:core/v1:Secret", {}, stack="prod").messages == []


def test_stack_of_reads_nested_urns():
    urn = "urn:pulumi:prod::mlflow-platform::mlflow-platform:index:PostgresCluster$kubernetes:x/v1:Cluster::db"
    assert baseline.stack_of(urn) == "prod"
    assert baseline.stack_of("") == baseline.stack_of(None) == ""


# ---------------------------------------------------------------------------
# engine-shaped inputs: unknown values during preview, proxies, real args class
# ---------------------------------------------------------------------------


def test_real_resource_validation_args_and_unknown_proxy():
    from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    spec = good_pod_spec()
    container(spec)["env"].append({"name": "MLFLOW_HOST", "value": UNKNOWN_STRING})
    container(spec)["image"] = "ghcr.io/mlflow/mlflow:latest"
    spec["initContainers"][0]["resources"] = UNKNOWN_OBJECT
    props = unknown_checking_proxy(wrap(DEPLOYMENT, spec))
    # Sanity: the proxy raises when an unknown is touched directly.
    with pytest.raises(Exception):  # noqa: B017 - whichever error the proxy raises, touching it must fail
        _ = props["spec"]["template"]["spec"]["initContainers"][0]["resources"]

    opts = PolicyResourceOptions(False, [], None, [], None, [], None)
    args = ResourceValidationArgs(DEPLOYMENT, props, "urn:x", "mlflow", opts, None)
    rec = Recorder()
    for validate in ALL_VALIDATORS:
        validate(args, rec)  # must not raise on unknowns
    assert rec.messages == [
        "Deployment 'mlflow' (kubernetes:apps/v1:Deployment) container 'app': image "
        "'ghcr.io/mlflow/mlflow:latest' uses the mutable ':latest' tag. Pin an explicit version tag "
        "(e.g. 'repo/name:1.2.3') or a digest ('repo/name@sha256:...')."
    ]


def test_unknown_secret_named_env_value_still_flagged():
    props = deployment(lambda s: container(s)["env"].append({"name": "DB_PASSWORD_2", "value": UNKNOWN_STRING}))
    assert run(V_SEC, DEPLOYMENT, props).has("DB_PASSWORD_2")


def test_unknown_values_skip_only_their_check():
    cluster = good_cluster()
    cluster["spec"]["certificates"]["serverTLSSecret"] = UNKNOWN_STRING
    cluster["spec"]["postgresql"]["pg_hba"] = []
    rec = run(V_TLS, CLUSTER, cluster)
    assert not rec.has("serverTLSSecret")
    assert rec.has("no rule rejecting non-TLS")
    assert run(V_TLS, PG_PROVIDER, {"sslmode": UNKNOWN_STRING}).messages == []
    assert run(V_PIN, RELEASE, {"chart": "x", "version": UNKNOWN_STRING}).messages == []


# ---------------------------------------------------------------------------
# the pack itself (__main__.py, PulumiPolicy.yaml, requirements.txt)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pack_main():
    # Loaded under a non-__main__ name: builds POLICIES but does not start the gRPC server.
    return _load("mlflow_policy_pack_main", "__main__.py")


def test_registry_matches_expected_policies():
    assert set(baseline.POLICY_NAMES) == EXPECTED_POLICIES
    assert len(baseline.POLICY_NAMES) == len(EXPECTED_POLICIES)


def test_pack_declares_every_policy_mandatory(pack_main):
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

    assert pack_main.PACK_NAME == "mlflow-platform-baseline"
    assert {p.name for p in pack_main.POLICIES} == EXPECTED_POLICIES
    for policy in pack_main.POLICIES:
        assert isinstance(policy, ResourceValidationPolicy)
        assert policy.enforcement_level == EnforcementLevel.MANDATORY, policy.name
        assert len(policy.description) > 40


def test_pack_main_builds_policy_pack(pack_main, monkeypatch):
    from pulumi_policy import EnforcementLevel

    captured = {}

    def fake_pack(**kwargs):
        captured.update(kwargs)

    monkeypatch.setattr(pack_main, "PolicyPack", fake_pack)
    pack_main.main()
    assert captured["name"] == "mlflow-platform-baseline"
    assert captured["enforcement_level"] == EnforcementLevel.MANDATORY
    assert [p.name for p in captured["policies"]] == list(baseline.POLICY_NAMES)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in captured["policies"])


def test_pack_policy_objects_run_validation(pack_main):
    by_name = {p.name: p for p in pack_main.POLICIES}
    rec = Recorder()
    by_name["pinned-images"].validate(
        FakeArgs(DEPLOYMENT, deployment(lambda s: container(s).update(image="nginx"))), rec
    )
    assert rec.has("no tag")


def test_pulumi_policy_yaml_and_requirements():
    import yaml

    with open(os.path.join(POLICY_DIR, "PulumiPolicy.yaml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    assert cfg["runtime"]["name"] == "python"
    venv = os.path.normpath(os.path.join(POLICY_DIR, cfg["runtime"]["options"]["virtualenv"]))
    assert os.path.isdir(venv), venv
    with open(os.path.join(POLICY_DIR, "requirements.txt"), encoding="utf-8") as fh:
        reqs = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    assert "pulumi-policy==1.21.0" in reqs
    assert any(r.startswith("pulumi==") for r in reqs)


def test_pack_served_over_grpc_like_the_cli_runs_it():
    """Start the pack exactly as the CLI's python analyzer does (python -m pulumi.policy
    <engine> <dir>), then query it over the analyzer gRPC protocol."""
    grpc = pytest.importorskip("grpc")
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", POLICY_DIR],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit(), (line, proc.stderr.read().decode() if proc.poll() is not None else "")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)

        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
        assert info.name == "mlflow-platform-baseline"
        assert {p.name for p in info.policies} == EXPECTED_POLICIES
        assert all(p.enforcementLevel == analyzer_pb2.MANDATORY for p in info.policies)

        def analyze(resource_type, props, name, stack="dev", protect=False):
            st = struct_pb2.Struct()
            st.update(props)
            return stub.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=resource_type,
                    properties=st,
                    name=name,
                    urn=f"urn:pulumi:{stack}::mlflow-platform::{resource_type}::{name}",
                    options=analyzer_pb2.AnalyzerResourceOptions(protect=protect),
                ),
                timeout=20,
            )

        ok = analyze(DEPLOYMENT, wrap(DEPLOYMENT, good_pod_spec()), "mlflow")
        assert list(ok.diagnostics) == []

        bad_spec = good_pod_spec()
        container(bad_spec)["image"] = "mlflow"
        container(bad_spec)["env"].append({"name": "API_TOKEN", "value": UNKNOWN_STRING})
        bad = analyze(DEPLOYMENT, wrap(DEPLOYMENT, bad_spec), "mlflow")
        by_policy = {}
        for d in bad.diagnostics:
            by_policy.setdefault(d.policyName, []).append(d)
        assert set(by_policy) == {"pinned-images", "no-plaintext-secrets-in-env"}
        assert all(d.enforcementLevel == analyzer_pb2.MANDATORY for d in bad.diagnostics)

        # The engine's protect option reaches the pack as args.opts.protect.
        minio = wrap(STATEFULSET, good_pod_spec())
        assert [d.policyName for d in analyze(STATEFULSET, minio, "minio", "prod").diagnostics] == [
            "protected-data-in-prod"
        ]
        assert list(analyze(STATEFULSET, minio, "minio", "prod", protect=True).diagnostics) == []

        prov = analyze(PG_PROVIDER, {"host": "db", "sslmode": "disable"}, "pg")
        assert [d.policyName for d in prov.diagnostics] == ["tls-required"]
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
