"""ServiceMonitors and the PodMonitor: found by the Prometheus operator, and every target scraped once.

kube-prometheus-stack's Prometheus selects monitors by the label `release: <its Helm release>`
(serviceMonitorSelectorNilUsesHelmValues: true, the chart's default); a monitor without it is never
read. The labels come from monitoringLabels (default release: kube-prometheus-stack). A ServiceMonitor
scrapes the endpoints of every Service it matches: matching two Services in front of the same pods
scrapes each pod twice (doubled series, doubled rates).
"""

from __future__ import annotations

import pytest

from config import ConfigError
from tools.mock_engine import evaluate_stack

DEFAULT_LABELS = {"release": "kube-prometheus-stack"}


def monitors(ev) -> list[dict]:
    return [o for o in ev.k8s_objects if o["apiVersion"] == "monitoring.coreos.com/v1"]


def matches(selector: dict, labels: dict | None) -> bool:
    return bool(selector) and selector.items() <= (labels or {}).items()


def pod_templates(ev) -> list[dict]:
    kinds = ("Deployment", "StatefulSet", "DaemonSet", "Job")
    templates = [o["spec"]["template"] for o in ev.k8s_objects if o["kind"] in kinds]
    templates += [o["spec"]["jobTemplate"]["spec"]["template"] for o in ev.k8s("CronJob")]
    return templates


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_target_is_scraped_once_by_a_monitor_prometheus_selects(stack):
    ev = evaluate_stack(stack, {"prometheusOperator": True})
    found = monitors(ev)
    assert {m["metadata"]["name"] for m in found} == {"mlflow", "minio", "postgres"}
    for monitor in found:
        assert DEFAULT_LABELS.items() <= monitor["metadata"]["labels"].items(), monitor["metadata"]["name"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        if monitor["kind"] == "ServiceMonitor":
            [endpoint] = monitor["spec"]["endpoints"]
            services = [
                s
                for s in ev.k8s("Service")
                if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
                and matches(selector, s["metadata"].get("labels"))
                and any(p.get("name") == endpoint["port"] for p in s["spec"]["ports"])
            ]
            assert len(services) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in services])
            # That Service selects the pods the monitor means (each server once).
            [service] = services
            assert any(matches(service["spec"]["selector"], t["metadata"]["labels"]) for t in pod_templates(ev))
        else:  # the PodMonitor: CloudNativePG's instances only (the operator creates them; none rendered here)
            assert selector == {"cnpg.io/cluster": "mlflow-pg"}
            assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "interval": "30s"}]
            assert not [t for t in pod_templates(ev) if matches(selector, t["metadata"]["labels"])]


def test_monitoring_labels_are_configurable():
    labels = {"release": "prometheus", "example.com/team": "ml"}
    ev = evaluate_stack("dev", {"prometheusOperator": True, "monitoringLabels": labels})
    for monitor in monitors(ev):
        assert labels.items() <= monitor["metadata"]["labels"].items()
        assert monitor["metadata"]["labels"].get("release") == "prometheus"


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"release": 1}, "not a map of Kubernetes labels"),
        ({"bad key!": "x"}, "not a map of Kubernetes labels"),
        ({"release": "-x-"}, "not a map of Kubernetes labels"),
        (["release=x"], "expected an object"),
    ],
)
def test_monitoring_labels_must_be_kubernetes_labels(labels, problem):
    with pytest.raises(ConfigError, match=f"monitoringLabels = .*{problem}"):
        evaluate_stack("dev", {"prometheusOperator": True, "monitoringLabels": labels})
