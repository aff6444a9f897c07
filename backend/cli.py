"""`kiosk-backend`: serve lookups, import data, add keys, verify the audit log."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import re
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from backend.errors import BackendError
from backend.importer import DEFAULT_MAX_REJECTED_SHARE, DEFAULT_MAX_SHRINK

logger = logging.getLogger(__name__)

DEFAULT_STORE = "sqlite:///var/backend/sltd.sqlite3"
DEFAULT_AUDIT_LOG = Path("var/backend/audit.jsonl")
_TERMINAL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _store_url(value: str | None) -> str:
    return value or os.environ.get("KIOSK_BACKEND_STORE") or DEFAULT_STORE


class ProgressBar:
    """Plain-text progress on stderr: percent of bytes, rows and rows per second."""

    def __init__(
        self, label: str, *, stream: TextIO | None = None, min_interval_s: float = 0.5
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.min_interval = min_interval_s

    def __call__(self, rows: int, done_bytes: int, total_bytes: int) -> None:
        now = time.monotonic()
        final = done_bytes >= total_bytes
        if not final and now - self.last < self.min_interval:
            return
        self.last = now
        fraction = done_bytes / total_bytes if total_bytes else 1.0
        filled = int(fraction * 30)
        rate = rows / max(now - self.started, 1e-9)
        text = (
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} "
            f"{rows:,} rows {rate:,.0f} rows/s"
        )
        self.stream.write(text + ("\n" if final else ""))
        self.stream.flush()


def cmd_import(args: argparse.Namespace) -> int:
    """Import a CSV file (full or delta) into the store."""
    from backend.importer import import_csv
    from backend.store import open_store

    path = Path(args.file)
    with open_store(_store_url(args.store)) as store:
        progress = None if args.quiet else ProgressBar(f"import {path.name}")
        report = import_csv(
            store,
            path,
            delta=args.delta,
            progress=progress,
            max_rejected=args.max_rejected,
            max_rejected_share=args.max_rejected_percent / 100,
            max_shrink=None if args.allow_shrink else DEFAULT_MAX_SHRINK,
        )
    for line, reason in report.rejected[: args.show_rejected]:
        print(f"{path}:{line}: rejected: {reason}", file=sys.stderr)
    hidden = len(report.rejected) - args.show_rejected
    if hidden > 0:
        print(f"... and {hidden} more rejected lines", file=sys.stderr)
    result = report.result
    before = (
        f" (before: {report.previous_count})"
        if report.previous_count is not None
        else ""
    )
    print(
        f"imported {path} ({result.kind}): version {result.version}, "
        f"{result.added} added, {report.net_removed} deleted, "
        f"{len(report.rejected)} rejected, {result.record_count} records in the "
        f"store{before}"
    )
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    """Create an API key for a terminal, store its hash and print the key once."""
    from backend.app import hash_api_key
    from backend.store import open_store

    if not _TERMINAL_RE.match(args.terminal_id):
        print(
            f"error: invalid terminal id {args.terminal_id!r}: use 1 to 64 characters "
            "A-Z, a-z, 0-9, '.', '_' or '-'",
            file=sys.stderr,
        )
        return 2
    api_key = secrets.token_urlsafe(32)
    with open_store(_store_url(args.store)) as store:
        store.add_api_key(args.terminal_id, hash_api_key(api_key))
    print(api_key)
    print(
        f"API key for terminal {args.terminal_id}; it is shown only this once. "
        "Put it in the kiosk config file or KIOSK_API_KEY.",
        file=sys.stderr,
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit log's chain; exit 1 when an entry was edited or removed."""
    from backend.audit import load_or_create_key, verify, worker_log_paths

    log = Path(args.log)
    key_path = Path(args.key) if args.key else log.with_name(log.name + ".key")
    if not log.parent.is_dir():
        print(
            f"error: audit log folder {log.parent} not found; give the "
            "--audit-log path that serve was started with",
            file=sys.stderr,
        )
        return 2
    if not key_path.exists():
        print(f"error: audit key {key_path} not found; pass --key", file=sys.stderr)
        return 2
    key = load_or_create_key(key_path)
    # `serve --workers N` writes one chain per worker beside the main log.
    logs = [path for path in [log, *worker_log_paths(log)] if path.exists()]
    if not logs:
        print(f"error: audit log {log} not found", file=sys.stderr)
        return 2
    failed = False
    for path in logs:
        report = verify(path, key)
        for problem in report.problems:
            print(f"{path}: {problem}")
        if report.ok:
            print(f"{path}: {report.entries} entries, chain intact")
        else:
            print(
                f"{path}: {len(report.problems)} problems in {report.entries} entries"
            )
            failed = True
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP lookup service until interrupted."""
    import uvicorn

    from backend.app import ServiceSettings, create_app, freeze_startup_objects
    from backend.audit import AuditLog
    from backend.store import open_store

    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.tls_client_ca and not args.tls_cert:
        print("error: --tls-client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    folder_error = _audit_folder_error(Path(args.audit_log))
    if folder_error is not None:
        print(f"error: {folder_error}", file=sys.stderr)
        return 2
    port_error = _port_error(args.host, args.port)
    if port_error is not None:
        print(f"error: {port_error}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _serve_workers(args)
    # A mistyped path must not become a new, empty store in new folders.
    store = open_store(_store_url(args.store), create=False)
    audit = AuditLog.open(Path(args.audit_log), fsync=args.audit_fsync)
    settings = ServiceSettings(
        rate_per_terminal=args.rate_limit, burst_per_terminal=args.rate_limit * 2
    )
    app = create_app(store, audit=audit, settings=settings)
    freeze_startup_objects()
    logger.info(
        "serving on %s:%d (TLS %s)",
        args.host,
        args.port,
        "on" if args.tls_cert else "off",
    )
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level.lower(),
            access_log=False,
            **_tls_options(args),  # type: ignore[arg-type]
        )
    finally:
        store.close()
        audit.close()
        logger.info("service stopped")
    return 0


def _port_error(host: str, port: int) -> str | None:
    """Return why the service cannot listen on host:port, or None.

    Checked before the store and the audit log are opened, so a port in use
    ends the start with one line instead of uvicorn's message after the
    audit files were created. Another process may still take the port in
    between; uvicorn then reports it as before.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve --host {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is in use by another process; stop "
                    "it or choose another --port"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _audit_folder_error(path: Path) -> str | None:
    """Return why the audit log cannot go to `path`, or None.

    Only the default folder is created. A mistyped --audit-log would
    otherwise start a new chain in new folders, and `audit verify` on the
    intended path would check an old log.
    """
    if path.name == "" or path.is_dir():
        return f"audit log path {str(path)!r} is a folder: name a file in it"
    if path.suffix == ".key" or path.name.endswith(".head"):
        return (
            f"audit log path {path} names the log's key or head file; give "
            "the log itself, such as var/backend/audit.jsonl"
        )
    folder = path.parent
    if folder.is_dir() or path == DEFAULT_AUDIT_LOG:
        return None
    if folder.exists():
        return f"audit log folder {folder} is not a folder"
    return (
        f"audit log folder {folder} does not exist; create it, or fix the "
        "--audit-log path"
    )


def _tls_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "ssl_certfile": args.tls_cert,
        "ssl_keyfile": args.tls_key,
        "ssl_ca_certs": args.tls_client_ca,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if args.tls_client_ca else ssl.CERT_NONE,
    }


