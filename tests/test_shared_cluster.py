"""Issue 16, one owner for what is cluster-wide: the `cluster` stack installs the CloudNativePG operator
and the Barman Cloud plugin; environment stacks (dev, prod, pr-N) own only their namespace, find the
cluster stack's services through its outputs, and stop before creating anything when it is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import safety
from config import ConfigError
from tests.stacks import ancestors
from tools.mock_engine import ROOT, PlatformMocks, evaluate_stack

OPERATOR = "mlflow-platform:index:CnpgOperator"
PLUGIN = "mlflow-platform:index:BarmanCloudPlugin"
RELEASE = "kubernetes:helm.sh/v3:Release"
CLUSTER_STACK = "organization/mlflow-platform/cluster"
LOCAL_CHART = ROOT.parent / "shared" / "charts" / "cloudnative-pg"


@pytest.fixture(scope="module")
def cluster():
    return evaluate_stack("cluster")


@pytest.fixture(scope="module")
def pr7():
    return evaluate_stack("pr-7")


def cluster_scoped(ev) -> set:
    return {(o["kind"], o["metadata"]["name"]) for o in ev.k8s_objects if "namespace" not in o["metadata"]}


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-42"])
def test_environment_stacks_own_nothing_cluster_wide(stack):
    ev = evaluate_stack(stack)
    assert not ev.of_type(OPERATOR) and not ev.of_type(PLUGIN) and not ev.of_type(RELEASE)
    assert cluster_scoped(ev) == {("Namespace", f"mlflow-{stack}")}
    # The operator's namespace, from the cluster stack's outputs, is admitted by PostgreSQL's policy.
    [policy] = [p for p in ev.k8s("NetworkPolicy") if p["metadata"]["name"].startswith("postgres-network-policy")]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}} in [
        peer for rule in policy["spec"]["ingress"] for peer in rule["from"]
    ]


def test_the_cluster_stack_owns_the_operator_and_the_plugin_and_nothing_of_an_environment(cluster):
    [operator], [plugin] = cluster.of_type(OPERATOR), cluster.of_type(PLUGIN)
    namespace = cluster.one("kubernetes:core/v1:Namespace", "cnpg-operator-namespace")
    release = cluster.one(RELEASE, "cnpg-operator-release")
    assert namespace.parent == operator.urn and release.parent == operator.urn
    # Fixed names: a second owner collides on them instead of installing a second operator.
    assert namespace.inputs["metadata"]["name"] == "cnpg-system"
    assert (release.inputs["name"], release.inputs["namespace"]) == ("cnpg", "cnpg-system")
    assert release.inputs["chart"] == "cloudnative-pg" and release.inputs["version"] == "0.29.0"
    assert release.inputs["repositoryOpts"] == {"repo": "https://cloudnative-pg.github.io/charts"}
    assert namespace.inputs["metadata"]["labels"]["mlflow-platform/cluster-services-owner"] == "mlflow-platform.cluster"
    # Destroying the cluster stack removes what it installed (the chart keeps its CRDs, so no data).
    assert not namespace.retain_on_delete and not release.retain_on_delete
    provider = cluster.one("pulumi:providers:kubernetes", "kubernetes").inputs
    assert provider["upsertExistingObjects"] in ("false", False)
    # Everything namespaced lives beside the operator: nothing of an environment.
    assert {o["metadata"]["namespace"] for o in cluster.k8s_objects if "namespace" in o["metadata"]} == {"cnpg-system"}
    assert plugin.urn in ancestors(
        cluster, cluster.one("kubernetes:apps/v1:Deployment", "barman-cloud-plugin-deployment").urn
    )
    assert cluster.outputs["cnpgOperatorNamespace"] == "cnpg-system"
    assert cluster.outputs["cnpgOperatorVersion"] == "1.30.0" and cluster.outputs["barmanPluginVersion"] == "0.14.0"


def test_the_plugin_needs_no_cert_manager(cluster):
    """Its two certificates come from pulumi-tls, in the Secrets its Service annotations name."""
    kinds = {o["kind"] for o in cluster.k8s_objects}
    assert not {"Certificate", "Issuer", "ClusterIssuer"} & kinds
    [service] = [s for s in cluster.k8s("Service") if s["metadata"]["name"] == "barman-cloud"]
    annotations = service["metadata"]["annotations"]
    assert service["metadata"]["labels"]["cnpg.io/pluginName"] == "barman-cloud.cloudnative-pg.io"
    assert annotations["cnpg.io/pluginPort"] == "9090"
    server = cluster.secret_by_name(annotations["cnpg.io/pluginServerSecret"])
    client = cluster.secret_by_name(annotations["cnpg.io/pluginClientSecret"])
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    for secret, usage in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert set(secret) == {"tls.crt", "tls.key", "ca.crt"} and secret["ca.crt"] == secret["tls.crt"]
        cert = x509.load_pem_x509_certificate(secret["tls.crt"].encode())
        assert usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    server_cert = x509.load_pem_x509_certificate(server["tls.crt"].encode())
    assert "barman-cloud" in server_cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    [deployment] = cluster.k8s("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/cloudnative-pg/plugin-barman-cloud:v0.14.0"
    assert cluster.secret_by_name(container["env"][0]["valueFrom"]["secretKeyRef"]["name"]) == {
        "SIDECAR_IMAGE": "ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v0.14.0"
    }


def test_a_local_chart_installs_from_its_directory_with_checked_values():
    if not LOCAL_CHART.is_dir():
        pytest.fail(f"the CloudNativePG chart is missing: {LOCAL_CHART} (../shared/charts/README.md)")
    values = {"webhook": {"mutating": {"create": False}, "validating": {"create": False}}}
    ev = evaluate_stack("cluster", {"cnpgChartPath": str(LOCAL_CHART), "cnpgChartValues": values})
    release = ev.one(RELEASE, "cnpg-operator-release")
    assert release.inputs["chart"] == str(LOCAL_CHART) and "repositoryOpts" not in release.inputs
    assert release.inputs["version"] == "0.29.0"  # the local Chart.yaml's, checked against cnpgChartVersion
    assert release.inputs["values"] == values


def test_chart_values_the_chart_schema_refuses_are_named_at_check_time():
    if not LOCAL_CHART.is_dir():
        pytest.fail(f"the CloudNativePG chart is missing: {LOCAL_CHART}")
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("cluster", {"cnpgChartPath": str(LOCAL_CHART), "cnpgChartValues": {"replicaCount": "two"}})
    message = str(raised.value)
    assert "mlflow-platform:cnpgChartValues" in message and "at replicaCount: 'two' is not of type 'integer'" in message
    assert raised.value.registrations == []


def test_a_missing_chart_path_is_named():
    with pytest.raises(ConfigError, match=r"cnpgChartPath = \"charts/nowhere\": no such chart"):
        evaluate_stack("cluster", {"cnpgChartPath": "charts/nowhere"})


def test_a_missing_cluster_stack_stops_preview_before_anything_is_created():
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", state={"stacks": {CLUSTER_STACK: None}})
    message = str(raised.value)
    assert f'the cluster stack {CLUSTER_STACK} cannot be read (unknown stack "{CLUSTER_STACK}")' in message
    assert 'mlflow-platform:clusterStack = "cluster". Fix: create it first with `make up STACK=cluster`' in message
    assert raised.value.registrations == []


THIS_STACK = "organization/mlflow-platform/dev"


def test_a_stack_read_that_meets_the_checkpoint_mid_write_is_read_again(monkeypatch):
    """Under the real engine, the file backend failed a read of the stack being updated with "failed to
    load checkpoint: EOF" (a metadata file written in place); a second read finds the checkpoint whole."""
    waits: list[float] = []
    monkeypatch.setattr(safety.time, "sleep", waits.append)
    mid_write = {CLUSTER_STACK: 1, THIS_STACK: 2}
    ev = evaluate_stack("dev", state={"checkpoint_mid_write": mid_write})
    assert mid_write == {CLUSTER_STACK: 0, THIS_STACK: 0} and waits == [0.1, 0.1, 0.2]
    assert ev.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")


