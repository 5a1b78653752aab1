"""BarmanCloudPlugin: CloudNativePG's Barman Cloud plugin (WAL archiving, base backups, restores).

The objects of the plugin's release manifest (v0.14.0: ObjectStore CRD, RBAC, Service, Deployment),
in the operator's namespace, with its two certificates made by pulumi-tls instead of cert-manager:
the operator presents the client certificate, the plugin serves the server certificate and trusts
exactly the client one (as cert-manager's self-signed Issuer would have issued them). Owned by the
cluster stack; one per cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.k8s import PART_OF, checkov_skips, image_skips

PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
VERSION = "0.14.0"
IMAGE = f"ghcr.io/cloudnative-pg/plugin-barman-cloud:v{VERSION}"
SIDECAR_IMAGE = f"ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v{VERSION}"
CRD_SOURCE = (
    f"https://raw.githubusercontent.com/cloudnative-pg/plugin-barman-cloud/v{VERSION}/"
    "config/crd/bases/barmancloud.cnpg.io_objectstores.yaml"
)
SERVICE = "barman-cloud"
ACCOUNT = "plugin-barman-cloud"
PORT = 9090
# The operator pods' name label (cloudnative-pg chart), the one client of the plugin's server.
OPERATOR_POD_NAME = "cloudnative-pg"
UID = 10001


@dataclass
class BarmanCloudPluginArgs:
    # The CloudNativePG operator's namespace: the plugin must run beside it.
    namespace: pulumi.Input[str]
    image: str = IMAGE
    sidecar_image: str = SIDECAR_IMAGE
    # The ObjectStore CRD: the file of the plugin's release (URL), or a local copy (air-gapped).
    crd_source: str = CRD_SOURCE
    # Certificate lifetime; pulumi-tls replaces a certificate on the first `up` within the renewal window.
    validity_days: int = 365
    early_renewal_days: int = 30


class BarmanCloudPlugin(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    version: pulumi.Output[str]

    def __init__(self, name: str, args: BarmanCloudPluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:BarmanCloudPlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {**PART_OF, "app.kubernetes.io/name": "plugin-barman-cloud"}
        crd = k8s.yaml.v2.ConfigFile(f"{name}-crd", file=args.crd_source, opts=child)
        server_tls, client_tls = (
            self._certificate(f"{name}-{role}", args, role, labels) for role in ("server", "client")
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account", metadata={"name": ACCOUNT, "namespace": args.namespace, "labels": labels}, opts=child
        )
        self._rbac(name, args, labels)
        sidecar = k8s.core.v1.Secret(
            f"{name}-sidecar-image",
            metadata={"namespace": args.namespace, "labels": labels},
            string_data={"SIDECAR_IMAGE": args.sidecar_image},
            opts=child,
        )
        pod_labels = {"app": SERVICE}
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": SERVICE,
                "namespace": args.namespace,
                "labels": {**labels, **pod_labels, "cnpg.io/pluginName": PLUGIN_NAME},
                # How the operator finds the plugin and the certificates to talk to it.
                "annotations": {
                    "cnpg.io/pluginClientSecret": client_tls.metadata.name,
                    "cnpg.io/pluginServerSecret": server_tls.metadata.name,
                    "cnpg.io/pluginPort": str(PORT),
                },
            },
            spec={"selector": pod_labels, "ports": [{"port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": labels},
            # Only the operator calls the plugin (CNPG-I over mTLS); the plugin itself calls the API server.
            spec={
                "podSelector": {"matchLabels": pod_labels},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR_POD_NAME}}}],
                        "ports": [{"port": PORT, "protocol": "TCP"}],
                    }
                ],
            },
            opts=child,
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": SERVICE,
                "namespace": args.namespace,
                "labels": {**labels, **pod_labels},
                "annotations": checkov_skips(
                    {
                        **image_skips(),
                        "CKV_K8S_35": "the plugin reads SIDECAR_IMAGE from its environment only (upstream manifest)",
                        "CKV_K8S_38": "the plugin is a controller: it watches ObjectStores and Backups through the API",
                    }
                ),
            },
            spec=self._deployment_spec(args, account, sidecar, server_tls, client_tls, pod_labels),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[crd]),
        )
        self.namespace = deployment.metadata.namespace
        # Known once the Deployment is available (the provider waits for it).
        self.version = deployment.metadata.name.apply(lambda _: VERSION)
        self.register_outputs({"namespace": self.namespace, "version": self.version})

    def _certificate(self, name: str, args: BarmanCloudPluginArgs, role: str, labels: dict) -> k8s.core.v1.Secret:
        """A self-signed certificate (its own CA) in a kubernetes.io/tls Secret, as cert-manager's Issuer made it."""
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        common_name = SERVICE if role == "server" else f"{SERVICE}-client"
        cert = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=key.private_key_pem,
            subject={"common_name": common_name, "organization": "mlflow-platform"},
            dns_names=[SERVICE] if role == "server" else [],
            allowed_uses=["digital_signature", "key_encipherment", f"{role}_auth"],
            validity_period_hours=args.validity_days * 24,
            early_renewal_hours=args.early_renewal_days * 24,
            opts=child,
        )
        return k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"namespace": args.namespace, "labels": labels},
            type="kubernetes.io/tls",
            string_data={"tls.crt": cert.cert_pem, "tls.key": key.private_key_pem, "ca.crt": cert.cert_pem},
            opts=child,
        )

    def _rbac(self, name: str, args: BarmanCloudPluginArgs, labels: dict) -> None:
        """The plugin's permissions, as its release manifest grants them."""
        child = pulumi.ResourceOptions(parent=self)
        subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": args.namespace}]
        crud = ["create", "delete", "get", "list", "patch", "update", "watch"]
        role = k8s.rbac.v1.Role(
            f"{name}-leader-election",
            metadata={"namespace": args.namespace, "labels": labels},
            rules=[
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": crud},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": crud},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-leader-election",
            metadata={"namespace": args.namespace, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=subject,
            opts=child,
        )
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-operator",
            metadata={"labels": labels},
            rules=[
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "list", "watch"]},
                {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores"], "verbs": crud},
                {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores/finalizers"], "verbs": ["update"]},
                {
                    "apiGroups": ["barmancloud.cnpg.io"],
                    "resources": ["objectstores/status"],
                    "verbs": ["get", "patch", "update"],
                },
                {"apiGroups": ["postgresql.cnpg.io"], "resources": ["backups"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["postgresql.cnpg.io"], "resources": ["clusters/finalizers"], "verbs": ["update"]},
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["rolebindings", "roles"],
                    "verbs": ["create", "get", "list", "patch", "update", "watch"],
                },
            ],
            opts=child,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-operator",
            metadata={"labels": labels},
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role.metadata.name,
            },
            subjects=subject,
            opts=child,
        )

    @staticmethod
    def _deployment_spec(args, account, sidecar, server_tls, client_tls, pod_labels: dict) -> dict:
        security = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        return {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            # One leader at a time, as upstream: no overlap during an update.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": account.metadata.name,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "barman-cloud",
                            "image": args.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                "operator",
                                "--server-cert=/server/tls.crt",
                                "--server-key=/server/tls.key",
                                "--client-cert=/client/tls.crt",
                                f"--server-address=:{PORT}",
                                "--leader-elect",
                            ],
                            "env": [
                                {
                                    "name": "SIDECAR_IMAGE",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": sidecar.metadata.name, "key": "SIDECAR_IMAGE"}
                                    },
                                }
                            ],
                            "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                            "readinessProbe": {
                                "tcpSocket": {"port": PORT},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                            },
                            "livenessProbe": {
                                "tcpSocket": {"port": PORT},
                                "initialDelaySeconds": 30,
                                "periodSeconds": 20,
                            },
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "64Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"},
                            },
                            "securityContext": security,
                            "volumeMounts": [
                                {"name": "server", "mountPath": "/server", "readOnly": True},
                                {"name": "client", "mountPath": "/client", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "server", "secret": {"secretName": server_tls.metadata.name}},
                        {"name": "client", "secret": {"secretName": client_tls.metadata.name}},
                    ],
                },
            },
        }
