"""The composed stack: wiring between components, secret hygiene, structure, determinism, profiles."""

import configparser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from tests.stacks import (
    ancestors,
    container,
    env_value,
    mounted_file,
    plain_leaks,
    pod_of,
    pod_secret_values,
    sans,
    tls_secret,
    verifies,
)
from tools.mock_engine import evaluate_stack

# dev: no backups (PostgresBackup) and no Prometheus operator (PlatformMonitoring) by default; gc on.
PROJECT_TYPES = {
    "PlatformNamespace",
    "PostgresCluster",
    "MinioStore",
    "MlflowServer",
    "TlsCertificate",
    "MlflowGarbageCollector",
}


def role_password(ev) -> str:
    """The password the operator sets on MLflow's role: from the Cluster's managed role passwordSecret."""
    [cluster] = ev.k8s("Cluster")
    [role] = cluster["spec"]["managed"]["roles"]
    return ev.secret_by_name(role["passwordSecret"]["name"])["password"]


def mlflow_user_keys(ev) -> dict:
    """The key pair the bootstrap Job gives MLflow's MinIO user (from the Job's secretKeyRefs)."""
    job = container(ev, "Job", "minio-bootstrap", "bootstrap")
    return {name: env_value(ev, job, name) for name in ("USER_ACCESS_KEY", "USER_SECRET_KEY")}


# ------------------------------------------------------------------ wiring
def test_mlflow_reaches_postgres_with_verify_full_against_the_postgres_ca(dev):
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    uri = urlsplit(env_value(dev, server, "MLFLOW_BACKEND_STORE_URI"))
    query = parse_qs(uri.query)
    assert uri.scheme == "postgresql+psycopg2" and uri.username == "mlflow" and uri.path == "/mlflow"
    assert query["sslmode"] == ["verify-full"]
    postgres_tls = tls_secret(dev, "postgres-tls")
    dns, _ = sans(postgres_tls["tls.crt"])
    assert uri.hostname in dns, "libpq verify-full compares the URI host with the certificate's SANs"
    ca = mounted_file(dev, pod_of(dev, "Deployment", "mlflow-deployment"), server, query["sslrootcert"][0])
    assert ca == postgres_tls["ca.crt"] and verifies(ca, postgres_tls["tls.crt"])
    # No password in the URI (commands take it as an argument): libpq reads the role's from PGPASSWORD.
    assert uri.password is None and env_value(dev, server, "PGPASSWORD") == role_password(dev)


