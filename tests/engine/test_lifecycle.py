"""The real Pulumi engine over a stack's whole life, with real provider plugins, in GitOps (render) mode.

The CLI, the Python language host and the kubernetes/tls/random plugins are built from their Go
modules by engine/build.sh (make engine) into engine/bin. Each stack runs from a checkout copied
like a clone, on a local file backend with a passphrase, with renderYamlToDirectory pointing at a
folder outside both checkouts: preview, up, no-change preview, refresh, an update, the policy pack
for real, then destroy and stack rm from a second checkout that never ran the program.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.engine_cli import STEP_TIMES, Pulumi, checkout
from tools.mock_engine import evaluate_stack

pytestmark = pytest.mark.engine

# A render-mode (GitOps) stack has no cluster stack to read: its operator is managed with the manifests.
RENDER_CONFIG = {"clusterStack": ""}


def _one(objects: list[dict], kind: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


# stack -> (key, value, the preview's steps besides `same`, how the rendered objects show it)
CHANGES = {
    # A second replica also raises PostgreSQL's max_connections (the connection budget).
    "dev": ("mlflowReplicas", "2", [("create", "mlflow-pdb"), ("update", "mlflow-deployment"), ("update", "postgres-cluster")],
            lambda objects: _one(objects, "Deployment")["spec"]["replicas"] == 2),
    # PR stacks stay at one replica (budget): an ingress class instead.
    "pr-7": ("ingressClassName", "nginx", [("update", "mlflow-ingress")],
             lambda objects: _one(objects, "Ingress")["spec"]["ingressClassName"] == "nginx"),
}


def rendered_objects(directory: Path) -> list[dict]:
    objects = []
    for path in sorted(directory.rglob("*.yaml")):
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


_GENERATED_SUFFIX = re.compile(r"-[0-9a-z]{8}$")


def identity(obj: dict) -> tuple[str, str, str]:
    """Kind, namespace and name, with Pulumi's random autoname suffix removed."""
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), _GENERATED_SUFFIX.sub("", meta["name"])


def comparable(obj: dict) -> dict:
    """An object without generated values: autoname suffixes, generated secrets and certificates."""
    text = json.dumps(obj, sort_keys=True)
    text = re.sub(r'"([a-z0-9.-]+?)-[0-9a-z]{8}"', r'"\1"', text)
    obj = json.loads(text)
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")}
    obj["metadata"].get("labels", {}).pop("app.kubernetes.io/managed-by", None)
    if obj["kind"] in ("Secret", "ConfigMap"):
        data = obj.get("stringData") or obj.get("data") or {}
        obj = {"kind": obj["kind"], "metadata": obj["metadata"], "type": obj.get("type"), "keys": sorted(data)}
    if obj["kind"] == "Service" and obj["spec"].get("clusterIP") != "None":
        obj["spec"].pop("clusterIP", None)  # assigned by the API server (the mocks play that part)
    if obj["kind"] == "Namespace":
        obj["metadata"].get("labels", {}).pop("mlflow-platform/cnpg-operator-namespace", None)
    return obj


