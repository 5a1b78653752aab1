"""MinioStore: MinIO over TLS with MLflow's bucket, a least-privilege user and a bucket policy.

The bucket, user, policy and attachment are created by a Job inside the namespace (MinIO's own
`mc`, shipped in the pinned MinIO image), so the machine running Pulumi never connects to MinIO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import k8s as kube
from components import publishing
from components.publishing import Publication
from components.s3_policy import bucket_policy, policy_name
from components.tls_certificate import TlsCertificate, TlsCertificateArgs

PORT = 9000
SERVICE = "minio"
HEADLESS_SERVICE = "minio-hl"
HEADLESS_LABELS = {"app.kubernetes.io/component": "object-store-peers"}
# MinIO's pods, and their selector in matchLabels form (for monitors and other pods' policies).
POD_LABELS = kube.labels(SERVICE, "object-store")
POD_SELECTOR = kube.selector(POD_LABELS)
CERTS_DIR = "/etc/minio/certs"
ENV_FILE = "/etc/minio/config/config.env"
DATA_DIR = "/data"
BOOTSTRAP_DIR = "/etc/minio-bootstrap"
BOOTSTRAP_SCRIPT = Path(__file__).resolve().parent / "minio_bootstrap.sh"
BOOTSTRAP_LABELS = kube.labels(SERVICE, "bootstrap")
# Requests of the bootstrap Job's container: its share of a profile's footprint (quota sizing).
BOOTSTRAP_CPU_REQUEST = "10m"
BOOTSTRAP_MEMORY_REQUEST = "32Mi"
SECRET_ENV_REASON = "the bootstrap reads the MLflow user's keys from secretKeyRef, never plain text in the spec"


@dataclass
class MinioStoreArgs:
    namespace: pulumi.Input[str]
    image: str
    replicas: int
    storage_size: str
    resources: Mapping[str, Mapping[str, str]]
    bucket: str
    region: str
    # Pods that use the store (MLflow's server and Jobs).
    client_pod_labels: Mapping[str, str]
    storage_class: str = ""
    user_name: str = "mlflow"
    # prod: the StatefulSet is protected.
    protect_data: bool = False
    # pr: PVCs go with the StatefulSet; everywhere else they are kept (and re-adopted).
    ephemeral: bool = False
    tls_algorithm: str = "ECDSA"
    tls_validity_days: int = 730
    tls_early_renewal_days: int = 30
    tls_self_signed: bool = False
    # Publish the S3 API as minio-<namespace>.<domain> (for direct presigned transfers from outside the
    # cluster), over TLS only; mode none keeps MinIO cluster-internal.
    publication: Publication = Publication(mode="none")
    public_timeout_seconds: int = 600
    # A second bucket with its own least-privilege user (PostgreSQL backups), made by the same
    # bootstrap Job; "" makes none. Pods with backup_client_pod_labels may reach MinIO.
    backup_bucket: str = ""
    backup_user_name: str = "barman"
    backup_client_pod_labels: Mapping[str, str] | None = None
    # Serve /minio/v2/metrics/* without a token (MINIO_PROMETHEUS_AUTH_TYPE=public).
    metrics_public: bool = False


class MinioStore(pulumi.ComponentResource):
    """MinIO StatefulSet (TLS, restricted), admin endpoint for the runner, bucket + scoped user."""

    endpoint_url: pulumi.Output[str]
    bucket: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    ca_secret_name: pulumi.Output[str]
    client_egress: pulumi.Output[dict]
    # The published endpoint ("" when not published) and the egress rule a pod needs to reach it.
    public_endpoint_url: pulumi.Output[str]
    public_client_egress: pulumi.Output[dict]
    # MinIO's pods, in matchLabels form (POD_SELECTOR).
    pod_selector: dict[str, str]

    def __init__(self, name: str, args: MinioStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:MinioStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pod_labels = dict(POD_LABELS)
        namespace = pulumi.Output.from_input(args.namespace)
        peer_wildcards = namespace.apply(
            lambda ns: [f"*.{HEADLESS_SERVICE}.{ns}.svc", f"*.{HEADLESS_SERVICE}.{ns}.svc.cluster.local"]
        )
        dns_names = pulumi.Output.all(
            kube.service_dns_names([SERVICE, HEADLESS_SERVICE], args.namespace),
            peer_wildcards,
        ).apply(lambda parts: sorted(set(parts[0] + parts[1])))
        certificate = TlsCertificate(
            f"{name}-tls",
            TlsCertificateArgs(
                namespace=args.namespace,
                common_name=SERVICE,
                dns_names=dns_names,
                algorithm=args.tls_algorithm,
                validity_days=args.tls_validity_days,
                early_renewal_days=args.tls_early_renewal_days,
                self_signed=args.tls_self_signed,
            ),
            opts=child,
        )

        root_user = random.RandomPassword(f"{name}-root-user", length=20, special=False, opts=child)
        root_password = random.RandomPassword(f"{name}-root-password", length=40, special=False, opts=child)
        root_env = k8s.core.v1.Secret(
            f"{name}-root-credentials",
            metadata={"namespace": args.namespace, "labels": pod_labels},
            type="Opaque",
            string_data={
                "config.env": pulumi.Output.format(
                    "MINIO_ROOT_USER={0}\nMINIO_ROOT_PASSWORD={1}\n", root_user.result, root_password.result
                )
            },
            opts=child,
        )
        services = [
            k8s.core.v1.Service(
                f"{name}-{suffix}",
                metadata={
                    "name": svc_name,
                    "namespace": args.namespace,
                    # The headless Service (the servers' own names) is labelled apart: a ServiceMonitor
                    # selecting the object store's labels scrapes each server once, through `minio`.
                    "labels": pod_labels if svc_name == SERVICE else {**pod_labels, **HEADLESS_LABELS},
                },
                spec=spec,
                opts=child,
            )
            for suffix, svc_name, spec in (
                (
                    "service",
                    SERVICE,
                    {
                        "selector": kube.selector(pod_labels),
                        "ports": [{"name": "https", "port": PORT, "targetPort": PORT}],
                    },
                ),
                (
                    "headless",
                    HEADLESS_SERVICE,
                    {
                        "clusterIP": "None",
                        "publishNotReadyAddresses": True,
                        "selector": kube.selector(pod_labels),
                        "ports": [{"name": "https", "port": PORT, "targetPort": PORT}],
                    },
                ),
            )
        ]
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", **kube.service_account(args.namespace, pod_labels), opts=child
        )
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={
                "name": SERVICE,
                "namespace": args.namespace,
                "labels": pod_labels,
                "annotations": kube.checkov_skips(kube.image_skips()),
            },
            spec=self._statefulset_spec(args, pod_labels, account, certificate, root_env, namespace),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=services, protect=args.protect_data, retain_on_delete=args.protect_data
            ),
        )
        self._network_policy(name, args, pod_labels)
        if args.replicas > 1:
            # An erasure set of 4 writes with 3 drives up (parity 2): one eviction at a time, so a node
            # drain never takes two servers and the write quorum with them.
            kube.disruption_budget(f"{name}-pdb", args.namespace, pod_labels, {"maxUnavailable": 1}, self)

        def credentials(user: str):
            """A MinIO user's generated key pair, in a Secret (access-key, secret-key) the bootstrap reads."""
            secret = random.RandomPassword(f"{name}-{user}-secret-key", length=40, special=False, opts=child)
            return secret, k8s.core.v1.Secret(
                f"{name}-{user}-credentials",
                metadata={"namespace": args.namespace, "labels": BOOTSTRAP_LABELS},
                type="Opaque",
                string_data={"access-key": user, "secret-key": secret.result},
                opts=child,
            )

        user_secret, user_credentials = credentials(args.user_name)
        # PostgreSQL's backups: a user of their own, for their bucket only.
        backup_credentials = credentials(args.backup_user_name)[1] if args.backup_bucket else None
        bootstrap = self._bootstrap_job(
            name, args, account, certificate, root_env, user_credentials, statefulset, backup_credentials
        )
        kube.egress_policy(
            f"{name}-bootstrap-egress",
            args.namespace,
            kube.selector(BOOTSTRAP_LABELS),
            [self._egress_rule(pod_labels)],
            parent=self,
        )

        self.endpoint_url = pulumi.Output.concat("https://", SERVICE, ".", args.namespace, ".svc:", str(PORT))
        # The bucket (and so the key pair) is usable once the bootstrap Job completed; the MLflow
        # Deployment waits for it through this output, as it waits for the migration Job.
        self.bucket = bootstrap.id.apply(lambda _: args.bucket)
        self.access_key = pulumi.Output.from_input(args.user_name)
        # The backup bucket and its user's key pair (Secret keys access-key, secret-key). Deliberately not
        # waiting for the bootstrap Job: PostgreSQL comes up in parallel with MinIO, and WAL archiving
        # retries until the Job has made the bucket and user.
        self.backup_bucket = pulumi.Output.from_input(args.backup_bucket)
        self.backup_credentials_secret_name = (
            backup_credentials.metadata.name if backup_credentials is not None else pulumi.Output.from_input("")
        )
        self.secret_key = pulumi.Output.secret(user_secret.result)
        self.ca_pem = certificate.ca_pem
        self.ca_secret_name = certificate.ca_secret_name
        self.client_egress = pulumi.Output.from_input(self._egress_rule(pod_labels))
        self.pod_selector = dict(POD_SELECTOR)
        self.public_endpoint_url = pulumi.Output.from_input("")
        self.public_client_egress = self.client_egress
        if args.publication.published:
            if not args.publication.tls:
                raise ValueError(
                    "an S3 endpoint is published over TLS only: an ingress certificate or an HTTPS listener"
                )
            host = publishing.public_host(SERVICE, args.namespace, args.publication.domain)
            server_name = pulumi.Output.concat(SERVICE, ".", args.namespace, ".svc")
            publishing.publish(
                name,
                args.publication,
                namespace=args.namespace,
                host=host,
                service_name=SERVICE,
                port=PORT,
                labels=pod_labels,
                timeout_seconds=args.public_timeout_seconds,
                # TLS at the ingress, re-encrypted to MinIO and verified against its CA (ingress-nginx
                # annotations; other controllers need their equivalent); S3 clients stream any size.
                ingress_annotations={
                    "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
                    "nginx.ingress.kubernetes.io/proxy-ssl-verify": "on",
                    "nginx.ingress.kubernetes.io/proxy-ssl-secret": pulumi.Output.concat(
                        args.namespace, "/", certificate.ca_secret_name
                    ),
                    "nginx.ingress.kubernetes.io/proxy-ssl-name": server_name,
                    "nginx.ingress.kubernetes.io/proxy-ssl-server-name": "on",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
                    "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
                    "nginx.ingress.kubernetes.io/proxy-read-timeout": str(args.public_timeout_seconds),
                    "nginx.ingress.kubernetes.io/proxy-send-timeout": str(args.public_timeout_seconds),
                },
                parent=self,
            )
            if args.publication.mode == "httpRoute":
                # The Gateway re-encrypts to MinIO and verifies it against the stack's CA.
                publishing.backend_tls(
                    name,
                    namespace=args.namespace,
                    service_name=SERVICE,
                    ca_pem=certificate.ca_pem,
                    server_name=server_name,
                    labels=pod_labels,
                    parent=self,
                )
            self.public_endpoint_url = pulumi.Output.concat("https://", host)
            self.public_client_egress = pulumi.Output.from_input(publishing.client_egress())
        self.register_outputs(
            {
                "endpoint_url": self.endpoint_url,
                "bucket": self.bucket,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "ca_pem": self.ca_pem,
                "ca_secret_name": self.ca_secret_name,
                "client_egress": self.client_egress,
                "public_endpoint_url": self.public_endpoint_url,
                "backup_bucket": self.backup_bucket,
                "backup_credentials_secret_name": self.backup_credentials_secret_name,
                "public_client_egress": self.public_client_egress,
            }
        )

    @staticmethod
    def _egress_rule(pod_labels: dict) -> dict:
        return {
            "to": [{"podSelector": {"matchLabels": kube.selector(pod_labels)}}],
            "ports": [{"port": PORT, "protocol": "TCP"}],
        }

    def _bootstrap_job(
        self,
        name: str,
        args: MinioStoreArgs,
        account,
        certificate: TlsCertificate,
        root_env,
        user_credentials,
        statefulset,
        backup_credentials=None,
    ) -> k8s.batch.v1.Job:
        """Idempotent `mc` run: bucket, MLflow's user (password re-applied), policy (re-applied), attachment.

        The script and policy live in a ConfigMap and the keys in Secrets whose names change with
        their content, so a changed policy or password replaces the Job and it runs again.
        """
        files = k8s.core.v1.ConfigMap(
            f"{name}-bootstrap",
            metadata={"namespace": args.namespace, "labels": BOOTSTRAP_LABELS},
            data={
                "bootstrap.sh": BOOTSTRAP_SCRIPT.read_text(encoding="utf-8"),
                "policy.json": bucket_policy(args.bucket),
                # The backup user gets the same bucket-scoped rights (list, get, put, delete) on its own bucket.
                **({"backup-policy.json": bucket_policy(args.backup_bucket)} if args.backup_bucket else {}),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        plain = {
            "MINIO_ENDPOINT": pulumi.Output.concat(SERVICE, ".", args.namespace, ".svc:", str(PORT)),
            "MINIO_ROOT_ENV_FILE": ENV_FILE,
            "MINIO_CA_FILE": f"{BOOTSTRAP_DIR}/ca/ca.crt",
            "BUCKET": args.bucket,
            "REGION": args.region,
            "POLICY_NAME": policy_name(args.user_name, args.bucket),
            "POLICY_FILE": f"{BOOTSTRAP_DIR}/files/policy.json",
            "HOME": "/tmp",
        }
        env: list[dict] = [{"name": key, "value": value} for key, value in plain.items()] + [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": user_credentials.metadata.name, "key": key}}}
            for var, key in (("USER_ACCESS_KEY", "access-key"), ("USER_SECRET_KEY", "secret-key"))
        ]
        if backup_credentials is not None:
            env += [
                {"name": "BACKUP_BUCKET", "value": args.backup_bucket},
                {"name": "BACKUP_POLICY_NAME", "value": policy_name(args.backup_user_name, args.backup_bucket)},
                {"name": "BACKUP_POLICY_FILE", "value": f"{BOOTSTRAP_DIR}/files/backup-policy.json"},
            ] + [
                {"name": var, "valueFrom": {"secretKeyRef": {"name": backup_credentials.metadata.name, "key": key}}}
                for var, key in (("BACKUP_ACCESS_KEY", "access-key"), ("BACKUP_SECRET_KEY", "secret-key"))
            ]
        container = {
            "name": "bootstrap",
            "image": args.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", f"{BOOTSTRAP_DIR}/files/bootstrap.sh"],
            "env": env,
            "securityContext": kube.container_security_context(),
            "resources": {
                "requests": {"cpu": BOOTSTRAP_CPU_REQUEST, "memory": BOOTSTRAP_MEMORY_REQUEST},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
            "volumeMounts": [
                {"name": "files", "mountPath": f"{BOOTSTRAP_DIR}/files", "readOnly": True},
                {"name": "ca", "mountPath": f"{BOOTSTRAP_DIR}/ca", "readOnly": True},
                {"name": "config", "mountPath": ENV_FILE.rsplit("/", 1)[0], "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
        volumes = [
            {"name": "files", "configMap": {"name": files.metadata.name, "defaultMode": 0o444}},
            {"name": "ca", "secret": {"secretName": certificate.ca_secret_name, "defaultMode": 0o444}},
            {"name": "config", "secret": {"secretName": root_env.metadata.name, "defaultMode": 0o440}},
            {"name": "tmp", **kube.writable_scratch("16Mi")},
        ]
        return k8s.batch.v1.Job(
            f"{name}-bootstrap",
            metadata={
                "namespace": args.namespace,
                "labels": BOOTSTRAP_LABELS,
                "annotations": kube.checkov_skips({**kube.image_skips(), "CKV_K8S_35": SECRET_ENV_REASON}),
            },
            spec=kube.job_spec(
                BOOTSTRAP_LABELS,
                account,
                [container],
                volumes,
                backoff_limit=6,
                deadline_seconds=600,
                # New drives (another layout) get a new Job: the bucket and user are made again.
                pod_annotations={"mlflow-platform/minio-layout": self._layout(args)},
            ),
            # MinIO must serve before the bootstrap connects (the StatefulSet is awaited ready).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[statefulset], custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m")
            ),
        )

    @staticmethod
    def _layout(args: MinioStoreArgs) -> str:
        return f"{args.replicas}x{args.storage_size}/{args.storage_class or 'default'}"

    @staticmethod
    def _statefulset_spec(
        args: MinioStoreArgs,
        pod_labels: dict,
        account,
        certificate: TlsCertificate,
        root_env,
        namespace: pulumi.Output[str],
    ) -> dict:
        if args.replicas == 1:
            volumes_arg: pulumi.Input[str] = DATA_DIR
        else:
            volumes_arg = namespace.apply(
                lambda ns: f"https://{SERVICE}-{{0...{args.replicas - 1}}}.{HEADLESS_SERVICE}.{ns}.svc:{PORT}{DATA_DIR}"
            )
        storage = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": args.storage_size}}}
        if args.storage_class:
            storage["storageClassName"] = args.storage_class
        # Data outlives the StatefulSet (a replacement re-adopts the PVCs) except in PR stacks.
        retention = "Delete" if args.ephemeral else "Retain"
        probe = {"scheme": "HTTPS", "port": PORT}
        return {
            "serviceName": HEADLESS_SERVICE,
            "replicas": args.replicas,
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
                    # One server per node where the cluster has the nodes (a node loss takes one drive).
                    **(
                        {
                            "topologySpreadConstraints": [
                                {
                                    "maxSkew": 1,
                                    "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "ScheduleAnyway",
                                    "labelSelector": {"matchLabels": kube.selector(pod_labels)},
                                }
                            ]
                        }
                        if args.replicas > 1
                        else {}
                    ),
                    "containers": [
                        {
                            "name": "minio",
                            "image": args.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["server", "--address", f":{PORT}", "--certs-dir", CERTS_DIR, volumes_arg],
                            "env": [
                                {"name": "MINIO_CONFIG_ENV_FILE", "value": ENV_FILE},
                                {"name": "MINIO_SITE_REGION", "value": args.region},
                                {"name": "MINIO_BROWSER", "value": "off"},
                                *(
                                    [{"name": "MINIO_PROMETHEUS_AUTH_TYPE", "value": "public"}]
                                    if args.metrics_public
                                    else []
                                ),
                                {"name": "HOME", "value": "/tmp"},
                            ],
                            "ports": [{"name": "https", "containerPort": PORT}],
                            "resources": dict(args.resources),
                            "securityContext": kube.container_security_context(),
                            "readinessProbe": {
                                "httpGet": {"path": "/minio/health/ready", **probe},
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/minio/health/live", **probe},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 20,
                                "timeoutSeconds": 5,
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": DATA_DIR},
                                {"name": "certs", "mountPath": CERTS_DIR, "readOnly": True},
                                {"name": "config", "mountPath": ENV_FILE.rsplit("/", 1)[0], "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "certs",
                            "secret": {
                                "secretName": certificate.secret_name,
                                "defaultMode": 0o440,
                                "items": [
                                    {"key": "tls.crt", "path": "public.crt"},
                                    {"key": "tls.key", "path": "private.key"},
                                    {"key": "ca.crt", "path": "CAs/ca.crt"},
                                ],
                            },
                        },
                        {"name": "config", "secret": {"secretName": root_env.metadata.name, "defaultMode": 0o440}},
                        {"name": "tmp", **kube.writable_scratch()},
                    ],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": pod_labels}, "spec": storage}],
        }

    def _network_policy(self, name: str, args: MinioStoreArgs, pod_labels: dict) -> None:
        """MinIO accepts MLflow's pods, the bootstrap Job and its own peers (distributed mode)."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"namespace": args.namespace, "labels": pod_labels},
            spec={
                "podSelector": {"matchLabels": kube.selector(pod_labels)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": dict(args.client_pod_labels)}},
                            {"podSelector": {"matchLabels": kube.selector(BOOTSTRAP_LABELS)}},
                            {"podSelector": {"matchLabels": kube.selector(pod_labels)}},
                            # PostgreSQL's instances (their backup sidecar) when they back up here.
                            *(
                                [{"podSelector": {"matchLabels": dict(args.backup_client_pod_labels)}}]
                                if args.backup_client_pod_labels
                                else []
                            ),
                        ],
                        "ports": [{"port": PORT, "protocol": "TCP"}],
                        # Published: the ingress controller or Gateway (its namespace is not known to the stack) reaches the
                        # S3 port; every request still needs a valid signature.
                    },
                    *([{"ports": [{"port": PORT, "protocol": "TCP"}]}] if args.publication.published else []),
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