def test_cnpg_serves_the_certificate_and_rejects_plain_connections(dev):
    [cluster] = dev.k8s("Cluster")
    certs = cluster["spec"]["certificates"]
    server_secret = next(o for o in dev.k8s("Secret") if o["metadata"]["name"] == certs["serverTLSSecret"])
    ca_secret = next(o for o in dev.k8s("Secret") if o["metadata"]["name"] == certs["serverCASecret"])
    assert server_secret["type"] == "kubernetes.io/tls" and set(server_secret["stringData"]) == {
        "tls.crt",
        "tls.key",
        "ca.crt",
    }
    assert set(ca_secret["stringData"]) == {"ca.crt"}
    hba = cluster["spec"]["postgresql"]["pg_hba"]
    assert hba[0] == "hostnossl all all all reject" and hba[1].startswith("hostssl")
    assert cluster["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    dns, _ = sans(server_secret["stringData"]["tls.crt"])
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    for host in (f"{name}-rw", f"{name}-rw.{ns}", f"{name}-rw.{ns}.svc", f"{name}-rw.{ns}.svc.cluster.local"):
        assert host in dns


def test_mlflow_reaches_minio_over_tls_with_the_minio_ca(dev):
    pod = pod_of(dev, "Deployment", "mlflow-deployment")
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    endpoint = urlsplit(env_value(dev, server, "MLFLOW_S3_ENDPOINT_URL"))
    minio_tls = tls_secret(dev, "minio-tls")
    assert endpoint.scheme == "https" and endpoint.hostname in sans(minio_tls["tls.crt"])[0]
    ca = mounted_file(dev, pod, server, env_value(dev, server, "AWS_CA_BUNDLE"))
    assert ca == minio_tls["ca.crt"] and verifies(ca, minio_tls["tls.crt"])
    assert not any(e["name"] == "MLFLOW_S3_IGNORE_TLS" for e in server["env"])
    user = mlflow_user_keys(dev)
    assert env_value(dev, server, "AWS_ACCESS_KEY_ID") == user["USER_ACCESS_KEY"] == "mlflow"
    assert env_value(dev, server, "AWS_SECRET_ACCESS_KEY") == user["USER_SECRET_KEY"]


def test_mlflow_serves_artifacts_from_the_declared_bucket_and_answers_its_hosts(dev):
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    args = server["args"]
    bucket = env_value(dev, container(dev, "Job", "minio-bootstrap", "bootstrap"), "BUCKET")
    assert args[:1] == ["server"] and "--serve-artifacts" in args
    assert args[args.index("--artifacts-destination") + 1] == f"s3://{bucket}/artifacts"
    assert "--gunicorn-opts" not in args, "MLflow's host check only works with uvicorn"
    hosts = args[args.index("--allowed-hosts") + 1].split(",")
    [ingress] = [o for o in dev.k8s("Ingress") if o["metadata"]["name"].startswith("mlflow-ingress")]
    fqdn = ingress["spec"]["rules"][0]["host"]
    assert fqdn == "mlflow-mlflow-dev.localtest.me" and dev.outputs["trackingUrl"] == f"http://{fqdn}"
    for host in (fqdn, "mlflow", "mlflow.mlflow-dev.svc", "mlflow.mlflow-dev.svc.cluster.local"):
        assert host in hosts and f"{host}:*" in hosts
    assert args[args.index("--cors-allowed-origins") + 1] == f"http://{fqdn}", "the UI's POSTs carry Origin"


def test_basic_auth_uses_the_auth_database_and_generated_credentials(dev):
    pod = pod_of(dev, "Deployment", "mlflow-deployment")
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    args = server["args"]
    assert args[args.index("--app-name") + 1] == "basic-auth"
    ini = configparser.ConfigParser()
    ini.read_string(mounted_file(dev, pod, server, env_value(dev, server, "MLFLOW_AUTH_CONFIG_PATH")))
    auth_uri = urlsplit(ini["mlflow"]["database_uri"])
    assert auth_uri.path == "/mlflow_auth" and parse_qs(auth_uri.query)["sslmode"] == ["verify-full"]
    assert auth_uri.password is None and auth_uri.username == "mlflow"
    assert ini["mlflow"]["admin_username"] == dev.outputs["adminUser"] == "admin"
    assert env_value(dev, server, "MLFLOW_AUTH_ADMIN_PASSWORD") == dev.outputs["adminPassword"]
    assert len(env_value(dev, server, "MLFLOW_FLASK_SERVER_SECRET_KEY")) >= 32


def test_mlflow_pods_hold_neither_the_minio_root_key_nor_any_private_key(dev):
    root = {
        dev.one("random:index/randomPassword:RandomPassword", f"minio-root-{part}").outputs["result"]
        for part in ("user", "password")
    }
    [root_env] = [o for o in dev.k8s("Secret") if "config.env" in o["stringData"]]
    for kind, name in (("Deployment", "mlflow-deployment"), ("Job", "mlflow-migrate")):
        pod = pod_of(dev, kind, name)
        seen = pod_secret_values(dev, pod)
        assert seen and not any(r in v for r in root for v in seen), name
        mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} | {
            s["secret"]["name"] for v in pod["volumes"] for s in v.get("projected", {}).get("sources", [])
        }
        assert root_env["metadata"]["name"] not in mounted
        assert not any("tls.key" in dev.secret_by_name(n) for n in mounted), name
    [cluster] = dev.k8s("Cluster")
    assert cluster["spec"]["enableSuperuserAccess"] is False and "superuserSecret" not in cluster["spec"]
    assert not any(o["stringData"].get("username") == "postgres" for o in dev.k8s("Secret") if "stringData" in o)


def test_the_migration_job_completes_before_the_deployment_rolls_out(dev):
    job = dev.one("kubernetes:batch/v1:Job", "mlflow-migrate")
    deployment = dev.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    assert job.urn in deployment.dependencies
    pod = pod_of(dev, "Job", "mlflow-migrate")
    steps = [(c["command"], c["args"]) for c in pod["initContainers"] + pod["containers"]]
    assert steps == [
        (["mlflow"], ["db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"]),
        (["python"], ["-m", "mlflow.server.auth", "db", "upgrade", "--url", "$(MLFLOW_AUTH_DATABASE_URI)"]),
    ]
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    migrate = container(dev, "Job", "mlflow-migrate", "upgrade-tracking-db")
    assert migrate["image"] == server["image"] == "ghcr.io/mlflow/mlflow:v3.18.0-full"
    assert env_value(dev, migrate, "MLFLOW_BACKEND_STORE_URI") == env_value(dev, server, "MLFLOW_BACKEND_STORE_URI")
    assert pod["restartPolicy"] == "Never" and "ttlSecondsAfterFinished" not in pod_of(dev, "Job", "mlflow-migrate")


