"""Live layer: a real Kubernetes control plane on loopback (tools/local_cluster.py).

Needs etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok in engine/bin
(`make engine`); without them every live test fails (nothing is skipped). Every test under
tests/live is marked `live` (`-m "not live"` leaves them out). LIVE_CLUSTER_DIR=DIR keeps the
cluster's working directory (logs, kubeconfig) there instead of pytest's tmp dir. The Gateway API
CRDs (engine/bin/crds/gateway-api, also `make engine`) are installed by the `gateway_api` fixture
for the tests that deploy routes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import local_cluster

LIVE_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LIVE_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.live)


@pytest.fixture(scope="session")
def live_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_cluster.Cluster]:
    """One control plane for the whole session; stopped (every process, by pid) at its end."""
    try:
        local_cluster.check_binaries()
    except local_cluster.ClusterError as e:
        pytest.fail(f"{e} (the live tests run the local control plane built by engine/build.sh)", pytrace=False)
    workdir = Path(os.environ.get("LIVE_CLUSTER_DIR") or tmp_path_factory.mktemp("live-cluster"))
    with local_cluster.running(workdir) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def gateway_api(live_cluster: local_cluster.Cluster) -> list[str]:
    """The Gateway API standard-channel CRDs on the live API server (Established), before the stacks that
    publish through an HTTPRoute: its admission then validates our routes and policies, CEL rules included."""
    try:
        return local_cluster.install_gateway_api(live_cluster)
    except local_cluster.ClusterError as e:
        pytest.fail(f"{e} (the Gateway API CRDs the live tests install)", pytrace=False)
