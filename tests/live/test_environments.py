"""The main job against a live Kubernetes API server (issues 15 and 16), through the make targets README.md and docs/ give.

One control plane (tools/local_cluster.py: etcd, kube-apiserver with RBAC and Pod Security admission,
controller-manager, scheduler, kwok for the kubelet) and the stand-in for what the CloudNativePG
operator and its plugin would write (tests/live/standin_operator.py, acting only while the operator
Deployment the cluster stack installs is ready). The engine is the one `make engine` builds, with
the real kubernetes/tls/random plugins. A team's order of work, each environment's first `up` in
ONE run: the cluster stack, then dev, a PR stack, prod; drift reported and repaired; updates good
and broken; refresh and destroy from a fresh checkout; PR stacks that leave nothing behind; a PR
stack that moves from an Ingress to Gateway API routes (the Gateway API CRDs installed first).

The tests of this module run in order and share the cluster (each step builds on the last).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine_cli import STEP_TIMES, Pulumi, checkout
from tests.live import standin_operator, waiting
from tests.stacks import GATEWAY_ROUTE
from tools import local_cluster
from tools.mock_engine import ROOT, evaluate_stack

SHARED = ROOT.parent / "shared"
CHART = SHARED / "charts" / "cloudnative-pg"
PLUGIN_CRD = SHARED / "crds" / "plugin-barman-cloud" / "objectstores.barmancloud.cnpg.io.yaml"
OPERATOR_DEPLOYMENT = "cnpg-system/cnpg-cloudnative-pg"  # release cnpg of chart cloudnative-pg
# The cluster stack as an air-gapped team configures it: the chart and the plugin's CRD from local
# copies; the chart's admission webhooks off, since no operator process serves them here.
CLUSTER_CONFIG = {"cnpgChartPath": str(CHART), "barmanPluginCrd": str(PLUGIN_CRD)}
CHART_VALUES = {"webhook.mutating.create": "false", "webhook.validating.create": "false"}
# PR stacks: what CI writes from profiles/pr.yaml.
PR_STACKS = ("pr-11", "pr-12")
# kubectl's output names of what a stack may leave behind, per namespace and cluster-wide.
NAMESPACED_KINDS = "all,configmaps,secrets,pvc,networkpolicies,ingresses,serviceaccounts,roles,rolebindings,pdb"
STACK_LABEL = "app.kubernetes.io/part-of=mlflow-platform"
# The tracking server's pods (the migration Job's pods share the name label).
SERVER_PODS = "app.kubernetes.io/name=mlflow,app.kubernetes.io/component=tracking-server"


class Team:
    """A platform engineer's checkout, state backend and kubeconfig; `make` as README gives it."""

    def __init__(self, base: Path, cluster: local_cluster.Cluster):
        base.mkdir(parents=True, exist_ok=True)
        (base / "state").mkdir(exist_ok=True)
        self.cluster = cluster
        self.pulumi = Pulumi(base / "home", base / "state")
        self.pulumi.env["KUBECONFIG"] = str(cluster.kubeconfig)
        self.work = checkout(base / "checkout")

    def make(
        self, target: str, stack: str, *, ok: bool = True, step: str = "", timeout: int = 900, cwd: Path | None = None
    ):
        started = time.monotonic()
        result = subprocess.run(
            ["make", target, f"STACK={stack}"],
            cwd=cwd or self.work,
            env=self.pulumi.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if step:
            STEP_TIMES[step] = time.monotonic() - started
        if ok:
            assert result.returncode == 0, (
                f"make {target} STACK={stack} failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}\n"
                + self.cluster_state()
            )
        return result

    def cli(self, *args: str, ok: bool = True, step: str = "", cwd: Path | None = None):
        return self.pulumi(cwd or self.work, *args, ok=ok, step=step)

    def config(self, stack: str, values: dict[str, str], *, path: bool = False) -> None:
        self.make("stack", stack)
        for key, value in values.items():
            self.cli("config", "set", "--stack", stack, *(["--path"] if path else []), f"mlflow-platform:{key}", value)

    def kubectl(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        return self.cluster.kubectl(*args, check=ok)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def cluster_state(self) -> str:
        """What a failure message needs: pods not ready, warning events, the stand-in's last words."""
        pods = self.kubectl("get", "pods", "-A", "-o", "wide", ok=False).stdout
        events = self.kubectl("get", "events", "-A", "--field-selector", "type=Warning", ok=False).stdout
        return f"--- pods\n{pods[-3000:]}\n--- warning events\n{events[-3000:]}"


def objects_in(team: Team, namespace: str) -> set[tuple[str, str]]:
    listed = team.get(NAMESPACED_KINDS, "-n", namespace)["items"]
    return {(o["kind"], o["metadata"]["name"]) for o in listed}


def snapshot(team: Team, namespace: str) -> dict[tuple[str, str], str]:
    """Every object of a namespace with its resourceVersion: equal snapshots mean nothing was touched."""
    listed = team.get(NAMESPACED_KINDS, "-n", namespace)["items"]
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in listed}


def wait_until(team: Team, what: str, check, timeout: float = 120.0):
    return waiting.wait_until(what, check, team.cluster, timeout, team.cluster_state)


def assert_all_pods_serving(team: Team, namespace: str) -> None:
    """Every pod Ready (or Succeeded for Jobs), and no controller ever failed to create one."""
    pods = team.get("pods", "-n", namespace)["items"]
    assert pods, f"no pods in {namespace}"
    for pod in pods:
        phase = pod["status"].get("phase")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        assert phase == "Succeeded" or (phase == "Running" and ready), f"{namespace}/{pod['metadata']['name']}: {phase}"
    failed = [e for e in team.get("events", "-n", namespace)["items"] if e.get("reason") in ("FailedCreate", "Failed")]
    assert not failed, [f"{e['involvedObject']['name']}: {e['message']}" for e in failed]


@pytest.fixture(scope="module")
def team(live_cluster, tmp_path_factory) -> Team:
    base = tmp_path_factory.mktemp("team")
    with standin_operator.running(
        live_cluster.kubeconfig, base / "standin.log", operator_deployment=OPERATOR_DEPLOYMENT
    ):
        yield Team(base, live_cluster)


def test_an_environment_before_its_cluster_stack_sends_nothing_and_names_the_fix(team):
    before = team.get("namespaces")["items"]
    team.make("stack", "dev")
    preview = team.make("preview", "dev", ok=False)
    output = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert "the cluster stack organization/mlflow-platform/cluster cannot be read" in output, output[-3000:]
    assert "Fix: create it first with `make up STACK=cluster`" in output
    assert "Traceback" not in output
    # A bad configuration: refused by the check before any pulumi command.
    team.cli("config", "set", "--stack", "dev", "mlflow-platform:mlflowReplicas", "0")
    check = team.make("up", "dev", ok=False)
    assert check.returncode != 0 and "mlflowReplicas = 0" in check.stderr, check.stderr[-2000:]
    team.cli("config", "rm", "--stack", "dev", "mlflow-platform:mlflowReplicas")
    assert team.get("namespaces")["items"] == before  # nothing reached the API server


def test_the_cluster_stack_installs_the_operator_and_the_plugin_in_one_up(team):
    team.config("cluster", CLUSTER_CONFIG)
    team.config("cluster", {f"cnpgChartValues.{k}": v for k, v in CHART_VALUES.items()}, path=True)
    check = team.make("check", "cluster")
    assert "deploys to context local-cluster" in check.stdout, check.stdout
    team.make("up", "cluster", step="cluster: first up")
    operator = team.get("deployment", "-n", "cnpg-system", "cnpg-cloudnative-pg")
    assert operator["status"].get("readyReplicas") == 1
    plugin = team.get("deployment", "-n", "cnpg-system", "barman-cloud")
    assert plugin["status"].get("readyReplicas") == 1
    crds = {c["metadata"]["name"] for c in team.get("crds")["items"]}
    assert {"clusters.postgresql.cnpg.io", "databases.postgresql.cnpg.io", "objectstores.barmancloud.cnpg.io"} <= crds
    outputs = json.loads(team.cli("stack", "output", "--stack", "cluster", "--json").stdout)
    assert outputs["cnpgOperatorNamespace"] == "cnpg-system" and outputs["cnpgOperatorVersion"] == "1.30.0"
    assert outputs["barmanPluginVersion"] == "0.14.0"
    assert outputs["deployTarget"]["context"] == "local-cluster"
    assert outputs["deployTarget"]["server"] == team.cluster.server
    team.cli("preview", "--stack", "cluster", "--expect-no-changes")


def test_dev_first_preview_then_one_up(team):
    team.make("preview", "dev", step="dev: first preview")
    team.make("up", "dev", step="dev: first up")
    assert_all_pods_serving(team, "mlflow-dev")
    deployment = team.get("deployment", "-n", "mlflow-dev", "-l", "app.kubernetes.io/name=mlflow")["items"][0]
    assert deployment["status"]["readyReplicas"] == 1
    # Custom resources were validated against the real CRDs and are served back.
    cluster = team.get("clusters.postgresql.cnpg.io", "-n", "mlflow-dev", "mlflow-pg")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in cluster["status"]["conditions"])
    # The namespace enforces Pod Security restricted for real.
    namespace = team.get("namespace", "mlflow-dev")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_right_after_a_deploy_no_drift_and_no_changes(team):
    team.make("drift", "dev", step="dev: drift check, clean")
    team.make("preview", "dev")
    team.cli("preview", "--stack", "dev", "--expect-no-changes")


