"""README stays true: its configuration reference matches Pulumi.yaml and CI runs its test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_pulumi_yaml():
    result = subprocess.run(
        [sys.executable, "-m", "tools.config_reference", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_block = next(block for block in commands if "make test" in block)
    assert test_block.strip() == "make test"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_deploy_commands_use_the_local_backend_and_make_up():
    readme = (ROOT / "README.md").read_text()
    assert "pulumi login --local" in readme and "\nmake up" in readme
    makefile = (ROOT / "Makefile").read_text()
    for target in ("up", "preview", "destroy", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "--policy-pack policy" in makefile


def test_the_policy_pack_runs_in_the_deploy_venv():
    """`make up` and CI's `pulumi install` create the venv from requirements.txt; the pack uses it."""
    import yaml

    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert (ROOT / "policy" / pack["runtime"]["options"]["virtualenv"]).resolve() == (ROOT / "venv").resolve()
    runtime = (ROOT / "requirements.txt").read_text()
    for line in (ROOT / "policy" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line in runtime, f"{line} is needed at deploy time but missing from requirements.txt"


def test_readme_names_no_removed_key():
    """Keys removed from Pulumi.yaml (settings.REMOVED_KEYS) must not be documented as settings."""
    import settings

    readme = (ROOT / "README.md").read_text()
    mentioned = sorted(key for key in settings.REMOVED_KEYS if key in readme)
    assert not mentioned, f"README still mentions removed keys: {mentioned}"
    assert ".pulumi-ca" not in readme


def test_readme_has_the_manual_paths_the_storage_errors_point_to():
    """Each storage-layout refusal says `README: Changing storage, <entry>`: that entry must exist."""
    import settings

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Changing storage", 1)[1].split("\n## ", 1)[0]
    entries = {m.lower() for m in re.findall(r"^- \*\*([^*]+)\*\*", section, re.M)}
    pointers = {
        m.lower()
        for text in settings._LAYOUT_MANUAL_PATHS.values()
        for m in re.findall(r"README: Changing storage, ([^)]+)\)", text)
    }
    assert pointers, "no README pointers found in settings._LAYOUT_MANUAL_PATHS"
    missing = sorted(p for p in pointers if p not in entries)
    assert not missing, f"README's Changing storage has no entry for {missing} (entries: {sorted(entries)})"