def test_server_info_keeps_artifact_transfers_on_the_proxy(dev):
    """MLflow 3.18 advertises presigned multipart only with its server-side opt-ins: proxied renders
    none of them, and nothing patches MLflow (no start-up module, no PYTHONPATH, no ConfigMap)."""
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    names = {e["name"] for e in server["env"]}
    assert not names & {
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD",
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
        "PYTHONPATH",
        "MLFLOW_ARTIFACTS_PRESIGNED_ONLY",
    }
    assert "--serve-artifacts" in server["args"]
    assert [
        o["metadata"]["name"]
        for o in dev.k8s("ConfigMap")
        if o["metadata"]["labels"].get("app.kubernetes.io/name") == "mlflow"
    ] == []


def test_package_values_are_rendered_from_the_wired_outputs(dev):
    values = yaml.safe_load(dev.outputs["packageValues"])
    assert set(values) == {
        "region",
        "artifact_store",
        "access_key",
        "secret_key",
        "version",
        "backing_store",
        "ingress_fqdn",
        "bucket",
        "ignore_tls",
        "ingress_domain",
    }
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    # The package takes one URI: the server's, with the role's password (PGPASSWORD) put back in.
    backing_store = urlsplit(values["backing_store"])
    assert unquote(backing_store.password) == env_value(dev, server, "PGPASSWORD")
    assert values["backing_store"].replace(":" + backing_store.password + "@", "@", 1) == env_value(
        dev, server, "MLFLOW_BACKEND_STORE_URI"
    )
    assert values["artifact_store"] == env_value(dev, server, "MLFLOW_S3_ENDPOINT_URL")
    assert values["secret_key"] == env_value(dev, server, "AWS_SECRET_ACCESS_KEY")
    assert (values["bucket"], values["version"], values["ignore_tls"], values["region"]) == (
        "mlflow",
        "3.18.0",
        "false",
        "us-east-1",
    )
    assert values["ingress_fqdn"] == "mlflow-mlflow-dev.localtest.me" and values["ingress_domain"] == "localtest.me"


def test_network_policies_admit_only_mlflow_the_operator_and_the_instances(dev):
    policies = {o["metadata"]["name"].rsplit("-", 1)[0]: o["spec"] for o in dev.k8s("NetworkPolicy")}
    assert policies["platform-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    pg = policies["postgres-network-policy"]
    sources = [peer for rule in pg["ingress"] for peer in rule["from"]]
    assert sources == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": "mlflow-pg"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}},
    ]
    assert pg["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "mlflow-pg"}}
    minio = policies["minio-network-policy"]
    [rule] = minio["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "minio", "app.kubernetes.io/component": "bootstrap"}
            }
        },
        {"podSelector": {"matchLabels": minio["podSelector"]["matchLabels"]}},
    ]
    assert rule["ports"] == [{"port": 9000, "protocol": "TCP"}]
    for name in ("mlflow-deployment", "mlflow-migrate"):
        kind = "Deployment" if "deployment" in name else "Job"
        [workload] = [o for o in dev.k8s(kind) if o["metadata"]["name"].startswith(name)]
        assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "mlflow"


# ------------------------------------------------------------------ secrets
@pytest.mark.parametrize("stack", ["dev", "prod", "pr-42"])
def test_no_secret_value_in_plain_inputs_outputs_or_workload_specs(stack):
    ev = evaluate_stack(stack)
    assert len(ev.secret_values()) >= 10
    assert plain_leaks(ev) == []
    assert {"adminPassword", "packageValues"} <= ev.secret_outputs


def test_secret_detection_catches_a_leak():
    """The leak scan above must be able to fail: a password copied into a ConfigMap is found."""
    ev = evaluate_stack("dev")
    password = ev.one("random:index/randomPassword:RandomPassword", "mlflow-admin-password").outputs["result"]
    config_map = ev.one("kubernetes:core/v1:ConfigMap", "minio-bootstrap").inputs
    assert not any(s in yaml.safe_dump(config_map) for s in ev.secret_values())
    config_map["data"]["leak"] = password
    assert any(s in yaml.safe_dump(config_map) for s in ev.secret_values())