def test_a_pr_stack_and_prod_join_the_same_cluster_each_in_one_up(team):
    dev_before = snapshot(team, "mlflow-dev")
    stack = PR_STACKS[0]
    team.make("stack", stack)
    team.make("up", stack, step=f"{stack}: first up")
    assert_all_pods_serving(team, f"mlflow-{stack}")
    team.make("up", "prod", step="prod: first up")
    assert_all_pods_serving(team, "mlflow-prod")
    # prod backs up through the cluster stack's plugin: the first backup waited for its bucket.
    assert team.get("objectstores.barmancloud.cnpg.io", "-n", "mlflow-prod")["items"]
    assert team.get("scheduledbackups.postgresql.cnpg.io", "-n", "mlflow-prod")["items"]
    team.make("drift", "prod", step="prod: drift check, clean")
    assert snapshot(team, "mlflow-dev") == dev_before, "dev changed while other stacks deployed"


GATEWAY = "gateway.networking.k8s.io"
ROUTE_KINDS = f"httproutes.{GATEWAY},backendtlspolicies.{GATEWAY}"
# publishMode httpRoute with MinIO published too: an HTTPRoute each, a BackendTLSPolicy and its CA ConfigMap.
GATEWAY_CONFIG = {**GATEWAY_ROUTE, "minioIngress": True}


