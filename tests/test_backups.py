"""Backups, metrics and gc: defaults per profile, bad input named by key, the plugin check, wiring."""

from __future__ import annotations

import datetime

import pytest

from config import ConfigError
from config.checks import cron_problem
from tools.mock_engine import PlatformMocks, Secret, evaluate_stack


def kinds(ev) -> set[str]:
    return {o["kind"] for o in ev.k8s_objects}


@pytest.mark.parametrize(
    "stack, backups, gc, metrics",
    [("prod", True, True, True), ("dev", False, True, True), ("pr-42", False, False, False)],
)
def test_profile_defaults(stack, backups, gc, metrics):
    ev = evaluate_stack(stack)
    assert ("ObjectStore" in kinds(ev)) is backups and ("ScheduledBackup" in kinds(ev)) is backups
    assert ("CronJob" in kinds(ev)) is gc
    [deployment] = ev.k8s("Deployment")
    assert ("--expose-prometheus" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]) is metrics
    assert not {"ServiceMonitor", "PodMonitor"} & kinds(ev)  # only with prometheusOperator


def test_prod_cluster_archives_wal_and_backs_up_through_the_plugin(prod):
    [store], [cluster], [scheduled] = prod.k8s("ObjectStore"), prod.k8s("Cluster"), prod.k8s("ScheduledBackup")
    [plugin] = cluster["spec"]["plugins"]
    assert plugin == {
        "name": "barman-cloud.cloudnative-pg.io",
        "enabled": True,
        "isWALArchiver": True,
        "parameters": {"barmanObjectName": store["metadata"]["name"], "serverName": "mlflow-pg"},
    }
    assert set(cluster["spec"]["bootstrap"]) == {"initdb"} and "externalClusters" not in cluster["spec"]
    assert scheduled["spec"] == {
        "schedule": "0 0 2 * * *",
        "cluster": {"name": "mlflow-pg"},
        "method": "plugin",
        "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"},
        "immediate": True,
        "backupOwnerReference": "self",
    }
    conf = store["spec"]["configuration"]
    assert conf["destinationPath"] == "s3://postgres-backups/"
    assert conf["endpointURL"] == "https://minio.mlflow-prod.svc:9000"
    creds = prod.secret_by_name(conf["s3Credentials"]["accessKeyId"]["name"])
    assert creds["access-key"] == "barman" and len(creds["secret-key"]) == 40
    assert prod.secret_by_name(conf["endpointCA"]["name"]) == {
        "ca.crt": prod.secret_by_name(conf["endpointCA"]["name"])["ca.crt"]
    }  # the CA only, never a key
    # The first (immediate) base backup is submitted once the bucket and barman's user exist.
    bootstrap = prod.one("kubernetes:batch/v1:Job", "minio-bootstrap")
    scheduled_reg = prod.one("kubernetes:postgresql.cnpg.io/v1:ScheduledBackup", "postgres-scheduled-backup")
    assert bootstrap.urn in scheduled_reg.dependencies
    # MinIO admits the PostgreSQL instances (their backup sidecar) on its port.
    [minio_policy] = [
        p
        for p in prod.k8s("NetworkPolicy")
        if p["metadata"]["labels"].get("app.kubernetes.io/name") == "minio" and p["spec"]["policyTypes"] == ["Ingress"]
    ]
    assert {"podSelector": {"matchLabels": {"cnpg.io/cluster": "mlflow-pg"}}} in minio_policy["spec"]["ingress"][0][
        "from"
    ]


def test_a_cluster_stack_without_the_plugin_stops_backups_before_anything_is_created():
    no_plugin = {**PlatformMocks.CLUSTER_STACK_OUTPUTS, "barmanPluginVersion": ""}
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", {"backups": "on"}, state={"stacks": {"organization/mlflow-platform/cluster": no_plugin}})
    message = str(raised.value)
    assert "does not run the Barman Cloud plugin that backups need" in message
    assert "barmanPlugin: true in Pulumi.cluster.yaml and run `make up STACK=cluster`, or set backups: off" in message
    assert raised.value.registrations == []


def test_render_mode_backups_need_no_cluster_stack(tmp_path):
    ev = evaluate_stack("dev", {"backups": "on", "clusterStack": "", "renderYamlToDirectory": str(tmp_path / "out")})
    assert "ObjectStore" in kinds(ev)


