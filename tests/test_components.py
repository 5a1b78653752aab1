"""Each component alone, under the same faithful mocks: its own contract, independent of the stack."""

import json
from urllib.parse import parse_qs, unquote, urlsplit

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.minio_store import MinioStore, MinioStoreArgs, bucket_policy
from components.mlflow_server import MlflowServer, MlflowServerArgs, allowed_hosts, package_values
from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
from components.tls_certificate import TlsCertificate, TlsCertificateArgs
from settings import load_settings
from tests.harness import PROJECT, evaluate


def run_alone(build, stack="dev", config=None):
    """Evaluate a program that builds one component and exports its outputs."""
    def program():
        settings = load_settings(pulumi.Config(PROJECT))
        for name, value in build(settings).items():
            pulumi.export(name, value)
    return evaluate(program, stack=stack, config=config)


def cert(pem):
    return x509.load_pem_x509_certificate(pem.encode())


# ------------------------------------------------------------------ TlsCertificate
def tls_program(**overrides):
    def build(settings):
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
    assert tls_secret["stringData"]["tls.crt"] == ev.outputs["cert"] and tls_secret["stringData"]["ca.crt"] == ev.outputs["ca"]
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
def postgres_program(settings):
    pg = PostgresCluster("db", PostgresClusterArgs(
        namespace="team", stack=settings.stack, settings=settings.postgres, tls=settings.tls,
        client_pod_labels={"app": "client"}, client_ca_path="/ca/pg.crt", cluster_name="teamdb"))
    return {"host": pg.host, "uri": pg.sqlalchemy_uri, "auth_uri": pg.auth_sqlalchemy_uri,
            "password": pg.password, "ca": pg.ca_pem, "user": pg.username, "db": pg.database, "auth_db": pg.auth_database}


def test_postgres_cluster_outputs_a_ready_verify_full_uri():
    ev = run_alone(postgres_program)
    uri = urlsplit(ev.outputs["uri"])
    assert (uri.hostname, uri.port, uri.path) == ("teamdb-rw.team.svc", 5432, "/mlflow")
    assert parse_qs(uri.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/ca/pg.crt"]}
    assert unquote(uri.password) == ev.outputs["password"]
    assert any(ch in ev.outputs["password"] for ch in "!#%&*()-_=+[]{}<>:?@/") or uri.password == ev.outputs["password"]
    assert urlsplit(ev.outputs["auth_uri"]).path == "/mlflow_auth"
    assert {"uri", "auth_uri", "password"} <= ev.secret_outputs and "host" not in ev.secret_outputs
    assert (ev.outputs["user"], ev.outputs["db"], ev.outputs["auth_db"]) == ("mlflow", "mlflow", "mlflow_auth")


def test_postgres_cluster_declares_role_and_databases_through_its_own_provider():
    ev = run_alone(postgres_program)
    provider = ev.one("pulumi:providers:postgresql", "db-admin-provider")
    role = ev.one("postgresql:index/role:Role", "db-mlflow-role")
    assert role.inputs["login"] is True and role.inputs["name"] == "mlflow"
    for name in ("db-mlflow-database", "db-mlflow_auth-database"):
        database = ev.one("postgresql:index/database:Database", name)
        assert database.inputs["owner"] == "mlflow" and database.provider.startswith(provider.urn)
    assert role.provider.startswith(provider.urn)
    assert ev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "db-cluster").urn in provider.dependencies
    assert provider.inputs["username"] == "postgres" and provider.inputs["sslmode"] == "verify-full"


