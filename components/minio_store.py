"""MinioStore: MinIO over TLS with MLflow's bucket, a least-privilege user and a bucket policy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_minio as minio
import pulumi_random as random

from components import k8s as kube
from components.admin_endpoint import admin_address, admin_service, runner_ca_file, san_split
from components.tls_certificate import TlsCertificate, TlsCertificateArgs
from settings import IngressSettings, MinioSettings, TlsSettings

PORT = 9000
SERVICE = "minio"
HEADLESS_SERVICE = "minio-hl"
CERTS_DIR = "/etc/minio/certs"
ENV_FILE = "/etc/minio/config/config.env"
DATA_DIR = "/data"


@dataclass
class MinioStoreArgs:
    namespace: pulumi.Input[str]
    stack: str
    settings: MinioSettings
    tls: TlsSettings
    ingress: IngressSettings
    client_pod_labels: Mapping[str, str]
    user_name: str = "mlflow"
    protect_data: bool = False
    ephemeral: bool = False


def bucket_policy(bucket: str) -> str:
    """Only what MLflow's artifact proxy does: list, read, write, delete and multipart in one bucket."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow",
             "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
             "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                        "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
             "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }, sort_keys=True)


class MinioStore(pulumi.ComponentResource):
    """MinIO StatefulSet (TLS, restricted), admin endpoint for the runner, bucket + scoped user."""

    endpoint_url: pulumi.Output[str]
    bucket: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    ca_secret_name: pulumi.Output[str]
    admin_host: pulumi.Output[str]

    def __init__(self, name: str, args: MinioStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow-platform:index:MinioStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings
        pod_labels = kube.labels(SERVICE, "object-store")
        ingress_host = pulumi.Output.concat("minio-", args.namespace, ".", args.ingress.domain)

        admin_svc = admin_service(name, args.namespace, cfg.admin, PORT, kube.selector(pod_labels),
                                  kube.labels(SERVICE, "object-store-admin"), parent=self)
        admin_host, admin_port = admin_address(cfg.admin, admin_svc, PORT, ingress_host=ingress_host)
        admin_dns, admin_ips = san_split(admin_host)
        namespace = pulumi.Output.from_input(args.namespace)
        peer_wildcards = namespace.apply(lambda ns: [
            f"*.{HEADLESS_SERVICE}.{ns}.svc", f"*.{HEADLESS_SERVICE}.{ns}.svc.cluster.local"])
        dns_names = pulumi.Output.all(
            kube.service_dns_names([SERVICE, HEADLESS_SERVICE], args.namespace), peer_wildcards, admin_dns,
        ).apply(lambda parts: sorted(set(parts[0] + parts[1] + parts[2])))
        certificate = TlsCertificate(f"{name}-tls", TlsCertificateArgs(
            namespace=args.namespace, common_name=SERVICE, dns_names=dns_names, ip_addresses=admin_ips,
            algorithm=args.tls.algorithm, validity_days=args.tls.validity_days,
            early_renewal_days=args.tls.early_renewal_days, self_signed=args.tls.self_signed,
        ), opts=child)

        root_user = random.RandomPassword(f"{name}-root-user", length=20, special=False, opts=child)
        root_password = random.RandomPassword(f"{name}-root-password", length=40, special=False, opts=child)
        root_env = k8s.core.v1.Secret(
            f"{name}-root-credentials",
            metadata={"namespace": args.namespace, "labels": pod_labels},
            type="Opaque",
            string_data={"config.env": pulumi.Output.format(
                "MINIO_ROOT_USER={0}\nMINIO_ROOT_PASSWORD={1}\n", root_user.result, root_password.result)},
            opts=child,
        )
        services = [
            k8s.core.v1.Service(f"{name}-{suffix}", metadata={
                "name": svc_name, "namespace": args.namespace, "labels": pod_labels,
                # Traefik speaks HTTPS to this backend when the admin ingress is used.
                "annotations": {"traefik.ingress.kubernetes.io/service.serversscheme": "https"},
            }, spec=spec, opts=child)
            for suffix, svc_name, spec in (
                ("service", SERVICE, {"selector": kube.selector(pod_labels),
                                      "ports": [{"name": "https", "port": PORT, "targetPort": PORT}]}),
                ("headless", HEADLESS_SERVICE, {"clusterIP": "None", "publishNotReadyAddresses": True,
                                                "selector": kube.selector(pod_labels),
                                                "ports": [{"name": "https", "port": PORT, "targetPort": PORT}]}),
            )
        ]
        account = k8s.core.v1.ServiceAccount(f"{name}-service-account", **kube.service_account(args.namespace, pod_labels), opts=child)
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={"name": SERVICE, "namespace": args.namespace, "labels": pod_labels,
                      "annotations": kube.checkov_skips(kube.image_skips())},
            spec=self._statefulset_spec(args, pod_labels, account, certificate, root_env, namespace),
            opts=pulumi.ResourceOptions(parent=self, depends_on=services,
                                        protect=args.protect_data, retain_on_delete=args.protect_data),
        )
        admin_ingress = self._admin_ingress(name, args, ingress_host, certificate, pod_labels) \
            if cfg.admin.access == "ingress" else None
        self._network_policy(name, args, pod_labels)

        provider = minio.Provider(
            f"{name}-admin-provider",
            minio_server=pulumi.Output.concat(admin_host, ":", str(admin_port)),
            minio_user=root_user.result,
            minio_password=root_password.result,
            minio_ssl=True,
            minio_cacert_file=runner_ca_file(args.stack, f"{name}-ca", certificate.ca_pem),
            minio_region=cfg.region,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[statefulset, *(r for r in (admin_svc, admin_ingress) if r)]),
        )
        s3 = pulumi.ResourceOptions(parent=self, provider=provider)
        bucket = minio.S3Bucket(
            f"{name}-bucket", bucket=cfg.bucket, acl="private", force_destroy=args.ephemeral,
            opts=pulumi.ResourceOptions.merge(s3, pulumi.ResourceOptions(
                protect=args.protect_data, retain_on_delete=args.protect_data)),
        )
        user_secret = random.RandomPassword(f"{name}-{args.user_name}-secret-key", length=40, special=False, opts=child)
        user = minio.IamUser(f"{name}-{args.user_name}-user", name=args.user_name, secret=user_secret.result,
                             force_destroy=True, opts=s3)
        policy = minio.IamPolicy(f"{name}-{args.user_name}-policy", name=f"{args.user_name}-{cfg.bucket}",
                                 policy=bucket.bucket.apply(bucket_policy), opts=s3)
        attachment = minio.IamUserPolicyAttachment(f"{name}-{args.user_name}-policy-attachment",
                                                   user_name=user.name, policy_name=policy.name, opts=s3)

        self.endpoint_url = pulumi.Output.concat("https://", SERVICE, ".", args.namespace, ".svc:", str(PORT))
        # The key pair is usable only once the policy is attached.
        self.bucket = pulumi.Output.all(bucket.bucket, attachment.id).apply(lambda v: v[0])
        self.access_key = pulumi.Output.all(user.name, attachment.id).apply(lambda v: v[0])
        self.secret_key = pulumi.Output.secret(user_secret.result)
        self.ca_pem = certificate.ca_pem
        self.ca_secret_name = certificate.ca_secret_name
        self.admin_host = admin_host
        self.register_outputs({
            "endpoint_url": self.endpoint_url, "bucket": self.bucket, "access_key": self.access_key,
            "secret_key": self.secret_key, "ca_pem": self.ca_pem, "ca_secret_name": self.ca_secret_name,
            "admin_host": self.admin_host,
        })

    @staticmethod
    def _statefulset_spec(args: MinioStoreArgs, pod_labels: dict, account, certificate: TlsCertificate,
                          root_env, namespace: pulumi.Output[str]) -> dict:
        cfg = args.settings
        if cfg.replicas == 1:
            volumes_arg: pulumi.Input[str] = DATA_DIR
        else:
            volumes_arg = namespace.apply(
                lambda ns: f"https://{SERVICE}-{{0...{cfg.replicas - 1}}}.{HEADLESS_SERVICE}.{ns}.svc:{PORT}{DATA_DIR}")
        storage = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": cfg.storage_size}}}
        if cfg.storage_class:
            storage["storageClassName"] = cfg.storage_class
        retention = "Retain" if args.protect_data else "Delete"
        probe = {"scheme": "HTTPS", "port": PORT}
        return {
            "serviceName": HEADLESS_SERVICE,
            "replicas": cfg.replicas,
            # Distributed MinIO needs all peers to start together.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": kube.selector(pod_labels)},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": retention},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": account.metadata.name,
                    "automountServiceAccountToken": False,
                    "securityContext": kube.pod_security_context(),
                    "containers": [{
                        "name": "minio",
                        "image": cfg.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["server", "--address", f":{PORT}", "--certs-dir", CERTS_DIR, volumes_arg],
                        "env": [
                            {"name": "MINIO_CONFIG_ENV_FILE", "value": ENV_FILE},
                            {"name": "MINIO_SITE_REGION", "value": cfg.region},
                            {"name": "MINIO_BROWSER", "value": "off"},
                            {"name": "HOME", "value": "/tmp"},
                        ],
                        "ports": [{"name": "https", "containerPort": PORT}],
                        "resources": cfg.resources.as_k8s(),
                        "securityContext": kube.container_security_context(),
                        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", **probe},
                                           "periodSeconds": 10, "timeoutSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/minio/health/live", **probe},
                                          "initialDelaySeconds": 10, "periodSeconds": 20, "timeoutSeconds": 5},
                        "volumeMounts": [
                            {"name": "data", "mountPath": DATA_DIR},
                            {"name": "certs", "mountPath": CERTS_DIR, "readOnly": True},
                            {"name": "config", "mountPath": ENV_FILE.rsplit("/", 1)[0], "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "certs", "secret": {"secretName": certificate.secret_name, "defaultMode": 0o440, "items": [
                            {"key": "tls.crt", "path": "public.crt"},
                            {"key": "tls.key", "path": "private.key"},
                            {"key": "ca.crt", "path": "CAs/ca.crt"},
                        ]}},
                        {"name": "config", "secret": {"secretName": root_env.metadata.name, "defaultMode": 0o440}},
                        {"name": "tmp", **kube.writable_scratch()},
                    ],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": pod_labels}, "spec": storage}],
        }

    def _admin_ingress(self, name: str, args: MinioStoreArgs, host: pulumi.Output[str],
                       certificate: TlsCertificate, pod_labels: dict) -> k8s.networking.v1.Ingress:
        """The ingress serves MinIO's own certificate (its SANs include the FQDN) and re-encrypts to MinIO."""
        spec: dict = {
            "tls": [{"hosts": [host], "secretName": certificate.secret_name}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": SERVICE, "port": {"number": PORT}}}}]}}],
        }
        if args.ingress.class_name:
            spec["ingressClassName"] = args.ingress.class_name
        return k8s.networking.v1.Ingress(
            f"{name}-admin-ingress",
            metadata={"namespace": args.namespace, "labels": pod_labels, "annotations": {
                "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
                "nginx.ingress.kubernetes.io/proxy-body-size": "0",
            }},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _network_policy(self, name: str, args: MinioStoreArgs, pod_labels: dict) -> None:
        """MinIO accepts MLflow, its own peers, the runner's CIDRs and (ingress mode) ingress controllers."""
        port = [{"port": PORT, "protocol": "TCP"}]
        rules = [
            {"from": [{"podSelector": {"matchLabels": dict(args.client_pod_labels)}},
                      {"podSelector": {"matchLabels": kube.selector(pod_labels)}}], "ports": port},
            {"from": [{"ipBlock": {"cidr": cidr}} for cidr in args.settings.admin.source_ranges], "ports": port},
        ]
        if args.settings.admin.access == "ingress":
            rules.append({"from": [{"namespaceSelector": {}}], "ports": port})
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": pod_labels},
            spec={"podSelector": {"matchLabels": kube.selector(pod_labels)}, "policyTypes": ["Ingress"], "ingress": rules},
            opts=pulumi.ResourceOptions(parent=self),
        )
