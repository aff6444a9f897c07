"""Command line of the kiosk: the terminal app, batch scans and MRZ parsing."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from backend.errors import BackendError
from backend.records import LookupAnswer, Result
from kiosk import __version__
from kiosk.errors import ConfigError, KioskError
from kiosk.lookup.base import BackendStatus, LookupClient
from kiosk.lookup.queue import LateHitCallback, QueuedCheck
from kiosk.pipeline import ScanOutcome, check_image, check_text
from kiosk.tui.present import format_age

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO_ROOT / "fixtures" / "images"
SAMPLE_RECORDS = REPO_ROOT / "fixtures" / "sltd_sample.csv"
DEFAULT_STORE = Path("var") / "kiosk.sqlite3"
# `source` of answers from the offline copy.
OFFLINE_SOURCE = "offline"
# Seconds between syncs of the offline copy and drains of the re-check queue.
MAINTAIN_EVERY_S = 60.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
_SUFFIX_LIST = ", ".join(sorted(IMAGE_SUFFIXES))


def _add_lookup_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # The same options are accepted before and after the command. After it,
    # an absent option must not overwrite a value given before it, so the
    # command's copies have no default at all.
    default: object = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--backend",
        metavar="URL",
        default=default,
        help="lookup service URL, such as http://127.0.0.1:8080; without it "
        "the embedded store is used",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=default,
        metavar="PATH",
        help=f"embedded SQLite store file, which must exist (default: "
        f"{DEFAULT_STORE}, created from the bundled sample list on first use)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="PATH",
        help="kiosk.toml to read (default: $KIOSK_CONFIG or ./kiosk.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Read travel documents' MRZ and check them against the list "
        "of reported stolen and lost documents. Without a command, starts the "
        "officer's terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("KIOSK_LOG_LEVEL", "WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the application log on stderr (default: WARNING)",
    )
    parser.add_argument(
        "--samples",
        action="store_true",
        help="start on the bundled sample images with the embedded store",
    )
    _add_lookup_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = sub.add_parser(
        "scan",
        help="read MRZs from image files or folders and check each document",
        description="Read the MRZ of each image (JPEG, PNG, TIFF, BMP, WebP; "
        "folders are searched for those) and check the document.",
    )
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument(
        "--json", action="store_true", help="print one JSON object a line"
    )
    _add_lookup_options(scan, top_level=False)
    scan.set_defaults(handler=_run_scan)

    parse = sub.add_parser(
        "parse",
        help="check MRZ text given as lines (as keyboard-wedge readers type it)",
        description="Check MRZ text: each LINE is one MRZ line; '-' reads lines "
        "from standard input, one document per blank-line-separated block.",
    )
    parse.add_argument("lines", nargs="+", metavar="LINE")
    parse.add_argument(
        "--json", action="store_true", help="print one JSON object a line"
    )
    _add_lookup_options(parse, top_level=False)
    parse.set_defaults(handler=_run_parse)

    _register_optional(sub)
    return parser


def _register_optional(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the driver commands (technician tools)."""
    from drivers import cli as drivers_cli

    drivers_cli.register(sub)


def open_lookup(
    args: argparse.Namespace,
    *,
    on_late_hit: LateHitCallback | None = None,
    maintain_every_s: float | None = MAINTAIN_EVERY_S,
    on_notice: Callable[[str], None] | None = None,
) -> LookupClient:
    """Open the lookup client the command line and config ask for.

    `maintain_every_s` and `on_notice` are passed to
    `kiosk.lookup.open_client`: the interval of the thread that syncs the
    offline copy and drains the re-check queue (None for no thread), and
    the receiver of messages about damaged local files it replaced.

    Raise ConfigError for a bad configuration or an explicit store file that
    does not exist: a mistyped path must not become a fresh store filled with
    the sample list.
    """
    from kiosk.config import check_backend_url, load_config
    from kiosk.lookup import open_client

    config = load_config(getattr(args, "config", None))
    backend = getattr(args, "backend", None) or config.backend.url
    if backend is not None:
        check_backend_url(backend, "--backend")
    store: Path | None = getattr(args, "store", None)
    seed: Path | None = None
    if store is not None:
        if not store.is_file():
            raise ConfigError(
                f"store file {store} not found; check the path, or leave "
                "--store out to use the default embedded store"
            )
    elif config.kiosk.store_path != DEFAULT_STORE:
        store = config.kiosk.store_path
        if not store.is_file():
            raise ConfigError(
                f"store file {store} named by [kiosk] store_path not found; "
                "check the path, or remove the setting to use the default store"
            )
    else:
        # Only the default store is created, from the bundled sample list.
        store = DEFAULT_STORE
        seed = SAMPLE_RECORDS if SAMPLE_RECORDS.exists() else None
    return open_client(
        backend,
        api_key=config.backend.api_key,
        embedded_path=store,
        seed_csv=seed,
        offline_max_age=dt.timedelta(hours=config.backend.offline_max_age_h),
        timeout_s=config.backend.timeout_s,
        on_late_hit=on_late_hit,
        maintain_every_s=maintain_every_s,
        on_notice=on_notice,
    )


