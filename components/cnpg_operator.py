"""CnpgOperator: the cluster-wide CloudNativePG operator, owned by exactly one stack per cluster."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF

CHART_REPO = "https://cloudnative-pg.github.io/charts"
RELEASE_NAME = "cnpg"
OWNER_LABEL = "mlflow-platform/cnpg-operator-owner"


@dataclass
class CnpgOperatorArgs:
    chart_version: str
    namespace: str = "cnpg-system"
    # Recorded on the operator's namespace, so `kubectl get ns --show-labels` tells who owns it.
    owner: str = ""


class CnpgOperator(pulumi.ComponentResource):
    """The operator's namespace and Helm release, both with fixed names.

    Ownership is the namespace itself: the provider creates objects without upserting, so a second
    stack that claims the operator fails on the namespace with "already exists", before its Helm
    release or anything that depends on the operator is created. Both are left in place when the
    owning stack is destroyed: other stacks' PostgreSQL clusters keep their operator (README:
    "Several stacks on one cluster").
    """

    namespace: pulumi.Output[str]
    release_status: pulumi.Output[dict]

    def __init__(self, name: str, args: CnpgOperatorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:CnpgOperator", name, None, opts)
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": {**PART_OF, OWNER_LABEL: args.owner}},
            opts=keep,
        )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=RELEASE_NAME,
            chart="cloudnative-pg",
            version=args.chart_version,
            repository_opts={"repo": CHART_REPO},
            namespace=namespace.metadata.name,
            # The operator's webhooks must answer before any Cluster is submitted.
            skip_await=False,
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        # Read from the release, so whatever uses the namespace waits for the operator itself.
        self.namespace = release.status.apply(lambda status: status.namespace)
        self.release_status = release.status
        self.register_outputs({"namespace": self.namespace, "release_status": self.release_status})
