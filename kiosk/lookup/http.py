"""Online lookup client for the HTTP service (`kiosk-backend serve`).

Each check gets one request id that every retry reuses, so the service
answers a retry from its replay cache instead of running (and auditing) the
lookup twice. Timeouts, refused connections, 5xx statuses and malformed
bodies all end as UNKNOWN answers with the reason.

`timeout_s` bounds a whole check, retries and backoff included. Inside a
`shared_deadline()` block, every lookup ends at `timeout_s` after the
block's start, so the look-alike lookup that follows a document's main
lookup gets only the time the main one left. httpx's own
read timeout restarts with every byte received, so a service that sends
its answer a byte at a time would hold the kiosk for minutes; here every
socket read and write gets at most the time left until the check's
deadline.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import httpx

from backend.errors import InvalidRecord
from backend.records import DocumentKey, LookupAnswer, Record, Result, unknown
from backend.store.base import ChangePage
from kiosk.errors import ConfigError, LookupFailed
from kiosk.lookup.base import BackendState, BackendStatus, lookup_document_in_turn
from kiosk.lookup.deadline import shared_deadline_start

logger = logging.getLogger(__name__)

SOURCE = "online"
# Keys per batch request; the service accepts up to 10,000.
BATCH_SIZE = 1000
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A kiosk waits for its answer, so a long Retry-After is cut to this, in s.
_MAX_RETRY_AFTER_S = 1.0
# Time allowed to open a TCP connection, within the check's deadline, in s.
CONNECT_TIMEOUT_S = 0.5
# Time limit of one change feed page (up to 10,000 records), in s; a sync
# runs in the background, so it may wait longer than a check.
CHANGES_TIMEOUT_S = 30.0
# Start of the reason of an UNKNOWN answer whose request the service
# rejected (HTTP 401 or 403). Such a check must not fall back to the
# offline copy: a kiosk the service no longer accepts gets no answers.
REJECTED_REASON = "lookup service rejected this kiosk"


class _Deadline:
    """Per-thread deadline of the current check, as time.monotonic() seconds."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, deadline: float | None) -> None:
        self._local.deadline = deadline

    def bound(
        self, timeout: float | None, error: type[httpcore.TimeoutException]
    ) -> float | None:
        """Return `timeout` cut to the time left; raise `error` when none is."""
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise error("the lookup's total time limit was reached")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bounded = self._deadline.bound(timeout, httpcore.ReadTimeout)
        return self._inner.read(max_bytes, bounded)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        bounded = self._deadline.bound(timeout, httpcore.WriteTimeout)
        self._inner.write(buffer, bounded)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname, bounded)
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Network backend whose streams never wait past the check's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(
            host, port, bounded, local_address, socket_options
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, bounded, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport(
    verify: ssl.SSLContext | bool, deadline: _Deadline
) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    # NOTE: httpx 0.28 has no public way to pass a network backend, so the
    # pool's attribute (httpcore 1.0) is replaced. Without it, the deadline
    # is only checked between attempts.
    if pool is not None and hasattr(pool, "_network_backend"):
        pool._network_backend = _DeadlineBackend(deadline)
    else:
        logger.warning("httpx internals changed; lookups have no total deadline")
    return transport


def _checked_api_key(api_key: str) -> str:
    """Return the key without surrounding whitespace, such as the line break
    of a key file; raise ConfigError if it still cannot go in a header.

    A key with a line break inside made every request fail as if the service
    were unreachable, so the kiosk ran on its offline copy for good.
    """
    key = api_key.strip()
    # Only visible ASCII characters ("!" to "~") pass through a header unchanged.
    bad = next((i for i, c in enumerate(key) if not "!" <= c <= "~"), None)
    if bad is not None:
        # The key is a secret, so only the position is quoted.
        raise ConfigError(
            f"invalid API key: character {bad + 1} of {len(key)} is a space, a "
            "control character or not ASCII; check KIOSK_API_KEY or api_key in "
            "the config file, or create a new key with 'kiosk-backend keys add'"
        )
    return key


