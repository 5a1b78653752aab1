"""PlatformNamespace: the stack's namespace, enforcing Pod Security `restricted`, deny-by-default."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF


@dataclass
class PlatformNamespaceArgs:
    name: str
    # Deleting a namespace deletes everything in it, protected or not: in prod it is protected too.
    protect: bool = False
    # Namespace of the CloudNativePG operator serving this stack, recorded as a label. When it is
    # an output of this stack's own operator, the namespace (and so everything in it) waits for
    # the operator: a stack that cannot own the operator stops before creating anything.
    operator_namespace: pulumi.Input[str] = "cnpg-system"
    # What the stored data was created with (checked against the last deployment before anything
    # is registered), recorded as an annotation: every object of the stack waits for that check.
    storage_layout: pulumi.Input[Mapping[str, Any]] = field(default_factory=dict)


class PlatformNamespace(pulumi.ComponentResource):
    """One namespace per stack (mlflow-<stack>), so stacks never collide on a shared cluster."""

    name: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:PlatformNamespace", name, None, opts)
        pod_security = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.name,
                "labels": {
                    **PART_OF,
                    **pod_security,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "mlflow-platform/cnpg-operator-namespace": args.operator_namespace,
                },
                "annotations": {
                    "mlflow-platform/storage-layout": pulumi.Output.from_input(args.storage_layout).apply(
                        lambda layout: json.dumps(layout, sort_keys=True)
                    )
                },
            },
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata={"namespace": namespace.metadata.name, "labels": PART_OF},
            # Every workload lists who may reach it; anything unlisted is refused.
            spec={"podSelector": {}, "policyTypes": ["Ingress"]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = namespace.metadata.name
        self.register_outputs({"name": self.name})
