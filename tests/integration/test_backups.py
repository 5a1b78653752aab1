"""Backups and point-in-time recovery, for real: the Barman Cloud tools the plugin runs, against the
real MinIO over TLS (the StatefulSet's container), with everything taken from the rendered objects.

The Barman Cloud plugin's sidecar runs `barman-cloud-wal-archive` for each WAL segment, and
`barman-cloud-backup` / `-wal-restore` / `-restore` / `-backup-delete` for base backups, recovery
and retention, with the ObjectStore's configuration: `destinationPath` and the plugin parameter
`serverName` as positional arguments, `--cloud-provider aws-s3 --endpoint-url <endpointURL>`, the
compression flag, and the environment `AWS_CA_BUNDLE` (the `endpointCA` Secret's file),
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (the `s3Credentials` Secret keys) and the sidecar's
`env`. The same mapping is applied here (:func:`barman_invocation`), from the dev stack rendered
with `backups: on`:

* the MinIO bootstrap Job (its real script, the real `mc`) creates the backup bucket and user;
* a real PostgreSQL 15 archives its WAL through `archive_command` = barman-cloud-wal-archive;
* a base backup, rows before T, time T, rows after T, a WAL switch;
* barman-cloud-restore into a new data directory, recovery with restore_command =
  barman-cloud-wal-restore and recovery_target_time = T; the restored server holds exactly the
  rows of time T;
* barman-cloud-backup-delete with the rendered retention policy: nothing while every backup is
  inside the window; once two are older than the window (their backup.info end time moved back,
  the only thing the policy reads), the older of them goes with the WAL only it needed, and the
  one that still anchors the window stays.

The tools run with barman's keys only (the ObjectStore's s3Credentials), which MinIO holds to the
backup bucket's policy: archiving, backup, restore and retention all pass with exactly that policy
(what it refuses: test_object_store.py).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.loopback import operators, wiring
from tools.loopback import services as svc

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow-dev"
PLUGIN = "barman-cloud.cloudnative-pg.io"
BARMAN_BIN = svc.VENV_BIN
RETENTION_UNITS = {"d": "DAYS", "w": "WEEKS", "m": "MONTHS"}


def one(items, what):
    return wiring.one(list(items), what)


def retention_policy(value: str) -> str:
    """The plugin's translation of ObjectStore.spec.retentionPolicy (30d -> RECOVERY WINDOW OF 30 DAYS)."""
    match = re.fullmatch(r"([1-9][0-9]*)([dwm])", value)
    assert match, value
    return f"RECOVERY WINDOW OF {match[1]} {RETENTION_UNITS[match[2]]}"


def barman_invocation(r, base: Path, host_map: dict) -> SimpleNamespace:
    """What the plugin hands the barman-cloud tools, from the rendered ObjectStore and Cluster."""
    store = one(r.ev.k8s("ObjectStore"), "ObjectStore")
    plugin = one(r.cluster["spec"]["plugins"], "Cluster plugin")
    assert plugin["name"] == PLUGIN and plugin["isWALArchiver"] is True
    assert plugin["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    conf = store["spec"]["configuration"]
    ca = r.secrets[conf["endpointCA"]["name"]][conf["endpointCA"]["key"]]
    creds = conf["s3Credentials"]
    ca_file = base / "endpoint-ca.crt"
    ca_file.write_text(ca)
    env = {
        "PATH": f"{BARMAN_BIN}:{svc.SYSTEM_PATH}",
        "HOME": str(base),
        "LANG": "C.UTF-8",
        "AWS_CA_BUNDLE": str(ca_file),
        "AWS_ACCESS_KEY_ID": r.secrets[creds["accessKeyId"]["name"]][creds["accessKeyId"]["key"]],
        "AWS_SECRET_ACCESS_KEY": r.secrets[creds["secretAccessKey"]["name"]][creds["secretAccessKey"]["key"]],
        **{e["name"]: e["value"] for e in store["spec"]["instanceSidecarConfiguration"].get("env", [])},
        # In-cluster names resolve to loopback addresses (the names stay in every URL: TLS checks them).
        **svc.shim_env(host_map),
    }
    cloud = ["--cloud-provider", "aws-s3", "--endpoint-url", conf["endpointURL"]]
    return SimpleNamespace(
        store=store,
        conf=conf,
        plugin=plugin,
        env=env,
        cloud=cloud,
        ca=ca,
        destination=conf["destinationPath"],
        server=plugin["parameters"]["serverName"],
        wal_flag=f"--{conf['wal']['compression']}",
        data_flag=f"--{conf['data']['compression']}",
        retention=retention_policy(store["spec"]["retentionPolicy"]),
    )


def run(argv: list[str], env: dict, log: Path, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(argv)}\nrc={proc.returncode}\n{proc.stdout}{proc.stderr}\n")
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv[0]} exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


