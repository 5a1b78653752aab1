"""artifactTransferMode direct, for real: a laptop moves a file above the threshold without its bytes
passing through the tracking server, and below the threshold the proxied path still works.

The dev stack is rendered with ``artifactTransferMode: direct``, ``minioIngress: true`` and an ingress
certificate (``ingressTlsSecretName``). Two TLS-terminating ingress stand-ins (services.ingress_proxy)
count every body byte: one for the tracking URL (-> mlflow server), one for the published S3 host
minio-mlflow-dev.localtest.me (-> the real MinIO over TLS, verified against MinIO's rendered CA, as the
rendered Ingress annotations ask of ingress-nginx). The server runs the rendered container; it reaches S3 through
the published host, as rendered. The ingress certificate comes from a test CA that stands in for a public
CA: the laptop trusts it through REQUESTS_CA_BUNDLE, the server through AWS_CA_BUNDLE added as
infrastructure env (the image's public CA store) -- the rendered container sets no AWS_CA_BUNDLE.
MinIO checks every presigned URL's signature: one signed for a key is refused for any other.
"""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

from .pki import CertificateAuthority

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
TRACKING_HOST = f"mlflow-{NAMESPACE}.localtest.me"
S3_PUBLIC_HOST = f"minio-{NAMESPACE}.localtest.me"
MIB = 1024 * 1024
MINIO_PORT = 9000  # the in-cluster S3 port (r.s3_port is the published one here: 443)
THRESHOLD = 5 * MIB
BIG = 12 * MIB  # above the threshold: 3 parts of 5 MiB / 5 MiB / 2 MiB
SMALL = 256 * 1024  # below it: proxied
CONFIG = {
    "artifactTransferMode": "direct",
    "minioIngress": True,
    "ingressTlsSecretName": "wildcard-tls",
    "artifactMultipartThreshold": "5Mi",
    "artifactMultipartChunkSize": "5Mi",
}

