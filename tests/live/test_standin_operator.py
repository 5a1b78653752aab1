"""The stand-in CloudNativePG operator (tests/live/standin_operator.py) on the live control plane.

The CNPG CRDs (../shared/crds/cloudnative-pg) are applied server-side, the stand-in runs as a
subprocess for the module, and hand-written Clusters/Databases in restricted namespaces go through
what the real operator and instance manager would make of them.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.live import standin_operator, waiting
from tools.local_cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT.parent / "shared" / "crds" / "cloudnative-pg"
OBJECT_STORE_CRD = ROOT.parent / "shared" / "crds" / "plugin-barman-cloud" / "objectstores.barmancloud.cnpg.io.yaml"
# This module's stand-in: its own operator namespace (where it finds plugins) and the namespaces it
# watches (CNPG's WATCH_NAMESPACE), so stand-ins of other test modules never act on these objects.
OPERATOR_NS = "standin-cnpg-system"
WATCHED = ("standin-cnpg", "standin-tls", "standin-backup", "standin-plugin", "standin-ingress")
PLUGIN = "barman-cloud.cloudnative-pg.io"
IMAGE = "ghcr.io/cloudnative-pg/postgresql:17.5-standard-bookworm"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@pytest.fixture(scope="module")
def cnpg(live_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """The CRDs installed and the stand-in running (its log: the second element)."""
    crds = [*sorted(CRDS.glob("*.yaml")), OBJECT_STORE_CRD]
    live_cluster.kubectl("apply", "--server-side", "--force-conflicts", *(f"--filename={p}" for p in crds))
    names = [f"crd/{p.name.removesuffix('.yaml')}" for p in crds]
    live_cluster.kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")
    log = tmp_path_factory.mktemp("standin") / "standin.log"
    with standin_operator.running(
        live_cluster.kubeconfig, log, operator_namespace=OPERATOR_NS, watch_namespaces=WATCHED
    ):
        yield live_cluster, log


def wait_until(what: str, check: Callable[[], Any], cluster: Cluster, log: Path, timeout: float = 120) -> Any:
    def stand_in_log() -> str:
        return "--- stand-in log ---\n" + "\n".join(log.read_text().splitlines()[-25:])

    return waiting.wait_until(what, check, cluster, timeout, stand_in_log)


def restricted_namespace(cluster: Cluster, name: str) -> str:
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    return name


def get(cluster: Cluster, kind: str, name: str, ns: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def gone(cluster: Cluster, kind: str, name: str, ns: str | None = None) -> bool:
    args = ("get", kind, name, *(("-n", ns) if ns else ()))
    return cluster.kubectl(*args, check=False).returncode != 0


def has_condition(obj: dict[str, Any] | None, kind: str, status: str = "True") -> bool:
    return any(
        c["type"] == kind and c["status"] == status for c in ((obj or {}).get("status") or {}).get("conditions", [])
    )


def basic_auth(name: str, ns: str, username: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": username, "password": "s3cret!"},
    }


def cnpg_cluster(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "instances": 1,
            "imageName": IMAGE,
            "storage": {"size": "1Gi"},
            "resources": RESOURCES,
            "enableSuperuserAccess": False,
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
            **spec,
        },
    }


def database(name: str, ns: str, db: str, cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Database",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"name": db, "owner": "app", "cluster": {"name": cluster}, "ensure": "present"},
    }


def applied(cluster: Cluster, name: str, ns: str) -> dict[str, Any] | None:
    db = get(cluster, "database", name, ns)
    if db and db.get("status", {}).get("applied") is True:
        return db
    return None


def controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return [(r["kind"], r["uid"], r.get("controller")) for r in obj["metadata"].get("ownerReferences", [])] == [
        ("Cluster", owner["metadata"]["uid"], True)
    ]


def test_cluster_lifecycle(cnpg: tuple[Cluster, Path]) -> None:
    kube, log = cnpg
    ns = restricted_namespace(kube, "standin-cnpg")
    kube.apply(
        basic_auth("app-credentials", ns, "app"),
        cnpg_cluster(
            "pg",
            ns,
            bootstrap={"initdb": {"database": "app", "owner": "app", "secret": {"name": "app-credentials"}}},
            managed={
                "roles": [
                    {"name": "app", "ensure": "present", "login": True, "passwordSecret": {"name": "app-credentials"}}
                ]
            },
        ),
    )
    # What Pulumi's waitFor (condition=Ready) looks at.
    wait_until("Cluster pg Ready", lambda: has_condition(get(kube, "cluster", "pg", ns), "Ready"), kube, log)
    # The primary's instance manager reports the managed roles (same pass, just after).
    cluster = wait_until(
        "managed roles reported",
        lambda: (c := get(kube, "cluster", "pg", ns)) and "managedRolesStatus" in c["status"] and c,
        kube,
        log,
    )
    status = cluster["status"]
    assert status["phase"] == "Cluster in healthy state"
    assert (status["instances"], status["readyInstances"]) == (1, 1)
    assert status["currentPrimary"] == status["targetPrimary"] == "pg-1"
    assert (status["writeService"], status["readService"]) == ("pg-rw", "pg-r")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ClusterIsReady"
    assert status["managedRolesStatus"]["byStatus"]["reconciled"] == ["app"]
    assert status["managedRolesStatus"]["byStatus"]["reserved"] == ["postgres", "streaming_replica"]
    assert set(status["managedRolesStatus"]["passwordStatus"]) == {"app"}

    for suffix, selector in (
        ("rw", {"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": "primary"}),
        ("ro", {"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": "replica"}),
        ("r", {"cnpg.io/cluster": "pg", "cnpg.io/podRole": "instance"}),
    ):
        svc = get(kube, "service", f"pg-{suffix}", ns)
        assert svc is not None and controlled_by(svc, cluster)
        assert svc["spec"]["selector"] == selector
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(5432, 5432)]

    pvc = get(kube, "pvc", "pg-1", ns)
    assert pvc is not None and controlled_by(pvc, cluster)
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert {
        k: pvc["metadata"]["labels"][k] for k in ("cnpg.io/cluster", "cnpg.io/instanceName", "cnpg.io/pvcRole")
    } == {
        "cnpg.io/cluster": "pg",
        "cnpg.io/instanceName": "pg-1",
        "cnpg.io/pvcRole": "PG_DATA",
    }

    pod = get(kube, "pod", "pg-1", ns)
    assert pod is not None and controlled_by(pod, cluster)
    assert pod["status"]["phase"] == "Running" and has_condition(pod, "Ready")
    labels = pod["metadata"]["labels"]
    assert (labels["cnpg.io/instanceRole"], labels["role"], labels["cnpg.io/podRole"]) == (
        "primary",
        "primary",
        "instance",
    )
    security = pod["spec"]["securityContext"]
    assert (security["runAsNonRoot"], security["runAsUser"], security["seccompProfile"]["type"]) == (
        True,
        26,
        "RuntimeDefault",
    )
    for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    postgres = pod["spec"]["containers"][0]
    assert (postgres["image"], postgres["resources"]) == (IMAGE, RESOURCES)
    assert {"name": "pgdata", "persistentVolumeClaim": {"claimName": "pg-1"}} in pod["spec"]["volumes"]
    assert "nodeSelector" not in pod["spec"]
    # The bootstrap Job ran (kwok: Succeeded) and was cleaned up once the cluster was healthy.
    wait_until("Job pg-1-initdb removed", lambda: gone(kube, "job", "pg-1-initdb", ns), kube, log)

    kube.apply(database("db-one", ns, "one", "pg"), database("db-two", ns, "two", "pg"))
    for name in ("db-one", "db-two"):
        db = wait_until(f"Database {name} applied", functools.partial(applied, kube, name, ns), kube, log)
        assert db["metadata"]["finalizers"] == ["cnpg.io/deleteDatabase"]
        assert db["status"]["observedGeneration"] == db["metadata"]["generation"]
    # With the primary running, deleting a Database releases it.
    kube.kubectl("delete", "database", "db-one", "-n", ns, "--timeout=60s")

    # A deleted primary Pod comes back (its PVC reattached), while the Cluster exists.
    first_uid = pod["metadata"]["uid"]
    kube.kubectl("delete", "pod", "pg-1", "-n", ns, "--grace-period=0", "--force")

    def recreated() -> bool:
        again = get(kube, "pod", "pg-1", ns)
        return bool(again and again["metadata"]["uid"] != first_uid and has_condition(again, "Ready"))

    wait_until("Pod pg-1 recreated", recreated, kube, log)

    # The trap: with the primary gone for good, a deleted Database keeps its finalizer...
    kube.kubectl("annotate", "cluster", "pg", "-n", ns, "cnpg.io/reconciliationLoop=disabled")
    time.sleep(1.5)  # a pass of the stand-in sees the annotation before the Pod goes
    kube.kubectl("delete", "pod", "pg-1", "-n", ns, "--grace-period=0", "--force")
    wait_until("Pod pg-1 gone", lambda: gone(kube, "pod", "pg-1", ns), kube, log)
    kube.kubectl("delete", "database", "db-two", "-n", ns, "--wait=false")
    time.sleep(5)
    stuck = get(kube, "database", "db-two", ns)
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp")
    assert stuck["metadata"]["finalizers"] == ["cnpg.io/deleteDatabase"]
    assert gone(kube, "pod", "pg-1", ns)  # reconciliation disabled: not recreated

    # ...until the Cluster is deleted: the operator's cleanup (finalizers_delete.go) releases it.
    kube.kubectl("delete", "cluster", "pg", "-n", ns, "--wait=false")
    wait_until("Database db-two gone", lambda: gone(kube, "database", "db-two", ns), kube, log)
    assert (
        "removed finalizer cnpg.io/deleteDatabase (cluster deleted) from Database standin-cnpg/db-two"
        in log.read_text()
    )

    kube.kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: gone(kube, "namespace", ns), kube, log, timeout=180)


def _pem_pair(common_name: str, dns: list[str]) -> tuple[bytes, bytes, bytes]:
    """(ca.crt, tls.crt, tls.key): a CA and a server certificate it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=30)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "standin test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(serialization.Encoding.PEM), leaf.public_bytes(serialization.Encoding.PEM), key_pem


