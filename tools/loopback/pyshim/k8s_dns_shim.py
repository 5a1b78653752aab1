"""Name-resolution shim that lets unmodified Python processes resolve Kubernetes service
names to loopback addresses (and deny names a process must not be able to reach).

It patches ``socket.getaddrinfo`` (used by urllib3/requests/boto3/http.client/asyncio) and
``socket.gethostbyname``/``gethostbyname_ex``.  Only the *address* is substituted: callers keep
the original host name, so TLS SNI and certificate hostname verification still check the real
name (e.g. ``minio.mlflow-dev.svc.cluster.local``) against the certificate SANs.

Configuration is a JSON object (env var ``K8S_DNS_SHIM`` when loaded via ``sitecustomize``)::

    {
      "map":    {"minio.ns.svc.cluster.local": "127.0.0.3",          # host -> ip
                 "mlflow.example.test:443": "127.0.0.4:5000"},       # host:port -> ip:port
      "deny":   ["*.svc", "*.svc.cluster.local"],                    # fnmatch patterns
      "strict": true,                                                # refuse everything else
      "libpq": false                                                 # see below
    }

Resolution order for ``(host, port)``: ``host:port`` entry, then ``host`` entry (both
case-insensitive, trailing dot ignored), then ``deny`` patterns (raise ``socket.gaierror``),
then, if ``strict``, anything that is not ``localhost`` or a loopback IP literal is refused.
Strict mode guarantees a process under test can only talk to 127.0.0.0/8 (e.g. MLflow telemetry
lookups of ``config.mlflow-telemetry.io`` fail fast instead of leaving the sandbox).

libpq (psycopg2) resolves names with the C resolver, which this shim cannot see; a process that
talks to one PostgreSQL name gets ``PGHOSTADDR`` instead. A process that talks to *several*
(MLflow with a read replica: ``mlflow-pg-rw...`` for writes, ``mlflow-pg-ro...`` for reads) gets
``"libpq": true``: ``psycopg2.connect`` is wrapped when psycopg2 is imported and adds
``hostaddr=<mapped address>`` for a ``host`` found in ``map`` (libpq still verifies ``host``
against the certificate under ``sslmode=verify-full``). Hosts not in ``map`` are left to libpq.

This module is deliberately dependency-free; ``sitecustomize.py`` next to it installs it at
interpreter start-up, so putting this directory first on ``PYTHONPATH`` is all that is needed
(uvicorn/multiprocessing worker interpreters inherit ``PYTHONPATH`` and get the shim too).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import socket
import sys
from typing import Any

ENV_VAR = "K8S_DNS_SHIM"

_original: dict[str, Any] = {
    "getaddrinfo": socket.getaddrinfo,
    "gethostbyname": socket.gethostbyname,
    "gethostbyname_ex": socket.gethostbyname_ex,
}
_config: dict | None = None
# Set by sitecustomize.py: the next sitecustomize.py it chain-loaded (None if there was none).
chained_sitecustomize: str | None = None


def _norm(host) -> str:
    if isinstance(host, (bytes, bytearray)):
        host = host.decode("idna")
    return str(host).strip().rstrip(".").lower()


def _is_loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _port_int(port):
    if port is None:
        return None
    if isinstance(port, int):
        return port
    if isinstance(port, bytes):
        port = port.decode()
    try:
        return int(port)
    except ValueError:
        try:
            return socket.getservbyname(port, "tcp")
        except OSError:
            return None


def _split_target(target: str, port):
    """'1.2.3.4' -> (ip, port); '1.2.3.4:80' -> (ip, 80)."""
    if target.count(":") == 1:
        ip, _, p = target.partition(":")
        return ip, int(p)
    return target, port


def _refuse(host: str, why: str):
    raise socket.gaierror(socket.EAI_NONAME, f"[k8s_dns_shim] {host!r} not resolvable: {why}")


def mapped_address(host, port):
    """(address, port) that ``map`` gives ``host`` (``host:port`` entry first), else None."""
    cfg = _config
    if cfg is None or not host:
        return None
    name, p = _norm(host), _port_int(port)
    mapping = cfg.get("map", {})
    if p is not None and f"{name}:{p}" in mapping:
        return _split_target(mapping[f"{name}:{p}"], port)
    if name in mapping:
        return _split_target(mapping[name], port)
    return None


def resolve(host, port):
    """Return (address, port) to use instead of (host, port); raise gaierror if refused."""
    cfg = _config
    if cfg is None or host is None:
        return host, port
    mapped = mapped_address(host, port)
    if mapped is not None:
        return mapped
    name = _norm(host)
    for pattern in cfg.get("deny", []):
        if fnmatch.fnmatch(name, pattern.lower()):
            _refuse(name, f"denied by pattern {pattern!r}")
    if cfg.get("strict", False) and not (name == "localhost" or _is_loopback_literal(name)):
        _refuse(name, "not in the shim map and strict mode only allows loopback")
    return host, port


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
    addr, new_port = resolve(host, port)
    return _original["getaddrinfo"](addr, new_port, family, type, proto, flags)


def _gethostbyname(host):
    addr, _ = resolve(host, None)
    return _original["gethostbyname"](addr)


def _gethostbyname_ex(host):
    addr, _ = resolve(host, None)
    name, aliases, ips = _original["gethostbyname_ex"](addr)
    return host, aliases, ips


def _wrap_psycopg2_connect(module) -> None:
    """``psycopg2.connect`` adding ``hostaddr`` (and the mapped port) for a mapped ``host``."""
    original = module.connect
    if getattr(original, "_k8s_dns_shim", False):
        return

    def connect(dsn=None, connection_factory=None, cursor_factory=None, **kwargs):
        from psycopg2.extensions import make_dsn, parse_dsn

        params = parse_dsn(make_dsn(dsn, **kwargs))
        host = params.get("host") or ""
        if host and "hostaddr" not in params and "," not in host and not host.startswith("/"):
            target = mapped_address(host, params.get("port") or 5432)
            if target is not None:
                kwargs["hostaddr"] = target[0]
                if target[1] is not None:
                    kwargs["port"] = str(target[1])
        return original(dsn, connection_factory=connection_factory, cursor_factory=cursor_factory, **kwargs)

    connect._k8s_dns_shim = True  # type: ignore[attr-defined]
    connect.__doc__ = original.__doc__
    module.connect = connect


class _Psycopg2ImportHook:
    """Meta path finder: psycopg2's own spec, with ``connect`` wrapped once the module has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "psycopg2":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _wrap_psycopg2_connect(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install_libpq_hook() -> None:
    if "psycopg2" in sys.modules:
        _wrap_psycopg2_connect(sys.modules["psycopg2"])
    elif not any(isinstance(f, _Psycopg2ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Psycopg2ImportHook())


def install(config: dict) -> None:
    """Install (or reconfigure) the shim in this interpreter."""
    global _config
    _config = {
        "map": {_norm(k): str(v) for k, v in (config.get("map") or {}).items()},
        "deny": list(config.get("deny") or []),
        "strict": bool(config.get("strict", False)),
        "libpq": bool(config.get("libpq", False)),
    }
    if _config["libpq"]:
        _install_libpq_hook()
    socket.getaddrinfo = _getaddrinfo
    socket.gethostbyname = _gethostbyname
    socket.gethostbyname_ex = _gethostbyname_ex


def uninstall() -> None:
    global _config
    _config = None
    socket.getaddrinfo = _original["getaddrinfo"]
    socket.gethostbyname = _original["gethostbyname"]
    socket.gethostbyname_ex = _original["gethostbyname_ex"]


def current_config() -> dict | None:
    return _config


def install_from_env() -> bool:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return False
    install(json.loads(raw))
    return True
