"""Board knowledge, as data: which rail is the total, and what the release files mean.

The total rule is chosen by the rail labels the chips report (they are what the kernel's device
tree names), so a board that is not listed here but follows the same conventions is still right.
Rules are tried in order; the first whose labels are all present wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jetpower.sensors._types import TotalRule


@dataclass(frozen=True, slots=True)
class BoardRule:
    boards: str
    needs: frozenset[str]  # labels that must all be present
    total: tuple[str, ...]  # one input rail, or the rails whose sum is the total
    why: str


BOARD_RULES: tuple[BoardRule, ...] = (
    BoardRule(
        "Jetson Orin Nano, Orin NX, Xavier NX, TX2",
        frozenset({"VDD_IN"}),
        ("VDD_IN",),
        "VDD_IN is the module's input rail; every other rail is fed from it",
    ),
    BoardRule(
        "Jetson Nano",
        frozenset({"POM_5V_IN"}),
        ("POM_5V_IN",),
        "POM_5V_IN is the module's input rail; POM_5V_GPU and POM_5V_CPU are parts of it",
    ),
    BoardRule(
        "Jetson AGX Orin",
        frozenset({"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}),
        ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),
        "AGX Orin has no input rail: the total is VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0; "
        "VDDQ_VDD2_1V8AO is fed from VIN_SYS_5V0 and is not added",
    ),
    BoardRule(
        "Jetson AGX Xavier",
        frozenset({"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}),
        ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),
        "AGX Xavier has no input rail: the total is the sum of its six rails",
    ),
)

#: L4T release -> JetPack release
L4T_TO_JETPACK: tuple[tuple[str, str], ...] = (
    ("R36.4", "6.1"), ("R36.3", "6.0"), ("R36.2", "6.0 DP"),
    ("R35.6", "5.1.4"), ("R35.5", "5.1.3"), ("R35.4", "5.1.2"), ("R35.3", "5.1.1"),
    ("R35.2", "5.1"), ("R35.1", "5.0.2"),
    ("R32.7", "4.6.x"), ("R32.6", "4.6"), ("R32.5", "4.5"), ("R32.4", "4.4"),
)


def total_rule(labels: tuple[str, ...]) -> TotalRule:
    present = set(labels)
    for rule in BOARD_RULES:
        if rule.needs <= present:
            return TotalRule(rule.total, f"{rule.why} (rule for {rule.boards})")
    if len(labels) == 1:
        return TotalRule(labels, "the only rail found")
    return TotalRule(
        labels,
        "no known input rail among these labels: the total is the sum of all rails, which "
        "double-counts if one feeds another; name sampler.total_rail in the plan to fix it",
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def board_info(root: Path) -> dict[str, str | None]:
    """Board model, L4T and JetPack release, where the files under ``root`` say."""
    model = _read(root / "proc/device-tree/model")
    release = _read(root / "etc/nv_tegra_release")
    l4t = jetpack = None
    if release:
        m = re.search(r"R(\d+) \(release\), REVISION: (\d+)\.(\d+)", release)
        if m:
            l4t = f"R{m[1]}.{m[2]}.{m[3]}"
            jetpack = next((jp for pre, jp in L4T_TO_JETPACK if l4t.startswith(pre + ".")), None)
    return {"board": model, "l4t": l4t, "jetpack": jetpack}
