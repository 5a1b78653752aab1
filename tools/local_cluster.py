"""A local Kubernetes control plane on loopback, from the binaries `make engine` builds into engine/bin.

    python -m tools.local_cluster up   [--dir DIR] [--api-port N]   start it, print how to use it
    python -m tools.local_cluster env  [--dir DIR]                  print `export KUBECONFIG=...`
    python -m tools.local_cluster down [--dir DIR]                  stop every process `up` started

What runs (each a process, logs in DIR/logs/<name>.log, pids in DIR/state.json):

* etcd (client TLS with client certificates, fsync off: the data is throw-away);
* kube-apiserver v1.36.3: TLS, client certificates from a CA generated here (``cryptography``),
  ``--authorization-mode=Node,RBAC``, service-account signing keys, the default admission plugins
  (PodSecurity included: ``pod-security.kubernetes.io/enforce`` labels are enforced for real);
* kube-controller-manager (``--controllers=*``: service accounts and their tokens, GC, namespace
  deletion, Job, Deployment/ReplicaSet, StatefulSet, PV binder, node lifecycle, ...);
* kube-scheduler;
* kwok: plays a kubelet for the fake node ``kwok-node-0`` (annotation ``kwok.x-k8s.io/node=fake``)
  with the Stage objects kwok ships (engine/bin/kwok-stages.yaml: node/fast,
  node/heartbeat-with-lease, pod/fast, volume/fast): pods become Running and Ready, pods owned by a
  Job Succeed, PVCs of StorageClass ``kwok-volume`` (the default class here) get a PV and bind.

No container runs: pods are status only. Python use::

    from tools import local_cluster
    with local_cluster.running(Path("build/cluster")) as cluster:
        cluster.kubectl("get", "nodes")
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import errno
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "engine" / "bin"
DEFAULT_DIR = ROOT / "build" / "cluster"
CONTEXT = "local-cluster"
NODE_NAME = "kwok-node-0"
STORAGE_CLASS = "kwok-volume"  # the class kwok's volume stages act on (kustomize/stage/volume/fast)
KUBERNETES_VERSION = "v1.36.3"
SERVICE_CIDR = "10.96.0.0/16"
HOST = "127.0.0.1"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
STAGES_FILE = "kwok-stages.yaml"
# The Gateway API CRDs (standard channel) engine/build.sh copies from sigs.k8s.io/gateway-api
# (pinned by engine/gateway-api/go.mod + go.sum) into engine/bin/crds/gateway-api/.
GATEWAY_API_VERSION = "v1.6.3"
GATEWAY_API_CRDS = Path("crds") / "gateway-api"
# Start order; `down` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": NODE_NAME,
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/role": "agent",
            "node-role.kubernetes.io/agent": "",
            "type": "kwok",
        },
    },
    "status": {
        "allocatable": {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "500Gi"},
        "capacity": {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "500Gi"},
    },
}

STORAGE_CLASS_OBJECT: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": STORAGE_CLASS,
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "kwok.x-k8s.io/volume",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
    "allowVolumeExpansion": True,
}


class ClusterError(RuntimeError):
    """The cluster could not start, or one of its processes died: the message says what to do."""


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def check_binaries(bin_dir: Path = BIN) -> None:
    for name in (*BINARIES, STAGES_FILE):
        path = bin_dir / name
        if not path.is_file() or (name != STAGES_FILE and not os.access(path, os.X_OK)):
            raise ClusterError(f"{_rel(path)} missing: run `make engine`")


def gateway_api_crds(bin_dir: Path = BIN) -> list[dict[str, Any]]:
    """The Gateway API standard-channel CustomResourceDefinitions in engine/bin/crds/gateway-api/ (what
    the manifest tests validate HTTPRoute/BackendTLSPolicy against and the live layer installs)."""
    directory = bin_dir / GATEWAY_API_CRDS
    files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    if not files:
        raise ClusterError(f"{_rel(directory)}/ has no Gateway API CRDs: run `make engine`")
    crds = [doc for path in files for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for crd in crds:
        annotations = crd.get("metadata", {}).get("annotations") or {}
        found = (crd.get("kind"), annotations.get("gateway.networking.k8s.io/bundle-version"))
        if found != ("CustomResourceDefinition", GATEWAY_API_VERSION):
            raise ClusterError(
                f"{_rel(directory)}: {crd.get('metadata', {}).get('name')} is {found}, not a "
                f"{GATEWAY_API_VERSION} CustomResourceDefinition: run `make engine`"
            )
    return crds


def install_gateway_api(cluster: Cluster, bin_dir: Path = BIN, timeout: float = 60) -> list[str]:
    """Apply the Gateway API CRDs (server-side: they are too large for client-side apply's annotation)
    and wait until each is Established; returns their names."""
    crds = gateway_api_crds(bin_dir)
    cluster.apply(*crds)
    names = [crd["metadata"]["name"] for crd in crds]
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={int(timeout)}s",
        *[f"crd/{n}" for n in names],
        timeout=timeout + 30,
    )
    return names


# --- PKI -------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class _CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        name.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


def _new_ca(common_name: str = "local-cluster-ca") -> _CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _CA(key, cert)


def _make_pki(pki: Path) -> None:
    """CA, serving certificates, one client certificate per identity, service-account keys."""
    ca = _new_ca()
    _write(pki / "ca.crt", _cert_pem(ca.cert), 0o644)
    _write(pki / "ca.key", _key_pem(ca.key))
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    api_dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    api_dns.append("kubernetes.default.svc.cluster.local")
    issued = {
        # name: (CN, O, server, client, ips, dns)
        "etcd": ("etcd", (), True, True, [HOST], ["localhost"]),
        "apiserver": ("kube-apiserver", (), True, False, [HOST, service_ip], api_dns),
        "apiserver-etcd-client": ("kube-apiserver-etcd-client", (), False, True, [], []),
        "controller-manager-serving": ("kube-controller-manager", (), True, False, [HOST], ["localhost"]),
        "scheduler-serving": ("kube-scheduler", (), True, False, [HOST], ["localhost"]),
        "admin": ("local-cluster-admin", ("system:masters",), False, True, [], []),
        "controller-manager": ("system:kube-controller-manager", (), False, True, [], []),
        "scheduler": ("system:kube-scheduler", (), False, True, [], []),
        "kwok": ("kwok-controller", ("system:masters",), False, True, [], []),
    }
    for name, (cn, orgs, server, client, ips, dns) in issued.items():
        cert, key = ca.issue(cn, organizations=orgs, server=server, client=client, ips=ips, dns=dns)
        _write(pki / f"{name}.crt", cert, 0o644)
        _write(pki / f"{name}.key", key)
    # Request-header (front proxy) CA: the apiserver publishes it in kube-system/extension-apiserver-
    # authentication, which the controller-manager and scheduler read for their delegated authentication.
    front_proxy = _new_ca("local-cluster-front-proxy-ca")
    _write(pki / "front-proxy-ca.crt", _cert_pem(front_proxy.cert), 0o644)
    cert, key = front_proxy.issue("front-proxy-client", client=True)
    _write(pki / "front-proxy-client.crt", cert, 0o644)
    _write(pki / "front-proxy-client.key", key)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki / "sa.key", _key_pem(sa))
    _write(
        pki / "sa.pub",
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )


def _kubeconfig(server: str, pki: Path, user: str) -> str:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": b64(pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": f"{CONTEXT}-{user}",
                    "user": {
                        "client-certificate-data": b64(pki / f"{user}.crt"),
                        "client-key-data": b64(pki / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-{user}"}}],
            "current-context": CONTEXT,
        },
        sort_keys=False,
    )


# --- processes --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise ClusterError(
                f"{HOST}:{port} ({what}) is already in use: stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'`) or pick another port (--api-port 0 picks a free one)"
            ) from None


def _pid_alive(pid: int, exe: str | None = None) -> bool:
    """True while `pid` runs (a zombie counts as dead) and, given `exe`, is still that program."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "ZX":
            return False
        if exe is not None:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            return argv0 == exe
        return True
    except (OSError, ValueError, IndexError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Process:
    name: str
    pid: int
    exe: str
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid, self.exe)

    def how_it_ended(self) -> str:
        rc = self.popen.returncode if self.popen is not None else None
        if rc is None:
            return f"{self.name} (pid {self.pid})"
        return f"{self.name} (pid {self.pid}, {f'killed by signal {-rc}' if rc < 0 else f'exit code {rc}'})"

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            if self.popen is not None:
                self.popen.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.popen is not None:
            self.popen.wait()


@dataclass
class Cluster:
    """A running control plane. `kubeconfig` holds an admin (system:masters) client certificate."""

    dir: Path
    server: str
    kubeconfig: Path
    context: str
    bin_dir: Path
    ports: dict[str, int]
    processes: dict[str, Process]
    start_seconds: float = 0.0

    # -- use

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at this cluster (for subprocesses)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run engine/bin/kubectl against this cluster; with check, a failure raises ClusterError
        (carrying the log tail of any control-plane process that died)."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), "--context", self.context]
        result = subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            self.check_alive()
            raise ClusterError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def apply(self, *objects: Mapping[str, Any] | str) -> subprocess.CompletedProcess[str]:
        """kubectl apply (server-side) of objects (dicts) or YAML text."""
        docs = [o if isinstance(o, str) else yaml.safe_dump(dict(o)) for o in objects]
        args = ("apply", "--server-side", "--force-conflicts", "--field-manager=local-cluster", "-f", "-")
        return self.kubectl(*args, input="\n---\n".join(docs))

    def get_json(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def api(self, path: str, timeout: float = 10) -> Any:
        """GET an API path (e.g. /version, /api/v1/nodes) as the admin; JSON parsed, else text."""
        with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=timeout) as resp:
            body = resp.read().decode()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(self.dir / "pki" / "admin.crt", self.dir / "pki" / "admin.key")
        return ctx

    def log_tail(self, name: str, lines: int = 30) -> str:
        """Last lines of a component's log (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)."""
        return _tail(self.dir / "logs" / f"{name}.log", lines)

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if not p.alive()]

    def describe_dead(self, names: Sequence[str]) -> str:
        """`names` with how each ended, then the tail of each one's log."""
        return ", ".join(self.processes[n].how_it_ended() for n in names) + "".join(
            f"\n--- tail of {self.dir / 'logs' / n}.log ---\n{self.log_tail(n)}" for n in names
        )

    def check_alive(self) -> None:
        """Raise ClusterError with the log tails of the processes that are no longer running."""
        dead = self.dead()
        if dead:
            raise ClusterError("local cluster process(es) died: " + self.describe_dead(dead))

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    # -- lifecycle

    def stop(self) -> list[str]:
        """Stop every process (reverse start order); returns the names of those that had died before."""
        died = self.dead()
        for name in reversed(COMPONENTS):
            if name in self.processes:
                self.processes[name].stop()
        state = self.dir / "state.json"
        if state.exists():
            state.unlink()
        return died

    def _save(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "context": self.context,
            "bin_dir": str(self.bin_dir),
            "ports": self.ports,
            "start_seconds": round(self.start_seconds, 2),
            "processes": {n: {"pid": p.pid, "exe": p.exe, "log": str(p.log)} for n, p in self.processes.items()},
        }
        _write(self.dir / "state.json", json.dumps(state, indent=2).encode(), 0o644)


