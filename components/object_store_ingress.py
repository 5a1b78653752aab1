"""Publishing an in-cluster S3 endpoint (MinIO) through the cluster's ingress, for direct transfers.

MLflow signs presigned URLs for the endpoint it talks to itself (MLFLOW_S3_ENDPOINT_URL: one setting for
its own access and for signing). A URL a laptop can follow must therefore name a host the laptop can
resolve and whose certificate it trusts: the ingress host, with the ingress certificate. The server then
also reaches MinIO through that host (hairpin through the ingress), which costs it an egress rule to
port 443 and trust in the ingress certificate (a public CA the image trusts).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import INGRESS_NO_AWAIT

HTTPS_PORT = 443


def public_host(service: str, namespace: str, domain: str) -> str:
    """minio-<namespace>.<domain>, next to MLflow's mlflow-<namespace>.<domain>."""
    return f"{service}-{namespace}.{domain}"


# Where ingress controllers' pods accept HTTPS: 443 (ingress-nginx) or an unprivileged port behind
# the Service's 443 (Traefik in k3s/k3d: 8443). A NetworkPolicy sees the connection after the Service
# (or load balancer hairpin) translated it, so the pod's port is the one to allow.
INGRESS_CONTROLLER_HTTPS_PORTS = (HTTPS_PORT, 8443)


def client_egress() -> dict:
    """What a pod needs to reach the published endpoint: the ingress controller's address is not
    known to the stack, so its HTTPS ports to any destination (as for an external S3 endpoint)."""
    return {"ports": [{"port": port, "protocol": "TCP"} for port in INGRESS_CONTROLLER_HTTPS_PORTS]}


def s3_ingress(
    name: str,
    *,
    namespace: pulumi.Input[str],
    host: pulumi.Input[str],
    service_name: str,
    service_port: int,
    labels: Mapping[str, str],
    backend_ca_secret_name: pulumi.Input[str],
    backend_server_name: pulumi.Input[str],
    class_name: str = "",
    tls_secret_name: str = "",
    cluster_issuer: str = "",
    timeout_seconds: int = 600,
    parent: pulumi.Resource | None = None,
) -> k8s.networking.v1.Ingress:
    """An Ingress for the S3 API: TLS at the ingress, re-encrypted to MinIO and verified against its CA
    (ingress-nginx annotations; other controllers need their equivalent), no body-size limit, and the
    same timeouts as MLflow's ingress."""
    annotations = {
        **INGRESS_NO_AWAIT,
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
        "nginx.ingress.kubernetes.io/proxy-ssl-verify": "on",
        "nginx.ingress.kubernetes.io/proxy-ssl-secret": pulumi.Output.concat(namespace, "/", backend_ca_secret_name),
        "nginx.ingress.kubernetes.io/proxy-ssl-name": backend_server_name,
        "nginx.ingress.kubernetes.io/proxy-ssl-server-name": "on",
        # Multipart parts and whole objects of any size; S3 clients stream, so no request buffering.
        "nginx.ingress.kubernetes.io/proxy-body-size": "0",
        "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": str(timeout_seconds),
        "nginx.ingress.kubernetes.io/proxy-send-timeout": str(timeout_seconds),
    }
    spec: dict = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service_name, "port": {"number": service_port}}},
                        }
                    ]
                },
            }
        ]
    }
    if class_name:
        spec["ingressClassName"] = class_name
    if cluster_issuer:
        annotations["cert-manager.io/cluster-issuer"] = cluster_issuer
        spec["tls"] = [{"hosts": [host], "secretName": f"{service_name}-ingress-tls"}]
    elif tls_secret_name:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret_name}]
    else:
        raise ValueError("an S3 endpoint is published over TLS only: give tls_secret_name or cluster_issuer")
    return k8s.networking.v1.Ingress(
        name,
        metadata={"namespace": namespace, "labels": dict(labels), "annotations": annotations},
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent),
    )
