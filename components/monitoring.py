"""PlatformMonitoring: Prometheus operator objects (monitoring.coreos.com/v1) for the platform.

- MLflow: a ServiceMonitor on the `mlflow` Service, path /metrics (`--expose-prometheus`). MLflow's
  basic-auth app protects /metrics like every route: Prometheus authenticates from a Secret.
- MinIO: a ServiceMonitor on the `minio` Service, https with the platform CA and the Service's
  name, path /minio/v2/metrics/cluster (served without a token: MINIO_PROMETHEUS_AUTH_TYPE=public).
- CloudNativePG: a PodMonitor on the instances' `metrics` port (9187); CloudNativePG expects the
  user to create it (its `enablePodMonitor` is deprecated).

Plus NetworkPolicies that admit the Prometheus namespace to the MinIO and PostgreSQL metrics
ports (MLflow's port is open to every pod already). The objects need the Prometheus operator's
CRDs in the cluster: a stack enables them only where the operator is installed.

Every monitor carries `monitor_labels`, the labels the Prometheus selects monitors by
(kube-prometheus-stack: `release: <its Helm release>`). Each selects exactly one Service or set of
pods per target, so every target is scraped once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF

API_VERSION = "monitoring.coreos.com/v1"
CNPG_METRICS_PORT = 9187
MINIO_METRICS_PATH = "/minio/v2/metrics/cluster"


@dataclass
class PlatformMonitoringArgs:
    namespace: pulumi.Input[str]
    # Namespace Prometheus scrapes from (admitted by the NetworkPolicies).
    prometheus_namespace: str
    mlflow_selector: Mapping[str, str]
    mlflow_port_name: str = "http"
    # MLflow's basic auth: the user Prometheus logs in as and the Secret key holding its password
    # (MlflowServer's env Secret); no Secret name when auth is off.
    mlflow_password_secret_name: pulumi.Input[str] | None = None
    mlflow_password_key: str = "admin-password"
    mlflow_user: str = "admin"
    # MinIO in the cluster (None: the object store is external, nothing to scrape here).
    minio_selector: Mapping[str, str] | None = None
    minio_port: int = 9000
    minio_port_name: str = "https"
    minio_ca_secret_name: pulumi.Input[str] | None = None
    minio_server_name: pulumi.Input[str] | None = None
    # CloudNativePG instances (None: external PostgreSQL).
    postgres_selector: Mapping[str, str] | None = None
    interval: str = "30s"
    # Labels the Prometheus operator selects monitors by (its serviceMonitorSelector/podMonitorSelector).
    monitor_labels: Mapping[str, str] | None = None


class PlatformMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: PlatformMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:PlatformMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {**PART_OF, "app.kubernetes.io/component": "monitoring"}
        scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": args.prometheus_namespace}}}

        endpoint: dict = {"port": args.mlflow_port_name, "path": "/metrics", "interval": args.interval}
        if args.mlflow_password_secret_name is not None:
            user = k8s.core.v1.Secret(
                f"{name}-mlflow-scrape-user",
                metadata={"namespace": args.namespace, "labels": labels},
                type="Opaque",
                string_data={"username": args.mlflow_user},
                opts=child,
            )
            endpoint["basicAuth"] = {
                "username": {"name": user.metadata.name, "key": "username"},
                "password": {"name": args.mlflow_password_secret_name, "key": args.mlflow_password_key},
            }
        monitors = [
            self._monitor(
                f"{name}-mlflow", "ServiceMonitor", "mlflow", args, labels, args.mlflow_selector, "endpoints", endpoint
            )
        ]
        if args.minio_selector is not None:
            tls: dict = {"ca": {"secret": {"name": args.minio_ca_secret_name, "key": "ca.crt"}}}
            if args.minio_server_name is not None:
                tls["serverName"] = args.minio_server_name
            monitors.append(
                self._monitor(
                    f"{name}-minio",
                    "ServiceMonitor",
                    "minio",
                    args,
                    labels,
                    args.minio_selector,
                    "endpoints",
                    {
                        "port": args.minio_port_name,
                        "scheme": "https",
                        "path": MINIO_METRICS_PATH,
                        "interval": args.interval,
                        "tlsConfig": tls,
                    },
                )
            )
            self._admit(f"{name}-minio-scrape", args, labels, args.minio_selector, args.minio_port, scraper)
        if args.postgres_selector is not None:
            monitors.append(
                self._monitor(
                    f"{name}-postgres",
                    "PodMonitor",
                    "postgres",
                    args,
                    labels,
                    args.postgres_selector,
                    "podMetricsEndpoints",
                    {"port": "metrics", "interval": args.interval},
                )
            )
            self._admit(f"{name}-postgres-scrape", args, labels, args.postgres_selector, CNPG_METRICS_PORT, scraper)
        self.monitor_names = pulumi.Output.all(*[m.metadata["name"] for m in monitors])
        self.register_outputs({"monitor_names": self.monitor_names})

    def _monitor(
        self,
        resource_name: str,
        kind: str,
        object_name: str,
        args: PlatformMonitoringArgs,
        labels: dict,
        selector: Mapping[str, str],
        endpoints_key: str,
        endpoint: dict,
    ):
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=API_VERSION,
            kind=kind,
            metadata={
                "name": object_name,
                "namespace": args.namespace,
                "labels": {**dict(args.monitor_labels or {}), **labels},
            },
            spec={"selector": {"matchLabels": dict(selector)}, endpoints_key: [endpoint]},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _admit(
        self,
        resource_name: str,
        args: PlatformMonitoringArgs,
        labels: dict,
        selector: Mapping[str, str],
        port: int,
        scraper: dict,
    ) -> None:
        """NetworkPolicies add up: this one only opens the metrics port to the Prometheus namespace."""
        k8s.networking.v1.NetworkPolicy(
            resource_name,
            metadata={"namespace": args.namespace, "labels": labels},
            spec={
                "podSelector": {"matchLabels": dict(selector)},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [scraper], "ports": [{"port": port, "protocol": "TCP"}]}],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
