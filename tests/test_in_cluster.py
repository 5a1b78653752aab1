"""Issue 8, default (in-cluster) path: the runner needs only the Kubernetes API.

The operator creates MLflow's role and databases, a Job inside the namespace creates the bucket
and user; nothing is exposed for the runner, no runner-side data provider is registered.
"""

import json
from pathlib import Path

import pytest
from cryptography import x509

from components.s3_policy import bucket_policy
from config import ConfigError
from tests.stacks import (
    DEFAULT_STACKS,
    ancestors,
    container,
    env_value,
    mlflow_uri,
    pod_of,
    pod_secret_values,
    workload,
)
from tools.mock_engine import PROJECT, evaluate_stack

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = {"dev": "dev", "prod": "prod", "pr-42": "pr"}


@pytest.fixture(params=DEFAULT_STACKS)
def stack(request):
    return request.getfixturevalue(FIXTURE[request.param])


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------ nothing for the runner to reach
def test_no_runner_side_data_provider_is_registered(stack):
    types = {r.type for r in stack.registrations}
    data_plane = {
        t
        for t in types
        if t.split(":")[0] in ("postgresql", "minio") or t in ("pulumi:providers:postgresql", "pulumi:providers:minio")
    }
    assert data_plane == set()
    # The only provider is the Kubernetes one (and kubernetes/tls/random resources need nothing else).
    assert {t for t in types if t.startswith("pulumi:providers:")} == {"pulumi:providers:kubernetes"}
    assert {t.split(":")[0] for t in types if not t.startswith(("pulumi:", "mlflow-platform:"))} == {
        "kubernetes",
        "tls",
        "random",
    }


def test_no_service_is_exposed_outside_the_cluster(stack):
    services = stack.k8s("Service")
    assert len(services) >= 3
    assert [s["metadata"]["name"] for s in services if s["spec"].get("type", "ClusterIP") != "ClusterIP"] == []
    assert not any("nodePort" in port for s in services for port in s["spec"]["ports"])
    # MLflow's Ingress is the only one: MinIO has no admin ingress any more.
    assert [i["metadata"]["name"].rsplit("-", 1)[0] for i in stack.k8s("Ingress")] == ["mlflow-ingress"]


def test_no_certificate_carries_an_ip_address(stack):
    certificates = [
        x509.load_pem_x509_certificate(r.outputs["certPem"].encode())
        for r in stack.registrations
        if "certPem" in r.outputs
    ]
    for reg in stack.registrations:
        assert not reg.inputs.get("ipAddresses"), reg.name
    servers = 0
    for cert in certificates:
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca, cert.subject
            continue
        servers += 1
        assert names.get_values_for_type(x509.IPAddress) == [], cert.subject
        assert names.get_values_for_type(x509.DNSName)
    assert servers == 2, "PostgreSQL's and MinIO's server certificates were both inspected"


def test_no_network_policy_admits_by_address(stack):
    policies = stack.k8s("NetworkPolicy")
    assert len(policies) >= 5
    text = json.dumps([p["spec"] for p in policies])
    assert "ipBlock" not in text


def test_postgres_has_no_superuser_access(stack):
    [cluster] = stack.k8s("Cluster")
    assert cluster["spec"]["enableSuperuserAccess"] is False
    assert "superuserSecret" not in cluster["spec"]


