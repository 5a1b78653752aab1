"""prod's distributed MinIO, for real: the StatefulSet's container as four processes of the real server.

Each process runs the rendered args unchanged -- ``--address :9000`` and the endpoints
``https://minio-{0...3}.minio-hl.mlflow-prod.svc:9000/data`` -- in a network namespace of its own (so
that, as in its pod, only its own name is local to it) with its own drive (a filesystem of its own, as
its PVC is) and the cluster's names in its /etc/hosts; the four talk over TLS with the rendered
certificate (its ``*.minio-hl`` SAN). See services.minio_cluster; it needs root.

MinIO's documented numbers for one erasure set of 4 drives at the default parity (EC:2): 2 data + 2
parity shards per object; reads need 2 drives (read quorum = data shards), writes 3 (write quorum =
data shards + 1 when data == parity). So: one server lost, reads and writes go on; two lost, reads go on
and writes are refused; and one server at a time may be taken down for maintenance (the PDB's
``maxUnavailable: 1``), a second not.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-prod"
DATA_SHARDS, PARITY = 2, 2
READ_QUORUM, WRITE_QUORUM = DATA_SHARDS, DATA_SHARDS + 1  # data == parity: one more to write

CLIENT = r"""
import hashlib, http.client, json, os, ssl, sys
import boto3
from botocore.config import Config

