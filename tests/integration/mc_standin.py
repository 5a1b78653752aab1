"""A recording stand-in for MinIO's ``mc`` (the real client is not available here).

Installed as an executable ``mc`` on the PATH of the MinIO bootstrap Job's script (see
:func:`install`). Every invocation appends one JSON line to ``$MC_STANDIN_LOG``: argv, the
exit code, whether ``MC_HOST_<alias>`` was set (and its user/endpoint, never the password in
clear: only whether it equals ``$MC_STANDIN_ROOT_PASSWORD``) and the CA files found in
``$MC_CONFIG_DIR/certs/CAs`` (where the real ``mc`` looks for extra trusted CAs).

MinIO's state (bucket, users with secret keys, policies with documents, attachments) is emulated
in the JSON file ``$MC_STANDIN_STATE``, with the semantics of ``mc`` RELEASE.2025-09-07:

* ``admin info ALIAS``: succeeds when the endpoint of ``MC_HOST_<alias>`` answers over TLS,
  verified against the CAs in ``$MC_CONFIG_DIR/certs/CAs`` only (a wrong or missing CA, or an
  unknown name, fails like the real client). ``state["admin_info_failures_left"]`` makes the
  next N calls fail first ("server not ready"), to exercise the script's wait loop.
* ``mb [--ignore-existing] [--region R] ALIAS/BUCKET``: creates the bucket -- for real, in the
  S3 server behind the endpoint (moto here), so the bucket MLflow uses is the one this created;
  an existing bucket is an error unless ``--ignore-existing``.
* ``admin user add ALIAS ACCESS SECRET``: creates the user or sets its secret key.
* ``admin policy create ALIAS NAME FILE``: creates the policy or replaces its document (the
  file must be a JSON policy document).
* ``admin policy attach ALIAS NAME --user USER``: attaches; an already attached policy fails
  with MinIO's "The specified policy change is already in effect." (exit 1); unknown policy or
  user fail too.

Anything else fails with exit 2 ("not emulated"), so an unexpected call is never silently OK.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

STATE_ENV = "MC_STANDIN_STATE"
LOG_ENV = "MC_STANDIN_LOG"
ROOT_PASSWORD_ENV = "MC_STANDIN_ROOT_PASSWORD"
ALREADY_IN_EFFECT = (
    "mc: <ERROR> Unable to make user/group policy association. The specified policy change is already in effect."
)


class McError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def empty_state() -> dict:
    return {"buckets": {}, "users": {}, "policies": {}, "attachments": {}, "admin_info_failures_left": 0}


def install(bin_dir: Path) -> Path:
    """Write an executable ``mc`` into ``bin_dir`` that runs this module with the venv python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "mc"
    target.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "$@"\n')
    target.chmod(0o755)
    return target


def _alias(env: dict, alias: str) -> dict:
    raw = env.get(f"MC_HOST_{alias}")
    if not raw:
        raise McError(
            f"mc: <ERROR> Unable to initialize new alias from the provided credentials "
            f"(no MC_HOST_{alias} and no config for alias {alias!r})."
        )
    parts = urlsplit(raw)
    return {
        "scheme": parts.scheme,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "host": parts.hostname,
        "port": parts.port or (443 if parts.scheme == "https" else 80),
    }


def _ca_dir(env: dict) -> Path | None:
    config_dir = env.get("MC_CONFIG_DIR")
    return Path(config_dir) / "certs" / "CAs" if config_dir else None


def _ssl_context(env: dict) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify + check_hostname, no system CAs
    ca_dir = _ca_dir(env)
    loaded = 0
    if ca_dir and ca_dir.is_dir():
        for f in sorted(ca_dir.iterdir()):
            if f.is_file():
                ctx.load_verify_locations(cafile=str(f))
                loaded += 1
    if not loaded:
        raise McError(
            "mc: <ERROR> Unable to connect: x509: certificate signed by unknown authority "
            "(no CA in $MC_CONFIG_DIR/certs/CAs)"
        )
    return ctx


def _check_tls(env: dict, alias: dict) -> None:
    if alias["scheme"] != "https":
        raise McError(f"mc: <ERROR> refusing plain http endpoint {alias['host']}")
    ctx = _ssl_context(env)
    try:
        with (
            socket.create_connection((alias["host"], alias["port"]), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=alias["host"]),
        ):
            pass
    except (OSError, ssl.SSLError) as exc:
        raise McError(f"mc: <ERROR> Unable to get service info: {exc}") from exc


