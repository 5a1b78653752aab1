"""ExternalObjectStore: MLflow's bucket on an existing S3 endpoint (AWS S3, a central MinIO, ...).

Two ways, one output shape (the same as MinioStore's):
- credentials given: MLflow uses them as they are; least privilege is the team's own policy;
- MinIO admin credentials given: pulumi-minio, on the machine running Pulumi (which reaches the
  endpoint by design), creates the bucket, a dedicated user and a bucket-scoped policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_minio as minio
import pulumi_random as random

from components.k8s import PART_OF
from components.s3_policy import bucket_policy, policy_name


@dataclass
class ExternalObjectStoreArgs:
    namespace: pulumi.Input[str]
    endpoint: str
    bucket: str
    region: str
    # MLflow's own key pair (mode "external").
    access_key: pulumi.Input[str] | None = None
    secret_key: pulumi.Input[str] | None = None
    # MinIO admin login (mode "externalMinio"): a dedicated user is created for MLflow.
    admin_user: str | None = None
    admin_password: pulumi.Input[str] | None = None
    # CA bundle of the endpoint: path relative to the project directory, and its content.
    ca_file: str = ""
    ca_pem: str = ""
    user_name: str = "mlflow"
    protect_data: bool = False
    ephemeral: bool = False


def endpoint_host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "", parts.port or 443


class ExternalObjectStore(pulumi.ComponentResource):
    """Bucket and credentials on an external endpoint; the CA (if any) as a Secret for MLflow."""

    endpoint_url: pulumi.Output[str]
    bucket: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    # None when the endpoint's certificate is signed by a public CA the image already trusts.
    ca_secret_name: pulumi.Output[str] | None
    client_egress: pulumi.Output[dict]

    def __init__(self, name: str, args: ExternalObjectStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:ExternalObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host, port = endpoint_host_port(args.endpoint)
        if args.admin_user:
            self.bucket, self.access_key, self.secret_key = self._minio_user(name, args, host, port)
        elif args.access_key is None or args.secret_key is None:
            raise ValueError(f"{name}: ExternalObjectStoreArgs needs access_key and secret_key, or admin_user")
        else:
            self.bucket = pulumi.Output.from_input(args.bucket)
            self.access_key = pulumi.Output.secret(args.access_key)
            self.secret_key = pulumi.Output.secret(args.secret_key)
        self.ca_secret_name = (
            k8s.core.v1.Secret(
                f"{name}-ca-secret",
                metadata={"namespace": args.namespace, "labels": {**PART_OF, "mlflow-platform/certificate": name}},
                type="Opaque",
                string_data={"ca.crt": args.ca_pem},
                opts=child,
            ).metadata.name
            if args.ca_pem
            else None
        )
        self.endpoint_url = pulumi.Output.from_input(args.endpoint.rstrip("/"))
        # The endpoint is outside the cluster: its port, whatever address the name resolves to.
        self.client_egress = pulumi.Output.from_input({"ports": [{"port": port, "protocol": "TCP"}]})
        outputs = {
            "endpoint_url": self.endpoint_url,
            "bucket": self.bucket,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "client_egress": self.client_egress,
        }
        if self.ca_secret_name is not None:
            outputs["ca_secret_name"] = self.ca_secret_name
        self.register_outputs(outputs)

    def _minio_user(self, name: str, args: ExternalObjectStoreArgs, host: str, port: int):
        provider = minio.Provider(
            f"{name}-admin-provider",
            minio_server=f"{host}:{port}",
            minio_user=args.admin_user,
            minio_password=pulumi.Output.secret(args.admin_password),
            minio_ssl=True,
            minio_cacert_file=args.ca_file or None,
            minio_region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        s3 = pulumi.ResourceOptions(parent=self, provider=provider)
        bucket = minio.S3Bucket(
            f"{name}-bucket",
            bucket=args.bucket,
            acl="private",
            force_destroy=args.ephemeral,
            opts=pulumi.ResourceOptions.merge(
                s3, pulumi.ResourceOptions(protect=args.protect_data, retain_on_delete=args.protect_data)
            ),
        )
        user_secret = random.RandomPassword(
            f"{name}-{args.user_name}-secret-key", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        user = minio.IamUser(
            f"{name}-{args.user_name}-user", name=args.user_name, secret=user_secret.result, force_destroy=True, opts=s3
        )
        policy = minio.IamPolicy(
            f"{name}-{args.user_name}-policy",
            name=policy_name(args.user_name, args.bucket),
            policy=bucket.bucket.apply(bucket_policy),
            opts=s3,
        )
        attachment = minio.IamUserPolicyAttachment(
            f"{name}-{args.user_name}-policy-attachment", user_name=user.name, policy_name=policy.name, opts=s3
        )
        # The key pair is usable only once the policy is attached.
        return (
            pulumi.Output.all(bucket.bucket, attachment.id).apply(lambda v: v[0]),
            pulumi.Output.all(user.name, attachment.id).apply(lambda v: v[0]),
            user_secret.result,  # RandomPassword marks it secret
        )
