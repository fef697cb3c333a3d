"""Window energies from a samples file: trapezoid and counter, side by side."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from jetpower.acquire.energy import read_segment, window_energies
from jetpower.acquire.samples_csv import HEADER_LINE as SAMPLES_HEADER_LINE


def _write(path: Path, rows: list[str], header: str = "t_ns,GPU0_uW,GPU0_uJ,total_uW") -> int:
    text = f"{SAMPLES_HEADER_LINE}\n{header}\n"
    path.write_text(text + "".join(rows))
    return len(text.encode())


def _trace(step_ms: int = 100, wrap: int | None = None) -> list[str]:
    """1 kHz samples of a power wave; the counter steps every ``step_ms`` like NVML's."""
    rows = []
    energy_uj = 0.0
    shown = 0
    for k in range(10_000):  # 10 s
        t = 1_000_000_000 + k * 1_000_000
        p_uw = 100e6 + 40e6 * math.sin(k / 700)
        energy_uj += p_uw * 1e-3
        if k % step_ms == 0:
            shown = int(energy_uj) if wrap is None else int(energy_uj) % wrap
        rows.append(f"{t},{p_uw:.0f},{shown},{p_uw:.0f}\n")
    return rows


def test_counter_and_trapezoid_agree_on_a_stepping_counter(tmp_path: Path) -> None:
    """A counter stepping every 100 ms gives the trapezoid's energy within 0.5 % over 2 s."""
    offset = _write(tmp_path / "s.csv", _trace())
    series = read_segment(tmp_path / "s.csv", offset, ["GPU0"])
    w = window_energies(series, {"timing": (3_000_000_000, 5_000_000_000)}, {"GPU0": None})
    fig = w["timing"]
    assert fig["samples"] == 2001
    assert fig["counter_energy_uj"] == pytest.approx(fig["energy_uj"], rel=0.005)
    assert abs(fig["trapezoid_vs_counter"]) < 0.005


def test_counter_wrap_is_undone(tmp_path: Path) -> None:
    """A counter that wraps inside the window still gives the window's energy."""
    offset = _write(tmp_path / "s.csv", _trace(wrap=300_000_000))
    series = read_segment(tmp_path / "s.csv", offset, ["GPU0"])
    fig = window_energies(series, {"w": (2_000_000_000, 8_000_000_000)},
                          {"GPU0": 300_000_000})["w"]
    assert fig["energy_uj"] > 300_000_000, "the window spans at least one wrap"
    assert fig["counter_energy_uj"] == pytest.approx(fig["energy_uj"], rel=0.005)


def test_no_counter_column_gives_trapezoid_only(tmp_path: Path) -> None:
    """A sensor without a counter (INA3221) reports the trapezoid alone."""
    rows = [f"{1_000_000_000 + k * 1_000_000},5000,100,500000,500000\n" for k in range(1000)]
    offset = _write(tmp_path / "s.csv", rows, "t_ns,VDD_IN_mV,VDD_IN_mA,VDD_IN_uW,total_uW")
    series = read_segment(tmp_path / "s.csv", offset, [])
    fig = window_energies(series, {"w": (1_100_000_000, 1_200_000_000)}, {})["w"]
    assert fig["energy_uj"] == pytest.approx(500_000 * 0.1)
    assert "counter_energy_uj" not in fig


def test_segment_starts_at_offset_and_skips_a_cut_line(tmp_path: Path) -> None:
    """Only rows from the byte offset on are read; a half-written last line is ignored."""
    rows = _trace()[:100]
    path = tmp_path / "s.csv"
    start = _write(path, rows)
    offset = start + sum(len(r) for r in rows[:40])
    path.write_text(path.read_text() + "1099000000,12")
    series = read_segment(path, offset, ["GPU0"])
    assert len(series.t) == 60 and series.t[0] == 1_000_000_000 + 40 * 1_000_000
