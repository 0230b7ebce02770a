"""Runs sync handlers on worker threads and hands results back to the event loop.

Leaner than ``ThreadPoolExecutor`` + ``wrap_future`` on the hot path: one
C-level queue, plain asyncio futures, and completions batched into a single
loop wake-up. There is always a thread for every job in flight (up to
``max_threads``), so a handler that blocks never delays another one.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any


class HandlerExit(RuntimeError):
    """A handler raised SystemExit or KeyboardInterrupt; it must not stop the runner."""


class Job:
    __slots__ = ("args", "counted", "finished", "fn", "future", "state")

    def __init__(
        self, fn: Callable[..., Any] | None, args: tuple[Any, ...], future: asyncio.Future[Any], counted: bool = True
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        # Submitted to the handler threads (counted in flight), or run by another thread (``run_here``).
        self.counted = counted
        # Exactly one of the worker (start) and the loop (cancel) pops the token:
        # list.pop is atomic, so the loop can tell "never started" from "running".
        self.state: list[int] = [1]
        self.finished = False

    def claim(self) -> bool:
        try:
            self.state.pop()
            return True
        except IndexError:
            return False


class HandlerThreads:
    def __init__(self, max_threads: int) -> None:
        self._max = max_threads
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._results: collections.deque[tuple[Job, bool, Any]] = collections.deque()
        self._wake_pending = False
        self._threads = 0
        self._in_flight = 0  # touched on the loop thread only
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, threads: int = 1) -> None:
        self._loop = loop
        while self._threads < min(threads, self._max):
            self._spawn()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Job:
        assert self._loop is not None
        job = Job(fn, args, self._loop.create_future())
        self._in_flight += 1
        if self._in_flight > self._threads and self._threads < self._max:
            self._spawn()
        self._jobs.put(job)
        return job

    def abandon(self, job: Job) -> bool:
        """Gives up on a job at its deadline; True if a thread is stuck running it."""
        if job.claim():
            if job.counted:
                self._in_flight -= 1  # never started: no worker will report it
            return False
        return not job.finished

    def stop(self) -> None:
        for _ in range(self._threads):
            self._jobs.put(None)

    def _spawn(self) -> None:
        self._threads += 1
        t = threading.Thread(target=self._work, name=f"faas-handler-{self._threads}", daemon=True)
        t.start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            if not job.claim():
                continue  # timed out before it started
            if not self._run(job):
                return

    def run_here(self, job: Job) -> None:
        """Runs a job on the calling thread (not a handler thread); its result reaches the loop as any other.

        The loader thread runs invocations that waited for the import this way,
        right after it, instead of handing them to a handler thread and back.
        """
        if job.claim():
            self._run(job)

    def _run(self, job: Job) -> bool:
        """Runs a claimed job and hands its outcome to the loop; False once the loop is closed."""
        assert job.fn is not None
        try:
            outcome = (job, True, job.fn(*job.args))
        except Exception as err:
            outcome = (job, False, err)
        except BaseException as err:
            outcome = (job, False, HandlerExit(f"handler raised {type(err).__name__}: {err}"))
        job.finished = True
        self._results.append(outcome)
        # Append first, then check: a drain that already ran will be scheduled again.
        if not self._wake_pending:
            self._wake_pending = True
            loop = self._loop
            assert loop is not None
            try:
                loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:
                return False  # loop closed: the process is exiting
        return True

    def _deliver(self) -> None:
        self._wake_pending = False
        results = self._results
        while results:
            job, ok, value = results.popleft()
            if job.counted:
                self._in_flight -= 1
            fut = job.future
            if fut.done():
                continue  # the caller timed out or went away
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
