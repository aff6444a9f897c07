"""Minimal ASGI app that gives the lookup benchmark its HTTP ceiling.

`tools.bench_lookup` runs it under uvicorn as `kiosk-backend serve` runs the
service: the same worker count, uvicorn's default event loop and HTTP parser
(uvloop and httptools when installed, in uvicorn 0.55) and no access log.
It drives the app with the same requests as the service. The app reads each
request's whole body and returns 200 with a fixed `application/json` body as
long as the service's NO_HIT response. Its request rate is therefore what
uvicorn, loopback TCP and the load generator reach on this machine with no
lookup work at all.

    python -m tools.bench_ceiling_app --port 8999 --workers 2 --body-length 180
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn

BODY_LENGTH_ENV = "KIOSK_BENCH_CEILING_BODY_LENGTH"
_PREFIX = b'{"pad":"'
_SUFFIX = b'"}'

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Coroutine[Any, Any, None]]


def fixed_body(length: int) -> bytes:
    """Return a JSON object of exactly `length` bytes."""
    padding = length - len(_PREFIX) - len(_SUFFIX)
    if padding < 0:
        raise ValueError(
            f"invalid body length {length}: the JSON body needs at least "
            f"{len(_PREFIX) + len(_SUFFIX)} bytes"
        )
    return _PREFIX + b"x" * padding + _SUFFIX


def create_app(body_length: int | None = None) -> App:
    """Build the app. The body length defaults to $KIOSK_BENCH_CEILING_BODY_LENGTH.

    uvicorn's worker processes call this as a factory with no argument, so
    the length reaches them through the environment.
    """
    length = int(os.environ[BODY_LENGTH_ENV]) if body_length is None else body_length
    body = fixed_body(length)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="loopback port")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes"
    )
    parser.add_argument(
        "--body-length",
        type=int,
        required=True,
        help="length of the fixed JSON response body, in bytes",
    )
    args = parser.parse_args(argv)
    fixed_body(args.body_length)  # Reject a bad length before starting workers.
    os.environ[BODY_LENGTH_ENV] = str(args.body_length)
    uvicorn.run(
        "tools.bench_ceiling_app:create_app",
        factory=True,
        workers=args.workers,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