def contains(live: Any, rendered: Any) -> bool:
    """Every field of `rendered` is in `live` with the same value (the API server adds its defaults)."""
    if isinstance(rendered, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in rendered.items())
    if isinstance(rendered, list):
        return isinstance(live, list) and len(live) == len(rendered) and all(map(contains, live, rendered))
    return live == rendered


def test_a_pr_stack_moves_from_an_ingress_to_a_gateway_route_and_leaves_nothing(team, gateway_api):
    """Issue 19.2 against the real API server: the Gateway API CRDs installed, a PR stack first published
    by an Ingress, then (one up) by HTTPRoutes attached to a Gateway it does not own (none needs to exist
    for the API to accept them), admitted by the CRDs' schemas and CEL rules; drift clean; destroy clean."""
    stack, ns = "pr-14", "mlflow-pr-14"
    assert f"httproutes.{GATEWAY}" in gateway_api and f"backendtlspolicies.{GATEWAY}" in gateway_api
    team.make("stack", stack)
    team.make("up", stack, step=f"{stack}: first up, ingress")
    assert len(team.get("ingresses", "-n", ns)["items"]) == 1
    assert team.get(ROUTE_KINDS, "-n", ns)["items"] == []

    team.config(stack, {k: json.dumps(v) if isinstance(v, bool) else v for k, v in GATEWAY_CONFIG.items()})
    team.make("up", stack, step=f"{stack}: up, ingress to httpRoute")
    assert team.get("ingresses", "-n", ns)["items"] == [], "the Ingress is still there"
    expected = evaluate_stack(stack, GATEWAY_CONFIG)
    live = {
        o["spec"]["rules"][0]["backendRefs"][0]["name"]: o for o in team.get(f"httproutes.{GATEWAY}", "-n", ns)["items"]
    }
    rendered = {o["spec"]["rules"][0]["backendRefs"][0]["name"]: o for o in expected.k8s("HTTPRoute")}
    assert sorted(live) == sorted(rendered) == ["minio", "mlflow"]
    for name, route in rendered.items():
        assert contains(live[name]["spec"], route["spec"]), (name, live[name]["spec"], route["spec"])
        assert contains(live[name]["metadata"]["labels"], route["metadata"]["labels"])
    [policy] = team.get(f"backendtlspolicies.{GATEWAY}", "-n", ns)["items"]
    [rendered_policy] = expected.k8s("BackendTLSPolicy")
    [ca_ref] = policy["spec"]["validation"]["caCertificateRefs"]
    rendered_policy["spec"]["validation"]["caCertificateRefs"][0]["name"] = ca_ref["name"]  # autonamed per stack
    assert contains(policy["spec"], rendered_policy["spec"]), policy["spec"]
    ca = team.get("configmap", "-n", ns, ca_ref["name"])["data"]["ca.crt"]
    [ca_secret] = [
        s for s in team.get("secrets", "-n", ns)["items"] if s["metadata"]["name"].startswith("minio-tls-ca")
    ]
    assert ca == base64.b64decode(ca_secret["data"]["ca.crt"]).decode()
    outputs = json.loads(team.cli("stack", "output", "--stack", stack, "--json").stdout)
    assert outputs["trackingUrl"] == "https://mlflow-mlflow-pr-14.localtest.me"
    team.make("drift", stack, step=f"{stack}: drift check after httpRoute, clean")

    # The API server enforces the CRDs' CEL rules on these objects, not only their schemas.
    broken = {k: live["mlflow"][k] for k in ("apiVersion", "kind")}
    broken["metadata"] = {"name": "cel-probe", "namespace": ns}
    broken["spec"] = json.loads(json.dumps(rendered["mlflow"]["spec"]))
    broken["spec"]["rules"][0]["timeouts"]["backendRequest"] = "3600s"  # longer than the request timeout
    refused = team.cluster.kubectl("apply", "--dry-run=server", "-f", "-", check=False, input=json.dumps(broken))
    assert (
        refused.returncode != 0 and "backendRequest timeout cannot be longer than request timeout" in refused.stderr
    ), refused.stderr

    team.make("destroy", stack, step=f"{stack}: destroy, httpRoute")
    wait_until(
        team,
        f"namespace {ns} to go",
        lambda: ns not in {n["metadata"]["name"] for n in team.get("namespaces")["items"]},
    )
    leftovers = [
        (o["kind"], o["metadata"]["name"])
        for o in team.get(f"{NAMESPACED_KINDS},{ROUTE_KINDS}", "-A", "-l", STACK_LABEL)["items"]
        if o["metadata"].get("namespace") == ns
    ]
    assert not leftovers, leftovers


