"""postgresMode: external under the real-PostgreSQL layer.

The dev stack is rendered with an external PostgreSQL at ``db.external.test`` (resolved to a
loopback address by the DNS shim / ``PGHOSTADDR``; verify-full checks that name against the
server certificate). The server stands in for a managed service: TLS only, an admin login that
may create roles and databases but is not a superuser (like the RDS master user), and no
superuser login over the network.

``postgresCaFile`` must be a PEM file inside the project directory. The CA is generated here
(its key is needed to issue the server certificate), written to a fresh directory under the
git-ignored ``build/`` for the duration of the module, and removed afterwards; nothing is
written into tracked paths.

Then, from the registered resources only: pulumi-postgresql's ``Provider``/``Role``/``Database``
inputs are applied as the provider would (:func:`operators.pulumi_postgresql_apply`: the admin
login over TCP, ``sslmode`` + ``sslrootcert`` from the provider inputs), the MinIO bootstrap
Job creates the bucket (object store stays in-cluster), the migration Job and ``mlflow server``
run with the rendered URI, and a laptop client does a round trip through the tracking URL.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

from tools.loopback import operators, wiring
from tools.loopback import services as svc
from tools.mock_engine import ROOT, Secret

from .pki import CertificateAuthority
from .test_wired_stack import CLIENT_TUNING, LAPTOP_CLIENT

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
DB_HOST = "db.external.test"
NOT_IN_SANS = "db.other.test"
ADMIN_USER = "dbadmin"
BUILD = ROOT / "build"
TLS_ONLY_HBA = ["hostnossl all all all reject", "hostssl all all all scram-sha-256"]


@contextlib.contextmanager
def _ca_file_in_project(ca_pem: str):
    """The CA as a file inside the project (git-ignored build/), removed on exit."""
    created_build = not BUILD.exists()
    BUILD.mkdir(exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="it-external-pg-", dir=BUILD))
    try:
        path = directory / "ca.pem"
        path.write_text(ca_pem)
        yield path.relative_to(ROOT).as_posix()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if created_build:
            with contextlib.suppress(OSError):
                BUILD.rmdir()  # only if nothing else appeared in it meanwhile


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    work = tmp_path_factory.mktemp("external-pg")
    ca, other_ca = CertificateAuthority("external-db-ca"), CertificateAuthority("unrelated-ca")
    server_cert = ca.issue(DB_HOST, [DB_HOST])
    admin_password = "adm-" + secrets.token_urlsafe(18)
    (work / "other-ca.crt").write_text(other_ca.cert_pem)

    with contextlib.ExitStack() as stack:
        ca_file = stack.enter_context(_ca_file_in_project(ca.cert_pem))
        r = wiring.render(
            "dev",
            namespace=NAMESPACE,
            config={
                "postgresMode": "external",
                "postgresHost": DB_HOST,
                "postgresAdminUser": ADMIN_USER,
                "postgresAdminPassword": Secret(admin_password),
                "postgresCaFile": ca_file,
            },
        )
        assert (r.pg_host, r.pg_port) == (DB_HOST, 5432)
        provider = wiring.one([x.inputs for x in r.ev.of_type("pulumi:providers:postgresql")], "postgresql provider")
        roles = [x.inputs for x in r.ev.of_type("postgresql:index/role:Role")]
        databases = [x.inputs for x in r.ev.of_type("postgresql:index/database:Database")]

        pg_ip = svc.free_loopback_address(r.pg_port)
        s3_ip = svc.free_loopback_address(r.s3_port)
        mlflow_ip = svc.free_loopback_address(int(r.container["ports"][0]["containerPort"]))
        host_map = {r.pg_host: pg_ip, r.s3_host: s3_ip}
        pg = stack.enter_context(
            svc.postgres_server(
                work / "pg",
                server_cert_pem=server_cert.cert_pem,
                server_key_pem=server_cert.key_pem,
                ca_pem=ca.cert_pem,
                hba_rules=TLS_ONLY_HBA,
                listen_addr=pg_ip,
                port=r.pg_port,
                superuser_network_login=False,
            )
        )
        # The managed service's admin login (what the team puts in postgresAdminUser/Password).
        from psycopg2 import sql

        pg.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(ADMIN_USER), sql.Literal(admin_password)
            )
        )
        s3 = stack.enter_context(wiring.rendered_minio(r, work, s3_ip))

        # pulumi-postgresql, as `pulumi up` runs it from the project directory.
        applied = operators.pulumi_postgresql_apply(provider, roles, databases, hostaddr=pg_ip, project_dir=ROOT)
        bootstrap = wiring.MinioBootstrap(r, work / "minio-bootstrap", host_map, s3)
        bootstrap_run = bootstrap.run()
        bucket = wiring.one(list(bootstrap_run.state["buckets"]), "bucket")

        job_runs = wiring.run_migration_job(r, host_map, work, timeout=150)
        files = svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps)
        server = stack.enter_context(
            svc.mlflow_server_from_container(
                r.container,
                secrets=r.secrets,
                files_by_mount=files,
                host_map=host_map,
                workdir=work / "mlflow",
                listen_addr=mlflow_ip,
                config_maps=r.config_maps,
                timeout=150,
            )
        )
        tracking_host, tracking_port = wiring.host_port(r.outputs["trackingUrl"], 80)
        client = svc.run_python_client(
            LAPTOP_CLIENT,
            workdir=work,
            name="laptop-external",
            timeout=300,
            host_map={f"{tracking_host}:{tracking_port}": f"{server.address}:{server.port}"},
            deny=("*.svc", "*.svc.cluster.local", DB_HOST),
            env={
                "MLFLOW_TRACKING_URI": r.outputs["trackingUrl"],
                "MLFLOW_TRACKING_USERNAME": r.outputs["adminUser"],
                "MLFLOW_TRACKING_PASSWORD": r.outputs["adminPassword"],
                **CLIENT_TUNING,
                "CLIENT_MODE": "roundtrip",
                "EXPERIMENT_NAME": "external-pg",
                "BIG_ARTIFACT_BYTES": str(2 * 1024 * 1024),
            },
        )
        yield SimpleNamespace(
            r=r,
            work=work,
            ca=ca,
            ca_file=ca_file,
            provider=provider,
            roles=roles,
            databases=databases,
            admin_password=admin_password,
            pg=pg,
            s3=s3,
            applied=applied,
            bucket=bucket,
            job_runs=job_runs,
            server=server,
            host_map=host_map,
            laptop=svc.last_json_line(client.stdout),
        )
    assert not (ROOT / ca_file).exists()


def test_external_stack_renders_the_provider_and_no_cnpg_objects(external):
    r, provider = external.r, external.provider
    assert r.cluster is None and r.ev.k8s("Database") == [] and r.ev.k8s("Cluster") == []
    assert not [x for x in r.ev.registrations if x.type == "kubernetes:helm.sh/v3:Release"]
    assert (provider["host"], str(provider["port"]), provider["username"]) == (DB_HOST, "5432", ADMIN_USER)
    assert (provider["sslmode"], provider["sslrootcert"]) == ("verify-full", external.ca_file)
    assert str(provider["superuser"]).lower() == "false"
    role = wiring.one(external.roles, "postgresql Role")
    assert role["login"] is True
    assert sorted((d["name"], d["owner"]) for d in external.databases) == [
        ("mlflow", role["name"]),
        ("mlflow_auth", role["name"]),
    ]
    for key, db in (("MLFLOW_BACKEND_STORE_URI", "mlflow"), ("MLFLOW_AUTH_DATABASE_URI", "mlflow_auth")):
        uri = r.env.get(key) or next(s["auth-database-uri"] for s in r.secrets.values() if "auth-database-uri" in s)
        parts = urlsplit(uri.replace("postgresql+psycopg2://", "postgresql://"))
        # No password in the URI (it reaches argv): libpq reads the role's from PGPASSWORD.
        assert (unquote(parts.username), parts.password) == (role["name"], None)
        assert r.env["PGPASSWORD"] == role["password"]
        assert (parts.hostname, parts.port, parts.path) == (DB_HOST, 5432, f"/{db}")
        assert "sslmode=verify-full" in parts.query
    # MLflow trusts exactly the CA bundle of postgresCaFile (mounted from the CA Secret).
    assert external.server.host_path("/etc/mlflow/ca/postgres-ca.crt").read_text() == external.ca.cert_pem


def test_provider_created_role_and_databases_over_verify_full(external):
    pg, role = external.pg, wiring.one(external.roles, "Role")
    assert external.applied == {"ssl": True, "sslrootcert": str(ROOT / external.ca_file)}
    assert pg.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s", (role["name"],)) == [
        (True, False)
    ]
    assert sorted(
        pg.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname NOT IN ('postgres', 'template0', 'template1')"
        )
    ) == [("mlflow", role["name"]), ("mlflow_auth", role["name"])]
    # The admin is no superuser and kept no membership in MLflow's role.
    assert pg.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (ADMIN_USER,)) == [(False,)]
    assert pg.execute(
        "SELECT count(*) FROM pg_auth_members WHERE member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        (ADMIN_USER,),
    ) == [(0,)]


def test_provider_login_refuses_a_foreign_ca_and_a_foreign_name(external):
    import psycopg2

    login = {"user": ADMIN_USER, "password": external.admin_password, "dbname": "postgres"}
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        external.pg.connect_tcp(host_name=DB_HOST, sslrootcert=str(external.work / "other-ca.crt"), **login)
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        external.pg.connect_tcp(host_name=NOT_IN_SANS, sslrootcert=str(ROOT / external.ca_file), **login)
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        external.pg.connect_tcp(host_name=DB_HOST, sslmode="disable", **login)


def test_migration_and_mlflow_ran_against_the_external_server_with_verify_full(external):
    r, pg, server = external.r, external.pg, external.server
    assert [j.name for j in external.job_runs] == ["upgrade-tracking-db", "upgrade-auth-db"]
    assert all(j.rc == 0 for j in external.job_runs)
    for j in external.job_runs:
        assert j.prepared.added_env["PGHOSTADDR"] == pg.host
        assert f"@{DB_HOST}:5432/" in j.prepared.argv[-1]
    assert pg.execute("SELECT count(*) FROM alembic_version", dbname="mlflow") == [(1,)]
    assert pg.execute("SELECT count(*) FROM alembic_version_auth", dbname="mlflow_auth") == [(1,)]
    assert server.added_env["PGHOSTADDR"] == pg.host
    assert "Creating initial MLflow database tables" not in server.log_text()

    res = external.laptop
    assert res["no_credentials_status"] == 401
    assert res["read"]["status"] == "FINISHED"
    assert res["read"]["downloaded"] == res["uploaded"]
    assert res["shim_denials"] == []
    role = wiring.one(external.roles, "Role")["name"]
    sessions = pg.execute(
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = %s", (role,)
    )
    assert sessions and all(ssl for (ssl,) in sessions), sessions
    assert pg.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'", dbname="mlflow") == [(1,)]
    # The artifacts went to the bucket the bootstrap Job created.
    assert f"s3://{external.bucket}/artifacts" in r.container["args"]
    with svc.dns_patched(external.host_map):
        ca = external.work / "object-store-ca.crt"
        ca.write_text(r.minio_tls["ca.crt"])
        keys = {
            o["Key"]
            for o in external.s3.client(endpoint_name=r.s3_host, ca_file=str(ca)).list_objects_v2(
                Bucket=external.bucket
            )["Contents"]
        }
    prefix = f"artifacts/{res['experiment_id']}/{res['run_id']}/artifacts/"
    assert {prefix + "small.txt", prefix + "data/big.bin"} <= keys
