"""Run the wired configuration for real, on loopback only.

No cluster and no container runtime exist in the test environment, so these helpers start the
real server processes (PostgreSQL 15; the MinIO server and its ``mc`` client of the release the stacks
pin, built from their Go modules into engine/bin by engine/build.sh; ``mlflow server`` from the project
venv) on 127.0.0.0/8 addresses and feed them the configuration that the Pulumi program renders
(container command/args/env/volumeMounts, Secrets, CA/cert PEMs).

Every helper is a context manager: it bounds every wait with a timeout, stops the processes it
started on exit (by process id / process group, never by name), captures output to log files in
``workdir`` and appends the log tail to any exception it raises (:class:`ServiceError`).

In-cluster DNS without touching URIs
------------------------------------
The processes must reach ``minio.mlflow-dev.svc.cluster.local:9000`` or
``mlflow-pg-rw.mlflow-dev.svc:5432`` while TLS (``verify-full``) keeps checking those real names
against the certificate SANs. Therefore we substitute *addresses*, never names:

* Python sockets (boto3/urllib3/requests/http.client/asyncio): :func:`shim_env` puts
  ``pyshim/`` first on ``PYTHONPATH``; its ``sitecustomize.py`` patches ``socket.getaddrinfo``
  (and ``gethostbyname[_ex]``) from the JSON in ``K8S_DNS_SHIM``: ``host -> ip`` or
  ``host:port -> ip:port`` (port remapping, e.g. an ingress FQDN on 443 -> mlflow on 5000),
  ``deny`` fnmatch patterns (a "laptop" client gets ``["*.svc", "*.svc.cluster.local"]`` so it
  provably cannot reach in-cluster services), and ``strict`` (default on: any other non-loopback
  name or address is refused, so nothing under test can leave 127.0.0.0/8, e.g. telemetry).
  The same logic is available in-process via :func:`dns_patched`.
* libpq (psycopg2 uses the C resolver, which the Python shim cannot see): ``PGHOSTADDR``.
  libpq then connects to ``hostaddr`` but still uses ``host`` for ``sslmode=verify-full``
  hostname verification and SNI. :func:`mlflow_server_from_container` derives it from the
  ``postgresql://`` URIs found in the container config when they all map to one address; when
  they map to several (a primary and its read replica, :func:`postgres_standby`), the shim wraps
  ``psycopg2.connect`` instead and adds ``hostaddr`` per host (``"libpq": true``).
* ``mc`` (Go resolves names itself): ``MC_RESOLVE`` (mc's own ``--resolve HOST:PORT=IP``,
  :func:`mc_resolve`): it dials the address and keeps the name for SNI and the certificate check.
* A distributed MinIO (:func:`minio_cluster`, root only): each server in its own network and
  mount namespace, ``/etc/hosts`` bind-mounted with the cluster's names, all on a bridge in a
  network namespace of their own.

Volumes: temp root + path rewriting (not the real mountPath)
-------------------------------------------------------------
``mlflow_server_from_container`` materialises each volumeMount under ``<workdir>/rootfs`` +
mountPath and rewrites every occurrence of a mountPath (as a whole path prefix) in command,
args, env values and in the materialised files themselves (e.g. ``sslrootcert=`` inside the
auth ini). We chose this over writing to the real mountPath as root because real paths are
global state: they can clobber system files (a mount over ``/etc/ssl/certs``), collide between
concurrent test runs, leave litter, and need root (CI may not have it). A mount namespace would
give exact paths but needs CAP_SYS_ADMIN and pre-existing mount points. The rewrite map and the
final argv/env are exposed on the returned object so tests can assert on them; a leftover
reference to a mountPath after rewriting is an error.

The other intentional deviations from "exactly the container": ``--host`` is forced to the
loopback listen address (pods bind 0.0.0.0, which is forbidden here), ``--port`` only if asked,
and a handful of infrastructure env vars are added (``PATH`` with the venv first, ``HOME``,
``LANG``, ``PYTHONUNBUFFERED``, ``PYTHONPATH``/``K8S_DNS_SHIM``, ``PGHOSTADDR``), listed in
``MlflowServer.added_env``. Nothing else leaks from the test runner's environment (it carries
e.g. ``REQUESTS_CA_BUNDLE``/``AWS_CA_BUNDLE`` pointing at the system bundle, which would mask a
missing CA setting in the rendered config).

API overview (glue from ``tools/mock_engine.evaluate_stack`` stays thin)::

    secrets, cms = k8s_secrets(ev.k8s_objects), k8s_config_maps(ev.k8s_objects)
    pod = <Deployment>["spec"]["template"]["spec"]; c = pod["containers"][0]
    files = files_by_mount_from_pod(pod, c, secrets=secrets, config_maps=cms)
    with postgres_server(wd, ..., hba_rules=cnpg_hba(<Cluster>.spec.postgresql.pg_hba)) as pg,
         minio_server_from_container(<StatefulSet container>, <its pod>, ...) as s3:
        operators.cnpg_reconcile_roles(pg, <Cluster>, objects)   # what CNPG's instance manager does
        operators.cnpg_reconcile_databases(pg, <Cluster>, <Database objects>)
        wiring.MinioBootstrap(r, wd, host_map, s3).run()        # the bootstrap Job, real mc
        run_container_job(<migration Job container>, ...)        # optional pre-deploy Job
        with mlflow_server_from_container(c, secrets=secrets, files_by_mount=files,
                                          host_map=host_map, workdir=wd) as server,
             ingress_proxy(wd, ..., deny_paths=...) as ingress:
            run_python_client(code, workdir=wd, host_map={"<ingress fqdn>:443": ...}, env=...)

PostgreSQL refuses to run as root, so when running as root initdb/pg_ctl run as ``nobody`` (or a
``useradd``-created ``pgitest`` user) with data, key and certificates in a private 0700 directory
under /tmp owned by that user (pytest's tmp dirs are not traversable by other users); its log is
copied to ``workdir`` on exit.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .pyshim import k8s_dns_shim

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / "venv" / "bin"
SHIM_DIR = Path(__file__).resolve().parent / "pyshim"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAPTOP_DENY = ("*.svc", "*.svc.cluster.local", "*.cluster.local")


class ServiceError(RuntimeError):
    """A service failed to start/stop in time; the message carries the relevant log tail."""


# --------------------------------------------------------------------------- generic plumbing


def _decoded(output: str | bytes | None) -> str:
    """A process's captured output as text (a timed-out run's partial output is bytes, even in text mode)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _tail(path: Path | str, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _error(msg: str, *logs: Path | str) -> ServiceError:
    parts = [msg]
    for log in logs:
        parts.append(f"--- tail of {log} ---\n{_tail(log)}")
    return ServiceError("\n".join(parts))


def _wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    logs: tuple = (),
    alive: Callable[[], bool] | None = None,
    interval: float = 0.25,
) -> None:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise _error(f"{what}: process exited before becoming ready", *logs)
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
            last_exc = exc
        time.sleep(interval)
    raise _error(f"{what}: not ready after {timeout:.0f}s (last error: {last_exc!r})", *logs)


def port_is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _require_loopback(address: str) -> None:
    import ipaddress

    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"only 127.0.0.0/8 may be used, got {address}")


def _require_free(address: str, port: int, what: str) -> None:
    _require_loopback(address)
    if not port_is_free(address, port):
        raise ServiceError(f"{what}: {address}:{port} is already in use")


def free_loopback_address(port: int, *, attempts: int = 50) -> str:
    """A random 127.x.y.z where ``port`` is free (lets fixed in-cluster ports such as 5432/9000
    be kept while test runs in parallel use distinct addresses)."""
    import random

    for _ in range(attempts):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        if port_is_free(address, port):
            return address
    raise ServiceError(f"no free loopback address for port {port}")