def test_the_restore_drill_runs_as_written(team):
    """The restore drill of docs/operations.md, command for command: a scratch stack restoring prod's archive from an external
    endpoint, through the cluster stack's plugin, then destroyed."""
    stack, ns = "drill", "mlflow-drill"
    team.make("stack", stack)
    for key, value in {
        "postgresRestoreSource": "mlflow-pg",
        "backupS3Endpoint": "https://s3.example.com",
        "backupBucket": "postgres-backups",
        "backupS3AccessKey": "drill-reader",
        "backups": "off",
    }.items():
        team.cli("config", "set", "-s", stack, key, value)
    team.cli("config", "set", "-s", stack, "--secret", "backupS3SecretKey", "drill-reader-secret")
    team.make("up", stack, step="drill: up (restore)")
    cluster = team.get("clusters.postgresql.cnpg.io", "-n", ns, "mlflow-pg")
    assert cluster["spec"]["bootstrap"]["recovery"]["source"] == "origin"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in cluster["status"]["conditions"])
    assert_all_pods_serving(team, ns)
    team.make("destroy", stack, step="drill: destroy")
    wait_until(
        team,
        f"namespace {ns} to go",
        lambda: ns not in {n["metadata"]["name"] for n in team.get("namespaces")["items"]},
    )


