"""The object store we deploy, for real: the MinIO server and ``mc`` of the release the stacks pin
(built from their Go modules by engine/build.sh), configured by the stack's own objects.

The dev stack is rendered with ``backups: on`` (two buckets, two users). MinIO runs the StatefulSet's
container (args, env, certificate directory, root-credentials env file); the bootstrap Job's container
runs its script unchanged with the real ``mc`` (each call recorded, :data:`wiring.MC_RECORDER`):

* started before MinIO answers, it waits; then bucket, user, policy and attachment for MLflow and for
  barman; a second run changes nothing; a rotated secret key and a changed policy take effect;
* least privilege, proven by refusals: MLflow's keys read and write artifacts and are refused the
  backup bucket, a new bucket and every admin call; barman's keys the reverse; the root key is in no
  workload but MinIO and its bootstrap (presigned URLs: test_artifact_transfer_modes.py);
* bad input: a wrong CA or a wrong root key fails the Job at once with mc's / MinIO's own message and
  creates nothing; a failure halfway leaves what a re-run completes; a missing binary names
  ``make engine``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.loopback import services as svc
from tools.loopback import wiring

from .pki import CertificateAuthority

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
S3_HOST = f"minio.{NAMESPACE}.svc"
REPO_BOOTSTRAP_SCRIPT = Path(__file__).resolve().parents[2] / "components" / "minio_bootstrap.sh"
INFRA_ENV = {"PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "PYTHONPATH", "K8S_DNS_SHIM"}
GO_DNS_ENV = {"MC_RESOLVE"}  # mc's own DNS override: the in-cluster name -> the loopback address
GRANT = ["mb", "admin user add", "admin policy create", "admin policy attach"]


def _kind(call: dict) -> str:
    argv = [a for a in call["argv"] if not a.startswith("--")] if call["argv"][0] == "mb" else call["argv"]
    return " ".join(argv[:3]) if argv[0] == "admin" else argv[0]


def _bootstrap_env(r) -> dict[str, str]:
    return svc.resolve_container_env(r.bootstrap_container, secrets=r.secrets, config_maps=r.config_maps)


def _secret_of(r, variable: str) -> str:
    return next(e["valueFrom"]["secretKeyRef"]["name"] for e in r.bootstrap_container["env"] if e["name"] == variable)


def _policy_files(r) -> tuple[str, dict]:
    name = next(v["configMap"]["name"] for v in r.bootstrap_pod["volumes"] if "configMap" in v)
    return name, r.config_maps[name]


def _statements(document: dict) -> set:
    """A policy as MinIO enforces it: (effect, actions, resources) per statement, order ignored."""
    out = set()
    for st in document["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out.add((st["Effect"], tuple(sorted(actions)), tuple(sorted(resources))))
    return out


def _code(call) -> str:
    """The S3 error code a boto3 call got ("OK" when it succeeded)."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "OK"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    r = wiring.render("dev", config={"backups": "on"}, namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("object-store")
    s3_ip = svc.free_loopback_address(9000)
    env = _bootstrap_env(r)
    host_map = {S3_HOST: s3_ip}
    with contextlib.ExitStack() as stack:
        # The Job may start before MinIO serves (its wait loop): it runs against the name first, MinIO
        # comes up once the Job's `mc admin info` has been refused twice.
        bootstrap = wiring.MinioBootstrap(r, work / "minio-bootstrap", host_map)
        first: dict = {}
        job = threading.Thread(target=lambda: first.update(run=bootstrap.run(check=False)), daemon=True)
        job.start()
        svc._wait_until(
            lambda: sum(_kind(c) == "admin info platform" for c in bootstrap.calls()) >= 2,
            timeout=60,
            what="the bootstrap's first `mc admin info` calls",
        )
        minio_started = time.time()
        server = stack.enter_context(wiring.rendered_minio(r, work, s3_ip))
        job.join(180)
        assert not job.is_alive(), "bootstrap Job still running"
        bootstrap.server = server
        first["run"].state = server.state()
        second = bootstrap.run()
        ca_file = work / "minio-ca.crt"
        ca_file.write_text(r.minio_tls["ca.crt"])
        yield SimpleNamespace(
            r=r,
            work=work,
            server=server,
            minio_started=minio_started,
            bootstrap=bootstrap,
            runs=[first["run"], second],
            env=env,
            ca_file=ca_file,
            host_map=host_map,
            keys={
                "mlflow": (env["USER_ACCESS_KEY"], env["USER_SECRET_KEY"]),
                "barman": (env["BACKUP_ACCESS_KEY"], env["BACKUP_SECRET_KEY"]),
            },
        )


