"""Each component alone, under the same faithful mocks: its own contract, independent of the stack.

Components take flat, Input-typed Args and never read the stack configuration: each test builds one
from literal values (and Outputs), as another program reusing it would.
"""

import ast
import configparser
import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.cnpg_operator import CnpgOperator, CnpgOperatorArgs
from components.external_object_store import ExternalObjectStore, ExternalObjectStoreArgs
from components.external_postgres import ExternalPostgres, ExternalPostgresArgs
from components.minio_store import MinioStore, MinioStoreArgs
from components.mlflow_server import MlflowServer, MlflowServerArgs, allowed_hosts
from components.package_values import package_values, render, uri_with_password
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
from components.publishing import Publication
from components.s3_policy import bucket_policy
from components.tls_certificate import TlsCertificate, TlsCertificateArgs
from tests.stacks import parse_python
from tools.mock_engine import evaluate

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
CA_PEM = (Path(__file__).resolve().parent / "fixtures" / "external-ca.pem").read_text()


def run_alone(build):
    """Evaluate a program that builds one component and exports its outputs."""

    def program():
        for name, value in build().items():
            pulumi.export(name, value)

    return evaluate(program)


def cert(pem):
    return x509.load_pem_x509_certificate(pem.encode())


def test_components_do_not_read_the_stack_configuration():
    """Reusable components: wiring.py maps the configuration model onto their Args; they never import the
    program's own modules (config, wiring, sizing, safety) nor read stack config."""
    for path in sorted(COMPONENTS.glob("*.py")):
        tree = parse_python(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names} | {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        program = {"config", "wiring", "sizing", "safety", "settings"}
        assert not {m.split(".")[0] for m in imported} & program, path.name
        assert "pulumi.Config" not in path.read_text(), path.name


# ------------------------------------------------------------------ TlsCertificate
def tls_program(**overrides):
    def build():
        args = dict(namespace="ns", common_name="db", dns_names=["db", "db.ns.svc"], ip_addresses=["192.0.2.7"])
        args.update(overrides)
        c = TlsCertificate("db-tls", TlsCertificateArgs(**args))
        return {"ca": c.ca_pem, "cert": c.cert_pem, "secret": c.secret_name, "ca_secret": c.ca_secret_name}

    return build


def test_tls_certificate_issues_a_server_certificate_signed_by_its_ca():
    ev = run_alone(tls_program())
    ca, server = cert(ev.outputs["ca"]), cert(ev.outputs["cert"])
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["db", "db.ns.svc"]
    assert [str(i) for i in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey) and server.public_key().curve.name == "secp256r1"
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert 729 <= lifetime.days <= 731
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 5 * 729, "the CA outlives renewals"
    signed = ev.one("tls:index/locallySignedCert:LocallySignedCert", "db-tls-server-cert").inputs
    assert signed["earlyRenewalHours"] == 30 * 24


def test_tls_certificate_publishes_a_tls_secret_and_a_ca_only_secret():
    ev = run_alone(tls_program())
    tls_secret = next(o for o in ev.k8s("Secret") if o["metadata"]["name"] == ev.outputs["secret"])
    ca_secret = next(o for o in ev.k8s("Secret") if o["metadata"]["name"] == ev.outputs["ca_secret"])
    assert tls_secret["type"] == "kubernetes.io/tls"
    assert set(tls_secret["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert (
        tls_secret["stringData"]["tls.crt"] == ev.outputs["cert"]
        and tls_secret["stringData"]["ca.crt"] == ev.outputs["ca"]
    )
    assert ca_secret["stringData"] == {"ca.crt": ev.outputs["ca"]}
    assert "BEGIN PRIVATE KEY" in tls_secret["stringData"]["tls.key"]
    assert not ({"ca", "cert"} & ev.secret_outputs), "certificates are public; only keys are secret"
    assert all(p.parent.endswith("TlsCertificate::db-tls") for p in ev.registrations if p.custom)


def test_tls_certificate_supports_rsa_and_self_signed():
    ev = run_alone(tls_program(algorithm="RSA", self_signed=True))
    server = cert(ev.outputs["cert"])
    assert isinstance(server.public_key(), rsa.RSAPublicKey) and server.public_key().key_size == 2048
    assert ev.outputs["ca"] == ev.outputs["cert"]
    server.verify_directly_issued_by(server)
    assert ev.of_type("tls:index/locallySignedCert:LocallySignedCert") == []


# ------------------------------------------------------------------ PostgresCluster
def postgres_program(**overrides):
    def build():
        args = dict(
            namespace="team",
            instances=1,
            image="ghcr.io/cloudnative-pg/postgresql:17.5",
            storage_size="1Gi",
            resources=RESOURCES,
            client_pod_labels={"app": "client"},
            client_ca_path="/ca/pg.crt",
            cluster_name="teamdb",
            operator_namespace="operators",
        )
        args.update(overrides)
        pg = PostgresCluster("db", PostgresClusterArgs(**args))
        return {
            "host": pg.host,
            "uri": pg.sqlalchemy_uri,
            "auth_uri": pg.auth_sqlalchemy_uri,
            "egress": pg.client_egress,
            "password": pg.password,
            "ca": pg.ca_pem,
            "user": pg.username,
            "db": pg.database,
            "auth_db": pg.auth_database,
            "pod_selector": pg.pod_selector,
        }

    return build


def test_postgres_cluster_outputs_a_ready_verify_full_uri():
    ev = run_alone(postgres_program())
    uri = urlsplit(ev.outputs["uri"])
    assert (uri.hostname, uri.port, uri.path) == ("teamdb-rw.team.svc", 5432, "/mlflow")
    assert parse_qs(uri.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/ca/pg.crt"]}
    # No password in the URI (it reaches argv): clients get it apart, for libpq's PGPASSWORD.
    assert uri.password is None and uri.username == "mlflow"
    assert any(ch in ev.outputs["password"] for ch in "!#%&*()-_=+[]{}<>:?@/")
    assert urlsplit(ev.outputs["auth_uri"]).path == "/mlflow_auth"
    assert {"uri", "auth_uri", "password"} <= ev.secret_outputs and "host" not in ev.secret_outputs
    assert (ev.outputs["user"], ev.outputs["db"], ev.outputs["auth_db"]) == ("mlflow", "mlflow", "mlflow_auth")
    assert ev.outputs["egress"] == {
        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "teamdb"}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    # Its pods, for whoever selects them (monitors): the named Cluster's instances.
    assert ev.outputs["pod_selector"] == {"cnpg.io/cluster": "teamdb"}


def test_postgres_cluster_declares_role_and_databases_for_the_operator():
    ev = run_alone(postgres_program())
    assert [r.type for r in ev.registrations if r.type.startswith(("postgresql:", "pulumi:providers:"))] == []
    [cluster] = ev.k8s("Cluster")
    [role] = cluster["spec"]["managed"]["roles"]
    assert (role["name"], role["login"], role["ensure"]) == ("mlflow", True, "present")
    assert ev.secret_by_name(role["passwordSecret"]["name"]) == {
        "username": "mlflow",
        "password": ev.outputs["password"],
    }
    databases = {d["metadata"]["name"]: d["spec"] for d in ev.k8s("Database")}
    assert set(databases) == {"teamdb-mlflow", "teamdb-mlflow-auth"}
    assert sorted(d["name"] for d in databases.values()) == ["mlflow", "mlflow_auth"]
    for spec in databases.values():
        assert spec["owner"] == "mlflow" and spec["cluster"] == {"name": "teamdb"}
        assert spec["databaseReclaimPolicy"] == "retain"
    assert not any(r.protect for r in ev.registrations)
    ephemeral = run_alone(postgres_program(ephemeral=True))
    assert {d["spec"]["databaseReclaimPolicy"] for d in ephemeral.k8s("Database")} == {"delete"}
    protected = run_alone(postgres_program(protect_data=True))
    assert {r.name for r in protected.registrations if r.protect and r.retain_on_delete} == {
        "db-cluster",
        "db-mlflow-database",
        "db-mlflow_auth-database",
    }


def test_postgres_cluster_admits_clients_its_instances_and_the_operator():
    ev = run_alone(postgres_program())
    [policy] = ev.k8s("NetworkPolicy")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert peers == [
        {"podSelector": {"matchLabels": {"app": "client"}}},
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": "teamdb"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "operators"}}},
    ]


def test_postgres_cluster_sizes_the_cnpg_cluster_from_its_args():
    ev = run_alone(postgres_program(instances=2, storage_size="5Gi", storage_class="fast"))
    [cluster] = ev.k8s("Cluster")
    spec = cluster["spec"]
    assert (spec["instances"], spec["storage"]) == (2, {"size": "5Gi", "storageClass": "fast"})
    assert spec["resources"] == RESOURCES
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17.5"
    assert spec["enableSuperuserAccess"] is False and "superuserSecret" not in spec
    assert ev.of_type("kubernetes:helm.sh/v3:Release") == []


# ------------------------------------------------------------------ ExternalPostgres
def external_postgres_program():
    pg = ExternalPostgres(
        "db",
        ExternalPostgresArgs(
            namespace="team",
            host="db.example.com",
            port=6432,
            admin_user="root",
            admin_password=pulumi.Output.secret("admin-pw"),
            ca_file="certs/db.pem",
            ca_pem=CA_PEM,
            client_ca_path="/ca/pg.crt",
            protect_data=True,
        ),
    )
    return {
        "uri": pg.sqlalchemy_uri,
        "password": pg.password,
        "egress": pg.client_egress,
        "ca_secret": pg.ca_secret_name,
    }


def test_external_postgres_creates_the_role_and_databases_over_verify_full():
    ev = run_alone(external_postgres_program)
    provider = ev.one("pulumi:providers:postgresql", "db-admin-provider")
    assert provider.inputs["sslmode"] == "verify-full" and provider.inputs["sslrootcert"] == "certs/db.pem"
    assert "password" in provider.secret_inputs
    role = ev.one("postgresql:index/role:Role", "db-mlflow-role")
    assert role.inputs["password"] == ev.outputs["password"] and "password" in role.secret_inputs
    for name in ("db-mlflow-database", "db-mlflow_auth-database"):
        database = ev.one("postgresql:index/database:Database", name)
        assert database.inputs["owner"] == "mlflow" and database.provider.startswith(provider.urn)
        assert database.protect and database.retain_on_delete
    uri = urlsplit(ev.outputs["uri"])
    assert (uri.hostname, uri.port, uri.username, uri.password) == ("db.example.com", 6432, "mlflow", None)
    assert ev.outputs["egress"] == {"ports": [{"port": 6432, "protocol": "TCP"}]}
    assert ev.secret_by_name(ev.outputs["ca_secret"]) == {"ca.crt": CA_PEM}
    assert ev.k8s("Cluster") == [] and ev.k8s("Database") == []


# ------------------------------------------------------------------ MinioStore
def minio_program(**overrides):
    def build():
        args = dict(
            namespace="team",
            image="quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
            replicas=1,
            storage_size="2Gi",
            resources=RESOURCES,
            bucket="artifacts",
            region="eu-west-1",
            client_pod_labels={"app": "client"},
        )
        args.update(overrides)
        store = MinioStore("s3", MinioStoreArgs(**args))
        return {
            "endpoint": store.endpoint_url,
            "bucket": store.bucket,
            "access_key": store.access_key,
            "secret_key": store.secret_key,
            "ca": store.ca_pem,
            "egress": store.client_egress,
            "pod_selector": store.pod_selector,
        }

    return build


def test_minio_store_runs_minio_over_tls_with_probes_and_restricted_pods():
    ev = run_alone(minio_program())
    [sts] = ev.k8s("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    [minio] = pod["containers"]
    assert minio["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert minio["args"] == ["server", "--address", ":9000", "--certs-dir", "/etc/minio/certs", "/data"]
    assert minio["readinessProbe"]["httpGet"] == {"path": "/minio/health/ready", "scheme": "HTTPS", "port": 9000}
    assert minio["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    certs = next(v for v in pod["volumes"] if v["name"] == "certs")["secret"]["items"]
    assert {i["path"] for i in certs} == {"public.crt", "private.key", "CAs/ca.crt"}
    assert not any("valueFrom" in e for e in minio["env"]), "root credentials come from a mounted env file"
    assert minio["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"] is True
    endpoint = urlsplit(ev.outputs["endpoint"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("https", "minio.team.svc", 9000)
    tls = next(o for o in ev.k8s("Secret") if o["type"] == "kubernetes.io/tls")
    dns = cert(tls["stringData"]["tls.crt"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "minio.team.svc" in dns.get_values_for_type(x509.DNSName)
    assert dns.get_values_for_type(x509.IPAddress) == []
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["spec"]["selector"]["matchLabels"] == ev.outputs["pod_selector"]


def test_minio_store_gives_mlflow_a_bucket_scoped_user_not_the_root_key():
    ev = run_alone(minio_program())
    assert [r.type for r in ev.registrations if r.type.startswith(("minio:", "pulumi:providers:"))] == []
    [job] = ev.k8s("Job")
    [bootstrap] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in bootstrap["env"]}
    assert (env["BUCKET"], env["REGION"], env["POLICY_NAME"]) == ("artifacts", "eu-west-1", "mlflow-artifacts")
    [files] = [c for c in ev.k8s("ConfigMap") if c["metadata"]["name"].startswith("s3-bootstrap")]
    policy = json.loads(files["data"]["policy.json"])
    assert files["data"]["policy.json"] == bucket_policy("artifacts")
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert resources == {"arn:aws:s3:::artifacts", "arn:aws:s3:::artifacts/*"}
    assert all(a.startswith("s3:") and "*" not in a for a in actions) and "s3:DeleteBucket" not in actions
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in bootstrap["env"] if "valueFrom" in e}
    user = ev.secret_by_name(refs["USER_ACCESS_KEY"]["name"])
    assert (ev.outputs["access_key"], ev.outputs["secret_key"]) == (user["access-key"], user["secret-key"])
    root = ev.one("random:index/randomPassword:RandomPassword", "s3-root-password").outputs["result"]
    assert root != ev.outputs["secret_key"] and "secret_key" in ev.secret_outputs
    assert ev.outputs["bucket"] == "artifacts"
    statefulset = ev.one("kubernetes:apps/v1:StatefulSet", "s3-statefulset")
    assert statefulset.urn in ev.one("kubernetes:batch/v1:Job", "s3-bootstrap").dependencies


def test_bucket_policy_is_scoped_to_one_bucket():
    assert "arn:aws:s3:::other" not in bucket_policy("mine") and "arn:aws:s3:::mine/*" in bucket_policy("mine")


def test_minio_store_runs_distributed_with_peer_names_in_the_certificate():
    ev = run_alone(minio_program(replicas=4))
    [sts] = ev.k8s("StatefulSet")
    assert sts["spec"]["replicas"] == 4 and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert (
        sts["spec"]["template"]["spec"]["containers"][0]["args"][-1]
        == "https://minio-{0...3}.minio-hl.team.svc:9000/data"
    )
    tls = next(o for o in ev.k8s("Secret") if o["type"] == "kubernetes.io/tls")
    dns = cert(tls["stringData"]["tls.crt"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "*.minio-hl.team.svc" in dns.get_values_for_type(x509.DNSName)


def test_ephemeral_and_protected_minio_stores():
    ephemeral = run_alone(minio_program(ephemeral=True))
    [sts] = ephemeral.k8s("StatefulSet")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Delete"}
    protected = run_alone(minio_program(protect_data=True))
    assert {r.name for r in protected.registrations if r.protect and r.retain_on_delete} == {"s3-statefulset"}


# ------------------------------------------------------------------ ExternalObjectStore
def external_store_program(**overrides):
    def build():
        args = dict(namespace="team", endpoint="https://s3.example.com:8443/", bucket="artifacts", region="eu-west-1")
        args.update(overrides)
        store = ExternalObjectStore("s3", ExternalObjectStoreArgs(**args))
        outputs = {
            "endpoint": store.endpoint_url,
            "bucket": store.bucket,
            "access_key": store.access_key,
            "secret_key": store.secret_key,
            "egress": store.client_egress,
        }
        if store.ca_secret_name is not None:
            outputs["ca_secret"] = store.ca_secret_name
        return outputs

    return build


def test_external_object_store_passes_given_credentials_through():
    ev = run_alone(external_store_program(access_key="AKIA", secret_key=pulumi.Output.secret("given-secret")))
    assert (ev.outputs["access_key"], ev.outputs["secret_key"]) == ("AKIA", "given-secret")
    assert {"secret_key"} <= ev.secret_outputs
    assert ev.outputs["endpoint"] == "https://s3.example.com:8443"
    assert ev.outputs["egress"] == {"ports": [{"port": 8443, "protocol": "TCP"}]}
    assert "ca_secret" not in ev.outputs and ev.k8s("Secret") == []
    assert [r.type for r in ev.registrations if r.custom] == []


def test_external_object_store_creates_a_scoped_user_with_minio_admin_credentials():
    ev = run_alone(
        external_store_program(
            admin_user="root",
            admin_password=pulumi.Output.secret("admin-pw"),
            ca_file="certs/s3.pem",
            ca_pem=CA_PEM,
            ephemeral=True,
        )
    )
    provider = ev.one("pulumi:providers:minio", "s3-admin-provider").inputs
    assert provider["minioServer"] == "s3.example.com:8443" and provider["minioCacertFile"] == "certs/s3.pem"
    bucket = ev.one("minio:index/s3Bucket:S3Bucket", "s3-bucket").inputs
    assert bucket["bucket"] == "artifacts" and bucket["forceDestroy"] is True
    user = ev.one("minio:index/iamUser:IamUser", "s3-mlflow-user").inputs
    assert ev.one("minio:index/iamPolicy:IamPolicy", "s3-mlflow-policy").inputs["policy"] == bucket_policy("artifacts")
    attachment = ev.one("minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment", "s3-mlflow-policy-attachment")
    assert attachment.inputs == {"userName": "mlflow", "policyName": "mlflow-artifacts"}
    assert (ev.outputs["access_key"], ev.outputs["secret_key"]) == (user["name"], user["secret"])
    assert ev.secret_by_name(ev.outputs["ca_secret"]) == {"ca.crt": CA_PEM}


# ------------------------------------------------------------------ CnpgOperator
def test_cnpg_operator_owns_a_fixed_namespace_and_release():
    def build():
        operator = CnpgOperator(
            "op", CnpgOperatorArgs(chart_version="0.29.0", namespace="cnpg-system", owner="mlflow-platform.cluster")
        )
        return {"namespace": operator.namespace, "version": operator.version}

    ev = run_alone(build)
    namespace = ev.one("kubernetes:core/v1:Namespace", "op-namespace")
    release = ev.one("kubernetes:helm.sh/v3:Release", "op-release")
    assert namespace.inputs["metadata"]["name"] == "cnpg-system"
    assert namespace.inputs["metadata"]["labels"]["mlflow-platform/cluster-services-owner"] == "mlflow-platform.cluster"
    assert (release.inputs["name"], release.inputs["namespace"]) == ("cnpg", "cnpg-system")
    # Its owner is the cluster stack alone: destroying that stack removes it (the chart keeps the CRDs).
    assert not namespace.retain_on_delete and not release.retain_on_delete
    assert namespace.urn in release.dependencies
    # The outputs come from the release: whoever uses them waits for the operator.
    assert ev.outputs == {"namespace": "cnpg-system", "version": "1.30.0"}


# ------------------------------------------------------------------ MlflowServer
DB_EGRESS = {"to": [{"podSelector": {"matchLabels": {"db": "yes"}}}], "ports": [{"port": 5432, "protocol": "TCP"}]}
S3_EGRESS = {"ports": [{"port": 443, "protocol": "TCP"}]}


def mlflow_program(**overrides):
    def build():
        args = dict(
            namespace="team",
            version="3.17.2",
            image="ghcr.io/mlflow/mlflow:v3.17.2-full",
            region="eu-west-1",
            resources=RESOURCES,
            publication=Publication(domain="localtest.me"),
            backend_store_uri=pulumi.Output.secret("postgresql+psycopg2://u@db:5432/mlflow?sslmode=verify-full"),
            auth_database_uri=pulumi.Output.secret("postgresql+psycopg2://u@db:5432/auth?sslmode=verify-full"),
            database_password=pulumi.Output.secret("p@ss"),
            postgres_ca_secret_name="pg-ca",
            s3_endpoint_url="https://s3.team.svc:9000",
            bucket="artifacts-bucket",
            access_key="mlflow",
            secret_key=pulumi.Output.secret("s3-secret-key"),
            object_store_ca_secret_name="s3-ca",
            database_egress=DB_EGRESS,
            object_store_egress=pulumi.Output.from_input(S3_EGRESS),
        )
        args.update(overrides)
        server = MlflowServer("tracking", MlflowServerArgs(**args))
        database = SimpleNamespace(sqlalchemy_uri=args["backend_store_uri"], password=args["database_password"])
        store = SimpleNamespace(
            bucket=pulumi.Output.from_input(args["bucket"]),
            access_key=pulumi.Output.from_input(args["access_key"]),
            secret_key=args["secret_key"],
        )
        values = package_values(server, database, store, args["version"], args["region"], args["publication"].domain)
        return {
            "url": server.tracking_url,
            "values": values,
            "password": server.admin_password,
            "pod_selector": server.pod_selector,
        }

    return build


def test_mlflow_server_runs_restricted_with_probes_resources_and_writable_scratch():
    ev = run_alone(mlflow_program())
    [deployment] = ev.k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert (
        server["command"] == ["mlflow"]
        and server["args"][server["args"].index("--artifacts-destination") + 1] == "s3://artifacts-bucket/artifacts"
    )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"
    assert set(server["resources"]) == {"requests", "limits"}
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert {"/tmp", "/home/mlflow", "/dev/shm"} <= mounts
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HOME"] == "/home/mlflow" and env["TMPDIR"] == "/tmp" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert pod["securityContext"]["runAsUser"] != 0 and pod["automountServiceAccountToken"] is False
    assert ev.k8s("PodDisruptionBudget") == []


def test_mlflow_server_adds_a_pdb_and_spreads_replicas_when_ha():
    ev = run_alone(mlflow_program(replicas=3))
    [pdb] = ev.k8s("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    [deployment] = ev.k8s("Deployment")
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_mlflow_server_without_auth_has_no_auth_material():
    ev = run_alone(mlflow_program(auth=False))
    [deployment] = ev.k8s("Deployment")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--app-name" not in server["args"]
    assert not {"MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD"} & {e["name"] for e in server["env"]}
    [job] = ev.k8s("Job")
    assert [c["name"] for c in job["spec"]["template"]["spec"]["containers"]] == ["upgrade-tracking-db"]


def test_mlflow_server_publishes_https_with_cert_manager():
    ev = run_alone(
        mlflow_program(
            publication=Publication(
                domain="localtest.me", ingress_cluster_issuer="letsencrypt", ingress_class_name="nginx"
            )
        )
    )
    [ingress] = ev.k8s("Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["hosts"] == ["mlflow-team.localtest.me"]
    assert ev.outputs["url"] == "https://mlflow-team.localtest.me"


def test_auth_config_survives_percent_encoded_uris():
    uri = "postgresql+psycopg2://u%2Bteam@db:5432/auth?sslmode=verify-full&sslrootcert=/ca/my%20ca.crt"
    ev = run_alone(mlflow_program(auth_database_uri=pulumi.Output.secret(uri)))
    ini_secret = next(o for o in ev.k8s("Secret") if "basic_auth.ini" in o["stringData"])
    parser = configparser.ConfigParser()
    parser.read_string(ini_secret["stringData"]["basic_auth.ini"])
    assert parser["mlflow"]["database_uri"] == uri


def test_allowed_hosts_and_package_values_helpers():
    hosts = allowed_hosts("ns", "mlflow-ns.example.com")
    assert "mlflow.ns.svc:*" in hosts and "mlflow-ns.example.com" in hosts and "*" not in hosts
    assert render({"b": 1, "a": "x"}) == "a: x\nb: 1\n"
    assert uri_with_password("postgresql://u@db:5432/m", "p@ss") == "postgresql://u:p%40ss@db:5432/m"


def test_package_values_are_secret_and_follow_the_server():
    ev = run_alone(mlflow_program())
    assert "values" in ev.secret_outputs
    values = yaml.safe_load(ev.outputs["values"])
    assert values["artifact_store"] == "https://s3.team.svc:9000" and values["bucket"] == "artifacts-bucket"
    assert values["backing_store"] == "postgresql+psycopg2://u:p%40ss@db:5432/mlflow?sslmode=verify-full"
    assert (values["version"], values["region"], values["ingress_fqdn"]) == (
        "3.17.2",
        "eu-west-1",
        "mlflow-team.localtest.me",
    )
    [deployment] = ev.k8s("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == ev.outputs["pod_selector"]


def test_mlflow_server_egress_allows_dns_and_the_given_data_services_only():
    ev = run_alone(mlflow_program())
    [egress] = [p for p in ev.k8s("NetworkPolicy") if p["spec"]["policyTypes"] == ["Egress"]]
    assert egress["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}
    assert egress["spec"]["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        DB_EGRESS,
        S3_EGRESS,
    ]
    for workload in ev.k8s("Deployment") + ev.k8s("Job"):
        assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "mlflow"


def test_mlflow_server_trusts_public_cas_when_the_object_store_has_none():
    with_ca = run_alone(mlflow_program())
    [server] = with_ca.k8s("Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert {"name": "AWS_CA_BUNDLE", "value": "/etc/mlflow/ca/object-store-ca.crt"} in server["env"]
    ev = run_alone(mlflow_program(object_store_ca_secret_name=None))
    [deployment] = ev.k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert not any(e["name"] == "AWS_CA_BUNDLE" for e in pod["containers"][0]["env"])
    [ca] = [v for v in pod["volumes"] if v["name"] == "ca"]
    assert [s["secret"]["name"] for s in ca["projected"]["sources"]] == ["pg-ca"]


def test_mlflow_server_pool_keeps_connections_without_raising_the_peak():
    from importlib.util import find_spec

    ev = run_alone(mlflow_program())
    [server] = ev.k8s("Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    size, overflow = int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]), int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"])
    # Kept: enough for one worker's 8 concurrent clients; at most: SQLAlchemy's default 5 + 10.
    assert size >= 8 and size + overflow == 15
    # Names MLflow reads (mlflow/store/db/utils.py create_sqlalchemy_engine), from the installed source.
    spec = find_spec("mlflow")
    assert spec is not None and spec.origin is not None
    known = (Path(spec.origin).parent / "environment_variables.py").read_text()
    assert all(
        f'"{name}"' in known for name in ("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW")
    )
    # One-shot containers (migrations) keep MLflow's defaults.
    [job] = ev.k8s("Job")
    pod = job["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert not any(e["name"].startswith("MLFLOW_SQLALCHEMYSTORE_") for e in container["env"])
