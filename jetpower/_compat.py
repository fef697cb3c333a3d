"""What Python 3.10 lacks and jetpower needs (the Jetson container's Python is 3.10)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any


class FallbackTaskGroup:
    """The part of ``asyncio.TaskGroup`` jetpower relies on, for Python 3.10.

    As with the real one: a task that fails cancels the other tasks *and the body* of the
    ``async with`` block, and the block then raises that task's error (the first one; the real
    TaskGroup wraps them all in an ExceptionGroup).  An error in the body cancels the tasks.  The
    block never ends before every task has.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._errors: list[BaseException] = []
        self._parent: asyncio.Task[Any] | None = None
        self._aborting = False

    async def __aenter__(self) -> FallbackTaskGroup:
        self._parent = asyncio.current_task()
        return self

    def create_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
                    ) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._on_done)
        return task

    def _cancel_tasks(self) -> None:
        for t in self._tasks:
            if not t.done():
                t.cancel()

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._errors.append(task.exception())  # type: ignore[arg-type]
        if not self._aborting:
            self._aborting = True
            self._cancel_tasks()
            if self._parent is not None and not self._parent.done():
                self._parent.cancel()

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        cancelled_from_outside = et is asyncio.CancelledError and not self._aborting
        if (exc is not None and et is not asyncio.CancelledError) or cancelled_from_outside:
            self._cancel_tasks()
        while pending := [t for t in self._tasks if not t.done()]:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                if not self._aborting:  # cancelled from outside while waiting
                    cancelled_from_outside = True
                    self._cancel_tasks()
        if self._errors:
            raise self._errors[0]
        if cancelled_from_outside and exc is None:
            raise asyncio.CancelledError
        return False


#: asyncio.TaskGroup from Python 3.11 on
TaskGroup: Any = getattr(asyncio, "TaskGroup", FallbackTaskGroup)
