"""Online lookup with an offline copy and a recheck queue behind it.

Order of answers for one key: the service; when that gives UNKNOWN, the
offline copy (whose stale NO_HIT is itself UNKNOWN). Whatever was not
answered by the service is queued for an online recheck, and `maintain()`
(called by a timer, or the background thread from `start()`) syncs the
offline copy and drains the queue while the link is up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

from backend.records import DocumentKey, LookupAnswer, Result, unknown
from kiosk.errors import LookupFailed
from kiosk.lookup.base import (
    BackendState,
    BackendStatus,
    merge_lookalikes,
    needs_lookalikes,
)
from kiosk.lookup.http import REJECTED_REASON, HttpLookup
from kiosk.lookup.offline import OfflineCopy
from kiosk.lookup.queue import RecheckQueue

logger = logging.getLogger(__name__)


class ResilientLookup:
    """LookupClient combining HttpLookup, an OfflineCopy and a RecheckQueue."""

    def __init__(
        self,
        online: HttpLookup,
        *,
        offline: OfflineCopy | None = None,
        queue: RecheckQueue | None = None,
    ) -> None:
        self.online = online
        self.offline = offline
        self.queue = queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Last known state of the service, so that status() (polled by the
        # waiting screen) does not wait on a network timeout.
        self._online_status: BackendStatus | None = None

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        answers, missing = self._answer(keys)
        for index in missing:
            self._enqueue(keys[index], answers[index])
        return answers

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        """Look up the key, then the variants unless the key is a HIT or
        POSSIBLE, each online first and from the offline copy where the
        service gave UNKNOWN.

        When the service did not answer the key or a variant, one queue
        entry holds the key and the unanswered variants, written in one
        transaction after both lookups.
        """
        answers, missing = self._answer([key])
        answer = answers[0]
        variant_answers: list[LookupAnswer] = []
        variant_missing: list[int] = []
        if variants and needs_lookalikes(answer):
            variant_answers, variant_missing = self._answer(variants)
        if missing or variant_missing:
            # A late alert names the result the officer saw first.
            first_seen = merge_lookalikes(answer, variant_answers)
            unanswered = [variants[i] for i in variant_missing]
            self._enqueue(key, first_seen, unanswered)
        return answer, variant_answers

    def _answer(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[list[LookupAnswer], list[int]]:
        """Return the answers and the indexes of those the service did not give."""
        try:
            answers = self.online.lookup_many(keys)
        except Exception as exc:
            # The clients below return UNKNOWN for every failure they know
            # of; this catches the rest, so no caller ever sees an exception.
            logger.exception("online lookup failed with %s", type(exc).__name__)
            reason = f"online lookup failed: {type(exc).__name__}"
            answers = [unknown(reason, source="online") for _ in keys]
        missing = [i for i, a in enumerate(answers) if a.result is Result.UNKNOWN]
        self._note_online(answers, missing)
        if not missing:
            return answers, missing
        # A service that rejects this kiosk's key has revoked its access, and
        # a kiosk with a bad key must be fixed, not run on its offline copy.
        fallback_to = [i for i in missing if not _rejected(answers[i])]
        if self.offline is not None and fallback_to:
            missing_keys = [keys[i] for i in fallback_to]
            fallback = _offline_answers(self.offline, missing_keys)
            for index, answer in zip(fallback_to, fallback, strict=True):
                if answer.result is not Result.UNKNOWN:
                    answers[index] = answer
                else:
                    answers[index] = _join_reasons(answers[index], answer)
        return answers, missing

    def _enqueue(
        self,
        key: DocumentKey,
        answer: LookupAnswer,
        variants: Sequence[DocumentKey] = (),
    ) -> None:
        if self.queue is None:
            return
        try:
            self.queue.enqueue(key, answer, variants)
        except Exception as exc:
            # The answer is still shown (UNKNOWN or offline); only the later
            # recheck is lost, so this is logged loudly rather than raised.
            logger.error("recheck could not be queued: %s", exc)

    def _note_online(self, answers: list[LookupAnswer], missing: list[int]) -> None:
        if not answers:
            return
        if len(missing) == len(answers):
            reason = answers[0].reason or "lookup service unavailable"
            self._online_status = BackendStatus(BackendState.UNREACHABLE, None, reason)
            return
        answered = next(a for a in answers if a.result is not Result.UNKNOWN)
        previous = self._online_status
        description = (
            previous.description
            if previous is not None and previous.state is BackendState.ONLINE
            else "online"
        )
        self._online_status = BackendStatus(
            BackendState.ONLINE, answered.data_version, description
        )

    def maintain(self) -> None:
        """Sync the offline copy and drain the recheck queue, if online."""
        self._online_status = self.online.status()
        if self._online_status.state is not BackendState.ONLINE:
            logger.info("lookup service not ready: %s", self._online_status.description)
            return
        if self.offline is not None:
            try:
                self.offline.sync(self.online)
            except LookupFailed as exc:
                logger.warning("offline copy sync failed: %s", exc)
                return
        if self.queue is not None and len(self.queue):
            self.queue.drain(self.online)

    def start(self, interval_s: float = 60.0, *, first_after_s: float = 0.0) -> None:
        """Run `maintain()` every `interval_s` seconds in a daemon thread,
        the first time after `first_after_s` seconds."""
        if self._thread is not None:
            return

        def loop() -> None:
            # By default the first run is immediate, so a fresh kiosk gets
            # its offline copy without waiting a whole interval.
            self._stop.wait(first_after_s)
            while not self._stop.is_set():
                try:
                    self.maintain()
                except Exception:
                    logger.exception("lookup maintenance failed")
                self._stop.wait(interval_s)

        self._thread = threading.Thread(
            target=loop, name="lookup-maintenance", daemon=True
        )
        self._thread.start()

    def status(self) -> BackendStatus:
        queued = len(self.queue) if self.queue is not None else 0
        online = self._online_status
        if online is None:
            online = self._online_status = self.online.status()
        if online.state is BackendState.ONLINE:
            age = self.offline.age() if self.offline is not None else None
            return BackendStatus(
                online.state, online.data_version, online.description, age, queued
            )
        if online.description.startswith(REJECTED_REASON):
            # Lookups do not fall back to the offline copy in this state.
            return BackendStatus(online.state, None, online.description, None, queued)
        if self.offline is not None:
            copy = self.offline.status()
            description = f"{online.description}; {copy.description}"
            return BackendStatus(
                copy.state, copy.data_version, description, copy.data_age, queued
            )
        return BackendStatus(online.state, None, online.description, None, queued)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.online.close()
        if self.offline is not None:
            self.offline.close()
        if self.queue is not None:
            self.queue.close()


def _rejected(answer: LookupAnswer) -> bool:
    return answer.reason is not None and answer.reason.startswith(REJECTED_REASON)


def _join_reasons(online: LookupAnswer, offline: LookupAnswer) -> LookupAnswer:
    reason = f"{online.reason}; {offline.reason}"
    return dataclasses.replace(online, reason=reason)


def _offline_answers(
    offline: OfflineCopy, keys: list[DocumentKey]
) -> list[LookupAnswer]:
    try:
        return offline.lookup_many(keys)
    except Exception as exc:
        logger.exception("offline lookup failed with %s", type(exc).__name__)
        reason = f"offline copy failed: {type(exc).__name__}"
        return [unknown(reason, source="offline") for _ in keys]
