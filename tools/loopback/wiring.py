"""Rendered material shared by the wired-stack tests and the server benchmark: what a stack renders,
its MinIO StatefulSet's container run for real (the MinIO server built from its Go module), and its
MinIO bootstrap Job run for real (its script from the rendered ConfigMap, with the real ``mc``, every
call recorded).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from tools.mock_engine import evaluate_stack

from . import services as svc

BOOTSTRAP_CONFIG_MAP = "minio-bootstrap"  # name prefix (auto-named) of the script's ConfigMap


def one(items: list, what: str):
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"
    return items[0]


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname, f"no host in {url!r}"
    return parts.hostname, parts.port or default_port


def _labelled(objects: list[dict], name: str, component: str) -> list[dict]:
    return [
        o
        for o in objects
        if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == name
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


def database_host_port(uri: str) -> tuple[str, int]:
    """Host and port of a SQLAlchemy PostgreSQL URI (MLflow's backend store URIs)."""
    return host_port(uri.replace("postgresql+psycopg2://", "postgresql://"), 5432)


def render(
    stack: str = "dev", config: dict | None = None, namespace: str | None = None, state: dict | None = None
) -> SimpleNamespace:
    """Everything the tests run with, taken from the evaluated stack only. `state`: the providers'
    state to evaluate against (generated values kept across renders, as across `pulumi up`s)."""
    ev = evaluate_stack(stack, config=config, state=state)
    namespace = namespace or ev.outputs["namespace"]
    objects = ev.k8s_objects
    secrets = svc.k8s_secrets(objects, namespace=namespace)
    config_maps = svc.k8s_config_maps(objects, namespace=namespace)

    def secret_obj(name: str) -> dict:
        return one([s for s in ev.k8s("Secret") if s["metadata"]["name"] == name], f"Secret {name}")

    deployment = one(ev.k8s("Deployment"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = one(pod["containers"], "MLflow container")
    jobs = ev.k8s("Job")
    job_pod = one(_labelled(jobs, "mlflow", "migration"), "migration Job")["spec"]["template"]["spec"]
    bootstrap_jobs = _labelled(jobs, "minio", "bootstrap")

    # status.podIP (MLflow lists its own address among the allowed hosts when metrics are on).
    env = svc.resolve_container_env(
        container, secrets=secrets, config_maps=config_maps, field_values={"status.podIP": "127.0.0.1"}
    )
    pg_host, pg_port = database_host_port(env["MLFLOW_BACKEND_STORE_URI"])
    s3_host, s3_port = host_port(env["MLFLOW_S3_ENDPOINT_URL"], 443)
    # postgresReadReplica on: MLflow's reads go to the replica's name (CNPG's -ro Service).
    replica_uri = env.get("MLFLOW_READ_REPLICA_BACKEND_STORE_URI")
    pg_ro_host = database_host_port(replica_uri)[0] if replica_uri else None
    r = SimpleNamespace(
        ev=ev,
        namespace=namespace,
        objects=objects,
        outputs=ev.outputs,
        secrets=secrets,
        config_maps=config_maps,
        pod=pod,
        container=container,
        job_pod=job_pod,
        env=env,
        pod_labels=deployment["spec"]["template"]["metadata"]["labels"],
        pg_host=pg_host,
        pg_port=pg_port,
        pg_ro_host=pg_ro_host,
        s3_host=s3_host,
        s3_port=s3_port,
        cluster=None,
        pg_tls=None,
        pg_hba=None,
        databases=[],
        minio_tls=None,
        bootstrap_pod=None,
        bootstrap_container=None,
        secret_obj=secret_obj,
    )
    clusters = ev.k8s("Cluster")
    if clusters:
        r.cluster = one(clusters, "CNPG Cluster")
        pg_tls_obj = secret_obj(r.cluster["spec"]["certificates"]["serverTLSSecret"])
        assert pg_tls_obj["type"] == "kubernetes.io/tls"
        r.pg_tls = secrets[pg_tls_obj["metadata"]["name"]]
        assert {"tls.crt", "tls.key", "ca.crt"} <= set(r.pg_tls)
        r.pg_hba = list(r.cluster["spec"]["postgresql"]["pg_hba"])
        r.databases = [d for d in ev.k8s("Database") if d["apiVersion"] == "postgresql.cnpg.io/v1"]
    statefulsets = ev.k8s("StatefulSet")
    if statefulsets:
        minio_pod = one(statefulsets, "MinIO StatefulSet")["spec"]["template"]["spec"]
        minio_container = one(minio_pod["containers"], "MinIO container")
        certs_volume = one([v for v in minio_pod["volumes"] if v["name"] == "certs"], "certs volume")
        assert any(m["name"] == "certs" for m in minio_container["volumeMounts"])
        minio_tls_obj = secret_obj(certs_volume["secret"]["secretName"])
        assert minio_tls_obj["type"] == "kubernetes.io/tls"
        r.minio_tls = secrets[minio_tls_obj["metadata"]["name"]]
        r.minio_statefulset = one(statefulsets, "MinIO StatefulSet")
        r.minio_pod = svc.with_claim_volumes(minio_pod, r.minio_statefulset["spec"]["volumeClaimTemplates"])
        r.minio_container = minio_container
        r.bootstrap_pod = one(bootstrap_jobs, "MinIO bootstrap Job")["spec"]["template"]["spec"]
        r.bootstrap_container = one(r.bootstrap_pod["containers"], "bootstrap container")
        root_env = one([v for v in minio_pod["volumes"] if v["name"] == "config"], "config volume")
        r.minio_root_env = secrets[root_env["secret"]["secretName"]]["config.env"]
    return r


def env_file_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# Put first on the bootstrap Job's PATH as `mc`: runs the real mc (engine/bin/mc) with the same argv,
# stdin/stdout/stderr and exit code, and appends one JSON line per call: argv, exit code, start and end
# time, stderr, the
# MC_HOST_<alias> it ran with (user, endpoint, whether the password is MinIO's root password; never the
# password itself) and the CA files in $MC_CONFIG_DIR/certs/CAs (where mc looks for extra CAs).
MC_RECORDER = """#!{python}
import json, os, subprocess, sys, time
from pathlib import Path
from urllib.parse import unquote, urlsplit

started = time.time()
proc = subprocess.run([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
sys.stdout.buffer.write(proc.stdout)
sys.stderr.buffer.write(proc.stderr)
hosts = {{}}
for key, value in os.environ.items():
    if key.startswith("MC_HOST_"):
        u = urlsplit(value)
        hosts[key] = {{"scheme": u.scheme, "user": unquote(u.username or ""),
                      "endpoint": f"{{u.hostname}}:{{u.port}}",
                      "password_is_root": unquote(u.password or "") == {root_password!r}}}
config = os.environ.get("MC_CONFIG_DIR", "")
cas = Path(config, "certs", "CAs")
record = {{"argv": sys.argv[1:], "exit": proc.returncode, "started": started, "ended": time.time(), "stderr": proc.stderr.decode(errors="replace").strip(),
          "mc_hosts": hosts, "mc_config_dir": config,
          "ca_files": {{f.name: f.read_text() for f in sorted(cas.iterdir()) if f.is_file()}} if cas.is_dir() else {{}}}}
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(proc.returncode)
"""


class MinioBootstrap:
    """Runs the rendered bootstrap Job container (its real script) with the real ``mc``.

    ``mc`` on the Job's PATH is :data:`MC_RECORDER` (the real client, every call recorded in
    ``mc-calls.jsonl``); it reaches MinIO's in-cluster name at the address ``host_map`` gives it
    (``MC_RESOLVE``, mc's own DNS override: the one infrastructure variable added). Each run is a
    fresh pod (its volumes materialised anew, ``/tmp`` an empty emptyDir); ``server`` (the MinIO it
    configures) is read back after each run."""

    def __init__(
        self,
        r: SimpleNamespace,
        workdir: Path,
        host_map: Mapping[str, str],
        server: svc.MinioServer | None = None,
    ):
        self.r, self.workdir, self.host_map, self.server = r, Path(workdir), dict(host_map), server
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = self.workdir / "bin"
        self.bin_dir.mkdir(exist_ok=True)
        self.log_file = self.workdir / "mc-calls.jsonl"
        root_password = env_file_values(r.minio_root_env)["MINIO_ROOT_PASSWORD"]
        recorder = self.bin_dir / "mc"
        recorder.write_text(
            MC_RECORDER.format(
                python=svc.VENV_BIN / "python",
                real=str(svc.engine_binary("mc")),
                root_password=root_password,
                log=str(self.log_file),
            )
        )
        recorder.chmod(0o755)
        self.runs: list[SimpleNamespace] = []

    def calls(self) -> list[dict]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def run(
        self,
        *,
        secrets: Mapping | None = None,
        config_maps: Mapping | None = None,
        check: bool = True,
        timeout: float = 150,
    ) -> SimpleNamespace:
        r = self.r
        secrets = r.secrets if secrets is None else secrets
        config_maps = r.config_maps if config_maps is None else config_maps
        before = len(self.calls())
        c, pod = r.bootstrap_container, r.bootstrap_pod
        endpoint = svc.resolve_container_env(c, secrets=secrets, config_maps=config_maps)["MINIO_ENDPOINT"]
        prepared, rc, output = svc.run_container_job(
            c,
            secrets=secrets,
            config_maps=config_maps,
            host_map={},
            files_by_mount=svc.files_by_mount_from_pod(pod, c, secrets=secrets, config_maps=config_maps),
            workdir=self.workdir / f"run-{len(self.runs) + 1}",
            timeout=timeout,
            check=check,
            path_prepend=[self.bin_dir],
            extra_env={"MC_RESOLVE": svc.mc_resolve(self.host_map, int(endpoint.rsplit(":", 1)[1]))},
            image_env=svc.MINIO_IMAGE_ENV,
        )
        state = self.server.state() if self.server is not None else None
        run = SimpleNamespace(prepared=prepared, rc=rc, output=output, calls=self.calls()[before:], state=state)
        self.runs.append(run)
        return run


def rendered_postgres(r: SimpleNamespace, workdir: Path, pg_ip: str, **options) -> ContextManager:
    """A real PostgreSQL serving the Cluster's certificate with its pg_hba and its parameters
    (max_connections...), where MLflow expects it."""
    options.setdefault("hba_rules", svc.cnpg_hba(r.pg_hba))
    options.setdefault("extra_conf", dict(r.cluster["spec"]["postgresql"].get("parameters") or {}))
    options.setdefault("superuser_network_login", False)
    return svc.postgres_server(
        Path(workdir) / "pg",
        server_cert_pem=r.pg_tls["tls.crt"],
        server_key_pem=r.pg_tls["tls.key"],
        ca_pem=r.pg_tls["ca.crt"],
        listen_addr=pg_ip,
        port=r.pg_port,
        **options,
    )


def rendered_standby(
    r: SimpleNamespace, primary: svc.PostgresServer, workdir: Path, ro_ip: str
) -> ContextManager[svc.PostgresServer]:
    """A streaming hot standby of ``primary``, what a CloudNativePG replica is: it streams over TLS
    verify-full against the primary's name and serves the Cluster's certificate (which names the -ro
    Service) at ``ro_ip``."""
    return svc.postgres_standby(
        primary,
        Path(workdir),
        primary_host_name=r.pg_host,
        server_cert_pem=r.pg_tls["tls.crt"],
        server_key_pem=r.pg_tls["tls.key"],
        ca_pem=r.pg_tls["ca.crt"],
        listen_addr=ro_ip,
    )


def rendered_minio(
    r: SimpleNamespace, workdir: Path, s3_ip: str, host_map: Mapping[str, str] | None = None
) -> ContextManager[svc.MinioServer]:
    """The real MinIO running the StatefulSet's container (args, env, certificate, root-credentials
    file), at MinIO's in-cluster name (``minio.<namespace>.svc``) mapped to ``s3_ip``."""
    return svc.minio_server_from_container(
        r.minio_container,
        r.minio_pod,
        secrets=r.secrets,
        config_maps=r.config_maps,
        workdir=Path(workdir) / "minio",
        listen_addr=s3_ip,
        server_name=f"minio.{r.namespace}.svc",
        host_map=host_map,
    )


def rendered_mlflow_server(
    r: SimpleNamespace, host_map: dict, workdir: Path, address: str, timeout: int = 240
) -> ContextManager:
    """`mlflow server` with the exact command, args and environment of the rendered container."""
    files = svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps)
    return svc.mlflow_server_from_container(
        r.container,
        secrets=r.secrets,
        files_by_mount=files,
        host_map=host_map,
        workdir=workdir,
        listen_addr=address,
        config_maps=r.config_maps,
        timeout=timeout,
    )


def run_migration_job(r: SimpleNamespace, host_map: dict, workdir: Path, timeout: int = 300) -> list[SimpleNamespace]:
    """The migration Job's pod as Kubernetes runs it: initContainers in order, then its containers."""
    runs = []
    for c in [*(r.job_pod.get("initContainers") or []), *r.job_pod["containers"]]:
        prepared, rc, output = svc.run_container_job(
            c,
            secrets=r.secrets,
            config_maps=r.config_maps,
            host_map=host_map,
            files_by_mount=svc.files_by_mount_from_pod(r.job_pod, c, secrets=r.secrets, config_maps=r.config_maps),
            workdir=Path(workdir) / "migrate" / c["name"],
            timeout=timeout,
        )
        runs.append(SimpleNamespace(name=c["name"], prepared=prepared, rc=rc, output=output))
    return runs


@contextlib.contextmanager
def data_services(
    r: SimpleNamespace,
    workdir: Path,
    *,
    pg_ip: str,
    s3_ip: str,
    hba_rules: list[str] | None = None,
) -> Iterator[SimpleNamespace]:
    """The rendered stack's data services, ready for MLflow: PostgreSQL with the Cluster's TLS material and
    pg_hba, the real MinIO running the StatefulSet's container, the operator's roles and databases, the
    MinIO bootstrap Job (which makes the bucket and MLflow's user) and the migration Job.

    With a read replica rendered (``r.pg_ro_host``), ``host_map`` maps its name to a free loopback
    address, yielded as ``ro_ip``, where :func:`rendered_standby` can then start the standby; the
    migration Job's pod mounts basic_auth.ini, which names it."""
    from . import operators

    workdir = Path(workdir)
    host_map = {r.pg_host: pg_ip, f"minio.{r.namespace}.svc": s3_ip}
    ro_ip = None
    if r.pg_ro_host:
        ro_ip = host_map[r.pg_ro_host] = svc.free_loopback_address(r.pg_port)
    with (
        rendered_postgres(r, workdir, pg_ip, hba_rules=hba_rules or svc.cnpg_hba(r.pg_hba)) as pg,
        rendered_minio(r, workdir, s3_ip) as s3,
    ):
        operators.cnpg_reconcile_roles(pg, r.cluster, r.objects)
        operators.cnpg_reconcile_databases(pg, r.cluster, r.databases)
        bootstrap = MinioBootstrap(r, workdir / "minio-bootstrap", host_map, s3).run()
        migration = run_migration_job(r, host_map, workdir)
        bucket = one([b for b in bootstrap.state["buckets"] if b == r.outputs["bucket"]], "MLflow's bucket")
        yield SimpleNamespace(
            pg=pg, s3=s3, host_map=host_map, bucket=bucket, migration=migration, bootstrap=bootstrap, ro_ip=ro_ip
        )