def test_user_certificates_gate_the_cluster(cnpg: tuple[Cluster, Path]) -> None:
    """setupPostgresPKI: a missing server certificate stops everything (no PVC, no Pod) with the
    phase the real operator registers; once the Secrets exist the cluster comes up."""
    kube, log = cnpg
    ns = restricted_namespace(kube, "standin-tls")
    certificates = {"serverTLSSecret": "pg-server-tls", "serverCASecret": "pg-server-ca"}
    kube.apply(cnpg_cluster("pg", ns, certificates=certificates))

    def blocked() -> dict[str, Any] | None:
        obj = get(kube, "cluster", "pg", ns)
        return (
            obj if (obj or {}).get("status", {}).get("phase") == "Unable to create required cluster objects" else None
        )

    cluster = wait_until("Cluster pg blocked", blocked, kube, log)
    assert "missing specified server CA secret pg-server-ca" in cluster["status"]["phaseReason"]
    assert not has_condition(cluster, "Ready")
    assert gone(kube, "pvc", "pg-1", ns) and gone(kube, "job", "pg-1-initdb", ns)

    ca, crt, key = _pem_pair("pg-rw", ["pg-rw", f"pg-rw.{ns}.svc"])

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-server-ca", "namespace": ns},
            "data": {"ca.crt": b64(ca)},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "pg-server-tls", "namespace": ns},
            "data": {"tls.crt": b64(crt), "tls.key": b64(key)},
        },
    )
    wait_until("Cluster pg Ready", lambda: has_condition(get(kube, "cluster", "pg", ns), "Ready"), kube, log)
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: gone(kube, "namespace", ns), kube, log, timeout=180)


