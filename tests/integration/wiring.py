"""Rendered material shared by the wired-stack tests: what a stack renders, and its MinIO
bootstrap Job run for real (its script from the rendered ConfigMap, against the ``mc`` stand-in).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from tests.harness import evaluate_stack

from . import mc_standin
from . import services as svc

BOOTSTRAP_CONFIG_MAP = "minio-bootstrap"  # name prefix (auto-named) of the script's ConfigMap


def one(items: list, what: str):
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"
    return items[0]


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port or default_port


def _labelled(objects: list[dict], name: str, component: str) -> list[dict]:
    return [
        o
        for o in objects
        if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == name
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


def render(stack: str = "dev", config: dict | None = None, namespace: str | None = None) -> SimpleNamespace:
    """Everything the tests run with, taken from the evaluated stack only."""
    ev = evaluate_stack(stack, config=config)
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
    pg_host, pg_port = host_port(
        env["MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg2://", "postgresql://"), 5432
    )
    s3_host, s3_port = host_port(env["MLFLOW_S3_ENDPOINT_URL"], 443)
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
        r.bootstrap_pod = one(bootstrap_jobs, "MinIO bootstrap Job")["spec"]["template"]["spec"]
        r.bootstrap_container = one(r.bootstrap_pod["containers"], "bootstrap container")
        root_env = one([v for v in minio_pod["volumes"] if v["name"] == "config"], "config volume")
        r.minio_root_env = secrets[root_env["secret"]["secretName"]]["config.env"]
    return r


def env_file_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class MinioBootstrap:
    """Runs the rendered bootstrap Job container (its real script) against the ``mc`` stand-in.

    One emulated MinIO (``state.json``) and one call log for all runs; each run is a fresh pod
    (its volumes materialised anew, ``/tmp`` an empty emptyDir)."""

    def __init__(self, r: SimpleNamespace, workdir: Path, host_map: Mapping[str, str]):
        self.r, self.workdir, self.host_map = r, Path(workdir), dict(host_map)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = self.workdir / "bin"
        mc_standin.install(self.bin_dir)
        self.state_file = self.workdir / "minio-state.json"
        self.log_file = self.workdir / "mc-calls.jsonl"
        self.runs: list[SimpleNamespace] = []

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def set_state(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state))

    def calls(self) -> list[dict]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def run(
        self, *, secrets: Mapping | None = None, config_maps: Mapping | None = None, check: bool = True
    ) -> SimpleNamespace:
        r = self.r
        secrets = r.secrets if secrets is None else secrets
        config_maps = r.config_maps if config_maps is None else config_maps
        if not self.state_file.exists():
            self.set_state(mc_standin.empty_state())
        before = len(self.calls())
        root_password = env_file_values(r.minio_root_env)["MINIO_ROOT_PASSWORD"]
        c, pod = r.bootstrap_container, r.bootstrap_pod
        prepared, rc, output = svc.run_container_job(
            c,
            secrets=secrets,
            config_maps=config_maps,
            host_map=self.host_map,
            files_by_mount=svc.files_by_mount_from_pod(pod, c, secrets=secrets, config_maps=config_maps),
            workdir=self.workdir / f"run-{len(self.runs) + 1}",
            timeout=120,
            check=check,
            path_prepend=[self.bin_dir],
            extra_env={
                mc_standin.STATE_ENV: str(self.state_file),
                mc_standin.LOG_ENV: str(self.log_file),
                mc_standin.ROOT_PASSWORD_ENV: root_password,
            },
        )
        run = SimpleNamespace(prepared=prepared, rc=rc, output=output, calls=self.calls()[before:], state=self.state())
        self.runs.append(run)
        return run


def rendered_postgres(r: SimpleNamespace, workdir: Path, pg_ip: str, **options) -> ContextManager:
    """A real PostgreSQL serving the Cluster's certificate with its pg_hba, where MLflow expects it."""
    options.setdefault("hba_rules", svc.cnpg_hba(r.pg_hba))
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


def rendered_s3(r: SimpleNamespace, workdir: Path, s3_ip: str, port: int | None = None) -> ContextManager:
    """The S3 endpoint (moto) serving MinIO's certificate, at MinIO's port unless told otherwise."""
    return svc.s3_server(
        Path(workdir) / "s3",
        cert_pem=r.minio_tls["tls.crt"],
        key_pem=r.minio_tls["tls.key"],
        listen_addr=s3_ip,
        port=port or r.s3_port,
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
    s3_port: int = 9000,
    hba_rules: list[str] | None = None,
) -> Iterator[SimpleNamespace]:
    """The rendered stack's data services, ready for MLflow: PostgreSQL with the Cluster's TLS material and
    pg_hba, moto S3 with MinIO's certificate, the operator's roles and databases, the MinIO bootstrap Job
    (which makes the bucket) and the migration Job. ``s3_port`` is MinIO's in-cluster port (a stack that
    publishes MinIO renders another endpoint for MLflow)."""
    from . import operators

    workdir = Path(workdir)
    host_map = {r.pg_host: pg_ip, f"minio.{r.namespace}.svc": s3_ip}
    with (
        rendered_postgres(r, workdir, pg_ip, hba_rules=hba_rules or svc.cnpg_hba(r.pg_hba)) as pg,
        rendered_s3(r, workdir, s3_ip, s3_port) as s3,
    ):
        operators.cnpg_reconcile_roles(pg, r.cluster, r.objects)
        operators.cnpg_reconcile_databases(pg, r.cluster, r.databases)
        bootstrap = MinioBootstrap(r, workdir / "minio-bootstrap", host_map).run()
        migration = run_migration_job(r, host_map, workdir)
        bucket = one(list(bootstrap.state["buckets"]), "bucket created by the bootstrap")
        yield SimpleNamespace(pg=pg, s3=s3, host_map=host_map, bucket=bucket, migration=migration)
