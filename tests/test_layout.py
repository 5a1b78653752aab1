"""The tools (tools/: `make render`, `make check`, the mock engine, the loopback services) and the
benchmark (bench/) stand apart from the tests: they import nothing from tests/ (tests import them).
"""

import ast
from pathlib import Path

import pytest

from tests.stacks import parse_python

ROOT = Path(__file__).resolve().parent.parent
APART_FROM_TESTS = ("tools", "bench")


def imported_modules(source: str, module: str) -> set[str]:
    """Every module `source` (the module named `module`) imports: import statements (relative ones
    resolved against `module`'s package) and constant names given to importlib.import_module/__import__."""
    package = module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(parse_python(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            parent = ".".join([*base, *([node.module] if node.module else [])])
            found.add(parent)
            found.update(f"{parent}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def imports_tests(source: str, module: str) -> list[str]:
    return sorted(m for m in imported_modules(source, module) if m == "tests" or m.startswith("tests."))


def python_files() -> list[Path]:
    return sorted(p for top in APART_FROM_TESTS for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_check_sees_every_kind_of_import_of_tests():
    assert imports_tests("import tests.harness", "tools.x") == ["tests.harness"]
    assert imports_tests("from tests import harness", "tools.x") == ["tests", "tests.harness"]
    assert imports_tests("from tests.integration.services import svc", "bench.x") == [
        "tests.integration.services",
        "tests.integration.services.svc",
    ]
    assert imports_tests("def f():\n    import tests\n", "bench.x") == ["tests"]
    assert imports_tests("import importlib\nimportlib.import_module('tests.harness')", "tools.x") == ["tests.harness"]
    assert imports_tests("from . import services\nimport testsuite\nfrom tools import tests_data", "tools.a.b") == []


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tools_and_bench_import_nothing_from_tests(path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    found = imports_tests(path.read_text(encoding="utf-8"), module)
    assert not found, f"{path.relative_to(ROOT)} imports {found}: tools and bench must not depend on tests/"


def test_the_check_covers_the_tools_and_the_benchmark():
    names = {str(p.relative_to(ROOT)) for p in python_files()}
    assert {"tools/render.py", "tools/mock_engine.py", "bench/bench.py", "bench/server/server_bench.py"} <= names
