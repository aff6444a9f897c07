"""Online lookup client for the HTTP service (`kiosk-backend serve`).

Each check gets one request id that every retry reuses, so the service
answers a retry from its replay cache instead of running (and auditing) the
lookup twice. Timeouts, refused connections, 5xx statuses and malformed
bodies all end as UNKNOWN answers with the reason.
"""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from backend.errors import InvalidRecord
from backend.records import DocumentKey, LookupAnswer, Record, Result, unknown
from backend.store.base import ChangePage
from kiosk.errors import LookupFailed
from kiosk.lookup.base import BackendState, BackendStatus

logger = logging.getLogger(__name__)

SOURCE = "online"
# Keys per batch request; the service accepts up to 10,000.
BATCH_SIZE = 1000
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A kiosk waits for its answer, so a long Retry-After is cut to this, in s.
_MAX_RETRY_AFTER_S = 1.0


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
        """`verify` is True (system CAs), False, or a CA bundle file for a
        private CA; `client_cert` is (certificate, key) PEM files for
        services that require client certificates."""
        headers = {"User-Agent": "border-kiosk"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            verify=_tls_context(verify, client_cert),
            transport=transport,
        )

    # -- requests --------------------------------------------------------

    def _request(self, method: str, path: str, request_id: str, **kwargs: Any) -> Any:
        """Send a request with retries; return the decoded JSON body.

        Raises LookupFailed with a reason fit for an UNKNOWN answer.
        """
        headers = {"X-Request-ID": request_id}
        last_reason = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * (2 ** (attempt - 1))
                logger.info(
                    "retrying request %s (attempt %d of %d) after %s",
                    request_id,
                    attempt + 1,
                    self.retries + 1,
                    last_reason,
                )
                time.sleep(delay)
            try:
                response = self._client.request(method, path, headers=headers, **kwargs)
            except httpx.TimeoutException:
                last_reason = "lookup service timed out"
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
                    time.sleep(min(retry_after, _MAX_RETRY_AFTER_S))
                continue
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

    # -- LookupClient ----------------------------------------------------

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        request_id = uuid.uuid4().hex
        try:
            body = self._request("POST", "/v1/lookup", request_id, json=_key_json(key))
            return parse_answer(body, request_id)
        except LookupFailed as exc:
            return unknown(str(exc), source=SOURCE, request_id=request_id)

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
                json={"keys": [_key_json(k) for k in keys]},
            )
            items = body.get("answers") if isinstance(body, dict) else None
            if not isinstance(items, list) or len(items) != len(keys):
                raise LookupFailed("lookup service sent a batch of the wrong size")
            return [parse_answer(item, request_id) for item in items]
        except LookupFailed as exc:
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
        body = self._request("GET", "/v1/changes", uuid.uuid4().hex, params=params)
        return parse_change_page(body)

    def status(self) -> BackendStatus:
        try:
            response = self._client.get("/ready")
            body = response.json() if response.status_code in (200, 503) else {}
        except (httpx.HTTPError, ValueError) as exc:
            return BackendStatus(
                BackendState.UNREACHABLE,
                None,
                f"lookup service unreachable: {type(exc).__name__}",
            )
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
