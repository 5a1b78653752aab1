"""FLOOR program for the evaluation benchmark: the least a program on this SDK set can cost.

It loads the same SDK modules the real program loads when it evaluates the dev stack -- the Pulumi
runtime, the provider SDK packages, PyYAML, and the Kubernetes API-group modules that
`pulumi_kubernetes` loads lazily on first attribute access (`k8s.apps.v1.Deployment` loads
`pulumi_kubernetes.apps` and `pulumi_kubernetes.apps.v1`), reached the same way -- and registers one
resource, so it pays the same cold imports and one round-trip through the same mocks.
`bench.bench` compares the SDK modules loaded by both programs and reports any difference.

bench/floor_bare_program.py leaves out the extra API groups (what those lazy imports cost);
bench/floor_scaled_program.py registers as many trivial resources as the real program (what the
SDK's per-resource work costs).
"""

import pulumi
import pulumi_kubernetes as k8s
import pulumi_minio as minio
import pulumi_postgresql as postgresql
import pulumi_random as random
import pulumi_tls as tls
import yaml  # noqa: F401

# The classes the real program uses, reached as it reaches them (this is what loads their modules).
SDK_CLASSES = (
    k8s.Provider, k8s.core.v1.Namespace, k8s.core.v1.Secret, k8s.core.v1.Service, k8s.core.v1.ServiceAccount,
    k8s.core.v1.ConfigMap, k8s.apps.v1.Deployment, k8s.apps.v1.StatefulSet, k8s.batch.v1.Job,
    k8s.networking.v1.Ingress, k8s.networking.v1.NetworkPolicy, k8s.helm.v3.Release,
    k8s.apiextensions.CustomResource,
    tls.PrivateKey, tls.SelfSignedCert, tls.CertRequest, tls.LocallySignedCert, random.RandomPassword,
    postgresql.Provider, postgresql.Role, postgresql.Database,
    minio.Provider, minio.S3Bucket, minio.IamUser, minio.IamPolicy, minio.IamUserPolicyAttachment,
)

if __name__ == "__main__":  # run by the harness as the program
    namespace = k8s.core.v1.Namespace("floor", metadata={"name": "mlflow-floor"})
    pulumi.export("namespace", namespace.metadata.name)
