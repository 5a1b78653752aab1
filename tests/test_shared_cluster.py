"""Issue 8, several stacks on one cluster: exactly one stack (or none) owns the CloudNativePG operator,
a second owner stops before it creates anything, and stacks never share a namespaced object."""

import pytest

from tests.harness import evaluate_stack
from tests.stacks import ancestors

OPERATOR = "mlflow-platform:index:CnpgOperator"
RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def pr7():
    return evaluate_stack("pr-7")


def cluster_scoped(ev) -> set:
    return {(o["kind"], o["metadata"]["name"]) for o in ev.k8s_objects if "namespace" not in o["metadata"]}


@pytest.mark.parametrize(
    "stack, config, owns",
    [
        ("dev", {}, True),
        ("prod", {}, True),
        ("dev", {"installCnpgOperator": False}, False),
        ("pr-42", {}, False),
        ("pr-7", {}, False),
    ],
)
def test_only_the_owning_stack_registers_the_operator(stack, config, owns):
    ev = evaluate_stack(stack, config)
    assert len(ev.of_type(OPERATOR)) == int(owns)
    assert len(ev.of_type(RELEASE)) == int(owns)
    assert (("Namespace", "cnpg-system") in cluster_scoped(ev)) is owns
    # Whoever owns it, the stack's PostgreSQL admits the operator's namespace.
    [policy] = [p for p in ev.k8s("NetworkPolicy") if p["metadata"]["name"].startswith("postgres-network-policy")]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}} in [
        peer for rule in policy["spec"]["ingress"] for peer in rule["from"]
    ]


def test_the_operator_has_fixed_names_and_survives_its_owners_destroy(dev):
    [operator] = dev.of_type(OPERATOR)
    namespace = dev.one("kubernetes:core/v1:Namespace", "cnpg-operator-namespace")
    release = dev.one(RELEASE, "cnpg-operator-release")
    assert namespace.parent == operator.urn and release.parent == operator.urn
    # Fixed names: a second owner collides on them instead of installing a second operator.
    assert namespace.inputs["metadata"]["name"] == "cnpg-system"
    assert (release.inputs["name"], release.inputs["namespace"]) == ("cnpg", "cnpg-system")
    assert namespace.inputs["metadata"]["labels"]["mlflow-platform/cnpg-operator-owner"] == "mlflow-platform.dev"
    assert namespace.retain_on_delete and release.retain_on_delete
    assert not namespace.protect and not release.protect


def test_a_second_owner_fails_before_creating_anything(dev):
    """The provider refuses to adopt existing objects, and every other Kubernetes object waits for the
    operator's namespace: a stack that cannot create it (AlreadyExists) creates nothing in the cluster."""
    provider = dev.one("pulumi:providers:kubernetes", "kubernetes").inputs
    assert provider["upsertExistingObjects"] in ("false", False)
    operator_namespace = dev.one("kubernetes:core/v1:Namespace", "cnpg-operator-namespace")
    release = dev.one(RELEASE, "cnpg-operator-release")
    stack_namespace = dev.one("kubernetes:core/v1:Namespace", "platform-namespace")
    assert operator_namespace.urn in ancestors(dev, release.urn)
    assert release.urn in ancestors(dev, stack_namespace.urn)
    cluster_objects = [
        r
        for r in dev.registrations
        if r.custom and r.type.startswith("kubernetes:") and r.urn != operator_namespace.urn
    ]
    assert len(cluster_objects) > 30
    for reg in cluster_objects:
        assert operator_namespace.urn in ancestors(dev, reg.urn), reg.name
        if reg.type not in (RELEASE, "kubernetes:core/v1:Namespace"):
            assert stack_namespace.urn in ancestors(dev, reg.urn), reg.name


def test_two_stacks_on_one_cluster_share_no_object(dev, pr7):
    def namespaced(ev) -> set:
        return {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
            for o in ev.k8s_objects
            if "namespace" in o["metadata"]
        }

    ours, theirs = namespaced(dev), namespaced(pr7)
    assert {ns for _, ns, _ in ours} == {"mlflow-dev"} and {ns for _, ns, _ in theirs} == {"mlflow-pr-7"}
    assert ours.isdisjoint(theirs)
    # Fixed names inside a stack (the Cluster, MinIO's Services) are unique per namespace.
    assert ("Cluster", "mlflow-dev", "mlflow-pg") in ours and ("Cluster", "mlflow-pr-7", "mlflow-pg") in theirs
    assert cluster_scoped(dev) == {("Namespace", "cnpg-system"), ("Namespace", "mlflow-dev")}
    assert cluster_scoped(pr7) == {("Namespace", "mlflow-pr-7")}
    assert pr7.of_type(RELEASE) == []
