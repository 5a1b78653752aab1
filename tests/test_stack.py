"""The composed stack: wiring between components, secret hygiene, structure, determinism, profiles."""

import configparser
import ipaddress
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from cryptography import x509

from tests.harness import evaluate_stack

PROJECT_TYPES = {"PlatformNamespace", "PostgresCluster", "MinioStore", "MlflowServer", "TlsCertificate"}


# ------------------------------------------------------------------ helpers over an evaluation
def container(ev, kind: str, name_prefix: str, container_name: str) -> dict:
    [workload] = [o for o in ev.k8s(kind) if o["metadata"]["name"].startswith(name_prefix)]
    pod = workload["spec"]["template"]["spec"]
    return next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == container_name)


def pod_of(ev, kind: str, name_prefix: str) -> dict:
    [workload] = [o for o in ev.k8s(kind) if o["metadata"]["name"].startswith(name_prefix)]
    return workload["spec"]["template"]["spec"]


def env_value(ev, c: dict, name: str) -> str:
    [entry] = [e for e in c["env"] if e["name"] == name]
    if "value" in entry:
        return entry["value"]
    ref = entry["valueFrom"]["secretKeyRef"]
    return ev.secret_by_name(ref["name"])[ref["key"]]


def mounted_file(ev, pod: dict, c: dict, path: str) -> str:
    """Content of the file a container sees at `path`, resolved through its volumes."""
    for mount in c["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix):]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", [])] or [
            {"name": volume["secret"]["secretName"], **volume["secret"]}]
        for source in sources:
            data = ev.secret_by_name(source["name"])
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["path"] == relative:
                    return data[item["key"]]
    raise AssertionError(f"{path} is not mounted in container {c['name']}")


def sans(cert_pem: str) -> tuple[set, set]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def tls_secret(ev, certificate: str) -> dict:
    [secret] = [o for o in ev.k8s("Secret") if o["type"] == "kubernetes.io/tls"
                and o["metadata"]["labels"]["mlflow-platform/certificate"] == certificate]
    return secret["stringData"]


def verifies(ca_pem: str, cert_pem: str) -> bool:
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


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
    role = dev.one("postgresql:index/role:Role", "postgres-mlflow-role")
    assert unquote(uri.password) == role.inputs["password"], "the URI carries the role's password, URL-encoded"


