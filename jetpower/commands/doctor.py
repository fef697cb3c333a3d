"""``jetpower doctor [--json]``: what this machine will do to a measurement, with advice.

Each finding is a check with a status (``ok``, ``warn``, ``fail``, ``info``), what was found and,
where something can be done, advice: board and JetPack, the nvpmodel mode, whether the clocks are
locked (``jetson_clocks``), CPU governors and frequency locks, whether SCHED_FIFO is permitted,
each power sensor (``update_interval``, ``samples``, enabled channels and what that allows for
per-layer work), INA3221 settings a killed run left changed (restored, as root), thermal
zones, GPU and NVML, torch / torch-tensorrt / tensorrt versions against the supported range,
a smoke test that compiles and profiles a tiny model with the backend a plan would use (a real
worker process), and free space on the result disk and in ``/dev/shm``.
``--root`` reads a fake sysfs tree instead of ``/`` (tests; the smoke test still runs here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jetpower.campaign import environment
from jetpower.errors import JetpowerError, UsageError
from jetpower.worker.check import SUPPORTED, package_verdict

LOG_STREAM = "stderr"
SMOKE_TIMEOUT_S = 300.0
CAP_SYS_NICE = 23


@dataclass(frozen=True)
class Finding:
    section: str
    name: str
    status: str  # ok | warn | fail | info
    found: str
    advice: str = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="filesystem root holding sys/ (a fake tree, for testing)")
    p.add_argument("--backend", choices=("auto", "torch", "tensorrt", "none"), default="auto",
                   help="backend of the smoke test (auto: tensorrt where installed, else torch; "
                   "none: skip it)")
    p.add_argument("--result-dir", type=Path, default=Path(), metavar="DIR",
                   help="where results would go, for the free-space check (default: here)")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


# -- the board ------------------------------------------------------------------------------------


def board(root: Path) -> list[Finding]:
    model = _read(root / "proc/device-tree/model")
    release = _read(root / "etc/nv_tegra_release")
    out = []
    if model:
        out.append(Finding("board", "model", "info", model))
    else:
        out.append(Finding("board", "model", "info", "not a Jetson (no /proc/device-tree/model)"))
    if release:
        out.append(Finding("board", "L4T", "info", release.splitlines()[0][:120]))
    nv = environment.nvpmodel(root)
    if nv:
        out.append(Finding("board", "nvpmodel", "info",
                           f"mode {nv.get('mode_name', nv.get('raw'))} (id {nv.get('mode_id')})",
                           "record it: energy figures differ between power modes"))
    elif model and "jetson" in model.lower():
        out.append(Finding("board", "nvpmodel", "warn", "nvpmodel -q not available here",
                           "fix the power mode first: sudo nvpmodel -m 0"))
    return out


def _cpufreq(root: Path) -> list[dict[str, Any]]:
    cpus = []
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        cpus.append({"cpu": d.parent.name, "governor": _read(d / "scaling_governor"),
                     "min": _read(d / "scaling_min_freq"), "max": _read(d / "scaling_max_freq"),
                     "cur": _read(d / "scaling_cur_freq")})
    return cpus


def clocks(root: Path, jetson: bool) -> list[Finding]:
    cpus = _cpufreq(root)
    if not cpus:
        return [Finding("clocks", "cpu governors", "info",
                        "no cpufreq (a VM or container: the host decides the clocks)")]
    govs = sorted({str(c["governor"]) for c in cpus})
    locked = all(c["min"] and c["min"] == c["max"] for c in cpus)
    out = [Finding("clocks", "cpu governors", "ok" if govs == ["performance"] or locked else "warn",
                   f"{', '.join(govs)} on {len(cpus)} CPUs; "
                   f"frequency {'locked (min = max)' if locked else 'free to scale'}",
                   "" if locked else ("sudo jetson_clocks locks CPU, GPU and EMC clocks" if jetson
                                      else "use the performance governor for steady timings"))]
    gpu_locked = None
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        lo, hi = _read(d / "min_freq"), _read(d / "max_freq")
        if "gpu" in d.name.lower() or "gv11b" in d.name or "ga10b" in d.name:
            gpu_locked = bool(lo) and lo == hi
    if jetson:
        on = locked and gpu_locked is not False
        out.append(Finding("clocks", "jetson_clocks", "ok" if on else "warn",
                           "on (CPU and GPU clocks locked)" if on else "off (clocks scale)",
                           "" if on else "sudo jetson_clocks before measuring"))
    return out


def sched_fifo() -> Finding:
    try:
        status = Path("/proc/self/status").read_text()
        cap_eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1],
                      16)
    except (OSError, StopIteration, ValueError):
        cap_eff = 0
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    if cap_eff >> CAP_SYS_NICE & 1 or os.geteuid() == 0:
        return Finding("sampler", "SCHED_FIFO", "ok", "permitted (CAP_SYS_NICE)")
    if rtprio == resource.RLIM_INFINITY or rtprio > 0:
        return Finding("sampler", "SCHED_FIFO", "ok", f"permitted (RLIMIT_RTPRIO {rtprio})")
    return Finding("sampler", "SCHED_FIFO", "warn", "not permitted: the sampler runs at normal "
                   "priority and may miss deadlines under load",
                   "docker: --ulimit rtprio=99 (or --cap-add SYS_NICE as root); else "
                   "/etc/security/limits.conf rtprio")


def _enabled(path: Path) -> list[str]:
    out = []
    for n in (1, 2, 3):
        label = _read(path / f"in{n}_label")
        if label is None:
            continue
        enable = _read(path / f"in{n}_enable")
        if enable in (None, "1") and label not in ("NC", "sum of shunt voltages"):
            out.append(label)
    return out


def sensors(root: Path) -> list[Finding]:
    from jetpower.sensors import discover

    try:
        found = discover(root, "auto")
    except JetpowerError as e:
        return [Finding("sensors", "power sensor", "warn", str(e).split(";")[0],
                        "only the simulated source will run here (source = \"simulated\")")]
    out = [Finding("sensors", "power sensor", "ok",
                   f"{found.source}: rails {', '.join(found.labels)}; total "
                   f"{' + '.join(found.total.rails)}")]
    for dev in found.devices:
        ui, samples = dev.get("update_interval"), dev.get("samples")
        path = Path(str(dev.get("path")))
        chans = _enabled(path)
        if ui is None:
            continue
        per = f"each reading is the mean of one ~{float(ui) / (2 * max(len(chans), 1)):.1f} ms " \
              f"conversion, refreshed every {ui} ms"
        advice = ("per-layer energy needs the least-squares estimator over many profiled runs "
                  "(layers are shorter than a conversion); fewer enabled channels or shorter "
                  "conversions (update_interval, root) shorten the cycle")
        out.append(Finding("sensors", str(dev.get("device")), "info",
                           f"update_interval {ui} ms, samples {samples}, enabled channels "
                           f"{', '.join(chans) or '-'}: {per}", advice))
    from jetpower.acquire.allowance import allowance

    for r in allowance(found)["rails"]:  # what the setting in force allows (probe's estimate)
        if "shortest_layer_us_at_runs" in r:
            out.append(Finding(
                "sensors", f"per-layer energy ({r['rail']})", "info",
                f"estimate at 1 kHz reads and {r['runs']:,} profiled runs: layers shorter than "
                f"{r['shortest_layer_us_at_runs']:g} us miss 5 % median error (a 50 us layer "
                f"needs ~{r['runs_for_target']['50']:,} runs)",
                "[sampler.ina3221] (root) can enable only the total rail's channel and shorten "
                "the conversions; jetpower probe --rate-hz shows what a setting allows"))
    return out


def chip_settings(root: Path) -> list[Finding]:
    """INA3221 settings a killed run left changed: restored here (as root), else the advice."""
    from jetpower.sensors import chipsettings as cs

    name = "INA3221 settings"
    try:
        left = cs.pending(root)
        if left is None:
            return []
        where = left.get("result_dir")
        if cs.owner_alive(left):
            return [Finding("sensors", name, "info", f"set by the running jetpower run (pid "
                            f"{left['owner']['pid']}, result directory {where}); it restores "
                            "them when it ends")]
        done = cs.restore_leftover(root)
    except JetpowerError as e:
        return [Finding("sensors", name, "warn", str(e), "run sudo jetpower doctor to restore "
                        "them")]
    if done is None:
        return []
    result = done["result"]
    if not result["ok"]:
        diffs = "; ".join(d for c in result.get("chips", []) for d in c.get("differences", []))
        return [Finding("sensors", name, "fail", f"left changed by a killed run (result "
                        f"directory {where}); the restore is incomplete: {diffs}",
                        f"check the chip's files; the originals are in {where}/"
                        f"{cs.RECORD_NAME}")]
    return [Finding("sensors", name, "warn", f"left changed by a killed run (result directory "
                    f"{where}): {result['state']}", "nothing to do now: the originals are back")]


def thermal(root: Path) -> list[Finding]:
    zones = []
    for z in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        t = _read(z / "temp")
        if t and t.lstrip("-").isdigit():
            zones.append(f"{_read(z / 'type') or z.name} {int(t) / 1000:.1f} C")
    if not zones:
        return [Finding("thermal", "zones", "info", "none readable: cooldown mode \"thermal\" "
                        "falls back to a fixed time")]
    return [Finding("thermal", "zones", "ok", "; ".join(zones))]


def gpu(root: Path) -> list[Finding]:
    from jetpower.sensors import discover

    try:
        found = discover(root, "nvml")
        nvml = Finding("gpu", "NVML power", "ok", f"readable: {', '.join(found.labels)}")
    except JetpowerError as e:
        nvml = Finding("gpu", "NVML power", "info", f"not usable: {str(e)[:200]}")
    out = [nvml]
    answer = _child_json("import json, torch; print(json.dumps({'cuda': torch.cuda.is_available(),"
                         " 'names': [torch.cuda.get_device_name(i) for i in "
                         "range(torch.cuda.device_count())] if torch.cuda.is_available() else "
                         "[]}))")
    if answer is None:
        out.append(Finding("gpu", "CUDA", "info", "torch is not importable: no CUDA check"))
    elif answer.get("cuda"):
        out.append(Finding("gpu", "CUDA", "ok", ", ".join(answer.get("names") or [])))
    else:
        out.append(Finding("gpu", "CUDA", "info", "torch sees no CUDA device (CPU only)"))
    return out


def _child_json(code: str, timeout: float = 60.0) -> dict[str, Any] | None:
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, check=False)
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return data if isinstance(data, dict) else None


def packages() -> list[Finding]:
    out = []
    for name in SUPPORTED:
        v = package_verdict(name)
        status = {"ok": "ok", "missing": "info", "too old": "fail"}[v["verdict"]]
        need = {"torch": "the torch and tensorrt backends", "numpy": "the report",
                "torchvision": "torchvision models", "torch-tensorrt": "the tensorrt backend",
                "tensorrt": "the tensorrt backend"}[name]
        found = f"{v['version']} (supported {v['supported']})" if v["version"] else \
            f"not installed (needed by {need})"
        out.append(Finding("software", name, status, found,
                           f"pip install '{name}{v['supported']}'" if status != "ok" else ""))
    return out


def smoke(backend: str) -> Finding:
    """Compile, time and profile tinycnn in a real worker process with ``backend``."""
    from jetpower.worker.config import WorkerConfig

    if backend == "auto":
        backend = "tensorrt" if package_verdict("torch-tensorrt")["version"] else "torch"
    if package_verdict("torch")["version"] is None:
        return Finding("smoke test", backend, "info", "skipped: torch is not installed")
    with tempfile.TemporaryDirectory(prefix="jetpower-doctor-") as tmp:
        cfg = WorkerConfig(model="tinycnn", result_dir=tmp, backend=backend, device="auto",
                           dtype="float32", warmup=5, runs=20, profile_runs=5)
        path = Path(tmp) / "config.json"
        cfg.write(path)
        try:
            done = subprocess.run([sys.executable, "-m", "jetpower.worker", "--config", str(path)],
                                  capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return Finding("smoke test", backend, "fail", f"no result in {SMOKE_TIMEOUT_S:g} s")
        layers = cfg.model_dir / "trt_profiling" / "trt_layer_latency.json"
        if done.returncode != 0 or not layers.is_file():
            tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
            return Finding("smoke test", backend, "fail",
                           f"worker exit status {done.returncode}: {tail[:300]}",
                           "fix this before a campaign: every model would fail the same way")
        try:
            meta = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())
            n = len(json.loads(layers.read_text()))
        except (OSError, ValueError):
            meta, n = {}, 0
        return Finding("smoke test", backend, "ok",
                       f"tinycnn compiled, timed and profiled on {meta.get('device', '?')} "
                       f"({meta.get('device_name', '?')}): {n} layers profiled")


def space(result_dir: Path) -> list[Finding]:
    out = []
    probe = result_dir.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    shm = Path("/dev/shm")  # noqa: S108  (only its free space is read)
    for label, where in (("result disk", probe), (str(shm), shm)):
        try:
            st = os.statvfs(where)
        except OSError as e:
            out.append(Finding("space", label, "warn", f"{where}: {e.strerror}"))
            continue
        free = st.f_bavail * st.f_frsize
        low = free < (1 << 30) if label == "result disk" else free < (64 << 20)
        out.append(Finding("space", label, "warn" if low else "ok",
                           f"{free / 1e9:.1f} GB free on {where}",
                           "a 20-model campaign writes a few GB" if low and label ==
                           "result disk" else ("the ring then goes to a disk file" if low else "")))
    return out


def diagnose(root: Path, backend: str, result_dir: Path) -> list[Finding]:
    found = board(root)
    jetson = any(f.name == "model" and "jetson" in f.found.lower() for f in found)
    found += clocks(root, jetson)
    found.append(sched_fifo())
    found += chip_settings(root)  # before sensors(): those then describe the restored chip
    found += sensors(root)
    found += thermal(root)
    found += gpu(root)
    found += packages()
    if backend != "none":
        found.append(smoke(backend))
    found += space(result_dir)
    return found


_MARK = {"ok": "[green]ok  [/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]",
         "info": "[blue]info[/blue]"}


def run(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    findings = diagnose(args.root, args.backend, args.result_dir)
    if args.json:
        print(json.dumps({"format": "jetpower.doctor", "version": 1,
                          "findings": [asdict(f) for f in findings]}, indent=1))
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    section = None
    for f in findings:
        if f.section != section:
            section = f.section
            console.print(f"[bold]{escape(section)}[/bold]")
        console.print(f"  {_MARK[f.status]} {escape(f.name)}: {escape(f.found)}")
        if f.advice:
            console.print(f"         -> {escape(f.advice)}")
    return 0
