"""Self-test of the integration helpers: a hand-made (but stack-shaped) MLflow container spec is
run for real against TLS-only PostgreSQL and the real MinIO over HTTPS, and a "laptop" client that can
only resolve the ingress name uses it with basic-auth credentials."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from types import SimpleNamespace

import pytest

from components.s3_policy import bucket_policy
from tools.loopback import services as svc

from .pki import CertificateAuthority

pytestmark = pytest.mark.integration

NS = "mlflow-dev"
PG_RW = f"mlflow-pg-rw.{NS}.svc"
PG_NOT_IN_SAN = f"mlflow-pg-ro.{NS}.svc"
MINIO = f"minio.{NS}.svc.cluster.local"
MLFLOW_SVC = f"mlflow.{NS}.svc"
INGRESS = "mlflow.dev.example.test"
BUCKET = "mlflow-artifacts"
ADMIN_USER = "admin"
SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")
ADMIN_PASSWORD = "Adm1n-integration-pw"
DB_PASSWORD = "db-pw-with-some-length"

# The container spec is what the Pulumi program is expected to render (shape-wise): secrets via
# secretKeyRef, files via volumes, in-cluster DNS names in every URI, pod-style 0.0.0.0 binding.
PG_CA = "/etc/mlflow/pg-ca/ca.crt"
BACKEND_URI = f"postgresql+psycopg2://mlflow@{PG_RW}:5432/mlflow?sslmode=verify-full&sslrootcert={PG_CA}"
AUTH_DB_URI = f"postgresql+psycopg2://mlflow@{PG_RW}:5432/mlflow_auth?sslmode=verify-full&sslrootcert={PG_CA}"
AUTH_INI = f"""[mlflow]
default_permission = READ
database_uri = {AUTH_DB_URI}
admin_username = {ADMIN_USER}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def _secret(name, data=None, string_data=None):
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}}
    if data:
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    if string_data:
        obj["stringData"] = string_data
    return obj


def _secret_ref(env_name, secret, key):
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _rendered_objects(ca, mlflow_cert):
    """Stand-ins for ev.k8s_objects: base64 `data` and `stringData` Secrets plus a ConfigMap."""
    return [
        _secret("mlflow-db", data={"password": DB_PASSWORD}),
        _secret(
            "mlflow-admin", string_data={"password": ADMIN_PASSWORD, "flask-secret-key": "flask-secret-0123456789"}
        ),
        _secret("mlflow-s3", data={"accessKey": "mlflow", "secretKey": "mlflow-s3-secret-key"}),
        _secret("mlflow-tls", data={"tls.crt": mlflow_cert.cert_pem, "tls.key": mlflow_cert.key_pem}),
        _secret("platform-ca", string_data={"ca.crt": ca.cert_pem}),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "mlflow-auth", "namespace": NS},
            "data": {"basic_auth.ini": AUTH_INI},
        },
    ]