class HttpLookup:
    """Checks keys against the lookup service over HTTP(S)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        verify: bool | str = True,
        client_cert: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`timeout_s` is the time limit of one whole check, retries
        included, in seconds. `verify` is True (system CAs), False, or a CA
        bundle file for a private CA; `client_cert` is (certificate, key)
        PEM files for services that require client certificates."""
        if timeout_s <= 0:
            raise LookupFailed(
                f"invalid lookup timeout {timeout_s} s: expected a positive number"
            )
        headers = {"User-Agent": "border-kiosk"}
        if api_key:
            headers["Authorization"] = f"Bearer {_checked_api_key(api_key)}"
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._deadline = _Deadline()
        tls = _tls_context(verify, client_cert)
        if transport is None:
            transport = _deadline_transport(tls, self._deadline)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            verify=tls,
            transport=transport,
        )

    # -- requests --------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        request_id: str,
        *,
        budget_s: float | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send a request with retries; return the decoded JSON body.

        Raises LookupFailed with a reason fit for an UNKNOWN answer, at the
        latest at `deadline` (time.monotonic() seconds), or `budget_s`
        (default `timeout_s`) after the call when no deadline is given.
        """
        if deadline is None:
            deadline = time.monotonic() + (budget_s or self.timeout_s)
        if deadline <= time.monotonic():
            reason = (
                f"lookup not sent: the time limit of {self.timeout_s:g} s per "
                "check was used up by the check's earlier lookups"
            )
            logger.warning("request %s failed: %s", request_id, reason)
            raise LookupFailed(reason)
        self._deadline.set(deadline)
        try:
            return self._attempts(method, path, request_id, deadline, **kwargs)
        finally:
            self._deadline.set(None)

    def _attempts(
        self, method: str, path: str, request_id: str, deadline: float, **kwargs: Any
    ) -> Any:
        headers = {"X-Request-ID": request_id}
        last_reason = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * (2 ** (attempt - 1))
                if time.monotonic() + delay >= deadline:
                    break
                logger.info(
                    "retrying request %s (attempt %d of %d) after %s",
                    request_id,
                    attempt + 1,
                    self.retries + 1,
                    last_reason,
                )
                time.sleep(delay)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            timeout = httpx.Timeout(left, connect=min(CONNECT_TIMEOUT_S, left))
            try:
                response = self._client.request(
                    method, path, headers=headers, timeout=timeout, **kwargs
                )
            except httpx.TimeoutException:
                last_reason = (
                    f"lookup service timed out (limit {self.timeout_s:g} s per check)"
                )
                continue
            except httpx.TransportError as exc:
                last_reason = f"lookup service unreachable ({type(exc).__name__})"
                continue
            except httpx.HTTPError as exc:
                last_reason = f"lookup request failed ({type(exc).__name__})"
                continue
            if response.status_code in _RETRY_STATUSES:
                last_reason = _error_reason(response)
                retry_after = _retry_after(response)
                if retry_after is not None and attempt < self.retries:
                    wait = min(retry_after, _MAX_RETRY_AFTER_S)
                    time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
                continue
            if response.status_code in (401, 403):
                reason = f"{REJECTED_REASON}: {_error_reason(response)}"
                logger.warning("request %s rejected: %s", request_id, reason)
                raise LookupFailed(reason)
            if response.status_code != 200:
                reason = _error_reason(response)
                logger.warning("request %s rejected: %s", request_id, reason)
                raise LookupFailed(reason)
            try:
                return response.json()
            except ValueError:
                last_reason = "lookup service sent a body that is not JSON"
                continue
        logger.warning("request %s failed: %s", request_id, last_reason)
        raise LookupFailed(last_reason)

    def _lookup_deadline(self) -> float:
        """Return the deadline of a lookup request: `timeout_s` from now, or
        from the start of the enclosing `shared_deadline()` block."""
        started = shared_deadline_start()
        if started is None:
            started = time.monotonic()
        return started + self.timeout_s

    # -- LookupClient ----------------------------------------------------

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        request_id = uuid.uuid4().hex
        try:
            body = self._request(
                "POST",
                "/v1/lookup",
                request_id,
                deadline=self._lookup_deadline(),
                json=_key_json(key),
            )
        except LookupFailed as exc:
            return unknown(str(exc), source=SOURCE, request_id=request_id)
        try:
            return parse_answer(body, request_id)
        except LookupFailed as exc:
            _log_unusable(request_id, exc)
            return unknown(str(exc), source=SOURCE, request_id=request_id)

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        return lookup_document_in_turn(self, key, variants)

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        if len(keys) == 1:
            return [self.lookup(keys[0])]
        answers: list[LookupAnswer] = []
        for start in range(0, len(keys), BATCH_SIZE):
            answers.extend(self._batch(keys[start : start + BATCH_SIZE]))
        return answers

    def _batch(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        request_id = uuid.uuid4().hex
        try:
            body = self._request(
                "POST",
                "/v1/lookup/batch",
                request_id,
                deadline=self._lookup_deadline(),
                json={"keys": [_key_json(k) for k in keys]},
            )
        except LookupFailed as exc:
            return [
                unknown(str(exc), source=SOURCE, request_id=request_id) for _ in keys
            ]
        try:
            items = body.get("answers") if isinstance(body, dict) else None
            if not isinstance(items, list) or len(items) != len(keys):
                raise LookupFailed("lookup service sent a batch of the wrong size")
            return [parse_answer(item, request_id) for item in items]
        except LookupFailed as exc:
            _log_unusable(request_id, exc)
            return [
                unknown(str(exc), source=SOURCE, request_id=request_id) for _ in keys
            ]

    def changes(
        self, since: str | None, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage:
        """Fetch one page of the change feed; raises LookupFailed on any failure."""
        params: dict[str, str | int] = {"cursor": cursor, "limit": limit}
        if since is not None:
            params["since"] = since
        body = self._request(
            "GET",
            "/v1/changes",
            uuid.uuid4().hex,
            budget_s=max(self.timeout_s, CHANGES_TIMEOUT_S),
            params=params,
        )
        return parse_change_page(body)

    def status(self) -> BackendStatus:
        self._deadline.set(time.monotonic() + self.timeout_s)
        try:
            response = self._client.get("/ready")
            body = response.json() if response.status_code in (200, 503) else {}
        except (httpx.HTTPError, ValueError) as exc:
            return BackendStatus(
                BackendState.UNREACHABLE,
                None,
                f"lookup service unreachable: {type(exc).__name__}",
            )
        finally:
            self._deadline.set(None)
        if response.status_code != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else None
            return BackendStatus(
                BackendState.UNREACHABLE,
                None,
                str(
                    reason or f"lookup service not ready (HTTP {response.status_code})"
                ),
            )
        version = body.get("data_version")
        return BackendStatus(
            BackendState.ONLINE,
            str(version) if version else None,
            f"online, {body.get('records', '?')} records",
        )

    def close(self) -> None:
        self._client.close()


def _tls_context(
    verify: bool | str, client_cert: tuple[str, str] | None
) -> ssl.SSLContext | bool:
    if verify is False:
        return False
    try:
        context = ssl.create_default_context(
            cafile=verify if isinstance(verify, str) else None
        )
        if client_cert is not None:
            context.load_cert_chain(client_cert[0], client_cert[1])
    except (OSError, ssl.SSLError) as exc:
        raise LookupFailed(
            f"cannot load the TLS files for the lookup service: {exc}; check "
            "the CA bundle and client certificate paths"
        ) from exc
    return context


def _key_json(key: DocumentKey) -> dict[str, str]:
    return {
        "issuing_state": key.issuing_state,
        "document_type": key.document_type,
        "document_number": key.document_number,
    }


def _error_reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        message = None
    if isinstance(message, str) and message:
        # Service messages never quote document numbers; cap the length anyway.
        return f"lookup service answered HTTP {response.status_code}: {message[:200]}"
    return f"lookup service answered HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _log_unusable(request_id: str, exc: LookupFailed) -> None:
    # The reasons name the fault (a missing field, a wrong count) or repeat
    # the service's own UNKNOWN reason. None of them contains a document number.
    logger.warning("request %s returned an unusable response: %s", request_id, exc)


def parse_answer(body: object, request_id: str) -> LookupAnswer:
    """Build an answer from the service's JSON; raise LookupFailed if malformed.

    A NO_HIT without a data version is refused, because the officer must be
    able to see which list it came from.
    """
    if not isinstance(body, dict):
        raise LookupFailed(
            "lookup service returned a response that is not a JSON object"
        )
    try:
        result = Result(str(body["result"]))
        raw_records = body.get("records") or []
        if not isinstance(raw_records, list):
            raise TypeError("records is not a list")
        records = tuple(Record.from_json(item) for item in raw_records)
        version = body.get("data_version")
    except (KeyError, ValueError, TypeError, InvalidRecord, AttributeError) as exc:
        raise LookupFailed(
            f"lookup service returned a malformed response: {type(exc).__name__}"
        ) from exc
    if result is Result.UNKNOWN:
        raise LookupFailed(str(body.get("reason") or "lookup service returned UNKNOWN"))
    if result is Result.NO_HIT and not version:
        raise LookupFailed("lookup service sent NO_HIT without a data version")
    if result is Result.NO_HIT and records:
        raise LookupFailed(
            f"lookup service sent NO_HIT with {len(records)} records, an "
            "inconsistent answer"
        )
    if result in (Result.HIT, Result.POSSIBLE) and not records:
        raise LookupFailed(f"lookup service sent {result.value} without records")
    return LookupAnswer(
        result,
        records,
        data_version=str(version) if version else None,
        type_mismatch=bool(body.get("type_mismatch", False)),
        source=SOURCE,
        request_id=request_id,
    )


def parse_change_page(body: object) -> ChangePage:
    """Build a change feed page from JSON; raise LookupFailed if malformed."""
    if not isinstance(body, dict):
        raise LookupFailed("change feed page is not an object")
    try:
        added = tuple(Record.from_json(item) for item in body["added"])
        deleted = tuple(
            DocumentKey(
                str(item["issuing_state"]),
                str(item["document_type"]),
                str(item["document_number"]),
            )
            for item in body["deleted"]
        )
        cursor = body.get("next_cursor")
        return ChangePage(
            version=str(body["version"]),
            reset=bool(body["reset"]),
            added=added,
            deleted=deleted,
            next_cursor=int(cursor) if cursor is not None else None,
        )
    except (KeyError, ValueError, TypeError, InvalidRecord) as exc:
        raise LookupFailed(f"malformed change feed page: {type(exc).__name__}") from exc
