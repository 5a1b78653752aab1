"""Shared fixtures: each evaluation runs the real program fresh under the faithful mocks."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.mock_engine import evaluate_stack  # noqa: E402


@pytest.fixture(scope="module")
def dev():
    return evaluate_stack("dev")


@pytest.fixture(scope="module")
def prod():
    return evaluate_stack("prod")


@pytest.fixture(scope="module")
def pr():
    return evaluate_stack("pr-42")
