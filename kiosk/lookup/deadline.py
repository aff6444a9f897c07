"""One time limit shared by all the lookups of one document check."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

_start: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "shared_deadline_start", default=None
)


@contextlib.contextmanager
def shared_deadline() -> Iterator[None]:
    """Count every lookup made inside the block against one time limit.

    Online clients end each request made in the block at their `timeout_s`
    after the block's start, so the main lookup of a document, its
    look-alike lookup and all their retries wait one time limit in all. A
    nested block keeps the outer block's start. Like every context
    variable, the start belongs to one thread (or asyncio task).
    """
    if _start.get() is not None:
        yield
        return
    token = _start.set(time.monotonic())
    try:
        yield
    finally:
        _start.reset(token)


def shared_deadline_start() -> float | None:
    """Return the time.monotonic() start of the enclosing `shared_deadline()`
    block, or None outside one."""
    start: float | None = _start.get()
    return start
