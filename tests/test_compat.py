"""The Python 3.10 stand-in for asyncio.TaskGroup behaves as the supervisor needs."""

from __future__ import annotations

import asyncio

import pytest

from jetpower._compat import FallbackTaskGroup


class Boom(Exception):
    pass


async def _forever(ended: list[str]) -> None:
    """A task that runs until cancelled, and says when it ended."""
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("task")


def test_failing_task_cancels_the_body_and_raises() -> None:
    """A task that fails (the sampler dying) interrupts the block's body and its error surfaces."""
    reached: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise Boom("sampler died")

    async def main() -> None:
        async with FallbackTaskGroup() as tg:
            tg.create_task(fails())
            tg.create_task(_forever([]))
            try:
                await asyncio.sleep(3600)  # the campaign's sequence
            finally:
                reached.append("body cancelled")
        reached.append("not reached")

    with pytest.raises(Boom, match="sampler died"):
        asyncio.run(asyncio.wait_for(main(), 5))
    assert reached == ["body cancelled"]


def test_body_error_cancels_tasks() -> None:
    """An error in the body cancels the tasks and is raised once they have ended."""
    ended: list[str] = []

    async def main() -> None:
        async with FallbackTaskGroup() as tg:
            tg.create_task(_forever(ended))
            await asyncio.sleep(0.01)
            raise Boom("in the body")

    with pytest.raises(Boom, match="in the body"):
        asyncio.run(asyncio.wait_for(main(), 5))
    assert ended == ["task"]


def test_outside_cancellation_cancels_tasks_and_propagates() -> None:
    """Cancelling the task that holds the group (SIGINT) ends the tasks and stays a cancel."""
    ended: list[str] = []

    async def holder() -> None:
        async with FallbackTaskGroup() as tg:
            tg.create_task(_forever(ended))
            await asyncio.sleep(3600)

    async def main() -> bool:
        t = asyncio.ensure_future(holder())
        await asyncio.sleep(0.01)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(asyncio.wait_for(main(), 5))
    assert ended == ["task"]


def test_clean_exit_waits_for_tasks() -> None:
    """A body that ends normally waits for its tasks, which end normally too."""

    async def main() -> list[int]:
        out: list[int] = []

        async def work(k: int) -> None:
            await asyncio.sleep(0.01 * k)
            out.append(k)

        async with FallbackTaskGroup() as tg:
            for k in (3, 1, 2):
                tg.create_task(work(k))
        return out

    assert asyncio.run(main()) == [1, 2, 3]
