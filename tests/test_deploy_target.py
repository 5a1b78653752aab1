"""Issue 17.1: the stack deploys to the cluster the user named, with the standard pulumi-kubernetes keys
too, and says where before it changes anything (`make check`, the stack output deployTarget)."""

from __future__ import annotations

import textwrap

import pytest

from config import ConfigError
from tools.mock_engine import evaluate_stack

KUBECONFIG = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Config
    current-context: dev-cluster
    contexts:
    - name: dev-cluster
      context: {cluster: dev}
    - name: prod-cluster
      context: {cluster: prod}
    clusters:
    - name: dev
      cluster: {server: "https://dev.example.com:6443"}
    - name: prod
      cluster: {server: "https://prod.example.com:6443"}
    users: []
    """
)


@pytest.fixture()
def kubeconfig(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def provider(ev) -> dict:
    return ev.one("pulumi:providers:kubernetes", "kubernetes").inputs


def test_the_standard_kubernetes_context_key_is_honoured_and_shown(kubeconfig):
    ev = evaluate_stack("prod", {"kubernetes:context": "prod-cluster"})
    assert provider(ev)["context"] == "prod-cluster"
    assert ev.outputs["deployTarget"] == {"context": "prod-cluster", "server": "https://prod.example.com:6443"}


def test_without_a_context_the_current_one_is_shown(kubeconfig):
    ev = evaluate_stack("dev")
    assert "context" not in provider(ev)
    assert ev.outputs["deployTarget"] == {"context": "dev-cluster", "server": "https://dev.example.com:6443"}


def test_the_standard_kubeconfig_key_is_honoured(kubeconfig, tmp_path):
    other = tmp_path / "other"
    other.write_text(KUBECONFIG.replace("current-context: dev-cluster", "current-context: prod-cluster"))
    ev = evaluate_stack("dev", {"kubernetes:kubeconfig": str(other)})
    assert provider(ev)["kubeconfig"] == str(other)
    assert ev.outputs["deployTarget"]["server"] == "https://prod.example.com:6443"


def test_two_different_contexts_are_refused_naming_both_keys(kubeconfig):
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("prod", {"kubeContext": "dev-cluster", "kubernetes:context": "prod-cluster"})
    assert 'mlflow-platform:kubeContext = "dev-cluster": conflicts with kubernetes:context = "prod-cluster"' in str(
        raised.value
    )
    assert raised.value.registrations == []


def test_a_kubernetes_key_the_provider_would_ignore_is_refused(kubeconfig):
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", {"kubernetes:namespace": "default"})
    assert "kubernetes:namespace is not read by this program's Kubernetes provider" in str(raised.value)


def test_make_check_says_where_the_stack_deploys(kubeconfig):
    from tools import check_config

    code, message = check_config.check("dev")
    assert code == 0
    assert message.endswith(
        f"deploys to context dev-cluster (https://dev.example.com:6443, kubeconfig {kubeconfig})"
    ), message
