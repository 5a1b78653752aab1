"""What CloudNativePG 1.30 (operator + instance manager) and its Barman Cloud plugin 0.14 do to the API.

The live layer runs a real control plane with kwok in place of kubelets: the operator's chart and the
plugin are installed, their Deployments turn Ready, but none of their logic runs. This process plays
that logic against the API, for the objects our program creates, and writes only what the real
components write (learned from their v1.30.0 / v0.14.0 sources, file named at each step):

Operator (internal/controller, pkg/specs, pkg/reconciler/persistentvolumeclaim):
  * Cluster: the `-rw`/`-ro`/`-r` Services, the `-primary` (and replicas') PodDisruptionBudget, the
    ServiceAccount, the app Secret when initdb generates one; the instance PVCs (`<name>-N`, PG_DATA,
    plus `-wal`), the bootstrap Job (`<name>-1-initdb` | `-full-recovery` | `-pgbasebackup`), then
    the instance Pods (`<name>-N`, reattaching ready PVCs: a deleted Pod comes back), replicas through
    `<name>-N-join` Jobs one at a time, scale-down, failover to a replica when the primary stops
    reporting; role labels on Pods/PVCs; status (phase, Ready condition, instances...).
    User-provided server certificates are checked first (missing/invalid: "Unable to create required
    cluster objects"); a required plugin that is not registered/reachable stops the reconciliation.
  * A deleted Cluster: its Databases get the failed status and lose `cnpg.io/deleteDatabase`.
  * ScheduledBackup -> Backup objects (immediate and by schedule); Backup (method plugin) -> started
    on the elected instance.
  * Plugin Services (operator namespace): the `cnpg.io/cleanupPlugin` finalizer, removed on deletion.
Instance manager (internal/management/controller), only while its Pod runs:
  * the first primary records itself as currentPrimary; a failover target promotes itself;
  * managed roles -> status.managedRolesStatus; Databases -> finalizer, status.applied; a deleted
    Database loses its finalizer only through a running primary;
  * WAL archiving condition; plugin backups -> `completed`.
Barman Cloud plugin: the instance sidecar injected into Pods / recovery Jobs, the ObjectStore's
status.serverRecoveryWindow after backups, the Cluster waits for its ObjectStores.
Ingress controller (only with --ingress-status): status.loadBalancer.ingress[0].ip = 127.0.0.1.

PostgreSQL itself is modelled in memory (roles, databases per Cluster), rebuilt from the API after a
restart. Level-triggered: every --interval seconds everything is listed and the difference acted on,
one log line per write; 404/409 are retried on the next pass.

    python -m tests.live.standin_operator --kubeconfig PATH [--log FILE] [--ingress-status]
        [--operator-namespace cnpg-system]   # where plugin Services are looked for
        [--operator-deployment NS/NAME]      # the operator acts only while this Deployment is ready
        [--watch-namespace NS,NS]            # WATCH_NAMESPACE: only these namespaces (default all)
    run(kubeconfig, stop_event, ...)          # in a thread
    with running(kubeconfig, log_path, ...): ...   # as a subprocess, ready on entry, stopped on exit
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import functools
import hashlib
import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]

Obj = dict[str, Any]

CNPG = "postgresql.cnpg.io/v1"
BARMAN = "barmancloud.cnpg.io/v1"
OPERATOR_IMAGE = "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0"  # pkg/versions
DEFAULT_IMAGE = "ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie"
SIDECAR_IMAGE = "ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v0.14.0"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"

DATABASE_FINALIZER = "cnpg.io/deleteDatabase"  # pkg/utils/finalizers.go
PLUGIN_FINALIZER = "cnpg.io/cleanupPlugin"
CLUSTER_DELETED = "cluster resource has been deleted, skipping reconciliation"  # finalizers_delete.go

# api/v1/cluster_types.go
PHASE_HEALTHY = "Cluster in healthy state"
PHASE_FIRST_PRIMARY = "Setting up primary"
PHASE_CREATING_REPLICA = "Creating a new replica"
PHASE_FAILOVER = "Failing over"
PHASE_UNRECOVERABLE = "Cluster is unrecoverable and needs manual intervention"
PHASE_WAITING_ACTIVE = "Waiting for the instances to become active"
PHASE_CANNOT_CREATE = "Unable to create required cluster objects"
PHASE_UNKNOWN_PLUGIN = "Cluster cannot proceed to reconciliation due to an unknown plugin being required"
PHASE_FAILURE_PLUGIN = "Cluster cannot proceed to reconciliation due to an error while interacting with plugins"

# pkg/utils/labels_annotations.go
L_CLUSTER = "cnpg.io/cluster"
L_INSTANCE = "cnpg.io/instanceName"
L_POD_ROLE = "cnpg.io/podRole"
L_INSTANCE_ROLE = "cnpg.io/instanceRole"
L_ROLE = "role"
L_PVC_ROLE = "cnpg.io/pvcRole"
L_JOB_ROLE = "cnpg.io/jobRole"
A_SERIAL = "cnpg.io/nodeSerial"
A_PVC_STATUS = "cnpg.io/pvcStatus"
PLUGIN_NAME_LABEL = "cnpg.io/pluginName"
PLUGIN_ANNOTATIONS = ("cnpg.io/pluginClientSecret", "cnpg.io/pluginServerSecret", "cnpg.io/pluginPort")

PGDATA = "/var/lib/postgresql/data/pgdata"  # pkg/specs/pods.go
STATUS_PORT = 8000  # pkg/management/url
RESERVED_ROLES = ("postgres", "streaming_replica")  # pkg/postgres/roles.go


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


# --- the API --------------------------------------------------------------------------------------


def _path(gv: str, plural: str, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
    base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    return path + (f"/{sub}" if sub else "")


class Kube:
    """JSON over the kubernetes client's transport (its kubeconfig loading, TLS and auth)."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import config as kube_config

        self._client = kube_config.new_client_from_config(config_file=str(kubeconfig))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        verb, url, headers, body, _ = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) if query else None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(verb, url, header_params=headers, body=body, _request_timeout=30)
        data = response.read()
        if response.status >= 400:
            message = str(response.reason)
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(data).get("message") or message
            raise ApiError(int(response.status), message)
        return json.loads(data) if data else {}

    def list(self, gv: str, plural: str, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        try:
            result = self.request(
                "GET", _path(gv, plural, namespace), query={"labelSelector": selector} if selector else None
            )
        except ApiError as e:
            if e.status == 404:  # the CRD is not installed (yet)
                return []
            raise
        items: list[Obj] = result.get("items") or []
        kind = str(result.get("kind", "")).removesuffix("List")
        for item in items:  # a list's items carry no type of their own
            item.setdefault("apiVersion", gv)
            item.setdefault("kind", kind)
        return items

    def get(self, gv: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.request("GET", _path(gv, plural, namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise


# --- small helpers ---------------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t: datetime) -> str:  # pgTime.GetCurrentTimestamp (metav1.RFC3339Micro)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def md(obj: Obj) -> Obj:
    result: Obj = obj.setdefault("metadata", {})
    return result


def name_of(obj: Obj) -> str:
    return str(md(obj).get("name", ""))


def ns_of(obj: Obj) -> str:
    return str(md(obj).get("namespace", ""))


def labels_of(obj: Obj) -> dict[str, str]:
    return md(obj).get("labels") or {}


def deleting(obj: Obj) -> bool:
    return bool(md(obj).get("deletionTimestamp"))


def owned_by(obj: Obj, owner: Obj) -> bool:
    uid = md(owner).get("uid")
    return any(ref.get("uid") == uid for ref in md(obj).get("ownerReferences") or [])


def owner_ref(owner: Obj, *, block: bool = False) -> Obj:
    """utils.SetAsOwnedBy (controller, no blockOwnerDeletion); ctrl.SetControllerReference adds block."""
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": md(owner)["uid"],
        "controller": True,
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def set_condition(status: Obj, kind: str, state: str, reason: str, message: str) -> None:
    """meta.SetStatusCondition: lastTransitionTime moves only when the status changes."""
    conditions: list[Obj] = status.setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == kind:
            if c.get("status") != state:
                c["lastTransitionTime"] = rfc3339(now())
            c.update(status=state, reason=reason, message=message)
            return
    conditions.append(
        {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": rfc3339(now())}
    )


def pod_ready(pod: Obj) -> bool:
    return condition(pod, "Ready") is not None and (condition(pod, "Ready") or {}).get("status") == "True"


def pod_active(pod: Obj) -> bool:  # utils.IsPodActive
    return not deleting(pod) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def pod_running(pod: Obj) -> bool:
    """The instance manager answers: the Pod runs (kwok) and is not being deleted."""
    return pod_active(pod) and (pod.get("status") or {}).get("phase") == "Running"


def job_complete(job: Obj) -> bool:  # utils.JobHasOneCompletion
    return int((job.get("status") or {}).get("succeeded") or 0) > 0


def job_failed(job: Obj) -> bool:
    return any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def serial_of(obj: Obj) -> int | None:
    try:
        return int((md(obj).get("annotations") or {})[A_SERIAL])
    except (KeyError, ValueError):
        return None


def major_version(image: str) -> int | None:
    """GetPostgresqlMajorVersion from the image tag (`...:17.2-standard-bookworm` -> 17)."""
    tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    found = re.match(r"(\d+)", tag)
    return int(found.group(1)) if found else None


def has_sidecar(pod: Obj) -> bool:
    return any(c.get("name") == "plugin-barman-cloud" for c in (pod.get("spec") or {}).get("initContainers") or [])


def plugin_enabled(plugin: Obj) -> bool:
    return plugin.get("enabled", True) is not False


# --- cron (robfig/cron as used by scheduledbackup_controller.go: seconds first) ---------------------

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = {
    m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


def _cron_values(spec: str, low: int, high: int, names: Mapping[str, int]) -> set[int]:
    def number(text: str) -> int:
        return names[text.lower()] if text.lower() in names else int(text)

    values: set[int] = set()
    for part in spec.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = number(a), number(b)
        else:
            first = number(span)
            last = high if step_text else first
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"cron field {spec!r} out of range {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


class CronSchedule:
    def __init__(self, spec: str) -> None:
        fields = _DESCRIPTORS.get(spec.strip(), spec).split()
        if len(fields) == 5:  # day of week is optional
            fields.append("*")
        if len(fields) != 6:
            raise ValueError(f"expected six cron fields (seconds first), got {spec!r}")
        self.seconds = sorted(_cron_values(fields[0], 0, 59, {}))
        self.minutes = sorted(_cron_values(fields[1], 0, 59, {}))
        self.hours = sorted(_cron_values(fields[2], 0, 23, {}))
        self.days = _cron_values(fields[3], 1, 31, {})
        self.months = _cron_values(fields[4], 1, 12, _MONTHS)
        self.weekdays = _cron_values(fields[5], 0, 6, _DAYS)
        self.any_day = fields[3][0] in "*?" or fields[5][0] in "*?"

    def _day(self, day: date) -> bool:
        dom, dow = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return day.month in self.months and ((dom and dow) if self.any_day else (dom or dow))

    def next(self, after: datetime) -> datetime | None:
        start = (after.astimezone(UTC) + timedelta(seconds=1)).replace(microsecond=0)
        day = start.date()
        for _ in range(366 * 5):
            if self._day(day):
                floor = (start.hour, start.minute, start.second) if day == start.date() else (0, 0, 0)
                for h in self.hours:
                    for m in self.minutes:
                        for s in self.seconds:
                            if (h, m, s) >= floor:
                                return datetime.combine(day, dtime(h, m, s), UTC)
            day += timedelta(days=1)
        return None


# --- the model of each cluster's PostgreSQL --------------------------------------------------------


@dataclass
class Postgres:
    roles: dict[str, Obj] = field(default_factory=dict)  # name -> applied spec (attributes)
    databases: dict[str, str] = field(default_factory=dict)  # name -> owner
    xid: int = 740


@dataclass
class World:
    clusters: list[Obj]
    databases: list[Obj]
    scheduled_backups: list[Obj]
    backups: list[Obj]
    object_stores: list[Obj]
    pods: list[Obj]
    pvcs: list[Obj]
    jobs: list[Obj]
    services: list[Obj]
    pdbs: list[Obj]
    operator_services: list[Obj]
    operator_pods: list[Obj]
    ingresses: list[Obj]
    secrets: dict[tuple[str, str], Obj | None] = field(default_factory=dict)

    def instances(self, cluster: Obj) -> list[Obj]:
        return sorted(
            (p for p in self.pods if owned_by(p, cluster) and labels_of(p).get(L_POD_ROLE) == "instance"),
            key=name_of,
        )

    def cluster_pvcs(self, cluster: Obj) -> list[Obj]:
        return sorted((p for p in self.pvcs if owned_by(p, cluster)), key=name_of)

    def cluster_jobs(self, cluster: Obj) -> list[Obj]:
        return sorted((j for j in self.jobs if owned_by(j, cluster)), key=name_of)

    def object_store(self, namespace: str, name: str) -> Obj | None:
        return next((o for o in self.object_stores if ns_of(o) == namespace and name_of(o) == name), None)

    def cluster(self, namespace: str, name: str) -> Obj | None:
        return next((c for c in self.clusters if ns_of(c) == namespace and name_of(c) == name), None)


@dataclass
class Barman:
    """plugin-barman-cloud internal/cnpgi/operator/config: what a Cluster asks of the plugin."""

    object_name: str = ""  # backups and WAL archive
    server_name: str = ""
    recovery_object: str = ""
    recovery_server: str = ""
    archiver: bool = False

    @property
    def stores(self) -> list[str]:
        return sorted({n for n in (self.object_name, self.recovery_object) if n})


def barman_config(cluster: Obj) -> Barman | None:
    spec = cluster.get("spec") or {}
    result = Barman(server_name=name_of(cluster))
    for plugin in spec.get("plugins") or []:
        if plugin.get("name") == BARMAN_PLUGIN and plugin_enabled(plugin):
            params = plugin.get("parameters") or {}
            result.object_name = params.get("barmanObjectName", "")
            result.server_name = params.get("serverName") or name_of(cluster)
            result.archiver = bool(plugin.get("isWALArchiver"))
    source = ((spec.get("bootstrap") or {}).get("recovery") or {}).get("source")
    for external in spec.get("externalClusters") or []:
        plugin = external.get("plugin") or {}
        if source and external.get("name") == source and plugin.get("name") == BARMAN_PLUGIN:
            params = plugin.get("parameters") or {}
            result.recovery_object = params.get("barmanObjectName", "")
            result.recovery_server = params.get("serverName") or name_of(cluster)
    return result if result.stores else None


# --- what the operator builds (pkg/specs) ---------------------------------------------------------


def bootstrap_method(spec: Obj) -> tuple[str, Obj]:
    """Defaulting (api/v1/cluster_defaults.go): no bootstrap section means initdb app/app."""
    bootstrap = spec.get("bootstrap") or {}
    for method in ("recovery", "pg_basebackup"):
        if bootstrap.get(method) is not None:
            return method, bootstrap[method]
    return "initdb", bootstrap.get("initdb") or {}


def app_identity(spec: Obj) -> tuple[str, str, str]:
    """(database, owner, secret name or "" when the operator generates it)."""
    _, config = bootstrap_method(spec)
    database = config.get("database") or "app"
    owner = config.get("owner") or database
    return database, owner, ((config.get("secret") or {}).get("name") or "")


def common_labels(cluster: Obj, major: int | None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "postgresql",
        "app.kubernetes.io/instance": name_of(cluster),
        "app.kubernetes.io/version": str(major or 0),
        "app.kubernetes.io/component": "database",
        "app.kubernetes.io/managed-by": "cloudnative-pg",
    }


def inherited(cluster: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """SetInheritedData: spec.inheritedMetadata plus the cluster label."""
    meta = (cluster.get("spec") or {}).get("inheritedMetadata") or {}
    return {**(meta.get("labels") or {}), L_CLUSTER: name_of(cluster)}, dict(meta.get("annotations") or {})


def container_security(spec: Obj) -> Obj:  # specs.GetSecurityContext
    default = {
        "seccompProfile": spec.get("seccompProfile") or {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }
    return {**default, **(spec.get("securityContext") or {})}


def pod_security(spec: Obj) -> Obj:  # specs.GetPodSecurityContext
    uid, gid = spec.get("postgresUID", 26), spec.get("postgresGID", 26)
    default = {
        "seccompProfile": spec.get("seccompProfile") or {"type": "RuntimeDefault"},
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": True,
        "fsGroup": gid,
    }
    custom = spec.get("podSecurityContext")
    if custom is None:
        return default
    return {
        **custom,
        **{k: default[k] for k in ("runAsUser", "runAsGroup", "seccompProfile") if custom.get(k) is None},
    }


def affinity(cluster: Obj) -> Obj | None:  # specs.CreateAffinitySection, type defaulted to preferred
    config = (cluster.get("spec") or {}).get("affinity") or {}
    result: Obj = {}
    if config.get("enablePodAntiAffinity", True) is not False:
        term = {
            "labelSelector": {
                "matchExpressions": [
                    {"key": L_CLUSTER, "operator": "In", "values": [name_of(cluster)]},
                    {"key": L_POD_ROLE, "operator": "In", "values": ["instance"]},
                ]
            },
            "topologyKey": config.get("topologyKey") or "kubernetes.io/hostname",
        }
        if config.get("podAntiAffinityType") == "required":
            result["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
        else:
            result["podAntiAffinity"] = {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
            }
    if config.get("additionalPodAffinity"):
        result["podAffinity"] = config["additionalPodAffinity"]
    extra = config.get("additionalPodAntiAffinity") or {}
    for key in ("requiredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution"):
        if extra.get(key):
            anti = result.setdefault("podAntiAffinity", {})
            anti[key] = [*anti.get(key, []), *extra[key]]
    if config.get("nodeAffinity"):
        result["nodeAffinity"] = config["nodeAffinity"]
    return result or None


def instance_env(cluster: Obj, pod_name: str) -> list[Obj]:  # specs.CreatePodEnvConfig
    spec = cluster.get("spec") or {}
    return [
        {"name": "PGDATA", "value": PGDATA},
        {"name": "POD_NAME", "value": pod_name},
        {"name": "NAMESPACE", "value": ns_of(cluster)},
        {"name": "CLUSTER_NAME", "value": name_of(cluster)},
        {"name": "PSQL_HISTORY", "value": "/controller/tmp/.psql_history"},
        {"name": "PGPORT", "value": "5432"},
        {"name": "PGHOST", "value": "/controller/run"},
        {"name": "TMPDIR", "value": "/controller/tmp"},
        *(spec.get("env") or []),
    ]


def volume_mounts(spec: Obj) -> list[Obj]:  # specs.CreatePostgresVolumeMounts
    mounts = [
        {"name": "pgdata", "mountPath": "/var/lib/postgresql/data"},
        {"name": "scratch-data", "mountPath": "/run"},
        {"name": "scratch-data", "mountPath": "/controller"},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if spec.get("walStorage"):
        mounts.append({"name": "pg-wal", "mountPath": "/var/lib/postgresql/wal"})
    if spec.get("projectedVolumeTemplate"):
        mounts.append({"name": "projected", "mountPath": "/projected"})
    return mounts


def volumes(spec: Obj, instance: str) -> list[Obj]:  # specs.createPostgresVolumes
    limits = spec.get("ephemeralVolumesSizeLimit") or {}
    scratch: Obj = (
        {"ephemeral": spec["ephemeralVolumeSource"]}
        if spec.get("ephemeralVolumeSource")
        else {"emptyDir": {"sizeLimit": limits["temporaryData"]} if limits.get("temporaryData") else {}}
    )
    shm: Obj = {"medium": "Memory", **({"sizeLimit": limits["shm"]} if limits.get("shm") else {})}
    result = [
        {"name": "pgdata", "persistentVolumeClaim": {"claimName": instance}},
        {"name": "scratch-data", **scratch},
        {"name": "shm", "emptyDir": shm},
    ]
    if spec.get("walStorage"):
        result.append({"name": "pg-wal", "persistentVolumeClaim": {"claimName": f"{instance}-wal"}})
    if spec.get("projectedVolumeTemplate"):
        result.append({"name": "projected", "projected": spec["projectedVolumeTemplate"]})
    return result


def pod_base_spec(cluster: Obj, hostname: str, instance: str) -> Obj:
    spec = cluster.get("spec") or {}
    bootstrap_controller: Obj = {
        "name": "bootstrap-controller",
        "image": OPERATOR_IMAGE,
        "command": ["/manager", "bootstrap", "/controller/manager"],
        "volumeMounts": volume_mounts(spec),
        "securityContext": container_security(spec),
    }
    if spec.get("resources"):
        bootstrap_controller["resources"] = spec["resources"]
    if spec.get("imagePullPolicy"):
        bootstrap_controller["imagePullPolicy"] = spec["imagePullPolicy"]
    if spec.get("logLevel"):
        bootstrap_controller["command"].append(f"--log-level={spec['logLevel']}")
    config = spec.get("affinity") or {}
    result: Obj = {
        "hostname": hostname,
        "initContainers": [bootstrap_controller],
        "containers": [],
        "volumes": volumes(spec, instance),
        "securityContext": pod_security(spec),
        "serviceAccountName": spec.get("serviceAccountName") or name_of(cluster),
    }
    optional = {
        "affinity": affinity(cluster),
        "tolerations": config.get("tolerations"),
        "nodeSelector": config.get("nodeSelector"),
        "topologySpreadConstraints": spec.get("topologySpreadConstraints"),
        "schedulerName": spec.get("schedulerName"),
        "priorityClassName": spec.get("priorityClassName"),
    }
    result.update({k: v for k, v in optional.items() if v})
    return result


def _probe(path: str, period: int, failures: int | None = None) -> Obj:
    probe: Obj = {
        "httpGet": {"path": path, "port": STATUS_PORT, "scheme": "HTTPS"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
    }
    if failures:
        probe["failureThreshold"] = failures
    return probe


def build_instance_pod(cluster: Obj, serial: int, major: int | None) -> Obj:
    """specs.NewInstance (TLS status port), owner set as ensureInstancesAreCreated does."""
    spec = cluster.get("spec") or {}
    name = f"{name_of(cluster)}-{serial}"
    env = instance_env(cluster, name)
    start_delay = int(spec.get("startDelay") or 3600)
    postgres: Obj = {
        "name": "postgres",
        "image": (cluster.get("status") or {}).get("image") or spec.get("imageName") or DEFAULT_IMAGE,
        "command": ["/controller/manager", "instance", "run", "--status-port-tls"],
        "env": env,
        "volumeMounts": volume_mounts(spec),
        "ports": [
            {"name": "postgresql", "containerPort": 5432, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9187, "protocol": "TCP"},
            {"name": "status", "containerPort": STATUS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/startupz", 10, max(1, -(-start_delay // 10))),
        "readinessProbe": _probe("/readyz", 10),
        "livenessProbe": _probe("/healthz", 10),
        "securityContext": container_security(spec),
    }
    if spec.get("envFrom"):
        postgres["envFrom"] = spec["envFrom"]
    if spec.get("resources"):
        postgres["resources"] = spec["resources"]
    if spec.get("imagePullPolicy"):
        postgres["imagePullPolicy"] = spec["imagePullPolicy"]
    if spec.get("logLevel"):
        postgres["command"].append(f"--log-level={spec['logLevel']}")
    pod_spec = pod_base_spec(cluster, name, name)
    pod_spec["containers"] = [postgres]
    pod_spec["terminationGracePeriodSeconds"] = int(spec.get("stopDelay") or 1800)
    labels, annotations = inherited(cluster)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns_of(cluster),
            "labels": {
                **labels,
                L_CLUSTER: name_of(cluster),
                L_INSTANCE: name,
                L_POD_ROLE: "instance",
                **common_labels(cluster, major),
            },
            "annotations": {
                **annotations,
                A_SERIAL: str(serial),
                "cnpg.io/podEnvHash": hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16],
            },
            "ownerReferences": [owner_ref(cluster, block=True)],
        },
        "spec": pod_spec,
    }


JOB_ROLES = {"initdb": "initdb", "recovery": "full-recovery", "pg_basebackup": "pgbasebackup"}


def build_job(cluster: Obj, serial: int, role: str, major: int | None) -> Obj:
    """specs.CreatePrimaryJob (initdb / full-recovery / pgbasebackup / join)."""
    spec = cluster.get("spec") or {}
    instance = f"{name_of(cluster)}-{serial}"
    job_name = f"{instance}-{role}"
    verb = {"initdb": "init", "full-recovery": "restore", "pgbasebackup": "pgbasebackup", "join": "join"}[role]
    command = ["/controller/manager", "instance", verb]
    if role == "join":
        command += ["--parent-node", f"{name_of(cluster)}-rw"]
    if role == "initdb":
        database, owner, _ = app_identity(spec)
        initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
        flags = [
            f"--encoding={initdb.get('encoding') or 'UTF8'}",
            f"--lc-collate={initdb.get('localeCollate') or 'C'}",
            f"--lc-ctype={initdb.get('localeCType') or 'C'}",
        ]
        command += ["--initdb-flags", " ".join(flags), "--app-db-name", database, "--app-user", owner]
    if spec.get("walStorage"):
        command += ["--pg-wal", "/var/lib/postgresql/wal/pg_wal"]
    if spec.get("logLevel"):
        command.append(f"--log-level={spec['logLevel']}")
    main: Obj = {
        "name": role,
        "image": (cluster.get("status") or {}).get("image") or spec.get("imageName") or DEFAULT_IMAGE,
        "command": command,
        "env": instance_env(cluster, job_name),
        "volumeMounts": volume_mounts(spec),
        "securityContext": container_security(spec),
    }
    if role == "initdb":
        _, _, secret = app_identity(spec)
        main["env"] += [
            {
                "name": f"APP_{key.upper()}",
                "valueFrom": {"secretKeyRef": {"name": secret or f"{name_of(cluster)}-app", "key": key}},
            }
            for key in ("username", "password")
        ]
    if spec.get("resources"):
        main["resources"] = spec["resources"]
    if spec.get("imagePullPolicy"):
        main["imagePullPolicy"] = spec["imagePullPolicy"]
    pod_spec = pod_base_spec(cluster, job_name, instance)
    pod_spec["containers"] = [main]
    pod_spec["restartPolicy"] = "Never"
    job_labels = {
        L_INSTANCE: instance,
        L_CLUSTER: name_of(cluster),
        L_JOB_ROLE: role,
        **common_labels(cluster, major),
    }
    labels, annotations = inherited(cluster)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": ns_of(cluster),
            "labels": {**labels, **job_labels},
            "annotations": annotations,
            "ownerReferences": [owner_ref(cluster, block=True)],
        },
        "spec": {"template": {"metadata": {"labels": job_labels}, "spec": pod_spec}},
    }


def build_pvc(cluster: Obj, serial: int, wal: bool) -> Obj:
    """persistentvolumeclaim.Build: PG_DATA `<instance>`, PG_WAL `<instance>-wal`."""
    spec = cluster.get("spec") or {}
    storage = (spec.get("walStorage") if wal else spec.get("storage")) or {}
    instance = f"{name_of(cluster)}-{serial}"
    claim = copy.deepcopy(storage.get("pvcTemplate") or {})
    claim.setdefault("accessModes", ["ReadWriteOnce"])
    if storage.get("storageClass"):
        claim["storageClassName"] = storage["storageClass"]
    if storage.get("size"):
        claim.setdefault("resources", {}).setdefault("requests", {})["storage"] = storage["size"]
    labels, annotations = inherited(cluster)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"{instance}-wal" if wal else instance,
            "namespace": ns_of(cluster),
            "labels": {
                **labels,
                L_INSTANCE: instance,
                L_PVC_ROLE: "PG_WAL" if wal else "PG_DATA",
                "app.kubernetes.io/managed-by": "cloudnative-pg",
                "app.kubernetes.io/name": "postgresql",
                "app.kubernetes.io/component": "database",
            },
            "annotations": {**annotations, A_SERIAL: str(serial), A_PVC_STATUS: "initializing"},
            "ownerReferences": [owner_ref(cluster)],
        },
        "spec": claim,
    }


def build_service(cluster: Obj, suffix: str, major: int | None) -> Obj:  # pkg/specs/services.go
    selector = {
        "rw": {L_CLUSTER: name_of(cluster), L_INSTANCE_ROLE: "primary"},
        "ro": {L_CLUSTER: name_of(cluster), L_INSTANCE_ROLE: "replica"},
        "r": {L_CLUSTER: name_of(cluster), L_POD_ROLE: "instance"},
    }[suffix]
    labels, annotations = inherited(cluster)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name_of(cluster)}-{suffix}",
            "namespace": ns_of(cluster),
            "labels": {**labels, **common_labels(cluster, major)},
            "annotations": annotations,
            "ownerReferences": [owner_ref(cluster)],
        },
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "postgres", "protocol": "TCP", "port": 5432, "targetPort": 5432}],
            "selector": selector,
        },
    }