def test_restore_by_configuration_from_an_external_store():
    ev = evaluate_stack(
        "dev",
        {
            "backups": "on",
            "backupServerName": "mlflow-pg-2",
            "postgresRestoreSource": "mlflow-pg",
            "postgresRestoreTargetTime": "2026-01-02T10:42:00+01:00",
            "backupS3Endpoint": "https://s3.eu-west-1.amazonaws.com",
            "backupS3AccessKey": "AKIAX",
            "backupS3SecretKey": Secret("backup-secret-0123456789"),
            "backupS3CaFile": "tests/fixtures/external-ca.pem",
        },
    )
    [cluster], [store] = ev.k8s("Cluster"), ev.k8s("ObjectStore")
    assert cluster["spec"]["bootstrap"] == {
        "recovery": {"source": "origin", "recoveryTarget": {"targetTime": "2026-01-02T10:42:00+01:00"}}
    }
    assert cluster["spec"]["externalClusters"] == [
        {
            "name": "origin",
            "plugin": {
                "name": "barman-cloud.cloudnative-pg.io",
                "parameters": {"barmanObjectName": store["metadata"]["name"], "serverName": "mlflow-pg"},
            },
        }
    ]
    assert cluster["spec"]["plugins"][0]["parameters"]["serverName"] == "mlflow-pg-2"
    conf = store["spec"]["configuration"]
    assert conf["endpointURL"] == "https://s3.eu-west-1.amazonaws.com"
    assert (
        ev.secret_by_name(conf["s3Credentials"]["secretAccessKey"]["name"])["secret-key"] == "backup-secret-0123456789"
    )
    # No backup bucket or user in the stack's MinIO then.
    [job] = [j for j in ev.k8s("Job") if j["metadata"]["labels"]["app.kubernetes.io/name"] == "minio"]
    assert not [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"].startswith("BACKUP_")]


def problems(stack: str, config: dict) -> str:
    with pytest.raises(ConfigError) as error:
        evaluate_stack(stack, config)
    return str(error.value)


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            {"backups": "on", "backupSchedule": "0 2 * * *"},
            'backupSchedule = "0 2 * * *": not a six-field cron schedule (has 5 fields',
        ),
        (
            {"backupSchedule": "0 0 25 * * *"},
            'backupSchedule = "0 0 25 * * *": not a six-field cron schedule (hour field',
        ),
        ({"mlflowGcSchedule": "61 * * * *"}, 'mlflowGcSchedule = "61 * * * *": not a five-field cron schedule'),
        (
            {"backupRetention": "30 days"},
            'backupRetention = "30 days": not a retention period. Fix: use a whole number',
        ),
        ({"backupRetention": "0d"}, 'backupRetention = "0d"'),
        ({"mlflowGcOlderThan": "30 days"}, 'mlflowGcOlderThan = "30 days": not an age mlflow gc understands'),
        ({"postgresRestoreTargetTime": "2026-01-02T10:42:00+01:00"}, "a restore needs a source"),
        (
            {"postgresRestoreSource": "mlflow-pg", "postgresRestoreTargetTime": "yesterday 10:42"},
            "not an RFC 3339 time",
        ),
        (
            {"postgresRestoreSource": "mlflow-pg", "postgresRestoreTargetTime": "2026-01-02T10:42:00"},
            "not an RFC 3339 time",
        ),
        (
            {"postgresRestoreSource": "mlflow-pg", "postgresRestoreTargetTime": "2999-01-01T00:00:00Z"},
            "is in the future",
        ),
        ({"postgresRestoreSource": "Mlflow_PG"}, 'postgresRestoreSource = "Mlflow_PG": not a server name'),
        (
            {"backups": "on", "postgresRestoreSource": "mlflow-pg"},
            'backupServerName = "": the restored cluster would archive its WAL onto the backups of mlflow-pg',
        ),
        ({"backups": "on", "backupBucket": "Backups!"}, 'backupBucket = "Backups!": not a valid S3 bucket name'),
        ({"backups": "on", "backupBucket": "mlflow"}, 'backupBucket = "mlflow": is MLflow\'s artifact bucket'),
        (
            {
                "backups": "on",
                "backupS3Endpoint": "http://s3.example.com",
                "backupS3AccessKey": "a",
                "backupS3SecretKey": Secret("b"),
            },
            'backupS3Endpoint = "http://s3.example.com": not an https URL',
        ),
        (
            {"backups": "on", "backupS3Endpoint": "https://s3.example.com"},
            'backupS3AccessKey = "": backupS3Endpoint is set',
        ),
        ({"backupS3Endpoint": "https://s3.example.com"}, "backup target keys are set but backups are off"),
        ({"backups": "maybe"}, 'backups = "maybe": unknown value. Fix: use one of auto, on, off'),
        ({"metrics": "off", "prometheusOperator": True}, "prometheusOperator = true: there are no metrics"),
        ({"prometheusNamespace": "Monitoring"}, 'prometheusNamespace = "Monitoring": not a namespace name'),
    ],
)
def test_bad_input_names_key_value_and_fix(config, expected):
    message = problems("dev", config)
    assert expected in message and "Fix:" in message, message


