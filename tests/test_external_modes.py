"""Issue 8, external services: pulumi-postgresql / pulumi-minio against endpoints the runner reaches
by design, nothing in-cluster for the replaced service, and modes that mix freely."""

from pathlib import Path

import pytest

from components.s3_policy import bucket_policy
from tests.stacks import (
    EXTERNAL_CA_FILE,
    EXTERNAL_MINIO,
    EXTERNAL_POSTGRES,
    EXTERNAL_S3,
    MODE_STACKS,
    container,
    env_value,
    mlflow_uri,
    mounted_file,
    plain_leaks,
    pod_of,
    workload,
)
from tools.mock_engine import Secret, evaluate_stack

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL_CA = (ROOT / EXTERNAL_CA_FILE).read_text()
DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
MINIO_TYPES = (
    "minio:index/s3Bucket:S3Bucket",
    "minio:index/iamUser:IamUser",
    "minio:index/iamPolicy:IamPolicy",
    "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
)


@pytest.fixture(scope="module")
def modes():
    return {name: evaluate_stack(stack, config) for name, (stack, config) in MODE_STACKS.items()}


def by_mode(config: dict) -> dict:
    return {"postgres": config.get("postgresMode", "inCluster"), "store": config.get("objectStoreMode", "inCluster")}


def server(ev) -> dict:
    return container(ev, "Deployment", "mlflow-deployment", "mlflow")


def has_cnpg(ev) -> bool:
    return bool(
        ev.k8s("Cluster")
        or ev.k8s("Database")
        or ev.of_type("kubernetes:helm.sh/v3:Release")
        or ev.of_type("mlflow-platform:index:CnpgOperator")
        or ev.of_type("mlflow-platform:index:PostgresCluster")
    )


def has_minio(ev) -> bool:
    names = [o["metadata"]["name"] for kind in ("Job", "Service") for o in ev.k8s(kind)]
    return bool(
        ev.k8s("StatefulSet")
        or any(n.startswith("minio") for n in names)
        or ev.of_type("mlflow-platform:index:MinioStore")
    )


# ------------------------------------------------------------------ every mode, every mix
@pytest.mark.parametrize("name", MODE_STACKS)
def test_each_mode_registers_only_the_services_it_uses(modes, name):
    ev, config = modes[name], MODE_STACKS[name][1]
    mode = by_mode(config)
    types = {r.type for r in ev.registrations}
    assert has_cnpg(ev) is (mode["postgres"] == "inCluster"), name
    assert has_minio(ev) is (mode["store"] == "inCluster"), name
    assert ("pulumi:providers:postgresql" in types) is (mode["postgres"] == "external"), name
    assert ("pulumi:providers:minio" in types) is (mode["store"] == "externalMinio"), name
    assert any(t.startswith("minio:") for t in types) is (mode["store"] == "externalMinio"), name
    assert [s["metadata"]["name"] for s in ev.k8s("Service") if not s["metadata"]["name"].startswith("minio")] == [
        "mlflow"
    ]
    assert not any(s["spec"].get("type", "ClusterIP") != "ClusterIP" for s in ev.k8s("Service"))


@pytest.mark.parametrize("name", MODE_STACKS)
def test_each_mode_keeps_every_secret_out_of_plain_text(modes, name):
    ev, config = modes[name], MODE_STACKS[name][1]
    configured = frozenset(v.value for v in config.values() if isinstance(v, Secret))
    assert configured
    assert plain_leaks(ev, configured) == []


@pytest.mark.parametrize("name", MODE_STACKS)
def test_mlflow_egress_allows_dns_and_exactly_the_data_services_it_uses(modes, name):
    ev, config = modes[name], MODE_STACKS[name][1]
    mode = by_mode(config)
    spec = workload(ev, "NetworkPolicy", "mlflow-egress")["spec"]
    dns, database, store = spec["egress"]
    assert dns == DNS and spec["policyTypes"] == ["Egress"]
    if mode["postgres"] == "external":
        assert database == {"ports": [{"port": config["postgresPort"], "protocol": "TCP"}]}
    else:
        assert database["to"] == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "mlflow-pg"}}}]
    endpoint_port = {"external": 443, "externalMinio": 9443}.get(mode["store"])
    if endpoint_port:
        assert store == {"ports": [{"port": endpoint_port, "protocol": "TCP"}]}
        assert ev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy") and not any(
            p["metadata"]["name"].startswith("minio") for p in ev.k8s("NetworkPolicy")
        )
    else:
        assert store["ports"] == [{"port": 9000, "protocol": "TCP"}] and "podSelector" in store["to"][0]


# ------------------------------------------------------------------ external PostgreSQL
def test_external_postgres_creates_role_and_databases_with_verify_full(modes):
    ev = modes["external-postgres"]
    provider = ev.one("pulumi:providers:postgresql", "postgres-admin-provider")
    inputs = provider.inputs
    assert (inputs["host"], inputs["port"], inputs["username"]) == ("db.example.com", "6432", "rdsadmin")
    assert inputs["sslmode"] == "verify-full" and inputs["sslrootcert"] == EXTERNAL_CA_FILE
    assert not Path(inputs["sslrootcert"]).is_absolute(), "the same state works from any checkout"
    assert (
        inputs["password"] == EXTERNAL_POSTGRES["postgresAdminPassword"].value and "password" in provider.secret_inputs
    )
    role = ev.one("postgresql:index/role:Role", "postgres-mlflow-role")
    assert role.inputs["login"] is True and role.provider.startswith(provider.urn)
    databases = ev.of_type("postgresql:index/database:Database")
    assert sorted(d.inputs["name"] for d in databases) == ["mlflow", "mlflow_auth"]
    assert all(d.inputs["owner"] == role.inputs["name"] and d.provider.startswith(provider.urn) for d in databases)


