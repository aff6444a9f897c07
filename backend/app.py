"""HTTP lookup service (FastAPI).

Every lookup needs a terminal API key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`), is rate-limited per terminal and written to the audit log
before the answer leaves. A store that cannot answer gives 503, never a
NO_HIT. Store calls that can wait on a database either await the store's
async reader (PostgreSQL, while the app's lifespan runs) or run in the
thread pool, so a slow database does not block the event loop.
_GuardMiddleware passes the two lookup endpoints' requests to their handlers
without FastAPI's routing, for speed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt
import functools
import gc
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.answer_encoding import AnswerEncoder
from backend.audit import AuditError, AuditLog, load_or_create_key
from backend.errors import InvalidRecord, StoreError
from backend.records import DocumentKey, Result
from backend.store import Store, open_store
from backend.store.base import AsyncReader, Row

logger = logging.getLogger(__name__)

MAX_BATCH_KEYS = 10_000
# Threads that run lookups which can wait on a database. PostgresStore's
# connection pool has at most 8 connections by default, so more threads
# would only wait for one.
LOOKUP_THREADS = 8
# 10,000 keys of about 90 bytes each fit well inside 2 MiB.
MAX_BODY_BYTES = 2 * 1024 * 1024
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSettings:
    """Limits of the lookup service."""

    # Requests per second and burst size allowed per terminal; a batch
    # counts as one request.
    rate_per_terminal: float = 200.0
    burst_per_terminal: float = 400.0
    max_body_bytes: int = MAX_BODY_BYTES
    # How long a request id is remembered so that a retry gets the first
    # answer instead of a second audit entry, in seconds.
    replay_window_s: float = 600.0
    replay_entries: int = 50_000
    # Memory bound of the replay cache; the oldest bodies go first.
    replay_max_bytes: int = 64 * 1024 * 1024
    key_cache_s: float = 60.0

    def __post_init__(self) -> None:
        # With a rate of 0 the limiter divided by zero, and every lookup
        # failed with 500.
        for name in ("rate_per_terminal", "burst_per_terminal"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"invalid {name} {value}: expected a number above 0")


class KeyIn(BaseModel):
    """One document key as the kiosk reads it from the MRZ."""

    model_config = ConfigDict(extra="forbid")

    issuing_state: StrictStr = Field(min_length=1, max_length=3, examples=["UTO"])
    document_type: StrictStr = Field(min_length=1, max_length=2, examples=["P"])
    document_number: StrictStr = Field(
        min_length=1, max_length=44, examples=["L898902C3"]
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyIn] = Field(min_length=1, max_length=MAX_BATCH_KEYS)


class RecordOut(BaseModel):
    issuing_state: str
    document_type: str
    document_number: str
    status: str
    reported_on: str
    reporting_country: str
    reference: str
    issue_date: str | None
    expiry_date: str | None


class AnswerOut(BaseModel):
    result: str = Field(description="HIT, POSSIBLE or NO_HIT")
    records: list[RecordOut]
    data_version: str | None
    type_mismatch: bool
    reason: str | None
    source: str
    request_id: str | None
    checked_at: str


class BatchOut(BaseModel):
    request_id: str
    data_version: str | None
    answers: list[AnswerOut]


class ErrorOut(BaseModel):
    error: str
    request_id: str | None


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kiosk_backend_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiosk_backend_request_seconds",
            "HTTP request duration in seconds",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        self.lookups = Counter(
            "kiosk_backend_lookups",
            "Document lookups by result",
            ["result"],
            registry=self.registry,
        )
        self.records = Gauge(
            "kiosk_backend_records",
            "Records in the current data version",
            registry=self.registry,
        )
        # Labelled children by label values, because `labels()` takes a lock
        # and checks its arguments on every call, three times per request.
        self._request_counts: dict[tuple[str, int], Counter] = {}
        self._latencies: dict[str, Histogram] = {}
        self._lookup_counts: dict[Result, Counter] = {}

    def count_request(self, endpoint: str, status: int) -> None:
        child = self._request_counts.get((endpoint, status))
        if child is None:
            child = self.requests.labels(endpoint, str(status))
            self._request_counts[(endpoint, status)] = child
        child.inc()

    def latency_of(self, endpoint: str) -> Histogram:
        child = self._latencies.get(endpoint)
        if child is None:
            child = self._latencies[endpoint] = self.latency.labels(endpoint)
        return child

    def lookups_of(self, result: Result) -> Counter:
        child = self._lookup_counts.get(result)
        if child is None:
            child = self._lookup_counts[result] = self.lookups.labels(result.value)
        return child


class _RateLimiter:
    """Token bucket per terminal."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, terminal: str) -> float | None:
        """Take one token; return None, or the seconds to wait before a retry."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(terminal, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[terminal] = (tokens, now)
                return (1.0 - tokens) / self._rate
            self._buckets[terminal] = (tokens - 1.0, now)
            return None


class _ReplayCache:
    """Response bodies by (terminal, request id), so a retry is idempotent.

    Each body is stored with the fingerprint of the request that produced
    it. A request that reuses an id with another body is a client bug, and
    replaying the first answer would give one document another's result.
    """

    def __init__(self, window_s: float, entries: int, max_bytes: int) -> None:
        self._window = window_s
        self._entries = entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._data: OrderedDict[tuple[str, str], tuple[float, str, bytes]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], fingerprint: str = "") -> bytes | None:
        """Return the stored body for `key`, or None.

        Raises ApiError 409 when the stored body came from a request with
        another fingerprint.
        """
        with self._lock:
            item = self._data.get(key)
            if item is None or item[0] < time.monotonic():
                return None
            if item[1] != fingerprint:
                raise ApiError(
                    409,
                    f"X-Request-ID {key[1]} was already used by this terminal for "
                    "a different request body; send a new request id for each "
                    "new check and reuse an id only to retry the same request",
                )
            return item[2]

    def put(self, key: tuple[str, str], body: bytes, fingerprint: str = "") -> None:
        with self._lock:
            previous = self._data.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous[2])
            self._data[key] = (time.monotonic() + self._window, fingerprint, body)
            self._bytes += len(body)
            while self._data and (
                len(self._data) > self._entries or self._bytes > self._max_bytes
            ):
                _, (_, _, dropped) = self._data.popitem(last=False)
                self._bytes -= len(dropped)


def _request_fingerprint(keys: list[KeyIn], *, batch: bool) -> str:
    # The keys as received, not normalised: a retry sends the same values.
    digest = hashlib.sha256(b"batch" if batch else b"single")
    text = "".join(
        [
            f"\x1f{key.issuing_state}\x1f{key.document_type}\x1f{key.document_number}\x1e"
            for key in keys
        ]
    )
    digest.update(text.encode())
    return digest.hexdigest()


_T = TypeVar("_T")


class _LookupThreads:
    """Threads for lookups that can wait on a database.

    A plain executor instead of Starlette's run_in_threadpool: anyio's
    hand-off took about 60 µs more CPU per PostgreSQL lookup in a test on
    the benchmark machine, a tenth of a whole request. The executor starts
    on first use, so an app whose lifespan ended can start again.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    async def run(self, function: Callable[[], _T]) -> _T:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self._size, thread_name_prefix="lookup"
                )
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, function)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


