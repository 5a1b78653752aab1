"""`make up/preview/destroy` without a Pulumi CLI: one line saying what to install, and nothing created.

Runs the project's Makefile in an empty directory with a PATH that has no `pulumi`, where everything
else those targets need is in place (a runtime venv whose `python` passes the check), so without the
guard they would get as far as generating .pulumi-passphrase before failing on `pulumi`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.mock_engine import ROOT

PATH_WITHOUT_PULUMI = "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"


def files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    assert shutil.which("pulumi", path=PATH_WITHOUT_PULUMI) is None
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("")
    fake_python = tmp_path / "venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text("#!/bin/sh\nexit 0\n")  # `make check` passes
    fake_python.chmod(0o755)
    (tmp_path / "venv" / ".runtime").touch()
    return tmp_path


@pytest.mark.parametrize("goal", ["up", "preview", "drift", "destroy"])
@pytest.mark.parametrize("pulumi", [None, "engine/bin/pulumi"])
def test_a_missing_cli_stops_make_with_one_line_before_any_file_is_written(checkout, goal, pulumi):
    before = files(checkout)
    env = {"PATH": PATH_WITHOUT_PULUMI, "HOME": str(checkout), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["make", "--no-print-directory", goal, "STACK=dev", *([f"PULUMI={pulumi}"] if pulumi else [])],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{pulumi or 'pulumi'} not found: install the Pulumi CLI (https://www.pulumi.com/docs/install/)" in lines[0]
    assert files(checkout) == before, "nothing written (no .pulumi-passphrase)"
    assert not (checkout / ".pulumi-passphrase").exists()


def test_check_and_render_do_not_need_the_cli(checkout):
    """Offline targets keep working without a CLI (the guard is for the targets that call it)."""
    env = {"PATH": PATH_WITHOUT_PULUMI, "HOME": str(checkout), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["make", "--no-print-directory", "check"], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert os.access(checkout / "venv" / "bin" / "python", os.X_OK)