ca = os.environ["CA_FILE"]
port = int(os.environ["PORT"])
s3 = boto3.client(
    "s3", endpoint_url=f"https://{os.environ['SERVICE']}:{port}", verify=ca, region_name="us-east-1",
    aws_access_key_id=os.environ["ROOT_USER"], aws_secret_access_key=os.environ["ROOT_PASSWORD"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
)
out = {"writes": {}, "reads": {}, "health": {}}
ctx = ssl.create_default_context(cafile=ca)
for node in json.loads(os.environ["NODES"]):
    for path in ("/minio/health/cluster", "/minio/health/cluster/read", "/minio/health/cluster?maintenance=true"):
        conn = http.client.HTTPSConnection(node, port, timeout=30, context=ctx)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            out["health"][f"{node}{path}"] = [resp.status, resp.getheader("x-minio-write-quorum"),
                                              resp.getheader("x-minio-read-quorum")]
        except OSError as exc:
            out["health"][f"{node}{path}"] = [None, type(exc).__name__, None]
        finally:
            conn.close()
if os.environ.get("MAKE_BUCKET"):
    s3.create_bucket(Bucket="quorum")
for key in json.loads(os.environ["WRITE"]):
    body = hashlib.sha256(key.encode()).digest() * 131072  # 4 MiB
    try:
        s3.put_object(Bucket="quorum", Key=key, Body=body)
        out["writes"][key] = "OK"
    except Exception as exc:
        out["writes"][key] = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
for key in json.loads(os.environ["READ"]):
    try:
        got = s3.get_object(Bucket="quorum", Key=key)["Body"].read()
        out["reads"][key] = hashlib.sha256(got).hexdigest()
    except Exception as exc:
        out["reads"][key] = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
print(json.dumps(out))
"""


def _digest(key: str) -> str:
    return hashlib.sha256(hashlib.sha256(key.encode()).digest() * 131072).hexdigest()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = svc.namespaces_unavailable()
    if reason:
        pytest.skip(f"distributed MinIO: {reason}")
    r = wiring.render("prod", namespace=NAMESPACE)
    replicas = r.minio_statefulset["spec"]["replicas"]
    work = tmp_path_factory.mktemp("minio-distributed")
    with svc.minio_cluster(
        r.minio_container,
        r.minio_pod,
        replicas=replicas,
        namespace=r.namespace,
        secrets=r.secrets,
        config_maps=r.config_maps,
        workdir=work,
    ) as c:
        (work / "ca.crt").write_text(c.ca_pem)

        def client(write=(), read=(), make_bucket=False, nodes=None):
            return c.python(
                CLIENT,
                env={
                    "CA_FILE": str(work / "ca.crt"),
                    "PORT": str(c.port),
                    "SERVICE": c.service_name,
                    "ROOT_USER": c.root_user,
                    "ROOT_PASSWORD": c.root_password,
                    "NODES": json.dumps(nodes if nodes is not None else [n.name for n in c.nodes]),
                    "WRITE": json.dumps(list(write)),
                    "READ": json.dumps(list(read)),
                    **({"MAKE_BUCKET": "1"} if make_bucket else {}),
                },
                timeout=300,
            )

        yield SimpleNamespace(r=r, c=c, replicas=replicas, client=client)


def test_prod_renders_four_servers_on_the_headless_names(cluster):
    r, c = cluster.r, cluster.c
    assert cluster.replicas == 4
    assert r.minio_container["args"][-1] == f"https://minio-{{0...3}}.minio-hl.{NAMESPACE}.svc:9000/data"
    assert r.minio_container["args"][:3] == ["server", "--address", ":9000"]
    # Every process ran exactly those args (only the drive's mount path rewritten) in its own network.
    assert c.prepared.argv[1:4] == ["server", "--address", ":9000"]
    assert (
        c.prepared.argv[-1] == f"https://minio-{{0...3}}.minio-hl.{NAMESPACE}.svc:9000" + c.prepared.path_map["/data"]
    )
    assert [n.name for n in c.nodes] == [f"minio-{i}.minio-hl.{NAMESPACE}.svc" for i in range(4)]
    assert all(n.process.alive() for n in c.nodes)


def test_the_four_servers_form_one_erasure_set_at_the_documented_parity(cluster):
    c = cluster.c
    info = c.mc("admin", "info", "--json", "it")["info"]
    assert info["mode"] == "online"
    assert sorted(s["endpoint"] for s in info["servers"]) == sorted(f"{n.name}:{c.port}" for n in c.nodes)
    assert {s["state"] for s in info["servers"]} == {"online"}
    backend = info["backend"]
    assert backend["backendType"] == "Erasure"
    assert (backend["onlineDisks"], backend.get("offlineDisks", 0)) == (4, 0)
    assert backend["standardSCParity"] == PARITY
    drives = [d for s in info["servers"] for d in s["drives"]]
    assert len(drives) == 4 and {d["state"] for d in drives} == {"ok"}
    assert len({(d["pool_index"], d["set_index"]) for d in drives}) == 1  # one erasure set
    result = cluster.client(write=["before"], read=["before"], make_bucket=True)
    assert result["writes"] == {"before": "OK"} and result["reads"] == {"before": _digest("before")}
    for node in c.nodes:  # every server reports the same quorums, and may be drained alone
        status, write_quorum, _ = result["health"][f"{node.name}/minio/health/cluster"]
        assert (status, write_quorum) == (200, str(WRITE_QUORUM))
        status, _, read_quorum = result["health"][f"{node.name}/minio/health/cluster/read"]
        assert (status, read_quorum) == (200, str(READ_QUORUM))
        assert result["health"][f"{node.name}/minio/health/cluster?maintenance=true"][0] == 200


def test_writes_survive_one_server_killed_and_reads_survive_two(cluster):
    c = cluster.c
    cluster.client(write=["before"], make_bucket=False)
    c.kill(3)
    up = [n.name for n in c.nodes[:3]]
    one_down = cluster.client(write=["one-down"], read=["before", "one-down"], nodes=up)
    assert one_down["writes"] == {"one-down": "OK"}
    assert one_down["reads"] == {"before": _digest("before"), "one-down": _digest("one-down")}
    for name in up:  # still a write quorum; but no server may be taken down now
        assert one_down["health"][f"{name}/minio/health/cluster"][0] == 200
        assert one_down["health"][f"{name}/minio/health/cluster?maintenance=true"][0] == 412
    c.kill(2)
    up = [n.name for n in c.nodes[:2]]
    two_down = cluster.client(write=["two-down"], read=["before", "one-down"], nodes=up)
    assert two_down["writes"]["two-down"] != "OK"  # below the write quorum: refused
    assert two_down["reads"] == {"before": _digest("before"), "one-down": _digest("one-down")}
    for name in up:
        assert two_down["health"][f"{name}/minio/health/cluster"][0] == 503
        assert two_down["health"][f"{name}/minio/health/cluster/read"][0] == 200
    print(f"\n[distributed] write refused with two servers down: {two_down['writes']['two-down']}")
