"""`make render STACK=x`: checked first, runtime venv only, the same files on every run."""

from __future__ import annotations

import filecmp
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.mock_engine import ROOT

# Runs tools.render with every installed distribution that requirements.txt does not bring (pytest,
# moto, mlflow...) made unimportable, as in the runtime venv `make check` creates.
RUNTIME_ONLY = r"""
import importlib.abc, importlib.metadata as md, re, runpy, sys
from packaging.requirements import Requirement

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

wanted = []
for line in open(sys.argv[1]).read().splitlines():
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
        wanted.append(Requirement(line))
runtime = set()
while wanted:
    req = wanted.pop()
    if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
        continue
    name = norm(req.name)
    if name in runtime:
        continue
    runtime.add(name)
    for text in md.requires(req.name) or []:
        sub = Requirement(text)
        if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
            sub.marker = None
            wanted.append(sub)
blocked = {
    top: dists for top, dists in md.packages_distributions().items() if not any(norm(d) in runtime for d in dists)
}

class NotInRuntimeVenv(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (from {blocked[top]}, not in requirements.txt)")
        return None

sys.meta_path.insert(0, NotInRuntimeVenv())
sys.argv = ["tools.render", *sys.argv[2:]]
runpy.run_module("tools.render", run_name="__main__", alter_sys=True)
"""


def render(*args: str, runtime_only: bool = False) -> subprocess.CompletedProcess:
    command = (
        [sys.executable, "-c", RUNTIME_ONLY, str(ROOT / "requirements.txt"), *args]
        if runtime_only
        else [sys.executable, "-m", "tools.render", *args]
    )
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def listed(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.startswith("  ")]


def assert_same_trees(a: Path, b: Path) -> None:
    """`diff -r a b` is empty."""
    comparison = filecmp.dircmp(a, b)
    assert comparison.left_only == comparison.right_only == [] and not comparison.subdirs
    _, mismatch, errors = filecmp.cmpfiles(a, b, comparison.common_files, shallow=False)
    assert mismatch == errors == [], mismatch[:5]


def test_two_renders_write_the_same_files_in_the_same_order(tmp_path):
    first, second = (render("--out", str(tmp_path / name), "dev", runtime_only=True) for name in ("a", "b"))
    assert first.returncode == second.returncode == 0, first.stderr[-3000:]
    names = listed(first.stdout)
    assert names == listed(second.stdout) == sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) > 20
    assert_same_trees(tmp_path / "a", tmp_path / "b")
    # Apply order: the namespace first, accounts and Secrets before the workloads that use them.
    kinds = [re.match(r"\d+-([a-z]+)-", n)[1] for n in names]
    assert kinds[0] == "namespace"
    assert max(i for i, k in enumerate(kinds) if k == "secret") < kinds.index("deployment")
    assert kinds.index("serviceaccount") < kinds.index("deployment") < kinds.index("cluster")


@pytest.mark.parametrize("config", [[], ["--config", "tlsAlgorithm=RSA"]], ids=["ecdsa", "rsa"])
def test_generated_values_are_reproducible(tmp_path, config):
    from tools.render import render_stack

    config_map = dict(c.split("=", 1) for c in config[1::2])
    a = render_stack("pr-42", config=config_map or None, out_dir=tmp_path / "a", seed="render:pr-42")
    b = render_stack("pr-42", config=config_map or None, out_dir=tmp_path / "b", seed="render:pr-42")
    assert [p.name for p, _ in a.files] == [p.name for p, _ in b.files]
    assert_same_trees(tmp_path / "a", tmp_path / "b")
    # ... and they are keys and certificates all the same (the CA signs the server certificate).
    from tests.stacks import verifies

    [tls] = [o for o in a.objects if o["kind"] == "Secret" and o.get("type") == "kubernetes.io/tls"][:1]
    assert verifies(tls["stringData"]["ca.crt"], tls["stringData"]["tls.crt"])


def test_render_checks_the_stack_first_and_writes_nothing_for_a_bad_one(tmp_path):
    out = tmp_path / "out"
    typo = render("--out", str(out), "dve")
    assert typo.returncode == 2 and "no Pulumi.dve.yaml" in typo.stderr and not out.exists()
    path = ROOT / "Pulumi.rendercheck.yaml"
    path.write_text("config:\n  mlflow-platform:mlflowReplica: 2\n")
    try:
        bad = render("--out", str(out), "rendercheck")
    finally:
        path.unlink()
    assert bad.returncode == 2 and "did you mean mlflowReplicas?" in bad.stderr and not out.exists()


def test_make_render_runs_the_check_in_the_runtime_venv():
    makefile = (ROOT / "Makefile").read_text()
    render_rule = re.search(r"^render: (.*?)##", makefile, re.M)
    assert render_rule and render_rule[1].split() == ["check"]
    check_rule = re.search(r"^check: (.*?)##", makefile, re.M)
    assert check_rule and check_rule[1].split() == ["$(VENV)/.runtime"]
    assert "\t$(PY) -m tools.render $(STACK)\n" in makefile
    assert not (ROOT / "tests" / "render.py").exists()
