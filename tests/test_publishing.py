"""Issue 19.2: how MLflow (and, for direct transfers, MinIO) is published: publishMode ingress, httpRoute, none.

Configuration mistakes name the key, the value and the fix; the rendered stacks serve what they claim:
an HTTPRoute attached to the configured Gateway listener instead of an Ingress, MinIO re-encrypted by the
Gateway (BackendTLSPolicy + the stack's CA), or no public host at all (the internal URL). The objects'
validity against the Gateway API CRDs is tests/test_manifests.py's (section 2, Gateway API).
"""

from __future__ import annotations

import pytest

from tests.stacks import assert_refused, container, env_value, load, tls_secret
from tools.mock_engine import PROJECT, evaluate_stack

GATEWAY = {"publishMode": "httpRoute", "gatewayName": "shared", "gatewayNamespace": "gateways"}
HOST = "mlflow-mlflow-dev.localtest.me"
MINIO_HOST = "minio-mlflow-dev.localtest.me"

BAD_INPUT = [
    ({**GATEWAY, "gatewayName": "Shared_Gateway"}, "gatewayName", "not a Gateway name"),
    ({**GATEWAY, "gatewayName": "gw.example"}, "gatewayName", "not a Gateway name"),
    ({**GATEWAY, "gatewayNamespace": "Gateways"}, "gatewayNamespace", "not a namespace name"),
    ({"publishMode": "httpRoute"}, "gatewayName", "the routes need a Gateway to attach to"),
    ({"publishMode": "gateway"}, "publishMode", "unknown value"),
    (
        {**GATEWAY, "ingressClassName": "nginx"},
        "ingressClassName",
        "only used with publishMode ingress (publishMode is httpRoute)",
    ),
    (
        {**GATEWAY, "ingressTlsSecretName": "mlflow-tls"},
        "ingressTlsSecretName",
        "the Gateway's listener carries the certificate",
    ),
    (
        {**GATEWAY, "ingressClusterIssuer": "letsencrypt"},
        "ingressClusterIssuer",
        "the Gateway's listener carries the certificate",
    ),
    ({"gatewayName": "shared"}, "gatewayName", "only used with publishMode httpRoute"),
    ({"gatewayNamespace": "gateways"}, "gatewayNamespace", "only used with publishMode httpRoute"),
    ({"gatewayListener": "https"}, "gatewayListener", "only used with publishMode httpRoute"),
    ({"publishMode": "none", "gatewayName": "shared"}, "gatewayName", "only used with publishMode httpRoute"),
    ({"publishMode": "none", "ingressClassName": "nginx"}, "ingressClassName", "publishMode is none"),
    ({"publishMode": "none", "minioIngress": True}, "minioIngress", "publishMode is none: nothing is published"),
    ({**GATEWAY, "gatewayHttps": False, "minioIngress": True}, "minioIngress", "gatewayHttps: true"),
]


@pytest.mark.parametrize(
    "overrides, key, problem", BAD_INPUT, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD_INPUT)]
)
def test_bad_publishing_config_names_the_key_the_value_and_the_fix(overrides, key, problem):
    assert_refused(overrides, key, problem)


@pytest.mark.parametrize("key", ["ingressClassName", "ingressTlsSecretName", "ingressClusterIssuer"])
def test_ingress_keys_with_a_gateway_say_the_listener_carries_the_certificate(key):
    from config import ConfigError

    with pytest.raises(ConfigError) as raised:
        load("dev", **GATEWAY, **{key: "mine"})
    [line] = [ln for ln in str(raised.value).splitlines() if f"{PROJECT}:{key} = " in ln]
    assert f'{key} = "mine"' in line and "publishMode is httpRoute" in line, line
    assert "Fix: remove it; the Gateway's listener carries the certificate" in line, line


# ------------------------------------------------------------------ rendered stacks
def server(ev) -> dict:
    return container(ev, "Deployment", "mlflow-deployment", "mlflow")


def server_args(ev) -> dict[str, str]:
    args = server(ev)["args"]
    return {a: args[i + 1] for i, a in enumerate(args) if a.startswith("--") and i + 1 < len(args)}


def routes(ev) -> dict[str, dict]:
    return {o["spec"]["rules"][0]["backendRefs"][0]["name"]: o for o in ev.k8s("HTTPRoute")}


