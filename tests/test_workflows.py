"""Offline checks of the GitHub Actions delivery workflows in .github/workflows.

Three layers:
  * check-jsonschema against the vendored GitHub workflow schema (is it a valid workflow?);
  * zizmor, offline, regular persona (is it safe: injection, permissions, pinning, ...?);
  * structural assertions with PyYAML (does it do what the project's delivery design says?).

check-jsonschema and zizmor are taken from the same bin directory as the interpreter running
the tests (the project venv), so the result does not depend on whatever is on PATH.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent

EXPECTED = {"preview.yml", "review-stack.yml", "deploy.yml", "drift.yml"}
PULUMI_ACTION = "pulumi/actions"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
# The only write scope any job may hold: commenting on pull requests.
ALLOWED_WRITE_SCOPES = {"pull-requests"}
PULUMI_CLI_OP = re.compile(r"^\s*pulumi\s+(preview|up|refresh|destroy)\b", re.M)
COPY_PR_PROFILE = re.compile(r"cp\s+profiles/pr\.yaml\s+\"?Pulumi\.\$\{?STACK\}?\.yaml")


# --------------------------------------------------------------------------------------------
# Loading


class _WorkflowLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: plain `on:` stays the string "on", not True."""


_WorkflowLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_WorkflowLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    return yaml.load((WORKFLOWS / name).read_text(), Loader=_WorkflowLoader)


def all_workflows() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in workflow_files():
        yield path.name, load(path.name)


def all_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, wf in all_workflows():
        for job_id, job in (wf.get("jobs") or {}).items():
            yield name, job_id, job


def all_steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, job_id, job in all_jobs():
        for step in job.get("steps") or []:
            yield name, job_id, step


def action(step: dict[str, Any]) -> str:
    """`owner/repo` of a step's `uses:` (without the ref), or "" for run steps."""
    return str(step.get("uses", "")).split("@", 1)[0]


def pulumi_steps(job: dict[str, Any], command: str | None = None) -> list[dict[str, Any]]:
    """pulumi/actions steps of a job that run a command (optionally a given one)."""
    return [
        s
        for s in job.get("steps") or []
        if action(s) == PULUMI_ACTION
        and (s.get("with") or {}).get("command")
        and (command is None or s["with"]["command"] == command)
    ]


