"""PlatformNamespace: the stack's namespace, enforcing Pod Security `restricted`, deny-by-default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import PART_OF


@dataclass
class PlatformNamespaceArgs:
    name: str
    # Deleting a namespace deletes everything in it, protected or not: in prod it is protected too.
    protect: bool = False


class PlatformNamespace(pulumi.ComponentResource):
    """One namespace per stack (mlflow-<stack>), so stacks never collide on a shared cluster."""

    name: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow-platform:index:PlatformNamespace", name, None, opts)
        pod_security = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.name, "labels": {**PART_OF, **pod_security,
                                                    "pod-security.kubernetes.io/enforce-version": "latest"}},
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