def test_http_route_replaces_the_ingress():
    ev = evaluate_stack("dev", {**GATEWAY, "gatewayListener": "https", "mlflowRequestTimeoutSeconds": 900})
    assert ev.k8s("Ingress") == [] and ev.k8s("BackendTLSPolicy") == []
    [route] = ev.k8s("HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["namespace"] == "mlflow-dev"
    assert route["metadata"]["labels"]["app.kubernetes.io/name"] == "mlflow"
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "shared",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert spec["hostnames"] == [HOST]
    [rule] = spec["rules"]
    assert rule["backendRefs"] == [{"name": "mlflow", "port": 80}]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["timeouts"] == {"request": "900s"}
    assert ev.outputs["trackingUrl"] == f"https://{HOST}"
    args = server_args(ev)
    assert {HOST, f"{HOST}:*"} <= set(args["--allowed-hosts"].split(","))
    assert args["--cors-allowed-origins"] == f"https://{HOST}"


def test_http_route_defaults_to_the_stacks_namespace_and_every_listener():
    ev = evaluate_stack("dev", {"publishMode": "httpRoute", "gatewayName": "shared", "gatewayHttps": False})
    [route] = ev.k8s("HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shared"}]
    # A plain-HTTP listener: the public URLs say so (dev only).
    assert ev.outputs["trackingUrl"] == f"http://{HOST}"
    assert server_args(ev)["--cors-allowed-origins"] == f"http://{HOST}"


def test_unpublished_stack_serves_the_internal_url_only():
    ev = evaluate_stack("dev", {"publishMode": "none"})
    assert ev.k8s("Ingress") == [] and ev.k8s("HTTPRoute") == [] and ev.k8s("BackendTLSPolicy") == []
    assert ev.outputs["trackingUrl"] == "http://mlflow.mlflow-dev.svc"
    args = server_args(ev)
    hosts = args["--allowed-hosts"].split(",")
    assert "mlflow.mlflow-dev.svc" in hosts and "localhost:*" in hosts  # in-cluster clients and port-forward
    assert not [h for h in hosts if "localtest.me" in h]
    assert "--cors-allowed-origins" not in server(ev)["args"]


def test_minio_through_the_gateway_is_re_encrypted_with_the_stacks_ca():
    ev = evaluate_stack(
        "dev", {**GATEWAY, "gatewayListener": "https", "minioIngress": True, "artifactTransferMode": "direct"}
    )
    assert ev.k8s("Ingress") == []
    by_backend = routes(ev)
    assert sorted(by_backend) == ["minio", "mlflow"]
    minio = by_backend["minio"]["spec"]
    assert minio["hostnames"] == [MINIO_HOST]
    assert minio["parentRefs"] == by_backend["mlflow"]["spec"]["parentRefs"]
    assert minio["rules"][0]["backendRefs"] == [{"name": "minio", "port": 9000}]
    assert minio["rules"][0]["timeouts"] == {"request": "600s"}
    # MLflow signs URLs for, and reaches MinIO through, the published host (the listener's certificate).
    assert env_value(ev, server(ev), "MLFLOW_S3_ENDPOINT_URL") == f"https://{MINIO_HOST}"

    [policy] = ev.k8s("BackendTLSPolicy")
    assert policy["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert policy["spec"]["targetRefs"] == [{"group": "", "kind": "Service", "name": "minio"}]
    validation = policy["spec"]["validation"]
    assert validation["hostname"] == "minio.mlflow-dev.svc"
    [ref] = validation["caCertificateRefs"]
    assert (ref["group"], ref["kind"]) == ("", "ConfigMap")
    [config_map] = [o for o in ev.k8s("ConfigMap") if o["metadata"]["name"] == ref["name"]]
    assert config_map["metadata"]["namespace"] == policy["metadata"]["namespace"] == "mlflow-dev"
    assert config_map["data"]["ca.crt"] == tls_secret(ev, "minio-tls")["ca.crt"]  # the CA that signed MinIO's cert

    # The Gateway's data plane (its namespace unknown to the stack) reaches the S3 port, as an ingress controller would.
    minio_policy = next(o for o in ev.k8s("NetworkPolicy") if o["metadata"]["name"].startswith("minio-network"))
    assert {"ports": [{"port": 9000, "protocol": "TCP"}]} in minio_policy["spec"]["ingress"]
    egress = next(o for o in ev.k8s("NetworkPolicy") if o["metadata"]["name"].startswith("mlflow-egress"))
    assert {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]} in egress["spec"]["egress"]


def test_minio_stays_private_unless_published():
    for config in ({**GATEWAY}, {"publishMode": "none"}):
        ev = evaluate_stack("dev", config)
        assert "minio" not in routes(ev) and ev.k8s("BackendTLSPolicy") == []
        minio_policy = next(o for o in ev.k8s("NetworkPolicy") if o["metadata"]["name"].startswith("minio-network"))
        assert all(rule.get("from") for rule in minio_policy["spec"]["ingress"]), config