CLIENT = (
    svc.CLIENT_PRELUDE
    + r"""
import json, logging, os, tempfile
import requests
seen = []
_send = requests.Session.send
def _recording_send(self, request, **kwargs):
    u = requests.utils.urlparse(request.url)
    seen.append([request.method, u.hostname, u.path])
    return _send(self, request, **kwargs)
requests.Session.send = _recording_send
capture_shim_denials(logging.getLogger())
import mlflow
from mlflow import MlflowClient

work = tempfile.mkdtemp(dir=os.getcwd())
big, small = os.path.join(work, "big.bin"), os.path.join(work, "small.bin")
write(big, os.urandom(int(os.environ["BIG"])))
write(small, os.urandom(int(os.environ["SMALL"])))
info = requests.get(os.environ["MLFLOW_TRACKING_URI"] + "/api/3.0/mlflow/server-info",
                    auth=(os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]),
                    timeout=30).json()
mlflow.set_experiment("transfer-modes")
marks = {}
with mlflow.start_run() as run:
    marks["before_big_upload"] = len(seen)
    mlflow.log_artifact(big, artifact_path="direct")
    marks["after_big_upload"] = len(seen)
    mlflow.log_artifact(small, artifact_path="proxied")
marks["before_big_download"] = len(seen)
got_big = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="direct/big.bin",
                                              dst_path=tempfile.mkdtemp(dir=work))
marks["after_big_download"] = len(seen)
got_small = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="proxied/small.bin",
                                                dst_path=tempfile.mkdtemp(dir=work))
print(json.dumps({
    "server_info": {k: info[k] for k in ("multipart_uploads_enabled", "multipart_downloads_enabled")},
    "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
    "uploaded": {"big": sha(big), "small": sha(small)},
    "downloaded": {"big": sha(got_big), "small": sha(got_small)},
    "requests": seen, "marks": marks, "shim_denials": shim_denials[:5],
}))
"""
)


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    r = wiring.render("dev", config=CONFIG, namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("direct")
    public_ca = CertificateAuthority("stand-in-public-ca")
    ingress_cert = public_ca.issue("ingress", [TRACKING_HOST, S3_PUBLIC_HOST])
    (work / "public-ca.crt").write_text(public_ca.cert_pem)
    (work / "minio-ca.crt").write_text(r.minio_tls["ca.crt"])
    cluster_s3_host = f"minio.{NAMESPACE}.svc"
    pg_ip, s3_ip = svc.free_loopback_address(5432), svc.free_loopback_address(9000)
    mlflow_ip = svc.free_loopback_address(5000)
    s3_ingress_ip, tracking_ingress_ip = svc.free_loopback_address(443), svc.free_loopback_address(443)
    in_cluster = {f"mlflow-pg-rw.{NAMESPACE}.svc": pg_ip, cluster_s3_host: s3_ip}
    published_s3 = {f"{S3_PUBLIC_HOST}:443": f"{s3_ingress_ip}:443"}

    with contextlib.ExitStack() as stack:
        data = stack.enter_context(wiring.data_services(r, work, pg_ip=pg_ip, s3_ip=s3_ip))
        pg, s3 = data.pg, data.s3
        assert s3.port == MINIO_PORT
        # The published S3 host: TLS with the ingress certificate, re-encrypted to MinIO,
        # verified against MinIO's CA on its in-cluster name.
        s3_ingress = stack.enter_context(
            svc.ingress_proxy(
                work / "s3-ingress",
                cert_pem=ingress_cert.cert_pem,
                key_pem=ingress_cert.key_pem,
                upstream_address=s3_ip,
                upstream_port=MINIO_PORT,
                upstream_server_name=cluster_s3_host,
                upstream_ca_file=str(work / "minio-ca.crt"),
                listen_addr=s3_ingress_ip,
                port=443,
                timeout=120,
            )
        )
        files = svc.files_by_mount_from_pod(r.pod, r.container, secrets=r.secrets, config_maps=r.config_maps)
        server = stack.enter_context(
            svc.mlflow_server_from_container(
                r.container,
                secrets=r.secrets,
                files_by_mount=files,
                host_map={**in_cluster, **published_s3},
                workdir=work / "mlflow",
                listen_addr=mlflow_ip,
                config_maps=r.config_maps,
                timeout=150,
                extra_env={"AWS_CA_BUNDLE": str(work / "public-ca.crt")},
            )
        )
        tracking_ingress = stack.enter_context(
            svc.ingress_proxy(
                work / "tracking-ingress",
                cert_pem=ingress_cert.cert_pem,
                key_pem=ingress_cert.key_pem,
                upstream_address=server.address,
                upstream_port=server.port,
                listen_addr=tracking_ingress_ip,
                port=443,
                timeout=120,
            )
        )
        yield SimpleNamespace(
            r=r,
            work=work,
            pg=pg,
            s3=s3,
            server=server,
            s3_ingress=s3_ingress,
            tracking_ingress=tracking_ingress,
            published_s3=published_s3,
            tracking_map={f"{TRACKING_HOST}:443": f"{tracking_ingress_ip}:443"},
        )


@pytest.fixture(scope="module")
def laptop(direct):
    before = (
        direct.tracking_ingress.bytes_in,
        direct.tracking_ingress.bytes_out,
        direct.s3_ingress.bytes_in,
        direct.s3_ingress.bytes_out,
    )
    proc = svc.run_python_client(
        CLIENT,
        workdir=direct.work,
        name="laptop-direct",
        timeout=300,
        host_map={**direct.tracking_map, **direct.published_s3},
        deny=svc.LAPTOP_DENY,
        env={
            "MLFLOW_TRACKING_URI": direct.r.outputs["trackingUrl"],
            "MLFLOW_TRACKING_USERNAME": direct.r.outputs["adminUser"],
            "MLFLOW_TRACKING_PASSWORD": direct.r.outputs["adminPassword"],
            # The laptop's trust store (the stand-in public CA) and the stack's client settings.
            "REQUESTS_CA_BUNDLE": str(direct.work / "public-ca.crt"),
            **direct.r.outputs["clientEnvironment"],
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BIG": str(BIG),
            "SMALL": str(SMALL),
        },
    )
    after = (
        direct.tracking_ingress.bytes_in,
        direct.tracking_ingress.bytes_out,
        direct.s3_ingress.bytes_in,
        direct.s3_ingress.bytes_out,
    )
    return SimpleNamespace(
        result=svc.last_json_line(proc.stdout),
        tracking_in=after[0] - before[0],
        tracking_out=after[1] - before[1],
        s3_in=after[2] - before[2],
        s3_out=after[3] - before[3],
    )


def test_the_rendered_server_signs_for_the_published_host_and_opts_in(direct):
    env = direct.server.env
    assert env["MLFLOW_S3_ENDPOINT_URL"] == f"https://{S3_PUBLIC_HOST}"
    assert env["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] == env["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "true"
    assert "AWS_CA_BUNDLE" not in direct.r.env  # rendered: the image's public CAs
    assert direct.r.outputs["clientEnvironment"]["MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"] == str(THRESHOLD)


def test_big_file_bytes_bypass_the_tracking_server_small_file_is_proxied(direct, laptop):
    res = laptop.result
    assert res["server_info"] == {"multipart_uploads_enabled": True, "multipart_downloads_enabled": True}
    assert res["downloaded"] == res["uploaded"]
    assert res["shim_denials"] == []
    # Through the tracking server: the small upload (below the threshold: proxied) plus JSON; never the
    # big file's bytes. Downloads: with the download opt-in MLflow 3.18 fetches every file, of any size,
    # from a presigned URL (the download threshold applies to cloud repositories, not to the proxy's).
    assert SMALL <= laptop.tracking_in < SMALL + BIG // 4, laptop
    assert laptop.tracking_out < BIG // 4, laptop
    # Through the published S3 host: the big file both ways, the small one in (server) and out (laptop).
    assert laptop.s3_in >= BIG + SMALL and laptop.s3_out >= BIG + SMALL, laptop
    requests = res["requests"]
    m = res["marks"]
    upload = requests[m["before_big_upload"] : m["after_big_upload"]]
    download = requests[m["before_big_download"] : m["after_big_download"]]
    assert [(meth, host) for meth, host, _ in upload if host == S3_PUBLIC_HOST] == [("PUT", S3_PUBLIC_HOST)] * 3
    assert any("/mlflow-artifacts/mpu/create/" in path for _, _, path in upload)
    assert not any(
        path.endswith("/direct/big.bin") and host == TRACKING_HOST and meth == "PUT" for meth, host, path in upload
    )
    assert {host for meth, host, _ in download if meth == "GET"} >= {S3_PUBLIC_HOST}
    assert any(
        meth == "PUT" and path.endswith("/proxied/small.bin") and host == TRACKING_HOST for meth, host, path in requests
    )


def test_the_object_landed_in_the_bucket_the_bootstrap_made(direct, laptop):
    res = laptop.result
    with svc.dns_patched({f"minio.{NAMESPACE}.svc": direct.s3.host}):
        client = direct.s3.client(endpoint_name=f"minio.{NAMESPACE}.svc", ca_file=str(direct.work / "minio-ca.crt"))
        prefix = f"artifacts/{res['experiment_id']}/{res['run_id']}/artifacts/"
        sizes = {
            o["Key"][len(prefix) :]: o["Size"]
            for o in client.list_objects_v2(Bucket="mlflow", Prefix=prefix)["Contents"]
        }
    assert sizes == {"direct/big.bin": BIG, "proxied/small.bin": SMALL}
    assert "Traceback" not in direct.server.log_text(), json.dumps(direct.server.log_text()[-2000:])


def test_a_presigned_url_is_good_for_its_own_key_only(direct, laptop):
    """What the server signs for one artifact (a download, an upload part) MinIO refuses for another."""
    import requests

    res = laptop.result
    prefix = f"{res['experiment_id']}/{res['run_id']}/artifacts"
    api = f"https://{TRACKING_HOST}/api/2.0/mlflow-artifacts"
    ca = str(direct.work / "public-ca.crt")
    with svc.dns_patched({**direct.tracking_map, **direct.published_s3}), requests.Session() as session:
        session.auth = (direct.r.outputs["adminUser"], direct.r.outputs["adminPassword"])
        signed = session.get(f"{api}/presigned/{prefix}/proxied/small.bin", verify=ca, timeout=30).json()
        assert requests.get(signed["url"], headers=signed.get("headers") or {}, verify=ca, timeout=30).content
        other = signed["url"].replace("/proxied/small.bin", "/direct/big.bin")
        assert other != signed["url"]
        refused = requests.get(other, headers=signed.get("headers") or {}, verify=ca, timeout=30)
        assert refused.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in refused.text
        created = session.post(
            f"{api}/mpu/create/{prefix}/direct", json={"path": "new.bin", "num_parts": 1}, verify=ca, timeout=30
        ).json()
        [part] = created["credentials"]
        moved = requests.put(
            part["url"].replace("/direct/new.bin", "/direct/big.bin"), data=b"x", verify=ca, timeout=30
        )
        assert moved.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in moved.text
        assert requests.put(part["url"], data=b"x", verify=ca, timeout=30).status_code == 200
        session.post(
            f"{api}/mpu/abort/{prefix}/direct",
            json={"path": "new.bin", "upload_id": created["upload_id"]},
            verify=ca,
            timeout=30,
        )
    # The object the refused URLs aimed at is untouched.
    with svc.dns_patched({f"minio.{NAMESPACE}.svc": direct.s3.host}):
        client = direct.s3.client(endpoint_name=f"minio.{NAMESPACE}.svc", ca_file=str(direct.work / "minio-ca.crt"))
        head = client.head_object(Bucket="mlflow", Key=f"artifacts/{prefix}/direct/big.bin")
    assert head["ContentLength"] == BIG
