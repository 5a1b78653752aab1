"""CnpgOperator: the cluster-wide CloudNativePG operator, owned by the cluster stack alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF

CHART_NAME = "cloudnative-pg"
CHART_REPOSITORY = "https://cloudnative-pg.github.io/charts"
RELEASE_NAME = "cnpg"
OWNER_LABEL = "mlflow-platform/cluster-services-owner"


@dataclass
class CnpgOperatorArgs:
    chart_version: str
    namespace: str = "cnpg-system"
    # Where the chart comes from: a chart repository, or (air-gapped clusters) a local chart
    # directory or .tgz archive, which then wins over the repository.
    chart_repository: str = CHART_REPOSITORY
    chart_path: str = ""
    # Passed through to the chart unchanged (checked against its values.schema.json by Helm).
    values: Mapping[str, Any] = field(default_factory=dict)
    # Recorded on the operator's namespace, so `kubectl get ns --show-labels` tells who owns it.
    owner: str = ""


class CnpgOperator(pulumi.ComponentResource):
    """The operator's namespace and Helm release, both with fixed names: one per cluster.

    The provider creates objects without upserting, so a second owner fails on the namespace with
    "already exists" before its release is created. The chart keeps its CRDs on uninstall
    (`helm.sh/resource-policy: keep`), so destroying this stack never deletes a PostgreSQL cluster.
    """

    namespace: pulumi.Output[str]
    version: pulumi.Output[str]

    def __init__(self, name: str, args: CnpgOperatorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:CnpgOperator", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.namespace,
                # The operator's and the plugin's pods meet Pod Security `restricted`: enforce it here too.
                "labels": {
                    **PART_OF,
                    OWNER_LABEL: args.owner,
                    **{f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")},
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        # A local chart is checked to be chart_version (config.rules); Helm reads it from its Chart.yaml.
        source: dict[str, Any] = (
            {"chart": args.chart_path}
            if args.chart_path
            else {"chart": CHART_NAME, "repository_opts": {"repo": args.chart_repository}}
        )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=RELEASE_NAME,
            namespace=namespace.metadata.name,
            version=args.chart_version,
            values=dict(args.values),
            # Ready means the operator's Deployment is available: its webhooks answer before any
            # environment stack submits a Cluster.
            skip_await=False,
            **source,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        self.namespace = release.status.apply(lambda status: status.namespace)
        self.version = release.status.apply(lambda status: status.app_version)
        self.register_outputs({"namespace": self.namespace, "version": self.version})