def build_pdb(cluster: Obj, primary: bool, major: int | None) -> Obj:  # pkg/specs/poddisruptionbudget.go
    instances = int((cluster.get("spec") or {}).get("instances") or 1)
    labels, annotations = inherited(cluster)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": f"{name_of(cluster)}-primary" if primary else name_of(cluster),
            "namespace": ns_of(cluster),
            "labels": {**labels, **common_labels(cluster, major)},
            "annotations": annotations,
            "ownerReferences": [owner_ref(cluster)],
        },
        "spec": {
            "selector": {
                "matchLabels": {L_CLUSTER: name_of(cluster), L_INSTANCE_ROLE: "primary" if primary else "replica"}
            },
            "minAvailable": 1 if primary else instances - 2,
        },
    }


def inject_sidecar(
    pod_spec: Obj, main_name: str, args: list[str], resources: Obj, env: list[Obj], certs: list[Obj], image: str
) -> None:
    """plugin-barman-cloud lifecycle.go reconcilePodSpec: the plugin's restartable init container."""
    main = next(c for c in pod_spec["containers"] if c["name"] == main_name)
    pod_spec["volumes"].append({"name": "plugins", "emptyDir": {}})
    main["volumeMounts"] = [*main.get("volumeMounts", []), {"name": "plugins", "mountPath": "/plugins"}]
    defaults = [
        {"name": "NAMESPACE", "value": ""},
        {"name": "CLUSTER_NAME", "value": ""},
        {"name": "SPOOL_DIRECTORY", "value": "/controller/wal-restore-spool"},
        {"name": "CUSTOM_CNPG_GROUP", "value": "postgresql.cnpg.io"},
        {"name": "CUSTOM_CNPG_VERSION", "value": "v1"},
        *env,
    ]
    sidecar_env = list(main.get("env", []))
    for item in defaults:
        if all(e["name"] != item["name"] for e in sidecar_env):
            sidecar_env.append(item)
    mounts = list(main["volumeMounts"])
    if certs:
        pod_spec["volumes"].append({"name": "barman-certificates", "projected": {"sources": certs}})
        mounts.append({"name": "barman-certificates", "mountPath": "/barman-certificates"})
    sidecar: Obj = {
        "name": "plugin-barman-cloud",
        "image": image,
        "args": args,
        "env": sidecar_env,
        "volumeMounts": mounts,
        "restartPolicy": "Always",
        "startupProbe": {
            "exec": {"command": ["/manager", "healthcheck", "unix"]},
            "periodSeconds": 1,
            "failureThreshold": 30,
            "timeoutSeconds": 5,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if resources:
        sidecar["resources"] = resources
    pod_spec["initContainers"].append(sidecar)


def _cert_chain_error(ca_pem: bytes, tls_pem: bytes) -> str | None:
    """validateLeafCertificate (cluster_pki.go): the leaf chains to the CA, is valid now, serves TLS."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID
    except ImportError:  # pragma: no cover - cryptography is in requirements-dev.txt
        return None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
        chain = x509.load_pem_x509_certificates(tls_pem)
    except ValueError as e:
        return f"failed to parse certificate: {e}"
    leaf = chain[0]

    def issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
        try:
            child.verify_directly_issued_by(parent)
            return True
        except Exception:
            return False

    if not any(issued(leaf, ca) or any(issued(leaf, i) and issued(i, ca) for i in chain[1:]) for ca in cas):
        return "x509: certificate signed by unknown authority"
    moment = now()
    if not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
        return "x509: certificate has expired or is not yet valid"
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        return "x509: certificate specifies an incompatible key usage"
    return None


# --- the stand-in ---------------------------------------------------------------------------------


@dataclass
class Options:
    ingress_status: bool = False
    operator_namespace: str = "cnpg-system"
    # "NAMESPACE/NAME" of the operator's Deployment: the operator acts only while it has a ready
    # replica (the instance managers do not depend on it). Empty: the operator always acts.
    operator_deployment: str = ""
    # The operator's WATCH_NAMESPACE: only these namespaces (empty: all of them).
    watch_namespaces: tuple[str, ...] = ()


class Standin:
    def __init__(self, kube: Kube, log: Callable[[str], None], options: Options) -> None:
        self.kube = kube
        self.log = log
        self.options = options
        self.seen: dict[tuple[str, str], str] = {}  # clusters the operator has watched
        self.postgres: dict[str, Postgres] = {}  # by Cluster uid
        self.said: set[str] = set()

    def once(self, key: str, message: str) -> None:
        if key not in self.said:
            self.said.add(key)
            self.log(message)

    # -- writes (each one log line; 404/409 mean "look again next pass")

    def _write(self, what: str, action: Callable[[], Obj]) -> Obj | None:
        try:
            result = action()
        except ApiError as e:
            if e.status in (404, 409):
                return None
            if e.status == 422 or e.status == 403:
                self.once(f"{what}:{e.message}", f"refused {what}: {e.message}")
                return None
            raise
        self.log(what)
        return result

    def create(self, obj: Obj) -> Obj | None:
        gv, plural = obj["apiVersion"], PLURALS[obj["kind"]]
        path = _path(gv, plural, ns_of(obj))
        kind = obj["kind"]
        try:
            result = self.kube.request("POST", path, obj)
        except ApiError as e:
            if e.status in (404, 409):  # AlreadyExists: seen next pass; namespace terminating
                return None
            if e.status in (403, 422):  # e.g. Pod Security admission: what the operator would hit
                self.once(
                    f"create:{kind}:{ns_of(obj)}/{name_of(obj)}:{e.message}",
                    f"refused create {kind} {ns_of(obj)}/{name_of(obj)}: {e.message}",
                )
                return None
            raise
        self.log(f"created {kind} {ns_of(obj)}/{name_of(obj)}")
        return result

    def patch(self, obj: Obj, body: Obj, what: str, *, sub: str = "", lock: bool = False) -> Obj | None:
        """JSON merge patch; with lock, conditional on the object's resourceVersion (an Update)."""
        if lock:
            body = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": md(obj).get("resourceVersion")}}
        path = _path(obj["apiVersion"], PLURALS[obj["kind"]], ns_of(obj) or None, name_of(obj), sub)
        result = self._write(
            f"{what} {obj['kind']} {ns_of(obj)}/{name_of(obj)}",
            lambda: self.kube.request("PATCH", path, body, content_type="application/merge-patch+json"),
        )
        if result:
            obj.clear()
            obj.update(result)
        return result

    def put_status(self, obj: Obj, status: Obj, what: str) -> bool:
        """Status().Update: the whole status, conditional on resourceVersion; only when it changed."""
        status = {k: v for k, v in status.items() if v not in (None, [], {}, "")}
        if status == (obj.get("status") or {}):
            return False
        body = {**obj, "status": status}
        path = _path(obj["apiVersion"], PLURALS[obj["kind"]], ns_of(obj), name_of(obj), "status")
        result = self._write(
            f"status {obj['kind']} {ns_of(obj)}/{name_of(obj)}: {what}", lambda: self.kube.request("PUT", path, body)
        )
        if result:
            obj.clear()
            obj.update(result)
        return bool(result)

    def delete(self, obj: Obj, why: str, propagation: str = "") -> None:
        path = _path(obj["apiVersion"], PLURALS[obj["kind"]], ns_of(obj), name_of(obj))
        body = {"propagationPolicy": propagation} if propagation else None
        self._write(
            f"deleted {obj['kind']} {ns_of(obj)}/{name_of(obj)} ({why})",
            lambda: self.kube.request("DELETE", path, body),
        )

    def secret(self, w: World, namespace: str, name: str) -> Obj | None:
        key = (namespace, name)
        if key not in w.secrets:
            w.secrets[key] = self.kube.get("v1", "secrets", namespace, name)
        return w.secrets[key]

    # -- one pass

    def snapshot(self) -> World:
        k, opns, scope = self.kube, self.options.operator_namespace, set(self.options.watch_namespaces)

        def watched(gv: str, plural: str, selector: str | None = None) -> list[Obj]:
            return [o for o in k.list(gv, plural, selector=selector) if not scope or ns_of(o) in scope]

        return World(
            clusters=watched(CNPG, "clusters"),
            databases=watched(CNPG, "databases"),
            scheduled_backups=watched(CNPG, "scheduledbackups"),
            backups=watched(CNPG, "backups"),
            object_stores=watched(BARMAN, "objectstores"),
            pods=watched("v1", "pods", L_CLUSTER),
            pvcs=watched("v1", "persistentvolumeclaims", L_CLUSTER),
            jobs=watched("batch/v1", "jobs", L_CLUSTER),
            services=watched("v1", "services", L_CLUSTER),
            pdbs=watched("policy/v1", "poddisruptionbudgets", L_CLUSTER),
            operator_services=k.list("v1", "services", opns, selector=PLUGIN_NAME_LABEL),
            operator_pods=k.list("v1", "pods", opns),
            ingresses=watched("networking.k8s.io/v1", "ingresses") if self.options.ingress_status else [],
        )

    def operator_running(self) -> bool:
        if not self.options.operator_deployment:
            return True
        namespace, _, name = self.options.operator_deployment.partition("/")
        deployment = self.kube.get("apps/v1", "deployments", namespace, name)
        return bool(deployment and int((deployment.get("status") or {}).get("readyReplicas") or 0) > 0)

    def guarded(self, what: Obj, action: Callable[[], object]) -> None:
        """One object's failure (API error, unexpected content) is logged once, not the whole pass."""
        try:
            action()
        except (ApiError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            self.once(
                f"{md(what).get('uid')}:{type(e).__name__}:{e}",
                f"error on {what.get('kind')} {ns_of(what)}/{name_of(what)}: {type(e).__name__}: {e}",
            )

    def step(self) -> None:
        w = self.snapshot()
        operator = self.operator_running()
        if not operator:
            self.seen.clear()  # a restarted operator knows nothing of what was deleted meanwhile
        else:
            self.reconcile_plugin_services(w)
        plugins = self.plugins(w)
        for c in w.clusters:
            self.guarded(c, functools.partial(self.instance_startup, c, w))
        present = {(ns_of(c), name_of(c)) for c in w.clusters}
        if operator:
            for c in w.clusters:
                self.seen[(ns_of(c), name_of(c))] = md(c)["uid"]
                self.guarded(c, functools.partial(self.reconcile_cluster, c, w, plugins))
            for key in [k for k in self.seen if k not in present]:
                if self.notify_deletion(*key, w):
                    del self.seen[key]
        for c in w.clusters:
            self.guarded(c, functools.partial(self.instance_managers, c, w))
        self.orphaned_databases(w)
        if operator:
            for sb in w.scheduled_backups:
                self.guarded(sb, functools.partial(self.reconcile_scheduled_backup, sb, w))
            for b in w.backups:
                self.guarded(b, functools.partial(self.reconcile_backup, b, w))
        for ingress in w.ingresses:
            self.guarded(ingress, functools.partial(self.reconcile_ingress, ingress))

    # -- plugins (internal/controller/plugin_controller.go)

    def is_plugin_service(self, svc: Obj) -> bool:
        annotations = md(svc).get("annotations") or {}
        return bool(labels_of(svc).get(PLUGIN_NAME_LABEL)) and all(a in annotations for a in PLUGIN_ANNOTATIONS)

    def reconcile_plugin_services(self, w: World) -> None:
        for svc in w.operator_services:
            if not self.is_plugin_service(svc):
                continue
            finalizers = md(svc).get("finalizers") or []
            if deleting(svc):
                if PLUGIN_FINALIZER in finalizers:
                    rest = [f for f in finalizers if f != PLUGIN_FINALIZER]
                    self.patch(
                        svc, {"metadata": {"finalizers": rest}}, f"removed finalizer {PLUGIN_FINALIZER} from", lock=True
                    )
            elif PLUGIN_FINALIZER not in finalizers:
                self.patch(
                    svc,
                    {"metadata": {"finalizers": [*finalizers, PLUGIN_FINALIZER]}},
                    f"added finalizer {PLUGIN_FINALIZER} to",
                    lock=True,
                )

    def plugins(self, w: World) -> dict[str, str | None]:
        """Registered plugins -> None when reachable, else why not (Service with ready Pods behind it)."""
        result: dict[str, str | None] = {}
        for svc in w.operator_services:
            if (
                not self.is_plugin_service(svc)
                or deleting(svc)
                or PLUGIN_FINALIZER not in (md(svc).get("finalizers") or [])
            ):
                continue
            annotations = md(svc).get("annotations") or {}
            server = self.secret(w, ns_of(svc), annotations["cnpg.io/pluginServerSecret"])
            client = self.secret(w, ns_of(svc), annotations["cnpg.io/pluginClientSecret"])
            if not server or "tls.crt" not in (server.get("data") or {}):
                continue
            if not client or not {"tls.crt", "tls.key"} <= set(client.get("data") or {}):
                continue
            selector = (svc.get("spec") or {}).get("selector") or {}
            ready = [
                p
                for p in w.operator_pods
                if selector and all(labels_of(p).get(k) == v for k, v in selector.items()) and pod_ready(p)
            ]
            name = labels_of(svc)[PLUGIN_NAME_LABEL]
            result[name] = None if ready else f"no ready endpoint for {name_of(svc)}.{ns_of(svc)}.svc"
        return result

    def sidecar_image(self) -> str:
        """The plugin Deployment's SIDECAR_IMAGE (a value or a Secret/ConfigMap key)."""
        for deployment in self.kube.list("apps/v1", "deployments", self.options.operator_namespace):
            for container in deployment["spec"]["template"]["spec"].get("containers") or []:
                for env in container.get("env") or []:
                    if env.get("name") != "SIDECAR_IMAGE":
                        continue
                    if env.get("value"):
                        return str(env["value"]).strip()
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        secret = self.kube.get("v1", "secrets", ns_of(deployment), ref["name"]) or {}
                        value = (secret.get("data") or {}).get(ref["key"])
                        if value:
                            return base64.b64decode(value).decode().strip()
        return SIDECAR_IMAGE

    # -- the Cluster controller (internal/controller/cluster_controller.go Reconcile)

    def register_phase(self, status: Obj, phase: str, reason: str) -> None:
        """RegisterPhase: phase + reason, and the Ready condition that follows the phase."""
        status["phase"] = phase
        status["phaseReason"] = reason
        if phase == PHASE_HEALTHY:
            set_condition(status, "Ready", "True", "ClusterIsReady", "Cluster is Ready")
        else:
            set_condition(status, "Ready", "False", "ClusterIsNotReady", "Cluster Is Not Ready")

    def reconcile_cluster(self, c: Obj, w: World, plugins: Mapping[str, str | None]) -> None:
        if deleting(c):
            self.notify_deletion(ns_of(c), name_of(c), w)
            return
        if (md(c).get("annotations") or {}).get("cnpg.io/reconciliationLoop") == "disabled":
            return
        status = copy.deepcopy(c.get("status") or {})
        self._reconcile_cluster(c, status, w, plugins)
        self.put_status(c, status, str(status.get("phase") or "status"))

    def needed_plugins(self, spec: Obj) -> list[str]:
        names = {p["name"] for p in spec.get("plugins") or [] if plugin_enabled(p)}
        names |= {
            e["plugin"]["name"]
            for e in spec.get("externalClusters") or []
            if e.get("plugin") and plugin_enabled(e["plugin"])
        }
        return sorted(names)

    def _reconcile_cluster(self, c: Obj, status: Obj, w: World, plugins: Mapping[str, str | None]) -> None:
        spec = c.get("spec") or {}
        for plugin in self.needed_plugins(spec):
            if plugin not in plugins:
                self.register_phase(
                    status,
                    PHASE_UNKNOWN_PLUGIN,
                    f"Unknown plugin: '{plugin}'. This may be caused by the plugin not being loaded correctly by the "
                    "operator. Check the operator and plugin logs for errors",
                )
                return
            if plugins[plugin] is not None:
                self.register_phase(status, PHASE_FAILURE_PLUGIN, f"Error while discovering plugins: {plugins[plugin]}")
                return
        image = spec.get("imageName") or ("" if spec.get("imageCatalogRef") else DEFAULT_IMAGE)
        if not image:
            self.once(f"catalog:{md(c)['uid']}", f"not emulated: imageCatalogRef of Cluster {ns_of(c)}/{name_of(c)}")
            return
        major = major_version(image)
        status["image"] = image  # reconcileImage
        if major:
            status["pgDataImageInfo"] = {"image": image, "majorVersion": major}
        error = self.check_certificates(c, w) or self.ensure_cluster_objects(c, major, w)
        if error:
            self.register_phase(status, PHASE_CANNOT_CREATE, error)
            return
        pods, pvcs, jobs = w.instances(c), w.cluster_pvcs(c), w.cluster_jobs(c)
        self.update_resource_status(c, status, pods, pvcs, jobs)
        barman = barman_config(c)
        if barman:  # the plugin's pre-reconcile hook (reconciler.go): requeue until the stores exist
            missing = [n for n in barman.stores if not w.object_store(ns_of(c), n)]
            if missing:
                self.once(
                    f"store:{md(c)['uid']}:{missing}",
                    f"Cluster {ns_of(c)}/{name_of(c)} waits for ObjectStore {missing[0]}",
                )
                return
        current, target = status.get("currentPrimary", ""), status.get("targetPrimary", "")
        if current and current != target:  # a failover/switchover in progress: the old primary leaves -rw
            for pod in pods:
                if name_of(pod) == current and pod_active(pod) and labels_of(pod).get(L_INSTANCE_ROLE) != "unhealthy":
                    self.patch(
                        pod,
                        {"metadata": {"labels": {L_ROLE: "unhealthy", L_INSTANCE_ROLE: "unhealthy"}}},
                        "labelled unhealthy",
                    )
            return
        reporting = [p for p in pods if pod_running(p)]
        # updateClusterStatusThatRequiresInstancesState
        status["instancesReportedState"] = {
            name_of(p): {
                "isPrimary": name_of(p) == current,
                "timeLineID": 1,
                **({"ip": p["status"]["podIP"]} if (p.get("status") or {}).get("podIP") else {}),
            }
            for p in reporting
        }
        if reporting:
            status["timelineID"] = 1
            status["systemID"] = str(int(hashlib.sha256(md(c)["uid"].encode()).hexdigest()[:15], 16))
            set_condition(
                status,
                "ConsistentSystemID",
                "True",
                "Unique",
                "A single, unique system ID was found across reporting instances.",
            )
        else:
            status.pop("systemID", None)
            message = (
                "Instances are present, but none have reported a system ID."
                if pods
                else "No instances are present in the cluster to report a system ID."
            )
            set_condition(status, "ConsistentSystemID", "False", "NotFound", message)
        self.reconcile_metadata(c, status, pods, pvcs)
        if self.failover(c, status, pods):
            return
        self.reconcile_resources(c, status, w, pods, pvcs, jobs, reporting, major)

    def check_certificates(self, c: Obj, w: World) -> str | None:
        """setupPostgresPKI (cluster_pki.go) for the user-provided Secrets; generated ones are not emulated."""
        certs = (c.get("spec") or {}).get("certificates") or {}
        namespace = ns_of(c)
        server_ca: Obj | None = None
        if certs.get("serverCASecret"):
            name = certs["serverCASecret"]
            server_ca = self.secret(w, namespace, name)
            if server_ca is None:
                return f'missing specified server CA secret {name}: secrets "{name}" not found'
            if "ca.crt" not in (server_ca.get("data") or {}):
                return "generating server CA certificate: missing ca.crt secret data"
            if not certs.get("serverTLSSecret") and "ca.key" not in (server_ca.get("data") or {}):
                return "generating server CA certificate: missing ca.key secret data"
        if certs.get("serverTLSSecret"):
            name = certs["serverTLSSecret"]
            server = self.secret(w, namespace, name)
            if server is None:
                return f'generating server TLS certificate: missing specified server TLS secret {name}: secrets "{name}" not found'
            data = server.get("data") or {}
            if not {"tls.crt", "tls.key"} <= set(data):
                return f"generating server TLS certificate: missing tls.crt or tls.key in secret {name}"
            if server_ca is not None:
                error = _cert_chain_error(
                    base64.b64decode(server_ca["data"]["ca.crt"]), base64.b64decode(data["tls.crt"])
                )
                if error:
                    return f"generating server TLS certificate: {error}"
        for key, what in (
            ("clientCASecret", "client CA"),
            ("replicationTLSSecret", "streaming replication client TLS"),
        ):
            if certs.get(key) and self.secret(w, namespace, certs[key]) is None:
                return f'missing specified {what} secret {certs[key]}: secrets "{certs[key]}" not found'
        return None

    def ensure_cluster_objects(self, c: Obj, major: int | None, w: World) -> str | None:
        """createPostgresClusterObjects (cluster_create.go): secrets, services, PDBs, ServiceAccount."""
        spec, namespace, name = c.get("spec") or {}, ns_of(c), name_of(c)
        database, owner, user_secret = app_identity(spec)
        if not user_secret and self.secret(w, namespace, f"{name}-app") is None:
            password = secrets.token_urlsafe(48)
            host = f"{name}-rw"
            labels, annotations = inherited(c)
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": f"{name}-app",
                        "namespace": namespace,
                        "labels": {
                            **labels,
                            "cnpg.io/userType": "app",
                            "cnpg.io/reload": "true",
                            "app.kubernetes.io/managed-by": "cloudnative-pg",
                        },
                        "annotations": annotations,
                        "ownerReferences": [owner_ref(c)],
                    },
                    "type": "kubernetes.io/basic-auth",
                    "stringData": {
                        "username": owner,
                        "user": owner,
                        "password": password,
                        "dbname": database,
                        "host": host,
                        "port": "5432",
                        "pgpass": f"{host}:5432:{database}:{owner}:{password}\n",
                        "uri": f"postgresql://{owner}:{password}@{host}.{namespace}:5432/{database}",
                        "jdbc-uri": f"jdbc:postgresql://{host}.{namespace}:5432/{database}?password={password}&user={owner}",
                        "fqdn-uri": f"postgresql://{owner}:{password}@{host}.{namespace}.svc.cluster.local:5432/{database}",
                        "fqdn-jdbc-uri": f"jdbc:postgresql://{host}.{namespace}.svc.cluster.local:5432/{database}?password={password}&user={owner}",
                    },
                }
            )
        existing = {name_of(s) for s in w.services if ns_of(s) == namespace}
        disabled = set(((spec.get("managed") or {}).get("services") or {}).get("disabledDefaultServices") or [])
        for suffix in ("rw", "ro", "r"):
            if suffix not in disabled and f"{name}-{suffix}" not in existing:
                self.create(build_service(c, suffix, major))
        pdbs = {name_of(p): p for p in w.pdbs if ns_of(p) == namespace and owned_by(p, c)}
        instances = int(spec.get("instances") or 1)
        wanted = (
            {f"{name}-primary": True, **({name: False} if instances >= 3 else {})}
            if spec.get("enablePDB", True)
            else {}
        )
        for pdb_name, primary in wanted.items():
            if pdb_name not in pdbs:
                self.create(build_pdb(c, primary, major))
        for pdb_name, pdb in pdbs.items():
            if pdb_name not in wanted and not deleting(pdb):
                self.delete(pdb, "not wanted")
        if spec.get("serviceAccountName"):
            if self.kube.get("v1", "serviceaccounts", namespace, spec["serviceAccountName"]) is None:
                sa = spec["serviceAccountName"]
                return f'serviceAccount "{sa}" not found: serviceaccounts "{sa}" not found'
        elif self.kube.get("v1", "serviceaccounts", namespace, name) is None:
            labels, annotations = inherited(c)
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": {**labels, "app.kubernetes.io/managed-by": "cloudnative-pg"},
                        "annotations": annotations,
                        "ownerReferences": [owner_ref(c)],
                    },
                }
            )
        return None

    def update_resource_status(self, c: Obj, status: Obj, pods: list[Obj], pvcs: list[Obj], jobs: list[Obj]) -> None:
        """updateResourceStatus + persistentvolumeclaim.EnrichStatus (cluster_status.go, status.go)."""
        name, namespace = name_of(c), ns_of(c)
        spec = c.get("spec") or {}
        expected = {False, True} if spec.get("walStorage") else {False}
        groups: dict[str, list[Obj]] = {}
        for pvc in pvcs:
            phase = (pvc.get("status") or {}).get("phase") or "Pending"
            serial = serial_of(pvc)
            known = (md(pvc).get("annotations") or {}).get(A_PVC_STATUS) in ("initializing", "ready", "detached")
            if phase in ("Pending", "Bound") and not deleting(pvc) and serial is not None and known:
                groups.setdefault(f"{name}-{serial}", []).append(pvc)
        classes: dict[str, list[str]] = {"initializingPVC": [], "danglingPVC": [], "healthyPVC": [], "unusablePVC": []}
        for instance, group in groups.items():
            names = {name_of(p) for p in group}
            wanted = {instance if not wal else f"{instance}-wal" for wal in expected}
            for pvc in group:
                claim = name_of(pvc)
                if not wanted <= names or claim not in wanted:
                    classes["unusablePVC"].append(claim)
                elif any(claim in self.claims(p) for p in pods):
                    classes["healthyPVC"].append(claim)
                elif any(claim in self.claims(j["spec"]["template"]) and not job_complete(j) for j in jobs):
                    classes["initializingPVC"].append(claim)
                else:
                    classes["danglingPVC"].append(claim)
        status["instanceNames"] = sorted(groups)
        status["instances"] = len(groups)
        active = [p for p in pods if pod_active(p)]
        status["readyInstances"] = sum(1 for p in active if pod_ready(p))
        by_state: dict[str, list[str]] = {}
        for pod in pods:
            if deleting(pod):
                continue
            state = "healthy" if pod_ready(pod) else "replicating" if pod_active(pod) else "failed"
            by_state.setdefault(state, []).append(name_of(pod))
        status["instancesStatus"] = by_state
        status["pvcCount"] = len(pvcs)
        for key, values in classes.items():
            status[key] = sorted(values)
        status["jobCount"] = len(jobs)
        status["writeService"] = f"{name}-rw"
        status["readService"] = f"{name}-r"
        status["selector"] = f"{L_CLUSTER}={name},{L_POD_ROLE}=instance"
        certs = spec.get("certificates") or {}
        dns = [
            f"{name}-{kind}{suffix}"
            for kind in ("rw", "r", "ro")
            for suffix in ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")
        ]
        status["certificates"] = {
            **(status.get("certificates") or {}),
            "serverCASecret": certs.get("serverCASecret") or f"{name}-ca",
            "serverTLSSecret": certs.get("serverTLSSecret") or f"{name}-server",
            "clientCASecret": certs.get("clientCASecret") or f"{name}-ca",
            "replicationTLSSecret": certs.get("replicationTLSSecret") or f"{name}-replication",
            "serverAltDNSNames": [*dns, *(certs.get("serverAltDNSNames") or [])],
        }
        current, target = status.get("currentPrimary", ""), status.get("targetPrimary", "")
        if (
            target != current
            and current
            and not (status["readyInstances"] > 0 and any(name_of(p) == target for p in active))
        ):
            status["targetPrimary"] = current
            status["targetPrimaryTimestamp"] = rfc3339_micro(now())
        if status["instances"] > 0:
            set_condition(status, "Initialized", "True", "BootstrapCompleted", "Cluster has been bootstrapped")
        elif not any(x.get("type") == "Initialized" for x in status.get("conditions") or []):
            set_condition(status, "Initialized", "False", "BootstrapPending", "Cluster has not been bootstrapped yet")

    @staticmethod
    def claims(pod: Obj) -> set[str]:
        return {
            v["persistentVolumeClaim"]["claimName"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")
        }

    def reconcile_metadata(self, c: Obj, status: Obj, pods: list[Obj], pvcs: list[Obj]) -> None:
        """instance.ReconcileMetadata / persistentvolumeclaim.ReconcileMetadata: the role labels."""
        current = status.get("currentPrimary")
        if not current:
            return
        for pod in pods:
            role = "primary" if name_of(pod) == current else "replica"
            if pod_active(pod) and (labels_of(pod).get(L_ROLE), labels_of(pod).get(L_INSTANCE_ROLE)) != (role, role):
                self.patch(pod, {"metadata": {"labels": {L_ROLE: role, L_INSTANCE_ROLE: role}}}, f"labelled {role}")
        for pvc in pvcs:
            instance = labels_of(pvc).get(L_INSTANCE)
            if instance not in (status.get("instanceNames") or []) or deleting(pvc):
                continue
            role = "primary" if instance == current else "replica"
            if (labels_of(pvc).get(L_ROLE), labels_of(pvc).get(L_INSTANCE_ROLE)) != (role, role):
                self.patch(pvc, {"metadata": {"labels": {L_ROLE: role, L_INSTANCE_ROLE: role}}}, f"labelled {role}")

    def failover(self, c: Obj, status: Obj, pods: list[Obj]) -> bool:
        """replicas.go reconcileTargetPrimaryForNonReplicaCluster: the most advanced instance first
        (the reporting primary, else the reporting replicas); spec.failoverDelay is taken as 0."""
        current, target = status.get("currentPrimary", ""), status.get("targetPrimary", "")
        reporting = [p for p in pods if pod_running(p)]
        reporting.sort(key=lambda p: (name_of(p) != current, serial_of(p) or 0))
        if not reporting or name_of(reporting[0]) == target:
            return False
        new = name_of(reporting[0])
        self.register_phase(status, PHASE_FAILOVER, f"Failing over from {current} to {new}")
        status["targetPrimary"] = new
        status["targetPrimaryTimestamp"] = rfc3339_micro(now())
        for pod in pods:
            if name_of(pod) == current and pod_active(pod):
                self.patch(
                    pod,
                    {"metadata": {"labels": {L_ROLE: "unhealthy", L_INSTANCE_ROLE: "unhealthy"}}},
                    "labelled unhealthy",
                )
        return True

    def reconcile_resources(
        self,
        c: Obj,
        status: Obj,
        w: World,
        pods: list[Obj],
        pvcs: list[Obj],
        jobs: list[Obj],
        reporting: list[Obj],
        major: int | None,
    ) -> None:
        """reconcileResources + reconcilePods (cluster_controller.go), then PhaseHealthy."""
        spec = c.get("spec") or {}
        wanted = int(spec.get("instances") or 1)
        failed = [name_of(j) for j in jobs if job_failed(j)]
        if failed:
            self.register_phase(
                status,
                PHASE_UNRECOVERABLE,
                f"Instance creation failed for the following jobs: {', '.join(failed)}. "
                "Check the job logs to investigate the cause of the failure.",
            )
            return
        if any(not job_complete(j) for j in jobs):
            return
        terminated = [
            p for p in pods if not deleting(p) and (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        ]
        for pod in terminated:
            self.delete(pod, "terminated")
        if terminated:
            return
        if any(not pod_active(p) for p in pods):
            self.register_phase(status, PHASE_WAITING_ACTIVE, "Some instances are not yet active. Please wait.")
            return
        # reconcilePods: MarkPVCReadyForCompletedJobs
        for job in jobs:
            if job_complete(job):
                for pvc in pvcs:
                    if name_of(pvc) in self.claims(job["spec"]["template"]):
                        self.mark_pvc_ready(pvc)
        if self.ensure_instances_created(c, status, pods, pvcs, reporting, major, w):
            return
        for pvc in pvcs:  # EnsureHealthyPVCsAnnotation
            if name_of(pvc) in (status.get("healthyPVC") or []):
                self.mark_pvc_ready(pvc)
        if status.get("instances", 0) == 0:
            self.create_primary(c, status, major, w)
            return
        if len(reporting) < status["instances"]:
            return
        if status["instances"] < wanted and len(reporting) == status["instances"]:
            self.join_replica(c, status, major, w)
            return
        if status["instances"] > wanted:
            self.scale_down(c, status, pods, pvcs, jobs)
        if status.get("readyInstances") != status["instances"] or status["readyInstances"] != len(reporting):
            return
        if len(reporting) != wanted:
            return
        for job in jobs:  # cleanupCompletedJobs
            if job_complete(job) and not deleting(job):
                self.delete(job, "completed", "Foreground")
        self.register_phase(status, PHASE_HEALTHY, "")

    def mark_pvc_ready(self, pvc: Obj) -> None:
        if (md(pvc).get("annotations") or {}).get(A_PVC_STATUS) != "ready":
            self.patch(pvc, {"metadata": {"annotations": {A_PVC_STATUS: "ready"}}}, "marked ready")

    def ensure_instances_created(
        self, c: Obj, status: Obj, pods: list[Obj], pvcs: list[Obj], reporting: list[Obj], major: int | None, w: World
    ) -> bool:
        """ensureInstancesAreCreated: a Pod for a dangling PVC (the primary's first); True: stop here."""
        names = {name_of(p) for p in pods}
        candidates = []
        for claim in [*(status.get("danglingPVC") or []), *(status.get("unusablePVC") or [])]:
            pvc = next((p for p in pvcs if name_of(p) == claim), None)
            serial = serial_of(pvc) if pvc else None
            if pvc is None or serial is None or f"{name_of(c)}-{serial}" in names:
                continue
            candidates.append((labels_of(pvc).get(L_ROLE) != "primary", serial, pvc))
        if not candidates:
            return False
        _, serial, _ = min(candidates, key=lambda x: (x[0], x[1]))
        instance = f"{name_of(c)}-{serial}"
        group = [p for p in pvcs if labels_of(p).get(L_INSTANCE) == instance or serial_of(p) == serial]
        if any(deleting(p) for p in group):
            return True
        if len(reporting) != status.get("readyInstances"):
            return True
        if any((md(p).get("annotations") or {}).get(A_PVC_STATUS) != "ready" for p in group):
            return True
        pod = self.plugin_lifecycle(c, build_instance_pod(c, serial, major), "postgres", w)
        pod["metadata"]["annotations"]["cnpg.io/podSpec"] = json.dumps(pod["spec"], sort_keys=True)
        self.create(pod)
        return True

    def plugin_lifecycle(self, c: Obj, obj: Obj, main: str, w: World) -> Obj:
        """The Barman Cloud plugin's lifecycle hook (lifecycle.go): the sidecar in instance Pods and
        in the full-recovery Job; env/resources/args from the ObjectStore, its endpoint CA projected."""
        barman = barman_config(c)
        if barman is None:
            return obj
        is_job = obj["kind"] == "Job"
        if is_job and (main != "full-recovery" or not barman.recovery_object):
            return obj
        if not is_job and not barman.object_name:
            return obj
        stores = {n: w.object_store(ns_of(c), n) or {} for n in barman.stores}
        source = barman.recovery_object if is_job else (barman.object_name or barman.recovery_object)
        sidecar_config = ((stores.get(source) or {}).get("spec") or {}).get("instanceSidecarConfiguration") or {}
        env: list[Obj] = []
        for store_name in (barman.object_name, barman.recovery_object):
            if store_name:
                store_sidecar = ((stores.get(store_name) or {}).get("spec") or {}).get(
                    "instanceSidecarConfiguration"
                ) or {}
                env += store_sidecar.get("env") or []
        certs = []
        for store_name, store in sorted(stores.items()):
            ca = ((store.get("spec") or {}).get("configuration") or {}).get("endpointCA")
            if ca:
                certs.append(
                    {
                        "secret": {
                            "name": ca["name"],
                            "items": [{"key": ca["key"], "path": f"{store_name}/barman-ca.crt"}],
                        }
                    }
                )
        args = ["restore"] if is_job else ["instance"]
        if not is_job:
            args += list(sidecar_config.get("additionalContainerArgs") or [])
            if sidecar_config.get("logLevel"):
                args.append(f"--log-level={sidecar_config['logLevel']}")
        pod_spec = obj["spec"]["template"]["spec"] if is_job else obj["spec"]
        inject_sidecar(pod_spec, main, args, sidecar_config.get("resources") or {}, env, certs, self.sidecar_image())
        for item in next(x for x in pod_spec["initContainers"] if x["name"] == "plugin-barman-cloud")["env"]:
            if item["name"] == "NAMESPACE" and not item["value"]:
                item["value"] = ns_of(c)
            if item["name"] == "CLUSTER_NAME" and not item["value"]:
                item["value"] = name_of(c)
        return obj

    def create_pvcs(self, c: Obj, serial: int) -> None:
        for wal in (False, True) if (c.get("spec") or {}).get("walStorage") else (False,):
            self.create(build_pvc(c, serial, wal))

    def create_primary(self, c: Obj, status: Obj, major: int | None, w: World) -> None:
        """createPrimaryInstance (cluster_create.go)."""
        if (condition({"status": status}, "Initialized") or {}).get("status") == "True":
            self.register_phase(
                status,
                PHASE_UNRECOVERABLE,
                "One or more instances were previously created, but no PersistentVolumeClaims (PVCs) exist. "
                "The cluster is in an unrecoverable state. To resolve this, restore the cluster from a recent backup.",
            )
            return
        serial = self.node_serial(c, status)
        self.create_pvcs(c, serial)
        method, _ = bootstrap_method(c.get("spec") or {})
        role = JOB_ROLES[method]
        job = self.plugin_lifecycle(c, build_job(c, serial, role, major), role, w)
        instance = f"{name_of(c)}-{serial}"
        status["targetPrimary"] = instance
        status["targetPrimaryTimestamp"] = rfc3339_micro(now())
        self.register_phase(status, PHASE_FIRST_PRIMARY, f"Creating primary instance {instance}")
        self.create(job)

    @staticmethod
    def node_serial(c: Obj, status: Obj) -> int:  # generateNodeSerial
        names = status.get("instanceNames") or []
        for i in range(1, len(names) + 1):
            if f"{name_of(c)}-{i}" not in names:
                return i
        return len(names) + 1

    def join_replica(self, c: Obj, status: Obj, major: int | None, w: World) -> None:
        """reconcileMissingInstance -> joinReplicaInstance: the Job first, then the PVCs."""
        serial = self.node_serial(c, status)
        job = build_job(c, serial, "join", major)
        self.register_phase(status, PHASE_CREATING_REPLICA, f"Creating replica {name_of(job)}")
        self.create(job)
        self.create_pvcs(c, serial)

    def scale_down(self, c: Obj, status: Obj, pods: list[Obj], pvcs: list[Obj], jobs: list[Obj]) -> None:
        """scaleDownCluster: the highest-numbered instance that is not the primary."""
        primary = status.get("currentPrimary")
        candidates = sorted(
            (n for n in status.get("instanceNames") or [] if n != primary), key=lambda n: int(n.rsplit("-", 1)[1])
        )
        if not candidates:
            return
        victim = candidates[-1]
        for pvc in pvcs:
            if labels_of(pvc).get(L_INSTANCE) == victim and not deleting(pvc):
                self.delete(pvc, "scale down")
        for pod in pods:
            if name_of(pod) == victim and not deleting(pod):
                self.delete(pod, "scale down")
        for job in jobs:
            if labels_of(job).get(L_INSTANCE) == victim and not deleting(job):
                self.delete(job, "scale down", "Foreground")

    # -- a deleted Cluster (finalizers_delete.go notifyDeletionToOwnedResources)

    def notify_deletion(self, namespace: str, name: str, w: World) -> bool:
        done = True
        for db in w.databases:
            if ns_of(db) != namespace or ((db.get("spec") or {}).get("cluster") or {}).get("name") != name:
                continue
            status = dict(db.get("status") or {})
            if status.get("message") != CLUSTER_DELETED:
                status.update(applied=False, message=CLUSTER_DELETED)
                status.pop("observedGeneration", None)  # SetStatusObservedGeneration(0), omitempty
                if not self.put_status(db, status, "cluster deleted"):
                    done = False
                    continue
            finalizers = md(db).get("finalizers") or []
            if DATABASE_FINALIZER in finalizers:
                rest = [f for f in finalizers if f != DATABASE_FINALIZER]
                if not self.patch(
                    db,
                    {"metadata": {"finalizers": rest}},
                    f"removed finalizer {DATABASE_FINALIZER} (cluster deleted) from",
                ):
                    done = False
        return done

    # -- instance managers (internal/management/controller), in running instance Pods

    def pg(self, c: Obj, w: World) -> Postgres:
        uid = md(c)["uid"]
        if uid not in self.postgres:  # initdb's result, plus what the API says was applied since
            database, owner, _ = app_identity(c.get("spec") or {})
            model = Postgres(
                roles={r: {} for r in (*RESERVED_ROLES, owner)},
                databases={"postgres": "postgres", "template0": "postgres", "template1": "postgres", database: owner},
            )
            managed = ((c.get("status") or {}).get("managedRolesStatus") or {}).get("passwordStatus") or {}
            for role in ((c.get("spec") or {}).get("managed") or {}).get("roles") or []:
                if role["name"] in managed:
                    model.roles[role["name"]] = self.role_attributes(role)
            for db in w.databases:
                spec = db.get("spec") or {}
                if (
                    ns_of(db) == ns_of(c)
                    and (spec.get("cluster") or {}).get("name") == name_of(c)
                    and (db.get("status") or {}).get("applied") is True
                    and spec.get("ensure", "present") == "present"
                ):
                    model.databases[spec["name"]] = spec.get("owner", "postgres")
            self.postgres[uid] = model
        return self.postgres[uid]

    def instance_startup(self, c: Obj, w: World) -> None:
        """instance_startup.go (the first primary marks itself) / instance_controller.go reconcilePrimary
        (the failover target promotes itself): currentPrimary follows targetPrimary once its Pod runs."""
        pods = {name_of(p) for p in w.instances(c) if pod_running(p)}
        status = copy.deepcopy(c.get("status") or {})
        current, target = status.get("currentPrimary", ""), status.get("targetPrimary", "")
        if target in pods and current != target:
            status["currentPrimary"] = target
            status["currentPrimaryTimestamp"] = rfc3339_micro(now())
            self.put_status(c, status, f"{target} is the primary")

    def instance_managers(self, c: Obj, w: World) -> None:
        pods = {name_of(p): p for p in w.instances(c) if pod_running(p)}
        for backup in w.backups:  # each instance runs the backups the operator started on it
            instance_id = (backup.get("status") or {}).get("instanceID") or {}
            if ns_of(backup) == ns_of(c) and (backup.get("status") or {}).get("phase") == "started":
                pod = pods.get(instance_id.get("podName", ""))
                if pod is not None and (backup.get("spec") or {}).get("method") == "plugin":
                    self.run_plugin_backup(backup, c, pod, w)
        status = copy.deepcopy(c.get("status") or {})
        current, target = status.get("currentPrimary", ""), status.get("targetPrimary", "")
        if not current or current != target or current not in pods:
            return
        primary = pods[current]
        if ((c.get("spec") or {}).get("replica") or {}).get("enabled"):
            self.once(f"replica:{md(c)['uid']}", f"not emulated: replica cluster {ns_of(c)}/{name_of(c)}")
            return
        model = self.pg(c, w)
        self.reconcile_roles(c, status, model, w)
        barman = barman_config(c)
        # WAL archiving goes through the plugin's sidecar in the primary (the instance's /plugins socket)
        if barman and barman.archiver and has_sidecar(primary) and w.object_store(ns_of(c), barman.object_name):
            set_condition(
                status, "ContinuousArchiving", "True", "ContinuousArchivingSuccess", "Continuous archiving is working"
            )
        self.put_status(c, status, f"reconciled by {current}")
        for db in w.databases:
            spec = db.get("spec") or {}
            if ns_of(db) == ns_of(c) and (spec.get("cluster") or {}).get("name") == name_of(c):
                self.reconcile_database(db, c, model, w)

    @staticmethod
    def role_attributes(role: Obj) -> Obj:
        return {k: v for k, v in role.items() if k not in ("passwordSecret", "ensure")}

    def reconcile_roles(self, c: Obj, status: Obj, model: Postgres, w: World) -> None:
        """roles.Reconcile + RoleSynchronizer (internal/management/controller/roles): the primary applies
        spec.managed.roles and reports them in status.managedRolesStatus."""
        spec_roles = ((c.get("spec") or {}).get("managed") or {}).get("roles") or []
        if not spec_roles:
            return
        managed = dict(status.get("managedRolesStatus") or {})
        passwords: Obj = dict(managed.get("passwordStatus") or {})
        cannot: dict[str, list[str]] = {}
        for role in spec_roles:
            name = role["name"]
            if role.get("ensure", "present") == "absent":
                model.roles.pop(name, None)
                continue
            version = ""
            if role.get("passwordSecret") and not role.get("disablePassword"):
                secret_name = role["passwordSecret"]["name"]
                secret = self.secret(w, ns_of(c), secret_name)
                data = (secret or {}).get("data") or {}
                error = ""
                if secret is None:
                    error = f'failed to get password secret {secret_name}: secrets "{secret_name}" not found'
                elif "username" not in data:
                    error = "username key doesn't exist inside the secret"
                elif "password" not in data:
                    error = "password key doesn't exist inside the secret"
                elif base64.b64decode(data["username"]).decode().strip() != name.strip():
                    error = f'the username in secret "{secret_name}" does not match role "{name}"'
                if error:
                    cannot[name] = [error]
                    continue
                version = md(secret or {}).get("resourceVersion", "")
            attributes = self.role_attributes(role)
            stored = passwords.get(name) or {}
            if (
                model.roles.get(name) != attributes
                or stored.get("resourceVersion", "") != version
                or name not in passwords
            ):
                model.roles[name] = attributes
                model.xid += 1
                passwords[name] = {"transactionID": model.xid, **({"resourceVersion": version} if version else {})}
        in_spec = {r["name"]: r for r in spec_roles}
        by_status: dict[str, list[str]] = {}
        for name in sorted(set(model.roles) | set(in_spec)):
            role = in_spec.get(name)
            if name in RESERVED_ROLES:
                state = "reserved"
            elif role is None:
                state = "not-managed"
            elif name in cannot or (role.get("ensure", "present") == "present" and name not in model.roles):
                state = "pending-reconciliation"
            else:
                state = "reconciled"
            by_status.setdefault(state, []).append(name)
        managed["byStatus"] = by_status
        managed["passwordStatus"] = passwords
        if cannot:
            managed["cannotReconcile"] = cannot
        else:
            managed.pop("cannotReconcile", None)
        status["managedRolesStatus"] = managed

    def reconcile_database(self, db: Obj, c: Obj, model: Postgres, w: World) -> None:
        """database_controller.go Reconcile, in the primary's instance manager."""
        spec, status = db.get("spec") or {}, dict(db.get("status") or {})
        generation = md(db).get("generation", 0)
        if not deleting(db) and generation == status.get("observedGeneration") and status.get("applied") is True:
            return
        finalizers = md(db).get("finalizers") or []
        if deleting(db):  # finalizers.go: drop if asked (and ever reconciled), then release
            if DATABASE_FINALIZER in finalizers:
                if spec.get("databaseReclaimPolicy") == "delete" and int(status.get("observedGeneration") or 0) > 0:
                    model.databases.pop(spec.get("name", ""), None)
                rest = [f for f in finalizers if f != DATABASE_FINALIZER]
                self.patch(
                    db, {"metadata": {"finalizers": rest}}, f"removed finalizer {DATABASE_FINALIZER} from", lock=True
                )
            return
        added = [*finalizers, DATABASE_FINALIZER]
        if DATABASE_FINALIZER not in finalizers and not self.patch(
            db, {"metadata": {"finalizers": added}}, f"added finalizer {DATABASE_FINALIZER} to", lock=True
        ):
            return
        if int(status.get("observedGeneration") or 0) == 0:  # detectConflictingManagers
            for other in w.databases:
                other_spec = other.get("spec") or {}
                if (
                    ns_of(other) == ns_of(db)
                    and name_of(other) != name_of(db)
                    and (other_spec.get("cluster") or {}).get("name") == name_of(c)
                    and int((other.get("status") or {}).get("observedGeneration") or 0) > 0
                    and other_spec.get("name") == spec.get("name")
                ):
                    status.update(
                        applied=False, message=f'"{spec.get("name")}" is already managed by object "{name_of(other)}"'
                    )
                    self.put_status(db, status, "conflict")
                    return
        name, owner = spec.get("name", ""), spec.get("owner", "")
        error = ""
        if spec.get("ensure", "present") == "absent":
            model.databases.pop(name, None)
        elif owner and owner not in model.roles:
            verb = "altering database %r owner" if name in model.databases else "creating database %r"
            error = f'while {verb % name}: ERROR: role "{owner}" does not exist (SQLSTATE 42704)'.replace("'", '"')
        else:
            model.databases[name] = owner or model.databases.get(name, "postgres")
            for kind in ("schemas", "extensions", "fdws", "servers"):
                if spec.get(kind):
                    status[kind] = [{"name": item["name"], "applied": True} for item in spec[kind]]
        if error:
            status.update(applied=False, message=error)
            self.put_status(db, status, "failed")
            return
        status.pop("message", None)
        status.update(applied=True, observedGeneration=generation)
        self.put_status(db, status, "applied")

    def orphaned_databases(self, w: World) -> None:
        """Instance managers whose Cluster is gone (Pods not yet collected): GetCluster fails, so a
        Database not reconciled at its generation is marked failed (database_controller.go)."""
        clusters = {(ns_of(c), name_of(c)) for c in w.clusters}
        alive = {
            (ns_of(p), labels_of(p).get(L_CLUSTER))
            for p in w.pods
            if pod_running(p) and labels_of(p).get(L_POD_ROLE) == "instance"
        }
        for db in w.databases:
            key = (ns_of(db), ((db.get("spec") or {}).get("cluster") or {}).get("name"))
            status = dict(db.get("status") or {})
            if key in clusters or key not in alive or md(db).get("generation") == status.get("observedGeneration"):
                continue
            message = f'while fetching the cluster: clusters.postgresql.cnpg.io "{key[1]}" not found'
            if status.get("message") != message:
                status.update(applied=False, message=message)
                self.put_status(db, status, "cluster not found")

    # -- backups (scheduledbackup_controller.go, backup_controller.go, webserver/plugin_backup.go)

    def reconcile_scheduled_backup(self, sb: Obj, w: World) -> None:
        spec, status = sb.get("spec") or {}, dict(sb.get("status") or {})
        if spec.get("suspend") or deleting(sb):
            return
        children = [
            b
            for b in w.backups
            if ns_of(b) == ns_of(sb) and labels_of(b).get("cnpg.io/scheduled-backup") == name_of(sb)
        ]
        if any((b.get("status") or {}).get("phase") not in ("completed", "failed") for b in children):
            return
        try:
            schedule = CronSchedule(spec.get("schedule", ""))
        except (ValueError, KeyError) as e:
            self.once(f"cron:{md(sb)['uid']}", f"ScheduledBackup {ns_of(sb)}/{name_of(sb)}: invalid schedule: {e}")
            return
        moment = now().replace(microsecond=0)
        following = schedule.next(moment)
        if following is None:
            return
        immediate = spec.get("immediate") is True
        if not status.get("lastCheckTime"):
            if not immediate:
                status["lastCheckTime"] = rfc3339(moment)
                self.put_status(sb, status, f"first backup by {rfc3339(following)}")
                return
            existing = [b for b in children if labels_of(b).get("cnpg.io/immediateBackup") == "true"]
            if existing or self.create_backup(sb, w, moment, True):
                scheduled = parse_time(md(existing[0])["creationTimestamp"]) if existing else moment
                status.update(
                    lastCheckTime=rfc3339(moment),
                    lastScheduleTime=rfc3339(scheduled),
                    nextScheduleTime=rfc3339(following),
                )
                self.put_status(sb, status, f"next backup {rfc3339(following)}")
            return
        due = schedule.next(parse_time(status["lastCheckTime"]))
        if due is None or moment < due:
            return
        name = f"{name_of(sb)}-{due.strftime('%Y%m%d%H%M%S')}"
        if any(name_of(b) == name for b in children) or self.create_backup(sb, w, due, False):
            status.update(
                lastCheckTime=rfc3339(moment), lastScheduleTime=rfc3339(due), nextScheduleTime=rfc3339(following)
            )
            self.put_status(sb, status, f"next backup {rfc3339(following)}")

    def create_backup(self, sb: Obj, w: World, when: datetime, immediate: bool) -> bool:
        spec = sb.get("spec") or {}
        cluster_name = (spec.get("cluster") or {}).get("name", "")
        backup_spec = {
            k: spec[k]
            for k in ("cluster", "target", "method", "online", "onlineConfiguration", "pluginConfiguration")
            if k in spec
        }
        meta: Obj = {
            "name": f"{name_of(sb)}-{when.strftime('%Y%m%d%H%M%S')}",
            "namespace": ns_of(sb),
            "labels": {
                L_CLUSTER: cluster_name,
                "cnpg.io/immediateBackup": str(immediate).lower(),
                "cnpg.io/scheduled-backup": name_of(sb),
            },
        }
        owner = spec.get("backupOwnerReference", "none")
        if owner == "self":
            meta["ownerReferences"] = [owner_ref(sb)]
        elif owner == "cluster":
            cluster = w.cluster(ns_of(sb), cluster_name)
            if cluster is None:
                return False
            labels, annotations = inherited(cluster)
            meta["labels"].update(labels)
            meta["annotations"] = annotations
            meta["ownerReferences"] = [owner_ref(cluster)]
        return self.create({"apiVersion": CNPG, "kind": "Backup", "metadata": meta, "spec": backup_spec}) is not None

    def fail_backup(self, backup: Obj, cluster: Obj | None, message: str) -> None:
        """status.FlagBackupAsFailed: the Backup failed, and the Cluster's LastBackupSucceeded False."""
        status = dict(backup.get("status") or {})
        status.update(phase="failed", error=message, method=(backup.get("spec") or {}).get("method"))
        self.put_status(backup, status, "failed")
        if cluster is not None:
            cluster_status = copy.deepcopy(cluster.get("status") or {})
            set_condition(cluster_status, "LastBackupSucceeded", "False", "LastBackupFailed", message)
            self.put_status(cluster, cluster_status, "backup failed")

    def reconcile_backup(self, backup: Obj, w: World) -> None:
        spec, status = backup.get("spec") or {}, dict(backup.get("status") or {})
        if status.get("phase") in ("completed", "failed", "started") or deleting(backup):
            return
        if spec.get("method") != "plugin":
            self.once(
                f"method:{md(backup)['uid']}",
                f"not emulated: Backup {ns_of(backup)}/{name_of(backup)} method {spec.get('method') or 'barmanObjectStore'}",
            )
            return
        cluster = w.cluster(ns_of(backup), (spec.get("cluster") or {}).get("name", ""))
        if cluster is None:
            if status.get("phase") != "pending":
                status["phase"] = "pending"
                self.put_status(backup, status, "pending (unknown cluster)")
            return
        if not (cluster.get("spec") or {}).get("plugins"):
            self.fail_backup(backup, cluster, "cannot proceed with the backup as the cluster has no plugin configured")
            return
        cluster_status = cluster.get("status") or {}
        others = [
            b
            for b in w.backups
            if b is not backup
            and ns_of(b) == ns_of(backup)
            and (b.get("spec") or {}).get("cluster", {}).get("name") == name_of(cluster)
            and (b.get("status") or {}).get("phase") in ("started", "running", "finalizing")
        ]
        target_policy = spec.get("target") or ((cluster.get("spec") or {}).get("backup") or {}).get("target") or ""
        image = cluster_status.get("image")
        pods = [p for p in w.instances(cluster) if pod_ready(p) and p["spec"]["containers"][0].get("image") == image]
        primary = cluster_status.get("targetPrimary")
        elected = next(
            (p for p in pods if (name_of(p) == primary) == (target_policy == "primary")),
            next((p for p in w.instances(cluster) if name_of(p) == primary), None),
        )
        if others or elected is None or not pod_ready(elected) or not pod_running(elected):
            if status.get("phase") != "pending":
                status["phase"] = "pending"
                self.put_status(backup, status, "pending")
            return
        container: Obj = next(
            (s for s in (elected.get("status") or {}).get("containerStatuses") or [] if s.get("name") == "postgres"), {}
        )
        status.pop("error", None)
        status.update(
            phase="started",
            method="plugin",
            instanceID={
                "podName": name_of(elected),
                "containerID": container.get("containerID", ""),
                "sessionID": md(elected).get("uid", ""),
            },
            reconciliationStartedAt=rfc3339(now()),
        )
        major = (cluster_status.get("pgDataImageInfo") or {}).get("majorVersion")
        if major:
            status["majorVersion"] = major
        self.put_status(backup, status, f"started on {name_of(elected)}")

    def run_plugin_backup(self, backup: Obj, c: Obj, pod: Obj, w: World) -> None:
        """PluginBackupCommand (instance manager, through the plugin's sidecar in that Pod) + the Barman
        Cloud plugin's backup and recovery window."""
        plugin = ((backup.get("spec") or {}).get("pluginConfiguration") or {}).get("name", "")
        if plugin != BARMAN_PLUGIN or not has_sidecar(pod):
            self.fail_backup(backup, c, f"requested plugin is not available: {plugin}")
            return
        barman = barman_config(c)
        store = w.object_store(ns_of(c), barman.object_name) if barman and barman.object_name else None
        if plugin == BARMAN_PLUGIN and (barman is None or store is None):
            name = barman.object_name if barman else ""
            self.fail_backup(backup, c, f'objectstores.barmancloud.cnpg.io "{name}" not found')
            return
        status = dict(backup.get("status") or {})
        started = parse_time(status.get("reconciliationStartedAt") or rfc3339(now()))
        stopped = now()
        backup_id = started.strftime("%Y%m%dT%H%M%S")
        status.update(
            phase="completed",
            reconciliationTerminatedAt=rfc3339(stopped),
            backupId=backup_id,
            backupName=f"backup-{backup_id}",
            beginWal="000000010000000000000002",
            endWal="000000010000000000000002",
            beginLSN="0/2000028",
            endLSN="0/2000138",
            online=True,
            startedAt=rfc3339(started),
            stoppedAt=rfc3339(stopped),
        )
        status.pop("error", None)
        if not self.put_status(backup, status, "completed"):
            return
        cluster_status = copy.deepcopy(c.get("status") or {})
        set_condition(cluster_status, "LastBackupSucceeded", "True", "LastBackupSucceeded", "Backup was successful")
        self.put_status(c, cluster_status, "backup succeeded")
        if store is not None and barman is not None:  # recovery_window.go updateRecoveryWindow
            store_status = copy.deepcopy(store.get("status") or {})
            window = store_status.setdefault("serverRecoveryWindow", {}).setdefault(barman.server_name, {})
            window.setdefault("firstRecoverabilityPoint", rfc3339(stopped))
            window["lastSuccessfulBackupTime"] = rfc3339(stopped)
            self.put_status(store, store_status, f"recovery window of {barman.server_name}")

    # -- an ingress controller (only with --ingress-status)

    def reconcile_ingress(self, ingress: Obj) -> None:
        if ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            return
        self.patch(
            ingress,
            {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
            "load balancer 127.0.0.1 for",
            sub="status",
        )


PLURALS = {
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Service": "services",
    "Secret": "secrets",
    "ServiceAccount": "serviceaccounts",
    "Job": "jobs",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Ingress": "ingresses",
    "Cluster": "clusters",
    "Database": "databases",
    "Backup": "backups",
    "ScheduledBackup": "scheduledbackups",
    "ObjectStore": "objectstores",
}


# --- running it -----------------------------------------------------------------------------------


def _logger(log_path: Path | None) -> tuple[Callable[[str], None], IO[str] | None]:
    handle = log_path.open("a", encoding="utf-8") if log_path else None

    def log(message: str) -> None:
        line = f"{datetime.now(UTC).strftime('%H:%M:%S.%f')[:-3]} {message}\n"
        if handle:
            handle.write(line)
            handle.flush()
        else:
            sys.stderr.write(line)

    return log, handle


def run(
    kubeconfig: Path | str,
    stop_event: threading.Event,
    *,
    log_path: Path | str | None = None,
    ingress_status: bool = False,
    operator_namespace: str = "cnpg-system",
    operator_deployment: str = "",
    watch_namespaces: Sequence[str] = (),
    interval: float = 0.5,
) -> None:
    """Reconcile until stop_event is set (errors are logged and retried on the next pass)."""
    log, handle = _logger(Path(log_path) if log_path else None)
    try:
        options = Options(ingress_status, operator_namespace, operator_deployment, tuple(watch_namespaces))
        standin = Standin(Kube(Path(kubeconfig)), log, options)
        ready = False
        failing = ""
        while not stop_event.is_set():
            try:
                standin.step()
                if not ready:
                    ready = True
                    log(f"standin ready (kubeconfig {kubeconfig}, ingress status {'on' if ingress_status else 'off'})")
                failing = ""
            except Exception as e:  # the API may be restarting: say so once, keep going
                message = f"{type(e).__name__}: {e}".splitlines()[0]
                if message != failing:
                    log(f"pass failed: {message}")
                    failing = message
            stop_event.wait(interval)
        log("standin stopped")
    finally:
        if handle:
            handle.close()


@contextlib.contextmanager
def running(
    kubeconfig: Path | str,
    log_path: Path | str,
    *,
    ingress_status: bool = False,
    operator_namespace: str = "cnpg-system",
    operator_deployment: str = "",
    watch_namespaces: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """The stand-in as a subprocess (its log in log_path), ready on entry, stopped (by pid) on exit."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = log_path.stat().st_size if log_path.exists() else 0
    cmd = [sys.executable, "-m", "tests.live.standin_operator", "--kubeconfig", str(kubeconfig), "--log", str(log_path)]
    cmd += ["--operator-namespace", operator_namespace]
    if operator_deployment:
        cmd += ["--operator-deployment", operator_deployment]
    if watch_namespaces:
        cmd += ["--watch-namespace", ",".join(watch_namespaces)]
    if ingress_status:
        cmd.append("--ingress-status")
    with log_path.open("ab") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + ready_timeout
        while "standin ready" not in log_path.read_text(errors="replace")[start:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace")[start:].splitlines()[-20:])
                raise RuntimeError(f"standin operator not ready (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.live.standin_operator", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--log", type=Path, help="append one line per action here (default: stderr)")
    parser.add_argument("--ingress-status", action="store_true", help="also play an ingress controller")
    parser.add_argument("--operator-namespace", default="cnpg-system", help="where plugin Services are found")
    parser.add_argument("--operator-deployment", default="", help="NAMESPACE/NAME: act only while it is ready")
    parser.add_argument("--watch-namespace", default="", help="NS[,NS...]: only these (WATCH_NAMESPACE)")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(
        args.kubeconfig,
        stop,
        log_path=args.log,
        ingress_status=args.ingress_status,
        operator_namespace=args.operator_namespace,
        operator_deployment=args.operator_deployment,
        watch_namespaces=[n for n in args.watch_namespace.split(",") if n],
        interval=args.interval,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
