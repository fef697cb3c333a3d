"""Shared fixtures: fake sysfs trees built as real files, read by the real compiled sampler."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jetpower.sensors.simulate import write_tree

FIXTURES = Path(__file__).parent / "fixtures"


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``torch`` skip where PyTorch is missing (CI's Python 3.10 pass: the CPU
    build of torch here is for 3.11 only); everything else runs on every Python."""
    if _has_torch():
        return
    skip = pytest.mark.skip(reason="PyTorch is not installed for this Python")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)
BOARDS = sorted(p.stem for p in (FIXTURES / "sysfs").glob("*.json"))


def load_board(name: str) -> dict:
    return json.loads((FIXTURES / "sysfs" / f"{name}.json").read_text())


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> Callable[[str], Path]:
    """Build the named board's sysfs tree under a temporary root; returns the root."""

    def build(name: str) -> Path:
        board = load_board(name)
        root = tmp_path / name
        write_tree(root, board["files"], board.get("symlinks", {}))
        return root

    return build


@pytest.fixture
def three_rail_tree(tmp_path: Path) -> Path:
    """A fake 3-rail INA3221 hwmon tree (the simulated board's layout, values static)."""
    from jetpower.sensors.simulate import create_tree

    return create_tree(tmp_path / "tree")


def _children(pid: int) -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.add(int(p.name))
    return out


@pytest.fixture
def no_leaked_children() -> Iterator[None]:
    """Fail if the test leaves a child process of this process running."""
    before = _children(os.getpid())
    yield
    leaked = _children(os.getpid()) - before
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leaked, f"child processes left running: {leaked}"
