"""What every MLflow container shares: the server Deployment, its migration Job and the gc CronJob.

They run the same image as the same non-root user on a read-only root filesystem, read the same
env Secret (MlflowServer's) through the same keys, trust the data services through the same CA
bundle, and carry the labels the data services' NetworkPolicies admit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from components import k8s as kube

# Every pod that talks to PostgreSQL/MinIO (server, migration Job, gc) carries these labels; the data
# services' NetworkPolicies admit exactly them, and the server's egress policy selects them.
CLIENT_POD_LABELS = {"app.kubernetes.io/name": "mlflow"}
# The CA bundle every MLflow container mounts read-only: PostgreSQL's CA (the client CA path of the
# database URIs, sslrootcert) and the object store's (AWS_CA_BUNDLE).
CA_DIR = "/etc/mlflow/ca"
POSTGRES_CA_PATH = f"{CA_DIR}/postgres-ca.crt"
OBJECT_STORE_CA_PATH = f"{CA_DIR}/object-store-ca.crt"
# Writable HOME (an emptyDir): the root filesystem is read-only.
HOME = "/home/mlflow"
# Every MLflow container's plain environment: HOME and TMPDIR on writable scratch (the root
# filesystem is read-only) and no telemetry leaving the cluster.
CONTAINER_ENV = {"HOME": HOME, "TMPDIR": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# Environment variable -> key of MlflowServer's env Secret holding its value.
ENV_KEYS = {
    "MLFLOW_BACKEND_STORE_URI": "backend-store-uri",
    # Reads (searches, gets) go to the PostgreSQL replicas when set (MLflow 3.18's read replica routing).
    "MLFLOW_READ_REPLICA_BACKEND_STORE_URI": "read-replica-backend-store-uri",
    "MLFLOW_AUTH_DATABASE_URI": "auth-database-uri",
    # libpq's password: the URIs carry none (they appear in argv).
    "PGPASSWORD": "postgres-password",
    "MLFLOW_CRYPTO_KEK_PASSPHRASE": "crypto-kek-passphrase",
    "MLFLOW_CRYPTO_KEK_PREVIOUS_PASSPHRASE": "crypto-kek-passphrase-previous",
    "AWS_ACCESS_KEY_ID": "aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-server-secret-key",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password",
}
# MLflow reads its store URI, Flask key, admin password and encryption passphrase only from env (or
# argv), libpq its password; the AWS keys follow the same secretKeyRef path so all credentials rotate
# with one Secret. The checkov skip (CKV_K8S_35) every MLflow workload carries says so.
SECRET_ENV_REASON = (
    "MLflow reads its store URI, Flask key, admin password and passphrase, libpq its password, only from env; "
    "all values are secretKeyRef, never plain text in the spec or argv"
)


def env_from_secret(secret_name: pulumi.Input[str], var: str, source: str | None = None) -> dict[str, Any]:
    """`var` read from the env Secret's key for `source` (default: `var` itself)."""
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": ENV_KEYS[source or var]}}}


def ca_and_scratch(
    postgres_ca_secret_name: pulumi.Input[str],
    object_store_ca_secret_name: pulumi.Input[str] | None,
    scratch_size: str = "256Mi",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts of every MLflow container: the CA bundle read-only, writable /tmp and HOME."""
    ca_secrets = [(postgres_ca_secret_name, POSTGRES_CA_PATH), (object_store_ca_secret_name, OBJECT_STORE_CA_PATH)]
    ca_sources = [
        {"secret": {"name": secret, "items": [{"key": "ca.crt", "path": Path(path).name}]}}
        for secret, path in ca_secrets
        if secret is not None
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "ca", "projected": {"defaultMode": 0o444, "sources": ca_sources}},
        {"name": "tmp", **kube.writable_scratch(scratch_size)},
        {"name": "home", **kube.writable_scratch()},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "ca", "mountPath": CA_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME},
    ]
    return volumes, mounts