def _create_bucket(env: dict, alias: dict, bucket: str, region: str | None) -> None:
    """CreateBucket in the S3 server behind the alias, trusting only $MC_CONFIG_DIR/certs/CAs."""
    import tempfile

    import boto3
    from botocore.config import Config

    ca_dir = _ca_dir(env)
    # boto3 wants one bundle file: written outside the CA directory, removed afterwards.
    with tempfile.NamedTemporaryFile("w", suffix=".pem", dir=Path(env[STATE_ENV]).parent) as bundle:
        bundle.write("".join(f.read_text() for f in sorted(ca_dir.iterdir()) if f.is_file()))
        bundle.flush()
        client = boto3.client(
            "s3",
            endpoint_url=f"https://{alias['host']}:{alias['port']}",
            aws_access_key_id=alias["user"],
            aws_secret_access_key=alias["password"],
            region_name=region or "us-east-1",
            verify=bundle.name,
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30
            ),
        )
        kwargs: dict = {"Bucket": bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(**kwargs)


def _target(arg: str) -> tuple[str, str]:
    alias, _, rest = arg.partition("/")
    return alias, rest.strip("/")


def run(argv: list[str], env: dict, state: dict) -> str:
    """Apply one ``mc`` invocation to ``state``; returns stdout, raises :class:`McError`."""
    args = [a for a in argv if a not in ("--quiet", "--no-color", "--json")]
    if args[:2] == ["admin", "info"] and len(args) == 3:
        alias = _alias(env, args[2])
        if state.get("admin_info_failures_left", 0) > 0:
            state["admin_info_failures_left"] -= 1
            raise McError("mc: <ERROR> Unable to get service info: Server not initialized yet, please try again.")
        _check_tls(env, alias)
        return f"●  {alias['host']}:{alias['port']}\n   Uptime: 1 minute\n"
    if args[:1] == ["mb"]:
        rest, ignore, region = args[1:], False, None
        positional = []
        i = 0
        while i < len(rest):
            if rest[i] in ("--ignore-existing", "-p"):
                ignore = True
            elif rest[i] == "--region":
                i += 1
                region = rest[i]
            elif rest[i].startswith("-"):
                raise McError(f"mc: <ERROR> mb option {rest[i]} not emulated", 2)
            else:
                positional.append(rest[i])
            i += 1
        if len(positional) != 1:
            raise McError("mc: <ERROR> mb needs exactly one ALIAS/BUCKET", 2)
        alias_name, bucket = _target(positional[0])
        alias = _alias(env, alias_name)
        if bucket in state["buckets"]:
            if ignore:
                return f"Bucket created successfully `{positional[0]}`.\n"
            raise McError(
                f"mc: <ERROR> Unable to make bucket `{positional[0]}`. Your previous request to create "
                "the named bucket succeeded and you already own it."
            )
        _check_tls(env, alias)
        _create_bucket(env, alias, bucket, region)
        state["buckets"][bucket] = {"region": region}
        return f"Bucket created successfully `{positional[0]}`.\n"
    if args[:3] == ["admin", "user", "add"] and len(args) == 6:
        _alias(env, args[3])
        access, secret = args[4], args[5]
        if len(access) < 3 or len(secret) < 8:
            raise McError("mc: <ERROR> Unable to add new user. The access key or secret key is invalid.")
        state["users"][access] = {"secret_key": secret, "status": "enabled"}
        return f"Added user `{access}` successfully.\n"
    if args[:3] == ["admin", "policy", "create"] and len(args) == 6:
        _alias(env, args[3])
        name, path = args[4], Path(args[5])
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise McError(f"mc: <ERROR> Unable to read policy file {path}: {exc}") from exc
        if not isinstance(document, dict) or "Statement" not in document:
            raise McError("mc: <ERROR> Unable to create new policy: invalid policy document")
        state["policies"][name] = document
        return f"Created policy `{name}` successfully.\n"
    if args[:3] == ["admin", "policy", "attach"] and len(args) == 7 and args[5] == "--user":
        _alias(env, args[3])
        name, user = args[4], args[6]
        if name not in state["policies"]:
            raise McError(
                f"mc: <ERROR> Unable to make user/group policy association. The canned policy `{name}` does not exist."
            )
        if user not in state["users"]:
            raise McError(
                f"mc: <ERROR> Unable to make user/group policy association. The specified user `{user}` does not exist."
            )
        attached = state["attachments"].setdefault(user, [])
        if name in attached:
            raise McError(ALREADY_IN_EFFECT)
        attached.append(name)
        return f"Attached Policies: [{name}]\nTo User: {user}\n"
    raise McError(f"mc: <ERROR> mc stand-in: invocation not emulated: {argv}", 2)


def _record_env(env: dict) -> dict:
    aliases = {}
    for key, _value in env.items():
        if key.startswith("MC_HOST_"):
            parts = _alias(env, key[len("MC_HOST_") :])
            aliases[key] = {
                "scheme": parts["scheme"],
                "user": parts["user"],
                "endpoint": f"{parts['host']}:{parts['port']}",
                "password_is_root": bool(parts["password"]) and parts["password"] == env.get(ROOT_PASSWORD_ENV),
            }
    ca_dir = _ca_dir(env)
    cas = {f.name: f.read_text() for f in sorted(ca_dir.iterdir()) if f.is_file()} if ca_dir and ca_dir.is_dir() else {}
    return {"mc_hosts": aliases, "mc_config_dir": env.get("MC_CONFIG_DIR"), "ca_files": cas}


def main() -> int:
    env = dict(os.environ)
    state_path, log_path = Path(env[STATE_ENV]), Path(env[LOG_ENV])
    argv = sys.argv[1:]
    with open(state_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(state_path.read_text()) if state_path.exists() else empty_state()
        record = {"argv": argv, **_record_env(env)}
        try:
            out, code, err = run(argv, env, state), 0, ""
        except McError as exc:
            out, code, err = "", exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the S3 call failed: mc exits 1
            out, code, err = "", 1, f"mc: <ERROR> {type(exc).__name__}: {exc}"
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True))
        record.update(exit=code, stderr=err)
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
    sys.stdout.write(out)
    if err:
        sys.stderr.write(err + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
