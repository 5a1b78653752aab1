"""TlsCertificate: a private CA and a server certificate, published as Kubernetes Secrets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.k8s import PART_OF

# The CA outlives the certificates it signs, so renewing a server certificate never changes
# the CA that clients trust.
CA_VALIDITY_FACTOR = 5
SERVER_USES = ["server_auth", "digital_signature", "key_encipherment"]
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]


@dataclass
class TlsCertificateArgs:
    namespace: pulumi.Input[str]
    common_name: str
    dns_names: pulumi.Input[Sequence[pulumi.Input[str]]]
    ip_addresses: pulumi.Input[Sequence[pulumi.Input[str]]] = field(default_factory=list)
    algorithm: str = "ECDSA"
    validity_days: int = 730
    early_renewal_days: int = 30
    self_signed: bool = False
    organization: str = "mlflow-platform"


class TlsCertificate(pulumi.ComponentResource):
    """CA + server certificate (or a self-signed one) in a `kubernetes.io/tls` Secret.

    `secret_name` holds tls.crt, tls.key and ca.crt (what servers mount); `ca_secret_name` holds
    only ca.crt, so clients can trust the CA without ever receiving the server key.
    """

    secret_name: pulumi.Output[str]
    ca_secret_name: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]

    def __init__(self, name: str, args: TlsCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:TlsCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        validity_hours = args.validity_days * 24
        renewal_hours = args.early_renewal_days * 24
        server_key = self._private_key(f"{name}-server-key", args.algorithm, child)
        identity: dict[str, Any] = {
            "subject": self._subject(args.common_name, args.organization),
            "dns_names": args.dns_names,
            "ip_addresses": args.ip_addresses,
        }
        lifetime = {"validity_period_hours": validity_hours, "early_renewal_hours": renewal_hours}

        if args.self_signed:
            server_cert = tls.SelfSignedCert(
                f"{name}-server-cert",
                private_key_pem=server_key.private_key_pem,
                allowed_uses=SERVER_USES,
                **identity,
                **lifetime,
                opts=child,
            )
            ca_pem = server_cert.cert_pem
        else:
            ca_key = self._private_key(f"{name}-ca-key", args.algorithm, child)
            ca_cert = tls.SelfSignedCert(
                f"{name}-ca-cert",
                private_key_pem=ca_key.private_key_pem,
                subject=self._subject(f"{args.common_name} CA", args.organization),
                is_ca_certificate=True,
                validity_period_hours=validity_hours * CA_VALIDITY_FACTOR,
                early_renewal_hours=renewal_hours,
                allowed_uses=CA_USES,
                opts=child,
            )
            request = tls.CertRequest(
                f"{name}-server-csr",
                private_key_pem=server_key.private_key_pem,
                **identity,
                opts=child,
            )
            server_cert = tls.LocallySignedCert(
                f"{name}-server-cert",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca_cert.cert_pem,
                allowed_uses=SERVER_USES,
                **lifetime,
                opts=child,
            )
            ca_pem = ca_cert.cert_pem

        metadata = {"namespace": args.namespace, "labels": {**PART_OF, "mlflow-platform/certificate": name}}
        server_secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=metadata,
            type="kubernetes.io/tls",
            string_data={"tls.crt": server_cert.cert_pem, "tls.key": server_key.private_key_pem, "ca.crt": ca_pem},
            opts=child,
        )
        ca_secret = k8s.core.v1.Secret(
            f"{name}-ca-secret",
            metadata=metadata,
            type="Opaque",
            string_data={"ca.crt": ca_pem},
            opts=child,
        )
        self.secret_name = server_secret.metadata.name
        self.ca_secret_name = ca_secret.metadata.name
        self.ca_pem = ca_pem
        self.cert_pem = server_cert.cert_pem
        self.register_outputs(
            {
                "secret_name": self.secret_name,
                "ca_secret_name": self.ca_secret_name,
                "ca_pem": self.ca_pem,
                "cert_pem": self.cert_pem,
            }
        )

    @staticmethod
    def _private_key(name: str, algorithm: str, opts: pulumi.ResourceOptions) -> tls.PrivateKey:
        if algorithm == "RSA":
            return tls.PrivateKey(name, algorithm="RSA", rsa_bits=2048, opts=opts)
        return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=opts)

    @staticmethod
    def _subject(common_name: str, organization: str) -> dict:
        return {"common_name": common_name, "organization": organization}
