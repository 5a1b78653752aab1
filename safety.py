"""What an environment stack checks against what is deployed before it registers anything: where it
deploys, the cluster stack it needs, and the layout its stored data was created with."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml

import sizing
from config import PROJECT_NAME, ConfigError, StackConfig
from config.checks import version_tuple

# CloudNativePG features the environments use: managed roles, Database objects, CNPG-I plugins.
MIN_OPERATOR_VERSION = (1, 26, 0)
# How the engine answers a stack read that met the stack's checkpoint mid-write (read_stack_outputs);
# 5 retries back off 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s at most.
CHECKPOINT_MID_WRITE = "failed to load checkpoint"
CHECKPOINT_READ_ATTEMPTS = 6


# --------------------------------------------------------------------------- where the stack deploys
def deploy_target(kubeconfig: str, context: str, render_directory: str = "") -> dict[str, str]:
    """Where `up` will send objects (context and API server URL), read from the kubeconfig the
    provider will use; shown by `make check` and as the stack output deployTarget."""
    if render_directory:
        return {"renderYamlToDirectory": render_directory}
    source, document = _kubeconfig_document(kubeconfig)
    name = context or str(document.get("current-context") or "")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or [] if isinstance(c, dict)}
    clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or [] if isinstance(c, dict)}
    server = str(clusters.get(contexts.get(name, {}).get("cluster"), {}).get("server") or "(unknown)")
    return {"context": name or "(none)", "server": server, "kubeconfig": source}


def _kubeconfig_document(kubeconfig: str) -> tuple[str, dict]:
    """(where it came from, parsed kubeconfig) as the provider finds it: the config value (a path
    or the YAML itself), else $KUBECONFIG's first existing file, else ~/.kube/config."""
    if kubeconfig and "\n" in kubeconfig:
        source, text = "(inline in stack config)", kubeconfig
    else:
        candidates = [kubeconfig] if kubeconfig else [*os.environ.get("KUBECONFIG", "").split(os.pathsep)]
        candidates = [c for c in candidates if c] or [str(Path.home() / ".kube" / "config")]
        path = next((Path(c).expanduser() for c in candidates if Path(c).expanduser().is_file()), None)
        if path is None:
            return candidates[0], {}
        source, text = str(path), path.read_text(encoding="utf-8", errors="replace")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return source, {}
    return source, document if isinstance(document, dict) else {}


# --------------------------------------------------------------------------- the cluster stack's services
@dataclass(frozen=True)
class ClusterServices:
    """What an environment stack uses from the cluster stack (or, without one, from its own config)."""

    operator_namespace: str
    operator_version: str
    plugin_version: str


def read_stack_outputs(name: str) -> dict:
    """A stack's last deployed outputs, read by the engine as an invoke: nothing recorded in this
    stack's state, so `refresh` never sees it change (a StackReference would lag one deploy behind).
    A read that meets the checkpoint mid-write is retried: the DIY backend (file://) writes a blob's
    metadata sidecar in place (gocloud fileblob `setAttrs`: create, then encode), so reading a stack
    while an update saves it, this very update included, can fail with "failed to load checkpoint: EOF"
    (seen under the real engine, tests/engine); the next read finds it whole."""
    for attempt in range(CHECKPOINT_READ_ATTEMPTS):
        try:
            result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": name}).value or {}
            return dict(result.get("outputs") or {})
        except Exception as error:
            if CHECKPOINT_MID_WRITE not in str(error) or attempt == CHECKPOINT_READ_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def engine_message(error: Exception) -> str:
    """The engine's own words for a failed invoke, without the SDK's wrapping."""
    text = re.sub(r"^invoke of \S+ failed: (invocation of \S+ returned an error: )?", "", str(error).strip())
    return text.splitlines()[-1] if text else type(error).__name__