POD_SPEC = {
    "volumes": [
        {"name": "tls", "secret": {"secretName": "mlflow-tls"}},
        {"name": "ca", "secret": {"secretName": "platform-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"name": "auth", "configMap": {"name": "mlflow-auth"}},
        {"name": "tmp", "emptyDir": {}},
    ],
    "containers": [
        {
            "name": "mlflow",
            "image": "ghcr.io/mlflow/mlflow:v3.18.0",
            "command": ["mlflow"],
            "args": [
                "server",
                "--app-name",
                "basic-auth",
                "--host",
                "0.0.0.0",
                "--port",
                "5000",
                "--workers",
                "2",
                "--backend-store-uri",
                BACKEND_URI,
                "--serve-artifacts",
                "--artifacts-destination",
                f"s3://{BUCKET}/artifacts",
                "--allowed-hosts",
                f"{INGRESS},{MLFLOW_SVC},{MLFLOW_SVC}:5000",
                "--cors-allowed-origins",
                f"https://{INGRESS}",  # the UI's own origin
                "--uvicorn-opts",
                "--ssl-keyfile /etc/mlflow/tls/tls.key --ssl-certfile /etc/mlflow/tls/tls.crt",
            ],
            "env": [
                _secret_ref("PGPASSWORD", "mlflow-db", "password"),  # libpq fallback: no pw in URIs
                {"name": "MLFLOW_AUTH_CONFIG_PATH", "value": "/etc/mlflow/auth/basic_auth.ini"},
                _secret_ref("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow-admin", "password"),
                _secret_ref("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow-admin", "flask-secret-key"),
                {"name": "MLFLOW_S3_ENDPOINT_URL", "value": f"https://{MINIO}:9000"},
                _secret_ref("AWS_ACCESS_KEY_ID", "mlflow-s3", "accessKey"),
                _secret_ref("AWS_SECRET_ACCESS_KEY", "mlflow-s3", "secretKey"),
                {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                {"name": "CA_DIR", "value": "/etc/mlflow/ca"},
                {"name": "AWS_CA_BUNDLE", "value": "$(CA_DIR)/ca.crt"},  # k8s $(VAR) expansion
                {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
                {"name": "DO_NOT_TRACK", "value": "true"},
                {"name": "TMPDIR", "value": "/tmp"},
            ],
            "volumeMounts": [
                {"name": "tls", "mountPath": "/etc/mlflow/tls", "readOnly": True},
                {"name": "ca", "mountPath": "/etc/mlflow/ca", "readOnly": True},
                {"name": "ca", "mountPath": PG_CA, "subPath": "ca.crt", "readOnly": True},
                {"name": "auth", "mountPath": "/etc/mlflow/auth", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "readinessProbe": {"httpGet": {"path": "/health", "port": 5000, "scheme": "HTTPS"}},
        }
    ],
}

# Schema migrations as a Job run before the Deployment (see report: replicas racing on an empty
# database fail with UniqueViolation on alembic_version).
MIGRATE_JOB_POD = {
    "restartPolicy": "Never",
    "volumes": [{"name": "ca", "secret": {"secretName": "platform-ca"}}],
    "containers": [
        {
            "name": "mlflow-db-migrate",
            "image": "ghcr.io/mlflow/mlflow:v3.18.0",
            "command": [
                "sh",
                "-c",
                'mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI" && '
                'python -m mlflow.server.auth db upgrade --url "$AUTH_DB_URI"',
            ],
            "env": [
                _secret_ref("PGPASSWORD", "mlflow-db", "password"),
                {"name": "MLFLOW_BACKEND_STORE_URI", "value": BACKEND_URI},
                {"name": "AUTH_DB_URI", "value": AUTH_DB_URI},
                {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
            ],
            "volumeMounts": [{"name": "ca", "mountPath": PG_CA, "subPath": "ca.crt"}],
        }
    ],
}

LAPTOP_CLIENT = (
    svc.CLIENT_PRELUDE
    + r"""
import json, logging, os, tempfile, traceback
import requests
import mlflow
from mlflow import MlflowClient

out = {}
mode = os.environ["CLIENT_MODE"]
tracking = os.environ["MLFLOW_TRACKING_URI"]
ca = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
creds = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
work = tempfile.mkdtemp(dir=os.getcwd())
capture_shim_denials(logging.getLogger("mlflow"))
logging.getLogger("mlflow.store.artifact").setLevel(logging.DEBUG)

if mode == "roundtrip":
    url = f"{tracking}/api/2.0/mlflow/experiments/search?max_results=1"
    out["no_credentials_status"] = requests.get(url, verify=ca, timeout=60).status_code
    out["wrong_password_status"] = requests.get(
        url, auth=(creds[0], "wrong-password-123"), verify=ca, timeout=60).status_code
    out["with_credentials_status"] = requests.get(url, auth=creds, verify=ca, timeout=60).status_code
    info = requests.get(f"{tracking}/api/3.0/mlflow/server-info", verify=ca, timeout=60)
    out["server_info_status"] = info.status_code
    out["server_info"] = info.json() if info.status_code == 200 else None

    small = os.path.join(work, "small.txt")
    big = os.path.join(work, "big.bin")
    write(small, b"hello artifact\n" * 10)
    write(big, os.urandom(int(os.environ["BIG_ARTIFACT_BYTES"])))
    exp_id = mlflow.set_experiment(os.environ["EXPERIMENT_NAME"]).experiment_id
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("loss", 0.25)
        mlflow.log_artifact(small)
        mlflow.log_artifact(big, artifact_path="data")
    run_id = run.info.run_id
    client = MlflowClient()
    got = client.get_run(run_id)
    out.update(run_id=run_id, experiment_id=exp_id, params=got.data.params,
               metrics=got.data.metrics, artifact_uri=got.info.artifact_uri)
    out["artifacts"] = sorted(
        f.path for f in client.list_artifacts(run_id) + client.list_artifacts(run_id, "data"))
    dst = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=os.path.join(work, "dl"))
    out["downloaded"] = {
        "small.txt": sha(os.path.join(dst, "small.txt")),
        "data/big.bin": sha(os.path.join(dst, "data", "big.bin")),
    }
    out["uploaded"] = {"small.txt": sha(small), "data/big.bin": sha(big)}
else:  # default client settings: trust /server-info
    # Only the retry *timing* is changed: presigned chunk GETs use a hard-coded 5 retries with
    # exponential backoff (~62 s, not tunable by env); the path choice is untouched.
    import functools
    import mlflow.utils.request_utils as request_utils
    request_utils.cloud_storage_http_request = functools.partial(
        request_utils.cloud_storage_http_request, max_retries=0)
    run_id = os.environ["RUN_ID"]
    exp_id = os.environ["EXPERIMENT_ID"]
    presigned = requests.get(
        f"{tracking}/api/2.0/mlflow-artifacts/presigned/{exp_id}/{run_id}/artifacts/small.txt",
        auth=creds, verify=ca, timeout=60)
    out["presigned_status"] = presigned.status_code
    out["presigned_url_host"] = requests.utils.urlparse(presigned.json()["url"]).hostname
    try:
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="small.txt", dst_path=os.path.join(work, "dl"))
        out["download_error"] = None
    except Exception as exc:
        out["download_error"] = f"{type(exc).__name__}: {exc}"[:500]
    big = os.path.join(work, "big2.bin")
    write(big, os.urandom(int(os.environ["BIG_ARTIFACT_BYTES"])))
    try:
        MlflowClient().log_artifact(run_id, big, artifact_path="default-client")
        out["upload_error"] = None
    except Exception as exc:
        out["upload_error"] = f"{type(exc).__name__}: {exc}"[:500]
out["shim_denials"] = shim_denials[:5]
print(json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("selftest")
    ca = CertificateAuthority("platform-ca")
    other_ca = CertificateAuthority("unrelated-ca")
    pg_cert = ca.issue("mlflow-pg-rw", [PG_RW, f"{PG_RW}.cluster.local", "mlflow-pg-rw"])
    s3_cert = ca.issue("minio", [MINIO, f"minio.{NS}.svc", "minio"])
    mlflow_cert = ca.issue("mlflow", [INGRESS, MLFLOW_SVC, f"{MLFLOW_SVC}.cluster.local"])
    ingress_cert = ca.issue("ingress", [INGRESS])
    (work / "ca.crt").write_text(ca.cert_pem)
    (work / "other-ca.crt").write_text(other_ca.cert_pem)

    pg_ip = svc.free_loopback_address(5432)
    s3_ip = svc.free_loopback_address(9000)
    mlflow_ip = svc.free_loopback_address(5000)
    host_map = {PG_RW: pg_ip, MINIO: s3_ip}
    minio = svc.minio_spec(
        cert_pem=s3_cert.cert_pem,
        key_pem=s3_cert.key_pem,
        ca_pem=ca.cert_pem,
        root_user="selftest-root",
        root_password="selftest-root-password-0123",
    )

    with (
        svc.postgres_server(
            work / "pg",
            server_cert_pem=pg_cert.cert_pem,
            server_key_pem=pg_cert.key_pem,
            ca_pem=ca.cert_pem,
            # as CNPG renders spec.postgresql.pg_hba (+ its catch-all)
            hba_rules=svc.cnpg_hba(["hostnossl all all all reject", "hostssl all all all scram-sha-256"]),
            listen_addr=pg_ip,
        ) as pg,
        svc.minio_server_from_container(
            *minio[:2],
            secrets=minio[2],
            workdir=work / "s3",
            listen_addr=s3_ip,
            server_name=MINIO,
        ) as s3,
    ):
        pg.ensure_role("mlflow", DB_PASSWORD)
        pg.ensure_database("mlflow", "mlflow")
        pg.ensure_database("mlflow_auth", "mlflow")
        # The bucket and MLflow's least-privilege user (what the bootstrap Job does), with the real mc.
        (work / "policy.json").write_text(bucket_policy(BUCKET))
        s3.mc("mb", f"it/{BUCKET}")
        s3.mc("admin", "user", "add", "it", "mlflow", "mlflow-s3-secret-key")
        s3.mc("admin", "policy", "create", "it", "mlflow-bucket", str(work / "policy.json"))
        s3.mc("admin", "policy", "attach", "it", "mlflow-bucket", "--user", "mlflow")

        objects = _rendered_objects(ca, mlflow_cert)
        secrets = svc.k8s_secrets(objects, namespace=NS)
        config_maps = svc.k8s_config_maps(objects, namespace=NS)
        job = MIGRATE_JOB_POD["containers"][0]
        _, job_rc, job_output = svc.run_container_job(
            job,
            secrets=secrets,
            host_map=host_map,
            workdir=work / "migrate",
            timeout=150,
            files_by_mount=svc.files_by_mount_from_pod(MIGRATE_JOB_POD, job, secrets=secrets),
        )
        container = POD_SPEC["containers"][0]
        files = svc.files_by_mount_from_pod(POD_SPEC, container, secrets=secrets, config_maps=config_maps)
        with (
            svc.mlflow_server_from_container(
                container,
                secrets=secrets,
                files_by_mount=files,
                host_map=host_map,
                workdir=work / "mlflow",
                listen_addr=mlflow_ip,
                config_maps=config_maps,
                timeout=150,
            ) as server,
            svc.ingress_proxy(
                work / "ingress",
                cert_pem=ingress_cert.cert_pem,
                key_pem=ingress_cert.key_pem,
                upstream_address=server.address,
                upstream_port=server.port,
                upstream_server_name=MLFLOW_SVC,
                upstream_ca_file=str(work / "ca.crt"),
                listen_addr=svc.free_loopback_address(8443),
                deny_paths=SERVER_INFO_PATHS,
            ) as ingress,
        ):
            yield SimpleNamespace(
                work=work,
                ca=ca,
                pg=pg,
                s3=s3,
                server=server,
                ingress=ingress,
                job_rc=job_rc,
                job_output=job_output,
                host_map=host_map,
                # laptop -> the tracking server directly (its cert carries the ingress name)
                direct_map={f"{INGRESS}:443": f"{server.address}:{server.port}"},
                # laptop -> ingress stand-in that hides /server-info -> tracking server
                ingress_map={f"{INGRESS}:443": f"{ingress.host}:{ingress.port}"},
            )


def _laptop(stack, mode, name, host_map, **env):
    proc = svc.run_python_client(
        LAPTOP_CLIENT,
        workdir=stack.work,
        name=name,
        host_map=host_map,
        env={
            "CLIENT_MODE": mode,
            "MLFLOW_TRACKING_URI": f"https://{INGRESS}",
            "MLFLOW_TRACKING_USERNAME": ADMIN_USER,
            "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_TRACKING_SERVER_CERT_PATH": str(stack.work / "ca.crt"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
            # lowered so a 2 MiB artifact crosses the multipart thresholds
            "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(1024 * 1024),
            "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": str(1024 * 1024),
            "BIG_ARTIFACT_BYTES": str(2 * 1024 * 1024),
            **env,
        },
        timeout=120,
    )
    return svc.last_json_line(proc.stdout)


@pytest.fixture(scope="module")
def pinned_run(stack):
    """Laptop client pinned to the proxied artifact path (multipart via presigned URLs off)."""
    return _laptop(
        stack,
        "roundtrip",
        "laptop-pinned",
        stack.direct_map,
        EXPERIMENT_NAME="pinned-client",
        MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD="false",
        MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD="false",
    )


@pytest.fixture(scope="module")
def hidden_info_run(stack):
    """Laptop client with default settings, via an ingress that answers 404 for /server-info."""
    return _laptop(
        stack, "roundtrip", "laptop-via-ingress", stack.ingress_map, EXPERIMENT_NAME="default-client-via-ingress"
    )


def test_migration_job_prepared_both_schemas_before_the_server_started(stack):
    assert stack.job_rc == 0
    assert "Creating initial MLflow database tables" in stack.job_output
    assert "Creating initial MLflow database tables" not in stack.server.log_text()
    assert stack.pg.execute("SELECT count(*) FROM alembic_version_auth", dbname="mlflow_auth") == [(1,)]


def test_server_ran_the_container_command_with_only_infrastructure_env_added(stack):
    server = stack.server
    assert server.argv[:2] == ["mlflow", "server"]
    assert server.argv[server.argv.index("--host") + 1] == server.address
    assert set(server.added_env) <= {
        "PATH",
        "HOME",
        "LANG",
        "PYTHONUNBUFFERED",
        "PYTHONPATH",
        "K8S_DNS_SHIM",
        "PGHOSTADDR",
    }
    assert server.added_env["PGHOSTADDR"] == stack.pg.host
    assert "REQUESTS_CA_BUNDLE" not in server.env and "SSL_CERT_FILE" not in server.env
    assert server.env["AWS_CA_BUNDLE"] == str(server.host_path("/etc/mlflow/ca/ca.crt"))
    assert server.host_path(PG_CA).read_text() == stack.ca.cert_pem
    ini = server.host_path("/etc/mlflow/auth/basic_auth.ini").read_text()
    assert f"sslrootcert={server.host_path(PG_CA)}" in ini


def test_laptop_client_round_trip_through_tracking_url_only(stack, pinned_run):
    r = pinned_run
    assert r["no_credentials_status"] == 401
    assert r["wrong_password_status"] == 401
    assert r["with_credentials_status"] == 200
    assert r["params"] == {"alpha": "0.5"}
    assert r["metrics"] == {"loss": 0.25}
    assert r["artifact_uri"].startswith("mlflow-artifacts:/")
    assert r["artifacts"] == ["data", "data/big.bin", "small.txt"]
    assert r["downloaded"] == r["uploaded"]
    assert r["shim_denials"] == []
    # ...and the bytes really live in S3 under the configured destination prefix
    with svc.dns_patched(stack.host_map):
        s3 = stack.s3.client(endpoint_name=MINIO, ca_file=str(stack.work / "ca.crt"))
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    prefix = f"artifacts/{r['experiment_id']}/{r['run_id']}/artifacts/"
    assert {prefix + "small.txt", prefix + "data/big.bin"} <= keys


def test_default_client_stays_on_the_proxy_unless_the_server_opts_in(stack, pinned_run):
    """Characterises MLflow 3.18: without the server-side opt-ins (MLFLOW_ENABLE_PROXY_MULTIPART_*)
    /server-info reports multipart up/downloads off for an S3 destination, so a client with default
    settings moves every file through the tracking server. (MLflow 3.17 reported them on, and such a
    client then fetched every file from a presigned URL on the in-cluster S3 name.) The server still
    signs presigned URLs for the endpoint it uses itself -- the in-cluster name here, which is why
    direct transfers need an endpoint clients reach and trust."""
    assert pinned_run["server_info"]["multipart_downloads_enabled"] is False
    assert pinned_run["server_info"]["multipart_uploads_enabled"] is False
    r = _laptop(
        stack,
        "default",
        "laptop-default",
        stack.direct_map,
        RUN_ID=pinned_run["run_id"],
        EXPERIMENT_ID=pinned_run["experiment_id"],
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    assert r["presigned_status"] == 200
    assert r["presigned_url_host"] == MINIO
    assert r["download_error"] is None
    assert r["upload_error"] is None
    assert r["shim_denials"] == []


def test_default_client_uses_proxied_artifacts_when_ingress_hides_server_info(stack, hidden_info_run):
    """No client-side settings at all: /server-info answered 404 by the ingress makes the client
    treat multipart/presigned as unsupported, so up- and downloads go through the tracking
    server (and the laptop never resolves the S3 name)."""
    r = hidden_info_run
    assert r["server_info_status"] == 404
    assert r["no_credentials_status"] == 401
    assert r["downloaded"] == r["uploaded"]
    assert r["artifacts"] == ["data", "data/big.bin", "small.txt"]
    assert r["shim_denials"] == []
    seen = stack.ingress.requests_seen
    assert ("GET", "/api/3.0/mlflow/server-info") in seen
    assert not any("/mlflow-artifacts/presigned/" in p or "/mlflow-artifacts/mpu/" in p for _, p in seen)
    assert any(m == "PUT" and p.endswith("/data/big.bin") for m, p in seen)


def test_allowed_hosts_and_cors_origins(stack):
    ctx = ssl.create_default_context(cafile=str(stack.work / "ca.crt"))

    def get(path, host, method="GET", **headers):
        # TLS verified against the ingress name, arbitrary Host header on top
        raw = socket.create_connection((stack.server.address, stack.server.port), timeout=10)
        conn = http.client.HTTPConnection(stack.server.address, stack.server.port, timeout=10)
        conn.sock = ctx.wrap_socket(raw, server_hostname=INGRESS)
        try:
            conn.request(
                method,
                path,
                body=b"{}" if method == "POST" else None,
                headers={"Host": host, "Content-Type": "application/json", **headers},
            )
            return conn.getresponse().status
        finally:
            conn.close()

    api = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(api, "evil.example.com") == 403
    assert get(api, stack.server.address) == 403  # --allowed-hosts replaces the defaults
    assert get(api, INGRESS) == 401  # allowed host, then basic-auth
    assert get("/health", "evil.example.com") == 200
    # Browsers send Origin on same-origin POSTs: without --cors-allowed-origins listing the
    # ingress origin, the UI's state-changing calls would get 403 "Cross-origin request blocked"
    create = "/api/2.0/mlflow/experiments/create"
    assert get(create, INGRESS, "POST", Origin="https://evil.example.com") == 403
    assert get(create, INGRESS, "POST", Origin=f"https://{INGRESS}") == 401


def test_postgres_requires_tls_trusted_ca_and_san_match(stack):
    import psycopg2

    pg = stack.pg
    ok = pg.connect_tcp(host_name=PG_RW, user="mlflow", password=DB_PASSWORD, dbname="mlflow")
    try:
        with ok.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
            cur.execute("SELECT count(*) FROM alembic_version")  # tracking schema migrated
            assert cur.fetchone()[0] == 1
    finally:
        ok.close()
    # auth DB migrated and admin bootstrapped from the secret, on PostgreSQL
    assert pg.execute("SELECT username, is_admin FROM users", dbname="mlflow_auth") == [(ADMIN_USER, True)]
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        pg.connect_tcp(host_name=PG_RW, user="mlflow", password=DB_PASSWORD, dbname="mlflow", sslmode="disable")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        pg.connect_tcp(
            host_name=PG_RW,
            user="mlflow",
            password=DB_PASSWORD,
            dbname="mlflow",
            sslrootcert=str(stack.work / "other-ca.crt"),
        )
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        pg.connect_tcp(host_name=PG_NOT_IN_SAN, user="mlflow", password=DB_PASSWORD, dbname="mlflow")


def test_s3_requires_tls_trusted_ca_and_san_match(stack):
    from botocore.exceptions import SSLError

    ca = str(stack.work / "ca.crt")
    wrong_name = "s3.not-in-san.test"
    with svc.dns_patched({**stack.host_map, wrong_name: stack.s3.host}):
        assert stack.s3.client(endpoint_name=MINIO, ca_file=ca).head_bucket(Bucket=BUCKET)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            stack.s3.client(endpoint_name=MINIO, ca_file=str(stack.work / "other-ca.crt")).head_bucket(Bucket=BUCKET)
        with pytest.raises(SSLError, match="[Hh]ostname mismatch|doesn't match"):
            stack.s3.client(endpoint_name=wrong_name, ca_file=ca).head_bucket(Bucket=BUCKET)
    # plain HTTP to the TLS port never yields an S3 answer
    conn = http.client.HTTPConnection(stack.s3.host, stack.s3.port, timeout=10)
    try:
        conn.request("GET", f"/{BUCKET}", headers={"Host": f"{MINIO}:{stack.s3.port}"})
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError):
        status = None
    finally:
        conn.close()
    assert status is None or status >= 400


def test_tracking_server_tls_refuses_wrong_ca_wrong_name_and_plain_http(stack):
    import requests

    url_ok = f"https://{INGRESS}"
    wrong_name = "mlflow.not-in-san.test"
    laptop = {INGRESS: stack.server.address, wrong_name: stack.server.address}
    port = stack.server.port
    with svc.dns_patched(laptop):
        assert requests.get(f"{url_ok}:{port}/health", verify=str(stack.work / "ca.crt"), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(f"{url_ok}:{port}/health", verify=str(stack.work / "other-ca.crt"), timeout=10)
        with pytest.raises(requests.exceptions.SSLError, match="[Hh]ostname mismatch|match"):
            requests.get(f"https://{wrong_name}:{port}/health", verify=str(stack.work / "ca.crt"), timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{INGRESS}:{port}/health", timeout=10)
