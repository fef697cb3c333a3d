"""A result directory (jetpower layout) from a tests/ina3221_truth.py dataset (test code).

One model, ``model``, profiled with the dataset's layer windows; the samples file holds the
total rail's reads.  ``old=True`` writes it as a directory from before reading models and
per-read stamps: samples CSV v1 (the pass mid-point only), an INA3221 rail that claims
``instant``, and the chip's ``update_interval`` and ``samples`` in the manifest's devices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jetpower.timebase import Anchor
from tests.ina3221_truth import Dataset
from tests.synthetic import stamp_bytes

RAIL = "VDD_IN"


def write_ina3221_result(root: Path, ds: Dataset, *, old: bool = False,
                         model: str = "net") -> Path:
    """Write ``ds`` as a result directory under ``root``; returns ``root``."""
    root.mkdir(parents=True)
    t0 = int(ds.pass_mid_ns[0])
    anchor = Anchor(realtime_ns=1_709_294_400_000_000_000, monotonic_ns=t0, error_ns=0)
    mv = ds.voltage_mv.astype(np.int64)
    ma = ds.current_ma.astype(np.int64)
    uw = mv * ma
    if old:
        cols = [ds.pass_mid_ns, mv, ma, uw, uw]
        head = f"# jetpower-samples v1\nt_ns,{RAIL}_mV,{RAIL}_mA,{RAIL}_uW,total_uW\n"
    else:
        cols = [ds.pass_mid_ns, mv, ma, uw, ds.read_start_ns, ds.read_end_ns, uw]
        head = (f"# jetpower-samples v2\nt_ns,{RAIL}_mV,{RAIL}_mA,{RAIL}_uW,"
                f"{RAIL}_read_start_ns,{RAIL}_read_end_ns,total_uW\n")  # fmt: skip
    body = "\n".join(",".join(map(str, row)) for row in zip(*(c.tolist() for c in cols)))
    (root / "jetpower_samples.csv").write_text(head + body + "\n")
    c = ds.chip
    if old:
        rail = {"label": RAIL, "derivation": "v_x_i",
                "readings": {"voltage": "instant", "current": "instant"}}
    else:
        per = 2 * c.conv_us * c.averaging
        rail = {"label": RAIL, "derivation": "v_x_i", "reading_models": {"current": {
            "kind": "window_mean", "window_us": c.conv_us * c.averaging, "held": True,
            "read": "latest_value", "schedule": {
                "period_us_nominal": per * c.channels, "slot": 0, "slots": 2 * c.channels,
                "end_offset_us_nominal": c.conv_us * c.averaging, "conversion_us": c.conv_us,
                "samples": c.averaging}}}}  # fmt: skip
    ui = round(2 * c.channels * c.conv_us * c.averaging / 1000)
    start, end = ds.layer_start_ns, ds.layer_end_ns
    manifest = {
        "format": "jetpower.manifest", "version": 1, "status": "complete", "simulated": False,
        "anchor": anchor.to_dict(), "plan": {}, "plan_text": "",
        "sensor": {"source": "ina3221", "board": "test", "rails": [rail],
                   "total": {"rail": RAIL},
                   "devices": [{"update_interval": ui, "samples": c.averaging}]},
        "phases": [], "idle": {"avg_power_uw": ds.truth.idle_w * 1e6, "samples": 0},
        "models": {model: {"status": "done", "reason": None, "exit_code": 0,
                           "start_ns": int(start[0, 0]) - 10**7,
                           "end_ns": int(end[-1, -1]) + 10**7, "samples": 0}},
        "sampler": {"rate_hz": ds.sampler.rate_hz},
    }  # fmt: skip
    (root / "jetpower_manifest.json").write_text(json.dumps(manifest))
    (root / "idling_power.json").write_text(json.dumps(
        {"timestamp": "20240301-120000", "avg_idle_power": ds.truth.idle_w * 1e6}))
    prof = root / model / "trt_profiling"
    prof.mkdir(parents=True)
    # the layer file's stamps have 1 us resolution: round the window ends, keep the latency
    end_us = (end + 500) // 1000 * 1000
    ms = (end_us - start) * 1e-6
    parts = []
    for j in range(start.shape[1]):
        txt = stamp_bytes(end_us[:, j], anchor).tobytes().decode()
        stamps = [txt[i:i + 24] for i in range(0, len(txt), 24)]
        items = ",".join(f'[{m:.6f},"{s}"]' for m, s in zip(ms[:, j].tolist(), stamps))
        parts.append(f'"L{j:03d}":[{items}]')
    (prof / "trt_layer_latency.json").write_text("{" + ",".join(parts) + "}")
    (prof / "trt_engine_info.json").write_text(json.dumps(
        {"Layers": [{"Name": f"L{j:03d}", "LayerType": "Conv"} for j in range(start.shape[1])],
         "Bindings": []}))
    return root