def _serve_workers(args: argparse.Namespace) -> int:
    """Run `args.workers` uvicorn worker processes on one socket.

    NOTE: rate limits and the replay cache are kept per worker, so a
    terminal gets up to N times its rate, and a retry that reaches another
    worker is looked up (and audited) again.
    """
    import json

    import uvicorn

    from backend.app import WORKER_CONFIG_ENV
    from backend.store import open_store

    store_url = _store_url(args.store)
    # Fail here, once, rather than in every worker.
    open_store(store_url, create=False).close()
    os.environ[WORKER_CONFIG_ENV] = json.dumps(
        {
            "store": store_url,
            "audit_log": str(Path(args.audit_log).resolve()),
            "audit_fsync": args.audit_fsync,
            "rate": args.rate_limit,
        }
    )
    logger.info("serving on %s:%d with %d workers", args.host, args.port, args.workers)
    uvicorn.run(
        "backend.app:create_worker_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        **_tls_options(args),  # type: ignore[arg-type]
    )
    logger.info("service stopped")
    return 0


def _port(text: str) -> int:
    value = _integer(text, "port")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: use 1 to 65535")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid {what} {text!r}: expected a whole number"
        ) from None


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text, "value")
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"invalid value {value}: use {minimum} or more"
            )
        return value

    return parse


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid {what} {text!r}: expected a number"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"invalid {what} {text!r}: expected a finite number"
        )
    return value