def test_engine_style_secret_marking_is_applied(dev):
    assert dev.one("tls:index/privateKey:PrivateKey", "postgres-tls-server-key").secret_outputs >= {"privateKeyPem"}
    assert "result" in dev.one("random:index/randomPassword:RandomPassword", "mlflow-admin-password").secret_outputs
    assert {"data", "stringData"} <= dev.one("kubernetes:core/v1:Secret", "mlflow-env").secret_outputs
    assert {"data", "stringData"} <= dev.one("kubernetes:core/v1:Secret", "postgres-mlflow-credentials").secret_outputs
    assert {"data", "stringData"} <= dev.one("kubernetes:core/v1:Secret", "minio-mlflow-credentials").secret_outputs
    outputs, secret_paths = next(v for k, v in dev.component_outputs.items() if k.endswith("PostgresCluster::postgres"))
    assert {"password", "sqlalchemy_uri", "auth_sqlalchemy_uri"} <= secret_paths
    assert "ca_pem" not in secret_paths and "host" not in secret_paths


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize(
    "stack, types",
    [("dev", PROJECT_TYPES), ("cluster", {"CnpgOperator", "BarmanCloudPlugin"})],
)
def test_components_use_the_project_type_token_and_parent_every_child(stack, types):
    ev = evaluate_stack(stack)
    by_urn = {r.urn: r for r in ev.registrations}
    # Ours: every component but the provider's own (the plugin CRD's yaml/v2 ConfigFile).
    components = [r for r in ev.registrations if not r.custom and not r.type.startswith("kubernetes:")]
    assert {r.type.rsplit(":", 1)[1] for r in components} == types
    assert all(r.type.startswith("mlflow-platform:index:") for r in components)
    for reg in ev.registrations:
        if reg.type == "pulumi:providers:kubernetes":
            continue
        parent = by_urn.get(reg.parent)
        if reg.type.startswith("mlflow-platform:index:") and parent is None:
            assert reg.parent.endswith(f"pulumi:pulumi:Stack::mlflow-platform-{stack}")
            continue
        assert parent is not None and not parent.custom, f"{reg.type} {reg.name} is not parented to a component"
        assert reg.name.startswith(parent.name + "-"), f"{reg.name} is not named after its parent {parent.name}"


def test_every_kubernetes_object_uses_the_explicit_provider_and_the_stack_namespace(dev):
    for reg in dev.registrations:
        if reg.custom and reg.type.startswith("kubernetes:"):
            assert "pulumi:providers:kubernetes::kubernetes::" in reg.provider, reg.name
    for obj in dev.k8s_objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "mlflow-dev", obj["metadata"]["name"]
    namespace = dev.one("kubernetes:core/v1:Namespace", "platform-namespace").outputs
    assert namespace["metadata"]["name"] == "mlflow-dev"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_postgres_and_minio_do_not_wait_for_each_other(dev):
    by_urn = {r.urn: r for r in dev.registrations}

    def ancestors(urn, seen=None):
        seen = set() if seen is None else seen
        for dep in by_urn[urn].dependencies + [u for us in by_urn[urn].property_dependencies.values() for u in us]:
            if dep in by_urn and dep not in seen:
                seen.add(dep)
                ancestors(dep, seen)
        return seen

    cluster = dev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster")
    statefulset = dev.one("kubernetes:apps/v1:StatefulSet", "minio-statefulset")
    assert not any(by_urn[u].name.startswith("minio") for u in ancestors(cluster.urn))
    assert not any(by_urn[u].name.startswith("postgres") for u in ancestors(statefulset.urn))


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_unchanged_stack_evaluates_to_identical_inputs(stack):
    state: dict = {}
    first = evaluate_stack(stack, state=state)
    second = evaluate_stack(stack, state=state)
    assert [r.urn for r in first.registrations] != [] and len(first.registrations) == len(second.registrations)
    before = {r.urn: r.inputs for r in first.registrations}
    after = {r.urn: r.inputs for r in second.registrations}
    assert after == before


