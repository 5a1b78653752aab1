"""One way the live tests wait for the cluster to reach a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tools.local_cluster import Cluster, ClusterError


def wait_until(
    what: str, check: Callable[[], Any], cluster: Cluster, timeout: float, diagnostics: Callable[[], str]
) -> Any:
    """check()'s first truthy value; a control-plane process that died fails at once (its log tail),
    a timeout fails with the last value or error seen and diagnostics()."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except (ClusterError, KeyError, IndexError, TypeError) as e:
            last = e
        cluster.check_alive()
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})\n{diagnostics()}")
