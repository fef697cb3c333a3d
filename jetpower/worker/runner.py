"""One model's benchmark, backend-independent: load, compile, warm-up, timing, profiling, write.

The timing pass (no profiler: per-run latency, average latency, throughput) and the profiling pass
(per-layer latencies) are separate, as trtexec's ``--separateProfileRun``.  Their phase windows on
CLOCK_MONOTONIC go into ``jetpower_worker.json``.
"""

from __future__ import annotations

import platform
import resource
from array import array
from pathlib import Path
from typing import Any, Protocol

import jetpower
from jetpower.timebase import Anchor, monotonic_ns
from jetpower.worker import output
from jetpower.worker.config import WorkerConfig
from jetpower.worker.profile import LayerProfile
from jetpower.worker.progress import Progress


class Backend(Protocol):
    """What the runner needs from a backend (``torch_backend``, ``trt_backend``)."""

    name: str
    device: str
    input_shape: tuple[int, ...]

    def load(self) -> None: ...
    def compile(self) -> None: ...
    def infer(self) -> None: ...
    def prepare_profiling(self) -> list[str]: ...
    def profile_run(self, prof: LayerProfile, run: int) -> None: ...
    def end_profiling(self) -> None: ...
    def engine_info(self) -> dict[str, Any]: ...
    def describe(self) -> dict[str, Any]: ...


def make_backend(cfg: WorkerConfig) -> Backend:
    """Import the backend's libraries (here, never at jetpower import time) and build it."""
    if cfg.backend == "torch":
        from jetpower.worker.torch_backend import TorchBackend

        return TorchBackend(cfg)
    from jetpower.worker.trt_backend import TrtBackend

    return TrtBackend(cfg)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run(cfg: WorkerConfig, progress: Progress, backend: Backend | None = None) -> list[Path]:
    """Benchmark one model and write its files; returns the paths written."""
    anchor = Anchor.from_dict(cfg.anchor) if cfg.anchor else Anchor.now()
    be = backend if backend is not None else make_backend(cfg)
    progress.emit("worker_ready", backend=be.name, device=be.device)

    with progress.phase("load"):
        be.load()
    with progress.phase("compile"):
        be.compile()
    with progress.phase("warmup"):
        for i in range(cfg.warmup):
            be.infer()
            progress.progress(i + 1, cfg.warmup)

    lat = array("d", bytes(8 * cfg.runs))
    with progress.phase("timing"):
        t_start = monotonic_ns()
        for i in range(cfg.runs):
            s = monotonic_ns()
            be.infer()
            lat[i] = (monotonic_ns() - s) / 1e9
            progress.progress(i + 1, cfg.runs)
        total_time = (monotonic_ns() - t_start) / 1e9

    with progress.phase("profiling"):
        names = be.prepare_profiling()
        prof = LayerProfile(names, cfg.profile_runs)
        try:
            for r in range(cfg.profile_runs):
                be.profile_run(prof, r)
                progress.progress(r + 1, cfg.profile_runs)
        finally:
            be.end_profiling()

    layer_energy = None
    if cfg.layer_energy == "isolated":
        with progress.phase("layer_energy"):
            layer_energy = be.isolation_pass(progress)  # type: ignore[attr-defined]

    with progress.phase("write"):
        return _write(
            cfg,
            be=be,
            anchor=anchor,
            latencies=lat.tolist(),
            total_time=total_time,
            prof=prof,
            progress=progress,
            layer_energy=layer_energy,
        )


def _write(
    cfg: WorkerConfig,
    *,
    be: Backend,
    anchor: Anchor,
    latencies: list[float],
    total_time: float,
    prof: LayerProfile,
    progress: Progress,
    layer_energy: dict[str, Any] | None = None,
) -> list[Path]:
    mdir = cfg.model_dir
    pdir = mdir / output.PROFILING_DIR
    shape = tuple(be.input_shape)
    files = [
        output.write_json(pdir / output.ENGINE_INFO, be.engine_info()),
        output.write_stream(pdir / output.LAYER_LATENCY, lambda fh: prof.write_json(fh, anchor)),
        output.write_json(
            mdir / output.summary_name(cfg),
            output.summary(cfg, shape, latencies, total_time, anchor),
        ),
    ]
    if layer_energy is not None:
        files.append(output.write_json(mdir / output.LAYER_ENERGY, layer_energy))
    desc = be.describe()
    gaps = prof.gap_stats()
    srt = sorted(latencies)
    avg = sum(latencies) / len(latencies)
    meta = {
        "format": output.RESULT_FORMAT,
        "version": output.VERSION,
        "backend": be.name,
        "device": be.device,
        "device_name": desc.pop("device_name", platform.processor() or platform.machine()),
        "versions": {
            "jetpower": jetpower.__version__,
            "python": platform.python_version(),
            **desc.pop("versions", {}),
        },
        "config": cfg.to_dict(),
        "input_shape": list(shape),
        "anchor": anchor.to_dict(),
        "phases": {k: dict(v) for k, v in progress.phases.items()},  # "write": start only
        "timing": {
            "runs": cfg.runs,
            "total_time_s": total_time,
            "avg_latency_s": avg,
            "median_latency_s": srt[len(srt) // 2],
            "min_latency_s": srt[0],
            "max_latency_s": srt[-1],
            "avg_throughput_per_s": shape[0] / avg if avg > 0 else None,
        },
        "profiling": {
            "runs": prof.done,
            "layers": len(prof.names),
            "missing_reports": prof.missing_reports(),
            "unknown_reports": prof.unknown_reports,
            **desc.pop("profiling", {}),
        },
        "alignment": _alignment(desc, gaps, anchor.error_ns),
        "memory": {
            "peak_rss_bytes": peak_rss_bytes(),
            "profile_arrays_bytes": prof.nbytes,
            **(
                {"cuda_peak_bytes": desc.pop("cuda_peak_bytes")}
                if "cuda_peak_bytes" in desc
                else {}
            ),
        },
        "files": [str(p.relative_to(mdir)) for p in files] + [output.WORKER_META],
        **desc,
    }
    files.append(output.write_json(mdir / output.WORKER_META, meta))
    return files


def _alignment(desc: dict[str, Any], gaps: dict[str, float], anchor_ns: int) -> dict[str, Any]:
    """The alignment block: a backend's measured windows state their own error (``alignment``);
    reconstructed ones (``alignment_method``) are off by at most the time between layers."""
    measured = desc.pop("alignment", None)
    if measured is not None and "alignment_method" not in desc:
        out = dict(measured)
        out["expected_error_ns"] = out["expected_error_ns"] + anchor_ns
        out["max_error_ns"] = out["max_error_ns"] + anchor_ns
        return out | {"uncovered_per_run_ns": gaps, "anchor_error_ns": anchor_ns}
    return {
        "method": desc.pop("alignment_method"),
        "expected_error_ns": gaps["mean_ns"] + anchor_ns,
        "max_error_ns": gaps["max_ns"] + anchor_ns,
        "uncovered_per_run_ns": gaps,
        "anchor_error_ns": anchor_ns,
        **(measured or {}),  # what a reconstructing backend adds (the stand-in's own error)
    }
