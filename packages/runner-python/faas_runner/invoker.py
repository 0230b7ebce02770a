"""Calls the handler under its deadline and turns what it returns into a response.

Async handlers run on the event loop and are cancelled at the deadline. Sync
handlers run in a thread pool so they cannot stall the loop; a thread cannot
be killed, so a sync handler still running at its deadline leaves the runner
*stuck* (the caller drains and exits so it is replaced).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from faas import BadRequest, Request, Response

from . import log
from .http11 import JSON_HEADERS, error_body
from .loader import LoadedFunction
from .threads import HandlerThreads, Job

Headers = list[tuple[str, str]]

TEXT_HEADERS = [("content-type", "text/plain; charset=utf-8")]
BINARY_HEADERS = [("content-type", "application/octet-stream")]
_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}


class Outcome:
    __slots__ = ("body", "headers", "status", "stuck")

    def __init__(self, status: int, headers: Headers, body: bytes, stuck: bool = False) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stuck = stuck


class Invoker:
    def __init__(self, threads: int) -> None:
        self._threads = HandlerThreads(threads)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A thread ready before the first call keeps thread start-up out of cold starts.
        self._threads.start(loop, threads=2)

    async def invoke(self, fn: LoadedFunction, req: Request) -> Outcome:
        job: Job | None = None
        try:
            async with asyncio.timeout(fn.spec.timeout_seconds) as deadline:
                args = (req,) if fn.takes_request else ()
                if fn.is_async:
                    result = await fn.call(*args)
                else:
                    job = self._threads.submit(fn.call, args)
                    result = await job.future
                if inspect.isawaitable(result):
                    result = await result
            return to_outcome(result)
        except TimeoutError as err:
            if not deadline.expired():
                return handler_error(fn, err)
            stuck = job is not None and self._threads.abandon(job)
            message = f"handler ran past its {fn.spec.timeout_seconds:g}s timeout"
            log.error("handler_timeout", function=fn.spec.name, timeoutSeconds=fn.spec.timeout_seconds, stuck=stuck)
            body = error_body("HANDLER_TIMEOUT", message, function=fn.spec.name)
            return Outcome(504, JSON_HEADERS, body, stuck=stuck)
        except BadRequest as err:
            return Outcome(400, JSON_HEADERS, error_body("BAD_REQUEST", str(err), function=fn.spec.name))
        except (Exception, SystemExit) as err:  # an async handler's sys.exit() must not stop us
            return handler_error(fn, err)

    def shutdown(self) -> None:
        self._threads.stop()


def handler_error(fn: LoadedFunction, err: BaseException) -> Outcome:
    message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    log.error("handler_error", function=fn.spec.name, error=message, traceback=_user_traceback(err))
    return Outcome(500, JSON_HEADERS, error_body("HANDLER_ERROR", message, function=fn.spec.name))


def _user_traceback(err: BaseException) -> str:
    """The traceback from the handler's frame down: the runner's own frames are noise."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNNER_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb))


def to_outcome(result: Any) -> Outcome:
    """Maps a handler's return value to a response; unsupported values raise TypeError."""
    if isinstance(result, str):
        return Outcome(200, TEXT_HEADERS, result.encode())
    if isinstance(result, Response):
        return _from_parts(result.body, result.status, result.headers)
    if isinstance(result, tuple) and 2 <= len(result) <= 3:
        return _from_parts(*result)
    if result is None:
        return Outcome(204, [], b"")
    return _from_parts(result, 200, None)


def _from_parts(body: Any, status: Any, headers: Any = None) -> Outcome:
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise TypeError(f"response status must be an int from 200 to 599, got {status!r}")
    default_headers, data = _encode_body(body)
    out = _normalize_headers(headers) if headers else []
    if data and not any(name.lower() == "content-type" for name, _ in out):
        out.extend(default_headers)
    return Outcome(status, out, data)


def _encode_body(body: Any) -> tuple[Headers, bytes]:
    if body is None:
        return [], b""
    if isinstance(body, str):
        return TEXT_HEADERS, body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return BINARY_HEADERS, bytes(body)
    if isinstance(body, (dict, list)):
        return JSON_HEADERS, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    raise TypeError(
        f"handler returned {type(body).__name__}; return str, bytes, dict, list, None, "
        "a faas.Response or a (body, status[, headers]) tuple"
    )


def _normalize_headers(headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Headers:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: Headers = []
    for name, value in pairs:
        name, value = str(name), str(value)
        if not name or any(c in name for c in " \t\r\n:") or "\r" in value or "\n" in value:
            raise ValueError(f"invalid response header {name!r}")
        if name.lower() in _FRAMING:
            continue  # the runner frames the response itself
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"response header {name!r} is not latin-1 encodable") from None
        out.append((name, value))
    return out
