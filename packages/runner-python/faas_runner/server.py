"""The runner's HTTP server: control endpoints, invocations, draining and exit.

Life cycle: generic → specialized (one function, for good) → draining → exit.
Draining starts on SIGTERM/SIGINT (exit 0) or when a sync handler is stuck past
its deadline (exit 3, so the supervisor replaces the process). While draining,
every response carries ``x-faas-runner-state: draining`` and closes its
connection, new invocations get 503 RUNNER_DRAINING, and the process exits once
no request is in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hmac
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from faas import Headers, Request

from . import log
from .announce import announce, announcement
from .config import Config
from .http11 import JSON_HEADERS, ProtocolError, RequestHead, error_body, read_body, read_head, serialize
from .invoker import Invoker, Outcome
from .threads import Job
from .package import PackageError, package_root
from .loader import (
    LoadSpec,
    LoadedFunction,
    LoadError,
    SpecError,
    fingerprint_of,
    load_function,
    parse_load_spec,
    read_code_dir,
    read_env_spec,
)

EXIT_OK = 0
EXIT_CODE_DIR_FAILED = 1
EXIT_STUCK = 3
TERMINATION_LOG = "/dev/termination-log"
PR_SET_PDEATHSIG = 1
DRAINING_HEADER = ("x-faas-runner-state", "draining")
# On every RUNNER_NOT_SPECIALIZED answer: the handler did not run, the call may be sent again.
GENERIC_HEADERS = [*JSON_HEADERS, ("x-faas-runner-state", "generic")]
# "<function> <ms>": an invocation sent right behind POST /specialize waits up to <ms> for that
# function's load (docs/runner-protocol.md).
AWAIT_LOAD_HEADER = "x-faas-await-load"
# On the answer of an invocation that waited for the load: the load's time (its loadMs).
LOAD_MS_HEADER = "x-faas-load-ms"
_AWAIT_LOAD_LEN = len(AWAIT_LOAD_HEADER)


class Connection:
    __slots__ = ("deadline", "idle", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle = True
        self.deadline: float | None = None


class Runner:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.function: LoadedFunction | None = None
        self.draining = False
        self.exit_code = EXIT_OK
        self._invoker = Invoker(config.threads)
        self._connections: set[Connection] = set()
        self._in_flight = 0
        self._server: asyncio.Server | None = None
        self._done: asyncio.Event | None = None
        self._scratch_dir = tempfile.mkdtemp(prefix="faas-runner-")
        # The directory the next inline code is written to, made now: a mkdtemp costs ~0.3 ms on a cold start.
        self._fresh_dir: str | None = tempfile.mkdtemp(prefix="fn-", dir=self._scratch_dir)
        # Invocations that arrived while the code loads (AWAIT_LOAD_HEADER); see _import.
        self._held = _HeldCalls()
        self._adopted = 0  # held invocations the loader thread ran with the last load
        # Code is imported on its own thread, so the event loop keeps answering
        # (readiness, the load timeout, SIGTERM) while a module's top level runs.
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="faas-loader")
        self._loader.submit(_nothing).result()  # the thread exists before the first specialization
        # Package pulls get a thread of their own: a pull is not part of the load timeout.
        self._puller = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="faas-pull")
        self._loading: tuple[str | None, asyncio.Future[LoadedFunction]] | None = None
        # Resolved when the next load starts: invocations held while generic (AWAIT_LOAD_HEADER) wait on it.
        self._load_started: asyncio.Future[None] | None = None
        self._loading_name: str | None = None
        # Why the last load failed, for the invocations that waited on it.
        self._load_error: str | None = None
        # A code directory naming a package to pull: pulled once the server listens (probes keep answering).
        self._code_dir_spec: LoadSpec | None = None
        # time.monotonic() when the process started running Python (set by __main__).
        self.process_started = time.monotonic()
        self._code_dir_task: asyncio.Task[None] | None = None
        # A pool runner restarted after its claim comes back generic: never usable again.
        self.restarted_after_claim = bool(config.pool_claim_file and os.path.exists(config.pool_claim_file))

    # ---- life cycle -------------------------------------------------------

    def specialize_from_code_dir(self) -> None:
        """Loads FAAS_FUNCTION_SPEC, or ``FAAS_CODE_DIR/function.json`` if present; errors propagate (fatal at start)."""
        code_dir = self.config.code_dir
        if self.config.function_spec:
            spec = read_env_spec(self.config.function_spec, self.config.function_code)
            code_dir = None
        elif code_dir and os.path.exists(os.path.join(code_dir, "function.json")):
            spec = read_code_dir(code_dir)
        else:
            return
        if spec.package is not None and spec.package.dir is None:
            self._code_dir_spec = spec
            return
        root = self._package_root(spec) if spec.package is not None else None
        self._become(load_function(spec, code_dir, self._scratch_dir, root))

    def _package_root(self, spec: LoadSpec) -> str:
        assert spec.package is not None
        try:
            return package_root(
                spec.package,
                self.config.package_cache_dir,
                self.config.package_max_bytes,
                self.config.package_pull_timeout_ms,
                self.config.package_max_entries,
            )
        except PackageError as err:
            raise LoadError(str(err)) from None

    def _begin_load(self, spec: LoadSpec) -> asyncio.Future[LoadedFunction]:
        """Starts loading: the import is handed to the loader thread now, not a loop turn later.

        Opens the held invocations first (see ``_import``). The future raises
        ``_LoadTimedOut`` when the import is still running at the load timeout.
        """
        self._held.open()
        if spec.package is not None:
            return asyncio.ensure_future(self._load_package(spec))
        return self._submit_import(spec, None)

    async def _load_package(self, spec: LoadSpec) -> LoadedFunction:
        """Pulls the package, then imports; loadMs includes the pull, as in the Node.js runner."""
        started = time.perf_counter()
        root = await asyncio.get_running_loop().run_in_executor(self._puller, self._package_root, spec)
        fn = await asyncio.shield(self._submit_import(spec, root))
        return dataclasses.replace(fn, load_ms=round((time.perf_counter() - started) * 1000, 3))

    def _submit_import(self, spec: LoadSpec, root: str | None) -> asyncio.Future[LoadedFunction]:
        """The import on the loader thread, as a future failed by a timer at the load timeout: no
        task or wait_for between the loader's answer and the requests waiting on it."""
        loop = asyncio.get_running_loop()
        importing: asyncio.Future[LoadedFunction] = loop.create_future()
        timer = loop.call_later(self.config.load_timeout_ms / 1000, self._load_failed, importing, _LoadTimedOut())
        importing.add_done_callback(lambda _: timer.cancel())
        self._loader.submit(self._import, loop, importing, spec, root)
        return importing

    def _import(
        self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[LoadedFunction], spec: LoadSpec, root: str | None
    ) -> None:
        """On the loader thread: imports, then runs the invocations held for this load.

        A sync handler's held invocations run right here after the import (the
        loop hears of the load and of their results in one wake-up), not on a
        handler thread after the loop has seen the load: that saved a thread
        round trip on every cold start. Their deadline runs on the loop as for
        any call. An async handler's held invocations run on the loop.
        """
        fresh_dir = None
        if spec.code is not None:
            fresh_dir, self._fresh_dir = self._fresh_dir, None
        try:
            fn = load_function(spec, None, self._scratch_dir, root, fresh_dir)
        except BaseException as err:  # noqa: BLE001 - the loop's future carries it
            self._held.close()
            loop.call_soon_threadsafe(self._load_failed, done, err)
            return
        held = self._held.close()
        if fn.is_async:
            held = []
        for job in held:
            self._invoker.adopt(fn, job)
        self._adopted = len(held)
        loop.call_soon_threadsafe(_settle, done, fn, None)
        for job in held:
            self._invoker.run_held(job)

    async def _specialize_from_code_dir_package(self, spec: LoadSpec) -> None:
        """A code directory's package, pulled while the server answers probes; failing is fatal (exit 1)."""
        loading = self._begin_load(spec)
        self._start_loading(fingerprint_of(spec, None), loading, spec.name)
        try:
            fn = await loading
        except (LoadError, _LoadTimedOut) as err:
            reason = str(err) or f"code did not finish loading within {self.config.load_timeout_ms} ms"
            log.error("code_dir_load_failed", codeDir=self.config.code_dir, error=reason)
            write_termination_log(f"code_dir_load_failed: {reason}")
            self.exit_code = EXIT_CODE_DIR_FAILED if isinstance(err, LoadError) else EXIT_STUCK
            self._begin_drain()
            return
        finally:
            self._loading = None
        self._become(fn)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._invoker.start(loop)
        self._server = await asyncio.start_server(
            self._serve,
            self.config.host,
            self.config.port,
            limit=self.config.max_header_bytes,
            backlog=self.config.backlog,
            reuse_address=True,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        port = self._server.sockets[0].getsockname()[1]
        # A pooled runner is taken as soon as it says it listens: warm first. Not a
        # runner specialized from its code directory (its /invoke is the real handler).
        if self.function is None and self._code_dir_spec is None:
            await self._warm_up(port)
        listening = {"event": "listening", "port": port, "pid": os.getpid(), "runtime": "python"}
        sys.stdout.write(json.dumps(listening, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        sweeper = asyncio.create_task(self._sweep_idle())
        if self._code_dir_spec is not None:
            self._code_dir_task = asyncio.create_task(self._specialize_from_code_dir_package(self._code_dir_spec))
        announcing = asyncio.create_task(self._announce(port))
        if self.config.parent_pid:
            watch_parent(self.config.parent_pid)
        await self._done.wait()
        sweeper.cancel()
        announcing.cancel()
        await self._close_all()
        return self.exit_code

    async def _announce(self, port: int) -> None:
        """Once the function is loaded, tells the gateways where this pod answers (announce.py)."""
        body = announcement(self.config, port, self.process_started)
        if body is None:
            return
        if self._code_dir_task is not None:
            await asyncio.shield(self._code_dir_task)
        if self.function is None or self.draining:
            return
        body["uptimeMs"] = round((time.monotonic() - self.process_started) * 1000, 1)
        await announce(str(self.config.announce_url), body)

    async def _warm_up(self, port: int, rounds: int = 12) -> None:
        """Runs the cold path's code once off the cold path, while generic.

        A throwaway module is imported on the loader thread (importlib's file
        path), a sync and an async handler are called through the invoker (the
        handler threads, the result hand-off, ``to_outcome``) and a few requests
        go to this server over one kept-alive connection (parsing, routing,
        ``serialize``). None of it changes the runner's state: a generic runner
        answers those requests with 503 or 400.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._loader, _warm_loader, self._scratch_dir)
            await self._invoker.warm_up()
            reader, writer = await asyncio.open_connection(self.config.host if self.config.host != "0.0.0.0" else "127.0.0.1", port)
        except (OSError, LoadError, SpecError) as err:
            log.warn("warm_up_failed", error=str(err))
            return
        requests = [
            b"GET /healthz HTTP/1.1\r\nhost: warm\r\n\r\n",
            b"GET /readyz HTTP/1.1\r\nhost: warm\r\n\r\n",
            b"GET /invoke/warm?x=1 HTTP/1.1\r\nhost: warm\r\n\r\n",
        ]
        if self._may_specialize_unchecked():
            # Refused before its body is read, it would close the connection: only when it gets parsed.
            requests.append(b"POST /specialize HTTP/1.1\r\nhost: warm\r\ncontent-length: 2\r\n\r\n{}")
        try:
            for _ in range(rounds):
                for raw in requests:
                    writer.write(raw)
                    await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            log.warn("warm_up_failed", error=str(err))
        finally:
            writer.close()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("shutdown", signal=sig.name, inFlight=self._in_flight)
        if self._server is not None:
            self._server.close()  # stop accepting; open connections finish
        self._begin_drain()

    def _begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            for conn in list(self._connections):
                if conn.idle:
                    conn.writer.close()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.draining and self._in_flight == 0 and self._done is not None:
            self._done.set()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.writer.close()
        # Give the kernel our last responses before the process goes.
        for _ in range(100):
            if not self._connections:
                break
            await asyncio.sleep(0.01)
        self._invoker.shutdown()
        shutil.rmtree(self._scratch_dir, ignore_errors=True)

    async def _sweep_idle(self) -> None:
        """Closes connections idle (or stalled mid-request) past the keep-alive timeout."""
        loop = asyncio.get_running_loop()
        interval = min(1.0, self.config.keepalive_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for conn in list(self._connections):
                if conn.deadline is not None and now > conn.deadline:
                    conn.writer.close()

    # ---- connections ------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(reader, writer)
        self._connections.add(conn)
        loop = asyncio.get_running_loop()
        keepalive = self.config.keepalive_seconds
        try:
            while True:
                conn.idle = True
                conn.deadline = loop.time() + keepalive
                head = await read_head(reader, self.config.max_headers)
                if head is None:
                    break
                conn.idle = False
                conn.deadline = None
                self._in_flight += 1
                try:
                    keep_alive = await self._respond(conn, head)
                finally:
                    self._in_flight -= 1
                    self._maybe_finish()
                if not keep_alive:
                    break
        except ProtocolError as err:
            self._write(conn, err.status, JSON_HEADERS, error_body(err.code, str(err)), None)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as err:  # a bug of ours: say so rather than drop the connection
            log.error("internal_error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
            if not writer.is_closing():
                self._write(conn, 500, JSON_HEADERS, error_body("INTERNAL", "internal runner error"), None)
        finally:
            self._connections.discard(conn)
            writer.close()

    async def _respond(self, conn: Connection, head: RequestHead) -> bool:
        """Routes one request and writes its response; returns whether to keep the connection."""
        target = head.target
        if target.startswith(("http://", "https://")):  # absolute-form: keep path and query
            slash = target.find("/", target.find("//") + 2)
            target = target[slash:] if slash != -1 else "/"
        path, _, query = target.partition("?")
        if path == "/invoke" or path.startswith("/invoke/"):
            outcome = await self._invoke(conn, head, path[7:] or "/", query)
        elif path == "/healthz":
            outcome = self._only(head, "GET", "HEAD") or _json(200, {"status": "ok"})
        elif path == "/readyz":
            outcome = self._only(head, "GET", "HEAD") or self._readiness()
            if self.config.pod_uid:  # which pod answers at this address (a gateway checks an announcement)
                outcome = Outcome(outcome.status, [*outcome.headers, ("x-faas-pod-uid", self.config.pod_uid)], outcome.body)
        elif path == "/specialize":
            outcome = self._only(head, "POST") or await self._specialize(conn, head)
        else:
            outcome = _error(404, "NOT_FOUND", f"no route {path}; invocations go to /invoke")
        return self._write(conn, outcome.status, outcome.headers, outcome.body, head)

    def _write(
        self, conn: Connection, status: int, headers: list[tuple[str, str]], body: bytes, head: RequestHead | None
    ) -> bool:
        keep_alive = head is not None and head.keep_alive and not self.draining
        if head is not None and head.has_body and not head.body_read:
            keep_alive = False  # an unread body would be taken for the next request
        if self.draining:
            headers = [*headers, DRAINING_HEADER]
        conn.writer.write(
            serialize(
                status,
                headers,
                body,
                keep_alive=keep_alive,
                version=head.version if head is not None else 1,
                head_request=head is not None and head.method == "HEAD",
            )
        )
        return keep_alive

    async def _read_body(self, conn: Connection, head: RequestHead) -> bytes:
        conn.deadline = asyncio.get_running_loop().time() + self.config.keepalive_seconds
        body = await read_body(head, conn.reader, conn.writer, self.config.max_body_bytes)
        head.body_read = True
        conn.deadline = None
        return body

    # ---- endpoints --------------------------------------------------------

    @staticmethod
    def _only(head: RequestHead, *methods: str) -> Outcome | None:
        if head.method in methods:
            return None
        return _error(405, "METHOD_NOT_ALLOWED", f"{head.method} not allowed here; use {' or '.join(methods)}")

    def _readiness(self) -> Outcome:
        if self.draining:
            return _json(503, {"status": "draining"})
        if self.restarted_after_claim:
            return _json(503, {"status": "restarted"})
        if self.function is None:
            if self._loading is not None:
                return _json(503, {"status": "loading"})
            # A pool runner is ready to be claimed while generic; any other is not ready yet.
            return _json(200 if self.config.pool_claim_file else 503, {"status": "generic"})
        return _json(200, {"status": "ready", "function": self.function.spec.name})

    def _may_specialize_unchecked(self) -> bool:
        """Whether /specialize reads its body without a token or other check first."""
        return not (self.config.preloaded or self.config.specialize_token or self.restarted_after_claim)

    def _may_specialize(self, head: RequestHead) -> Outcome | None:
        if self.config.preloaded:
            return _error(
                403,
                "FORBIDDEN",
                "this runner was started with its function's code (FAAS_CODE_DIR or FAAS_FUNCTION_SPEC); it never specializes",
            )
        token = self.config.specialize_token
        if token is not None:
            given = next((v for k, v in head.headers if k.lower() == "authorization"), "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "UNAUTHORIZED", "specialize needs the pool's bearer token")
        if self.restarted_after_claim:
            return _error(409, "CONFLICT", "this runner restarted after it was claimed; it is being replaced")
        return None

    async def _specialize(self, conn: Connection, head: RequestHead) -> Outcome:
        if self.draining:
            return _error(503, "RUNNER_DRAINING", "runner is draining")
        refused = self._may_specialize(head)
        if refused is not None:
            return refused
        body = await self._read_body(conn, head)
        try:
            spec = parse_load_spec(json.loads(body))
        except ValueError as err:
            return _error(400, "INVALID_SPEC", f"load spec is not valid JSON: {err}")
        except SpecError as err:
            return _error(400, "INVALID_SPEC", str(err))
        if self.function is not None:
            current = self.function
            if fingerprint_of(spec, None) == current.fingerprint:
                return _json(200, {"function": current.spec.name, "loadMs": current.load_ms})
            return _error(
                409, "CONFLICT", f"runner is already specialized as {current.spec.name!r} with different code"
            )
        fingerprint = fingerprint_of(spec, None)
        if self._loading is not None:
            loading_fingerprint, loading = self._loading
            if loading_fingerprint != fingerprint:
                return _error(409, "CONFLICT", "runner is already loading another function")
        else:
            loading = self._begin_load(spec)
            self._start_loading(fingerprint, loading, spec.name)
        timeout_ms = self.config.load_timeout_ms
        try:
            fn = await asyncio.shield(loading)
            if self._adopted:
                # Their answers first: the caller can relay the first answer before it handles this one.
                for _ in range(2):
                    await asyncio.sleep(0)
        except _LoadTimedOut:
            self._load_error = f"the load failed: code did not finish loading within {timeout_ms} ms"
            # A thread cannot be stopped: this process goes once the answer is out (exit 3).
            log.error("load_timeout", function=spec.name, loadTimeoutMs=timeout_ms, action="exit 3")
            self.exit_code = EXIT_STUCK
            self._begin_drain()
            return _error(
                400,
                "FUNCTION_LOAD_FAILED",
                f"code did not finish loading within {timeout_ms} ms",
                function=spec.name,
                loadTimeoutMs=timeout_ms,
            )
        except LoadError as err:
            self._load_error = f"the load failed: {err}"
            log.warn("specialize_failed", function=spec.name, error=str(err))
            return _error(400, "FUNCTION_LOAD_FAILED", str(err), function=spec.name)
        finally:
            if self._loading is not None and self._loading[1] is loading and loading.done():
                self._loading = None
        if self.function is None:
            self._become(fn)
        return _json(200, {"function": fn.spec.name, "loadMs": fn.load_ms})

    def _load_failed(self, loading: asyncio.Future[LoadedFunction], err: BaseException) -> None:
        """Fails the load, its reason set first: held invocations may run before /specialize's answer does."""
        if loading.done():
            return
        if isinstance(err, _LoadTimedOut):
            self._load_error = f"the load failed: code did not finish loading within {self.config.load_timeout_ms} ms"
        elif isinstance(err, LoadError):
            self._load_error = f"the load failed: {err}"
        loading.set_exception(err)

    def _start_loading(self, fingerprint: str | None, loading: asyncio.Future[LoadedFunction], name: str) -> None:
        self._loading = (fingerprint, loading)
        self._loading_name = name
        self._load_error = None
        started, self._load_started = self._load_started, None
        if started is not None and not started.done():
            started.set_result(None)

    async def _await_load(
        self, awaited: tuple[str, float] | None, hold: Callable[[], None] | None = None
    ) -> LoadedFunction | str:
        """An invocation that found no function: waits for the load in progress or, given
        ``(function, ms)`` (AWAIT_LOAD_HEADER), up to ms for that function's load to start and finish.
        ``hold`` is called once a load of that function is known to be in progress.

        Returns the function, or why there is none (the caller answers RUNNER_NOT_SPECIALIZED).
        """
        loop = asyncio.get_running_loop()
        deadline = None if awaited is None else loop.time() + awaited[1] / 1000
        try:
            if self._loading is None:
                if deadline is None:
                    return "runner has no function yet"
                if self._load_started is None:
                    self._load_started = loop.create_future()
                await asyncio.wait_for(asyncio.shield(self._load_started), max(0.0, deadline - loop.time()))
            if self._loading is None:
                return self._load_error or "runner has no function yet"
            if awaited is not None and self._loading_name != awaited[0]:
                return f"runner is loading {self._loading_name}, not {awaited[0]}"
            loading = self._loading[1]
            if hold is not None and not loading.done():
                hold()
            if deadline is None:
                fn = await asyncio.shield(loading)
            else:
                fn = await _until_done(loading, deadline)
        except asyncio.TimeoutError:
            return f"runner has no function: none was loaded within {awaited[1] if awaited else 0:g} ms"
        except Exception:  # noqa: BLE001 - the load's own answer (POST /specialize) says what went wrong
            return self._load_error or "the load failed"
        if self.function is None:
            self._become(fn)
        return self.function if self.function is not None else fn

    def _become(self, fn: LoadedFunction) -> None:
        if self.config.pool_claim_file:
            with open(self.config.pool_claim_file, "w") as f:
                f.write(fn.spec.name)
        self.function = fn
        fields = {"function": fn.spec.name, "handler": fn.spec.handler, "loadMs": fn.load_ms}
        try:
            # After the answer is written: the line goes down a pipe the supervisor reads,
            # which would wake it on the cold path before the answer does.
            asyncio.get_running_loop().call_soon(lambda: log.info("specialized", **fields))
        except RuntimeError:  # specialized from the code directory, before the loop runs
            log.info("specialized", **fields)

    async def _invoke(self, conn: Connection, head: RequestHead, raw_path: str, query: str) -> Outcome:
        fn = self.function
        if self.draining:
            return _error(503, "RUNNER_DRAINING", "runner is draining; retry on another replica")
        headers = head.headers
        awaited = None
        for name, value in headers:  # the await-load header is the runner's, not the handler's
            if len(name) == _AWAIT_LOAD_LEN and name.lower() == AWAIT_LOAD_HEADER:
                awaited = _parse_await_load(value)
                headers = [(k, v) for k, v in headers if k.lower() != AWAIT_LOAD_HEADER]
                break
        held: Job | None = None
        waited_for_load = fn is None
        if fn is None:
            if self.restarted_after_claim or (self.config.code_dir and self._loading is None):
                return _not_specialized("runner has no function yet")  # and none will come
            body = await self._read_body(conn, head) if head.has_body else b""
            req: Request | None = None

            def hold() -> None:  # the load is under way: the loader thread may run this call right after it
                nonlocal held, req
                req = Request(head.method, raw_path, query, Headers(headers, lowercase=False), body, self._loading_name or "")
                held = self._invoker.hold(req)
                if not self._held.add(held):
                    held = None

            waited = await self._await_load(awaited, hold)
            if isinstance(waited, str):
                return _not_specialized(waited)
            fn = waited
            if self.draining and (held is None or held.fn is None):
                return _error(503, "RUNNER_DRAINING", "runner is draining; retry on another replica")
            if req is None:
                req = Request(head.method, raw_path, query, Headers(headers, lowercase=False), body, fn.spec.name)
        else:
            if awaited is not None and awaited[0] != fn.spec.name:
                return _not_specialized(f"runner is specialized as {fn.spec.name}, not {awaited[0]}")
            body = await self._read_body(conn, head) if head.has_body else b""
            req = Request(head.method, raw_path, query, Headers(headers, lowercase=False), body, fn.spec.name)
        outcome = await self._invoker.invoke(fn, req, held)
        if waited_for_load:
            outcome.headers = [*outcome.headers, (LOAD_MS_HEADER, f"{fn.load_ms:.3f}")]
        if outcome.stuck:
            log.error("runner_stuck", function=fn.spec.name, action="draining, then exit 3")
            self.exit_code = EXIT_STUCK
            self._begin_drain()
        return outcome


def _nothing() -> None:
    pass


async def _until_done(future: asyncio.Future[Any], deadline: float) -> Any:
    """``future``'s result, or TimeoutError at ``deadline`` (loop time); never cancels ``future``.

    One loop turn from the future's end to the caller (wait_for over shield takes several).
    """
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()

    def open_gate(_: object = None) -> None:
        if not gate.done():
            gate.set_result(None)

    future.add_done_callback(open_gate)
    timer = loop.call_at(deadline, open_gate)
    try:
        await gate
    finally:
        timer.cancel()
        future.remove_done_callback(open_gate)
    if not future.done():
        raise asyncio.TimeoutError
    return future.result()


def _settle(future: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(value)
    else:
        future.set_exception(err)


class _HeldCalls:
    """Invocations held for the load in progress, handed to the loader thread once it has imported.

    The loop adds, the loader thread closes: a lock makes "added before the
    close" (the loader takes it) and "refused after" (the loop runs it) exact.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._jobs: list[Job] = []

    def open(self) -> None:
        with self._lock:
            self._open = True
            self._jobs = []

    def add(self, job: Job) -> bool:
        with self._lock:
            if not self._open:
                return False
            self._jobs.append(job)
            return True

    def close(self) -> list[Job]:
        with self._lock:
            self._open = False
            jobs, self._jobs = self._jobs, []
            return jobs


class _LoadTimedOut(Exception):
    """The module's import did not finish within the load timeout (it may still be running)."""


def write_termination_log(text: str) -> None:
    """Kubernetes shows this file's text in the pod's status; absent outside a pod."""
    try:
        if os.path.exists(TERMINATION_LOG):
            with open(TERMINATION_LOG, "w", encoding="utf-8") as f:
                f.write(text + "\n")
    except OSError:
        pass


def _warm_loader(scratch_dir: str) -> None:
    """Imports and forgets a throwaway module through the loader, as a specialization would."""
    spec = parse_load_spec({"name": "faas-warm", "handler": "faas_warm_up.handle", "code": "def handle(req):\n    return 'warm'\n"})
    fn = load_function(spec, scratch_dir=scratch_dir)
    sys.modules.pop("faas_warm_up", None)
    if fn.temp_dir is not None:
        shutil.rmtree(fn.temp_dir, ignore_errors=True)


async def _read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)


def watch_parent(parent_pid: int) -> None:
    """Local mode: a runner whose supervisor died (even by SIGKILL) must not linger.

    Two mechanisms, neither needing the event loop: the kernel's parent-death
    signal (SIGKILL, Linux), which works even while user code holds the GIL in
    C (tested: ``sum(range(10**15))`` at module level); and a daemon thread
    polling the parent pid, which gets the GIL at every switch interval of
    pure-Python code (``while True: pass``), for systems without prctl.
    """
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                try:  # stdout may be a pipe nobody reads any more
                    log.info("parent gone: exiting", parent=parent_pid)
                finally:
                    os._exit(0)

    threading.Thread(target=watch, name="faas-parent-watch", daemon=True).start()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the polling thread still works


def _parse_await_load(value: str) -> tuple[str, float] | None:
    """``"<function> <ms>"`` → (function, ms), ms at most a minute; None when malformed."""
    name, _, raw_ms = value.strip().partition(" ")
    try:
        ms = float(raw_ms)
    except ValueError:
        return None
    return (name, min(ms, 60_000.0)) if name and ms > 0 and ms == ms else None


def _not_specialized(message: str) -> Outcome:
    return Outcome(503, GENERIC_HEADERS, error_body("RUNNER_NOT_SPECIALIZED", message))


def _json(status: int, value: Any) -> Outcome:
    return Outcome(status, JSON_HEADERS, json.dumps(value, separators=(",", ":")).encode())


def _error(status: int, code: str, message: str, **extra: Any) -> Outcome:
    return Outcome(status, JSON_HEADERS, error_body(code, message, **extra))
