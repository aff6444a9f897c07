"""The interface every capture driver implements.

A driver owns one worker thread. It delivers events through a thread-safe
queue and, when given, a callback that runs on the worker thread.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Literal

from drivers.errors import DriverStateError
from drivers.events import DeviceState, DriverEvent, StatusChanged

log = logging.getLogger(__name__)

EventCallback = Callable[[DriverEvent], None]
# Direction "rx" is device to host, "tx" host to device.
RawListener = Callable[[Literal["rx", "tx"], bytes], None]


class Driver(abc.ABC):
    """A capture device running in its own thread.

    Subclasses implement `_run`, which must return soon after `_stop_event`
    is set, and may override `_interrupt` to unblock a blocking read.
    """

    # Capabilities: whether the driver delivers page images, MRZ text, or both.
    delivers_images: bool = False
    delivers_text: bool = False

    def __init__(
        self,
        name: str,
        on_event: EventCallback | None = None,
        *,
        queue_events: bool = True,
    ) -> None:
        self.name = name
        self.events: queue.Queue[DriverEvent] = queue.Queue()
        self._on_event = on_event
        # False when only the callback consumes events, so the queue cannot grow.
        self._queue_events = queue_events
        # Technician commands set this to see the device's bytes; the normal
        # kiosk never does, so raw traffic stays out of the normal log.
        self.raw_listener: RawListener | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise DriverStateError(f"driver {self.name!r} was already started")
        self._thread = threading.Thread(
            target=self._thread_main, name=f"driver-{self.name}", daemon=True
        )
        log.info("driver %s (%s) starting", self.name, type(self).__name__)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to finish and join it; safe to call more than once."""
        self._stop_event.set()
        self._interrupt()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("driver %s did not stop within %.1f s", self.name, timeout_s)
        else:
            log.info("driver %s stopped", self.name)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def get_event(self, timeout_s: float | None = None) -> DriverEvent | None:
        """Return the next event, or None when none arrives within the timeout."""
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def iter_events(self, timeout_s: float) -> Iterator[DriverEvent]:
        """Yield events until none arrives for `timeout_s` seconds."""
        while (event := self.get_event(timeout_s)) is not None:
            yield event

    def __enter__(self) -> Driver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def emit(self, event: DriverEvent) -> None:
        if self._queue_events:
            self.events.put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                # A faulty consumer must not kill the capture thread.
                log.exception("driver %s: event callback failed", self.name)

    def emit_status(self, state: DeviceState, reason: str) -> None:
        log.info("driver %s: %s (%s)", self.name, state.value, reason)
        self.emit(StatusChanged(state, reason, self.name))

    def _emit_raw(self, direction: Literal["rx", "tx"], data: bytes) -> None:
        # Raw bytes may hold MRZ text, which must never reach a log, so even
        # the DEBUG log gets only their length. The technician commands show
        # the bytes through raw_listener.
        log.debug("driver %s: %s %d bytes", self.name, direction, len(data))
        if self.raw_listener is not None:
            self.raw_listener(direction, data)

    def _thread_main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log.exception("driver %s: worker thread failed", self.name)
            self.emit_status(DeviceState.ERROR, f"driver failed: {type(exc).__name__}")

    @abc.abstractmethod
    def _run(self) -> None:
        """Capture until `self._stop_event` is set."""

    def _interrupt(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Unblock a read that `_run` may be waiting in."""
