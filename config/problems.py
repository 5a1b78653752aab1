"""How a configuration problem reads: one line naming the key, its value and the fix."""

from __future__ import annotations

import json
from typing import Any

import pulumi

PROJECT_NAME = "mlflow-platform"


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; RunError makes Pulumi print it without a stack trace."""


def problem_line(key: str, value: Any, problem: str, fix: str) -> str:
    return f"  - {PROJECT_NAME}:{key} = {json.dumps(value)}: {problem}. Fix: {fix}"


class Problems(list[str]):
    """The problems a rule finds, collected so that every one is reported at once."""

    def add(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.append(problem_line(key, value, problem, fix))
