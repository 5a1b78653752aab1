"""How the machine running Pulumi reaches PostgreSQL and MinIO to configure them.

The pulumi-postgresql and pulumi-minio providers run on that machine, not in the cluster, so each
data service gets an admin endpoint (LoadBalancer or NodePort Service) restricted to
`adminSourceRanges`, and its address goes into the service's certificate so the providers verify
it like any other client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from settings import AdminEndpoint, is_ip

# Provider plugins run with the project directory as their working directory, so a relative
# path resolves for them and keeps the state identical across machines and checkouts.
RUNNER_CA_DIR = Path(".pulumi-ca")


def admin_service(name: str, namespace: pulumi.Input[str], admin: AdminEndpoint, port: int,
                  pod_selector: Mapping[str, str], labels: Mapping[str, str],
                  parent: pulumi.Resource) -> Optional[k8s.core.v1.Service]:
    """A LoadBalancer/NodePort Service for the runner; None when access goes through an Ingress."""
    if admin.access not in ("loadBalancer", "nodePort"):
        return None
    spec: dict = {
        "selector": dict(pod_selector),
        # Local keeps the client's source address, so the NetworkPolicy ipBlocks can match it.
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "admin", "port": port, "targetPort": port, "protocol": "TCP"}],
    }
    if admin.access == "loadBalancer":
        spec.update(type="LoadBalancer", loadBalancerSourceRanges=list(admin.source_ranges))
    else:
        spec["type"] = "NodePort"
        spec["ports"][0]["nodePort"] = admin.node_port
    return k8s.core.v1.Service(
        f"{name}-admin",
        metadata={"namespace": namespace, "labels": dict(labels)},
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def admin_address(admin: AdminEndpoint, service: Optional[k8s.core.v1.Service], port: int,
                  ingress_host: Optional[str] = None) -> tuple[pulumi.Output[str], int]:
    """(host, port) the runner connects to: the explicit override, the ingress, or the LoadBalancer."""
    if admin.host:
        return pulumi.Output.from_input(admin.host), admin.node_port if admin.access == "nodePort" else port
    if admin.access == "ingress":
        return pulumi.Output.from_input(ingress_host), 443
    return service.status.apply(_load_balancer_address), port


def _load_balancer_address(status) -> str:
    ingress = (status.load_balancer.ingress or []) if status and status.load_balancer else []
    if not ingress:
        raise pulumi.RunError(
            "the admin LoadBalancer Service got no address; the cluster has no LoadBalancer "
            "implementation. Fix: use k3d/k3s servicelb, cloud-provider-kind or a cloud cluster, or "
            "set postgresAdminAccess/minioAdminAccess to nodePort with postgresAdminHost/minioAdminHost"
        )
    return ingress[0].ip or ingress[0].hostname


def san_split(host: pulumi.Input[str]) -> tuple[pulumi.Output[list[str]], pulumi.Output[list[str]]]:
    """(dns_names, ip_addresses) contributions of the admin host to a certificate."""
    host = pulumi.Output.from_input(host)
    return (host.apply(lambda h: [] if is_ip(h) else [h]), host.apply(lambda h: [h] if is_ip(h) else []))


def runner_ca_file(stack: str, name: str, ca_pem: pulumi.Output[str]) -> pulumi.Output[str]:
    """Write the (public) CA certificate where the runner-side provider can read it; returns the path.

    The postgresql and minio providers only accept a CA *file*. The path depends on ca_pem, so the
    provider is configured only after the file exists; the content is identical on every run.
    """

    def write(pem: str) -> str:
        path = RUNNER_CA_DIR / stack / f"{name}.crt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != pem:
            path.write_text(pem, encoding="utf-8")
        return path.as_posix()

    return ca_pem.apply(write)
