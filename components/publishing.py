"""How a Service is reached from outside the cluster: an Ingress (default), an HTTPRoute attached to a
Gateway (Gateway API v1, standard channel), or not at all. Shared by MLflow and, for direct artifact
transfers, MinIO (minio-<namespace>.<domain>, next to MLflow's mlflow-<namespace>.<domain>).

MLflow signs presigned URLs for the S3 endpoint it talks to itself (MLFLOW_S3_ENDPOINT_URL: one setting
for its own access and for signing). A URL a laptop can follow must therefore name a host the laptop can
resolve and whose certificate it trusts: the published host, with the ingress's or the Gateway
listener's certificate. The server then also reaches MinIO through that host (hairpin), which costs it
an egress rule to the controller's HTTPS ports and trust in that certificate (a public CA the image trusts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import INGRESS_NO_AWAIT

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
HTTPS_PORT = 443
# Where ingress controllers' and Gateways' pods accept HTTPS: 443 (ingress-nginx, most Gateways) or an
# unprivileged port behind the Service's 443 (Traefik in k3s/k3d: 8443). A NetworkPolicy sees the
# connection after the Service (or load balancer hairpin) translated it, so the pod's port is the one to allow.
CONTROLLER_HTTPS_PORTS = (HTTPS_PORT, 8443)


@dataclass(frozen=True)
class Publication:
    """Where and how the stack's public hosts are served."""

    mode: str = "ingress"
    domain: str = "localtest.me"
    # ingress: its class, and its certificate (an existing Secret, or one cert-manager issues).
    ingress_class_name: str = ""
    ingress_tls_secret_name: str = ""
    ingress_cluster_issuer: str = ""
    # httpRoute: the Gateway the routes attach to (namespace "" = the stack's), and one of its listeners.
    gateway_name: str = ""
    gateway_namespace: str = ""
    gateway_listener: str = ""
    # httpRoute: the listener terminates TLS (the public URLs are https).
    gateway_https: bool = True

    @property
    def published(self) -> bool:
        return self.mode != "none"

    @property
    def tls(self) -> bool:
        if self.mode == "ingress":
            return bool(self.ingress_tls_secret_name or self.ingress_cluster_issuer)
        return self.mode == "httpRoute" and self.gateway_https

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def public_host(service: str, namespace: pulumi.Input[str], domain: str) -> pulumi.Output[str]:
    """<service>-<namespace>.<domain>: one host per published Service and stack."""
    return pulumi.Output.concat(service, "-", namespace, ".", domain)


def client_egress() -> dict[str, Any]:
    """What a pod needs to reach a published host: the controller's address is not known to the stack,
    so its HTTPS ports to any destination (as for an external S3 endpoint)."""
    return {"ports": [{"port": port, "protocol": "TCP"} for port in CONTROLLER_HTTPS_PORTS]}


def publish(
    name: str,
    publication: Publication,
    *,
    namespace: pulumi.Input[str],
    host: pulumi.Input[str],
    service_name: pulumi.Input[str],
    port: int,
    labels: Mapping[str, str],
    timeout_seconds: int,
    ingress_port: Mapping[str, Any] | None = None,
    ingress_annotations: Mapping[str, pulumi.Input[str]] | None = None,
    parent: pulumi.Resource | None = None,
) -> pulumi.CustomResource | None:
    """The Ingress or HTTPRoute that serves `host` from the Service (None when not published)."""
    opts = pulumi.ResourceOptions(parent=parent)
    if publication.mode == "httpRoute":
        parent_ref: dict[str, Any] = {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": publication.gateway_name,
        }
        if publication.gateway_namespace:
            parent_ref["namespace"] = publication.gateway_namespace
        if publication.gateway_listener:
            parent_ref["sectionName"] = publication.gateway_listener
        return k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version=GATEWAY_API_VERSION,
            kind="HTTPRoute",
            metadata={"namespace": namespace, "labels": dict(labels)},
            spec={
                "parentRefs": [parent_ref],
                "hostnames": [host],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": service_name, "port": port}],
                        # Artifacts of any size go through the route; long transfers must not be cut.
                        "timeouts": {"request": f"{timeout_seconds}s"},
                    }
                ],
            },
            opts=opts,
        )
    if publication.mode != "ingress":
        return None
    annotations = {**INGRESS_NO_AWAIT, **(ingress_annotations or {})}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": service_name, "port": dict(ingress_port or {"number": port})}
                            },
                        }
                    ]
                },
            }
        ]
    }
    if publication.ingress_class_name:
        spec["ingressClassName"] = publication.ingress_class_name
    if publication.ingress_cluster_issuer:
        annotations["cert-manager.io/cluster-issuer"] = publication.ingress_cluster_issuer
        spec["tls"] = [{"hosts": [host], "secretName": pulumi.Output.concat(service_name, "-ingress-tls")}]
    elif publication.ingress_tls_secret_name:
        spec["tls"] = [{"hosts": [host], "secretName": publication.ingress_tls_secret_name}]
    return k8s.networking.v1.Ingress(
        f"{name}-ingress",
        metadata={"namespace": namespace, "labels": dict(labels), "annotations": annotations},
        spec=spec,
        opts=opts,
    )


def backend_tls(
    name: str,
    *,
    namespace: pulumi.Input[str],
    service_name: str,
    ca_pem: pulumi.Input[str],
    server_name: pulumi.Input[str],
    labels: Mapping[str, str],
    parent: pulumi.Resource | None = None,
) -> pulumi.CustomResource:
    """A BackendTLSPolicy: the Gateway re-encrypts to the Service and verifies it against our CA
    (published in a ConfigMap, which is what the policy references) for `server_name`."""
    opts = pulumi.ResourceOptions(parent=parent)
    ca = k8s.core.v1.ConfigMap(
        f"{name}-backend-ca",
        metadata={"namespace": namespace, "labels": dict(labels)},
        data={"ca.crt": ca_pem},
        opts=opts,
    )
    return k8s.apiextensions.CustomResource(
        f"{name}-backend-tls",
        api_version=GATEWAY_API_VERSION,
        kind="BackendTLSPolicy",
        metadata={"namespace": namespace, "labels": dict(labels)},
        spec={
            "targetRefs": [{"group": "", "kind": "Service", "name": service_name}],
            "validation": {
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": ca.metadata.name}],
                "hostname": server_name,
            },
        },
        opts=opts,
    )