@pytest.mark.parametrize(
    ("stack_read", "named"),
    [
        (CLUSTER_STACK, f"the cluster stack {CLUSTER_STACK} cannot be read"),
        (THIS_STACK, "its last deployment cannot be read"),
    ],
)
def test_a_checkpoint_that_stays_unreadable_stops_before_anything_is_created(monkeypatch, stack_read, named):
    waits: list[float] = []
    monkeypatch.setattr(safety.time, "sleep", waits.append)
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", state={"checkpoint_mid_write": {stack_read: 100}})
    assert f"stack dev: {named} (failed to load checkpoint: EOF); nothing was created." in str(raised.value)
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6]  # then it gives up: a broken backend is not waited on forever
    assert raised.value.registrations == []


def test_a_missing_stack_is_not_read_again(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(safety.time, "sleep", waits.append)
    with pytest.raises(ConfigError):
        evaluate_stack("dev", state={"stacks": {CLUSTER_STACK: None}})
    assert waits == []


def test_an_operator_older_than_the_stack_needs_is_named():
    old = {**PlatformMocks.CLUSTER_STACK_OUTPUTS, "cnpgOperatorVersion": "1.24.1"}
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("prod", state={"stacks": {CLUSTER_STACK: old}})
    assert "its CloudNativePG operator is 1.24.1, this stack needs 1.26.0 or newer" in str(raised.value)
    assert "raise cnpgChartVersion in Pulumi.cluster.yaml" in str(raised.value)
    assert raised.value.registrations == []


def test_a_named_cluster_stack_of_another_project_is_read_by_its_full_name():
    ev = evaluate_stack(
        "dev",
        {"clusterStack": "platform-team/k8s-base/prod-eu"},
        state={
            "stacks": {
                "platform-team/k8s-base/prod-eu": {
                    **PlatformMocks.CLUSTER_STACK_OUTPUTS,
                    "cnpgOperatorNamespace": "postgres-operator",
                }
            }
        },
    )
    assert (
        ev.one("kubernetes:core/v1:Namespace", "platform-namespace").inputs["metadata"]["labels"][
            "mlflow-platform/cnpg-operator-namespace"
        ]
        == "postgres-operator"
    )


def test_without_a_cluster_stack_the_operator_namespace_comes_from_config():
    ev = evaluate_stack(
        "dev", {"clusterStack": "", "cnpgOperatorNamespace": "db-operators"}, state={"stacks": {CLUSTER_STACK: None}}
    )
    [policy] = [p for p in ev.k8s("NetworkPolicy") if p["metadata"]["name"].startswith("postgres-network-policy")]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db-operators"}}} in [
        peer for rule in policy["spec"]["ingress"] for peer in rule["from"]
    ]


