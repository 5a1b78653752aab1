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
      "strict": true                                                 # refuse everything else
    }

Resolution order for ``(host, port)``: ``host:port`` entry, then ``host`` entry (both
case-insensitive, trailing dot ignored), then ``deny`` patterns (raise ``socket.gaierror``),
then, if ``strict``, anything that is not ``localhost`` or a loopback IP literal is refused.
Strict mode guarantees a process under test can only talk to 127.0.0.0/8 (e.g. MLflow telemetry
lookups of ``config.mlflow-telemetry.io`` fail fast instead of leaving the sandbox).

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


def resolve(host, port):
    """Return (address, port) to use instead of (host, port); raise gaierror if refused."""
    cfg = _config
    if cfg is None or host is None:
        return host, port
    name = _norm(host)
    mapping = cfg.get("map", {})
    p = _port_int(port)
    if p is not None and f"{name}:{p}" in mapping:
        return _split_target(mapping[f"{name}:{p}"], port)
    if name in mapping:
        return _split_target(mapping[name], port)
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


def install(config: dict) -> None:
    """Install (or reconfigure) the shim in this interpreter."""
    global _config
    _config = {
        "map": {_norm(k): str(v) for k, v in (config.get("map") or {}).items()},
        "deny": list(config.get("deny") or []),
        "strict": bool(config.get("strict", False)),
    }
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