def test_drift_is_reported_and_one_up_repairs_it(team):
    ns = "mlflow-dev"
    deployment = team.get("deployment", "-n", ns, "-l", "app.kubernetes.io/name=mlflow")["items"][0]["metadata"]["name"]
    team.kubectl("scale", "-n", ns, f"deployment/{deployment}", "--replicas=3")
    [config_map] = [
        c for c in team.get("configmaps", "-n", ns)["items"] if c["metadata"]["name"].startswith("minio-bootstrap")
    ]
    key = sorted(config_map["data"])[0]
    team.kubectl(
        "patch",
        "-n",
        ns,
        "configmap",
        config_map["metadata"]["name"],
        "--type=merge",
        "-p",
        json.dumps({"data": {key: "edited by hand"}}),
    )
    [secret] = [s for s in team.get("secrets", "-n", ns)["items"] if s["metadata"]["name"].startswith("minio-root")]
    secret_key = sorted(secret["data"])[0]
    team.kubectl(
        "patch",
        "-n",
        ns,
        "secret",
        secret["metadata"]["name"],
        "--type=merge",
        "-p",
        json.dumps({"stringData": {secret_key: "edited-by-hand"}}),
    )
    [policy] = [
        p
        for p in team.get("networkpolicies", "-n", ns)["items"]
        if p["metadata"]["name"].startswith("platform-default-deny")
    ]
    team.kubectl("delete", "-n", ns, "networkpolicy", policy["metadata"]["name"])
    team.kubectl("label", "-n", ns, f"deployment/{deployment}", "--overwrite", "app.kubernetes.io/part-of=someone-else")

    drift = team.make("drift", "dev", ok=False, step="dev: drift check, drifted")
    report = drift.stdout + drift.stderr
    assert drift.returncode != 0
    for what in ("replicas", key, secret["metadata"]["name"], policy["metadata"]["name"], "someone-else"):
        assert what in report, f"drift report does not show {what}:\n{report[-6000:]}"

    team.make("up", "dev", step="dev: up repairing drift")
    repaired = team.get("deployment", "-n", ns, deployment)
    assert repaired["spec"]["replicas"] == 1
    assert repaired["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlflow-platform"
    # Edited ConfigMaps and Secrets are replaced (autonamed: a new name rolls the pods that use them).
    [restored_map] = [
        c for c in team.get("configmaps", "-n", ns)["items"] if c["metadata"]["name"].startswith("minio-bootstrap")
    ]
    assert restored_map["data"][key] == config_map["data"][key]
    [restored_secret] = [
        s for s in team.get("secrets", "-n", ns)["items"] if s["metadata"]["name"].startswith("minio-root")
    ]
    assert restored_secret["data"][secret_key] == secret["data"][secret_key]
    # The deleted policy is created again (under a new generated name).
    assert [
        p
        for p in team.get("networkpolicies", "-n", ns)["items"]
        if p["metadata"]["name"].startswith("platform-default-deny") and p["spec"] == policy["spec"]
    ]
    team.make("drift", "dev")
    team.cli("preview", "--stack", "dev", "--expect-no-changes")


def test_an_update_rolls_out(team):
    team.cli("config", "set", "--stack", "dev", "mlflow-platform:mlflowReplicas", "2")
    team.make("up", "dev", step="dev: update to 2 replicas")
    deployment = team.get("deployment", "-n", "mlflow-dev", "-l", "app.kubernetes.io/name=mlflow")["items"][0]
    assert deployment["status"]["readyReplicas"] == 2 and deployment["status"]["updatedReplicas"] == 2
    assert team.get("pdb", "-n", "mlflow-dev")["items"]  # HA brings its disruption budget
    team.cli("preview", "--stack", "dev", "--expect-no-changes")


def plant(team: Team, path: str, old: str, new: str) -> str:
    source = (team.work / path).read_text()
    assert old in source, f"{path} no longer contains {old!r}"
    (team.work / path).write_text(source.replace(old, new, 1))
    return source


def test_a_broken_update_fails_in_bounded_time_and_the_previous_version_keeps_serving(team):
    """Two ways a change can break: a value the API server refuses (fails at once, naming the object),
    and a pod template Pod Security refuses (the rollout stops at the Deployment's progress deadline,
    planted short here)."""
    ns = "mlflow-dev"
    serving = {p["metadata"]["name"] for p in team.get("pods", "-n", ns, "-l", SERVER_PODS)["items"]}
    original = plant(
        team,
        "components/mlflow_server.py",
        '"ports": [{"name": "http", "containerPort"',
        '"ports": [{"name": "NOT_A_VALID_PORT_NAME", "containerPort"',
    )
    started = time.monotonic()
    refused = team.make("up", "dev", ok=False, step="dev: update the API server refuses")
    assert refused.returncode != 0 and time.monotonic() - started < 300
    assert "mlflow-deployment" in refused.stdout and "Invalid value" in refused.stdout, refused.stdout[-4000:]
    (team.work / "components/mlflow_server.py").write_text(original)

    # The product's bounds (a 300 s progress deadline, an 8 min timeout) shortened for the test.
    plant(team, "components/mlflow_server.py", "ROLLOUT_DEADLINE_SECONDS = 300", "ROLLOUT_DEADLINE_SECONDS = 10")
    plant(team, "components/mlflow_server.py", 'ROLLOUT_TIMEOUT = "8m"', 'ROLLOUT_TIMEOUT = "40s"')
    plant(team, "components/mlflow_server.py", "pod_spec = {", 'pod_spec = {"hostNetwork": True,')
    started = time.monotonic()
    rejected = team.make("up", "dev", ok=False, step="dev: update Pod Security refuses")
    elapsed = time.monotonic() - started
    assert rejected.returncode != 0 and elapsed < 400, elapsed
    assert "mlflow-deployment" in rejected.stdout and "ProgressDeadlineExceeded" in rejected.stdout, rejected.stdout[
        -4000:
    ]
    still = team.get("pods", "-n", ns, "-l", SERVER_PODS)["items"]
    assert serving <= {p["metadata"]["name"] for p in still if p["status"].get("phase") == "Running"}
    events = [e["message"] for e in team.get("events", "-n", ns)["items"] if e.get("reason") == "FailedCreate"]
    assert any("violates PodSecurity" in m and "hostNetwork" in m for m in events), events

    shutil.rmtree(team.work / "components")
    shutil.copytree(ROOT / "components", team.work / "components", ignore=shutil.ignore_patterns("__pycache__"))
    team.make("up", "dev", step="dev: up after the broken update")
    team.cli("preview", "--stack", "dev", "--expect-no-changes")


def test_refresh_and_destroy_from_a_fresh_checkout_leave_nothing_of_a_pr_stack(team, tmp_path):
    stack = PR_STACKS[0]
    ns = f"mlflow-{stack}"
    other = checkout(tmp_path / "fresh")
    shutil.copy(other / "profiles" / "pr.yaml", other / f"Pulumi.{stack}.yaml")  # as CI writes it
    team.cli("refresh", "--yes", "--stack", stack, cwd=other, step=f"{stack}: refresh from a fresh checkout")
    team.make("drift", stack, cwd=other)
    prod_before = snapshot(team, "mlflow-prod")
    # The PostgreSQL primary is gone (its node lost) and cannot come back: the node is cordoned and
    # tainted so its replacement stays Pending; teardown must not wait on the Databases' finalizers.
    node = local_cluster.NODE_NAME
    team.kubectl("taint", "node", node, "mlflow-platform-test/down=true:NoSchedule")
    try:
        team.kubectl("delete", "pod", "-n", ns, "mlflow-pg-1", "--wait=false")
        wait_until(
            team,
            "the primary to be gone",
            lambda: (
                not [
                    p
                    for p in team.get("pods", "-n", ns, "-l", "cnpg.io/cluster=mlflow-pg")["items"]
                    if p["status"].get("phase") == "Running"
                ]
            ),
        )
        team.cli("destroy", "--yes", "--stack", stack, cwd=other, step=f"{stack}: destroy, primary gone")
    finally:
        team.kubectl("taint", "node", node, "mlflow-platform-test/down-")
    team.cli("stack", "rm", "--yes", stack, cwd=other)
    wait_until(
        team,
        f"namespace {ns} to go",
        lambda: ns not in {n["metadata"]["name"] for n in team.get("namespaces")["items"]},
    )
    leftovers = [
        o["metadata"]["name"]
        for o in team.get(NAMESPACED_KINDS, "-A", "-l", f"{STACK_LABEL}")["items"]
        if o["metadata"].get("namespace") == ns
    ]
    assert not leftovers
    volumes = [v for v in team.get("pv")["items"] if (v["spec"].get("claimRef") or {}).get("namespace") == ns]
    assert not volumes, [v["metadata"]["name"] for v in volumes]
    assert snapshot(team, "mlflow-prod") == prod_before


def test_two_pr_stacks_at_once_do_not_interfere(team):
    first, second = PR_STACKS[1], "pr-13"
    for stack in (first, second):
        team.make("stack", stack)
    runs = [
        subprocess.Popen(
            ["make", "up", f"STACK={s}"],
            cwd=team.work,
            env=team.pulumi.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for s in (first, second)
    ]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), [o[-3000:] for o in outputs]
    for stack in (first, second):
        assert_all_pods_serving(team, f"mlflow-{stack}")
    before = snapshot(team, f"mlflow-{second}")
    team.make("destroy", first, step=f"{first}: destroy")
    assert snapshot(team, f"mlflow-{second}") == before
    team.make("destroy", second)


def test_prod_refuses_destroy_while_its_data_is_protected(team):
    before = snapshot(team, "mlflow-prod")
    destroy = team.make("destroy", "prod", ok=False)
    assert destroy.returncode != 0 and "protect" in destroy.stdout, destroy.stdout[-3000:]
    assert snapshot(team, "mlflow-prod") == before


def test_dev_is_destroyed_and_recreated_in_one_up(team):
    team.make("destroy", "dev", step="dev: destroy")
    wait_until(
        team,
        "namespace mlflow-dev to go",
        lambda: "mlflow-dev" not in {n["metadata"]["name"] for n in team.get("namespaces")["items"]},
    )
    team.make("up", "dev", step="dev: up again after destroy")
    assert_all_pods_serving(team, "mlflow-dev")
    team.make("drift", "dev")


def test_report_live_step_times(team):
    """Prints each step's wall time (pytest -s shows it) for the figures in docs/testing.md (Measured times)."""
    live = {k: v for k, v in STEP_TIMES.items() if ":" in k}
    assert live, "the live steps did not run"
    for step, seconds in live.items():
        print(f"live step {step}: {seconds:.1f} s")