def test_backups_need_a_target_without_the_in_cluster_minio():
    message = problems(
        "dev",
        {
            "backups": "on",
            "objectStoreMode": "external",
            "s3Endpoint": "https://s3.eu-west-1.amazonaws.com",
            "s3AccessKey": "AKIA",
            "s3SecretKey": Secret("s3-secret-key-0123456789"),
        },
    )
    assert 'backupS3Endpoint = "": objectStoreMode is external: there is no in-cluster MinIO' in message


def test_external_postgres_is_not_backed_up_here():
    from tests.stacks import EXTERNAL_POSTGRES

    assert 'backups = "on": an external PostgreSQL server is backed up by whoever runs it' in problems(
        "dev", {**EXTERNAL_POSTGRES, "backups": "on"}
    )
    assert "ObjectStore" not in kinds(evaluate_stack("prod", EXTERNAL_POSTGRES))  # auto: off there


def test_a_pr_stack_turning_backups_on_is_held_to_its_budget():
    message = problems("pr-7", {"backups": "on", "mlflowGc": "on"})
    assert "over its 1024Mi budget" in message


@pytest.mark.parametrize(
    "value, seconds, ok",
    [
        ("0 0 2 * * *", True, True),
        ("*/30 * * * * *", True, True),
        ("@daily", True, True),
        ("0 0 2 * * MON-FRI", True, True),
        ("30 3 * * *", False, True),
        ("0 0 1 JAN,JUL *", False, True),
        ("0 0 2 * *", True, False),
        ("0 60 * * * *", True, False),
        ("5-1 * * * *", False, False),
        ("* * * * * *", False, False),
        ("*/0 * * * *", False, False),
        ("0 0 0 * *", False, False),
    ],
)
def test_cron_validation(value, seconds, ok):
    assert (cron_problem(value, seconds) is None) is ok


def test_restore_time_in_the_past_is_accepted():
    yesterday = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).replace(microsecond=0)
    ev = evaluate_stack(
        "prod",
        {
            "postgresRestoreSource": "mlflow-pg",
            "backupServerName": "mlflow-pg-2",
            "postgresRestoreTargetTime": yesterday.isoformat(),
        },
    )
    [cluster] = ev.k8s("Cluster")
    assert cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {"targetTime": yesterday.isoformat()}


def test_monitoring_objects_and_scrape_policies():
    ev = evaluate_stack("dev", {"prometheusOperator": True})
    monitors = {o["metadata"]["name"]: o for o in ev.k8s_objects if o["apiVersion"] == "monitoring.coreos.com/v1"}
    assert set(monitors) == {"mlflow", "minio", "postgres"}
    auth = monitors["mlflow"]["spec"]["endpoints"][0]["basicAuth"]
    assert ev.secret_by_name(auth["username"]["name"]) == {"username": "admin"}
    assert auth["password"]["key"] == "admin-password"
    minio = monitors["minio"]["spec"]["endpoints"][0]
    assert minio["scheme"] == "https" and minio["tlsConfig"]["serverName"] == "minio.mlflow-dev.svc"
    [statefulset] = ev.k8s("StatefulSet")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"
    scrape = [
        p for p in ev.k8s("NetworkPolicy") if p["metadata"]["labels"].get("app.kubernetes.io/component") == "monitoring"
    ]
    assert sorted(p["spec"]["ingress"][0]["ports"][0]["port"] for p in scrape) == [9000, 9187]
    assert all(
        p["spec"]["ingress"][0]["from"]
        == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        for p in scrape
    )


def test_gc_cron_job_runs_as_the_server_does(dev):
    [cron] = dev.k8s("CronJob")
    [deployment] = dev.k8s("Deployment")
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    server_pod = deployment["spec"]["template"]["spec"]
    [gc], [server] = job_pod["containers"], server_pod["containers"]
    assert gc["image"] == server["image"] and gc["securityContext"] == server["securityContext"]
    assert job_pod["securityContext"] == server_pod["securityContext"]
    assert gc["args"] == ["gc", "--backend-store-uri", "$(MLFLOW_BACKEND_STORE_URI)", "--older-than", "30d"]
    assert cron["spec"]["schedule"] == "30 3 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    ca = lambda pod: next(v for v in pod["volumes"] if v["name"] == "ca")  # noqa: E731
    assert ca(job_pod) == ca(server_pod)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in gc["env"] if "valueFrom" in e}
    server_refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in server["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["MLFLOW_BACKEND_STORE_URI"] == server_refs["MLFLOW_BACKEND_STORE_URI"]
    assert refs["MLFLOW_TRACKING_PASSWORD"] == server_refs["MLFLOW_AUTH_ADMIN_PASSWORD"]
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "mlflow"  # admitted by the data services' NetworkPolicies
