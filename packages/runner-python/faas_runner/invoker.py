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
from faas import Headers as RequestHeaders

from . import log
from .http11 import JSON_HEADERS, error_body
from .loader import LoadedFunction, LoadSpec
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

    async def warm_up(self) -> None:
        """Calls throwaway sync and async handlers through the same path as a real call."""
        def sync_handler(req: Request) -> Any:
            return {"warm": req.path}

        async def async_handler(req: Request) -> Any:
            return Response("warm", status=200, headers={"x-warm": "1"})

        for call, is_async in ((sync_handler, False), (async_handler, True)):
            fn = LoadedFunction(
                spec=LoadSpec(name="faas-warm", handler="warm.handle", code=None, timeout_seconds=5.0),
                call=call,
                is_async=is_async,
                takes_request=True,
                fingerprint="",
                load_ms=0.0,
                temp_dir=None,
            )
            for _ in range(8):
                req = Request("GET", "/warm", "x=1", RequestHeaders([("host", "warm")], lowercase=False), b"", "faas-warm")
                await self.invoke(fn, req)

    def hold(self, req: Request) -> Job:
        """A job for an invocation that arrived while the code loads; see ``adopt``."""
        loop = asyncio.get_running_loop()
        return Job(None, (req,), loop.create_future(), counted=False)

    def adopt(self, fn: LoadedFunction, job: Job) -> None:
        """On the loader thread, right after a sync handler's import: makes a held job call it (``run_here``)."""
        job.fn = fn.call
        if not fn.takes_request:
            job.args = ()

    def run_held(self, job: Job) -> None:
        """On the loader thread: runs an adopted job there."""
        self._threads.run_here(job)

    async def invoke(self, fn: LoadedFunction, req: Request, held: Job | None = None) -> Outcome:
        """Calls the handler; ``held``: a job the loader thread adopted, already running or done."""
        args = (req,) if fn.takes_request else ()
        try:
            if held is not None and held.fn is not None:
                result = await self._await_job(fn, held)
            elif fn.is_async:
                deadline = asyncio.get_running_loop().time() + fn.spec.timeout_seconds
                result = await _await_until(fn.call(*args), deadline)
            else:
                result = await self._call_sync(fn, args)
            return to_outcome(result)
        except _DeadlinePassed as passed:
            return self._timed_out(fn, stuck=passed.stuck)
        except BadRequest as err:
            return Outcome(400, JSON_HEADERS, error_body("BAD_REQUEST", str(err), function=fn.spec.name))
        except (Exception, SystemExit) as err:  # an async handler's sys.exit() must not stop us
            return handler_error(fn, err)

    async def _call_sync(self, fn: LoadedFunction, args: tuple[Any, ...]) -> Any:
        # A bare timer that cancels the job's future: cheaper than asyncio.timeout
        # on the hot path, and our own task is never cancelled by it.
        return await self._await_job(fn, self._threads.submit(fn.call, args))

    async def _await_job(self, fn: LoadedFunction, job: Job) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + fn.spec.timeout_seconds
        timer = loop.call_at(deadline, job.future.cancel)
        try:
            result = await job.future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our own task was cancelled: not a timeout
            raise _DeadlinePassed(stuck=self._threads.abandon(job)) from None
        finally:
            timer.cancel()
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            result = await _await_until(result, deadline)
        return result

    def _timed_out(self, fn: LoadedFunction, *, stuck: bool) -> Outcome:
        message = f"handler ran past its {fn.spec.timeout_seconds:g}s timeout"
        log.error("handler_timeout", function=fn.spec.name, timeoutSeconds=fn.spec.timeout_seconds, stuck=stuck)
        return Outcome(504, JSON_HEADERS, error_body("HANDLER_TIMEOUT", message, function=fn.spec.name), stuck=stuck)

    def shutdown(self) -> None:
        self._threads.stop()


class _DeadlinePassed(Exception):
    def __init__(self, *, stuck: bool) -> None:
        super().__init__()
        self.stuck = stuck  # a thread is still running the handler


async def _await_until(awaitable: Any, deadline: float) -> Any:
    """Awaits on the loop, cancelled at the deadline; the handler's own TimeoutError passes through."""
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            result = await awaitable
            while inspect.isawaitable(result):
                result = await result
            return result
    except TimeoutError:
        if scope.expired():
            raise _DeadlinePassed(stuck=False) from None
        raise


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
    if status in (204, 304):
        return Outcome(status, out, b"")  # no content, so no content type either
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
