"""Entry point of the `mlflow-platform-baseline` policy pack.

The Pulumi CLI runs this file as `__main__` (``pulumi preview --policy-pack policy``);
importing it under any other name only builds ``POLICIES`` and does not start the
analyzer server, so tests can inspect the pack without the engine.
"""

import os
import sys

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy, Severity

# The CLI puts this directory on sys.path; make the import work when loaded by path too.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baseline  # noqa: E402  pylint: disable=wrong-import-position

PACK_NAME = "mlflow-platform-baseline"
ENFORCEMENT_LEVEL = EnforcementLevel.MANDATORY

POLICIES = [
    ResourceValidationPolicy(
        name=spec.name,
        description=spec.description,
        validate=spec.validate,
        enforcement_level=ENFORCEMENT_LEVEL,
        severity=Severity.HIGH,
    )
    for spec in baseline.POLICY_SPECS
]


def main() -> None:
    """Start the analyzer (blocks, serving the engine over gRPC)."""
    PolicyPack(
        name=PACK_NAME,
        description="Preview-time checks for the mlflow-platform stacks beyond server-side Pod Security: "
        "resource limits, no plaintext secrets, pinned images, TLS everywhere, protected data in prod.",
        enforcement_level=ENFORCEMENT_LEVEL,
        policies=POLICIES,
    )


if __name__ == "__main__":
    main()