def test_the_removed_operator_flag_names_the_cluster_stack():
    with pytest.raises(ConfigError, match="installCnpgOperator was removed: the cluster stack owns"):
        evaluate_stack("dev", {"installCnpgOperator": True})


def test_the_cluster_stack_file_and_the_environment_files_agree():
    profile = json.dumps((ROOT / "Pulumi.cluster.yaml").read_text())
    assert "mlflow-platform:profile: cluster" in json.loads(profile)
    for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml", "profiles/pr.yaml"):
        assert "installCnpgOperator" not in Path(ROOT / name).read_text()


def test_two_stacks_on_one_cluster_share_no_object(pr7):
    dev = evaluate_stack("dev")

    def namespaced(ev) -> set:
        return {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
            for o in ev.k8s_objects
            if "namespace" in o["metadata"]
        }

    ours, theirs = namespaced(dev), namespaced(pr7)
    assert {ns for _, ns, _ in ours} == {"mlflow-dev"} and {ns for _, ns, _ in theirs} == {"mlflow-pr-7"}
    assert ours.isdisjoint(theirs)
    assert ("Cluster", "mlflow-dev", "mlflow-pg") in ours and ("Cluster", "mlflow-pr-7", "mlflow-pg") in theirs


def test_the_environment_reads_other_stacks_without_state_that_refresh_could_see_drift_in(pr7):
    """Invokes, not StackReference resources: after a deploy, `refresh` has nothing that lags behind."""
    assert not [r for r in pr7.registrations if r.type == "pulumi:pulumi:StackReference"]


