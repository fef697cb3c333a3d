"""What the manifest records of the machine: versions, board, power mode and clocks.

Nothing here imports torch or TensorRT: versions come from package metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jetpower

PACKAGES = ("torch", "torch-tensorrt", "tensorrt", "torchvision", "numpy", "cffi", "structlog",
            "aiofiles", "dagshub")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"jetpower": jetpower.__version__,
                                  "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def nvpmodel(root: Path = Path("/")) -> dict[str, Any] | None:
    """The Jetson power mode (``nvpmodel -q``), where the tool exists."""
    tool = shutil.which("nvpmodel")
    if root != Path("/") or tool is None:
        return None
    try:
        out = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out.stdout)
    return {"mode_name": m[1], "mode_id": int(m[2])} if m else {"raw": out.stdout.strip()}


def clocks(root: Path = Path("/")) -> dict[str, Any]:
    """CPU and devfreq (GPU, EMC) clocks as the kernel reports them now, in Hz."""
    cpus = {}
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        cur = _read(d / "scaling_cur_freq")
        if cur and cur.isdigit():
            cpus[d.parent.name] = {"cur_hz": int(cur) * 1000,
                                   "governor": _read(d / "scaling_governor")}
    devfreq = {}
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        cur = _read(d / "cur_freq")
        if cur and cur.isdigit():
            devfreq[d.name] = {"cur_hz": int(cur), "governor": _read(d / "governor")}
    return {"cpu": cpus, "devfreq": devfreq}


def describe(root: Path = Path("/")) -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "nvpmodel": nvpmodel(root),
        "clocks": clocks(root),
    }