def attach(workdir: Path = DEFAULT_DIR) -> Cluster:
    """The cluster `up` started in workdir (from its state.json)."""
    workdir = Path(workdir).resolve()
    try:
        state = json.loads((workdir / "state.json").read_text())
    except FileNotFoundError:
        raise ClusterError(f"no local cluster in {_rel(workdir)}: start one with `make cluster`") from None
    procs = {n: Process(n, int(p["pid"]), str(p["exe"]), Path(p["log"])) for n, p in state["processes"].items()}
    return Cluster(
        dir=workdir,
        server=state["server"],
        kubeconfig=Path(state["kubeconfig"]),
        context=state["context"],
        bin_dir=Path(state["bin_dir"]),
        ports={k: int(v) for k, v in state["ports"].items()},
        processes=procs,
        start_seconds=float(state.get("start_seconds", 0)),
    )


def _spawn(cluster: Cluster, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    exe = str(cluster.bin_dir / name)
    log = cluster.dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cluster.dir,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # a Ctrl-C in the terminal that ran `up` does not reach it
        )
    cluster.processes[name] = Process(name, popen.pid, exe, log, popen)
    cluster._save()


def _wait(cluster: Cluster, what: str, ready: Any, deadline: float, names: Sequence[str]) -> None:
    """Poll ready() until true; a dead process or the deadline raises ClusterError."""
    last: object = None
    while True:
        for n in names:
            if not cluster.processes[n].alive():
                if "address already in use" in cluster.log_tail(n, 60):
                    raise ClusterError(
                        f"{n}: a port it was given ({_ports_of(cluster, n)}) was taken by another process "
                        f"before it bound: run it again (free ports are chosen at each start); log: "
                        f"{cluster.dir / 'logs' / n}.log"
                    )
                cluster.check_alive()
        try:
            if ready():
                return
        except Exception as e:  # noqa: BLE001 - not ready yet, whatever the reason; reported at timeout
            last = e
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- tail of {n}.log ---\n{cluster.log_tail(n)}" for n in names)
            raise ClusterError(f"timed out waiting for {what} (last error: {last}){tails}")
        time.sleep(0.2)


