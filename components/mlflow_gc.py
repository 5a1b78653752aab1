"""MlflowGarbageCollector: a CronJob running `mlflow gc` for runs deleted longer than a given age.

`mlflow gc` removes a deleted run's rows from the tracking database and its artifacts. With
proxied artifacts the runs' artifact URIs are `mlflow-artifacts:/...`, which only the tracking
server resolves: the Job deletes them through the server's internal URL as the admin user. It runs
with the server's image, its restricted security context, its CA bundle and its env Secret (the
same credentials), under the `app.kubernetes.io/name: mlflow` label that the data services'
NetworkPolicies admit.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import k8s as kube
from components import mlflow_server
from components.mlflow_containers import CONTAINER_ENV, SECRET_ENV_REASON, ca_and_scratch, env_from_secret

GC_LABELS = kube.labels("mlflow", "gc")
# Requests of the gc container: its share of a profile's footprint (quota sizing).
GC_CPU_REQUEST = "50m"
GC_MEMORY_REQUEST = "192Mi"


@dataclass
class MlflowGarbageCollectorArgs:
    namespace: pulumi.Input[str]
    image: str
    # MlflowServer's env Secret (backend-store-uri, postgres-password, admin-password) and CA Secrets.
    env_secret_name: pulumi.Input[str]
    postgres_ca_secret_name: pulumi.Input[str]
    # The server's in-cluster URL (http://mlflow.<namespace>.svc): artifacts are deleted through it.
    tracking_url: pulumi.Input[str]
    object_store_ca_secret_name: pulumi.Input[str] | None = None
    # Standard five-field cron, and mlflow gc's --older-than (#d#h#m#s).
    schedule: str = "30 3 * * *"
    older_than: str = "30d"
    auth: bool = True
    admin_user: str = "admin"


class MlflowGarbageCollector(pulumi.ComponentResource):
    """CronJob + ServiceAccount + the egress rule to the tracking server its pods need."""

    cron_job_name: pulumi.Output[str]

    def __init__(self, name: str, args: MlflowGarbageCollectorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-platform:index:MlflowGarbageCollector", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", **kube.service_account(args.namespace, GC_LABELS), opts=child
        )

        # The URI (in argv below) carries no password: libpq reads PGPASSWORD.
        env = [
            env_from_secret(args.env_secret_name, "MLFLOW_BACKEND_STORE_URI"),
            env_from_secret(args.env_secret_name, "PGPASSWORD"),
            {"name": "MLFLOW_TRACKING_URI", "value": args.tracking_url},
            *({"name": var, "value": value} for var, value in CONTAINER_ENV.items()),
        ]
        if args.auth:
            env += [
                {"name": "MLFLOW_TRACKING_USERNAME", "value": args.admin_user},
                env_from_secret(args.env_secret_name, "MLFLOW_TRACKING_PASSWORD", source="MLFLOW_AUTH_ADMIN_PASSWORD"),
            ]
        volumes, mounts = ca_and_scratch(args.postgres_ca_secret_name, args.object_store_ca_secret_name)
        container = {
            "name": "gc",
            "image": args.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["mlflow"],
            "args": ["gc", "--backend-store-uri", "$(MLFLOW_BACKEND_STORE_URI)", "--older-than", args.older_than],
            "env": env,
            "securityContext": kube.container_security_context(),
            "resources": {
                "requests": {"cpu": GC_CPU_REQUEST, "memory": GC_MEMORY_REQUEST},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "volumeMounts": mounts,
        }
        cron = k8s.batch.v1.CronJob(
            f"{name}-cron-job",
            metadata={
                "namespace": args.namespace,
                "labels": GC_LABELS,
                "annotations": kube.checkov_skips({**kube.image_skips(), "CKV_K8S_35": SECRET_ENV_REASON}),
            },
            spec={
                "schedule": args.schedule,
                # One sweep at a time; a missed slot is made up within the hour or skipped.
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": GC_LABELS},
                    "spec": kube.job_spec(
                        GC_LABELS, account, [container], volumes, backoff_limit=2, deadline_seconds=3600
                    ),
                },
            },
            opts=child,
        )
        # MLflow's egress policy admits DNS and the data services; gc also calls the server.
        kube.egress_policy(
            f"{name}-egress",
            args.namespace,
            kube.selector(GC_LABELS),
            [
                {
                    "to": [{"podSelector": {"matchLabels": dict(mlflow_server.POD_SELECTOR)}}],
                    "ports": [{"port": mlflow_server.PORT, "protocol": "TCP"}],
                }
            ],
            parent=self,
        )
        self.cron_job_name = cron.metadata.name
        self.register_outputs({"cron_job_name": self.cron_job_name})