def last_deployment(c: StackConfig) -> dict:
    """This stack's outputs as its last deployment left them (empty before the first)."""
    try:
        return read_stack_outputs(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")
    except Exception as error:
        raise ConfigError(
            f"stack {c.stack}: its last deployment cannot be read ({engine_message(error)}); nothing was created.\n"
            f"  - Fix: run the command again; if it fails the same way, check the state backend with "
            f"`pulumi stack export --stack {c.stack}`"
        ) from None


def cluster_services(c: StackConfig) -> ClusterServices:
    """The cluster stack's outputs, checked before anything is registered: a missing cluster stack,
    an operator too old, or a missing backup plugin stops preview with the command that fixes it."""
    if not c.postgres_in_cluster:
        # An external PostgreSQL server needs neither the operator nor the backup plugin.
        return ClusterServices(c.cnpg_operator_namespace, "", "")
    needs_plugin = c.backup_store_needed
    if not c.cluster_stack:
        return ClusterServices(c.cnpg_operator_namespace, "", "(managed elsewhere)" if needs_plugin else "")
    name = (
        c.cluster_stack
        if "/" in c.cluster_stack
        else f"{pulumi.get_organization()}/{pulumi.get_project()}/{c.cluster_stack}"
    )
    key = f"{PROJECT_NAME}:clusterStack = {json.dumps(c.cluster_stack)}"
    create = f"`make up STACK={c.cluster_stack}`" if "/" not in c.cluster_stack else f"`pulumi up` of {name}"
    try:
        outputs = read_stack_outputs(name)
    except Exception as error:  # the engine's own message: unknown stack, no access...
        raise ConfigError(
            f"stack {c.stack}: the cluster stack {name} cannot be read ({engine_message(error)}); nothing was created.\n"
            f"  - {key}. Fix: create it first with {create}, or set clusterStack to the stack that owns "
            "the CloudNativePG operator (empty if someone else manages it)"
        ) from None
    problems = []
    namespace = str(outputs.get("cnpgOperatorNamespace") or "")
    version = str(outputs.get("cnpgOperatorVersion") or "")
    plugin = str(outputs.get("barmanPluginVersion") or "")
    if not namespace:
        problems.append(f"  - {key}: it has no CloudNativePG operator deployed. Fix: run {create}")
    elif version_tuple(version) < MIN_OPERATOR_VERSION:
        problems.append(
            f"  - {key}: its CloudNativePG operator is {version or 'of unknown version'}, this stack needs "
            f"{'.'.join(map(str, MIN_OPERATOR_VERSION))} or newer. Fix: raise cnpgChartVersion in "
            f"Pulumi.{c.cluster_stack}.yaml and run {create}"
        )
    if needs_plugin and not plugin:
        problems.append(
            f"  - {key}: it does not run the Barman Cloud plugin that backups need. Fix: set barmanPlugin: true "
            f"in Pulumi.{c.cluster_stack}.yaml and run {create}, or set backups: off here"
        )
    if problems:
        raise ConfigError(
            f"stack {c.stack} cannot use the cluster stack {name}; nothing was created:\n" + "\n".join(problems)
        )
    return ClusterServices(namespace, version, plugin)


# --------------------------------------------------------------------------- stored data across updates
# Config changes that Kubernetes cannot apply to existing data in place, and the manual path for each.
LAYOUT_MANUAL_PATHS = {
    "minioReplicas": "MinIO cannot turn its drives into another erasure layout in place: mirror the bucket "
    "into a store with the new layout (docs/operations.md: Changing storage, MinIO servers)",
    "minioStorageSize": "MinIO's volumeClaimTemplates are immutable: expand the PVCs by hand where the "
    "StorageClass allows it (docs/operations.md: Changing storage, MinIO volumes)",
    "minioStorageClass": "existing MinIO volumes keep their StorageClass: mirror the bucket into new volumes "
    "(docs/operations.md: Changing storage, MinIO volumes)",
    "postgresStorageSize": "PostgreSQL volumes only grow (CloudNativePG expands them in place): restore into a "
    "smaller cluster instead (docs/operations.md: Changing storage, PostgreSQL)",
    "postgresStorageClass": "existing PostgreSQL volumes keep their StorageClass: CloudNativePG moves instances "
    "one by one if you replace them (docs/operations.md: Changing storage, PostgreSQL)",
    "postgresMode": "the database would move without its data: dump and restore it first "
    "(docs/operations.md: Changing storage, moving the database)",
    "objectStoreMode": "artifacts would stay in the old store: mirror them first (docs/operations.md: Changing storage, "
    "moving artifacts)",
    "bucket": "recorded runs point at the old bucket: mirror it first (docs/operations.md: Changing storage, moving artifacts)",
}


def storage_layout(c: StackConfig) -> dict[str, Any]:
    """What the stored data was created with; exported as the stack output storageLayout."""
    layout: dict[str, Any] = {
        "postgresMode": c.postgres_mode,
        "objectStoreMode": c.object_store_mode,
        "bucket": c.bucket,
    }
    if c.postgres_in_cluster:
        layout.update(postgresStorageSize=c.postgres_storage_size, postgresStorageClass=c.postgres_storage_class)
    if c.object_store_in_cluster:
        layout.update(
            minioReplicas=c.minio_replicas,
            minioStorageSize=c.minio_storage_size,
            minioStorageClass=c.minio_storage_class,
        )
    return layout


def storage_layout_changes(previous: dict | None, current: dict) -> list[str]:
    """One line per unsafe change from the last deployed layout (none on a first deployment)."""
    problems = []
    for key, value in current.items():
        if not previous or key not in previous or previous[key] == value:
            continue
        old = int(previous[key]) if isinstance(previous[key], float) else previous[key]  # the engine sends floats
        if old == value:
            continue
        if key == "postgresStorageSize" and sizing.quantity(str(value)) > sizing.quantity(str(old)):
            continue  # growing is applied in place by CloudNativePG
        problems.append(
            f"  - {PROJECT_NAME}:{key} changed from {json.dumps(old)} to {json.dumps(value)}: "
            f"{LAYOUT_MANUAL_PATHS[key]}. Fix: restore {json.dumps(old)}, or follow that path and "
            "run one `pulumi up` with allowStorageLayoutChange: true"
        )
    return problems


def checked_storage_layout(c: StackConfig, previous: pulumi.Input[dict | None]) -> pulumi.Output[dict]:
    """The current layout, once it is safe to apply against the last deployed one; else a ConfigError."""
    current = storage_layout(c)

    def check(last: dict | None) -> dict:
        problems = [] if c.ephemeral or c.allow_storage_layout_change else storage_layout_changes(last, current)
        if problems:
            raise ConfigError(
                f"stack {c.stack} would lose or strand stored data ({len(problems)} problem(s)); "
                "nothing was changed:\n" + "\n".join(problems)
            )
        return current

    return pulumi.Output.from_input(previous).apply(check)