def _ports_of(cluster: Cluster, name: str) -> str:
    prefix = {"kube-apiserver": "apiserver", "kube-controller-manager": "controller-manager"}.get(name, name)
    prefix = prefix.removeprefix("kube-")
    return ", ".join(f"{k}={v}" for k, v in cluster.ports.items() if k.startswith(prefix)) or "?"


def _https_ok(url: str, cafile: Path, cert: tuple[Path, Path] | None = None) -> bool:
    ctx = ssl.create_default_context(cafile=str(cafile))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


def start(workdir: Path = DEFAULT_DIR, *, api_port: int = 0, bin_dir: Path = BIN, timeout: float = 180.0) -> Cluster:
    """Start the control plane in workdir (wiped of any previous cluster's data, logs overwritten);
    return once the API is ready, the node Ready and the default ServiceAccount exists.
    Processes run in their own sessions: they outlive this Python process until `stop()`/`down`."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    check_binaries(bin_dir)
    workdir = Path(workdir).resolve()
    if (workdir / "state.json").exists():
        old = attach(workdir)
        alive = {n: p.pid for n, p in old.processes.items() if p.alive()}
        if alive:
            raise ClusterError(
                f"a local cluster is already running in {_rel(workdir)} (pids {alive}): "
                f"stop it with `python -m tools.local_cluster down --dir {_rel(workdir)}` (or `make cluster-down`)"
            )
    for stale in ("etcd-data", "pki", "kwok-home"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    _make_pki(pki)

    if api_port:
        _check_port_free(api_port, "kube-apiserver --secure-port")
    ports = {
        "apiserver": api_port or _free_port(),
        "etcd-client": _free_port(),
        "etcd-peer": _free_port(),
        "controller-manager": _free_port(),
        "scheduler": _free_port(),
    }
    server = f"https://{HOST}:{ports['apiserver']}"
    kubeconfig = workdir / "kubeconfig"
    for user, path in (
        ("admin", kubeconfig),
        ("controller-manager", workdir / "controller-manager.kubeconfig"),
        ("scheduler", workdir / "scheduler.kubeconfig"),
        ("kwok", workdir / "kwok.kubeconfig"),
    ):
        _write(path, _kubeconfig(server, pki, user).encode())

    cluster = Cluster(
        dir=workdir,
        server=server,
        kubeconfig=kubeconfig,
        context=CONTEXT,
        bin_dir=Path(bin_dir).resolve(),
        ports=ports,
        processes={},
    )
    try:
        _start_processes(cluster, deadline)
        _bootstrap(cluster, deadline)
    except BaseException:
        cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - t0
    cluster._save()
    return cluster


def _start_processes(cluster: Cluster, deadline: float) -> None:
    d, pki, ports = cluster.dir, cluster.dir / "pki", cluster.ports
    etcd_url = f"https://{HOST}:{ports['etcd-client']}"
    peer_url = f"http://{HOST}:{ports['etcd-peer']}"
    _spawn(
        cluster,
        "etcd",
        [
            "--name=local",
            f"--data-dir={d / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--initial-cluster-state=new",
            f"--cert-file={pki / 'etcd.crt'}",
            f"--key-file={pki / 'etcd.key'}",
            f"--trusted-ca-file={pki / 'ca.crt'}",
            "--client-cert-auth=true",
            "--unsafe-no-fsync=true",  # throw-away data: no fsync stalls on a busy disk
            "--log-level=warn",
        ],
    )
    etcd_cert = (pki / "apiserver-etcd-client.crt", pki / "apiserver-etcd-client.key")
    _wait(cluster, "etcd", lambda: _https_ok(etcd_url + "/health", pki / "ca.crt", etcd_cert), deadline, ["etcd"])

    _spawn(
        cluster,
        "kube-apiserver",
        [
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={ports['apiserver']}",
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={pki / 'ca.crt'}",
            f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Service would list 127.0.0.1, which Endpoints validation refuses.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ],
    )
    ca = cluster.dir / "pki" / "ca.crt"
    _wait(
        cluster,
        "kube-apiserver /readyz",
        lambda: _https_ok(cluster.server + "/readyz", ca),
        deadline,
        ["etcd", "kube-apiserver"],
    )

    common = ["--leader-elect=false", f"--bind-address={HOST}"]
    cm_kc = str(d / "controller-manager.kubeconfig")
    _spawn(
        cluster,
        "kube-controller-manager",
        [
            *common,
            f"--secure-port={ports['controller-manager']}",
            f"--tls-cert-file={pki / 'controller-manager-serving.crt'}",
            f"--tls-private-key-file={pki / 'controller-manager-serving.key'}",
            f"--kubeconfig={cm_kc}",
            f"--authentication-kubeconfig={cm_kc}",
            f"--authorization-kubeconfig={cm_kc}",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
            "--concurrent-job-syncs=5",
        ],
    )
    sch_kc = str(d / "scheduler.kubeconfig")
    _spawn(
        cluster,
        "kube-scheduler",
        [
            *common,
            f"--secure-port={ports['scheduler']}",
            f"--tls-cert-file={pki / 'scheduler-serving.crt'}",
            f"--tls-private-key-file={pki / 'scheduler-serving.key'}",
            f"--kubeconfig={sch_kc}",
            f"--authentication-kubeconfig={sch_kc}",
            f"--authorization-kubeconfig={sch_kc}",
        ],
    )
    home = d / "kwok-home"  # kwok also reads ~/.kwok/kwok.yaml: keep the user's out of it
    home.mkdir(exist_ok=True)
    _spawn(
        cluster,
        "kwok",
        [
            f"--kubeconfig={d / 'kwok.kubeconfig'}",
            f"--config={cluster.bin_dir / STAGES_FILE}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.1",
        ],
        env={**os.environ, "HOME": str(home)},
    )


def _bootstrap(cluster: Cluster, deadline: float) -> None:
    """The fake node and the default StorageClass; wait until everything answers."""
    names = list(COMPONENTS)
    ca = cluster.dir / "pki" / "ca.crt"
    for comp in ("controller-manager", "scheduler"):
        url = f"https://{HOST}:{cluster.ports[comp]}/healthz"
        _wait(cluster, f"kube-{comp} /healthz", functools.partial(_https_ok, url, ca), deadline, names)
    cluster.apply(NODE, STORAGE_CLASS_OBJECT)

    def node_ready() -> bool:
        node = cluster.api(f"/api/v1/nodes/{NODE_NAME}")
        conds = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    _wait(cluster, f"node {NODE_NAME} Ready (kwok)", node_ready, deadline, names)
    _wait(
        cluster,
        "ServiceAccount default/default (kube-controller-manager)",
        lambda: bool(cluster.api("/api/v1/namespaces/default/serviceaccounts/default")),
        deadline,
        names,
    )


def stop(workdir: Path = DEFAULT_DIR) -> list[str]:
    """Stop the cluster `up` started in workdir; returns the pids it stopped (as "name=pid")."""
    try:
        cluster = attach(workdir)
    except ClusterError:
        return []
    stopped = [f"{n}={p.pid}" for n, p in cluster.processes.items() if p.alive()]
    cluster.stop()
    return stopped


@contextlib.contextmanager
def running(workdir: Path = DEFAULT_DIR, **kwargs: Any) -> Iterator[Cluster]:
    """Start a cluster (see start()), yield it, stop every process on exit (logs stay in workdir).
    A process that died while in use is reported on exit (ClusterError with its log tail)."""
    cluster = start(workdir, **kwargs)
    ok = False
    try:
        yield cluster
        ok = True
    finally:
        died = cluster.stop()
        if ok and died:
            raise ClusterError("local cluster process(es) died while in use: " + cluster.describe_dead(died))


# --- CLI --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_cluster", description="A local Kubernetes control plane on loopback."
    )
    parser.add_argument("command", choices=("up", "down", "env"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="working directory (default build/cluster)")
    parser.add_argument("--api-port", type=int, default=0, help="kube-apiserver port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds `up` may take")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = start(args.dir, api_port=args.api_port, timeout=args.timeout)
            print(f"local cluster up in {cluster.start_seconds:.1f}s: {cluster.server} ({KUBERNETES_VERSION})")
            print(f"  logs:  {cluster.dir / 'logs'}/")
            print(f"  use:   export KUBECONFIG={cluster.kubeconfig}   # context {cluster.context}")
            print(f"         {_rel(cluster.bin_dir / 'kubectl')} get nodes")
            print(f"  stop:  python -m tools.local_cluster down --dir {_rel(cluster.dir)}   (make cluster-down)")
        elif args.command == "env":
            cluster = attach(args.dir)
            cluster.check_alive()
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        else:
            stopped = stop(args.dir)
            print(f"local cluster stopped ({', '.join(stopped)})" if stopped else "no local cluster running")
    except ClusterError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
