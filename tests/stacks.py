"""Stack configurations and read-only views over an Evaluation, shared by the stack-level tests."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from cryptography import x509

import config
from tools.mock_engine import PROJECT, Secret, set_stack_config


def parse_python(source: str) -> ast.Module:
    """ast.parse in a child interpreter, the tree brought back by pickle. CPython 3.11.7 keeps the AST
    constructor's recursion depth in state shared by the whole interpreter (gh-106905, fixed in 3.11.8):
    deep in a full pytest run, another ast.parse (a finalizer, another thread) moves it mid-conversion and
    raises "SystemError: AST constructor recursion depth mismatch". A fresh thread was not enough (CI);
    a fresh process shares nothing. Unpickling builds the nodes without that conversion."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ast, pickle, sys; sys.stdout.buffer.write(pickle.dumps(ast.parse(sys.stdin.read())))",
        ],
        input=source.encode(),
        capture_output=True,
        check=True,
    )
    return pickle.loads(child.stdout)


def load(stack: str = "dev", **overrides) -> config.StackConfig:
    """The stack's configuration model, as the program reads it (Pulumi.<stack>.yaml and `overrides`)."""
    set_stack_config(stack, overrides)
    return config.load(stack)


def problem_line(message: str, key: str) -> str:
    line = next((ln for ln in message.splitlines() if f"{PROJECT}:{key} " in ln), None)
    assert line is not None, message
    return line


def assert_refused(overrides: dict, key: str, problem: str, stack: str = "dev") -> None:
    """`overrides` fail with one line naming `key`, its value as given (never a secret's), the problem and a fix."""
    with pytest.raises(config.ConfigError) as raised:
        load(stack, **overrides)
    message = str(raised.value)
    line = problem_line(message, key)
    assert f"{PROJECT}:{key} = " in line and problem in line and "Fix: " in line, line
    value = overrides.get(key)
    if isinstance(value, (str, int)) and value != "":
        assert f"{PROJECT}:{key} = {json.dumps(value)}" in line, line
    if isinstance(value, Secret) and value.value:
        assert value.value not in message


EXTERNAL_CA_FILE = "tests/fixtures/external-ca.pem"  # relative to the project directory, as a team commits it

# The replaced service's modes; the rest of the stack keeps its defaults.
EXTERNAL_POSTGRES = {
    "postgresMode": "external",
    "postgresHost": "db.example.com",
    "postgresPort": 6432,
    "postgresAdminUser": "rdsadmin",
    "postgresAdminPassword": Secret("admin-password-1234"),
    "postgresCaFile": EXTERNAL_CA_FILE,
}
EXTERNAL_S3 = {
    "objectStoreMode": "external",
    "s3Endpoint": "https://s3.eu-west-1.amazonaws.com",
    "s3Region": "eu-west-1",
    "s3AccessKey": "AKIAMLFLOWEXAMPLE",
    "s3SecretKey": Secret("s3-secret-key-for-mlflow-0123456789"),
}
EXTERNAL_MINIO = {
    "objectStoreMode": "externalMinio",
    "s3Endpoint": "https://minio.example.com:9443",
    "s3CaFile": EXTERNAL_CA_FILE,
    "s3AdminUser": "minioadmin",
    "s3AdminPassword": Secret("minio-admin-password-123"),
}
# name -> (stack, config): every mode alone, and mixed both ways.
MODE_STACKS = {
    "external-postgres": ("dev", EXTERNAL_POSTGRES),
    "external-s3": ("dev", EXTERNAL_S3),
    "external-minio": ("dev", EXTERNAL_MINIO),
    "external-both": ("prod", {**EXTERNAL_POSTGRES, **EXTERNAL_MINIO}),
    "external-postgres-pr": ("pr-9", {**EXTERNAL_POSTGRES, **EXTERNAL_S3}),
}
DEFAULT_STACKS = ("dev", "prod", "pr-42")
# publishMode httpRoute: routes attached to the HTTPS listener of a shared Gateway the stack does not own.
GATEWAY_ROUTE = {
    "publishMode": "httpRoute",
    "gatewayName": "shared",
    "gatewayNamespace": "gateways",
    "gatewayListener": "https",
}


# ------------------------------------------------------------------ workloads
def workload(ev, kind: str, name_prefix: str) -> dict:
    [found] = [o for o in ev.k8s(kind) if o["metadata"]["name"].startswith(name_prefix)]
    return found


