"""The `cmhost` command: serve, worker, keys, accounts, faults, model export, db upgrade."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmhost.config import Settings, env_defaults
from cmhost.logs import configure_logging
from cmhost.memory import return_large_frees_to_the_os
from cmhost.service.faults_spec import JOBS, KINDS


def _add_storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (CMHOST_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (CMHOST_DATABASE_URL); "
                                          "default SQLite in the data directory")
    p.add_argument("--master-key-file", type=Path,
                   help="file holding the master key (CMHOST_MASTER_KEY_FILE); "
                        "default $XDG_CONFIG_HOME/cmhost/master.key")
    p.add_argument("--accept-new-database", action="store_true", default=None,
                   help="start on an empty database although the data directory belongs to "
                        "another one (CMHOST_ACCEPT_NEW_DATABASE)")


def _add_service_flags(p: argparse.ArgumentParser) -> None:
    _add_storage_flags(p)
    p.add_argument("--clock", choices=["real", "virtual"], help="clock mode (CMHOST_CLOCK)")
    p.add_argument("--blob-url", help="where backup artifacts go (CMHOST_BLOB_URL); "
                                      "default file://<data-dir>/blobs")
    p.add_argument("--provisioning-seconds", type=float,
                   help="time a new server spends in CREATING (default 5)")
    p.add_argument("--deletion-seconds", type=float,
                   help="time a server spends in DELETING (default 2)")
    p.add_argument("--server-limit", type=int, help="default servers per account and region")
    p.add_argument("--backup-limit", type=int,
                   help="default manual backups per account and region")
    p.add_argument("--puppet-driver", choices=["embedded", "puppetserver"],
                   help="what runs new Puppet servers (CMHOST_PUPPET_DRIVER, default embedded)")
    p.add_argument("--chef-driver", choices=["embedded", "goiardi"],
                   help="what runs new Chef servers (CMHOST_CHEF_DRIVER, default embedded)")
    p.add_argument("--engine-host", help="address real engines listen on (default 127.0.0.1)")
    p.add_argument("--engine-ports", help="port range for real engines (default 18140-18999)")
    p.add_argument("--java-heap", help="puppetserver heap size (default 1g)")
    p.add_argument("--health-interval", type=float,
                   help="seconds between engine health checks (default 30)")
    p.add_argument("--events-per-server", type=int,
                   help="events retention: each server keeps its newest N (default 10000)")
    p.add_argument("--job-lease-seconds", type=float,
                   help="how long a worker holds a job step before others may take it over "
                        "(default 300)")
    p.add_argument("--credential-pool", type=int, metavar="SERVERS",
                   help="servers' worth of RSA keys and passwords the worker makes ahead of "
                        "CreateServer (CMHOST_CREDENTIAL_POOL, default 4; 0: off)")
    p.add_argument("--audit-retention-days", type=float, metavar="DAYS",
                   help="how long audit records stay in the database "
                        "(CMHOST_AUDIT_RETENTION_DAYS, default 90)")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"],
                   help="(CMHOST_LOG_LEVEL, default info)")
    p.add_argument("--log-format", default=None, choices=["text", "json"],
                   help="log lines as text or as JSON objects (CMHOST_LOG_FORMAT, default text)")
    p.add_argument("--puppetdb", choices=["on", "off"],
                   help="run a PuppetDB beside each puppetserver-driven server (CMHOST_PUPPETDB, "
                        "default off; needs --puppetdb-database-url)")
    p.add_argument("--puppetdb-database-url", metavar="URL",
                   help="PostgreSQL server where each server's PuppetDB gets its own database "
                        "(CMHOST_PUPPETDB_DATABASE_URL); the role must be allowed CREATE DATABASE")


def _add_admin_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="the running cmhost (default http://<--host>:<--port>)")
    p.add_argument("--host", help="its listen address (CMHOST_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="its port (CMHOST_PORT, default 4580)")
    p.add_argument("--admin-token", help="its admin token, needed off loopback "
                                         "(CMHOST_ADMIN_TOKEN)")


def _add_faults_parser(sub: Any) -> None:
    faults = sub.add_parser("faults", help="arm, list and clear faults of a running cmhost "
                                           "(through /_cmhost/faults)")
    faults_sub = faults.add_subparsers(dest="faults_command", required=True)
    add = faults_sub.add_parser("add", help="arm a fault; prints it (with its id) as JSON")
    add.add_argument("kind", choices=KINDS)
    add.add_argument("--json", dest="fault_json", metavar="OBJECT",
                     help="the fault as a JSON object (the flags below override its fields)")
    for flag, kind, text in _FAULT_FLAGS:
        add.add_argument(flag, type=kind, help=text)
    add.add_argument("--no-count", action="store_true",
                     help="fire every time until it expires (\"count\": null)")
    _add_admin_client_flags(add)
    lst = faults_sub.add_parser("list", help="list the armed faults as JSON")
    _add_admin_client_flags(lst)
    clear = faults_sub.add_parser("clear", help="disarm every fault, or the one named")
    clear.add_argument("fault_id", nargs="?", help="the id of one fault")
    _add_admin_client_flags(clear)


# `cmhost faults add` flags: each sets the fault field of its name (--server-name: server_name).
_FAULT_FLAGS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--job", str, f"fail_job: the job to fail ({', '.join(JOBS)})"),
    ("--status-reason", str, "fail_job: the StatusReason; server_status: the reason shown"),
    ("--status", str, "server_status: UNHEALTHY, CONNECTION_LOST, FAILED or TERMINATED"),
    ("--duration", float, "server_status: seconds (on cmhost's clock) the server stays so"),
    ("--operation", str, "error, latency: the operation (default: every operation)"),
    ("--code", str, "error: the AWS error code, e.g. ThrottlingException"),
    ("--message", str, "error: its message (default: the code)"),
    ("--http-status", int, "error: the HTTP status (default 400)"),
    ("--latency", float, "latency: seconds added to the call"),
    ("--account", str, "only this 12-digit account (default: every account)"),
    ("--server-name", str, "only servers whose name matches this glob (default: every one)"),
    ("--count", int, "how many times it fires (default 1)"),
    ("--probability", float, "the chance it fires each time it could (default 1)"),
    ("--expires-in", float, "seconds (on cmhost's clock) until it is disarmed (default 3600)"),
]


def _add_keys_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage access keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="issue a key (the secret is printed once, in one JSON object): the "
                       "account's root key, or with --user one of that user's (two at most)")
    create.add_argument("--account", required=True, help="12-digit account ID")
    create.add_argument("--user", help="the user the key belongs to (see `cmhost users`); "
                                       "without it, the account's root key, which may do "
                                       "everything")
    _add_storage_flags(create)
    lst = keys_sub.add_parser("list", help="list issued keys with their user, status, "
                                           "creation and last use (never their secrets)")
    lst.add_argument("--account", help="only this account's keys")
    lst.add_argument("--format", choices=["json", "table"], default="json")
    _add_storage_flags(lst)
    for name, text in (("delete", "delete an issued key"),
                       ("deactivate", "make a key Inactive: it is refused until activated"),
                       ("activate", "make an Inactive key Active again")):
        one = keys_sub.add_parser(name, help=text)
        one.add_argument("access_key_id")
        _add_storage_flags(one)


def _add_users_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="users of an account and their policies")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create a user (prints it as JSON)")
    create.add_argument("name")
    create.add_argument("--account", required=True, help="12-digit account ID")
    create.add_argument("--policy", action="append", default=[], type=Path, metavar="FILE",
                        help="an IAM JSON policy to attach inline (named after the file); "
                             "may be repeated")
    create.add_argument("--managed", action="append", default=[], metavar="NAME",
                        help="a managed policy to attach (e.g. AWSOpsWorksCMReadOnlyAccess); "
                             "may be repeated")
    _add_storage_flags(create)
    lst = users_sub.add_parser("list", help="list users with their policies and keys")
    lst.add_argument("--account", help="only this account's users")
    lst.add_argument("--format", choices=["json", "table"], default="json")
    _add_storage_flags(lst)
    delete = users_sub.add_parser("delete", help="delete a user, its policies and its keys")
    delete.add_argument("name")
    delete.add_argument("--account", required=True)
    _add_storage_flags(delete)
    attach = users_sub.add_parser("attach-policy", help="attach an inline policy (a file) or "
                                                        "a managed one")
    attach.add_argument("name")
    attach.add_argument("--account", required=True)
    attach.add_argument("--policy", type=Path, metavar="FILE")
    attach.add_argument("--policy-name", help="the inline policy's name (default: the "
                                              "file's name without .json)")
    attach.add_argument("--managed", metavar="NAME")
    _add_storage_flags(attach)
    detach = users_sub.add_parser("detach-policy", help="detach an inline policy (by name) "
                                                        "or a managed one")
    detach.add_argument("name")
    detach.add_argument("--account", required=True)
    detach.add_argument("--policy-name")
    detach.add_argument("--managed", metavar="NAME")
    _add_storage_flags(detach)


def _add_audit_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="read the audit trail (CloudTrail records)")
    audit.add_argument("--account", help="only this account's records")
    audit.add_argument("--region", help="only this region's records")
    audit.add_argument("--user", help="only calls by this user (root: root)")
    audit.add_argument("--event-name", help="only this event, e.g. DeleteServer")
    audit.add_argument("--since", help="from this time on (ISO 8601, e.g. "
                                       "2024-05-01T12:00:00Z, or epoch seconds)")
    audit.add_argument("--until", help="up to this time (as --since)")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many, newest "
                                                                "first (default 1000)")
    audit.add_argument("--format", choices=["table", "json"], default="table",
                       help="a table, or the records as JSON lines")
    _add_storage_flags(audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmhost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (and, unless --no-worker, the worker)")
    serve.add_argument("--host", help="listen address (CMHOST_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (CMHOST_PORT, default 4580)")
    serve.add_argument("--throttle", choices=["on", "off"], help="AWS throttling (default on)")
    serve.add_argument("--no-worker", action="store_true", default=None,
                       help="serve the API only (CMHOST_NO_WORKER=1)")
    serve.add_argument("--public-url",
                       help="URL nodes use to reach this API in user data (CMHOST_PUBLIC_URL)")
    serve.add_argument("--admin-token",
                       help="bearer token for /_cmhost/ endpoints that change anything; "
                            "required for them off loopback (CMHOST_ADMIN_TOKEN)")
    serve.add_argument("--metrics-token",
                       help="bearer token that lets callers off loopback scrape /metrics "
                            "(CMHOST_METRICS_TOKEN)")
    serve.add_argument("--header-timeout", type=float, metavar="SECONDS",
                       help="close a connection whose request headers take longer "
                            "(CMHOST_HEADER_TIMEOUT, default 10)")
    serve.add_argument("--body-timeout", type=float, metavar="SECONDS",
                       help="close a connection whose request body takes longer after its "
                            "headers (CMHOST_BODY_TIMEOUT, default 60)")
    _add_service_flags(serve)

    worker = sub.add_parser("worker", help="run jobs and schedules only, no API")
    _add_service_flags(worker)

    _add_keys_parser(sub)
    _add_users_parser(sub)
    _add_audit_parser(sub)

    accounts = sub.add_parser("accounts", help="per-account settings")
    acc_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    limits = acc_sub.add_parser("set-limits", help="set an account's server/backup limits")
    limits.add_argument("--account", required=True)
    limits.add_argument("--server-limit", type=int)
    limits.add_argument("--backup-limit", type=int)
    _add_storage_flags(limits)

    model = sub.add_parser("model", help="the service model")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    export = model_sub.add_parser("export", help="write a botocore model for AWS_DATA_PATH")
    export.add_argument("directory", type=Path)

    _add_faults_parser(sub)

    db = sub.add_parser("db", help="the database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations")
    _add_storage_flags(upgrade)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    values = env_defaults()
    mapping = {
        "host": "host", "port": "port", "data_dir": "data_dir", "database_url": "database_url",
        "master_key_file": "master_key_file", "clock": "clock",
        "provisioning_seconds": "provisioning_seconds", "deletion_seconds": "deletion_seconds",
        "server_limit": "server_limit", "backup_limit": "backup_limit",
        "puppet_driver": "puppet_driver", "chef_driver": "chef_driver",
        "public_url": "public_url", "log_level": "log_level", "blob_url": "blob_url",
        "engine_host": "engine_host", "engine_ports": "engine_ports", "java_heap": "java_heap",
        "health_interval": "health_interval", "events_per_server": "events_per_server",
        "job_lease_seconds": "job_lease_seconds", "credential_pool": "credential_pool",
        "admin_token": "admin_token", "accept_new_database": "accept_new_database",
        "header_timeout": "header_timeout", "body_timeout": "body_timeout",
        "log_format": "log_format", "metrics_token": "metrics_token",
        "puppetdb_database_url": "puppetdb_database_url",
        "audit_retention_days": "audit_retention_days",
    }
    for arg, field_name in mapping.items():
        value = getattr(args, arg, None)
        if value is not None:
            values[field_name] = value
    throttle = getattr(args, "throttle", None)
    if throttle is not None:
        values["throttle"] = throttle == "on"
    puppetdb = getattr(args, "puppetdb", None)
    if puppetdb is not None:
        values["puppetdb"] = puppetdb == "on"
    if getattr(args, "no_worker", None):
        values["run_worker"] = False
    if args.command == "worker":  # the worker command is the worker, whatever CMHOST_NO_WORKER says
        values["run_worker"] = True
    return Settings(**values)  # type: ignore[arg-type]


def _fail(message: str) -> int:
    print(f"cmhost: error: {message}", file=sys.stderr)
    return 2


def cmd_serve(settings: Settings) -> int:
    from cmhost.dirlock import take_worker_lock
    from cmhost.listen import bind_listeners, uvicorn_server

    # Everything that can refuse the start does so before anything is opened or started:
    # the settings, the data directory's worker lock, then the port.
    settings.check_listening()
    # The lock is an open descriptor that stays open until the process ends.
    take_worker_lock(settings, f"cmhost serve on {settings.host}:{settings.port}")
    sockets = bind_listeners(settings.host, settings.port)

    from cmhost.app import CmhostApp

    app = CmhostApp(settings)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # generations so each collection scans only what requests allocate.
    gc.collect()
    gc.freeze()
    log = logging.getLogger("cmhost")
    if not settings.loopback:
        log.warning("listening on %s: the development key test/test is disabled; use issued "
                    "keys", settings.host)
    log.info("serving on %s", ", ".join(_address(s) for s in sockets))
    uvicorn_server(app, settings).run(sockets=sockets)
    return 0


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cmd_worker(settings: Settings) -> int:
    from cmhost.app import CmhostApp
    from cmhost.dirlock import take_worker_lock

    settings.check_public_url()
    settings.check_audit_retention()
    take_worker_lock(settings, "cmhost worker")  # held by an open descriptor until the end
    app = CmhostApp(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    app.start()
    while not stop.is_set():
        time.sleep(0.2)
    app.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return_large_frees_to_the_os()
    try:
        settings = settings_from(args)
    except ValueError as exc:
        return _fail(str(exc))
    configure_logging(settings)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from cmhost.storage.secrets import MasterKeyError

    try:
        return _dispatch(args, settings)
    except (MasterKeyError, ValueError) as exc:
        return _fail(str(exc))


def cmd_faults(args: argparse.Namespace, settings: Settings) -> int:
    """`cmhost faults`: talks to the running cmhost over HTTP, so a fault is checked, armed
    (and a server_status fault applied) by the service itself, counts at once in the process
    that serves, and the same admin rule holds as for /_cmhost/faults."""
    from cmhost.admin_client import AdminClient, AdminError

    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    url = args.url or (f"http://[{host}]:{settings.port}" if ":" in host
                       else f"http://{host}:{settings.port}")
    client = AdminClient(url, settings.admin_token)
    try:
        if args.faults_command == "add":
            try:
                fault = json.loads(args.fault_json) if args.fault_json else {}
            except ValueError as exc:
                return _fail(f"--json is not valid JSON: {exc}")
            if not isinstance(fault, dict):
                return _fail("--json must be a JSON object")
            fault["kind"] = args.kind
            for flag, _, _ in _FAULT_FLAGS:
                value = getattr(args, flag[2:].replace("-", "_"))
                if value is not None:
                    fault[flag[2:].replace("-", "_")] = value
            if args.no_count:
                fault["count"] = None
            print(json.dumps(client.arm_fault(fault), indent=2))
        elif args.faults_command == "list":
            print(json.dumps({"faults": client.list_faults()}, indent=2))
        elif args.fault_id:
            client.remove_fault(args.fault_id)
            print(json.dumps({"removed": args.fault_id}))
        else:
            print(json.dumps({"cleared": client.clear_faults()}))
    except AdminError as exc:
        return _fail(exc.message if not exc.code else f"{exc.code}: {exc.message}")
    return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "faults":
        return cmd_faults(args, settings)
    if args.command == "worker":
        return cmd_worker(settings)
    if args.command == "model":
        from cmhost.api.export import export_model

        for path in export_model(args.directory):
            print(path)
        return 0

    from cmhost.app import open_database

    db, box = open_database(settings)
    if args.command == "db":
        print(json.dumps({"database": _redact(settings.resolved_database_url),
                          "status": "up to date"}))
        return 0
    if args.command == "keys":
        from cmhost.cli_access import cmd_keys

        return cmd_keys(args, db, box)
    if args.command == "users":
        from cmhost.cli_access import cmd_users

        return cmd_users(args, db)
    if args.command == "audit":
        from cmhost.cli_access import cmd_audit

        return cmd_audit(args, db)
    if args.command == "accounts":
        from cmhost.storage import repo

        if not (len(args.account) == 12 and args.account.isdigit()):
            return _fail("--account must be a 12-digit account ID")
        for value in (args.server_limit, args.backup_limit):
            if value is not None and value < 0:
                return _fail("limits must be 0 or more")
        with db.write() as conn:
            repo.set_account_limits(conn, args.account, time.time(),
                                    server_limit=args.server_limit,
                                    backup_limit=args.backup_limit)
        return 0
    return _fail(f"unknown command {args.command}")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


if __name__ == "__main__":
    sys.exit(main())