def iter_images(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """Yield (path, problem) for every image to scan; `problem` is set when a
    path cannot be scanned at all (missing, or a folder without images)."""
    for path in paths:
        if path.is_dir():
            images = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                yield (
                    path,
                    f"folder {path} holds no images ({_SUFFIX_LIST}); "
                    "give image files or a folder that contains some",
                )
            for image in images:
                yield image, None
        elif path.exists():
            yield path, None
        elif path.is_symlink():
            yield (
                path,
                (
                    f"{path} is a symbolic link to nothing (broken or looping); "
                    "give the image file itself"
                ),
            )
        else:
            yield path, f"file {path} not found; check the path"


def _run_scan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    output = _Output(out or sys.stdout, args.json)
    from kiosk.pipeline import _not_checked

    client = _open_for_run(args, output)
    try:
        for path, problem in iter_images(args.paths):
            if problem is not None:
                outcome = _not_checked("-", str(path), problem, 0.0)
                outcome = _with_elapsed(outcome, 0.0)
            else:
                outcome = check_image(path, client, source=display_path(path))
            output.outcome(outcome, client)
    finally:
        client.close()
    return 0


def _with_elapsed(outcome: ScanOutcome, elapsed_ms: float) -> ScanOutcome:
    import dataclasses

    return dataclasses.replace(outcome, elapsed_ms=elapsed_ms)


def _documents_from_args(lines: Sequence[str]) -> list[list[str]]:
    if list(lines) != ["-"]:
        return [list(lines)]
    documents: list[list[str]] = [[]]
    for raw in sys.stdin:
        if raw.strip():
            documents[-1].append(raw.strip())
        elif documents[-1]:
            documents.append([])
    return [doc for doc in documents if doc]


def _run_parse(args: argparse.Namespace, out: TextIO | None = None) -> int:
    output = _Output(out or sys.stdout, args.json)
    from kiosk.pipeline import _not_checked

    client = _open_for_run(args, output)
    try:
        for number, lines in enumerate(_documents_from_args(args.lines), start=1):
            source = f"text #{number}"
            problem = undecodable_byte(lines)
            if problem is not None:
                outcome = _not_checked("-", source, problem, 0.0)
                outcome = _with_elapsed(outcome, 0.0)
            else:
                outcome = check_text(lines, client, source=source)
            output.outcome(outcome, client)
    finally:
        client.close()
    return 0


# Python keeps each byte of a file name or of standard input that is not
# UTF-8 as one lone surrogate, U+DC80 to U+DCFF (PEP 383).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def display_path(path: Path) -> str:
    """Return a path as valid text, with each byte that is not UTF-8 written
    as a `\\xNN` escape."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def valid_text(text: str) -> str:
    """Write the undecodable bytes in `text` as `\\xNN` escapes, so that it
    encodes as UTF-8."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A surrogate that stands for no byte: escape it as a code point.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _valid_json(value: object) -> object:
    """Apply `valid_text` to every string in a JSON value."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): _valid_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_json(item) for item in value]
    return value


def undecodable_byte(lines: Sequence[str]) -> str | None:
    """Return why MRZ lines hold a byte that is not UTF-8 text, or None.

    Lines and positions are counted as the MRZ parser counts them: blank
    lines left out, and surrounding white space stripped.
    """
    stripped = [line.strip() for line in lines if line.strip()]
    for line_no, line in enumerate(stripped, start=1):
        for position, char in enumerate(line, start=1):
            if ord(char) in _ESCAPED_BYTES:
                return (
                    f"invalid MRZ: line {line_no} position {position} contains "
                    f"the byte 0x{ord(char) - 0xDC00:02X}, which is not UTF-8 "
                    "text; only A-Z, 0-9 and '<' are allowed. Rescan the "
                    "document or correct the line."
                )
    return None


def _print_notice(message: str) -> None:
    print(f"kiosk: {message}", file=sys.stderr)


def _open_for_run(args: argparse.Namespace, output: _Output) -> LookupClient:
    """Open the lookup client of one `kiosk scan` or `kiosk parse` run.

    With a lookup service, the offline copy is synced and the checks that
    earlier runs queued are re-checked before the first document, so that
    their late HITs are printed. After that, the copy is synced and the
    queue drained every MAINTAIN_EVERY_S seconds until the run ends.
    """
    from kiosk.lookup.resilient import ResilientLookup

    client = open_lookup(
        args,
        on_late_hit=output.late_hit,
        maintain_every_s=None,
        on_notice=_print_notice,
    )
    if isinstance(client, ResilientLookup):
        try:
            client.maintain()
        except Exception:
            # The run still checks its documents, and queues the checks
            # that the service does not answer.
            logger.exception("lookup maintenance failed")
        client.start(MAINTAIN_EVERY_S, first_after_s=MAINTAIN_EVERY_S)
    return client


class _Output:
    """Writer of results to standard output, one result at a time.

    Late re-check results come from the lookup maintenance thread, so every
    write takes the lock.
    """

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self._lock = threading.Lock()

    def outcome(self, outcome: ScanOutcome, client: LookupClient) -> None:
        if self.as_json:
            text = json.dumps(_valid_json(outcome.to_json()), ensure_ascii=False)
        else:
            text = format_outcome(outcome, backend=_backend_after(outcome, client))
        self._write(text)

    def late_hit(self, check: QueuedCheck, answer: LookupAnswer) -> None:
        """Print a HIT or POSSIBLE that a re-check found for a queued check."""
        if self.as_json:
            late = {
                "queue_id": check.id,
                "issuing_state": check.key.issuing_state,
                "document_type": check.key.document_type,
                "document_number": check.key.document_number,
                "queued_at": check.queued_at.isoformat(),
                "first_result": check.first_result.value,
                "lookup": answer.to_json(),
            }
            text = json.dumps(_valid_json({"late_recheck": late}), ensure_ascii=False)
        else:
            text = format_late_hit(check, answer)
        self._write(text)

    def _write(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


def _backend_after(outcome: ScanOutcome, client: LookupClient) -> BackendStatus | None:
    """Return the backend status that the text of `outcome` needs, or None.

    Only an answer the service did not give needs it: for the offline
    copy's age and for whether the check was queued for a re-check.
    """
    answer = outcome.lookup
    unanswered = answer.result is Result.UNKNOWN and answer.source != "kiosk"
    if not unanswered and answer.source != OFFLINE_SOURCE:
        return None
    return client.status()


_VERDICT = {
    Result.HIT: "HIT - reported document, hold the document and follow procedure",
    Result.POSSIBLE: "POSSIBLE MATCH - verify the record against the document",
    Result.NO_HIT: "NO RECORD",
    Result.UNKNOWN: "NOT CHECKED",
}
_SHORT_VERDICT = {
    Result.HIT: "HIT",
    Result.POSSIBLE: "POSSIBLE MATCH",
    Result.NO_HIT: "NO RECORD",
    Result.UNKNOWN: "NOT CHECKED",
}


def printable(text: str) -> str:
    """Escape control characters and undecodable bytes, so a file name
    cannot break the output."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in valid_text(text))


def _lookup_rows(answer: LookupAnswer, backend: BackendStatus | None) -> list[str]:
    verdict = f"  lookup       {_VERDICT[answer.result]}"
    offline = answer.source == OFFLINE_SOURCE and answer.result is not Result.UNKNOWN
    if offline:
        age = backend.data_age if backend is not None else None
        age_text = "of unknown age" if age is None else f"{format_age(age)} old"
        verdict += (
            f" (offline copy, data version {answer.data_version or 'not stated'}, "
            f"{age_text})"
        )
    elif answer.result is Result.NO_HIT and answer.data_version:
        verdict += f" (data version {answer.data_version})"
    if answer.result is Result.UNKNOWN and answer.reason:
        verdict += f": {answer.reason}"
    rows = [verdict]
    for record in answer.records:
        rows.append(
            f"               {record.status.value} {record.issuing_state} "
            f"{record.document_type} {record.document_number}, reported "
            f"{record.reported_on.isoformat()} by {record.reporting_country}, "
            f"ref {record.reference}"
        )
    if answer.type_mismatch:
        rows.append("               note: the record's document type differs")
    if backend is not None and backend.queued_rechecks > 0:
        rows.append(
            "  re-check     queued: the next kiosk run that reaches the lookup "
            "service checks it again online"
        )
    return rows


def format_late_hit(check: QueuedCheck, answer: LookupAnswer) -> str:
    """Render a late HIT or POSSIBLE of a queued check as a plain-text block."""
    key = check.key
    queued_at = check.queued_at.isoformat(timespec="seconds")
    rows = [
        f"late re-check {check.id}: {key.issuing_state} {key.document_type} "
        f"{key.document_number}, queued {queued_at}, first result "
        f"{_SHORT_VERDICT[check.first_result]}"
    ]
    rows.extend(_lookup_rows(answer, None))
    return "\n".join(printable(row) for row in rows)


def format_outcome(
    outcome: ScanOutcome, *, backend: BackendStatus | None = None
) -> str:
    """Render one outcome as the plain-text block `kiosk scan` prints.

    `backend` is the lookup client's status after the check. It gives the
    offline copy's age and whether the check was queued for a re-check.
    """
    rows = [outcome.source]
    report = outcome.report
    if report is not None:
        rows.append("  MRZ          " + report.lines[0])
        rows.extend("               " + line for line in report.lines[1:])
        rows.append(
            f"  document     {report.format.value} type {report.document_type} "
            f"issued by {report.issuing_state} number {report.document_number}"
        )
        rows.append(
            f"  name         {report.surname}, {report.given_names}".rstrip(", ")
        )
        born = report.birth_date.isoformat() if report.birth_date else "unknown"
        expires = report.expiry_date.isoformat() if report.expiry_date else "none"
        rows.append(
            f"  born {born}  sex {report.sex or 'unspecified'}  "
            f"nationality {report.nationality or '-'}  expires {expires}"
        )
        checks = "  ".join(
            f"{name} {'ok' if ok else 'FAILED'}" for name, ok in report.checks.items()
        )
        rows.append(f"  checks       {checks}")
        if report.warnings:
            rows.append(
                "  warnings     " + "; ".join(w.message for w in report.warnings)
            )
        for error in report.errors:
            rows.append(f"  invalid      {error.message}")
    if outcome.repair is not None:
        rows.append(
            f"  reading      {outcome.repair.status.value}, "
            f"confidence {outcome.repair.confidence:.2f}"
        )
    rows.extend(_lookup_rows(outcome.lookup, backend))
    if outcome.error and (report is not None):
        rows.append(f"  error        {outcome.error}")
    rows.append(f"  time         {outcome.elapsed_ms:.0f} ms")
    return "\n".join(printable(row) for row in rows)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    handler = getattr(args, "handler", None)
    if handler is not None:
        try:
            result: int = handler(args)
        except ConfigError as exc:
            print(f"kiosk: {exc}", file=sys.stderr)
            return 2
        except (KioskError, BackendError) as exc:
            # A lookup client that cannot open its local files, or an
            # embedded store that cannot be read: no document was checked.
            logger.error("kiosk command failed: %s", exc)
            print(f"kiosk: {exc}; no document was checked", file=sys.stderr)
            return 2
        return result
    # The terminal app is imported only here, so the other commands never
    # load Textual.
    from kiosk.tui.app import run_app

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
