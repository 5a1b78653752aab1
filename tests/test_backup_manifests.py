"""6. The day-2 custom resources are valid: the Barman Cloud plugin's ObjectStore against its CRD
(../shared/crds/plugin-barman-cloud, made strict like the CloudNativePG ones), and the Prometheus
operator's ServiceMonitor/PodMonitor structurally.

There is no CRD schema for monitoring.coreos.com/v1 in ../shared: those objects are checked here
against a hand-written structural schema of the fields this platform uses (closed objects, types,
required keys, the selector/endpoint shapes of the operator's API); a field the real CRD does not
know could still pass if it were added to MONITOR_SCHEMA too. Each check has a negative test.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.test_manifests import OLDEST_K8S, SHARED, STACKS, describe, k8s_errors, rendered, strict_structural  # noqa: E402

PLUGIN_CRD = SHARED / "crds" / "plugin-barman-cloud" / "objectstores.barmancloud.cnpg.io.yaml"
BACKUP_STACKS = {
    "prod-backups": ("prod", None),
    "dev-external-backups": (
        "dev",
        {
            "backups": "on",
            "backupS3Endpoint": "https://s3.eu-west-1.amazonaws.com",
            "backupS3AccessKey": "AKIABACKUPEXAMPLE",
            "backupS3CaFile": "tests/fixtures/external-ca.pem",
        },
    ),
    "dev-monitoring": ("dev", {"prometheusOperator": True}),
}


def render_variant(name: str):
    from tools.mock_engine import Secret
    from tools.render import render_stack

    stack, config = BACKUP_STACKS[name]
    if config and "backupS3Endpoint" in config:
        config = {**config, "backupS3SecretKey": Secret("backup-secret-key-0123456789")}
    if config is None:
        return rendered(stack)
    return render_stack(stack, config=config, out_dir=ROOT / "build" / "manifests" / name)


def objectstore_validator() -> jsonschema.Draft7Validator:
    if not PLUGIN_CRD.is_file():
        pytest.fail(f"the Barman Cloud plugin CRD is missing: {PLUGIN_CRD} (see ../shared/crds/README.md)")
    crd = next(d for d in yaml.safe_load_all(PLUGIN_CRD.read_text()) if d)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"]]
    return jsonschema.Draft7Validator(strict_structural(version["schema"]["openAPIV3Schema"]))


def objectstore_errors(obj: dict) -> list[str]:
    errors = [
        f"{describe(obj)} @ {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in objectstore_validator().iter_errors(obj)
    ]
    errors += k8s_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, OLDEST_K8S)
    return errors


_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["matchLabels"],
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
}
_KEY_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "key"],
    "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1}},
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
        "basicAuth": {
            "type": "object",
            "additionalProperties": False,
            "required": ["username", "password"],
            "properties": {"username": _KEY_REF, "password": _KEY_REF},
        },
        "tlsConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ca": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["secret"],
                    "properties": {"secret": _KEY_REF},
                },
                "serverName": {"type": "string", "minLength": 1},
            },
        },
    },
}


def monitor_schema(kind: str) -> dict:
    endpoints = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {"selector": _SELECTOR, endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT}},
            },
        },
    }


def monitor_errors(obj: dict) -> list[str]:
    kind = obj.get("kind")
    if kind not in ("ServiceMonitor", "PodMonitor"):
        return [f"{describe(obj)}: not a ServiceMonitor or PodMonitor"]
    errors = [
        f"{describe(obj)} @ {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(monitor_schema(kind)).iter_errors(obj)
    ]
    return errors + k8s_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, OLDEST_K8S)


@pytest.mark.parametrize("name", sorted(BACKUP_STACKS))
def test_day2_custom_resources_are_valid(name: str):
    objects = render_variant(name).objects
    stores = [o for o in objects if o["kind"] == "ObjectStore"]
    monitors = [o for o in objects if o.get("apiVersion", "").startswith("monitoring.coreos.com/")]
    errors = [e for o in stores for e in objectstore_errors(o)] + [e for o in monitors for e in monitor_errors(o)]
    assert not errors, "\n".join(errors)
    if name == "dev-monitoring":
        assert Counter(o["kind"] for o in monitors) == {"ServiceMonitor": 2, "PodMonitor": 1}
        assert not stores
    else:
        [store] = stores
        assert store["spec"]["retentionPolicy"] == "30d" and not monitors
    # The other kinds of these variants are still strictly valid built-in objects.
    builtin = [
        o
        for o in objects
        if "." not in o["apiVersion"].split("/")[0]
        or o["apiVersion"].startswith(("apps/", "batch/", "networking.k8s.io/", "policy/"))
    ]
    assert not [e for o in builtin for e in k8s_errors(o, OLDEST_K8S)]


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "prod"])
def test_stacks_without_backups_render_no_object_store(stack: str):
    assert not [o for o in rendered(stack).objects if o["kind"] == "ObjectStore"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: o["spec"].__setitem__("retentionPolicy", "30 days"), "retentionPolicy"),
        (lambda o: o["spec"]["configuration"].__setitem__("destinationPth", "s3://x/"), "destinationPth"),
        (lambda o: o["spec"]["configuration"]["wal"].__setitem__("compression", "zip"), "compression"),
        (lambda o: o["spec"]["configuration"]["s3Credentials"]["accessKeyId"].pop("key"), "key"),
        (lambda o: o["spec"].pop("configuration"), "configuration"),
    ],
    ids=["bad-retention", "misspelt-field", "bad-compression", "no-key", "no-configuration"],
)
def test_objectstore_check_rejects_broken_stores(mutate, expected: str):
    [store] = [o for o in rendered("prod").objects if o["kind"] == "ObjectStore"]
    store = copy.deepcopy(store)
    assert objectstore_errors(store) == []
    mutate(store)
    assert any(expected in e for e in objectstore_errors(store)), objectstore_errors(store)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: o["spec"].__setitem__("selectr", {}), "selectr"),
        (lambda o: o["spec"]["endpoints"][0].__setitem__("scheme", "ftp"), "ftp"),
        (lambda o: o["spec"]["endpoints"][0]["basicAuth"]["password"].pop("name"), "name"),
        (lambda o: o.__setitem__("kind", "PodMonitor"), "endpoints"),
    ],
    ids=["unknown-field", "bad-scheme", "secret-ref-without-name", "kind-shape-mismatch"],
)
def test_monitor_check_rejects_broken_monitors(mutate, expected: str):
    monitor = copy.deepcopy(
        next(
            o
            for o in render_variant("dev-monitoring").objects
            if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "mlflow"
        )
    )
    assert monitor_errors(monitor) == []
    mutate(monitor)
    assert any(expected in e for e in monitor_errors(monitor)), monitor_errors(monitor)