def test_external_postgres_gives_mlflow_a_verify_full_uri_to_the_host(modes):
    ev = modes["external-postgres"]
    role = ev.one("postgresql:index/role:Role", "postgres-mlflow-role").inputs
    for key, database in (("backend-store-uri", "/mlflow"), ("auth-database-uri", "/mlflow_auth")):
        uri, query = mlflow_uri(ev, key)
        assert (uri.hostname, uri.port, uri.path) == ("db.example.com", 6432, database)
        assert uri.username == role["name"] and uri.password is None
        assert env_value(ev, server(ev), "PGPASSWORD") == role["password"]
        assert query["sslmode"] == ["verify-full"]
    ca = mounted_file(ev, pod_of(ev, "Deployment", "mlflow-deployment"), server(ev), query["sslrootcert"][0])
    assert ca == EXTERNAL_CA
    assert ev.one("kubernetes:core/v1:Secret", "postgres-ca-secret").inputs["stringData"] == {"ca.crt": EXTERNAL_CA}


def test_external_postgres_data_is_protected_in_prod(modes):
    ev = modes["external-both"]
    for reg in ev.of_type("postgresql:index/database:Database") + ev.of_type("minio:index/s3Bucket:S3Bucket"):
        assert reg.protect and reg.retain_on_delete, reg.name
    assert ev.one("minio:index/s3Bucket:S3Bucket", "minio-bucket").inputs["forceDestroy"] is False


# ------------------------------------------------------------------ external object stores
def test_external_s3_uses_the_configured_keys(modes):
    ev = modes["external-s3"]
    assert env_value(ev, server(ev), "MLFLOW_S3_ENDPOINT_URL") == EXTERNAL_S3["s3Endpoint"]
    assert env_value(ev, server(ev), "AWS_DEFAULT_REGION") == "eu-west-1"
    assert env_value(ev, server(ev), "AWS_ACCESS_KEY_ID") == EXTERNAL_S3["s3AccessKey"]
    assert env_value(ev, server(ev), "AWS_SECRET_ACCESS_KEY") == EXTERNAL_S3["s3SecretKey"].value
    assert {"data", "stringData"} <= ev.one("kubernetes:core/v1:Secret", "mlflow-env").secret_outputs
    [store] = [v for k, v in ev.component_outputs.items() if k.endswith("ExternalObjectStore::minio")]
    assert "secret_key" in store[1]
    # No CA configured: the image's public CAs, no bundle override.
    assert not any(e["name"] == "AWS_CA_BUNDLE" for e in server(ev)["env"])
    assert ev.outputs["bucket"] == "mlflow"


def test_external_minio_creates_bucket_user_and_the_bucket_scoped_policy(modes):
    ev = modes["external-minio"]
    provider = ev.one("pulumi:providers:minio", "minio-admin-provider")
    assert provider.inputs["minioServer"] == "minio.example.com:9443"
    assert provider.inputs["minioSsl"] in (True, "true") and provider.inputs.get("minioInsecure") in (
        None,
        False,
        "false",
    )
    assert provider.inputs["minioCacertFile"] == EXTERNAL_CA_FILE
    assert provider.inputs["minioUser"] == EXTERNAL_MINIO["s3AdminUser"] and "minioPassword" in provider.secret_inputs
    for typ in MINIO_TYPES:
        [reg] = ev.of_type(typ)
        assert reg.provider.startswith(provider.urn), typ
    bucket = ev.one(MINIO_TYPES[0], "minio-bucket").inputs["bucket"]
    user = ev.one(MINIO_TYPES[1], "minio-mlflow-user").inputs
    policy = ev.one(MINIO_TYPES[2], "minio-mlflow-policy").inputs
    attachment = ev.one(MINIO_TYPES[3], "minio-mlflow-policy-attachment").inputs
    assert policy["policy"] == bucket_policy(bucket) and bucket == "mlflow"
    assert attachment == {"userName": user["name"], "policyName": policy["name"]}
    assert env_value(ev, server(ev), "AWS_ACCESS_KEY_ID") == user["name"]
    assert env_value(ev, server(ev), "AWS_SECRET_ACCESS_KEY") == user["secret"]
    assert user["secret"] != EXTERNAL_MINIO["s3AdminPassword"].value, "MLflow never holds the admin login"
    pod = pod_of(ev, "Deployment", "mlflow-deployment")
    assert mounted_file(ev, pod, server(ev), env_value(ev, server(ev), "AWS_CA_BUNDLE")) == EXTERNAL_CA
    assert env_value(ev, server(ev), "MLFLOW_S3_ENDPOINT_URL") == EXTERNAL_MINIO["s3Endpoint"]


def test_ephemeral_stacks_let_destroy_empty_an_external_bucket():
    ev = evaluate_stack("pr-5", EXTERNAL_MINIO)
    assert ev.one("minio:index/s3Bucket:S3Bucket", "minio-bucket").inputs["forceDestroy"] is True
    assert not any(r.protect for r in ev.registrations)