# ------------------------------------------------------------------ profiles
def test_prod_runs_ha_and_protects_its_data(prod):
    protected = {r.name for r in prod.registrations if r.protect and r.retain_on_delete}
    assert {
        "postgres-cluster",
        "postgres-mlflow-database",
        "postgres-mlflow_auth-database",
        "minio-statefulset",
        "platform-namespace",
    } <= protected
    [cluster] = prod.k8s("Cluster")
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["storage"]["size"] == "50Gi"
    assert {d["spec"]["databaseReclaimPolicy"] for d in prod.k8s("Database")} == {"retain"}
    [deployment] = prod.k8s("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    budgets = {b["metadata"]["labels"]["app.kubernetes.io/name"]: b["spec"] for b in prod.k8s("PodDisruptionBudget")}
    assert set(budgets) == {"mlflow", "minio"}
    # One MinIO server evicted at a time: a drain never takes the erasure set's write quorum (3 of 4).
    assert budgets["minio"]["maxUnavailable"] == 1
    [statefulset] = prod.k8s("StatefulSet")
    assert statefulset["spec"]["replicas"] == 4
    [spread] = statefulset["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert prod.outputs["trackingUrl"].startswith("https://")


def test_pr_stacks_are_small_unprotected_and_leave_nothing_behind(pr):
    assert not any(r.protect or r.retain_on_delete for r in pr.registrations)
    [statefulset] = pr.k8s("StatefulSet")
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Delete",
    }
    assert {d["spec"]["databaseReclaimPolicy"] for d in pr.k8s("Database")} == {"delete"}
    assert pr.of_type("kubernetes:helm.sh/v3:Release") == [], "PR stacks share the cluster's operator"
    assert pr.of_type("mlflow-platform:index:CnpgOperator") == []
    assert pr.outputs["namespace"] == "mlflow-pr-42" and pr.outputs["profile"] == "pr"
    assert pr.k8s("PodDisruptionBudget") == []


def test_the_cluster_stack_installs_the_pinned_cnpg_operator_before_the_plugin():
    cluster = evaluate_stack("cluster")
    release = cluster.one("kubernetes:helm.sh/v3:Release", "cnpg-operator-release")
    assert release.inputs["chart"] == "cloudnative-pg" and release.inputs["version"] == "0.29.0"
    assert release.inputs["repositoryOpts"]["repo"] == "https://cloudnative-pg.github.io/charts"
    assert release.inputs.get("skipAwait") is not True, "the operator's webhooks must answer first"
    plugin = cluster.one("kubernetes:apps/v1:Deployment", "barman-cloud-plugin-deployment")
    assert release.urn in ancestors(cluster, plugin.urn)


def test_renaming_a_component_with_an_alias_keeps_its_children():
    """Children are named after their parent, so one alias on the component carries the whole tree."""
    import pulumi

    import config
    from components.postgres_cluster import PostgresCluster
    from tools.mock_engine import evaluate
    from wiring import database_args

    def renamed():
        args = database_args(config.load(), "mlflow-dev", "cnpg-system")
        PostgresCluster("database", args, opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="postgres")]))

    ev = evaluate(renamed)
    component = ev.one("mlflow-platform:index:PostgresCluster", "database")
    cluster = ev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "database-cluster")
    assert any("postgres" in alias for alias in component.aliases), component.aliases
    assert cluster.parent == component.urn and cluster.name.startswith("database-")


def test_secret_and_config_changes_roll_the_pods_that_use_them():
    """Secrets/ConfigMaps are immutable to pulumi-kubernetes (replaced on change) and autonamed, so a
    new password or certificate means a new name in the pod spec, hence a rollout, never a stale mount."""
    state: dict = {}
    before = evaluate_stack("dev", state=state)
    for reg in before.registrations:
        if reg.type in ("kubernetes:core/v1:Secret", "kubernetes:core/v1:ConfigMap"):
            assert "name" not in reg.inputs["metadata"], f"{reg.name} must be autonamed"
    provider = before.one("pulumi:providers:kubernetes", "kubernetes").inputs
    assert not provider.get("enableSecretMutable") and not provider.get("enableConfigMapMutable")
    # Rotate the MLflow role's password, as `pulumi up --replace` on it would.
    for key in [k for k in state if k[1] == "postgres-mlflow-password"]:
        del state[key]
    after = evaluate_stack("dev", state=state)
    old_env = before.one("kubernetes:core/v1:Secret", "mlflow-env").inputs["stringData"]
    new_env = after.one("kubernetes:core/v1:Secret", "mlflow-env").inputs["stringData"]
    assert old_env["postgres-password"] != new_env["postgres-password"]
    old_pod = before.one("kubernetes:apps/v1:Deployment", "mlflow-deployment").inputs["spec"]["template"]
    new_pod = after.one("kubernetes:apps/v1:Deployment", "mlflow-deployment").inputs["spec"]["template"]
    assert old_pod != new_pod, "the pod template references the Secret by its (new) name"
    # The operator is pointed at the new password Secret too: the role is altered in the same update.
    [old_role], [new_role] = (
        ev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster").inputs["spec"]["managed"]["roles"]
        for ev in (before, after)
    )
    assert old_role["passwordSecret"] != new_role["passwordSecret"]
    assert new_env["postgres-password"] == role_password(after)