def _client(store, who: str, **kwargs):
    access, secret = store.keys[who]
    return store.server.client(
        endpoint_name=S3_HOST, ca_file=str(store.ca_file), access_key=access, secret_key=secret, **kwargs
    )


# --------------------------------------------------------------------------- the bootstrap Job, for real


def test_bootstrap_waits_for_minio_then_grants_both_users_in_order(store):
    r, run, env = store.r, store.runs[0], store.env
    assert run.rc == 0, run.output
    c = r.bootstrap_container
    # The script that ran is the ConfigMap's bootstrap.sh, which is the repository's script.
    script_path = c["command"][-1]
    assert run.prepared.argv == ["/bin/sh", str(run.prepared.host_path(script_path))]
    assert run.prepared.host_path(script_path).read_text() == svc._rewrite(
        REPO_BOOTSTRAP_SCRIPT.read_text(), run.prepared.path_map
    )
    assert set(run.prepared.added_env) <= INFRA_ENV | GO_DNS_ENV
    for name, value in env.items():  # every rendered env var, only mount paths rewritten
        assert run.prepared.env[name] == svc._rewrite(value, run.prepared.path_map), name

    kinds = [_kind(x) for x in run.calls]
    waits = kinds.index("mb")
    # Refused while MinIO was not there, then answered: the wait loop, for real.
    assert waits >= 3 and kinds[:waits] == ["admin info platform"] * waits
    assert [x["exit"] for x in run.calls[:waits]] == [1] * (waits - 1) + [0]
    assert run.calls[0]["ended"] < store.minio_started < run.calls[waits - 1]["started"]
    assert all("connection refused" in x["stderr"] for x in run.calls[: waits - 1])
    assert kinds[waits:] == GRANT * 2
    assert all(x["exit"] == 0 for x in run.calls[waits:]), run.calls
    grants = [x["argv"] for x in run.calls[waits:]]
    for i, (bucket, access, secret, policy, policy_file) in enumerate(
        (
            ("BUCKET", "USER_ACCESS_KEY", "USER_SECRET_KEY", "POLICY_NAME", "POLICY_FILE"),
            ("BACKUP_BUCKET", "BACKUP_ACCESS_KEY", "BACKUP_SECRET_KEY", "BACKUP_POLICY_NAME", "BACKUP_POLICY_FILE"),
        )
    ):
        mb, user_add, policy_create, attach = grants[4 * i : 4 * i + 4]
        assert mb == ["mb", "--ignore-existing", "--region", env["REGION"], f"platform/{env[bucket]}"]
        assert user_add == ["admin", "user", "add", "platform", env[access], env[secret]]
        assert policy_create == [
            "admin",
            "policy",
            "create",
            "platform",
            env[policy],
            str(run.prepared.host_path(env[policy_file])),
        ]
        assert attach == ["admin", "policy", "attach", "platform", env[policy], "--user", env[access]]
    # Every call: root credentials from MinIO's env-file Secret, the in-cluster endpoint, MinIO's CA
    # (only) where mc looks for trusted CAs, inside the pod's /tmp emptyDir.
    root = wiring.env_file_values(r.minio_root_env)
    for x in run.calls:
        assert x["mc_hosts"] == {
            "MC_HOST_platform": {
                "scheme": "https",
                "user": root["MINIO_ROOT_USER"],
                "endpoint": env["MINIO_ENDPOINT"],
                "password_is_root": True,
            }
        }, x
        assert x["ca_files"] == {"platform-ca.crt": r.minio_tls["ca.crt"]}
        assert x["mc_config_dir"].startswith(str(run.prepared.host_path("/tmp")) + "/")