def test_scheduled_backup_immediate_backup_without_plugin(cnpg: tuple[Cluster, Path]) -> None:
    """An immediate ScheduledBackup creates `<name>-<YYYYMMDDHHMMSS>` at once; method plugin on a
    Cluster without plugins fails as the operator's checkPrerequisites does."""
    kube, log = cnpg
    ns = restricted_namespace(kube, "standin-backup")
    kube.apply(
        cnpg_cluster("pg", ns),
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "ScheduledBackup",
            "metadata": {"name": "pg-daily", "namespace": ns},
            "spec": {
                "schedule": "0 0 3 * * *",
                "cluster": {"name": "pg"},
                "method": "plugin",
                "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"},
                "immediate": True,
                "backupOwnerReference": "self",
            },
        },
    )

    def backups() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kube.get_json("backups", "-n", ns)["items"]
        return [b for b in items if b.get("status", {}).get("phase") == "failed"]

    [backup] = wait_until("the immediate Backup failed", backups, kube, log)
    assert (
        backup["metadata"]["name"].startswith("pg-daily-") and len(backup["metadata"]["name"]) == len("pg-daily-") + 14
    )
    assert backup["metadata"]["labels"]["cnpg.io/immediateBackup"] == "true"
    assert backup["metadata"]["ownerReferences"][0]["kind"] == "ScheduledBackup"
    assert backup["status"]["error"] == "cannot proceed with the backup as the cluster has no plugin configured"
    scheduled = get(kube, "scheduledbackup", "pg-daily", ns)
    assert scheduled is not None and scheduled["status"]["nextScheduleTime"].endswith("T03:00:00Z")
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: gone(kube, "namespace", ns), kube, log, timeout=180)


