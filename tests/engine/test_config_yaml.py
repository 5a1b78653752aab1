"""`make check` reads stack files as the real Pulumi CLI does: checked both ways against engine/bin/pulumi.

1. The CLI writes: values set with `pulumi config set` (plain, `--path`, `--secret`) land in the stack
   file; `make check`'s reading of that file gives what `pulumi config --json` says the program gets.
2. The CLI reads: a hand-written stack file of scalars that YAML 1.1 and 1.2 readers disagree on
   (`on`, `yes`, `010`, dates...) gives, read by `make check`, what `pulumi config --json` reports.
3. A repeated key: refused by both, naming the same line.

Needs only the CLI (no language host, no plugins): config commands never run the program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.mock_engine import ROOT
from tools import check_config, pulumi_yaml

pytestmark = pytest.mark.engine

PULUMI = ROOT / "engine" / "bin" / "pulumi"
PROJECT = "mlflow-platform"
# (value as written in the stack file) -> what both sides must agree the program receives.
HAND_WRITTEN = [
    "on",
    "off",
    "yes",
    "No",
    "y",
    "true",
    "False",
    '"true"',
    "~",
    "",
    "2",
    "010",
    "08",
    "0x1F",
    "0b101",
    "+12",
    "1_000",
    "1.50",
    ".5",
    "1e3",
    "1e-7",
    "'010'",
    "!!str 010",
    "2026-05-04",
    "2026-05-04T08:42:00Z",
    "2026-05-04T10:42:00+02:00",
    "2026-05-04 08:42:00",
    "[a, 1, on, ~]",
    "{b: 1, a: x<y, c: [yes]}",
]
# `pulumi config set` arguments, one stack-file key each.
SET_BY_CLI = [
    ("backups", ["on"]),
    ("metrics", ["off"]),
    ("mlflowJobRunner", ["yes"]),
    ("mlflowReplicas", ["2"]),
    ("octal", ["010"]),
    ("date", ["2026-05-04"]),
    ("flag", ["--type", "bool", "true"]),
    ("count", ["--type", "int", "3"]),
    ("labels.release", ["--path", "prometheus"]),
    ("labels.on", ["--path", "on"]),
    ("list[0]", ["--path", "on"]),
    ("list[1]", ["--path", "2"]),
    ("s3SecretKey", ["--secret", "in-the-clear?"]),
]


class Cli:
    def __init__(self, tmp_path: Path):
        assert PULUMI.exists(), f"{PULUMI} is missing: run `make engine` (engine/build.sh) first"
        self.project = tmp_path / "project"
        self.project.mkdir()
        shutil.copy(ROOT / "Pulumi.yaml", self.project / "Pulumi.yaml")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
            "PULUMI_HOME": str(tmp_path / "home"),
            "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
            "PULUMI_CONFIG_PASSPHRASE": "config-yaml-test",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
        (tmp_path / "backend").mkdir()

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(PULUMI), *args, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, f"pulumi {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def program_config(self, stack: str) -> dict[str, dict]:
        """What the program would get: `pulumi config --json` (declared defaults included)."""
        return json.loads(self("config", "--json", "--show-secrets", "--stack", stack).stdout)

    def stack_file(self, stack: str) -> Path:
        return self.project / f"Pulumi.{stack}.yaml"


def checked(path: Path) -> dict[str, str]:
    """`make check`'s reading of a stack file: the values it validates, as the program would get them."""
    document = pulumi_yaml.load(path)
    values, secret_keys = check_config.cli_config(document)
    return {key: value for key, value in values.items() if key not in secret_keys}


def test_values_set_through_the_cli_read_back_the_same(tmp_path):
    cli = Cli(tmp_path)
    cli("stack", "init", "written")
    for key, args in SET_BY_CLI:
        *options, value = args
        cli("config", "set", "--stack", "written", *options, key, value)
    reported = cli.program_config("written")
    ours = checked(cli.stack_file("written"))
    assert set(ours) == {f"{PROJECT}:{key.split('.')[0].split('[')[0]}" for key, _ in SET_BY_CLI} - {
        f"{PROJECT}:s3SecretKey"
    }
    for key, value in ours.items():
        assert reported[key]["value"] == value, key
    # The ones YAML 1.1 readers turn into booleans or other numbers stay what was typed.
    assert ours[f"{PROJECT}:backups"] == "on" and ours[f"{PROJECT}:mlflowJobRunner"] == "yes"
    assert ours[f"{PROJECT}:octal"] == "010" and ours[f"{PROJECT}:date"] == "2026-05-04"
    assert json.loads(ours[f"{PROJECT}:labels"]) == {"release": "prometheus", "on": "on"}
    assert json.loads(ours[f"{PROJECT}:list"]) == ["on", 2]
    assert reported[f"{PROJECT}:s3SecretKey"] == {"value": "in-the-clear?", "secret": True}
    assert check_config.cli_config(pulumi_yaml.load(cli.stack_file("written")))[1] == [f"{PROJECT}:s3SecretKey"]


def test_a_hand_written_stack_file_reads_as_the_cli_reads_it(tmp_path):
    cli = Cli(tmp_path)
    cli("stack", "init", "hand")
    salt = cli.stack_file("hand").read_text()  # encryptionsalt, written by `stack init`
    lines = [f"  {PROJECT}:k{i:02d}: {text}".rstrip() for i, text in enumerate(HAND_WRITTEN)]
    cli.stack_file("hand").write_text(salt + "config:\n" + "\n".join(lines) + "\n  backups: on\n")
    reported = cli.program_config("hand")
    ours = checked(cli.stack_file("hand"))
    assert len(ours) == len(HAND_WRITTEN) + 1
    differences = {
        key: (value, reported[key]["value"]) for key, value in ours.items() if reported[key]["value"] != value
    }
    assert not differences, differences
    # A key without namespace is the project's, for both.
    assert ours[f"{PROJECT}:backups"] == reported[f"{PROJECT}:backups"]["value"] == "on"


def test_a_repeated_key_is_refused_by_both_at_the_same_line(tmp_path):
    cli = Cli(tmp_path)
    cli("stack", "init", "dup")
    salt = cli.stack_file("dup").read_text()
    cli.stack_file("dup").write_text(salt + f"config:\n  {PROJECT}:mlflowReplicas: 1\n  {PROJECT}:mlflowReplicas: 2\n")
    refused = cli("config", "--json", "--stack", "dup", ok=False)
    assert refused.returncode != 0
    line = salt.count("\n") + 3
    assert f'line {line}: mapping key "{PROJECT}:mlflowReplicas" already defined at line {line - 1}' in refused.stderr
    with pytest.raises(pulumi_yaml.YamlError, match=f":{line}:3: mapping key .* already defined at line {line - 1}"):
        pulumi_yaml.load(cli.stack_file("dup"))