# archive_command / restore_command as CloudNativePG sets them up: PostgreSQL's command hands the
# request to another process (instance manager -> plugin sidecar over gRPC) that runs the barman
# tool and returns its exit code. Here the hand-off is a spool directory and the runner a thread of
# this test (the PostgreSQL OS user could not run the project venv's interpreter anyway).
RELAY_SCRIPT = """#!/bin/sh
set -eu
id="$$-$(date +%s%N)"
printf '%s\\n' "$MODE" "$PWD" "$@" > "$QUEUE/$id.tmp"
mv "$QUEUE/$id.tmp" "$QUEUE/$id.req"
n=0
while [ ! -f "$QUEUE/$id.rc" ]; do
  n=$((n + 1)); [ "$n" -le 1200 ] || exit 1
  sleep 0.1
done
exit "$(cat "$QUEUE/$id.rc")"
"""


class Relay:
    """Runs barman-cloud-wal-archive / -wal-restore for PostgreSQL's archive/restore commands."""

    def __init__(self, base: Path, b, log: Path, owner):
        import threading

        self.queue, self.b, self.log, self.owner = base / "queue", b, log, owner
        self.queue.mkdir()
        self.calls: list[tuple[str, int]] = []
        for mode in ("archive", "restore"):
            script = base / f"{mode}.sh"
            script.write_text(RELAY_SCRIPT.replace("set -eu", f"set -eu\nMODE={mode}\nQUEUE={self.queue}"))
            script.chmod(0o755)
        if owner:
            os.chown(self.queue, *owner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.queue.glob("*.req")):
                mode, cwd, *params = request.read_text().splitlines()
                b = self.b
                if mode == "archive":
                    argv = [
                        "barman-cloud-wal-archive",
                        *b.cloud,
                        b.wal_flag,
                        b.destination,
                        b.server,
                        str(Path(cwd) / params[0]),
                    ]
                else:
                    argv = [
                        "barman-cloud-wal-restore",
                        *b.cloud,
                        b.destination,
                        b.server,
                        params[0],
                        str(Path(cwd) / params[1]),
                    ]
                rc = run([str(BARMAN_BIN / argv[0]), *argv[1:]], b.env, self.log, check=False).returncode
                if mode == "restore" and rc == 0 and self.owner:
                    os.chown(Path(cwd) / params[1], *self.owner)
                self.calls.append((f"{mode} {params[0]}", rc))
                request.rename(request.with_suffix(".done"))
                (self.queue / (request.stem + ".rc")).write_text(str(rc))
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def pitr(tmp_path_factory):
    r = wiring.render("dev", config={"backups": "on"}, namespace=NAMESPACE)
    work = tmp_path_factory.mktemp("backups")
    # The PostgreSQL OS user runs archive_command/restore_command: their files live in a directory
    # it can enter (pytest's tmp dirs are private to the test runner).
    base = Path(tempfile.mkdtemp(prefix="itest-barman-"))
    pg_user = svc._pg_os_user()
    s3_ip = svc.free_loopback_address(r.s3_port)
    pg_ip = svc.free_loopback_address(r.pg_port)
    host_map = {r.s3_host: s3_ip, r.pg_host: pg_ip}
    b = barman_invocation(r, base, host_map)
    log = work / "barman.log"
    archive, restore = base / "archive.sh", base / "restore.sh"
    base.chmod(0o755)
    if pg_user:  # the restored server writes its log here
        os.chown(base, *pg_user)

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        relay = Relay(base, b, log, pg_user)
        stack.callback(relay.close)
        s3 = stack.enter_context(wiring.rendered_minio(r, work, s3_ip))
        bootstrap = wiring.MinioBootstrap(r, work / "minio-bootstrap", host_map, s3).run()
        pg = stack.enter_context(
            wiring.rendered_postgres(
                r,
                work,
                pg_ip,
                superuser_network_login=True,  # the backup tools log in as the superuser (the operator's role)
                extra_conf={
                    "wal_level": "replica",
                    "archive_mode": "on",
                    "archive_command": f"'{archive} %p'",
                    "archive_timeout": "0",
                },
            )
        )
        operators.cnpg_reconcile_roles(pg, r.cluster, r.objects)
        operators.cnpg_reconcile_databases(pg, r.cluster, r.databases)
        pg_env = {**b.env, "PGPASSWORD": pg.superuser_password}
        pg_conn = ["--host", pg.socket_dir, "--port", str(pg.port), "--user", pg.superuser]

        pg.execute(
            "CREATE TABLE pitr (id serial PRIMARY KEY, phase text NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())",
            dbname="mlflow",
        )

        def insert(phase: str, n: int) -> None:
            pg.execute("INSERT INTO pitr (phase) SELECT %s FROM generate_series(1, %s)", (phase, n), dbname="mlflow")

        def switch_and_wait() -> str:
            [(segment,)] = pg.execute("SELECT pg_walfile_name(pg_switch_wal())")
            svc._wait_until(
                lambda: (pg.execute("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= segment,
                timeout=120,
                what=f"archiving {segment}",
                logs=(log, pg.log_path),
            )
            return segment

        def base_backup(name: str) -> str:
            run(
                [
                    str(BARMAN_BIN / "barman-cloud-backup"),
                    *b.cloud,
                    b.data_flag,
                    "--name",
                    name,
                    *pg_conn,
                    b.destination,
                    b.server,
                ],
                pg_env,
                log,
                timeout=300,
            )
            return name

        def backups() -> list[dict]:
            out = run(
                [str(BARMAN_BIN / "barman-cloud-backup-list"), *b.cloud, "--format", "json", b.destination, b.server],
                b.env,
                log,
            ).stdout
            return json.loads(out)["backups_list"]

        insert("before-backup", 3)
        switch_and_wait()
        first = base_backup("pitr-base")
        insert("before-T", 5)
        time.sleep(1.0)
        [(target,)] = pg.execute("SELECT clock_timestamp()")
        rows_at_target = pg.execute("SELECT phase, count(*) FROM pitr GROUP BY phase ORDER BY phase", dbname="mlflow")
        time.sleep(1.0)
        insert("after-T", 4)
        last_segment = switch_and_wait()
        rows_at_end = pg.execute("SELECT phase, count(*) FROM pitr GROUP BY phase ORDER BY phase", dbname="mlflow")
        archiver = pg.execute("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]

        # Restore to T into a new data directory, and start it.
        restored = base / "restored"
        listing = backups()
        backup_id = one([x["backup_id"] for x in listing if x.get("backup_name") == first], "base backup")
        run(
            [str(BARMAN_BIN / "barman-cloud-restore"), *b.cloud, b.destination, b.server, backup_id, str(restored)],
            b.env,
            log,
            timeout=300,
        )
        sock = base / "restored-sock"
        sock.mkdir()
        target_text = target.isoformat()
        with open(restored / "postgresql.auto.conf", "a") as conf:
            conf.write(
                f"\nrestore_command = '{restore} %f %p'\nrecovery_target_time = '{target_text}'\n"
                "recovery_target_action = 'promote'\narchive_mode = off\nssl = off\n"
                f"listen_addresses = ''\nport = {pg.port + 1}\nunix_socket_directories = '{sock}'\n"
            )
        (restored / "recovery.signal").touch()
        # The base backup carries the source's pg_hba.conf; over the socket the superuser logs in.
        (restored / "pg_hba.conf").write_text(f"local all {pg.superuser} trust\n")
        restored.chmod(0o700)
        if pg_user:
            for p in [restored, sock, *restored.rglob("*")]:
                os.chown(p, *pg_user)
        pg_env_bin = {"PATH": svc.pg_bin_path(), "LANG": "C.UTF-8", "HOME": str(base)}
        started = time.monotonic()
        run(
            ["pg_ctl", "-D", str(restored), "-l", str(base / "restored.log"), "-w", "-t", "120", "start"],
            pg_env_bin,
            log,
            timeout=150,
        ) if not pg_user else subprocess.run(
            ["pg_ctl", "-D", str(restored), "-l", str(base / "restored.log"), "-w", "-t", "120", "start"],
            env=pg_env_bin,
            user=pg_user[0],
            group=pg_user[1],
            extra_groups=[],
            check=True,
            timeout=150,
            capture_output=True,
        )
        stack.callback(
            lambda: subprocess.run(
                ["pg_ctl", "-D", str(restored), "-m", "fast", "-w", "stop"],
                env=pg_env_bin,
                capture_output=True,
                timeout=60,
                **({"user": pg_user[0], "group": pg_user[1], "extra_groups": []} if pg_user else {}),
            )
        )
        import psycopg2

        def restored_query(sql: str):
            conn = psycopg2.connect(
                host=str(sock), port=pg.port + 1, user=pg.superuser, dbname="mlflow", connect_timeout=5
            )
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetchall()
            finally:
                conn.close()

        svc._wait_until(
            lambda: restored_query("SELECT pg_is_in_recovery()") == [(False,)],
            timeout=120,
            what="restored server promoted",
            logs=(base / "restored.log",),
        )
        recovery_seconds = time.monotonic() - started
        restored_rows = restored_query("SELECT phase, count(*) FROM pitr GROUP BY phase ORDER BY phase")
        restored_max_at = restored_query("SELECT max(at) FROM pitr")[0][0]
        restored_log = (base / "restored.log").read_text(errors="replace")
        yield SimpleNamespace(
            r=r,
            b=b,
            s3=s3,
            pg=pg,
            bootstrap=bootstrap,
            log=log,
            base=base,
            host_map=host_map,
            target=target,
            rows_at_target=rows_at_target,
            rows_at_end=rows_at_end,
            restored_rows=restored_rows,
            restored_max_at=restored_max_at,
            restored_log=restored_log,
            recovery_seconds=recovery_seconds,
            archiver=archiver,
            last_segment=last_segment,
            backups=backups,
            base_backup=base_backup,
            switch_and_wait=switch_and_wait,
            insert=insert,
            first_backup_id=backup_id,
            relay=relay,
        )


def s3_keys(p, prefix: str) -> dict[str, int]:
    with svc.dns_patched(p.host_map):
        client = p.s3.client(endpoint_name=p.r.s3_host, ca_file=p.b.env["AWS_CA_BUNDLE"])
        bucket, _, path = p.b.destination[len("s3://") :].partition("/")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=path + prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def test_backup_target_is_the_rendered_bucket_and_user(pitr):
    r, b = pitr.r, pitr.b
    store_bucket = b.destination[len("s3://") :].split("/")[0]
    assert store_bucket == "postgres-backups" and b.conf["endpointURL"] == f"https://{r.s3_host}:{r.s3_port}"
    assert b.ca == r.minio_tls["ca.crt"]  # the endpoint CA is MinIO's
    state = pitr.bootstrap.state  # read back from MinIO
    assert store_bucket in state["buckets"] and "mlflow" in state["buckets"]
    assert b.env["AWS_ACCESS_KEY_ID"] == "barman" and state["users"]["barman"]["status"] == "enabled"
    # Least privilege: barman's policy (the only one attached to it) names its bucket only,
    # list/get/put/delete (+ multipart).
    [policy_name] = state["users"]["barman"]["policies"]
    policy = state["policies"][policy_name]
    resources = {res for st in policy["Statement"] for res in st["Resource"]}
    assert resources == {f"arn:aws:s3:::{store_bucket}", f"arn:aws:s3:::{store_bucket}/*"}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= actions
    assert not any(a.startswith("s3:*") or a.startswith("admin:") for a in actions)


def test_wal_is_archived_through_the_plugin_command(pitr):
    archived, failed = pitr.archiver
    assert archived >= 2 and failed == 0
    wals = s3_keys(pitr, f"{pitr.b.server}/wals/")
    assert any(pitr.last_segment in key for key in wals), sorted(wals)[-3:]
    assert all(key.endswith(".gz") for key in wals if "/wals/" in key and ".history" not in key)


def test_point_in_time_recovery_finds_exactly_the_rows_of_time_t(pitr):
    print(
        f"\n[pitr] T={pitr.target.isoformat()} rows at T={pitr.rows_at_target} rows at end={pitr.rows_at_end} "
        f"restored={pitr.restored_rows} newest restored row at {pitr.restored_max_at.isoformat()} "
        f"recovery {pitr.recovery_seconds:.1f}s"
    )
    assert pitr.rows_at_target == [("before-T", 5), ("before-backup", 3)]
    assert pitr.rows_at_end == [("after-T", 4), ("before-T", 5), ("before-backup", 3)]
    assert pitr.restored_rows == pitr.rows_at_target
    assert pitr.restored_max_at <= pitr.target
    assert "recovery stopping before commit" in pitr.restored_log
    assert "restored log file" in pitr.restored_log  # WAL came from the store, not from pg_wal


def test_retention_deletes_what_it_should_and_nothing_else(pitr):
    b = pitr.b
    pitr.insert("second-backup", 1)
    pitr.base_backup("pitr-second")
    pitr.insert("third-backup", 1)
    pitr.switch_and_wait()
    pitr.base_backup("pitr-third")
    listing = {x["backup_name"]: x for x in pitr.backups()}
    assert set(listing) == {"pitr-base", "pitr-second", "pitr-third"}
    delete = [
        str(BARMAN_BIN / "barman-cloud-backup-delete"),
        *b.cloud,
        "--retention-policy",
        b.retention,
        b.destination,
        b.server,
    ]
    assert b.retention == "RECOVERY WINDOW OF 30 DAYS"
    before = s3_keys(pitr, "")
    run(delete, b.env, pitr.log)
    assert s3_keys(pitr, "") == before  # every backup is inside the window: nothing goes

    # Age the first two backups beyond the window: their backup.info end time is what the policy reads.
    now = datetime.datetime.now(datetime.UTC)
    with svc.dns_patched(pitr.host_map):
        client = pitr.s3.client(endpoint_name=pitr.r.s3_host, ca_file=b.env["AWS_CA_BUNDLE"])
        bucket = b.destination[len("s3://") :].split("/")[0]
        for name, days in (("pitr-base", 45), ("pitr-second", 40)):
            key = f"{b.server}/base/{listing[name]['backup_id']}/backup.info"
            text = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            stamp = (now - datetime.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
            text = re.sub(r"^(begin_time|end_time)=.*$", lambda m, stamp=stamp: f"{m[1]}={stamp}", text, flags=re.M)
            client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    second_begin_wal = listing["pitr-second"]["begin_wal"]
    before = s3_keys(pitr, "")
    run(delete, b.env, pitr.log)
    after = s3_keys(pitr, "")
    remaining = {x["backup_name"] for x in pitr.backups()}
    # The oldest goes; the second anchors the 30-day window (the newest backup before it) and stays.
    assert remaining == {"pitr-second", "pitr-third"}
    gone = set(before) - set(after)
    first_prefix = f"{b.server}/base/{listing['pitr-base']['backup_id']}/"
    assert any(k.startswith(first_prefix) for k in gone) and not any(k.startswith(first_prefix) for k in after)
    gone_wals = sorted(Path(k).name.split(".")[0] for k in gone if "/wals/" in k)
    assert gone_wals and all(w < second_begin_wal for w in gone_wals)  # only WAL the second backup does not need
    kept_wals = [Path(k).name.split(".")[0] for k in after if "/wals/" in k and ".history" not in k]
    assert all(w >= second_begin_wal for w in kept_wals if len(w) == 24)
    assert not (set(after) - set(before))  # and nothing was added or rewritten
    print(
        f"\n[retention] {b.retention}: deleted backup {listing['pitr-base']['backup_id']} and "
        f"{len(gone_wals)} WAL segment(s) before {second_begin_wal}; kept {sorted(remaining)}"
    )