def test_minio_holds_exactly_what_the_rendered_objects_ask_for(store):
    r, env, state = store.r, store.env, store.runs[0].state
    _, files = _policy_files(r)
    assert state["buckets"] == {
        env["BUCKET"]: {"region": env["REGION"]},
        env["BACKUP_BUCKET"]: {"region": env["REGION"]},
    }
    assert state["users"] == {
        env["USER_ACCESS_KEY"]: {"status": "enabled", "policies": [env["POLICY_NAME"]]},
        env["BACKUP_ACCESS_KEY"]: {"status": "enabled", "policies": [env["BACKUP_POLICY_NAME"]]},
    }
    assert {name: _statements(doc) for name, doc in state["policies"].items()} == {
        env["POLICY_NAME"]: _statements(json.loads(files["policy.json"])),
        env["BACKUP_POLICY_NAME"]: _statements(json.loads(files["backup-policy.json"])),
    }
    # The keys MLflow's server and the backup plugin get are the users the bootstrap made.
    assert (r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"]) == store.keys["mlflow"]
    store_obj = wiring.one(r.ev.k8s("ObjectStore"), "ObjectStore")
    creds = store_obj["spec"]["configuration"]["s3Credentials"]
    barman = tuple(r.secrets[creds[k]["name"]][creds[k]["key"]] for k in ("accessKeyId", "secretAccessKey"))
    assert barman == store.keys["barman"]
    with svc.dns_patched(store.host_map):  # and they sign requests MinIO accepts
        for who, bucket in (("mlflow", env["BUCKET"]), ("barman", env["BACKUP_BUCKET"])):
            client = _client(store, who)
            assert _code(lambda c=client, b=bucket: c.list_objects_v2(Bucket=b)) == "OK", who


def test_second_run_changes_nothing(store):
    first, second = store.runs
    assert second.rc == 0, second.output
    # MinIO answers at once now; the same calls, every one succeeding: `mc mb --ignore-existing`, and
    # this mc re-attaches an attached policy without an error (the script's "already" branch is for
    # mc releases that report it).
    assert [_kind(x) for x in second.calls] == ["admin info platform", *GRANT * 2]
    strip = lambda run, calls: [[a.replace(str(run.prepared.root), "<pod>") for a in x["argv"]] for x in calls]  # noqa: E731
    assert strip(second, second.calls[1:]) == strip(first, first.calls[-8:])
    assert [x["exit"] for x in second.calls] == [0] * 9, second.calls
    assert second.state == first.state


# --------------------------------------------------------------------------- least privilege, refused


def test_mlflows_keys_reach_artifacts_only(store):
    from botocore.exceptions import ClientError

    env = store.env
    bucket, backups = env["BUCKET"], env["BACKUP_BUCKET"]
    with svc.dns_patched(store.host_map):
        barman = _client(store, "barman")
        barman.put_object(Bucket=backups, Key="probe/base.info", Body=b"backup")
        mlflow = _client(store, "mlflow")
        key = "artifacts/0/probe/artifacts/model.bin"
        # What the artifact proxy does: write, list, read, delete (and multipart) in its bucket.
        assert _code(lambda: mlflow.put_object(Bucket=bucket, Key=key, Body=b"x" * 1024)) == "OK"
        assert mlflow.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x" * 1024
        assert [o["Key"] for o in mlflow.list_objects_v2(Bucket=bucket, Prefix="artifacts/0/probe/")["Contents"]] == [
            key
        ]
        upload = mlflow.create_multipart_upload(Bucket=bucket, Key=key + ".mpu")["UploadId"]
        assert _code(lambda: mlflow.abort_multipart_upload(Bucket=bucket, Key=key + ".mpu", UploadId=upload)) == "OK"
        assert _code(lambda: mlflow.delete_object(Bucket=bucket, Key=key)) == "OK"
        # Refused: the backup bucket (list, read, write, delete), any other bucket, its bucket's settings.
        refused = {
            "list backups": lambda: mlflow.list_objects_v2(Bucket=backups),
            "read a backup": lambda: mlflow.get_object(Bucket=backups, Key="probe/base.info"),
            "write a backup": lambda: mlflow.put_object(Bucket=backups, Key="probe/x", Body=b"x"),
            "delete a backup": lambda: mlflow.delete_object(Bucket=backups, Key="probe/base.info"),
            "create a bucket": lambda: mlflow.create_bucket(Bucket="mlflow-2"),
            "delete its bucket": lambda: mlflow.delete_bucket(Bucket=bucket),
            "change its bucket's policy": lambda: mlflow.put_bucket_policy(Bucket=bucket, Policy="{}"),
        }
        assert {what: _code(call) for what, call in refused.items()} == dict.fromkeys(refused, "AccessDenied")
        # MinIO lists only the buckets a key may use: the backup bucket is not even named.
        assert [b["Name"] for b in mlflow.list_buckets()["Buckets"]] == [bucket]
        with pytest.raises(ClientError):  # the backup is intact
            mlflow.head_object(Bucket=backups, Key="probe/base.info")
        assert barman.get_object(Bucket=backups, Key="probe/base.info")["Body"].read() == b"backup"
    _admin_refused(store, "mlflow")


def test_barmans_keys_reach_backups_only(store):
    env = store.env
    bucket, backups = env["BUCKET"], env["BACKUP_BUCKET"]
    with svc.dns_patched(store.host_map):
        mlflow, barman = _client(store, "mlflow"), _client(store, "barman")
        mlflow.put_object(Bucket=bucket, Key="artifacts/0/probe/artifacts/keep.txt", Body=b"artifact")
        key = "mlflow-pg/base/20250101T000000/data.tar.gz"
        assert _code(lambda: barman.put_object(Bucket=backups, Key=key, Body=b"base")) == "OK"
        assert barman.get_object(Bucket=backups, Key=key)["Body"].read() == b"base"
        assert key in [o["Key"] for o in barman.list_objects_v2(Bucket=backups)["Contents"]]
        assert _code(lambda: barman.delete_object(Bucket=backups, Key=key)) == "OK"
        refused = {
            "list artifacts": lambda: barman.list_objects_v2(Bucket=bucket),
            "read an artifact": lambda: barman.get_object(Bucket=bucket, Key="artifacts/0/probe/artifacts/keep.txt"),
            "write an artifact": lambda: barman.put_object(Bucket=bucket, Key="artifacts/x", Body=b"x"),
            "delete an artifact": lambda: barman.delete_object(
                Bucket=bucket, Key="artifacts/0/probe/artifacts/keep.txt"
            ),
            "create a bucket": lambda: barman.create_bucket(Bucket="backups-2"),
            "delete its bucket": lambda: barman.delete_bucket(Bucket=backups),
        }
        assert {what: _code(call) for what, call in refused.items()} == dict.fromkeys(refused, "AccessDenied")
        assert [b["Name"] for b in barman.list_buckets()["Buckets"]] == [backups]
        assert (
            mlflow.get_object(Bucket=bucket, Key="artifacts/0/probe/artifacts/keep.txt")["Body"].read() == b"artifact"
        )
    _admin_refused(store, "barman")


def _admin_refused(store, who: str) -> None:
    """Every admin call with a user's keys is refused (MinIO's own answer, through the real mc)."""
    access, secret = store.keys[who]
    for args in (
        ("admin", "info", "it"),
        ("admin", "user", "list", "it"),
        ("admin", "user", "add", "it", "intruder", "intruder-secret-0123"),
        ("admin", "policy", "attach", "it", "readwrite", "--user", access),
        ("admin", "config", "get", "it", "api"),
    ):
        proc = store.server.mc(*args, access_key=access, secret_key=secret, check=False)
        assert proc.returncode != 0, (who, args, proc.stdout)
        assert "Access Denied" in proc.stderr, (who, args, proc.stderr)
    # Nothing changed: no intruder, no extra policy.
    users = store.server.state()["users"]
    assert "intruder" not in users and users[access]["policies"] == [
        store.env["POLICY_NAME" if who == "mlflow" else "BACKUP_POLICY_NAME"]
    ]


def test_the_root_key_is_in_no_workload_but_minio_and_its_bootstrap(store):
    r = store.r
    root = wiring.env_file_values(r.minio_root_env)
    secret_values = (root["MINIO_ROOT_USER"], root["MINIO_ROOT_PASSWORD"])
    carriers = {name for name, data in r.secrets.items() if any(v in str(data) for v in secret_values)}
    assert len(carriers) == 1, carriers  # one Secret holds it
    holders = []
    for obj in r.objects:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        pod = {
            "Deployment": lambda s: s["template"]["spec"],
            "StatefulSet": lambda s: s["template"]["spec"],
            "DaemonSet": lambda s: s["template"]["spec"],
            "Job": lambda s: s["template"]["spec"],
            "CronJob": lambda s: s["jobTemplate"]["spec"]["template"]["spec"],
        }.get(kind, lambda s: None)(spec)
        if pod is None:
            if kind not in ("Secret",) and any(n in json.dumps(obj) for n in carriers | set(secret_values)):
                holders.append((kind, obj["metadata"].get("name")))
            continue
        if any(n in json.dumps(pod) for n in carriers | set(secret_values)):
            holders.append((kind, (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component")))
    assert sorted(holders) == [("Job", "bootstrap"), ("StatefulSet", "object-store")]
    # Neither MLflow's keys nor barman's are the root key.
    assert not {k for pair in store.keys.values() for k in pair} & set(secret_values)


# --------------------------------------------------------------------------- bad input


def _fresh_server(store, name: str):
    """Another MinIO from the same rendered container (an empty drive), for runs that must not touch the
    module's store."""
    ip = svc.free_loopback_address(9000)
    return ip, wiring.rendered_minio(store.r, store.work / name, ip)


def test_wrong_ca_or_wrong_root_key_fail_with_minios_message_and_create_nothing(store):
    r = store.r
    root_secret = next(v["secret"]["secretName"] for v in r.bootstrap_pod["volumes"] if v["name"] == "config")
    ca_secret = next(v["secret"]["secretName"] for v in r.bootstrap_pod["volumes"] if v["name"] == "ca")
    root = wiring.env_file_values(r.minio_root_env)
    foreign = CertificateAuthority("not-minios-ca")
    wrong_ca = {**r.secrets, ca_secret: {**r.secrets[ca_secret], "ca.crt": foreign.cert_pem}}
    wrong_key = {
        **r.secrets,
        root_secret: {"config.env": f"MINIO_ROOT_USER={root['MINIO_ROOT_USER']}\nMINIO_ROOT_PASSWORD={'w' * 40}\n"},
    }
    ip, fresh = _fresh_server(store, "bad-input")
    with fresh as server:
        runs: dict = {}

        def job(label: str, secrets: dict) -> None:
            bootstrap = wiring.MinioBootstrap(r, store.work / f"bootstrap-{label}", {S3_HOST: ip}, server)
            runs[label] = bootstrap.run(secrets=secrets, check=False)

        threads = [threading.Thread(target=job, args=a) for a in (("ca", wrong_ca), ("key", wrong_key))]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(200)
        elapsed = time.monotonic() - started
        for label, message in (
            ("ca", "x509: certificate signed by unknown authority"),
            ("key", "The request signature we calculated does not match the signature you provided."),
        ):
            run = runs[label]
            assert run.rc == 1, run.output
            assert message in run.output, run.output[-2000:]
            assert "refused the bootstrap; nothing was changed" in run.output
            assert [_kind(x) for x in run.calls] == ["admin info platform"]  # no retry: retrying cannot help
            assert run.state == {"buckets": {}, "users": {}, "policies": {}}
        print(f"\n[bad input] both Jobs failed after {elapsed:.0f}s (mc retries a TLS failure itself)")


def test_a_run_that_fails_halfway_is_completed_by_the_next(store):
    r, env = store.r, store.env
    backup_secret = _secret_of(r, "BACKUP_SECRET_KEY")
    short = {**r.secrets, backup_secret: {**r.secrets[backup_secret], "secret-key": "short"}}
    ip, fresh = _fresh_server(store, "halfway")
    with fresh as server:
        bootstrap = wiring.MinioBootstrap(r, store.work / "bootstrap-halfway", {S3_HOST: ip}, server)
        failed = bootstrap.run(secrets=short, check=False)
        assert failed.rc == 1
        user_add = next(x for x in failed.calls if x["argv"][:3] == ["admin", "user", "add"] and x["exit"] != 0)
        assert user_add["argv"][4] == env["BACKUP_ACCESS_KEY"]
        assert user_add["stderr"] in failed.output  # MinIO's own refusal, as the Job's log shows it
        # Half-made: MLflow's grant is complete, the backup bucket exists, its user does not.
        assert set(failed.state["buckets"]) == {env["BUCKET"], env["BACKUP_BUCKET"]}
        assert set(failed.state["users"]) == {env["USER_ACCESS_KEY"]}
        done = bootstrap.run()
        assert done.rc == 0, done.output
        assert done.state == store.runs[0].state


def test_a_missing_binary_names_the_make_target(store, monkeypatch, tmp_path):
    monkeypatch.setattr(svc, "ENGINE_BIN", tmp_path)
    for name in ("minio", "mc"):
        with pytest.raises(svc.ServiceError) as raised:
            svc.engine_binary(name)
        message = str(raised.value)
        assert "\n" not in message and "`make engine`" in message and str(tmp_path / name) in message
    missing = wiring.rendered_minio(store.r, tmp_path / "none", svc.free_loopback_address(9000))
    with pytest.raises(svc.ServiceError, match=r"minio is missing: build it with `make engine`"), missing:
        pass


# --------------------------------------------------------------------------- rotation (last: it changes the store)


def test_a_rotated_key_and_a_changed_policy_take_effect_and_the_old_key_stops_working(store):
    """A new secret key (the Secret MLflow and the Job share) and a changed policy document are applied by
    the next run on the existing store; bucket and attachment stay as they are."""
    r, env = store.r, store.env
    key_secret = _secret_of(r, "USER_SECRET_KEY")
    files_name, files = _policy_files(r)
    policy = json.loads(files["policy.json"])
    policy["Statement"][1]["Action"].remove("s3:DeleteObject")
    rotated = "rotated0secret0key0" + "x" * 21
    secrets = {**r.secrets, key_secret: {**r.secrets[key_secret], "secret-key": rotated}}
    config_maps = {**r.config_maps, files_name: {**files, "policy.json": json.dumps(policy)}}
    before = store.bootstrap.server.state()
    run = store.bootstrap.run(secrets=secrets, config_maps=config_maps)
    assert run.rc == 0, run.output
    assert run.state["buckets"] == before["buckets"] and run.state["users"] == before["users"]
    assert _statements(run.state["policies"][env["POLICY_NAME"]]) == _statements(policy)
    bucket, key = env["BUCKET"], "artifacts/0/rotation/artifacts/x.txt"
    with svc.dns_patched(store.host_map):
        old = _client(store, "mlflow")
        new = store.server.client(
            endpoint_name=S3_HOST, ca_file=str(store.ca_file), access_key=env["USER_ACCESS_KEY"], secret_key=rotated
        )
        assert _code(lambda: old.list_objects_v2(Bucket=bucket)) == "SignatureDoesNotMatch"
        assert _code(lambda: new.put_object(Bucket=bucket, Key=key, Body=b"x")) == "OK"
        assert _code(lambda: new.delete_object(Bucket=bucket, Key=key)) == "AccessDenied"  # the new policy
    # Rotating back (the stack's own Secret and ConfigMap again) restores both.
    back = store.bootstrap.run()
    assert back.rc == 0 and back.state == before
    with svc.dns_patched(store.host_map):
        assert _code(lambda: _client(store, "mlflow").delete_object(Bucket=bucket, Key=key)) == "OK"