def is_true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def triggers(wf: dict[str, Any]) -> dict[str, Any]:
    on = wf["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return on


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / args[0]
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install it into the venv running the tests")
    return subprocess.run([str(exe), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


# --------------------------------------------------------------------------------------------
# Inventory


def test_expected_workflows_exist() -> None:
    names = {p.name for p in workflow_files()}
    missing = EXPECTED - names
    assert not missing, f"missing workflows: {sorted(missing)}"


# --------------------------------------------------------------------------------------------
# Linters


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_schema_valid(path: Path) -> None:
    proc = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(path))
    assert proc.returncode == 0, f"schema errors in {path.name}:\n{proc.stdout}\n{proc.stderr}"


def test_zizmor_no_findings() -> None:
    # --no-config / --no-ignores: a zizmor.yml or an inline `# zizmor: ignore` cannot hide a
    # finding from this test. Exit codes: 0 clean, 10-14 findings (by top severity), else error.
    base = ("zizmor", "--offline", "--no-config", "--no-ignores", "--no-progress")
    proc = run_tool(*base, "--format", "json", str(WORKFLOWS))
    if proc.returncode not in (0, 10, 11, 12, 13, 14):
        pytest.fail(f"zizmor failed (exit {proc.returncode}):\n{proc.stderr}")
    findings = json.loads(proc.stdout or "[]")
    if findings or proc.returncode != 0:
        plain = run_tool(*base, "--format", "plain", "--color", "never", str(WORKFLOWS))
        pytest.fail(
            f"zizmor reported {len(findings)} finding(s) (exit {proc.returncode}):\n{plain.stdout}\n{plain.stderr}"
        )


# --------------------------------------------------------------------------------------------
# Hardening rules that hold for every workflow


def test_every_action_is_pinned_to_a_full_sha() -> None:
    bad = []
    for path in workflow_files():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(#.*)?$", line)
            if not m or m.group(1).startswith("./"):
                continue
            ref, comment = m.group(1), m.group(2) or ""
            if not SHA_PIN.match(ref):
                bad.append(f"{path.name}:{lineno}: {ref} is not pinned to a 40-hex commit SHA")
            elif not re.match(r"#\s*v\d+(\.\d+)*", comment):
                bad.append(f"{path.name}:{lineno}: {ref} lacks a `# vX.Y.Z` version comment")
    # The line scan must not miss a `uses:` the YAML holds (e.g. in flow style), in steps or
    # as a job-level reusable workflow.
    refs = [(n, j, s["uses"]) for n, j, s in all_steps() if "uses" in s]
    refs += [(n, j, job["uses"]) for n, j, job in all_jobs() if "uses" in job]
    parsed = [
        f"{n}/{j}: {ref} is not pinned to a 40-hex commit SHA"
        for n, j, ref in refs
        if not str(ref).startswith("./") and not SHA_PIN.match(str(ref))
    ]
    assert not bad and not parsed, "\n".join(bad + parsed)


def _is_restrictive(perms: Any) -> bool:
    if perms in ({}, "read-all"):
        return True
    return isinstance(perms, dict) and all(v in ("read", "none") for v in perms.values())


def test_permissions_are_least_privilege() -> None:
    problems = []
    for name, wf in all_workflows():
        if "permissions" not in wf or not _is_restrictive(wf["permissions"]):
            problems.append(f"{name}: top-level permissions must be {{}} or read-only")
        for job_id, job in wf["jobs"].items():
            perms = job.get("permissions")
            if not isinstance(perms, dict):
                problems.append(f"{name}/{job_id}: job must declare a permissions map")
                continue
            for scope, level in perms.items():
                if level not in ("read", "none", "write"):
                    problems.append(f"{name}/{job_id}: {scope}: {level!r}")
                if level == "write" and scope not in ALLOWED_WRITE_SCOPES:
                    problems.append(f"{name}/{job_id}: {scope}: write is not allowed")
    assert not problems, "\n".join(problems)


def test_no_expressions_inside_run_scripts() -> None:
    offenders = [
        f"{n}/{j}: step {s.get('name', '?')!r}" for n, j, s in all_steps() if "run" in s and "${{" in str(s["run"])
    ]
    assert not offenders, "pass data to run: scripts via env:, not ${{ }}:\n" + "\n".join(offenders)


def test_checkout_does_not_persist_credentials() -> None:
    offenders = [
        f"{n}/{j}"
        for n, j, s in all_steps()
        if action(s) == "actions/checkout" and (s.get("with") or {}).get("persist-credentials") is not False
    ]
    assert not offenders, "actions/checkout without persist-credentials: false:\n" + "\n".join(offenders)


def _concurrency(wf: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
    conc = job.get("concurrency", wf.get("concurrency"))
    if isinstance(conc, str):
        return {"group": conc}
    return conc


def test_stack_runs_are_serialized_and_never_cancelled() -> None:
    """Jobs that change a stack, or check it for drift, hold `pulumi-stack-<stack>`.

    PR previews of dev are read-only and stay out of that group on purpose (see preview.yml).
    """
    expected = {
        ("deploy.yml", "dev"): "pulumi-stack-dev",
        ("deploy.yml", "prod"): "pulumi-stack-prod",
        ("drift.yml", "drift"): "pulumi-stack-${{ matrix.stack }}",
        ("review-stack.yml", "up"): "pulumi-stack-pr-${{ github.event.pull_request.number }}",
        ("review-stack.yml", "destroy"): "pulumi-stack-pr-${{ github.event.pull_request.number }}",
    }
    problems = []
    for (name, job_id), group in expected.items():
        wf = load(name)
        conc = _concurrency(wf, wf["jobs"][job_id])
        if not conc or conc.get("group") != group:
            problems.append(f"{name}/{job_id}: concurrency group must be {group!r}, got {conc}")
        elif is_true(conc.get("cancel-in-progress", False)):
            problems.append(f"{name}/{job_id}: must not cancel an in-progress stack operation")
    # Every other job still has some concurrency control.
    for name, job_id, job in all_jobs():
        if (name, job_id) not in expected and not _concurrency(load(name), job):
            problems.append(f"{name}/{job_id}: no concurrency group")
    assert not problems, "\n".join(problems)


def test_pulumi_jobs_share_the_common_setup() -> None:
    problems = []
    for name, job_id, job in all_jobs():
        steps = job.get("steps") or []
        runs_pulumi = [
            i
            for i, s in enumerate(steps)
            if (action(s) == PULUMI_ACTION and (s.get("with") or {}).get("command"))
            or PULUMI_CLI_OP.search(str(s.get("run", "")))
        ]
        if not runs_pulumi:
            continue
        first = runs_pulumi[0]
        where = f"{name}/{job_id}"

        def index(pred: Any, steps: list = steps) -> int | None:
            return next((i for i, s in enumerate(steps) if pred(s)), None)

        checkout = index(lambda s: action(s) == "actions/checkout")
        python = index(
            lambda s: action(s) == "actions/setup-python" and str((s.get("with") or {}).get("python-version")) == "3.11"
        )
        kube = index(
            lambda s: (
                "KUBECONFIG" in str(s.get("run", ""))
                and "secrets.KUBECONFIG_B64" in str((s.get("env") or {}).get("KUBECONFIG_B64"))
            )
        )
        deps = index(lambda s: re.search(r"^\s*pulumi install\b", str(s.get("run", "")), re.M))
        for label, idx in [
            ("checkout", checkout),
            ("setup-python 3.11", python),
            ("kubeconfig from secret via env", kube),
            ("pulumi install", deps),
        ]:
            if idx is None or idx > first:
                problems.append(f"{where}: {label} must run before the first pulumi command")
        env = job.get("env") or {}
        for var in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"):
            if f"secrets.{var}" not in str(env.get(var, "")):
                problems.append(f"{where}: env {var} must come from secrets.{var}")
        # Secrets go into files, never into the log.
        if kube is not None:
            script = str(steps[kube]["run"])
            if re.search(r"set -x|echo\s+\"?\$\{?KUBECONFIG_(B64|CONTENT)", script):
                problems.append(f"{where}: kubeconfig step must not echo the secret")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# The four delivery flows


def test_preview_comments_the_dev_diff_on_the_pr() -> None:
    wf = load("preview.yml")
    assert "pull_request" in triggers(wf)
    (job_id, job), *_ = wf["jobs"].items()
    steps = pulumi_steps(job, "preview")
    assert steps, "preview.yml must run pulumi/actions with command: preview"
    with_ = steps[0]["with"]
    assert with_.get("stack-name") == "dev"
    assert is_true(with_.get("comment-on-pr")), "the diff must be commented on the PR"
    assert job["permissions"].get("pull-requests") == "write"


def test_review_stack_lifecycle() -> None:
    wf = load("review-stack.yml")
    types = set((triggers(wf)["pull_request"] or {}).get("types", []))
    assert {"opened", "synchronize", "reopened", "closed"} <= types

    # The stack name comes from the PR number through an env var, never inline in scripts.
    env = wf.get("env") or {}
    assert env.get("STACK") == "pr-${{ github.event.pull_request.number }}"

    up_jobs = [j for j in wf["jobs"].values() if pulumi_steps(j, "up")]
    destroy_jobs = [j for j in wf["jobs"].values() if pulumi_steps(j, "destroy")]
    assert len(up_jobs) == 1 and len(destroy_jobs) == 1
    up_job, destroy_job = up_jobs[0], destroy_jobs[0]

    assert "!= 'closed'" in str(up_job.get("if", "")), "up must not run when the PR is closed"
    assert "== 'closed'" in str(destroy_job.get("if", "")), "destroy must run on close"

    for job in (up_job, destroy_job):
        steps = job["steps"]
        runs = [str(s.get("run", "")) for s in steps]
        copy = next((i for i, r in enumerate(runs) if COPY_PR_PROFILE.search(r)), None)
        op = steps.index(pulumi_steps(job)[0])
        assert copy is not None and copy < op, "write Pulumi.pr-<N>.yaml before pulumi runs"
        assert pulumi_steps(job)[0]["with"].get("stack-name") == "${{ env.STACK }}"

    up = pulumi_steps(up_job, "up")[0]
    assert is_true(up["with"].get("upsert")), "up must create the stack on the first run"
    destroy = pulumi_steps(destroy_job, "destroy")[0]
    assert is_true(destroy["with"].get("remove")), "destroy must also remove the stack"

    # trackingUrl goes from the up step's outputs to a PR comment, via env.
    assert up.get("id"), "the up step needs an id to read its outputs"
    after = up_job["steps"][up_job["steps"].index(up) + 1 :]
    comment = [
        s
        for s in after
        if f"steps.{up['id']}.outputs.trackingUrl" in str((s.get("env") or {}).values())
        and "gh " in str(s.get("run", ""))
    ]
    assert comment, "the trackingUrl output must be commented on the PR after up"
    assert up_job["permissions"].get("pull-requests") == "write"
    assert "pull-requests" not in destroy_job["permissions"], "destroy does not comment"


def test_deploy_dev_then_prod_behind_the_production_environment() -> None:
    wf = load("deploy.yml")
    push = triggers(wf)["push"]
    assert push and push.get("branches") == ["main"]
    jobs = wf["jobs"]

    def ups(stack: str) -> list[str]:
        return [
            job_id
            for job_id, job in jobs.items()
            if any(s["with"].get("stack-name") == stack for s in pulumi_steps(job, "up"))
        ]

    dev_ids, prod_ids = ups("dev"), ups("prod")
    assert len(dev_ids) == 1, "deploy.yml must `up` the dev stack in one job"
    assert len(prod_ids) == 1, "deploy.yml must `up` the prod stack in one job"
    dev, prod = jobs[dev_ids[0]], jobs[prod_ids[0]]
    needs = prod.get("needs")
    assert dev_ids[0] in ([needs] if isinstance(needs, str) else needs or []), "prod must need dev"
    environment = prod.get("environment")
    name = environment.get("name") if isinstance(environment, dict) else environment
    assert name == "production", "prod must wait for the production environment's approval"
    assert dev.get("environment") != "production"


def test_drift_checks_both_stacks_without_writing_state() -> None:
    wf = load("drift.yml")
    on = triggers(wf)
    assert "workflow_dispatch" in on
    assert on.get("schedule") and all("cron" in entry for entry in on["schedule"])
    (job_id, job), *_ = wf["jobs"].items()
    strategy = job.get("strategy") or {}
    assert strategy.get("matrix", {}).get("stack") == ["dev", "prod"]
    assert strategy.get("fail-fast") is False, "drift on one stack must not cancel the other"

    runs = [str(s.get("run", "")) for s in job["steps"]]

    def first(command: str, *flags: str) -> int | None:
        return next(
            (i for i, r in enumerate(runs) if re.search(rf"pulumi {command}\b", r) and all(f in r for f in flags)),
            None,
        )

    refresh = first("refresh", "--preview-only", "--expect-no-changes")
    preview = first("preview", "--expect-no-changes")
    assert refresh is not None, "drift needs `pulumi refresh --preview-only --expect-no-changes`"
    assert preview is not None, "drift needs `pulumi preview --expect-no-changes`"
    assert refresh < preview
    # Both checks name the matrix stack (through env), and nothing may write the state.
    assert all('--stack "$STACK"' in runs[i] for i in (refresh, preview))
    assert (job.get("env") or {}).get("STACK") == "${{ matrix.stack }}"
    writes = re.compile(r"pulumi (up|destroy)\b|pulumi refresh\b(?!.*--preview-only)", re.S)
    assert not any(writes.search(r) for r in runs), "drift must not write the state"
    assert not any((s.get("with") or {}).get("command") in ("up", "refresh", "destroy") for s in pulumi_steps(job)), (
        "pulumi/actions' refresh/up/destroy write the state"
    )
    # Nothing may mask a drift failure.
    assert not any(is_true(s.get("continue-on-error", False)) for s in job["steps"])
    assert not is_true(job.get("continue-on-error", False))


def test_every_preview_and_up_runs_the_policy_pack():
    checked = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                inputs = step.get("with") or {}
                if str(step.get("uses", "")).startswith("pulumi/actions@") and inputs.get("command") in (
                    "up",
                    "preview",
                ):
                    assert inputs.get("policyPacks") == "policy", f"{path.name}: {step.get('name')}"
                    checked += 1
    assert checked >= 4
