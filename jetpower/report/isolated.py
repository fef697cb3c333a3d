"""Reader of ``<model>/jetpower_layer_energy.json`` (format "jetpower.layer-energy", version 1).

The torch backend's isolation pass (``jetpower/worker/isolate.py``) writes it: per leaf layer,
the energy of one execution replayed alone, net of idle, with a 95 % interval over repetitions.
:func:`load_isolated` returns one :class:`IsolatedRow` per layer, in execution order, with the
method named, so the report can put it beside the in-context per-layer latency, and
:class:`IsolatedEnergy` keeps the sum-to-whole check and whether the counter was simulated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower.report._errors import ResultError

FORMAT = "jetpower.layer-energy"
VERSION = 1
FILE = "jetpower_layer_energy.json"


@dataclass(frozen=True)
class IsolatedRow:
    """One layer's isolated energy per execution."""

    layer: str
    energy_uj: float
    #: 95 % interval (Student t over the repetitions); None with fewer than two repetitions
    energy_ci_uj: tuple[float, float] | None
    method: str
    repetitions: int
    graph_used: bool
    exec_time_us: float


@dataclass(frozen=True)
class IsolatedEnergy:
    """The file's rows, the sum-to-whole check and its provenance."""

    path: Path
    rows: list[IsolatedRow]
    #: sum of the layers' energies / the whole model's energy per inference (None: not measured)
    ratio: float | None
    whole_uj: float | None
    sum_layers_uj: float
    simulated: bool
    counter: str
    duration_s: float
    truncated: bool
    reason: str | None


def _num(path: Path, where: str, v: Any) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ResultError(f"{path}: {where} is {v!r}, expected a number")
    return float(v)


def _ci(path: Path, where: str, v: Any) -> tuple[float, float] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2:
        raise ResultError(f"{path}: {where} is {v!r}, expected [low, high] or null")
    return (_num(path, where, v[0]), _num(path, where, v[1]))


def load_isolated(model_dir: str | Path) -> IsolatedEnergy | None:
    """The model's isolated per-layer energies, or None where the pass did not run."""
    path = Path(model_dir) / FILE
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultError(f"cannot read {path}: {e.strerror}") from e
    except ValueError as e:
        raise ResultError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        got = d.get("format") if isinstance(d, dict) else None
        raise ResultError(f"{path}: not a {FORMAT!r} file (format={got!r})")
    if d.get("version") != VERSION:
        raise ResultError(
            f"{path}: {FORMAT} version {d.get('version')!r} unknown (this jetpower reads "
            f"version {VERSION})"
        )
    method = d.get("method")
    if not isinstance(method, str):
        raise ResultError(f"{path}: 'method' is {method!r}, expected a string")
    layers = d.get("layers")
    if not isinstance(layers, list):
        raise ResultError(f"{path}: 'layers' is missing or not a list")
    rows = []
    for i, r in enumerate(layers):
        if not isinstance(r, dict) or not isinstance(r.get("layer"), str):
            raise ResultError(f"{path}: layers[{i}] has no layer name")
        rows.append(
            IsolatedRow(
                layer=r["layer"],
                energy_uj=_num(path, f"layers[{i}].energy_uj", r.get("energy_uj")),
                energy_ci_uj=_ci(path, f"layers[{i}].energy_ci_uj", r.get("energy_ci_uj")),
                method=method,
                repetitions=int(r.get("repetitions", 0)),
                graph_used=bool(r.get("graph_used", False)),
                exec_time_us=float(r.get("exec_time_us", float("nan"))),
            )
        )
    check = d.get("check") or {}
    passed = d.get("pass") or {}
    ratio = check.get("ratio")
    whole = check.get("whole_uj")
    return IsolatedEnergy(
        path=path,
        rows=rows,
        ratio=None if ratio is None else _num(path, "check.ratio", ratio),
        whole_uj=None if whole is None else _num(path, "check.whole_uj", whole),
        sum_layers_uj=float(sum(r.energy_uj for r in rows)),
        simulated=bool(d.get("simulated", False)),
        counter=str((d.get("counter") or {}).get("name", "?")),
        duration_s=float(passed.get("duration_s", float("nan"))),
        truncated=bool(passed.get("truncated", False)),
        reason=passed.get("reason"),
    )


def rows(model_dir: str | Path) -> list[dict[str, Any]]:
    """Per-layer rows ``layer, energy_uj, energy_ci_uj, method`` (empty where the pass did not
    run), as plain dicts for a table; ``method`` is ``"isolated"`` or, on a simulated counter,
    ``"isolated (simulated)"``."""
    iso = load_isolated(model_dir)
    if iso is None:
        return []
    suffix = " (simulated)" if iso.simulated else ""
    return [
        {
            "layer": r.layer,
            "energy_uj": r.energy_uj,
            "energy_ci_uj": r.energy_ci_uj,
            "method": r.method + suffix,
        }
        for r in iso.rows
    ]