def test_prod_keeps_what_its_retained_data_needs_to_run_again():
    """After an (unprotected) destroy, the retained Cluster and MinIO StatefulSet still find every Secret
    they mount or reference and the Services their pods resolve; dev keeps nothing."""
    prod, dev = evaluate_stack("prod"), evaluate_stack("dev")
    retained = [r for r in prod.registrations if r.custom and r.retain_on_delete]
    kinds = {r.type.rsplit(":", 1)[1] for r in retained}
    assert {"Namespace", "Cluster", "Database", "StatefulSet", "Secret", "Service"} <= kinds
    retained_secrets = {r.outputs["metadata"]["name"] for r in retained if r.type == "kubernetes:core/v1:Secret"}
    for reg in retained:
        if reg.type.rsplit(":", 1)[1] in ("Cluster", "StatefulSet"):
            text = json.dumps(reg.outputs)
            referenced = {s["metadata"]["name"] for s in prod.k8s("Secret") if f'"{s["metadata"]["name"]}"' in text}
            assert referenced and referenced <= retained_secrets, (reg.name, referenced - retained_secrets)
    assert not [r for r in dev.registrations if r.custom and r.retain_on_delete]


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-42"])
def test_no_login_role_but_mlflows_in_a_new_cluster(stack):
    """CloudNativePG's default `app` role and database are not created: initdb makes MLflow's role own
    MLflow's database, with the password of the Secret the managed role also uses."""
    ev = evaluate_stack(stack)
    [cluster] = ev.k8s("Cluster")
    [role] = cluster["spec"]["managed"]["roles"]
    assert cluster["spec"]["bootstrap"] == {
        "initdb": {"database": "mlflow", "owner": "mlflow", "secret": {"name": role["passwordSecret"]["name"]}}
    }
    assert cluster["spec"]["enableSuperuserAccess"] is False
    assert ev.secret_by_name(role["passwordSecret"]["name"])["username"] == "mlflow"


def test_a_pr_stacks_databases_do_not_wait_for_the_cluster_on_teardown():
    """Database objects name their Cluster but do not depend on it: Pulumi deletes both together and the
    operator's cleanup of the deleted Cluster clears the Databases' finalizers (no running primary needed)."""
    ev = evaluate_stack("pr-42")
    cluster = ev.one("kubernetes:postgresql.cnpg.io/v1:Cluster", "postgres-cluster")
    for database in ev.of_type("kubernetes:postgresql.cnpg.io/v1:Database"):
        assert cluster.urn not in database.dependencies and cluster.urn not in ancestors(ev, database.urn)
        assert database.inputs["spec"]["cluster"] == {"name": "mlflow-pg"}


def test_every_kubernetes_object_lets_the_declared_state_win_and_ingresses_do_not_wait():
    ev = evaluate_stack(
        "dev", {"minioIngress": True, "ingressClusterIssuer": "letsencrypt", "artifactTransferMode": "direct"}
    )
    for obj in ev.k8s_objects:
        assert obj["metadata"]["annotations"]["pulumi.com/patchForce"] == "true", obj["metadata"]["name"]
    ingresses = ev.k8s("Ingress")
    assert len(ingresses) == 2
    assert all(i["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true" for i in ingresses)


def test_an_external_postgres_stack_needs_no_cluster_stack():
    from tests.stacks import EXTERNAL_POSTGRES

    ev = evaluate_stack("dev", EXTERNAL_POSTGRES, state={"stacks": {CLUSTER_STACK: None}})
    assert not ev.k8s("Cluster")


def test_make_up_reads_the_live_objects_first_so_it_repairs_drift():
    """Without --refresh, `up` compares against the state and would not see `kubectl scale` or a deleted object."""
    makefile = (ROOT / "Makefile").read_text()
    up = makefile.split("\nup:", 1)[1].split("\n\n", 1)[0]
    assert "$(PULUMI) up --refresh $(STACK_ARGS)" in up
