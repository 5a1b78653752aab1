"""Kubernetes building blocks shared by the components: labels, restricted security contexts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

# Every pod runs as this non-root user: above 10000 so it never maps onto a host account.
NON_ROOT_UID = 10001
PART_OF = {"app.kubernetes.io/part-of": "mlflow-platform", "app.kubernetes.io/managed-by": "pulumi"}


def labels(name: str, component: str) -> dict[str, str]:
    """Selector-safe labels: name and component identify the pods; the rest is informational."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component, **PART_OF}


def selector(pod_labels: Mapping[str, str]) -> dict[str, str]:
    return {key: pod_labels[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/component")}


def pod_security_context() -> dict:
    """Pod Security Standard `restricted` at pod level."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict:
    """Pod Security Standard `restricted` per container, with a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def service_dns_names(services: Sequence[str], namespace: pulumi.Input[str]) -> pulumi.Output[list[str]]:
    """Every name a client in the cluster may use for these Services (certificate SANs)."""
    return pulumi.Output.from_input(namespace).apply(
        lambda ns: [
            name
            for service in services
            for name in (service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local")
        ]
    )


def checkov_skips(reasons: Mapping[str, str]) -> dict[str, str]:
    """checkov reads `checkov.io/skipN: CHECK_ID=reason` annotations; the reason stays in the manifest."""
    return {f"checkov.io/skip{index}": f"{check}={reason}" for index, (check, reason) in enumerate(reasons.items(), 1)}


# Tags are pinned and configurable per stack (one config key each); digests would make every
# version bump a two-step edit. The policy pack and configuration model (config/) reject unpinned tags.
PINNED_TAG_REASON = "image pinned by an immutable release tag from stack config; digest optional via the same key"
# Every image here is pinned; IfNotPresent avoids a registry round-trip on each restart.
PULL_POLICY_REASON = "pinned immutable tags make IfNotPresent safe"


def image_skips() -> dict[str, str]:
    return {"CKV_K8S_43": PINNED_TAG_REASON, "CKV_K8S_15": PULL_POLICY_REASON}


def writable_scratch(size_limit: str = "256Mi") -> dict:
    return {"emptyDir": {"sizeLimit": size_limit}}


def service_account(namespace, pod_labels: Mapping[str, str]) -> dict:
    """ServiceAccount args for workloads that never talk to the Kubernetes API."""
    return {
        "metadata": {"namespace": namespace, "labels": dict(pod_labels)},
        "automount_service_account_token": False,
    }


# Pods resolve names through the cluster DNS, wherever it runs (kube-dns, NodeLocal DNSCache).
DNS_EGRESS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def egress_policy(
    name: str,
    namespace: pulumi.Input[str],
    pod_selector: Mapping[str, str],
    destinations: Sequence[pulumi.Input[Mapping]],
    parent: pulumi.Resource,
) -> k8s.networking.v1.NetworkPolicy:
    """Pods that never call the Kubernetes API reach DNS and the listed destinations, nothing else."""
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata={"namespace": namespace, "labels": PART_OF},
        spec={
            "podSelector": {"matchLabels": dict(pod_selector)},
            "policyTypes": ["Egress"],
            "egress": [DNS_EGRESS, *destinations],
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )


def job_spec(
    pod_labels: Mapping[str, str],
    account,
    containers: Sequence[dict],
    volumes: Sequence[dict],
    backoff_limit: int,
    deadline_seconds: int,
    init_containers: Sequence[dict] = (),
    pod_annotations: Mapping[str, str] | None = None,
) -> dict:
    """A run-to-completion Job whose restricted pod never talks to the Kubernetes API."""
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": account.metadata.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": list(containers),
        "volumes": list(volumes),
    }
    if init_containers:
        pod["initContainers"] = list(init_containers)
    metadata: dict = {"labels": dict(pod_labels)}
    if pod_annotations:
        metadata["annotations"] = dict(pod_annotations)
    return {
        "backoffLimit": backoff_limit,
        "activeDeadlineSeconds": deadline_seconds,
        "template": {"metadata": metadata, "spec": pod},
    }


# Server-side apply: fields another manager took over (`kubectl scale`, `kubectl edit`) would make
# the next `up` stop on a field conflict. The stack's declared state wins, so one `up` repairs drift.
PATCH_FORCE = {"pulumi.com/patchForce": "true"}


def declared_state_wins(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    """Resource transformation for every Kubernetes object of a stack: annotate it with PATCH_FORCE."""
    if not args.type_.startswith("kubernetes:") or args.type_.startswith(("kubernetes:helm.sh", "kubernetes:yaml")):
        return None
    metadata = args.props.get("metadata")
    if not isinstance(metadata, dict):
        return None
    annotations = pulumi.Output.from_input(metadata.get("annotations") or {}).apply(
        lambda existing: {**(existing or {}), **PATCH_FORCE}
    )
    return pulumi.ResourceTransformationResult(
        {**args.props, "metadata": {**metadata, "annotations": annotations}}, args.opts
    )


# The tracking URL comes from config, not from the ingress controller: `up` does not wait for a
# load-balancer status that many controllers (k3d's Traefik without a LB, host-port setups) never
# publish. `kubectl get ingress` shows what the controller did.
INGRESS_NO_AWAIT = {"pulumi.com/skipAwait": "true"}


# What retained data (a protected PostgreSQL Cluster, MinIO's StatefulSet and volumes) needs to run
# again after its stack is destroyed: its TLS, CA and credential Secrets, the Services its pods
# resolve, the ServiceAccounts they run as, and what keeps backing it up. A protected stack keeps them.
DATA_DEPENDENCY_TYPES = (
    "kubernetes:core/v1:Secret",
    "kubernetes:core/v1:Service",
    "kubernetes:core/v1:ServiceAccount",
    # What keeps archiving the retained database: the plugin's ObjectStore and the backup schedule.
    "kubernetes:barmancloud.cnpg.io/v1:ObjectStore",
    "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup",
)


def kept_with_data(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    """Resource transformation for protected stacks: what the retained data runs with is retained too."""
    if args.type_ not in DATA_DEPENDENCY_TYPES:
        return None
    return pulumi.ResourceTransformationResult(
        args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(retain_on_delete=True))
    )


def disruption_budget(
    name: str, namespace: pulumi.Input[str], pod_labels: Mapping[str, str], budget: Mapping[str, int], parent
) -> k8s.policy.v1.PodDisruptionBudget:
    """How many of these pods a voluntary eviction (a node drain) may take at once."""
    return k8s.policy.v1.PodDisruptionBudget(
        name,
        metadata={"namespace": namespace, "labels": dict(pod_labels)},
        spec={**budget, "selector": {"matchLabels": selector(pod_labels)}},
        opts=pulumi.ResourceOptions(parent=parent),
    )