def test_ingress_status_only_with_the_flag(cnpg: tuple[Cluster, Path], tmp_path: Path) -> None:
    kube, log = cnpg
    ns = restricted_namespace(kube, "standin-ingress")
    kube.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        }
    )
    time.sleep(2)
    ingress = get(kube, "ingress", "web", ns)
    assert ingress is not None and not ingress.get("status", {}).get("loadBalancer")  # off by default
    with standin_operator.running(
        kube.kubeconfig,
        tmp_path / "ingress.log",
        ingress_status=True,
        operator_namespace=OPERATOR_NS,
        watch_namespaces=[ns],
    ):
        wait_until(
            "Ingress status",
            lambda: (
                (get(kube, "ingress", "web", ns) or {})["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1"}]
            ),
            kube,
            tmp_path / "ingress.log",
        )
    kube.kubectl("delete", "namespace", ns, "--wait=false")


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def fake_plugin(kube: Cluster, ns: str, sidecar_image: str) -> list[dict[str, Any]]:
    """What the plugin's release manifest puts beside the operator, as far as the operator looks:
    the Service (name label, secrets and port annotations) and ready Pods behind it."""
    ca, crt, key = _pem_pair("barman-cloud", ["barman-cloud"])

    def tls(name: str) -> dict[str, Any]:
        data = {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}
        data["ca.crt"] = base64.b64encode(ca).decode()
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": data,
        }

    labels = {"app": "barman-cloud"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        tls("barman-cloud-server-tls"),
        tls("barman-cloud-client-tls"),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "barman-cloud", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "barman-cloud",
                                "image": "ghcr.io/cloudnative-pg/plugin-barman-cloud:v0.14.0",
                                "env": [{"name": "SIDECAR_IMAGE", "value": sidecar_image}],
                                "securityContext": RESTRICTED,
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "barman-cloud",
                "namespace": ns,
                "labels": {"cnpg.io/pluginName": PLUGIN},
                "annotations": {
                    "cnpg.io/pluginClientSecret": "barman-cloud-client-tls",
                    "cnpg.io/pluginServerSecret": "barman-cloud-server-tls",
                    "cnpg.io/pluginPort": "9090",
                },
            },
            "spec": {"selector": labels, "ports": [{"port": 9090, "targetPort": 9090}]},
        },
    ]