# ------------------------------------------------------------------ role and databases
def test_managed_role_and_databases_match_mlflows_uris(stack):
    [cluster] = stack.k8s("Cluster")
    uri, query = mlflow_uri(stack)
    auth_uri, _ = mlflow_uri(stack, "auth-database-uri")
    [role] = cluster["spec"]["managed"]["roles"]
    assert role["name"] == uri.username == auth_uri.username == "mlflow"
    assert role["login"] is True and role.get("ensure", "present") == "present"
    [password_secret] = [s for s in stack.k8s("Secret") if s["metadata"]["name"] == role["passwordSecret"]["name"]]
    assert password_secret["type"] == "kubernetes.io/basic-auth"
    assert password_secret["metadata"]["labels"]["cnpg.io/reload"] == "true"
    credentials = stack.secret_by_name(role["passwordSecret"]["name"])
    assert credentials["username"] == role["name"]
    # The URIs carry no password (they reach argv): MLflow's containers get the role's as PGPASSWORD.
    assert uri.password is None and auth_uri.password is None
    [env_secret] = [s for s in stack.k8s("Secret") if "postgres-password" in (s.get("stringData") or {})]
    assert credentials["password"] == env_secret["stringData"]["postgres-password"]
    assert uri.hostname == f"{cluster['metadata']['name']}-rw.{cluster['metadata']['namespace']}.svc"
    assert query["sslmode"] == ["verify-full"]

    databases = stack.k8s("Database")
    assert sorted(d["spec"]["name"] for d in databases) == sorted([uri.path.lstrip("/"), auth_uri.path.lstrip("/")])
    reclaim = "delete" if stack.stack.startswith("pr-") else "retain"
    for database in databases:
        assert database["apiVersion"] == "postgresql.cnpg.io/v1"
        assert database["spec"]["owner"] == role["name"]
        assert database["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
        assert database["spec"]["ensure"] == "present"
        assert database["spec"]["databaseReclaimPolicy"] == reclaim
        assert database["metadata"]["namespace"] == cluster["metadata"]["namespace"]
        assert database["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.applied}=true"


def test_the_migration_job_waits_for_both_databases(dev):
    migrate = dev.one("kubernetes:batch/v1:Job", "mlflow-migrate")
    upstream = ancestors(dev, migrate.urn)
    for name in ("postgres-mlflow-database", "postgres-mlflow_auth-database"):
        assert dev.one("kubernetes:postgresql.cnpg.io/v1:Database", name).urn in upstream


# ------------------------------------------------------------------ MinIO bootstrap Job
def test_the_bootstrap_job_precedes_the_deployment_but_not_the_migration(stack):
    bootstrap = stack.one("kubernetes:batch/v1:Job", "minio-bootstrap")
    statefulset = stack.one("kubernetes:apps/v1:StatefulSet", "minio-statefulset")
    deployment = stack.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    migrate = stack.one("kubernetes:batch/v1:Job", "mlflow-migrate")
    assert statefulset.urn in ancestors(stack, bootstrap.urn), "MinIO serves before the bootstrap connects"
    assert {bootstrap.urn, migrate.urn} <= ancestors(stack, deployment.urn)
    assert bootstrap.urn not in ancestors(stack, migrate.urn)
    assert statefulset.urn not in ancestors(stack, migrate.urn), "PostgreSQL and MinIO come up independently"
    cluster = stack.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster")
    assert cluster.urn not in ancestors(stack, bootstrap.urn)


def test_the_bootstrap_job_reads_root_credentials_only_from_the_env_file(stack):
    pod = pod_of(stack, "Job", "minio-bootstrap")
    [job] = pod["containers"]
    [root_env] = [s for s in stack.k8s("Secret") if "config.env" in s["stringData"]]
    minio = container(stack, "StatefulSet", "minio", "minio")
    # The same Secret MinIO itself reads, mounted where the script is told to read it.
    config_volumes = [
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == root_env["metadata"]["name"]
    ]
    [volume] = config_volumes
    [mount] = [m for m in job["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env_file = env_value(stack, job, "MINIO_ROOT_ENV_FILE")
    assert env_file == f"{mount['mountPath']}/config.env" == env_value(stack, minio, "MINIO_CONFIG_ENV_FILE")
    root = {
        stack.one("random:index/randomPassword:RandomPassword", f"minio-root-{p}").outputs["result"]
        for p in ("user", "password")
    }
    plain = [e["value"] for e in job["env"] if "value" in e]
    assert not any(r in v for r in root for v in plain)
    # MLflow's user (the backup user, when backups go to this MinIO, has a Secret of its own).
    refs = [e["valueFrom"]["secretKeyRef"] for e in job["env"] if e["name"] in ("USER_ACCESS_KEY", "USER_SECRET_KEY")]
    assert [(r["key"]) for r in refs] == ["access-key", "secret-key"]
    [user_secret] = {r["name"] for r in refs}
    assert user_secret != root_env["metadata"]["name"]
    assert set(stack.secret_by_name(user_secret)) == {"access-key", "secret-key"}
    assert not any(r in v for r in root for v in stack.secret_by_name(user_secret).values())
    # MLflow gets the user's keys, never the root pair (and never the env file).
    server = container(stack, "Deployment", "mlflow-deployment", "mlflow")
    assert env_value(stack, server, "AWS_ACCESS_KEY_ID") == stack.secret_by_name(user_secret)["access-key"]
    assert env_value(stack, server, "AWS_SECRET_ACCESS_KEY") == stack.secret_by_name(user_secret)["secret-key"]
    for kind, name in (("Deployment", "mlflow-deployment"), ("Job", "mlflow-migrate")):
        assert not any(r in v for r in root for v in pod_secret_values(stack, pod_of(stack, kind, name)))


def test_the_bootstrap_job_runs_the_committed_script_and_the_bucket_policy(stack):
    pod = pod_of(stack, "Job", "minio-bootstrap")
    [job] = pod["containers"]
    bucket = env_value(stack, job, "BUCKET")
    assert bucket == stack.outputs["bucket"] == "mlflow"
    files = next(v for v in pod["volumes"] if "configMap" in v)
    [config_map] = [c for c in stack.k8s("ConfigMap") if c["metadata"]["name"] == files["configMap"]["name"]]
    assert config_map["data"]["policy.json"] == bucket_policy(bucket)
    assert config_map["data"]["bootstrap.sh"] == (ROOT / "components" / "minio_bootstrap.sh").read_text()
    [mount] = [m for m in job["volumeMounts"] if m["name"] == files["name"]]
    assert env_value(stack, job, "POLICY_FILE") == f"{mount['mountPath']}/policy.json"
    assert job["command"][-1] == f"{mount['mountPath']}/bootstrap.sh"
    # The pinned MinIO image (which ships mc), restricted like every other pod.
    assert job["image"] == container(stack, "StatefulSet", "minio", "minio")["image"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert job["securityContext"]["allowPrivilegeEscalation"] is False
    ca = next(v for v in pod["volumes"] if v["name"] == "ca")["secret"]["secretName"]
    assert stack.secret_by_name(ca) == {"ca.crt": stack.secret_by_name(ca)["ca.crt"]}, "the CA, not the server key"
    assert env_value(stack, job, "MINIO_ENDPOINT") == f"minio.{stack.outputs['namespace']}.svc:9000"


# ------------------------------------------------------------------ egress
def egress_of(ev, name_prefix: str) -> dict:
    return workload(ev, "NetworkPolicy", name_prefix)["spec"]


DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def test_mlflow_pods_reach_dns_postgres_and_minio_only(stack):
    spec = egress_of(stack, "mlflow-egress")
    assert spec["policyTypes"] == ["Egress"]
    for kind, name in (("Deployment", "mlflow-deployment"), ("Job", "mlflow-migrate")):
        labels = workload(stack, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert matches(spec["podSelector"]["matchLabels"], labels), name
    dns, postgres, minio = spec["egress"]
    assert dns == DNS
    [cluster] = stack.k8s("Cluster")
    assert postgres == {
        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster["metadata"]["name"]}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    minio_labels = workload(stack, "StatefulSet", "minio")["spec"]["template"]["metadata"]["labels"]
    [peer] = minio["to"]
    assert matches(peer["podSelector"]["matchLabels"], minio_labels)
    assert minio["ports"] == [{"port": 9000, "protocol": "TCP"}]


def test_the_bootstrap_job_reaches_dns_and_minio_only(stack):
    spec = egress_of(stack, "minio-bootstrap-egress")
    labels = workload(stack, "Job", "minio-bootstrap")["spec"]["template"]["metadata"]["labels"]
    assert spec["policyTypes"] == ["Egress"] and matches(spec["podSelector"]["matchLabels"], labels)
    assert not matches(
        spec["podSelector"]["matchLabels"],
        workload(stack, "StatefulSet", "minio")["spec"]["template"]["metadata"]["labels"],
    )
    dns, minio = spec["egress"]
    assert dns == DNS
    minio_labels = workload(stack, "StatefulSet", "minio")["spec"]["template"]["metadata"]["labels"]
    assert matches(minio["to"][0]["podSelector"]["matchLabels"], minio_labels) and len(minio["to"]) == 1
    assert minio["ports"] == [{"port": 9000, "protocol": "TCP"}]


# ------------------------------------------------------------------ data safety
def test_minio_volumes_are_kept_except_in_pr_stacks(stack):
    [statefulset] = stack.k8s("StatefulSet")
    policy = "Delete" if stack.stack.startswith("pr-") else "Retain"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": policy, "whenScaled": policy}
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_prod_protects_the_cluster_databases_statefulset_and_namespace(prod, dev):
    names = (
        "postgres-cluster",
        "postgres-mlflow-database",
        "postgres-mlflow_auth-database",
        "minio-statefulset",
        "platform-namespace",
    )
    for name in names:
        [reg] = [r for r in prod.registrations if r.name == name and r.custom]
        assert reg.protect and reg.retain_on_delete, name
        [unprotected] = [r for r in dev.registrations if r.name == name and r.custom]
        assert not unprotected.protect, name


@pytest.mark.parametrize(
    "change, key",
    [
        ({"minioStorageSize": "5Gi"}, "minioStorageSize"),
        ({"minioReplicas": 4}, "minioReplicas"),
        ({"postgresStorageSize": "500Mi"}, "postgresStorageSize"),
        ({"postgresStorageClass": "fast"}, "postgresStorageClass"),
        ({"bucket": "other-bucket"}, "bucket"),
    ],
)
def test_a_change_that_would_lose_data_is_refused_at_preview(change, key):
    state: dict = {}
    evaluate_stack("dev", state=state)  # the last deployment, as its checkpoint records it
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", change, state=state, preview=True)
    message = str(raised.value)
    assert f"{PROJECT}:{key} changed from " in message and "Fix: " in message and "allowStorageLayoutChange" in message
    # Refused before anything of the stack's namespace: only the (already owned) operator was registered.
    touched = {r.name for r in raised.value.registrations if r.custom and r.type.startswith("kubernetes:")}
    assert touched <= {"cnpg-operator-namespace", "cnpg-operator-release"}
    # The documented manual path ends with one acknowledged update.
    evaluate_stack("dev", {**change, "allowStorageLayoutChange": True}, state=state, preview=True)


def test_safe_storage_changes_and_ephemeral_stacks_pass_the_layout_check():
    state: dict = {}
    evaluate_stack("dev", state=state)
    evaluate_stack("dev", {"postgresStorageSize": "5Gi", "mlflowReplicas": 2}, state=state)  # CNPG grows in place
    pr_state: dict = {}
    evaluate_stack("pr-3", state=pr_state)
    evaluate_stack("pr-3", {"minioStorageSize": "2Gi"}, state=pr_state)
