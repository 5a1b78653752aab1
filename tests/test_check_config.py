"""`make check STACK=...`: offline validation that prints only the problems and exits 2 on error."""

import subprocess
import sys

import pytest

from tools.mock_engine import ROOT


def check(stack: str, stack_file: str | None = None) -> subprocess.CompletedProcess:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if stack_file is not None:
        path.write_text(stack_file)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tools.check_config", stack], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    finally:
        if stack_file is not None:
            path.unlink()


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-5"])
def test_the_shipped_stacks_are_valid(stack):
    result = check(stack)
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_problems_only_no_traceback_exit_code_2():
    result = check(
        "checktypo",
        "config:\n"
        "  mlflow-platform:mlflowReplica: 2\n"
        "  mlflow-platform:adminSourceRanges: [10.0.0.0/8]\n"
        "  mlflow-platform:bucket: Not_A_Bucket\n"
        "  postgresInstance: 2\n",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == "invalid configuration for stack checktypo (4 problem(s)); nothing was created:"
    assert any("mlflowReplica " in line and "did you mean mlflowReplicas?" in line for line in lines)
    assert any("adminSourceRanges was removed" in line for line in lines)
    assert any('bucket = "Not_A_Bucket"' in line and "Fix: " in line for line in lines)
    # A key without namespace is the project's, as the Pulumi CLI reads it: typos are caught there too.
    assert any(
        "mlflow-platform:postgresInstance " in line and "did you mean postgresInstances?" in line for line in lines
    )


def test_encrypted_values_count_as_secret_config_without_a_passphrase():
    result = check(
        "checksecret",
        "config:\n"
        "  mlflow-platform:objectStoreMode: external\n"
        "  mlflow-platform:s3Endpoint: https://s3.eu-west-1.amazonaws.com\n"
        "  mlflow-platform:s3AccessKey: AKIAEXAMPLE\n"
        "  mlflow-platform:s3SecretKey:\n    secure: v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBB\n",
    )
    assert result.returncode == 0, result.stderr
    plain = check(
        "checkplain",
        "config:\n"
        "  mlflow-platform:objectStoreMode: external\n"
        "  mlflow-platform:s3Endpoint: https://s3.eu-west-1.amazonaws.com\n"
        "  mlflow-platform:s3AccessKey: AKIAEXAMPLE\n"
        "  mlflow-platform:s3SecretKey: in-plain-text\n",
    )
    assert plain.returncode == 2 and "s3SecretKey is set in plain text" in plain.stderr


def test_a_missing_stack_file_is_an_error():
    result = check("no-such-stack")
    assert result.returncode == 2 and "no Pulumi.no-such-stack.yaml" in result.stderr


def test_stack_files_are_read_as_the_cli_reads_them_yaml_1_2():
    """`on`/`off`/`yes` are strings for the Pulumi CLI (YAML 1.2), so they are for the check too."""
    result = check(
        "checkonoff",
        "config:\n"
        "  mlflow-platform:backups: on\n"
        "  mlflow-platform:metrics: off\n"
        "  mlflow-platform:mlflowGc: on\n"
        "  mlflow-platform:mlflowJobRunner: off\n",
    )
    assert result.returncode == 0, result.stderr
    # One problem, the real one (memory), not "unknown value" next to it.
    job_runner = check("checkjobrunner", "config:\n  mlflow-platform:mlflowJobRunner: on\n")
    problems = [line for line in job_runner.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and 'mlflowJobRunner = "on"' in problems[0] and "mlflowMemoryLimit" in problems[0]


def test_a_repeated_key_is_refused_in_one_line_naming_file_line_and_column():
    result = check(
        "checkdup",
        "config:\n  mlflow-platform:mlflowReplicas: 1\n  mlflow-platform:mlflowReplicas: 2\n",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        'Pulumi.checkdup.yaml:3:3: mapping key "mlflow-platform:mlflowReplicas" already defined at line 2. '
        "Fix: correct the YAML of Pulumi.checkdup.yaml (the Pulumi CLI refuses it too)"
    ]


def test_a_yaml_syntax_error_is_one_line_naming_file_line_and_column():
    result = check("checksyntax", "config:\n  mlflow-platform:mlflowReplicas: [1\n  mlflow-platform:bucket: x\n")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Pulumi.checksyntax.yaml:3:25: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "program_gets"),
    [
        # (YAML scalar in a stack file, the text the program receives), by gopkg.in/yaml.v3's rules and
        # pulumi's object.MarshalString; tests/engine/test_config_yaml.py checks them against the real CLI.
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("No", "No"),
        ("y", "y"),
        ("true", "true"),
        ("False", "false"),
        ('"true"', "true"),
        ("~", ""),
        ("", ""),
        ("[a, ~]", '["a",null]'),
        ("2", "2"),
        ("010", "8"),
        ("0x1F", "31"),
        ("1_000", "1000"),
        ("1.50", "1.5"),
        ("1e3", "1000"),
        ("'010'", "010"),
        ("!!str 010", "010"),
        ("2026-05-04", "2026-05-04 00:00:00 +0000 UTC"),
        ("2026-05-04T08:42:00Z", "2026-05-04 08:42:00 +0000 UTC"),
        ("[a, 1, on]", '["a",1,"on"]'),
        ("{b: 1, a: x<y}", '{"a":"x\\u003cy","b":1}'),
    ],
)
def test_scalars_reach_the_program_as_the_cli_hands_them(text, program_gets):
    from tools import check_config, pulumi_yaml

    document = pulumi_yaml.loads(f"config:\n  mlflow-platform:k: {text}\n")
    assert check_config.cli_config(document) == ({"mlflow-platform:k": program_gets}, [])