def test_backups_through_the_barman_cloud_plugin(cnpg: tuple[Cluster, Path]) -> None:
    """Plugin registration (Service finalizer), the Cluster waiting for its ObjectStore, the sidecar
    in the instance Pod (still Pod Security restricted), WAL archiving, an immediate ScheduledBackup
    completed and the ObjectStore's recovery window."""
    kube, log = cnpg
    ns = restricted_namespace(kube, "standin-plugin")
    sidecar = "example.com/barman-cloud-sidecar:test"
    sidecar_resources = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    kube.apply(
        cnpg_cluster(
            "pg",
            ns,
            plugins=[
                {
                    "name": PLUGIN,
                    "enabled": True,
                    "isWALArchiver": True,
                    "parameters": {"barmanObjectName": "store", "serverName": "pg"},
                }
            ],
        )
    )

    def phase() -> str:
        return str(((get(kube, "cluster", "pg", ns) or {}).get("status") or {}).get("phase", ""))

    # No plugin registered: the operator stops before creating anything of the cluster's.
    wait_until("unknown plugin", lambda: "unknown plugin" in phase(), kube, log)
    assert gone(kube, "service", "pg-rw", ns)
    kube.apply(*fake_plugin(kube, OPERATOR_NS, sidecar))
    service = wait_until(
        "plugin Service finalizer",
        lambda: (
            "cnpg.io/cleanupPlugin"
            in ((s := get(kube, "service", "barman-cloud", OPERATOR_NS)) or {})
            .get("metadata", {})
            .get("finalizers", [])
            and s
        ),
        kube,
        log,
    )
    assert service is not None
    # Registered, but the ObjectStore is missing: the plugin's pre-reconcile hook holds the instances.
    wait_until("Services of pg", lambda: not gone(kube, "service", "pg-rw", ns), kube, log)
    time.sleep(2)
    assert gone(kube, "pvc", "pg-1", ns)
    kube.apply(
        {
            "apiVersion": "barmancloud.cnpg.io/v1",
            "kind": "ObjectStore",
            "metadata": {"name": "store", "namespace": ns},
            "spec": {
                "configuration": {"destinationPath": "s3://backups/"},
                "retentionPolicy": "30d",
                "instanceSidecarConfiguration": {"resources": sidecar_resources},
            },
        },
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "ScheduledBackup",
            "metadata": {"name": "pg-daily", "namespace": ns},
            "spec": {
                "schedule": "0 0 0 * * *",
                "cluster": {"name": "pg"},
                "method": "plugin",
                "pluginConfiguration": {"name": PLUGIN},
                "immediate": True,
                "backupOwnerReference": "self",
            },
        },
    )
    wait_until("Cluster pg Ready", lambda: has_condition(get(kube, "cluster", "pg", ns), "Ready"), kube, log)
    pod = get(kube, "pod", "pg-1", ns)
    assert pod is not None
    [injected] = [c for c in pod["spec"]["initContainers"] if c["name"] == "plugin-barman-cloud"]
    assert (injected["image"], injected["restartPolicy"], injected["resources"]) == (
        sidecar,
        "Always",
        sidecar_resources,
    )
    assert injected["args"] == ["instance", "--log-level=info"]  # the CRD defaults logLevel
    wait_until("WAL archiving", lambda: has_condition(get(kube, "cluster", "pg", ns), "ContinuousArchiving"), kube, log)

    def completed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kube.get_json("backups", "-n", ns)["items"]
        return [b for b in items if b.get("status", {}).get("phase") == "completed"]

    [backup] = wait_until("Backup completed", completed, kube, log)
    assert backup["status"]["method"] == "plugin" and backup["status"]["instanceID"]["podName"] == "pg-1"
    assert backup["status"]["backupId"] and backup["status"]["stoppedAt"]
    store = wait_until(
        "recovery window",
        lambda: (o := get(kube, "objectstore", "store", ns)) and o.get("status", {}).get("serverRecoveryWindow") and o,
        kube,
        log,
    )
    assert store["status"]["serverRecoveryWindow"]["pg"]["lastSuccessfulBackupTime"] == backup["status"]["stoppedAt"]
    assert has_condition(get(kube, "cluster", "pg", ns), "LastBackupSucceeded")

    kube.kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: gone(kube, "namespace", ns), kube, log, timeout=180)
    # The operator releases the plugin's Service when it goes.
    kube.kubectl("delete", "service", "barman-cloud", "-n", OPERATOR_NS, "--timeout=60s")
    kube.kubectl("delete", "namespace", OPERATOR_NS, "--wait=false")


def test_cron_schedule_seconds_first() -> None:
    start = datetime.datetime(2026, 1, 30, 12, 0, 0, tzinfo=datetime.UTC)
    daily = standin_operator.CronSchedule("0 0 3 * * *")
    assert daily.next(start) == datetime.datetime(2026, 1, 31, 3, 0, 0, tzinfo=datetime.UTC)
    monthly = standin_operator.CronSchedule("@monthly")
    assert monthly.next(start) == datetime.datetime(2026, 2, 1, 0, 0, 0, tzinfo=datetime.UTC)
    every_5s = standin_operator.CronSchedule("*/5 * * * * *")
    assert every_5s.next(start) == start + datetime.timedelta(seconds=5)
    with pytest.raises(ValueError):
        standin_operator.CronSchedule("0 0 3 * *  * *")
