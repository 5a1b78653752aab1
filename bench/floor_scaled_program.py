"""Scaled FLOOR variant: the floor's SDK modules, and as many trivial resources as the real program.

`bench.bench` sets BENCH_FLOOR_RESOURCES to the real program's registration count. Each resource is a
small ConfigMap registered at top level, with no Outputs wired between them: what remains is the
Pulumi SDK's fixed per-resource work (serialising inputs, stack traces, the RPC, resolving outputs).
"""

import os

import pulumi
import pulumi_kubernetes as k8s

from bench import floor_program  # noqa: F401  same SDK modules as the floor

COUNT = int(os.environ.get("BENCH_FLOOR_RESOURCES", "60"))

for index in range(COUNT):
    k8s.core.v1.ConfigMap(f"floor-{index}", metadata={"name": f"floor-{index}", "namespace": "mlflow-floor"},
                          data={"index": str(index)})
pulumi.export("count", COUNT)
