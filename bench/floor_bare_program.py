"""Bare FLOOR variant: only the top-level SDK packages, one Kubernetes resource.

Differs from bench/floor_program.py by not loading the Kubernetes API-group modules other than
core/v1; the difference between the two is what those SDK lazy imports cost.
"""

import pulumi
import pulumi_kubernetes as k8s
import pulumi_minio  # noqa: F401
import pulumi_postgresql  # noqa: F401
import pulumi_random  # noqa: F401
import pulumi_tls  # noqa: F401
import yaml  # noqa: F401

namespace = k8s.core.v1.Namespace("floor", metadata={"name": "mlflow-floor"})
pulumi.export("namespace", namespace.metadata.name)