def test_postgres_cluster_sizes_the_cnpg_cluster_from_settings():
    ev = run_alone(postgres_program, config={"postgresInstances": 2, "postgresStorageSize": "5Gi",
                                             "postgresStorageClass": "fast", "installCnpgOperator": False})
    [cluster] = ev.k8s("Cluster")
    spec = cluster["spec"]
    assert (spec["instances"], spec["storage"]) == (2, {"size": "5Gi", "storageClass": "fast"})
    assert spec["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17.5"
    assert spec["enableSuperuserAccess"] is True
    superuser = next(o for o in ev.k8s("Secret") if o["metadata"]["name"] == spec["superuserSecret"]["name"])
    assert superuser["type"] == "kubernetes.io/basic-auth" and superuser["stringData"]["username"] == "postgres"
    assert ev.of_type("kubernetes:helm.sh/v3:Release") == []


# ------------------------------------------------------------------ MinioStore
def minio_program(settings):
    store = MinioStore("s3", MinioStoreArgs(
        namespace="team", stack=settings.stack, settings=settings.minio, tls=settings.tls,
        ingress=settings.ingress, client_pod_labels={"app": "client"}))
    return {"endpoint": store.endpoint_url, "bucket": store.bucket, "access_key": store.access_key,
            "secret_key": store.secret_key, "ca": store.ca_pem}


def test_minio_store_runs_minio_over_tls_with_probes_and_restricted_pods():
    ev = run_alone(minio_program)
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


def test_minio_store_gives_mlflow_a_bucket_scoped_user_not_the_root_key():
    ev = run_alone(minio_program)
    user = ev.one("minio:index/iamUser:IamUser", "s3-mlflow-user")
    policy = json.loads(ev.one("minio:index/iamPolicy:IamPolicy", "s3-mlflow-policy").inputs["policy"])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert resources == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    assert all(a.startswith("s3:") and "*" not in a for a in actions) and "s3:DeleteBucket" not in actions
    attachment = ev.one("minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment", "s3-mlflow-policy-attachment")
    assert attachment.inputs == {"userName": "mlflow", "policyName": "mlflow-mlflow"}
    assert ev.outputs["access_key"] == user.inputs["name"] and ev.outputs["secret_key"] == user.inputs["secret"]
    root = ev.one("random:index/randomPassword:RandomPassword", "s3-root-password").outputs["result"]
    assert root != ev.outputs["secret_key"] and "secret_key" in ev.secret_outputs
    provider = ev.one("pulumi:providers:minio", "s3-admin-provider").inputs
    assert provider["minioSsl"] in (True, "true") and provider["minioPassword"] == root
    assert provider["minioCacertFile"].endswith("s3-ca.crt")


def test_bucket_policy_is_scoped_to_one_bucket():
    assert "arn:aws:s3:::other" not in bucket_policy("mine") and "arn:aws:s3:::mine/*" in bucket_policy("mine")


def test_minio_store_runs_distributed_with_peer_names_in_the_certificate():
    ev = run_alone(minio_program, config={"minioReplicas": 4})
    [sts] = ev.k8s("StatefulSet")
    assert sts["spec"]["replicas"] == 4 and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["template"]["spec"]["containers"][0]["args"][-1] == \
        "https://minio-{0...3}.minio-hl.team.svc:9000/data"
    tls = next(o for o in ev.k8s("Secret") if o["type"] == "kubernetes.io/tls")
    dns = cert(tls["stringData"]["tls.crt"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "*.minio-hl.team.svc" in dns.get_values_for_type(x509.DNSName)


# ------------------------------------------------------------------ MlflowServer
def mlflow_program(settings):
    server = MlflowServer("tracking", MlflowServerArgs(
        namespace="team", settings=settings.mlflow, ingress=settings.ingress, region="eu-west-1",
        backend_store_uri=pulumi.Output.secret("postgresql+psycopg2://u:p%40ss@db:5432/mlflow?sslmode=verify-full"),
        auth_database_uri=pulumi.Output.secret("postgresql+psycopg2://u:p%40ss@db:5432/auth?sslmode=verify-full"),
        postgres_ca_secret_name="pg-ca", s3_endpoint_url="https://s3.team.svc:9000", bucket="artifacts-bucket",
        access_key="mlflow", secret_key=pulumi.Output.secret("s3-secret-key"), minio_ca_secret_name="s3-ca"))
    return {"url": server.tracking_url, "values": server.package_values, "password": server.admin_password}


def test_mlflow_server_runs_restricted_with_probes_resources_and_writable_scratch():
    ev = run_alone(mlflow_program)
    [deployment] = ev.k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert server["command"] == ["mlflow"] and server["args"][server["args"].index("--artifacts-destination") + 1] \
        == "s3://artifacts-bucket/artifacts"
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
    ev = run_alone(mlflow_program, config={"mlflowReplicas": 3})
    [pdb] = ev.k8s("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    [deployment] = ev.k8s("Deployment")
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_mlflow_server_without_auth_has_no_auth_material():
    ev = run_alone(mlflow_program, config={"mlflowAuth": False})
    [deployment] = ev.k8s("Deployment")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--app-name" not in server["args"]
    assert not {"MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD"} & {e["name"] for e in server["env"]}
    [job] = ev.k8s("Job")
    assert [c["name"] for c in job["spec"]["template"]["spec"]["containers"]] == ["upgrade-tracking-db"]


def test_mlflow_server_publishes_https_with_cert_manager():
    ev = run_alone(mlflow_program, config={"ingressClusterIssuer": "letsencrypt", "ingressClassName": "nginx"})
    [ingress] = ev.k8s("Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["hosts"] == ["mlflow-team.localtest.me"]
    assert ev.outputs["url"] == "https://mlflow-team.localtest.me"


def test_auth_config_survives_percent_encoded_passwords():
    ev = run_alone(mlflow_program)
    ini_secret = next(o for o in ev.k8s("Secret") if "basic_auth.ini" in o["stringData"])
    import configparser
    parser = configparser.ConfigParser()
    parser.read_string(ini_secret["stringData"]["basic_auth.ini"])
    assert parser["mlflow"]["database_uri"] == "postgresql+psycopg2://u:p%40ss@db:5432/auth?sslmode=verify-full"


def test_allowed_hosts_and_package_values_helpers():
    hosts = allowed_hosts("ns", "mlflow-ns.example.com")
    assert "mlflow.ns.svc:*" in hosts and "mlflow-ns.example.com" in hosts and "*" not in hosts
    assert package_values({"b": 1, "a": "x"}) == "a: x\nb: 1\n"