def _rate(text: str) -> float:
    value = _number(text, "rate limit")
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid rate limit {text}: use a number of requests per second "
            "above 0, such as 200"
        )
    return value


def _percent(text: str) -> float:
    value = _number(text, "percentage")
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"invalid percentage {text}: use 0 to 100")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-backend",
        description="Lookup service for reported stolen and lost travel documents.",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("KIOSK_LOG_LEVEL", "INFO"),
        help="logging level",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    store_help = (
        "store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        f"(default: $KIOSK_BACKEND_STORE or {DEFAULT_STORE})"
    )

    serve = commands.add_parser("serve", help="run the HTTP lookup service")
    serve.add_argument("--store", help=store_help)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8080, help="TCP port (default 8080)"
    )
    serve.add_argument("--tls-cert", help="server certificate chain, PEM")
    serve.add_argument("--tls-key", help="server private key, PEM")
    serve.add_argument(
        "--tls-client-ca", help="CA bundle; when set, clients need a certificate"
    )
    serve.add_argument(
        "--audit-log",
        default=str(DEFAULT_AUDIT_LOG),
        help="audit log file (key beside it)",
    )
    serve.add_argument(
        "--audit-fsync", action="store_true", help="flush each audit entry to disk"
    )
    serve.add_argument(
        "--rate-limit",
        type=_rate,
        default=200.0,
        help="requests per second per terminal",
    )
    serve.add_argument(
        "--workers",
        type=_at_least(1),
        default=1,
        help="worker processes (default 1); each writes its own audit chain",
    )
    serve.set_defaults(handler=cmd_serve)

    imp = commands.add_parser("import", help="import a CSV file in one transaction")
    imp.add_argument("file", help="CSV file")
    imp.add_argument("--store", help=store_help)
    imp.add_argument("--delta", action="store_true", help="the file has an op column")
    imp.add_argument(
        "--max-rejected",
        type=_at_least(0),
        default=100,
        help="abort, keeping the old data, past this many invalid lines (default 100)",
    )
    imp.add_argument(
        "--max-rejected-percent",
        type=_percent,
        default=100 * DEFAULT_MAX_REJECTED_SHARE,
        help="full import: abort, keeping the old data, when more than this "
        "percentage of lines is invalid (default %(default)g)",
    )
    imp.add_argument(
        "--allow-shrink",
        action="store_true",
        help="full import: allow the new list to hold more than "
        f"{100 * DEFAULT_MAX_SHRINK:g}%% fewer records than the store",
    )
    imp.add_argument(
        "--show-rejected",
        type=_at_least(0),
        default=50,
        help="rejected lines to print (default 50)",
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(handler=cmd_import)

    keys = commands.add_parser("keys", help="manage terminal API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_commands.add_parser(
        "add", help="create a key for a terminal and print it once"
    )
    add.add_argument("terminal_id", help="terminal id, e.g. GATE-07")
    add.add_argument("--store", help=store_help)
    add.set_defaults(handler=cmd_keys_add)

    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    check = audit_commands.add_parser("verify", help="detect edited or removed entries")
    check.add_argument(
        "--audit-log",
        "--log",
        dest="log",
        default=str(DEFAULT_AUDIT_LOG),
        help=f"audit log file, as given to serve --audit-log (default: "
        f"{DEFAULT_AUDIT_LOG})",
    )
    check.add_argument("--key", help="audit key file (default: LOG.key)")
    check.set_defaults(handler=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
