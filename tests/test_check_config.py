"""`make check STACK=...`: offline validation that prints only the problems and exits 2 on error."""

import subprocess
import sys

import pytest

from tests.harness import ROOT


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