def secret_strings(objects: list[dict]) -> set[str]:
    """Every generated credential the rendered Secrets hold in plain text (render mode writes them so):
    private keys whole (as the state would escape them), and the random parts of passwords and URIs."""
    found = set()
    for obj in objects:
        if obj["kind"] != "Secret":
            continue
        values = dict(obj.get("stringData") or {})
        values.update({k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
        for key, value in values.items():
            if "PRIVATE KEY" in value:
                found.add(json.dumps(value)[1:-1])
            elif key not in ("ca.crt", "tls.crt", "username", "access-key"):
                # Generated passwords mix digits, lower and upper case; names and identifiers do not.
                found.update(piece for piece in re.split(r"[^A-Za-z0-9]", value)
                             if len(piece) >= 16 and re.search(r"[0-9]", piece) and re.search(r"[a-z]", piece)
                             and re.search(r"[A-Z]", piece))
    return found


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    base = tmp_path_factory.mktemp("engine")
    (base / "state").mkdir()
    return Pulumi(base / "home", base / "state"), base


@pytest.mark.parametrize("stack", ["dev", "pr-7"])
def test_stack_lifecycle_under_the_real_engine(engine, stack):
    pulumi, base = engine
    work = checkout(base / f"{stack}-a")
    rendered = base / f"rendered-{stack}"
    pulumi(work, "stack", "init", stack)
    if stack.startswith("pr-"):
        shutil.copy(work / "profiles" / "pr.yaml", work / f"Pulumi.{stack}.yaml")
    for key, value in {**RENDER_CONFIG, "renderYamlToDirectory": str(rendered)}.items():
        pulumi(work, "config", "set", "--stack", stack, f"mlflow-platform:{key}", value)

    # 1. The first preview of a new stack: every computed value unknown.
    pulumi(work, "preview", "--stack", stack, step=f"{stack}: first preview")

    # 2. up renders exactly what tools/mock_engine.py registers (kinds, names, specs; generated values aside).
    pulumi(work, "up", "--yes", "--stack", stack, step=f"{stack}: up")
    objects = rendered_objects(rendered)
    mocked = evaluate_stack(stack, config={**RENDER_CONFIG, "renderYamlToDirectory": str(rendered)}).k8s_objects
    assert sorted(map(identity, objects)) == sorted(map(identity, mocked))
    by_identity = {identity(o): comparable(o) for o in mocked}
    differing = [identity(o) for o in objects if comparable(o) != by_identity[identity(o)]]
    assert not differing, f"rendered objects that differ from the mocks: {differing}"

    # 3. Nothing to do on an unchanged stack, before and after a refresh. In render mode there is no
    # cluster to read Kubernetes objects back from: the provider refuses to refresh them (docs/gitops.md says
    # so), so the refresh covers every other resource, and a full refresh fails with that reason.
    pulumi(work, "preview", "--expect-no-changes", "--stack", stack, step=f"{stack}: preview, no changes")
    state = json.loads(pulumi(work, "stack", "export", "--stack", stack).stdout)["deployment"]["resources"]
    targets = [arg for r in state if r["type"].startswith(("random:", "tls:")) for arg in ("--target", r["urn"])]
    assert targets
    pulumi(work, "refresh", "--yes", "--stack", stack, *targets, step=f"{stack}: refresh (non-Kubernetes)")
    pulumi(work, "preview", "--expect-no-changes", "--stack", stack, step=f"{stack}: preview after refresh")
    full = pulumi(work, "refresh", "--yes", "--stack", stack, ok=False)
    assert full.returncode != 0 and "unreachable cluster" in full.stdout, full.stdout[-2000:]
    pulumi(work, "preview", "--expect-no-changes", "--stack", stack)

    # 4. The state holds no generated credential in plain text.
    exported = pulumi(work, "stack", "export", "--stack", stack).stdout
    leaked = [s for s in secret_strings(objects) if s in exported]
    assert secret_strings(objects) and not leaked, f"plain-text secrets in the state: {len(leaked)}"

    # 5. A config change previews as exactly the expected steps, and up applies it.
    key, value, expected, applied = CHANGES[stack]
    pulumi(work, "config", "set", "--stack", stack, f"mlflow-platform:{key}", value)
    preview = json.loads(pulumi(work, "preview", "--json", "--stack", stack, step=f"{stack}: preview update").stdout)
    changes = sorted((step["op"], step["urn"].rsplit("::", 1)[1]) for step in preview["steps"]
                     if step["op"] not in ("same", "read"))
    assert changes == expected, changes
    pulumi(work, "up", "--yes", "--stack", stack, step=f"{stack}: up update")
    assert applied(rendered_objects(rendered))
    pulumi(work, "preview", "--expect-no-changes", "--stack", stack)

    # 5b. The last deployment's storage layout, read back through the engine, refuses a change that
    # would strand data (PR stacks are disposable: they accept it).
    pulumi(work, "config", "set", "--stack", stack, "mlflow-platform:minioStorageSize", "3Gi")
    layout = pulumi(work, "preview", "--stack", stack, ok=stack.startswith("pr-"))
    if not stack.startswith("pr-"):
        assert "mlflow-platform:minioStorageSize changed from \"2Gi\" to \"3Gi\"" in layout.stdout, layout.stdout[-3000:]
    pulumi(work, "config", "rm", "--stack", stack, "mlflow-platform:minioStorageSize")

    # 6. The policy pack runs for real; a planted violation fails it.
    pulumi(work, "preview", "--policy-pack", "policy", "--stack", stack, step=f"{stack}: policy pack")
    planted = work / "components" / "minio_store.py"
    source = planted.read_text()
    assert '{"name": "MINIO_BROWSER", "value": "off"}' in source
    planted.write_text(source.replace('{"name": "MINIO_BROWSER", "value": "off"}',
                                      '{"name": "MINIO_ROOT_PASSWORD", "value": "planted-plaintext"}'))
    violation = pulumi(work, "preview", "--policy-pack", "policy", "--stack", stack, ok=False)
    output = violation.stdout + violation.stderr
    assert violation.returncode != 0 and "mandatory" in output.lower(), violation.stdout[-3000:]
    assert "no-plaintext-secrets-in-env" in output and "MINIO_ROOT_PASSWORD" in output, violation.stdout[-3000:]

    # 7. destroy and stack rm from another checkout, which never ran the program.
    other = checkout(base / f"{stack}-b")
    if stack.startswith("pr-"):
        shutil.copy(other / "profiles" / "pr.yaml", other / f"Pulumi.{stack}.yaml")  # as CI writes it
    pulumi(other, "destroy", "--yes", "--stack", stack, step=f"{stack}: destroy from another checkout")
    pulumi(other, "stack", "rm", "--yes", stack, step=f"{stack}: stack rm")
    assert not rendered_objects(rendered), "render folder not empty after destroy"


def test_report_step_times():
    """Prints each lifecycle step's wall time (pytest -s shows it); fails if the lifecycle did not run."""
    assert STEP_TIMES, "the lifecycle test did not run"
    for step, seconds in STEP_TIMES.items():
        print(f"engine step {step}: {seconds:.1f} s")


def test_the_readme_make_targets_run_under_the_real_engine(engine):
    """`make stack/check/preview/up/destroy` as README gives them: no passphrase set, so make generates one
    (mode 600) and later direct `pulumi` commands use it through PULUMI_CONFIG_PASSPHRASE_FILE."""
    pulumi, base = engine
    work = checkout(base / "make")
    rendered = base / "rendered-make"
    stack = "pr-8"
    user_env = {key: value for key, value in pulumi.env.items() if key != "PULUMI_CONFIG_PASSPHRASE"}

    def make(target: str) -> subprocess.CompletedProcess:
        result = subprocess.run(["make", target, f"STACK={stack}"], cwd=work, env=user_env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"make {target} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    make("stack")
    passphrase = work / ".pulumi-passphrase"
    assert passphrase.stat().st_mode & 0o777 == 0o600 and len(passphrase.read_text().strip()) >= 32
    exported = {**user_env, "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase)}  # README: export it once
    for key, value in {**RENDER_CONFIG, "renderYamlToDirectory": str(rendered)}.items():
        subprocess.run(["pulumi", "config", "set", "--stack", stack, f"mlflow-platform:{key}", value, "--non-interactive"],
                       cwd=work, env=exported, check=True, capture_output=True)
    assert "configuration is valid" in make("check").stdout
    assert "mlflow-platform-baseline" in make("preview").stdout  # the policy pack ran
    make("up")
    assert any(o["kind"] == "Deployment" for o in rendered_objects(rendered))
    make("destroy")
    assert not rendered_objects(rendered)


def test_make_names_a_missing_passphrase_file(engine):
    pulumi, base = engine
    work = checkout(base / "missing-passphrase")
    env = {key: value for key, value in pulumi.env.items() if key != "PULUMI_CONFIG_PASSPHRASE"}
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(work / "nowhere" / "passphrase")
    result = subprocess.run(["make", "stack", "STACK=pr-9"], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert f"PULUMI_CONFIG_PASSPHRASE_FILE={work / 'nowhere' / 'passphrase'} does not exist" in result.stderr


def test_a_misspelt_key_with_or_without_namespace_fails_preview_and_make_check(engine):
    """The CLI reads a key without namespace as the project's; both forms of a typo stop preview."""
    pulumi, base = engine
    work = checkout(base / "typo")
    pulumi(work, "stack", "init", "typo")
    (work / "Pulumi.typo.yaml").write_text(
        "config:\n  mlflow-platform:clusterStack: ''\n  mlflowReplica: 2\n  mlflow-platform:postgresInstance: 2\n")
    preview = pulumi(work, "preview", "--stack", "typo", ok=False)
    check = subprocess.run(["make", "check", "STACK=typo"], cwd=work, env=pulumi.env, capture_output=True, text=True)
    assert preview.returncode != 0 and check.returncode == 2
    for output in (preview.stdout, check.stderr):
        assert "mlflow-platform:mlflowReplica is not a setting of this project. Fix: did you mean mlflowReplicas?" in output
        assert "mlflow-platform:postgresInstance is not a setting of this project. Fix: did you mean postgresInstances?" in output
    assert "Traceback" not in preview.stdout + preview.stderr