class ManagedProcess:
    """Popen in its own session/process group, output to a log file, bounded stop."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: str | Path | None = None,
        user: int | None = None,
        group: int | None = None,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {shlex.join(self.argv)}\n".encode())
        self._log.flush()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=group, extra_groups=[])
        try:
            self.popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            self._log.close()
            raise _error(f"{name}: cannot start {self.argv[0]!r}: {exc}", self.log_path) from exc

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        started = time.monotonic()
        how = "already exited"
        if self.alive():
            how = "SIGTERM"
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                how = f"SIGKILL after {timeout}s"
                self._signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(10)
        # leftover children (e.g. uvicorn workers) share our process group
        self._signal_group(signal.SIGKILL)
        self._log.write(
            f"\n[services] {self.name} stopped ({how}) in "
            f"{time.monotonic() - started:.1f}s, rc={self.popen.returncode}\n".encode()
        )
        self._log.close()
        return self.popen.returncode


def _run(
    argv: list[str],
    *,
    what: str,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    user: int | None = None,
    group: int | None = None,
    input_text: str | None = None,
) -> str:
    """Run a short command bounded by ``timeout``; append its output to ``log_path``."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=group, extra_groups=[])
    try:
        proc = subprocess.run(
            argv,
            env=dict(env),
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        raise _error(f"{what}: timed out after {timeout}s: {shlex.join(argv)}", log_path) from exc
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise _error(f"{what}: exit {proc.returncode}: {shlex.join(argv)}\n{proc.stderr}", log_path)
    return proc.stdout


# --------------------------------------------------------------------------- DNS shim


def shim_config(
    host_map: Mapping[str, str] | None = None, *, deny: tuple | list = (), strict: bool = True, libpq: bool = False
) -> dict:
    config: dict[str, Any] = {"map": dict(host_map or {}), "deny": list(deny), "strict": strict}
    if libpq:
        config["libpq"] = True
    return config


def shim_env(
    host_map: Mapping[str, str] | None = None,
    *,
    deny: tuple | list = (),
    strict: bool = True,
    pythonpath: str | None = None,
    libpq: bool = False,
) -> dict[str, str]:
    """Env additions that install the DNS shim in a child Python process (``libpq``: psycopg2
    connections get ``hostaddr`` from ``host_map`` per host, for several PostgreSQL names)."""
    path = str(SHIM_DIR) + (os.pathsep + pythonpath if pythonpath else "")
    return {
        "PYTHONPATH": path,
        k8s_dns_shim.ENV_VAR: json.dumps(shim_config(host_map, deny=deny, strict=strict, libpq=libpq)),
    }


@contextlib.contextmanager
def dns_patched(
    host_map: Mapping[str, str] | None = None, *, deny: tuple | list = (), strict: bool = False
) -> Iterator[None]:
    """Install the shim in *this* process (e.g. to create a bucket through the real in-cluster
    endpoint name). ``strict`` defaults to False here so pytest itself is not restricted."""
    previous = k8s_dns_shim.current_config()
    k8s_dns_shim.install(shim_config(host_map, deny=deny, strict=strict))
    try:
        yield
    finally:
        if previous is None:
            k8s_dns_shim.uninstall()
        else:
            k8s_dns_shim.install(previous)


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Minimal clean environment for child processes (nothing leaks from the test runner)."""
    home = Path(workdir) / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


# Helpers every "laptop" client script starts with (prepend to the script's own code).
CLIENT_PRELUDE = r"""
import hashlib, logging

shim_denials = []  # what the DNS shim refused, as MLflow logged it


class _ShimDenials(logging.Handler):
    def emit(self, record):
        msg = record.getMessage()
        if "k8s_dns_shim" in msg:
            shim_denials.append(msg[:300])


def capture_shim_denials(logger):
    logger.addHandler(_ShimDenials())


def sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)
"""


def run_python_client(
    code: str,
    *,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    host_map: Mapping[str, str] | None = None,
    deny: tuple | list = LAPTOP_DENY,
    strict: bool = True,
    timeout: float = 120,
    name: str = "client",
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``code`` with the venv python as an isolated "laptop" process: clean env + ``env`` +
    DNS shim (in-cluster names denied by default). Output goes to ``workdir/<name>.log``."""
    workdir = Path(workdir)
    script = workdir / f"{name}.py"
    script.write_text(code)
    child_env = base_env(workdir)
    child_env.update(env or {})
    child_env.update(shim_env(host_map, deny=deny, strict=strict, pythonpath=child_env.get("PYTHONPATH")))
    log_path = workdir / f"{name}.log"
    try:
        proc = subprocess.run(
            [str(VENV_BIN / "python"), str(script)],
            env=child_env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        log_path.write_text(f"{_decoded(exc.stdout)}\n{_decoded(exc.stderr)}")
        raise _error(f"{name}: timed out after {timeout}s", log_path) from exc
    log_path.write_text(f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    if check and proc.returncode != 0:
        raise _error(f"{name}: exit {proc.returncode}", log_path)
    return proc


def last_json_line(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            return json.loads(line)
    raise ValueError(f"no JSON line in output:\n{text[-2000:]}")


# --------------------------------------------------------------------------- PostgreSQL


def pg_bin_path() -> str:
    """PATH for the PostgreSQL server binaries: PATH as-is if ``pg_ctl`` is on it (here via
    /usr/local/bin symlinks), else the newest Debian/Ubuntu /usr/lib/postgresql/<v>/bin."""
    if shutil.which("pg_ctl", path=SYSTEM_PATH):
        return SYSTEM_PATH
    import glob

    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise ServiceError("PostgreSQL server binaries (initdb/pg_ctl/postgres) not found")
    return f"{os.path.dirname(candidates[-1])}:{SYSTEM_PATH}"


def _pg_os_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "pgitest"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgitest"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    pw = pwd.getpwnam("pgitest")
    return pw.pw_uid, pw.pw_gid


@dataclass
class PostgresServer:
    host: str
    port: int
    superuser: str
    superuser_password: str
    socket_dir: str
    data_dir: str
    log_path: Path
    ca_file: str
    server_log: str = ""  # the live server log (copied to ``log_path`` on stop)

    def superuser_conninfo(self, dbname: str = "postgres") -> dict[str, Any]:
        """psycopg2.connect(**kwargs) for the superuser over the unix socket (setup only)."""
        return {
            "host": self.socket_dir,
            "port": self.port,
            "user": self.superuser,
            "password": self.superuser_password,
            "dbname": dbname,
        }

    def connect_superuser(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(connect_timeout=10, **self.superuser_conninfo(dbname))
        conn.autocommit = autocommit
        return conn

    def execute(self, sql: str, params: tuple | dict | None = None, dbname: str = "postgres"):
        conn = self.connect_superuser(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 30) -> str:
        env = {"PATH": SYSTEM_PATH, "PGPASSWORD": self.superuser_password, "LANG": "C.UTF-8"}
        return _run(
            [
                "psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            what="psql",
            log_path=self.log_path.with_suffix(".psql.log"),
            timeout=timeout,
            env=env,
        )

    def ensure_role(self, name: str, password: str, *, login: bool = True) -> None:
        from psycopg2 import sql

        exists = self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if exists else "CREATE"
        self.execute(
            sql.SQL(verb + " ROLE {} WITH " + ("LOGIN" if login else "NOLOGIN") + " PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )

    def ensure_database(self, name: str, owner: str) -> None:
        from psycopg2 import sql

        if not self.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))

    def connect_tcp(
        self,
        *,
        host_name: str,
        user: str,
        password: str,
        dbname: str,
        sslmode: str = "verify-full",
        sslrootcert: str | None = None,
        **kwargs,
    ):
        """Connect like a pod would: ``host_name`` (checked against the cert SANs under
        verify-full) while the TCP connection goes to our loopback ``hostaddr``."""
        import psycopg2

        return psycopg2.connect(
            host=host_name,
            hostaddr=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            sslmode=sslmode,
            sslrootcert=sslrootcert or self.ca_file,
            connect_timeout=10,
            **kwargs,
        )


def cnpg_hba(user_rules: list[str], default_method: str = "scram-sha-256") -> list[str]:
    """The TCP part of the pg_hba.conf CloudNativePG generates from ``spec.postgresql.pg_hba``:
    user rules followed by the operator's catch-all ``host all all all <method>`` (its fixed
    rules only concern ``local`` peer access and cert-authenticated replication users). The
    catch-all also matches non-TLS connections, so TLS is only enforced if the user rules start
    with ``hostnossl all all all reject``."""
    return [*user_rules, f"host all all all {default_method}"]


@contextlib.contextmanager
def postgres_server(
    workdir: Path | str,
    *,
    server_cert_pem: str,
    server_key_pem: str,
    ca_pem: str,
    hba_rules: list[str],
    listen_addr: str = "127.0.0.2",
    port: int = 5432,
    superuser: str = "postgres",
    superuser_password: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
    superuser_network_login: bool = True,
    timeout: float = 60,
) -> Iterator[PostgresServer]:
    """initdb (scram-sha-256) + TLS-only config + ``hba_rules`` verbatim, started with pg_ctl.

    pg_hba.conf = ``local all <superuser> scram-sha-256`` (setup over the unix socket) followed
    by ``hba_rules`` in order. Yields a :class:`PostgresServer`.

    ``superuser_network_login=False`` emulates CloudNativePG's ``enableSuperuserAccess: false``:
    the superuser's password is removed (``ALTER ROLE ... PASSWORD NULL``, what the instance
    manager does), so no password login as the superuser exists over TCP; local administration
    goes through the unix socket only (``local all <superuser> trust`` on a socket directory
    that only the PostgreSQL OS user -- and root -- can enter, standing in for CNPG's
    ``local ... peer`` inside the pod). ``superuser_password`` is then no longer valid anywhere.
    """
    import secrets as _secrets

    password = superuser_password or _secrets.token_urlsafe(24)
    with _pg_instance(
        workdir,
        "postgres",
        listen_addr,
        port,
        server_cert_pem=server_cert_pem,
        server_key_pem=server_key_pem,
        ca_pem=ca_pem,
        secret_file=("pwfile", password + "\n"),
    ) as pg:
        base, data, sock, tls, log_path, run_log = pg.base, pg.data, pg.sock, pg.tls, pg.log_path, pg.run_log
        pg.run(
            [
                "initdb",
                "-D",
                str(data),
                "-U",
                superuser,
                f"--pwfile={base / 'pwfile'}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
            timeout,
        )
        conf = {
            "listen_addresses": f"'{listen_addr}'",
            "port": str(port),
            "unix_socket_directories": f"'{sock}'",
            "ssl": "on",
            "ssl_cert_file": f"'{tls / 'server.crt'}'",
            "ssl_key_file": f"'{tls / 'server.key'}'",
            "ssl_ca_file": f"'{tls / 'ca.crt'}'",
            "ssl_min_protocol_version": "'TLSv1.2'",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_connections": "on",
            "log_line_prefix": "'%m [%p] %q%u@%d %h '",
        }
        conf.update(extra_conf or {})
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("\n# --- integration test settings ---\n")
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        local_method = "scram-sha-256" if superuser_network_login else "trust"
        hba = [f"local all {superuser} {local_method}", *hba_rules]
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        pg.start("pg_ctl start", timeout)
        server = PostgresServer(
            listen_addr, port, superuser, password, str(sock), str(data), log_path, str(tls / "ca.crt"), str(run_log)
        )
        _wait_until(
            lambda: server.execute("SELECT 1") == [(1,)],
            timeout=timeout,
            what="postgres superuser login",
            logs=(run_log,),
        )
        if not superuser_network_login:
            from psycopg2 import sql

            server.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(superuser)))
        yield server


REPLICATION_USER = "streaming_replica"  # CloudNativePG's replication role


@dataclass
class _PgInstance:
    """The private directories of one PostgreSQL instance: data, unix socket, TLS files, logs."""

    base: Path
    log_path: Path
    env: dict[str, str]
    ids: tuple[int, int] | None
    started: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sock(self) -> Path:
        return self.base / "sock"

    @property
    def tls(self) -> Path:
        return self.base / "tls"

    @property
    def run_log(self) -> Path:
        return self.base / "postgres.log"

    @property
    def uid(self) -> int | None:
        return self.ids[0] if self.ids else None

    @property
    def gid(self) -> int | None:
        return self.ids[1] if self.ids else None

    def run(self, argv: list[str], what: str, timeout: float) -> None:
        """A PostgreSQL tool as the instance's OS user, its output in the instance's log."""
        _run(
            argv,
            what=what,
            log_path=self.log_path,
            timeout=timeout,
            env=self.env,
            cwd=self.base,
            user=self.uid,
            group=self.gid,
        )

    def start(self, what: str, timeout: float) -> None:
        self.started = True
        self.run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.run_log), "-w", "-t", str(int(timeout)), "start"],
            what,
            timeout + 10,
        )

    def stop(self) -> None:
        """pg_ctl stop (fast), else SIGKILL the postmaster of the instance's data directory."""
        with contextlib.suppress(ServiceError):
            self.run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"], "pg_ctl stop", 40)
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


@contextlib.contextmanager
def _pg_instance(
    workdir: Path | str,
    name: str,
    listen_addr: str,
    port: int,
    *,
    server_cert_pem: str,
    server_key_pem: str,
    ca_pem: str,
    secret_file: tuple[str, str],
) -> Iterator[_PgInstance]:
    """A fresh instance directory with the rendered TLS material and one secret file (mode 0600), owned
    by the PostgreSQL OS user; on the way out the instance is stopped (once `started`), its server log
    appended to ``<workdir>/<name>.log`` and the directory removed. Errors name `name` and its logs."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _require_free(listen_addr, port, name)
    base = Path(tempfile.mkdtemp(prefix=f"itest-{name.replace(' ', '-')}-"))
    pg = _PgInstance(
        base=base,
        log_path=workdir / f"{name.replace(' ', '-')}.log",
        env={"PATH": pg_bin_path(), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(base)},
        ids=_pg_os_user(),
    )
    try:
        for d in (pg.sock, pg.tls):
            d.mkdir(mode=0o700)
        (pg.tls / "server.crt").write_text(server_cert_pem)
        (pg.tls / "server.key").write_text(server_key_pem)
        (pg.tls / "ca.crt").write_text(ca_pem)
        (base / secret_file[0]).write_text(secret_file[1])
        pg.run_log.touch()
        for p in (pg.tls / "server.key", base / secret_file[0]):
            p.chmod(0o600)
        if pg.ids is not None:
            for p in [base, *base.rglob("*")]:
                os.chown(p, *pg.ids)
        yield pg
    except ServiceError:
        raise
    except Exception as exc:
        raise _error(f"{name}: {exc!r}", pg.run_log, pg.log_path) from exc
    finally:
        try:
            if pg.started:
                pg.stop()
            with contextlib.suppress(OSError), open(pg.log_path, "a") as out:
                out.write("\n--- server log ---\n" + pg.run_log.read_text(errors="replace"))
        finally:
            shutil.rmtree(base, ignore_errors=True)


def libpq_conninfo(**params: str | int) -> str:
    """A libpq key=value connection string (values quoted)."""
    quoted = (str(v).replace("\\", "\\\\").replace("'", "\\'") for v in params.values())
    return " ".join(f"{k}='{v}'" for k, v in zip(params, quoted, strict=True))


@contextlib.contextmanager
def postgres_standby(
    primary: PostgresServer,
    workdir: Path | str,
    *,
    primary_host_name: str,
    server_cert_pem: str,
    server_key_pem: str,
    ca_pem: str,
    listen_addr: str,
    replication_user: str = REPLICATION_USER,
    application_name: str = "standby-1",
    extra_conf: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Iterator[PostgresServer]:
    """A streaming-replication hot standby of ``primary``, what a CloudNativePG replica instance is.

    On the primary: the replication role ``replication_user`` (CNPG's ``streaming_replica``; here
    with a scram password instead of CNPG's client certificate) and a ``hostssl replication`` rule
    for it, appended to its pg_hba.conf (CNPG's fixed replication rule). Then ``pg_basebackup``
    (WAL streamed along) over TLS, ``sslmode=verify-full`` against ``primary_host_name`` (the
    ``-rw`` Service name, in the primary's certificate) at the primary's loopback address, and the
    copy starts as a hot standby (``standby.signal``, ``hot_standby = on``, ``primary_conninfo``
    the same TLS connection) listening on ``listen_addr`` at the primary's port, serving
    ``server_cert_pem`` (the Cluster's certificate, whose SANs include the ``-ro`` name). Everything
    else (pg_hba, roles, databases, parameters such as max_connections) is the primary's, as on a
    CNPG replica. Yields a :class:`PostgresServer` (superuser over its own unix socket) once it
    is in recovery and its WAL receiver is streaming."""
    import secrets as _secrets

    from psycopg2 import sql

    password = _secrets.token_urlsafe(24)
    with _pg_instance(
        workdir,
        "postgres standby",
        listen_addr,
        primary.port,
        server_cert_pem=server_cert_pem,
        server_key_pem=server_key_pem,
        ca_pem=ca_pem,
        secret_file=("pgpass", f"*:*:*:{replication_user}:{password}\n"),
    ) as pg:
        base, data, sock, tls, log_path, run_log = pg.base, pg.data, pg.sock, pg.tls, pg.log_path, pg.run_log
        ids = pg.ids

        # The primary side: the replication role and its pg_hba rule.
        exists = primary.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (replication_user,))
        primary.execute(
            sql.SQL("{} ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(replication_user), sql.Literal(password)
            )
        )
        with open(Path(primary.data_dir) / "pg_hba.conf", "a") as hba:
            hba.write(f"hostssl replication {replication_user} 127.0.0.0/8 scram-sha-256\n")
        primary.execute("SELECT pg_reload_conf()")

        conninfo = libpq_conninfo(
            host=primary_host_name,
            hostaddr=primary.host,
            port=primary.port,
            user=replication_user,
            passfile=str(base / "pgpass"),
            sslmode="verify-full",
            sslrootcert=str(tls / "ca.crt"),
            application_name=application_name,
            connect_timeout=10,
        )
        pg.run(
            ["pg_basebackup", "-d", conninfo, "-D", str(data), "-X", "stream", "-c", "fast", "--no-sync"],
            "pg_basebackup",
            timeout,
        )
        conf = {
            "listen_addresses": f"'{listen_addr}'",
            "unix_socket_directories": f"'{sock}'",
            "ssl_cert_file": f"'{tls / 'server.crt'}'",
            "ssl_key_file": f"'{tls / 'server.key'}'",
            "ssl_ca_file": f"'{tls / 'ca.crt'}'",
            "hot_standby": "on",
            "primary_conninfo": "'" + conninfo.replace("'", "''") + "'",
        }
        conf.update(extra_conf or {})
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("\n# --- hot standby settings ---\n")
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        (data / "standby.signal").touch()
        if ids is not None:
            os.chown(data / "standby.signal", *ids)
        pg.start("pg_ctl start (standby)", timeout)
        standby = PostgresServer(
            listen_addr,
            primary.port,
            primary.superuser,
            primary.superuser_password,
            str(sock),
            str(data),
            log_path,
            str(tls / "ca.crt"),
            str(run_log),
        )
        _wait_until(
            lambda: (
                standby.execute("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")
                == [(True, "streaming")]
            ),
            timeout=timeout,
            what="postgres standby streaming",
            logs=(run_log,),
        )
        yield standby


def wait_for_replay(primary: PostgresServer, standby: PostgresServer, timeout: float = 30) -> None:
    """Until ``standby`` has replayed everything ``primary`` had written when called."""
    # The insert position: with synchronous_commit off a commit may not even be written yet.
    lsn = primary.execute("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    _wait_until(
        lambda: standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0] is True,
        timeout=timeout,
        what=f"standby replay up to {lsn}",
        logs=(standby.server_log,),
    )


# --------------------------------------------------------------------------- object store (MinIO)

ENGINE_BIN = REPO_ROOT / "engine" / "bin"
# The ENV of the pinned MinIO image (Dockerfile.release of RELEASE.2025-09-07T16-13-09Z): every container
# started from it has these under its own env. The *_FILE ones name Docker secrets (/run/secrets/<name>,
# else relative to the working directory) that no pod has: MinIO skips a missing file.
MINIO_IMAGE_ENV = {
    "MINIO_ACCESS_KEY_FILE": "access_key",
    "MINIO_SECRET_KEY_FILE": "secret_key",
    "MINIO_ROOT_USER_FILE": "access_key",
    "MINIO_ROOT_PASSWORD_FILE": "secret_key",
    "MINIO_KMS_SECRET_KEY_FILE": "kms_master_key",
    "MINIO_UPDATE_MINISIGN_PUBKEY": "RWTx5Zr1tiHQLwG9keckT0c45M3AGeHD6IvimQHpyRywVWGbP1aVSGav",
    "MINIO_CONFIG_ENV_FILE": "config.env",
    "MC_CONFIG_DIR": "/tmp/.mc",
}
# MinIO's built-in policies (every deployment has them; not made by the bootstrap).
MINIO_BUILTIN_POLICIES = frozenset({"consoleAdmin", "diagnostics", "readonly", "readwrite", "writeonly"})


def engine_binary(name: str) -> Path:
    """engine/bin/<name> (the MinIO server and client are built from their Go modules by engine/build.sh)."""
    path = ENGINE_BIN / name
    if not os.access(path, os.X_OK):
        raise ServiceError(f"{path} is missing: build it with `make engine` (engine/build.sh)")
    return path


def mc_resolve(host_map: Mapping[str, str], port: int) -> str:
    """``MC_RESOLVE`` (mc's own ``--resolve HOST:PORT=IP``, like curl's) for the names of a DNS-shim map:
    Go programs resolve names themselves, so the Python shim cannot reach them; mc dials the address
    and keeps the name for TLS (SNI, certificate check). Entries that change the port are left out."""
    entries = []
    for name, target in host_map.items():
        host, _, mapped = target.partition(":")
        name_host, _, name_port = name.partition(":")
        if (mapped and int(mapped) != int(name_port or port)) or (name_port and int(name_port) != port):
            continue
        entries.append(f"{name_host}:{port}={host}")
    return ",".join(entries)


def mc_env(
    workdir: Path | str,
    *,
    endpoint: str,
    access_key: str,
    secret_key: str,
    ca_pem: str,
    resolve: str = "",
    alias: str = "it",
) -> dict[str, str]:
    """Environment for the real ``mc`` against ``endpoint`` (https://name:port) as one key pair, trusting
    ``ca_pem`` (``$MC_CONFIG_DIR/certs/CAs``, where mc looks for extra CAs); ``resolve``: MC_RESOLVE."""
    from urllib.parse import quote

    config = Path(workdir) / f"mc-{access_key}"
    (config / "certs" / "CAs").mkdir(parents=True, exist_ok=True)
    (config / "certs" / "CAs" / "ca.crt").write_text(ca_pem)
    scheme, _, hostport = endpoint.partition("://")
    env = base_env(Path(workdir), MC_CONFIG_DIR=str(config), NO_COLOR="1")
    env["PATH"] = SYSTEM_PATH
    env[f"MC_HOST_{alias}"] = f"{scheme}://{quote(access_key, safe='')}:{quote(secret_key, safe='')}@{hostport}"
    if resolve:
        env["MC_RESOLVE"] = resolve
    return env


def run_mc(args: list[str], env: Mapping[str, str], *, timeout: float = 60, check: bool = True) -> Any:
    """The real ``mc`` (engine/bin/mc) with ``env`` (:func:`mc_env`); ``--json`` output is parsed
    (one document per line; a list when there are several). Raises :class:`ServiceError` with mc's own
    message on a failure when ``check``; otherwise returns the CompletedProcess."""
    argv = [str(engine_binary("mc")), *args]
    proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if not check:
        return proc
    if proc.returncode != 0:
        raise ServiceError(f"mc {shlex.join(args)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    if "--json" not in args:
        return proc.stdout
    docs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return docs[0] if len(docs) == 1 else docs


@dataclass
class MinioServer:
    """A running MinIO (the real server) and what the harness needs to inspect it as its operator."""

    host: str  # the loopback address it listens on
    port: int
    server_name: str  # the name clients use (in URLs; the certificate's SAN)
    root_user: str
    root_password: str
    ca_pem: str  # the CA of its certificate (the harness's own clients trust it)
    workdir: Path
    log_path: Path
    prepared: PreparedContainer | None = None
    process: ManagedProcess | None = field(default=None, repr=False)

    def endpoint_url(self, name: str | None = None) -> str:
        return f"https://{name or self.server_name}:{self.port}"

    @property
    def mc_resolve(self) -> str:
        """MC_RESOLVE for a Go client of this server (its name -> its address)."""
        return mc_resolve({self.server_name: self.host}, self.port)

    def client(
        self,
        *,
        endpoint_name: str | None = None,
        ca_file: str | bool | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        signature_version: str | None = None,
    ):
        """boto3 S3 client for ``https://<endpoint_name>:<port>`` (resolve the name via
        :func:`dns_patched`); the root key pair unless told otherwise (the harness as the operator)."""
        import boto3
        from botocore.config import Config

        if ca_file is None:
            ca_file = str(self.workdir / "harness-ca.crt")
            Path(ca_file).write_text(self.ca_pem)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url(endpoint_name),
            aws_access_key_id=access_key or self.root_user,
            aws_secret_access_key=secret_key or self.root_password,
            region_name=region,
            verify=ca_file,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=5,
                read_timeout=60,
                **({"signature_version": signature_version} if signature_version else {}),
            ),
        )

    def mc(
        self,
        *args: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> Any:
        """The real ``mc`` against this server (alias ``it``), as root unless another key pair is given."""
        env = mc_env(
            self.workdir / "mc",
            endpoint=self.endpoint_url(),
            access_key=access_key or self.root_user,
            secret_key=secret_key or self.root_password,
            ca_pem=self.ca_pem,
            resolve=self.mc_resolve,
        )
        return run_mc(list(args), env, timeout=timeout, check=check)

    def state(self) -> dict:
        """What a bootstrap makes, read back through MinIO's admin API and S3 as root: buckets (with their
        region), users (status and attached policies) and the non-built-in policies' documents."""
        buckets = {}
        for entry in _as_list(self.mc("ls", "--json", "it")):
            name = entry["key"].rstrip("/")
            location = self.mc("stat", "--json", f"it/{name}").get("location", "")
            buckets[name] = {"region": location}
        users = {}
        for entry in _as_list(self.mc("admin", "user", "list", "--json", "it")):
            if "accessKey" in entry:
                users[entry["accessKey"]] = {
                    "status": entry.get("userStatus"),
                    "policies": sorted(filter(None, (entry.get("policyName") or "").split(","))),
                }
        policies = {}
        for entry in _as_list(self.mc("admin", "policy", "list", "--json", "it")):
            name = entry.get("policy")
            if name and name not in MINIO_BUILTIN_POLICIES:
                document = self.mc("admin", "policy", "info", "--json", "it", name)["policyInfo"]["Policy"]
                policies[name] = _canonical_policy(document)
        return {"buckets": buckets, "users": users, "policies": policies}


def _canonical_policy(document: dict) -> dict:
    """A policy document with its sets in one order (MinIO returns actions and resources as sets)."""
    statements = []
    for statement in document.get("Statement", []):
        st = dict(statement)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in st:
                st[key] = sorted(st[key]) if isinstance(st[key], list) else [st[key]]
        statements.append(st)
    return {**document, "Statement": sorted(statements, key=lambda st: json.dumps(st, sort_keys=True))}


def _as_list(docs: Any) -> list:
    if isinstance(docs, list):
        return docs
    return [] if docs in (None, "") else [docs]


def _env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def _readiness_tls_context() -> ssl.SSLContext:
    """Readiness polls only ask "is it up?"; every test verifies certificates for real."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _https_status(address: str, port: int, path: str, timeout: float = 3) -> int:
    conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=_readiness_tls_context())
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def with_claim_volumes(pod_spec: dict, claim_templates: list[dict]) -> dict:
    """The pod of a StatefulSet replica: its volumeClaimTemplates become volumes (empty directories here)."""
    volumes = [
        *(pod_spec.get("volumes") or []),
        *({"name": t["metadata"]["name"], "emptyDir": {}} for t in claim_templates),
    ]
    return {**pod_spec, "volumes": volumes}


def prepare_minio_container(
    container: dict,
    pod_spec: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    workdir: Path,
    host_map: Mapping[str, str] | None = None,
) -> PreparedContainer:
    """The MinIO container as the image runs it: its ENTRYPOINT (docker-entrypoint.sh -> ``minio "$@"``)
    is engine/bin/minio, its ENV under the container's, volumes materialised (see prepare_container)."""
    files = files_by_mount_from_pod(pod_spec, container, secrets=secrets, config_maps=config_maps)
    return prepare_container(
        {**container, "command": [str(engine_binary("minio"))]},
        secrets=secrets,
        config_maps=config_maps,
        files_by_mount=files,
        host_map=host_map or {},
        workdir=workdir,
        image_env=MINIO_IMAGE_ENV,
    )


@contextlib.contextmanager
def minio_server_from_container(
    container: dict,
    pod_spec: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    workdir: Path | str,
    listen_addr: str,
    server_name: str,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    host_map: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[MinioServer]:
    """Run a (single-server) MinIO container spec for real: its exact args and env, its certificate
    directory, its root-credentials env file (``MINIO_CONFIG_ENV_FILE``). The one change to the command
    line: ``--address :PORT`` binds ``listen_addr`` (pods bind every interface). Waits for the
    readinessProbe path; yields a :class:`MinioServer` (clients reach it at ``server_name``)."""
    workdir = Path(workdir)
    prepared = prepare_minio_container(
        container, pod_spec, secrets=secrets, config_maps=config_maps, workdir=workdir, host_map=host_map
    )
    argv = list(prepared.argv)
    i = argv.index("--address") + 1
    port = int(argv[i].rsplit(":", 1)[1])
    argv[i] = f"{listen_addr}:{port}"
    prepared.argv = argv
    _require_free(listen_addr, port, "minio")
    root = _env_file(Path(prepared.env["MINIO_CONFIG_ENV_FILE"]).read_text())
    certs = Path(argv[argv.index("--certs-dir") + 1])
    probe = ((container.get("readinessProbe") or {}).get("httpGet") or {}).get("path", "/minio/health/ready")
    log_path = workdir / "minio.log"
    proc = ManagedProcess("minio", argv, env=prepared.env, log_path=log_path, cwd=workdir)
    try:
        _wait_until(
            lambda: _https_status(listen_addr, port, probe) == 200,
            timeout=timeout,
            what="minio",
            logs=(log_path,),
            alive=proc.alive,
        )
        yield MinioServer(
            host=listen_addr,
            port=port,
            server_name=server_name,
            root_user=root["MINIO_ROOT_USER"],
            root_password=root["MINIO_ROOT_PASSWORD"],
            ca_pem=(certs / "CAs" / "ca.crt").read_text(),
            workdir=workdir,
            log_path=log_path,
            prepared=prepared,
            process=proc,
        )
    finally:
        proc.stop()


def minio_spec(*, cert_pem: str, key_pem: str, ca_pem: str, root_user: str, root_password: str, port: int = 9000):
    """A MinIO container, pod and Secrets in the shape components/minio_store.py renders (one server), for
    tests that do not render a stack: (container, pod_spec, secrets)."""
    container = {
        "name": "minio",
        "args": ["server", "--address", f":{port}", "--certs-dir", "/etc/minio/certs", "/data"],
        "env": [
            {"name": "MINIO_CONFIG_ENV_FILE", "value": "/etc/minio/config/config.env"},
            {"name": "MINIO_BROWSER", "value": "off"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": port, "scheme": "HTTPS"}},
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "certs", "mountPath": "/etc/minio/certs", "readOnly": True},
            {"name": "config", "mountPath": "/etc/minio/config", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "containers": [container],
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {
                "name": "certs",
                "secret": {
                    "secretName": "minio-tls",
                    "items": [
                        {"key": "tls.crt", "path": "public.crt"},
                        {"key": "tls.key", "path": "private.key"},
                        {"key": "ca.crt", "path": "CAs/ca.crt"},
                    ],
                },
            },
            {"name": "config", "secret": {"secretName": "minio-root"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    secrets = {
        "minio-tls": {"tls.crt": cert_pem, "tls.key": key_pem, "ca.crt": ca_pem},
        "minio-root": {"config.env": f"MINIO_ROOT_USER={root_user}\nMINIO_ROOT_PASSWORD={root_password}\n"},
    }
    return container, pod, secrets


# --------------------------------------------------------------------------- distributed MinIO (namespaces)

CLUSTER_SUBNET = "10.99.0"  # inside the cluster's own network namespace: reaches nothing else


def namespaces_unavailable() -> str | None:
    """Why this process cannot give processes their own network and mount namespaces (None if it can):
    a distributed MinIO needs them (see :func:`minio_cluster`)."""
    if os.geteuid() != 0:
        return "needs root (each MinIO server gets its own network and mount namespace)"
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if not shutil.which(tool, path=SYSTEM_PATH):
            return f"needs {tool} (util-linux / iproute2)"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "true"], env={"PATH": SYSTEM_PATH}, capture_output=True, text=True, timeout=10
    )
    if probe.returncode != 0:
        return f"unshare --net --mount refused: {probe.stderr.strip()}"
    return None


@dataclass
class MinioNode:
    index: int
    name: str  # minio-<i>.minio-hl.<namespace>.svc
    address: str
    process: ManagedProcess
    log_path: Path


@dataclass
class MinioCluster:
    """A distributed MinIO: one process per StatefulSet replica, each in its own network namespace (so
    that only its own name resolves to a local address, as in its pod) and mount namespace (its drive is
    a filesystem of its own, its ``/etc/hosts`` the cluster's names), all on one bridge in a network
    namespace of their own: nothing outside can reach them or be reached. The harness reaches them from
    that network (:meth:`run`)."""

    nodes: list[MinioNode]
    hub: ManagedProcess
    port: int
    service_name: str  # minio.<namespace>.svc (the Service: node 0 here)
    host_map: dict[str, str]
    hosts_file: Path
    root_user: str
    root_password: str
    ca_pem: str
    prepared: PreparedContainer
    workdir: Path

    def run(self, argv: list[str], *, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command in the cluster's network, with the cluster's names in its /etc/hosts."""
        script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
        wrapped = [
            "nsenter",
            f"--net=/proc/{self.hub.pid}/ns/net",
            "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(self.hosts_file),
            *argv,
        ]
        return subprocess.run(wrapped, env=dict(env), capture_output=True, text=True, timeout=timeout)

    def mc(self, *args: str, check: bool = True, timeout: float = 60) -> Any:
        """The real ``mc`` as root, alias ``it`` = the Service's name."""
        env = mc_env(
            self.workdir / "mc",
            endpoint=f"https://{self.service_name}:{self.port}",
            access_key=self.root_user,
            secret_key=self.root_password,
            ca_pem=self.ca_pem,
        )
        proc = self.run([str(engine_binary("mc")), *args], env=env, timeout=timeout)
        if not check:
            return proc
        if proc.returncode != 0:
            raise ServiceError(f"mc {shlex.join(args)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
        docs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()] if "--json" in args else []
        return docs[0] if len(docs) == 1 else (docs or proc.stdout)

    def python(self, code: str, *, env: Mapping[str, str] | None = None, timeout: float = 120) -> Any:
        """Run ``code`` with the venv python in the cluster's network (the DNS shim maps the cluster's
        names); returns its last JSON line."""
        script = self.workdir / f"client-{time.monotonic_ns()}.py"
        script.write_text(code)
        child = base_env(self.workdir, **(env or {}))
        child.update(shim_env(self.host_map, strict=False))
        proc = self.run([str(VENV_BIN / "python"), str(script)], env=child, timeout=timeout)
        if proc.returncode != 0:
            raise ServiceError(f"cluster client: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        return last_json_line(proc.stdout)

    def kill(self, index: int) -> None:
        """SIGKILL one server (its process group), like a node lost at once."""
        node = self.nodes[index]
        node.process._signal_group(signal.SIGKILL)
        node.process.popen.wait(10)


def _ip(netns_pid: int, *args: str) -> None:
    _run(
        ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "ip", *args],
        what="ip",
        log_path=Path(os.devnull),
        timeout=10,
        env={"PATH": SYSTEM_PATH},
    )


def _netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


@contextlib.contextmanager
def minio_cluster(
    container: dict,
    pod_spec: dict,
    *,
    replicas: int,
    namespace: str,
    secrets: Mapping[str, Mapping[str, str]],
    workdir: Path | str,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    drive_size: str = "512m",
    timeout: float = 120,
) -> Iterator[MinioCluster]:
    """Run a distributed MinIO StatefulSet container, one process per replica, with its exact args (the
    ``https://minio-{0...N-1}.<headless>.<namespace>.svc:PORT/data`` endpoints, ``--address :PORT``
    unchanged: each binds its own namespace's interfaces) and env. Deviations: the drive path in the
    endpoints is rewritten like every mountPath, and each replica's drive is a tmpfs of ``drive_size``
    (its PVC: a filesystem of its own, which MinIO requires of an erasure-coded drive). Needs root
    (:func:`namespaces_unavailable`)."""
    reason = namespaces_unavailable()
    if reason:
        raise ServiceError(f"minio cluster: {reason}")
    workdir = Path(workdir)
    prepared = prepare_minio_container(container, pod_spec, secrets=secrets, config_maps=config_maps, workdir=workdir)
    argv = list(prepared.argv)
    endpoints = argv[-1]
    parts = urlsplit(endpoints)
    data_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    if parts.path != data_mount:
        raise ServiceError(f"minio cluster: endpoints {endpoints!r} do not serve the data volume {data_mount}")
    drive = prepared.path_map[data_mount]
    argv[-1] = endpoints[: -len(parts.path)] + drive
    prepared.argv = argv
    port = parts.port or 443
    pattern = re.fullmatch(r"(.*)\{0\.\.\.(\d+)\}(.*)", parts.hostname or "")
    if not pattern or int(pattern[2]) != replicas - 1:
        raise ServiceError(f"minio cluster: {endpoints!r} is not an ellipsis over {replicas} servers")
    names = [f"{pattern[1]}{i}{pattern[3]}" for i in range(replicas)]
    service_name = f"minio.{namespace}.svc"
    addresses = [f"{CLUSTER_SUBNET}.{i + 1}" for i in range(replicas)]
    host_map = {**dict(zip(names, addresses, strict=True)), service_name: addresses[0]}
    hosts_file = workdir / "hosts"
    hosts_file.write_text(
        "127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, address in host_map.items())
    )
    root = _env_file(Path(prepared.env["MINIO_CONFIG_ENV_FILE"]).read_text())
    certs = Path(argv[argv.index("--certs-dir") + 1])
    scratch = prepared.path_map.get("/tmp")
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    hub_script = (
        f"ip link set lo up && ip link add br0 type bridge && ip addr add {CLUSTER_SUBNET}.254/24 dev br0 "
        "&& ip link set br0 up && echo hub-ready && exec sleep 86400"
    )
    hub = ManagedProcess(
        "netns-hub", ["unshare", "--net", "sh", "-c", hub_script], env=env, log_path=workdir / "hub.log"
    )
    nodes: list[MinioNode] = []
    try:
        _wait_until(
            lambda: "hub-ready" in (workdir / "hub.log").read_text(), timeout=10, what="network", alive=hub.alive
        )
        own = _netns_of(os.getpid())
        for i, (name, address) in enumerate(zip(names, addresses, strict=True)):
            node_dir = workdir / f"node-{i}"
            (node_dir / "tmp").mkdir(parents=True, exist_ok=True)
            go = node_dir / "go"
            # In its own namespaces: wait until its network is plugged, then its drive, hosts and /tmp.
            script = (
                'while [ ! -e "$1" ]; do sleep 0.05; done; '
                'mount -t tmpfs -o "size=$2,mode=0700" "minio-drive-$3" "$4" && '
                'mount --bind "$5" /etc/hosts && '
                + (f'mount --bind "$6" {shlex.quote(scratch)} && ' if scratch else "")
                + 'shift 6 && exec "$@"'
            )
            node_argv = ["unshare", "--net", "--mount", "sh", "-c", script, "sh", str(go), drive_size, str(i)]
            node_argv += [drive, str(hosts_file), str(node_dir / "tmp"), *argv]
            log_path = workdir / f"minio-{i}.log"
            proc = ManagedProcess(f"minio-{i}", node_argv, env=prepared.env, log_path=log_path, cwd=node_dir)
            nodes.append(MinioNode(i, name, address, proc, log_path))
            _wait_until(
                lambda proc=proc: _netns_of(proc.pid) != own,  # type: ignore[misc]
                timeout=10,
                what=f"minio-{i} namespace",
            )
            _ip(hub.pid, "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0", "netns", str(proc.pid))
            _ip(hub.pid, "link", "set", f"veth{i}", "master", "br0", "up")
            _ip(proc.pid, "link", "set", "lo", "up")
            _ip(proc.pid, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip(proc.pid, "link", "set", "eth0", "up")
            go.touch()
        cluster = MinioCluster(
            nodes=nodes,
            hub=hub,
            port=port,
            service_name=service_name,
            host_map=host_map,
            hosts_file=hosts_file,
            root_user=root["MINIO_ROOT_USER"],
            root_password=root["MINIO_ROOT_PASSWORD"],
            ca_pem=(certs / "CAs" / "ca.crt").read_text(),
            prepared=prepared,
            workdir=workdir,
        )
        probe = ((container.get("readinessProbe") or {}).get("httpGet") or {}).get("path", "/minio/health/ready")

        def all_ready() -> bool:
            curl = [
                "python3",
                "-c",
                "import http.client, ssl, sys\n"
                "ctx = ssl._create_unverified_context()\n"
                "for host in sys.argv[2:]:\n"
                "    c = http.client.HTTPSConnection(host, int(sys.argv[1]), timeout=3, context=ctx)\n"
                f"    c.request('GET', {probe!r})\n"
                "    assert c.getresponse().status == 200, host\n",
                str(port),
                *addresses,
            ]
            return cluster.run(curl, env=env, timeout=30).returncode == 0

        logs = tuple(n.log_path for n in nodes)
        alive = lambda: all(n.process.alive() for n in nodes)  # noqa: E731
        _wait_until(all_ready, timeout=timeout, what="minio cluster", logs=logs, alive=alive, interval=1.0)

        # Ready answers before the servers agreed on the erasure set: wait until every one is online.
        def online() -> bool:
            info = cluster.mc("admin", "info", "--json", "it")["info"]
            return info["mode"] == "online" and {s.get("state") for s in info["servers"]} == {"online"}

        _wait_until(
            online,
            timeout=timeout,
            what="minio cluster online",
            logs=logs,
            alive=alive,
            interval=1.0,
        )
        yield cluster
    finally:
        for node in nodes:
            node.process.stop()
        hub.stop()


# --------------------------------------------------------------------------- ingress stand-in

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass
class IngressProxy:
    host: str
    port: int
    log_path: Path
    requests_seen: list = field(default_factory=list)
    # (method, path, Host header) of each request, as the client sent it (passed through upstream as is).
    hosts_seen: list = field(default_factory=list)
    # Body bytes that went through, per direction (request bodies in, response bodies out).
    bytes_in: int = 0
    bytes_out: int = 0


@contextlib.contextmanager
def ingress_proxy(
    workdir: Path | str,
    *,
    cert_pem: str,
    key_pem: str,
    upstream_address: str,
    upstream_port: int,
    upstream_server_name: str | None = None,
    upstream_ca_file: str | None = None,
    listen_addr: str = "127.0.0.5",
    port: int = 8443,
    deny_paths: tuple | list = (),
    timeout: float = 60,
) -> Iterator[IngressProxy]:
    """A minimal TLS-terminating reverse proxy standing in for the ingress controller (threads in
    this process). Passes the Host header through (like ingress-nginx), re-encrypts to the
    upstream when ``upstream_ca_file`` is given (verifying ``upstream_server_name``), and answers
    404 for paths in ``deny_paths`` (exact match, query ignored). Bodies are buffered: fine for
    test-sized artifacts, not a performance model."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _require_free(listen_addr, port, "ingress proxy")
    tls = workdir / "ingress-tls"
    tls.mkdir(exist_ok=True)
    (tls / "tls.crt").write_text(cert_pem)
    (tls / "tls.key").write_text(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls / "tls.crt", tls / "tls.key")
    upstream_ctx = ssl.create_default_context(cafile=upstream_ca_file) if upstream_ca_file else None
    log_path = workdir / "ingress.log"
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed below
    state = IngressProxy(listen_addr, port, log_path)
    counting = threading.Lock()
    denied = set(deny_paths)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            self.request.settimeout(timeout)
            self.request.do_handshake()
            super().setup()

        def log_message(self, fmt, *args):
            log.write(f"{self.address_string()} {fmt % args}\n")

        def _body(self) -> bytes | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def _reply(self, status: int, reason: str, headers: list, data: bytes) -> None:
            self.send_response(status, reason)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            # A HEAD answer has no body but tells the object's size (S3 HeadObject): keep upstream's.
            upstream_length = next((v for k, v in headers if k.lower() == "content-length"), None)
            self.send_header(
                "Content-Length", upstream_length if self.command == "HEAD" and upstream_length else str(len(data))
            )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _proxy(self):
            path = urlsplit(self.path).path
            state.requests_seen.append((self.command, path))
            state.hosts_seen.append((self.command, path, self.headers.get("Host", "")))
            body = self._body()
            with counting:
                state.bytes_in += len(body or b"")
            if path in denied:
                self._reply(404, "Not Found", [("Content-Type", "text/plain")], b"blocked by ingress\n")
                return
            raw = socket.create_connection((upstream_address, upstream_port), timeout=timeout)
            conn = http.client.HTTPConnection(upstream_address, upstream_port, timeout=timeout)
            conn.sock = upstream_ctx.wrap_socket(raw, server_hostname=upstream_server_name) if upstream_ctx else raw
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["X-Forwarded-For"] = self.client_address[0]
            headers["X-Forwarded-Proto"] = "https"
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                with counting:
                    state.bytes_out += len(data)
                self._reply(resp.status, resp.reason, resp.getheaders(), data)
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):  # e.g. client rejected our cert
            import traceback

            log.write(f"{client_address[0]} error: {traceback.format_exc(limit=2)}\n")

        def get_request(self):  # TLS handshake happens in the handler thread (setup)
            sock, addr = self.socket.accept()
            return server_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    httpd = Server((listen_addr, port), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="ingress-proxy", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        log.close()


# --------------------------------------------------------------------------- Kubernetes glue


def _objects_of_kind(objects: list[dict], kind: str, namespace: str | None) -> Iterator[tuple[str, dict]]:
    """(name, object) of every rendered object of `kind`, optionally in one namespace."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and (not namespace or meta.get("namespace") in (None, namespace)):
            yield meta.get("name"), obj  # type: ignore[misc]  # every rendered object has a name


def k8s_secrets(objects: list[dict], namespace: str | None = None) -> dict[str, dict[str, str]]:
    """{secret name: {key: value}} from rendered Secret dicts (base64 ``data`` decoded,
    ``stringData`` merged on top like the API server does)."""
    out: dict[str, dict[str, str]] = {}
    for name, obj in _objects_of_kind(objects, "Secret", namespace):
        values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        values.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        out.setdefault(name, {}).update(values)
    return out


def k8s_config_maps(objects: list[dict], namespace: str | None = None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, obj in _objects_of_kind(objects, "ConfigMap", namespace):
        out.setdefault(name, {}).update(obj.get("data") or {})
    return out


def files_by_mount_from_pod(
    pod_spec: dict,
    container: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, str] | str]:
    """Resolve a container's volumeMounts into the ``files_by_mount`` argument of
    :func:`mlflow_server_from_container`: secret/configMap (``items``, ``subPath``) and
    projected volumes become file contents; emptyDir and others become empty directories."""
    config_maps = config_maps or {}
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}

    def source_files(src_kind: str, src: dict) -> dict[str, str]:
        store = secrets if src_kind == "secret" else config_maps
        ref = src.get("secretName") if src_kind == "secret" else src.get("name")
        if ref not in store:
            if src.get("optional"):
                return {}
            raise KeyError(f"{src_kind} {ref!r} referenced by a volume is not rendered")
        data = store[ref]  # type: ignore[index]  # ref in store: a str
        if src.get("items"):
            return {item["path"]: data[item["key"]] for item in src["items"]}
        return dict(data)

    def volume_files(vol: dict) -> dict[str, str] | None:
        if "secret" in vol:
            return source_files("secret", vol["secret"])
        if "configMap" in vol:
            return source_files("configMap", vol["configMap"])
        if "projected" in vol:
            files: dict[str, str] = {}
            for src in vol["projected"].get("sources") or []:
                for kind in ("secret", "configMap"):
                    if kind in src:
                        s = dict(src[kind])
                        if kind == "secret":
                            s["secretName"] = s.get("name")
                        files.update(source_files(kind, s))
            return files
        return None  # emptyDir, hostPath, ...: an empty directory

    out: dict[str, dict[str, str] | str] = {}
    for mount in container.get("volumeMounts") or []:
        files = volume_files(volumes[mount["name"]])
        if files is None:
            continue
        if mount.get("subPath"):
            out[mount["mountPath"]] = files[mount["subPath"]]
        else:
            out[mount["mountPath"]] = files
    return out


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_k8s_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion (``$$`` escapes, unknown references are kept)."""

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, text)


def resolve_container_env(
    container: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    field_values: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a kubelet would give ``container`` (envFrom first, then env in order,
    with ``$(VAR)`` expansion against previously defined variables)."""
    config_maps = config_maps or {}
    field_values = field_values or {}
    env: dict[str, str] = {}

    def lookup(store: Mapping, kind: str, ref: dict) -> str | None:
        data = store.get(ref.get("name"))
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise KeyError(f"{kind} {ref.get('name')!r} key {ref.get('key')!r} is not rendered")
        return data[ref["key"]]

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            data = secrets.get(src["secretRef"]["name"])
        else:
            data = config_maps.get(src.get("configMapRef", {}).get("name"))
        if data is None:
            ref = src.get("secretRef") or src.get("configMapRef") or {}
            if ref.get("optional"):
                continue
            raise KeyError(f"envFrom source {ref.get('name')!r} is not rendered")
        env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand_k8s_vars(str(item["value"]), env)
            continue
        vf = item.get("valueFrom") or {}
        value: str | None
        if "secretKeyRef" in vf:
            value = lookup(secrets, "secret", vf["secretKeyRef"])
        elif "configMapKeyRef" in vf:
            value = lookup(config_maps, "configMap", vf["configMapKeyRef"])
        elif "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            if path not in field_values:
                raise KeyError(f"fieldRef {path!r}: pass it in field_values")
            value = field_values[path]
        elif not vf:
            value = ""
        else:
            raise NotImplementedError(f"env {name}: unsupported valueFrom {vf}")
        if value is not None:
            env[name] = value
    return env


# --------------------------------------------------------------------------- mlflow server


def _path_prefix_re(*mount_paths: str) -> re.Pattern:
    """Matches any of ``mount_paths`` as a whole path prefix (not inside a longer name)."""
    alternatives = "|".join(re.escape(m.rstrip("/")) for m in sorted(mount_paths, key=len, reverse=True))
    # Not inside a longer name ("a-/tmp" is not /tmp), but a shell default "${VAR:-/tmp/x}" is.
    return re.compile(r"(?<![A-Za-z0-9_.])(?<!(?<!:)-)(" + alternatives + r")(?=/|$|[^A-Za-z0-9_.\-/])")


def _rewrite(text: str, path_map: Mapping[str, str]) -> str:
    """Single pass, so rewritten text is never rewritten again."""
    if not path_map:
        return text
    normalized = {k.rstrip("/"): v.rstrip("/") for k, v in path_map.items()}
    return _path_prefix_re(*path_map).sub(lambda m: normalized[m.group(1)], text)


def _force_cli_option(argv: list[str], long: str, short: str | None, value: str) -> list[str]:
    """Set ``--long value`` in an ``mlflow server`` argv (replacing -s/--long/--long=)."""
    out: list[str] = []
    skip = False
    found = False
    for arg in argv:
        if skip:
            skip = False
            out.append(value)
            continue
        if arg == long or (short and arg == short):
            out.append(arg)
            skip = found = True
        elif arg.startswith(long + "="):
            out.append(f"{long}={value}")
            found = True
        else:
            out.append(arg)
    if not found:
        out += [long, value]
    return out


def _cli_option(argv: list[str], long: str, short: str | None = None) -> str | None:
    for i, arg in enumerate(argv):
        if (arg == long or (short and arg == short)) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


_PG_URI = re.compile(r"postgres(?:ql)?(?:\+\w+)?://(?:[^@/\s]*@)?([^:/?\s,]+)")


def postgres_hosts_in(*texts: str) -> set[str]:
    hosts: set[str] = set()
    for text in texts:
        hosts.update(h.lower() for h in _PG_URI.findall(text))
    return hosts


@dataclass
class PreparedContainer:
    """A container spec made runnable here: final argv/env, materialised volumes."""

    argv: list[str]
    env: dict[str, str]  # the full environment the process gets
    added_env: dict[str, str]  # infrastructure additions (subset of env), see module docstring
    root: Path  # temp root the volumeMounts were materialised under
    path_map: dict[str, str]  # mountPath -> host path

    def host_path(self, container_path: str) -> Path:
        """Where a file under a container mountPath was materialised."""
        return Path(_rewrite(container_path, self.path_map))


@dataclass
class MlflowServer(PreparedContainer):
    address: str = ""
    port: int = 0
    scheme: str = "http"
    log_path: Path = Path()
    process: ManagedProcess | None = field(default=None, repr=False)

    def url(self, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.address}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _write_mount(target: Path, content: Any, path_map: Mapping[str, str]) -> None:
    def write(path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(_rewrite(str(value), path_map))
        path.chmod(0o600)

    if content is None:
        target.mkdir(parents=True, exist_ok=True)
    elif isinstance(content, Mapping):
        target.mkdir(parents=True, exist_ok=True)
        for rel, value in content.items():
            write(target / rel, value)
    else:
        write(target, content)


def prepare_container(
    container: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    files_by_mount: Mapping[str, Any],
    host_map: Mapping[str, str],
    workdir: Path | str,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    field_values: Mapping[str, str] | None = None,
    deny: tuple | list = (),
    strict_dns: bool = True,
    pg_hostaddr: str | None = None,
    path_prepend: tuple | list = (),
    extra_env: Mapping[str, str] | None = None,
    image_env: Mapping[str, str] | None = None,
) -> PreparedContainer:
    """Resolve env (secretKeyRef/configMapKeyRef/fieldRef/envFrom, ``$(VAR)``), materialise
    volumes under ``<workdir>/rootfs`` and rewrite mountPaths, add the infrastructure env
    (venv PATH, DNS shim, PGHOSTADDR derived from the postgresql:// hosts + ``host_map``; when
    those hosts map to several addresses, e.g. a primary and its read replica, the shim's ``libpq``
    mode instead, which gives each psycopg2 connection the address of its own host).
    ``path_prepend`` puts directories (e.g. a binary the image ships) before the
    venv on PATH; ``extra_env`` adds variables the container does not set (refused if it does);
    both are listed in ``added_env``. ``image_env``: the image's ENV, which the container's own env
    overrides (mount paths rewritten like the rest; not listed in ``added_env``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "rootfs"
    mounts = container.get("volumeMounts") or []
    path_map = {m["mountPath"]: str(root) + m["mountPath"] for m in mounts}
    for m in mounts:
        _write_mount(Path(path_map[m["mountPath"]]), files_by_mount.get(m["mountPath"]), path_map)

    cenv = resolve_container_env(container, secrets=secrets, config_maps=config_maps, field_values=field_values)
    cenv = {**(image_env or {}), **cenv}
    argv = [expand_k8s_vars(a, cenv) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise ValueError("container has no command/args (image ENTRYPOINT is unknown here)")
    argv = [_rewrite(a, path_map) for a in argv]
    env = {k: _rewrite(v, path_map) for k, v in cenv.items()}
    leftovers = [
        p for p in path_map if any(_path_prefix_re(p).search(t.replace(str(root), "X")) for t in [*argv, *env.values()])
    ]
    if leftovers:
        raise ServiceError(f"mountPaths still referenced after rewriting: {leftovers}")

    added: dict[str, str] = {}
    run_env = dict(env)
    defaults = base_env(workdir)
    for key in ("HOME", "LANG", "PYTHONUNBUFFERED"):
        if key not in run_env:
            run_env[key] = added[key] = defaults[key]
    run_env["PATH"] = added["PATH"] = ":".join(
        [*map(str, path_prepend), (f"{VENV_BIN}:{env['PATH']}" if "PATH" in env else defaults["PATH"])]
    )
    for key, value in (extra_env or {}).items():  # e.g. MC_RESOLVE for mc
        if key in env:
            raise ServiceError(f"extra_env {key!r} would override the container's own env")
        run_env[key] = added[key] = value
    libpq_per_host = False
    if pg_hostaddr is None:
        texts = [*argv, *run_env.values()]
        texts += [f.read_text(errors="replace") for f in root.rglob("*") if f.is_file()] if root.exists() else []
        targets = set()
        for host in postgres_hosts_in(*texts):
            target = host_map.get(host)
            if target is None:
                raise ServiceError(f"postgres host {host!r} is not in host_map")
            targets.add(target.split(":")[0])
        # Several PostgreSQL names at several addresses (a primary and its read replica): libpq gets
        # one PGHOSTADDR only, so the shim gives each psycopg2 connection its host's address instead.
        libpq_per_host = len(targets) > 1
        pg_hostaddr = targets.pop() if len(targets) == 1 else None
    shim = shim_env(host_map, deny=deny, strict=strict_dns, pythonpath=env.get("PYTHONPATH"), libpq=libpq_per_host)
    for key, value in shim.items():
        run_env[key] = added[key] = value
    if pg_hostaddr and "PGHOSTADDR" not in env:
        run_env["PGHOSTADDR"] = added["PGHOSTADDR"] = pg_hostaddr
    return PreparedContainer(argv, run_env, added, root, path_map)


def run_container_job(
    container: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    files_by_mount: Mapping[str, Any],
    host_map: Mapping[str, str],
    workdir: Path | str,
    timeout: float = 180,
    check: bool = True,
    **prepare_kwargs: Any,
) -> tuple[PreparedContainer, int, str]:
    """Run a Job/initContainer container spec (e.g. ``mlflow db upgrade``) to completion.
    Returns (prepared, returncode, output); raises :class:`ServiceError` on timeout, or on a
    non-zero exit when ``check``."""
    workdir = Path(workdir)
    prepared = prepare_container(
        container, secrets=secrets, files_by_mount=files_by_mount, host_map=host_map, workdir=workdir, **prepare_kwargs
    )
    log_path = workdir / f"{container.get('name', 'job')}.log"
    proc = ManagedProcess(container.get("name", "job"), prepared.argv, env=prepared.env, log_path=log_path, cwd=workdir)
    try:
        rc = proc.popen.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        proc.stop()
        raise _error(f"{proc.name}: still running after {timeout}s", log_path) from exc
    proc.stop()
    output = log_path.read_text(errors="replace")
    if check and rc != 0:
        raise _error(f"{proc.name}: exit {rc}", log_path)
    return prepared, rc, output


@contextlib.contextmanager
def mlflow_server_from_container(
    container: dict,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    files_by_mount: Mapping[str, Any],
    host_map: Mapping[str, str],
    workdir: Path | str,
    listen_addr: str = "127.0.0.4",
    port: int | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    field_values: Mapping[str, str] | None = None,
    deny: tuple | list = (),
    strict_dns: bool = True,
    pg_hostaddr: str | None = None,
    timeout: float = 120,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[MlflowServer]:
    """Run a Kubernetes container spec's exact command/args/env (``mlflow`` = venv/bin/mlflow).

    ``files_by_mount``: {mountPath: {relative file: content}} for directory mounts, or
    {mountPath: content} for subPath (single file) mounts; mounts without an entry become empty
    directories (see :func:`files_by_mount_from_pod`). ``host_map``: the DNS shim map
    (``host -> ip`` / ``host:port -> ip:port``). ``--host`` is forced to ``listen_addr``
    (``--port`` only when ``port`` is given). Waits for the readinessProbe httpGet path
    (default ``/health``; HTTPS when the probe says so or uvicorn/gunicorn get a cert) and
    yields a :class:`MlflowServer`."""
    workdir = Path(workdir)
    prepared = prepare_container(
        container,
        secrets=secrets,
        files_by_mount=files_by_mount,
        host_map=host_map,
        workdir=workdir,
        config_maps=config_maps,
        field_values={"status.podIP": listen_addr, **(field_values or {})},
        deny=deny,
        strict_dns=strict_dns,
        pg_hostaddr=pg_hostaddr,
        extra_env=extra_env,
    )
    argv, env = list(prepared.argv), prepared.env

    # Bind to loopback only (pods use 0.0.0.0) -- the only change to the command line.
    if argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and "-c" in argv:
        i = argv.index("-c") + 1
        script = re.sub(r"(--host[= ]|-h )\S+", lambda m: m.group(1) + listen_addr, argv[i])
        if port is not None:
            script = re.sub(r"(--port[= ]|-p )\S+", lambda m: m.group(1) + str(port), script)
        argv[i] = script
        found = re.search(r"--port[= ](\d+)", script)
        effective_port = port or (int(found.group(1)) if found else int(env.get("MLFLOW_PORT", 5000)))
    else:
        argv = _force_cli_option(argv, "--host", "-h", listen_addr)
        if port is not None:
            argv = _force_cli_option(argv, "--port", "-p", str(port))
        effective_port = int(_cli_option(argv, "--port", "-p") or env.get("MLFLOW_PORT") or 5000)
    _require_free(listen_addr, effective_port, "mlflow server")

    probe = (
        (container.get("readinessProbe") or {}).get("httpGet")
        or (container.get("startupProbe") or {}).get("httpGet")
        or {}
    )
    joined = " ".join([*argv, env.get("MLFLOW_UVICORN_OPTS", ""), env.get("MLFLOW_GUNICORN_OPTS", "")])
    tls_on = "--ssl-certfile" in joined or "--certfile" in joined
    scheme = str(probe.get("scheme") or ("HTTPS" if tls_on else "HTTP")).lower()
    health_path = probe.get("path", "/health")

    log_path = workdir / "mlflow-server.log"
    proc = ManagedProcess("mlflow server", argv, env=env, log_path=log_path, cwd=workdir)
    server = MlflowServer(
        argv,
        env,
        prepared.added_env,
        prepared.root,
        prepared.path_map,
        address=listen_addr,
        port=effective_port,
        scheme=scheme,
        log_path=log_path,
        process=proc,
    )
    try:
        ctx = _readiness_tls_context()

        def ready() -> bool:
            conn: http.client.HTTPConnection
            if scheme == "https":
                conn = http.client.HTTPSConnection(listen_addr, effective_port, timeout=3, context=ctx)
            else:
                conn = http.client.HTTPConnection(listen_addr, effective_port, timeout=3)
            try:
                conn.request("GET", health_path)
                return conn.getresponse().status == 200
            finally:
                conn.close()

        _wait_until(ready, timeout=timeout, what="mlflow server", logs=(log_path,), alive=proc.alive, interval=0.5)
        yield server
    finally:
        proc.stop()
