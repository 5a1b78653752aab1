"""The real Pulumi CLI as the engine layers run it: a checkout like a clone, a file backend, engine/bin."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tools.mock_engine import ROOT

ENGINE_BIN = ROOT / "engine" / "bin"
PASSPHRASE = "lifecycle-test-passphrase"
# Wall time of each named step, printed by the layers' reports.
STEP_TIMES: dict[str, float] = {}


def checkout(destination: Path) -> Path:
    """A copy of the repository as `git clone` would give it (tracked + untracked, not ignored)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # Pulumi.yaml's `virtualenv: venv`: the deploy venv `make` creates from requirements.txt.
    (destination / "venv").symlink_to(ROOT / "venv")
    return destination


class Pulumi:
    def __init__(self, home: Path, backend: Path):
        missing = [
            tool
            for tool in (
                "pulumi",
                "pulumi-language-python",
                "pulumi-resource-kubernetes",
                "pulumi-resource-tls",
                "pulumi-resource-random",
            )
            if not (ENGINE_BIN / tool).exists()
        ]
        assert not missing, f"engine/bin lacks {missing}: run `make engine` (engine/build.sh) first"
        self.env = {
            **os.environ,
            "PATH": f"{ENGINE_BIN}:{os.environ['PATH']}",
            "PULUMI_HOME": str(home),
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        }
        # Nothing of the caller's Pulumi login/passphrase or of an enclosing `make test` leaks in.
        for inherited in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE_FILE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
            self.env.pop(inherited, None)

    def __call__(
        self, cwd: Path, *args: str, step: str = "", ok: bool = True, timeout: int = 900
    ) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if step:
            STEP_TIMES[step] = time.monotonic() - started
        if ok:
            assert result.returncode == 0, (
                f"pulumi {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result