def test_cnpg_serves_the_certificate_and_rejects_plain_connections(dev):
    [cluster] = dev.k8s("Cluster")
    certs = cluster["spec"]["certificates"]
    server_secret = next(o for o in dev.k8s("Secret") if o["metadata"]["name"] == certs["serverTLSSecret"])
    ca_secret = next(o for o in dev.k8s("Secret") if o["metadata"]["name"] == certs["serverCASecret"])
    assert server_secret["type"] == "kubernetes.io/tls" and set(server_secret["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert set(ca_secret["stringData"]) == {"ca.crt"}
    hba = cluster["spec"]["postgresql"]["pg_hba"]
    assert hba[0] == "hostnossl all all all reject" and hba[1].startswith("hostssl")
    assert cluster["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    dns, _ = sans(server_secret["stringData"]["tls.crt"])
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    for host in (f"{name}-rw", f"{name}-rw.{ns}", f"{name}-rw.{ns}.svc", f"{name}-rw.{ns}.svc.cluster.local"):
        assert host in dns


def test_the_runner_reaches_postgres_over_the_admin_endpoint_with_verify_full(dev):
    provider = dev.one("pulumi:providers:postgresql", "postgres-admin-provider").inputs
    service = next(o for o in dev.k8s("Service") if o["metadata"]["name"].startswith("postgres-admin"))
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    lb_ip = dev.one("kubernetes:core/v1:Service", "postgres-admin").outputs["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert provider["host"] == lb_ip and provider["sslmode"] == "verify-full"
    _, ips = sans(tls_secret(dev, "postgres-tls")["tls.crt"])
    assert lb_ip in ips, "the admin address is in the SANs, so verify-full works for the runner too"
    ca_file = Path(provider["sslrootcert"])
    assert not ca_file.is_absolute(), "a relative path keeps the state identical across checkouts"
    assert ca_file.read_text() == tls_secret(dev, "postgres-tls")["ca.crt"]


def test_mlflow_reaches_minio_over_tls_with_the_minio_ca(dev):
    pod = pod_of(dev, "Deployment", "mlflow-deployment")
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    endpoint = urlsplit(env_value(dev, server, "MLFLOW_S3_ENDPOINT_URL"))
    minio_tls = tls_secret(dev, "minio-tls")
    assert endpoint.scheme == "https" and endpoint.hostname in sans(minio_tls["tls.crt"])[0]
    ca = mounted_file(dev, pod, server, env_value(dev, server, "AWS_CA_BUNDLE"))
    assert ca == minio_tls["ca.crt"] and verifies(ca, minio_tls["tls.crt"])
    assert not any(e["name"] == "MLFLOW_S3_IGNORE_TLS" for e in server["env"])
    user = dev.one("minio:index/iamUser:IamUser", "minio-mlflow-user").inputs
    assert env_value(dev, server, "AWS_ACCESS_KEY_ID") == user["name"]
    assert env_value(dev, server, "AWS_SECRET_ACCESS_KEY") == user["secret"]


def test_mlflow_serves_artifacts_from_the_declared_bucket_and_answers_its_hosts(dev):
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    args = server["args"]
    bucket = dev.one("minio:index/s3Bucket:S3Bucket", "minio-bucket").inputs["bucket"]
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
    assert unquote(auth_uri.password) == dev.one("postgresql:index/role:Role", "postgres-mlflow-role").inputs["password"]
    assert ini["mlflow"]["admin_username"] == dev.outputs["adminUser"] == "admin"
    assert env_value(dev, server, "MLFLOW_AUTH_ADMIN_PASSWORD") == dev.outputs["adminPassword"]
    assert len(env_value(dev, server, "MLFLOW_FLASK_SERVER_SECRET_KEY")) >= 32


def test_mlflow_holds_neither_the_superuser_nor_the_minio_root_key(dev):
    superuser = dev.one("random:index/randomPassword:RandomPassword", "postgres-superuser-password").outputs["result"]
    root = dev.one("random:index/randomPassword:RandomPassword", "minio-root-password").outputs["result"]
    pod = pod_of(dev, "Deployment", "mlflow-deployment")
    seen = []
    for c in pod["containers"]:
        seen += [env_value(dev, c, e["name"]) for e in c["env"]]
    for volume in pod["volumes"]:
        names = [volume["secret"]["secretName"]] if "secret" in volume else [
            s["secret"]["name"] for s in volume.get("projected", {}).get("sources", [])]
        seen += [v for n in names for v in dev.secret_by_name(n).values()]
    assert seen and not any(superuser in v or root in v for v in seen)
    assert not any("tls.key" in dev.secret_by_name(n) for v in pod["volumes"]
                   for n in ([v["secret"]["secretName"]] if "secret" in v else []))


def test_the_migration_job_completes_before_the_deployment_rolls_out(dev):
    job = dev.one("kubernetes:batch/v1:Job", "mlflow-migrate")
    deployment = dev.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    assert job.urn in deployment.dependencies
    pod = pod_of(dev, "Job", "mlflow-migrate")
    steps = [(c["command"], c["args"]) for c in pod["initContainers"] + pod["containers"]]
    assert steps == [(["mlflow"], ["db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"]),
                     (["python"], ["-m", "mlflow.server.auth", "db", "upgrade", "--url", "$(MLFLOW_AUTH_DATABASE_URI)"])]
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    migrate = container(dev, "Job", "mlflow-migrate", "upgrade-tracking-db")
    assert migrate["image"] == server["image"] == "ghcr.io/mlflow/mlflow:v3.17.2-full"
    assert env_value(dev, migrate, "MLFLOW_BACKEND_STORE_URI") == env_value(dev, server, "MLFLOW_BACKEND_STORE_URI")
    assert pod["restartPolicy"] == "Never" and "ttlSecondsAfterFinished" not in pod_of(dev, "Job", "mlflow-migrate")


def test_server_info_keeps_artifact_transfers_on_the_proxy(dev):
    pod = pod_of(dev, "Deployment", "mlflow-deployment")
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    startup_dir = env_value(dev, server, "PYTHONPATH")
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == startup_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    [config_map] = [o for o in dev.k8s("ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"]]
    module = (Path(__file__).parent.parent / "components" / "mlflow_startup" / "sitecustomize.py").read_text()
    assert config_map["data"]["sitecustomize.py"] == module


def test_package_values_are_rendered_from_the_wired_outputs(dev):
    values = yaml.safe_load(dev.outputs["packageValues"])
    assert set(values) == {"region", "artifact_store", "access_key", "secret_key", "version", "backing_store",
                           "ingress_fqdn", "bucket", "ignore_tls", "ingress_domain"}
    server = container(dev, "Deployment", "mlflow-deployment", "mlflow")
    assert values["backing_store"] == env_value(dev, server, "MLFLOW_BACKEND_STORE_URI")
    assert values["artifact_store"] == env_value(dev, server, "MLFLOW_S3_ENDPOINT_URL")
    assert values["secret_key"] == env_value(dev, server, "AWS_SECRET_ACCESS_KEY")
    assert (values["bucket"], values["version"], values["ignore_tls"], values["region"]) == ("mlflow", "3.17.2", "false", "us-east-1")
    assert values["ingress_fqdn"] == "mlflow-mlflow-dev.localtest.me" and values["ingress_domain"] == "localtest.me"


def test_network_policies_admit_only_mlflow_the_operator_and_the_runner(dev):
    policies = {o["metadata"]["name"].rsplit("-", 1)[0]: o["spec"] for o in dev.k8s("NetworkPolicy")}
    assert policies["platform-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    pg = policies["postgres-network-policy"]
    sources = [peer for rule in pg["ingress"] for peer in rule["from"]]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}} in sources
    assert all(set(p) <= {"podSelector", "namespaceSelector", "ipBlock"} and p != {"podSelector": {}} for p in sources)
    for name in ("mlflow-deployment", "mlflow-migrate"):
        kind = "Deployment" if "deployment" in name else "Job"
        [workload] = [o for o in dev.k8s(kind) if o["metadata"]["name"].startswith(name)]
        assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "mlflow"


# ------------------------------------------------------------------ secrets
@pytest.mark.parametrize("stack", ["dev", "prod", "pr-42"])
def test_no_secret_value_in_plain_inputs_outputs_or_workload_specs(stack):
    ev = evaluate_stack(stack)
    secret_values = ev.secret_values()
    assert len(secret_values) >= 10
    leaks = []
    for reg in ev.registrations:
        for which in ("inputs", "outputs"):
            for path, text in ev.without_secret_paths(reg, which):
                if any(value in text for value in secret_values):
                    leaks.append(f"{reg.type} {reg.name} {which}.{path}")
    for name, value in ev.outputs.items():
        if name not in ev.secret_outputs and any(s in str(value) for s in secret_values):
            leaks.append(f"stack output {name}")
    for obj in ev.k8s_objects:
        if obj["kind"] != "Secret" and any(s in yaml.safe_dump(obj) for s in secret_values):
            leaks.append(f"{obj['kind']} {obj['metadata']['name']}")
    assert leaks == []
    assert {"adminPassword", "packageValues"} <= ev.secret_outputs


def test_secret_detection_catches_a_leak():
    """The leak scan above must be able to fail: a password copied into a ConfigMap is found."""
    ev = evaluate_stack("dev")
    password = ev.one("random:index/randomPassword:RandomPassword", "mlflow-admin-password").outputs["result"]
    [config_map] = ev.k8s("ConfigMap")
    config_map["data"]["leak"] = password
    assert any(s in yaml.safe_dump(config_map) for s in ev.secret_values())


def test_engine_style_secret_marking_is_applied(dev):
    assert dev.one("tls:index/privateKey:PrivateKey", "postgres-tls-server-key").secret_outputs >= {"privateKeyPem"}
    assert "result" in dev.one("random:index/randomPassword:RandomPassword", "mlflow-admin-password").secret_outputs
    assert {"data", "stringData"} <= dev.one("kubernetes:core/v1:Secret", "mlflow-env").secret_outputs
    assert "password" in dev.one("postgresql:index/role:Role", "postgres-mlflow-role").secret_outputs
    outputs, secret_paths = next(v for k, v in dev.component_outputs.items() if k.endswith("PostgresCluster::postgres"))
    assert {"password", "sqlalchemy_uri", "auth_sqlalchemy_uri"} <= secret_paths
    assert "ca_pem" not in secret_paths and "host" not in secret_paths


# ------------------------------------------------------------------ structure
def test_components_use_the_project_type_token_and_parent_every_child(dev):
    by_urn = {r.urn: r for r in dev.registrations}
    components = [r for r in dev.registrations if not r.custom]
    assert {r.type.rsplit(":", 1)[1] for r in components} == PROJECT_TYPES
    assert all(r.type.startswith("mlflow-platform:index:") for r in components)
    for reg in dev.registrations:
        if reg.type == "pulumi:providers:kubernetes":
            continue
        parent = by_urn.get(reg.parent)
        if reg.type.startswith("mlflow-platform:index:") and parent is None:
            assert reg.parent.endswith("pulumi:pulumi:Stack::mlflow-platform-dev")
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
    [namespace] = dev.k8s("Namespace")
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
    assert {"postgres-cluster", "postgres-mlflow-database", "postgres-mlflow_auth-database", "minio-bucket",
            "minio-statefulset", "platform-namespace"} <= protected
    [cluster] = prod.k8s("Cluster")
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["storage"]["size"] == "50Gi"
    [deployment] = prod.k8s("Deployment")
    assert deployment["spec"]["replicas"] >= 2 and len(prod.k8s("PodDisruptionBudget")) == 1
    [statefulset] = prod.k8s("StatefulSet")
    assert statefulset["spec"]["replicas"] == 4
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert prod.one("minio:index/s3Bucket:S3Bucket", "minio-bucket").inputs["forceDestroy"] is False
    assert prod.outputs["trackingUrl"].startswith("https://")


def test_pr_stacks_are_small_unprotected_and_leave_nothing_behind(pr):
    assert not any(r.protect or r.retain_on_delete for r in pr.registrations)
    assert pr.one("minio:index/s3Bucket:S3Bucket", "minio-bucket").inputs["forceDestroy"] is True
    [statefulset] = pr.k8s("StatefulSet")
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert pr.of_type("kubernetes:helm.sh/v3:Release") == [], "PR stacks share the cluster's operator"
    assert pr.outputs["namespace"] == "mlflow-pr-42" and pr.outputs["profile"] == "pr"
    assert pr.k8s("PodDisruptionBudget") == []


def test_dev_installs_the_pinned_cnpg_operator_before_the_cluster(dev):
    release = dev.one("kubernetes:helm.sh/v3:Release", "postgres-operator")
    assert release.inputs["chart"] == "cloudnative-pg" and release.inputs["version"] == "0.29.0"
    assert release.inputs["repositoryOpts"]["repo"] == "https://cloudnative-pg.github.io/charts"
    assert release.urn in dev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster").dependencies


def test_admin_endpoints_can_use_node_ports_and_explicit_hosts():
    ev = evaluate_stack("dev", {"postgresAdminAccess": "nodePort", "postgresAdminHost": "172.18.0.2",
                                "minioAdminAccess": "ingress"})
    provider = ev.one("pulumi:providers:postgresql", "postgres-admin-provider").inputs
    assert (provider["host"], str(provider["port"])) == ("172.18.0.2", "30432")
    service = next(o for o in ev.k8s("Service") if o["metadata"]["name"].startswith("postgres-admin"))
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30432
    assert "172.18.0.2" in sans(tls_secret(ev, "postgres-tls")["tls.crt"])[1]
    minio = ev.one("pulumi:providers:minio", "minio-admin-provider").inputs
    assert minio["minioServer"] == "minio-mlflow-dev.localtest.me:443"
    assert "minio-mlflow-dev.localtest.me" in sans(tls_secret(ev, "minio-tls")["tls.crt"])[0]
    assert not any(o["metadata"]["name"].startswith("minio-admin") for o in ev.k8s("Service"))
    assert ipaddress.ip_address(provider["host"])


def test_renaming_a_component_with_an_alias_keeps_its_children():
    """Children are named after their parent, so one alias on the component carries the whole tree."""
    import pulumi

    from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
    from settings import load_settings
    from tests.harness import PROJECT, evaluate

    def renamed():
        settings = load_settings(pulumi.Config(PROJECT))
        PostgresCluster("database", PostgresClusterArgs(
            namespace="mlflow-dev", stack="dev", settings=settings.postgres, tls=settings.tls,
            client_pod_labels={"app": "x"}, client_ca_path="/ca.crt"),
            opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="postgres")]))

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
    assert old_env["backend-store-uri"] != new_env["backend-store-uri"]
    old_pod = before.one("kubernetes:apps/v1:Deployment", "mlflow-deployment").inputs["spec"]["template"]
    new_pod = after.one("kubernetes:apps/v1:Deployment", "mlflow-deployment").inputs["spec"]["template"]
    assert old_pod != new_pod, "the pod template references the Secret by its (new) name"
