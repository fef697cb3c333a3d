"""Thermal zones, for the cooldown that waits until the board is back near its idle temperature."""

from __future__ import annotations

from pathlib import Path


def read_zones(root: Path = Path("/"), only: tuple[str, ...] | None = None) -> dict[str, float]:
    """``{zone type: degrees C}`` of the readable thermal zones under ``root``."""
    out: dict[str, float] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        if only and kind not in only:
            continue
        out[kind] = milli / 1000
    return out


def above_baseline(current: dict[str, float], baseline: dict[str, float],
                   margin_c: float) -> dict[str, float]:
    """Zones still warmer than their baseline + margin: ``{zone: excess C}``."""
    return {
        z: round(t - baseline[z] - margin_c, 2)
        for z, t in current.items()
        if z in baseline and t > baseline[z] + margin_c
    }