def pod_of(ev, kind: str, name_prefix: str) -> dict:
    return workload(ev, kind, name_prefix)["spec"]["template"]["spec"]


def container(ev, kind: str, name_prefix: str, container_name: str) -> dict:
    pod = pod_of(ev, kind, name_prefix)
    return next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == container_name)


def env_value(ev, c: dict, name: str) -> str:
    [entry] = [e for e in c["env"] if e["name"] == name]
    if "value" in entry:
        return entry["value"]
    if "fieldRef" in entry["valueFrom"]:  # the downward API: only known in the pod
        return f"$({entry['valueFrom']['fieldRef']['fieldPath']})"
    ref = entry["valueFrom"]["secretKeyRef"]
    return ev.secret_by_name(ref["name"])[ref["key"]]


def mounted_file(ev, pod: dict, c: dict, path: str) -> str:
    """Content of the file a container sees at `path`, resolved through its volumes."""
    for mount in c["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", [])] or [
            {"name": volume["secret"]["secretName"], **volume["secret"]}
        ]
        for source in sources:
            data = ev.secret_by_name(source["name"])
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["path"] == relative:
                    return data[item["key"]]
    raise AssertionError(f"{path} is not mounted in container {c['name']}")


def pod_secret_values(ev, pod: dict) -> list[str]:
    """Every value a pod can read from Secrets: env (secretKeyRef) and mounted Secret volumes."""
    seen = []
    for c in pod.get("initContainers", []) + pod["containers"]:
        seen += [env_value(ev, c, e["name"]) for e in c.get("env", [])]
    for volume in pod["volumes"]:
        names = (
            [volume["secret"]["secretName"]]
            if "secret" in volume
            else [s["secret"]["name"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        )
        seen += [v for n in names for v in ev.secret_by_name(n).values()]
    return seen


def mlflow_uri(ev, key: str = "backend-store-uri"):
    """A URI from MLflow's env Secret, parsed: (parts, query)."""
    [env] = [
        o
        for o in ev.k8s("Secret")
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "tracking-server"
        and "backend-store-uri" in o["stringData"]
    ]
    uri = urlsplit(env["stringData"][key])
    return uri, parse_qs(uri.query)


def uri_password(uri) -> str:
    return unquote(uri.password)


# ------------------------------------------------------------------ certificates
def sans(cert_pem: str) -> tuple[set, set]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def tls_secret(ev, certificate: str) -> dict:
    [secret] = [
        o
        for o in ev.k8s("Secret")
        if o["type"] == "kubernetes.io/tls" and o["metadata"]["labels"]["mlflow-platform/certificate"] == certificate
    ]
    return secret["stringData"]


def verifies(ca_pem: str, cert_pem: str) -> bool:
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


# ------------------------------------------------------------------ the dependency graph
def ancestors(ev, urn: str) -> set[str]:
    """Everything a registration waits for, transitively: its dependencies, property dependencies
    and parents, as tools/mock_engine.py recorded them."""
    by_urn = {r.urn: r for r in ev.registrations}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        reg = by_urn.get(todo.pop())
        if reg is None:
            continue
        for dep in reg.dependencies + [u for us in reg.property_dependencies.values() for u in us] + [reg.parent]:
            if dep and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


# ------------------------------------------------------------------ secrets
def plain_leaks(ev, extra_secrets: frozenset = frozenset()) -> list[str]:
    """Where a secret value (or one of `extra_secrets`, e.g. secret config) shows up in plain text:
    unmarked inputs/outputs, non-secret stack outputs, or a non-Secret Kubernetes object."""
    secret_values = ev.secret_values() | set(extra_secrets)
    leaks = []
    for reg in ev.registrations:
        for which in ("inputs", "outputs"):
            for path, text in ev.without_secret_paths(reg, which):
                if any(value in text for value in secret_values):
                    leaks.append(f"{reg.type} {reg.name} {which}.{path}")
    for name, value in ev.outputs.items():
        if name not in ev.secret_outputs and any(s in str(value) for s in secret_values):
            leaks.append(f"stack output {name}")
    for obj in ev.k8s_objects:
        if obj["kind"] != "Secret" and any(s in yaml.safe_dump(obj) for s in secret_values):
            leaks.append(f"{obj['kind']} {obj['metadata']['name']}")
    return leaks
