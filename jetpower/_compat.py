"""What Python 3.10 lacks and jetpower needs (the Jetson container's Python is 3.10)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

if sys.version_info >= (3, 11):
    TaskGroup = asyncio.TaskGroup
else:  # pragma: no cover - exercised on Python 3.10 only

    class TaskGroup:
        """The part of asyncio.TaskGroup jetpower uses: the first failure cancels the rest."""

        def __init__(self) -> None:
            self._tasks: set[asyncio.Task[Any]] = set()

        async def __aenter__(self) -> TaskGroup:
            return self

        def create_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
                        ) -> asyncio.Task[Any]:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            return task

        async def __aexit__(self, et: Any, exc: Any, tb: Any) -> None:
            if exc is not None:
                for t in self._tasks:
                    t.cancel()
            pending = set(self._tasks)
            error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if not t.cancelled() and t.exception() is not None and error is None:
                        error = t.exception()
                        for p in pending:
                            p.cancel()
            if error is not None and exc is None:
                raise error
