"""The local control plane itself (tools/local_cluster.py): what the live lifecycle tests rely on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.live import waiting
from tools import local_cluster
from tools.local_cluster import Cluster, ClusterError

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok only plays the pod's status
RESTRICTED_CONTAINER: dict[str, Any] = {
    "name": "main",
    "image": IMAGE,
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def wait_until(what: str, check: Callable[[], Any], cluster: Cluster, timeout: float = 90) -> Any:
    return waiting.wait_until(what, check, cluster, timeout, lambda: cluster.log_tail("kube-controller-manager", 15))


def namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
    # Pods are refused until the ServiceAccount controller created the namespace's `default`.
    wait_until(f"{name}/default ServiceAccount", lambda: cluster.kubectl("get", "sa", "default", "-n", name), cluster)
    return name


def labels_app(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app": name}}


def pod_template(name: str, restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"restartPolicy": restart, "containers": [RESTRICTED_CONTAINER]},
    }


def ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


def test_version_is_1_36_3(live_cluster: Cluster) -> None:
    assert live_cluster.api("/version")["gitVersion"] == "v1.36.3"
    client = json.loads(live_cluster.kubectl("version", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == "v1.36.3"
    assert client["serverVersion"]["gitVersion"] == "v1.36.3"


def test_restricted_namespace_refuses_a_privileged_pod(live_cluster: Cluster) -> None:
    ns = namespace(live_cluster, "cp-psa", {"pod-security.kubernetes.io/enforce": "restricted"})
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": ns},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "securityContext": {"privileged": True}}]},
    }
    refused = live_cluster.kubectl("apply", "-f", "-", input=json.dumps(privileged), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr
    compliant = {**privileged, "metadata": {"name": "compliant", "namespace": ns}}
    compliant["spec"] = {"containers": [RESTRICTED_CONTAINER]}
    live_cluster.apply(compliant)


def test_deployment_pod_becomes_ready(live_cluster: Cluster) -> None:
    ns = namespace(live_cluster, "cp-deploy")
    live_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 2, "selector": labels_app("web"), "template": pod_template("web")},
        }
    )
    live_cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
    pods = live_cluster.get_json("pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == local_cluster.NODE_NAME  # placed by kube-scheduler
        assert pod["status"]["phase"] == "Running" and ready(pod)


def test_job_pod_succeeds_and_job_completes(live_cluster: Cluster) -> None:
    ns = namespace(live_cluster, "cp-job")
    live_cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", "namespace": ns},
            "spec": {"backoffLimit": 0, "template": pod_template("once", restart="Never")},
        }
    )
    live_cluster.kubectl("wait", "--for=condition=Complete", "job/once", "-n", ns, "--timeout=90s")
    pods = live_cluster.get_json("pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=once")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    assert live_cluster.get_json("job", "once", "-n", ns)["status"]["succeeded"] == 1


def test_statefulset_pvc_binds_and_pod_becomes_ready(live_cluster: Cluster) -> None:
    ns = namespace(live_cluster, "cp-sts")
    live_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": labels_app("db"),
                "template": pod_template("db"),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    }
                ],
            },
        }
    )
    pvc = wait_until(
        "PVC data-db-0 Bound",
        lambda: (p := live_cluster.get_json("pvc", "data-db-0", "-n", ns))["status"].get("phase") == "Bound" and p,
        live_cluster,
    )
    assert pvc["spec"]["storageClassName"] == local_cluster.STORAGE_CLASS  # the default class
    pv = live_cluster.get_json("pv", pvc["spec"]["volumeName"])
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == "data-db-0"
    live_cluster.kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=90s")
    assert ready(live_cluster.get_json("pod", "db-0", "-n", ns))


def test_namespace_deletion_completes(live_cluster: Cluster) -> None:
    ns = namespace(live_cluster, "cp-delete")
    live_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 1, "selector": labels_app("web"), "template": pod_template("web")},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns}, "data": {"a": "b"}},
    )
    live_cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
    live_cluster.kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(
        f"namespace {ns} gone",
        lambda: live_cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
        live_cluster,
        timeout=120,
    )


def test_node_stays_ready_past_the_grace_period(live_cluster: Cluster) -> None:
    """kwok renews the node's Lease: the node lifecycle controller (grace 50 s) keeps it Ready."""
    node = live_cluster.get_json("node", local_cluster.NODE_NAME)
    created = datetime.fromisoformat(node["metadata"]["creationTimestamp"])
    while (age := (datetime.now(UTC) - created).total_seconds()) < 70:
        live_cluster.check_alive()
        time.sleep(min(5.0, 70 - age))
    node = live_cluster.get_json("node", local_cluster.NODE_NAME)
    assert ready(node), node["status"]["conditions"]
    taints = [t["key"] for t in node["spec"].get("taints", [])]
    assert not [t for t in taints if t.startswith("node.kubernetes.io/")], taints
    lease = live_cluster.get_json("lease", local_cluster.NODE_NAME, "-n", "kube-node-lease")
    renewed = datetime.fromisoformat(lease["spec"]["renewTime"])
    assert (datetime.now(UTC) - renewed).total_seconds() < 40


def test_missing_binaries_name_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"/etcd missing: run `make engine`$"):
        local_cluster.check_binaries(tmp_path)


def test_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ClusterError) as e:
            local_cluster.start(tmp_path, api_port=port)
    assert f"127.0.0.1:{port}" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "state.json").exists()


def test_cli_up_env_down_leaves_no_process(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.local_cluster", *args, "--dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    up = cli("up")
    state = json.loads((tmp_path / "state.json").read_text()) if (tmp_path / "state.json").exists() else {}
    pids = {name: p["pid"] for name, p in state.get("processes", {}).items()}
    try:
        assert up.returncode == 0, up.stderr
        assert set(pids) == set(local_cluster.COMPONENTS)
        assert all(local_cluster._pid_alive(pid) for pid in pids.values())
        env = cli("env")
        assert env.stdout.strip() == f"export KUBECONFIG={tmp_path.resolve() / 'kubeconfig'}"
        again = cli("up")
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert [n for n, pid in pids.items() if local_cluster._pid_alive(pid)] == []
    assert not (tmp_path / "state.json").exists()
    assert (tmp_path / "logs" / "kube-apiserver.log").stat().st_size > 0  # logs stay