@dataclass
class _ReaderSlot:
    """The store's async reader while the app's lifespan runs, else None."""

    current: AsyncReader | None = None


class ApiError(Exception):
    """An error answered to the client with `status` and a plain message."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def hash_api_key(api_key: str) -> str:
    """Return the stored form of an API key: its SHA-256 in hex.

    Keys are 256-bit random tokens, so a plain hash is enough; there is
    nothing to guess that a salt or a slow hash would protect.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()


def _json_response(
    status: int,
    payload: object,
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    response = Response(body, status_code=status, media_type="application/json")
    if headers:
        response.headers.update(headers)
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def _error(
    status: int,
    message: str,
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    return _json_response(
        status, {"error": message, "request_id": request_id}, request_id, headers
    )


# Handler of a POST to one of the lookup paths: takes the scope and the body
# and returns the response.
LookupHandler = Callable[[Scope, bytes], Awaitable[Response]]


class _GuardMiddleware:
    """Assigns request ids, caps body size and records metrics.

    A body over the limit is rejected before any handler parses it; bodies
    without a Content-Length header are counted as they arrive.

    A POST to a path in `lookup_handlers` goes straight to its handler,
    without FastAPI's routing, dependency injection and body parsing: they
    cost about 0.1 to 0.2 ms per request, as much as the lookup itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        metrics: _Metrics,
        lookup_handlers: dict[str, LookupHandler] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.lookup_handlers = lookup_handlers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope["headers"]
        }
        incoming = headers.get("x-request-id")
        request_id = (
            incoming
            if incoming and _REQUEST_ID_RE.match(incoming)
            else uuid.uuid4().hex
        )
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        # Only a client-chosen id can come back in a retry, so only those
        # responses are worth keeping for replay.
        state["client_request_id"] = bool(incoming)
        status_holder = {"status": 500}
        endpoint: str | None = None

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                raw = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", request_id.encode()))
                message["headers"] = raw
            await send(message)

        try:
            if incoming and not _REQUEST_ID_RE.match(incoming):
                await _error(
                    400,
                    "invalid X-Request-ID header: use 1 to 64 characters A-Z, a-z, "
                    "0-9, '.', '_' or '-'",
                    request_id,
                )(scope, receive, send_with_id)
                return
            length = headers.get("content-length")
            if length is not None and (
                not length.isdigit() or int(length) > self.max_body
            ):
                await self._too_large(scope, receive, send_with_id, request_id)
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(receive)
                if body is None:
                    await self._too_large(scope, receive, send_with_id, request_id)
                    return
                handler = self.lookup_handlers.get(scope["path"])
                if handler is not None and scope["method"] == "POST":
                    endpoint = scope["path"]
                    response = await handler(scope, body)
                    await response(scope, _replay(b""), send_with_id)
                    return
                receive = _replay(body)
            await self.app(scope, receive, send_with_id)
        finally:
            if endpoint is None:
                endpoint = getattr(scope.get("route"), "path", "other")
            self.metrics.count_request(endpoint, status_holder["status"])
            self.metrics.latency_of(endpoint).observe(time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        advice = (
            f"send at most {MAX_BATCH_KEYS} keys per batch"
            if scope.get("path", "").endswith("/batch")
            else "a single lookup sends one key of three short fields"
        )
        response = _error(
            413,
            f"request body too large: the limit is {self.max_body} bytes; {advice}",
            request_id,
        )
        await response(scope, receive, send)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _validation_message(
    errors: Sequence[Mapping[str, Any]],
) -> tuple[str, list[dict[str, object]]]:
    # Pydantic puts the rejected input into each error; that can be a
    # document number, so only the location and the message go back.
    details: list[dict[str, object]] = []
    summary = "invalid request body"
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = str(error.get("msg", "invalid value"))
        details.append({"loc": location, "msg": message})
        if len(details) == 1:
            summary = f"invalid request: {'.'.join(location) or 'body'}: {message}"
    return summary, details


def _invalid_body(errors: Sequence[Mapping[str, Any]], request_id: str) -> Response:
    message, details = _validation_message(errors)
    return _json_response(
        422,
        {"error": message, "details": details, "request_id": request_id},
        request_id,
    )


# The request models of the two lookup endpoints. pydantic-core parses and
# checks the JSON body in one pass, without a Python dict in between.
_SINGLE_BODY = TypeAdapter(KeyIn)
_BATCH_BODY = TypeAdapter(BatchIn)


def _parse_keys(body: bytes, *, batch: bool) -> list[KeyIn]:
    """Return the keys of a lookup body; raise pydantic's ValidationError."""
    if batch:
        return _BATCH_BODY.validate_json(body).keys
    return [_SINGLE_BODY.validate_json(body)]


WORKER_CONFIG_ENV = "KIOSK_BACKEND_WORKER_CONFIG"
# Key of the readiness lookup; its answer does not matter, only that the
# store returns one. Not audited, because no terminal asked for it.
_READINESS_PROBE = DocumentKey("ZZZ", "P", "READYPROBE0")


def create_worker_app() -> FastAPI:
    """Build the service inside one `serve --workers N` process.

    The settings come as JSON in the KIOSK_BACKEND_WORKER_CONFIG environment
    variable. Each worker writes its own audit chain,
    `STEM.worker-PID.SUFFIX` beside the configured log, under the shared
    key, because one chain needs a single writer.
    """
    config = json.loads(os.environ[WORKER_CONFIG_ENV])
    base = Path(config["audit_log"])
    key = load_or_create_key(base.with_name(base.name + ".key"))
    worker_log = base.with_name(f"{base.stem}.worker-{os.getpid()}{base.suffix}")
    audit = AuditLog(worker_log, key, fsync=bool(config["audit_fsync"]))
    store = open_store(str(config["store"]))
    settings = ServiceSettings(
        rate_per_terminal=float(config["rate"]),
        burst_per_terminal=float(config["rate"]) * 2,
    )
    app = create_app(store, audit=audit, settings=settings, own_resources=True)
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Exclude the objects created so far from garbage collection passes.

    The modules, FastAPI routes and pydantic schemas of a started service
    are about 69,000 tracked objects. Each full collection walked them all,
    20 to 80 ms on 2 busy vCPUs, and batches of 1,000 keys set one off
    every few requests.
    After this call the collections skip them: in process, a batch of
    1,000 keys took about 7.4 ms of CPU against 8.5 ms before.
    """
    gc.collect()
    gc.freeze()


# FastAPI's native telemetry settings: every part off (see create_app).
TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_app(
    store: Store,
    *,
    audit: AuditLog,
    settings: ServiceSettings | None = None,
    own_resources: bool = False,
) -> FastAPI:
    """Build the service around an open store and audit log.

    With `own_resources`, the app closes both when it shuts down.
    """
    settings = settings or ServiceSettings()
    metrics = _Metrics()
    limiter = _RateLimiter(settings.rate_per_terminal, settings.burst_per_terminal)
    replays = _ReplayCache(
        settings.replay_window_s, settings.replay_entries, settings.replay_max_bytes
    )
    key_cache: dict[str, tuple[str, float]] = {}
    key_lock = threading.Lock()
    lookup_threads = _LookupThreads(LOOKUP_THREADS)

    readers = _ReaderSlot()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        readers.current = await store.open_async_reader()
        yield
        reader, readers.current = readers.current, None
        if reader is not None:
            await reader.close()
        lookup_threads.shutdown()
        if own_resources:
            store.close()
            audit.close()
            logger.info("worker %d stopped", os.getpid())

    app = FastAPI(
        lifespan=lifespan,
        title="Reported travel document lookup",
        version="1",
        description=(
            "Checks document keys against the list of reported stolen and lost "
            "travel documents. NO_HIT names the data version it came from; any "
            "error is a 4xx or 5xx status, never a NO_HIT."
        ),
        # FastAPI 0.165 traces requests with OpenTelemetry whenever a global
        # provider is set, and adds OTLP exporters when the environment sets
        # FASTAPI_OTEL_AUTO_CONFIGURE=true. Its logs carry exception messages.
        # Nothing about a border check leaves this service unless an operator
        # builds that on purpose, so all of it is off.
        telemetry=TELEMETRY_OFF,
    )
    app.state.store = store
    app.state.metrics = metrics

    def request_id_of(request: Request) -> str:
        return str(request.scope.get("state", {}).get("request_id", ""))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message, request_id_of(request), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(
        request: Request, exc: RequestValidationError
    ) -> Response:
        return _invalid_body(exc.errors(), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), request_id_of(request))

    async def authenticate(request: Request) -> str:
        # Async, so a cached key costs no thread-pool hop; only a cache miss
        # reads the store, in the pool.
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.headers.get("x-api-key", "")
        if not token:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer KEY'; create one "
                "with 'kiosk-backend keys add TERMINAL_ID'",
                {"WWW-Authenticate": "Bearer"},
            )

        key_hash = hash_api_key(token)
        now = time.monotonic()
        with key_lock:
            cached = key_cache.get(key_hash)
        if cached is not None and cached[1] > now:
            terminal = cached[0]
        else:
            try:
                found = await run_in_threadpool(store.terminal_for_key, key_hash)
            except StoreError as exc:
                raise ApiError(503, f"lookup store unavailable: {exc}") from exc
            if found is None:
                logger.warning(
                    "rejected an unknown API key, request %s", request_id_of(request)
                )
                raise ApiError(
                    401,
                    "invalid API key: no terminal has this key; check the kiosk's "
                    "KIOSK_API_KEY or api_key setting, or create a key with "
                    "'kiosk-backend keys add TERMINAL_ID'",
                    {"WWW-Authenticate": "Bearer"},
                )
            terminal = found
            with key_lock:
                key_cache[key_hash] = (terminal, now + settings.key_cache_s)

        wait = limiter.take(terminal)
        if wait is not None:
            raise ApiError(
                429,
                f"rate limit of {settings.rate_per_terminal:g} requests/s for terminal "
                f"{terminal} exceeded; retry after {wait:.2f} s",
                {"Retry-After": str(max(1, round(wait)))},
            )
        return terminal

    def parse_document_keys(keys: list[KeyIn]) -> list[DocumentKey]:
        parsed: list[DocumentKey] = []
        create = DocumentKey.create
        for index, item in enumerate(keys):
            try:
                parsed.append(
                    create(item.issuing_state, item.document_type, item.document_number)
                )
            except InvalidRecord as exc:
                where = f"keys[{index}]: " if len(keys) > 1 else ""
                raise ApiError(422, f"invalid request: {where}{exc}") from exc
        return parsed

    def store_unavailable(
        exc: StoreError, key_count: int, terminal: str, request_id: str
    ) -> ApiError:
        logger.error(
            "lookup of %d keys failed for terminal %s, request %s: %s",
            key_count,
            terminal,
            request_id,
            exc,
        )
        return ApiError(
            503, f"lookup store unavailable, so no lookup result is returned: {exc}"
        )

    def finish_lookup(
        terminal: str,
        request_id: str,
        parsed: list[DocumentKey],
        version: str,
        candidates: list[list[Row]],
        *,
        batch: bool,
    ) -> tuple[bytes, list[Result]]:
        """Encode the answers, write the audit entry and return the response
        body with the result per key.

        `version` and `candidates` come from one `find_candidates` call, so
        the answers are those `Store.lookup_many` returns for that snapshot.
        """
        encoder = AnswerEncoder(
            data_version=version,
            source=store.kind,
            request_id=request_id,
            checked_at=dt.datetime.now(dt.UTC),
        )
        encode = encoder.encode
        results: list[Result] = []
        texts: list[str] = []
        for key, rows in zip(parsed, candidates, strict=True):
            result, text = encode(key, rows)
            results.append(result)
            texts.append(text)
        try:
            audit.record(
                terminal=terminal,
                request_id=request_id,
                data_version=version,
                queries=list(zip(parsed, results, strict=True)),
            )
        except AuditError as exc:
            logger.error("audit write failed, request %s: %s", request_id, exc)
            raise ApiError(
                503, "audit log unavailable, so no lookup result is returned"
            ) from exc
        counts = collections.Counter(results)
        for result, count in counts.items():
            metrics.lookups_of(result).inc(count)
        body = encoder.batch_body(request_id, texts) if batch else texts[0].encode()
        return body, results

    def replay_or_none(
        terminal: str, request_id: str, fingerprint: str
    ) -> Response | None:
        body = replays.get((terminal, request_id), fingerprint)
        if body is None:
            return None
        response = Response(body, media_type="application/json")
        response.headers["X-Request-ID"] = request_id
        response.headers["X-Idempotent-Replay"] = "true"
        return response

    error_responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorOut, "description": "missing or invalid API key"},
        409: {"model": ErrorOut, "description": "request id reused for another body"},
        413: {"model": ErrorOut, "description": "body too large"},
        422: {"model": ErrorOut, "description": "malformed key"},
        429: {"model": ErrorOut, "description": "rate limit exceeded"},
        503: {"model": ErrorOut, "description": "store or audit log unavailable"},
    }

    def replay_check(
        request_scope: Scope, terminal: str, keys: list[KeyIn], *, batch: bool
    ) -> tuple[str, str | None, Response | None]:
        """Return the request id, the fingerprint to store the answer under
        (None when the id is not replayable) and the replayed response."""
        state = request_scope["state"]
        request_id = str(state["request_id"])
        # Only a client-chosen id can come back in a retry, so only those
        # requests are looked up in and added to the replay cache.
        if not state.get("client_request_id"):
            return request_id, None, None
        fingerprint = _request_fingerprint(keys, batch=batch)
        return (
            request_id,
            fingerprint,
            replay_or_none(terminal, request_id, fingerprint),
        )

    def answer_response(
        terminal: str,
        request_id: str,
        fingerprint: str | None,
        body: bytes,
        results: list[Result],
    ) -> Response:
        response = Response(body, media_type="application/json")
        response.headers["X-Request-ID"] = request_id
        if fingerprint is not None:
            replays.put((terminal, request_id), body, fingerprint)
        logger.debug(
            "request %s terminal %s: %d keys, %d hits",
            request_id,
            terminal,
            len(results),
            sum(result is not Result.NO_HIT for result in results),
        )
        return response

    def respond(
        request_scope: Scope, terminal: str, keys: list[KeyIn], *, batch: bool
    ) -> Response:
        request_id, fingerprint, replay = replay_check(
            request_scope, terminal, keys, batch=batch
        )
        if replay is not None:
            return replay
        parsed = parse_document_keys(keys)
        try:
            version, candidates = store.find_candidates(parsed)
        except StoreError as exc:
            raise store_unavailable(exc, len(parsed), terminal, request_id) from exc
        body, results = finish_lookup(
            terminal, request_id, parsed, version, candidates, batch=batch
        )
        return answer_response(terminal, request_id, fingerprint, body, results)

    async def respond_async(
        reader: AsyncReader,
        request_scope: Scope,
        terminal: str,
        keys: list[KeyIn],
        *,
        batch: bool,
    ) -> Response:
        """Do what `respond` does, waiting for the store on the event loop."""
        request_id, fingerprint, replay = replay_check(
            request_scope, terminal, keys, batch=batch
        )
        if replay is not None:
            return replay
        parsed = parse_document_keys(keys)
        try:
            version, candidates = await reader.find_candidates(parsed)
        except StoreError as exc:
            raise store_unavailable(exc, len(parsed), terminal, request_id) from exc
        body, results = finish_lookup(
            terminal, request_id, parsed, version, candidates, batch=batch
        )
        return answer_response(terminal, request_id, fingerprint, body, results)

    # A single SQLite lookup takes tens of microseconds, less than the hop to
    # the thread pool, so it runs on the event loop. A store with an async
    # reader (PostgreSQL) waits for the database on the event loop too, once
    # the lifespan opened the reader. Other calls go to the thread pool.
    single_inline = store.kind == "sqlite"

    async def answer_lookup(
        request: Request, terminal: str, keys: list[KeyIn], *, batch: bool
    ) -> Response:
        reader = readers.current
        if reader is not None:
            return await respond_async(
                reader, request.scope, terminal, keys, batch=batch
            )
        if single_inline and not batch:
            return respond(request.scope, terminal, keys, batch=False)
        return await lookup_threads.run(
            functools.partial(respond, request.scope, terminal, keys, batch=batch)
        )

    async def serve_lookup(scope: Scope, body: bytes, *, batch: bool) -> Response:
        """Serve a lookup POST that _GuardMiddleware passes on directly.

        Checks run in FastAPI's order: API key and rate limit, then the body.
        """
        request = Request(scope)
        try:
            terminal = await authenticate(request)
            try:
                keys = _parse_keys(body, batch=batch)
            except ValidationError as exc:
                return _invalid_body(exc.errors(), request_id_of(request))
            return await answer_lookup(request, terminal, keys, batch=batch)
        except ApiError as exc:
            return _error(exc.status, exc.message, request_id_of(request), exc.headers)

    async def serve_single(scope: Scope, body: bytes) -> Response:
        return await serve_lookup(scope, body, batch=False)

    async def serve_batch(scope: Scope, body: bytes) -> Response:
        return await serve_lookup(scope, body, batch=True)

    # The two routes below document the endpoints in the OpenAPI schema. The
    # middleware passes a POST to their exact path to serve_lookup, so the
    # routes handle only the others, such as requests under a root path.
    @app.post(
        "/v1/lookup",
        response_model=None,
        responses={200: {"model": AnswerOut}, **error_responses},
        summary="Check one document",
    )
    async def lookup_one(
        key: KeyIn, request: Request, terminal: str = Depends(authenticate)
    ) -> Response:
        return await answer_lookup(request, terminal, [key], batch=False)

    @app.post(
        "/v1/lookup/batch",
        response_model=None,
        responses={200: {"model": BatchOut}, **error_responses},
        summary=f"Check up to {MAX_BATCH_KEYS} documents in one snapshot",
    )
    async def lookup_batch(
        batch: BatchIn, request: Request, terminal: str = Depends(authenticate)
    ) -> Response:
        return await answer_lookup(request, terminal, batch.keys, batch=True)

    @app.get(
        "/v1/changes",
        responses=error_responses,
        summary="Change feed for offline copies",
    )
    def changes(
        request: Request,
        terminal: str = Depends(authenticate),
        since: Annotated[str | None, Query(max_length=64)] = None,
        cursor: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
    ) -> Response:
        request_id = request_id_of(request)
        try:
            page = store.changes_since(since, cursor=cursor, limit=limit)
        except StoreError as exc:
            raise ApiError(503, f"lookup store unavailable: {exc}") from exc
        logger.info(
            "change feed for terminal %s, request %s: %d added, %d deleted",
            terminal,
            request_id,
            len(page.added),
            len(page.deleted),
        )
        return _json_response(200, page.to_json(), request_id)

    @app.get("/health", summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        responses={503: {"model": ErrorOut}},
        summary="Readiness: the store answers",
    )
    def ready(request: Request) -> Response:
        request_id = request_id_of(request)
        try:
            store.check()
            # A real lookup through the same path as the kiosk's, so ready
            # means lookups work, not only that the versions table reads.
            probe = store.lookup(_READINESS_PROBE)
            version = probe.data_version
            count = store.count()
        except StoreError as exc:
            return _error(503, f"not ready: {exc}", request_id)
        metrics.records.set(count)
        return _json_response(
            200,
            {"status": "ready", "data_version": version, "records": count},
            request_id,
        )

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus_metrics() -> Response:
        return Response(
            generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    app.add_middleware(
        _GuardMiddleware,
        max_body=settings.max_body_bytes,
        metrics=metrics,
        lookup_handlers={"/v1/lookup": serve_single, "/v1/lookup/batch": serve_batch},
    )
    return app
