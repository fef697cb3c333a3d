"""The terminal summary of a report: a rich table of the models, the idle power, the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pm(x: float | None, ci: float | None, scale: float, digits: int) -> str:
    if x is None:
        return "n/a"
    return f"{x * scale:.{digits}f}" + (f" ± {ci * scale:.{digits}f}" if ci is not None else "")


def print_summary(numbers: dict[str, Any], out: Path, console: Any = None) -> None:
    """Print the models table of ``numbers`` (:func:`~jetpower.report.numbers.report_numbers`)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    sim = numbers["simulated"]
    table = Table(title="jetpower report" + (" — SIMULATED DATA, not measurements" if sim else ""),
                  title_style="bold red" if sim else "bold")
    for col in ("model", "status", "runs", "net W", "energy/inference mJ", "latency ms",
                "throughput /s"):
        table.add_column(col, justify="left" if col in ("model", "status") else "right")
    for m in numbers["models"]:
        table.add_row(m["name"], m["status"], str(m["runs"] or "-"),
                      _pm(m["power_net_w"], m["power_net_ci_w"], 1, 3),
                      _pm(m["energy_per_inference_j"], m["energy_per_inference_ci_j"], 1e3, 4),
                      _pm(m["latency_mean_s"], m["latency_ci_s"], 1e3, 3),
                      _pm(m["throughput_per_s"], None, 1, 1))
    console.print(table)
    idle = numbers["idle"]
    console.print(f"idle {_pm(idle['power_w'], idle['ci_w'], 1, 4)} W ({idle['samples']} "
                  f"samples); 95 % intervals. Report: {out / 'report.html'}, {out / 'report.md'}")
