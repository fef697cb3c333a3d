"""Preflight: everything a campaign needs, checked in seconds, before anything is written.

``validate`` and ``run`` call :func:`preflight`; every problem is collected and raised at once as
one :class:`~jetpower.errors.PlanError` (exit status 2), each naming the plan key or the file. The
checks, in the order reported:

- the plan itself (no machine needed): a model's own ``rate_hz`` fits the ring like the
  sampler's; the result directory is not under ``/proc``, ``/sys`` or ``/dev``;
- the machine (skipped by ``validate --offline``): the source is present with the named rails and
  total rail (NVML readable for ``nvml``); ``sampler.cpu`` is online and ours to use; every model
  resolves and the backend's packages import at supported versions, in the worker's interpreter
  (``python -m jetpower.worker.check``, a subprocess: torch is never imported here); the CUDA
  device exists; free space for the estimated output and for the ring (``/dev/shm`` or the
  temporary directory);
- ``[sampler.ina3221]`` (skipped offline): root, the hwmon ``ina3221`` driver's files present and
  writable, the named rails on a chip, the sampled and total rails left enabled, no live run
  holding the settings;
- for ``run``: a new run needs a missing or empty result directory (the message names
  ``--result-dir`` and ``--resume``); ``--resume`` needs a well-formed manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower._fs import in_use_message, lock_holder
from jetpower.acquire.process import SHM, ring_bytes, ring_dir_parent
from jetpower.campaign.manifest import FORMAT as MANIFEST_FORMAT
from jetpower.campaign.manifest import NAME as MANIFEST_NAME
from jetpower.campaign.manifest import VERSION as MANIFEST_VERSION
from jetpower.errors import JetpowerError, PlanError
from jetpower.plan import Plan

#: file systems that are not storage: a result directory there is refused
PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
WORKER_CHECK_TIMEOUT_S = 180.0
#: a guess of the profiled layers of a model that is not built in (torchvision's largest ~400)
LAYERS_GUESS = {"lenet": 12, "tinycnn": 5}
LAYERS_DEFAULT = 400
#: margin on the estimated output before the free space counts as enough
SPACE_MARGIN = 1.25


@dataclass(frozen=True)
class Estimate:
    """Bytes a campaign will write (a guess, from the plan's rates and guessed durations)."""

    samples_bytes: int
    model_bytes: int
    ring_bytes: int

    @property
    def output_bytes(self) -> int:
        return self.samples_bytes + self.model_bytes


def estimate_output(plan: Plan, channels: int) -> Estimate:
    """The bytes of the samples file, the per-model files and the ring (see ``docs`` above)."""
    row = 16 + 9 * (channels + channels // 2 + 1)  # stamp, mV/mA/uW per rail, total
    rate = max(plan.sampler.rate_hz, 1000.0)  # 0 = as fast as possible: guess 1 kHz
    samples = int(rate * plan.estimated_seconds() * row)
    per_model = 0
    for m in plan.models:
        seconds = plan.model_seconds(m)
        layers = LAYERS_GUESS.get(m.name, LAYERS_DEFAULT)
        per_model += int(max(m.rate_hz, 1000.0) * seconds * 34  # the power log
                         + m.profile_runs * layers * 55  # trt_layer_latency.json
                         + m.runs * 25 + 1_000_000)  # latencies, engine info, metadata
    return Estimate(samples, per_model, ring_bytes(plan.sampler.ring_capacity, channels))


def _under_pseudo(path: Path) -> Path | None:
    real = Path(os.path.realpath(path))
    for root in PSEUDO_ROOTS:
        if real == root or root in real.parents:
            return root
    return None


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def _free(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


# -- the checks -----------------------------------------------------------------------------------


def plan_problems(plan: Plan) -> list[str]:
    """The checks that need no machine."""
    out = []
    where = plan.result_dir
    if (root := _under_pseudo(where)) is not None:
        out.append(f"run.result_dir: {str(where)!r} is under {root}, which is not storage; "
                   "choose a directory on a disk")
    ring = plan.sampler.ring_capacity
    for i, m in enumerate(plan.models):
        if m.rate_hz > ring:
            out.append(f"models[{i}].rate_hz: {m.rate_hz:g} Hz does not fit the ring "
                       f"(sampler.ring_capacity = {ring} records hold less than one second); "
                       f"raise sampler.ring_capacity to at least {int(m.rate_hz) + 1}")
    return out


def _sensor(plan: Plan, root: Path) -> tuple[Any, list[str]]:
    """The selected sensor set (or None) and the problems of finding it."""
    from jetpower.sensors import discover

    s = plan.sampler
    try:
        if s.source == "simulated":
            from jetpower.sensors.simulate import create_tree

            with tempfile.TemporaryDirectory(prefix="jetpower-preflight-") as tmp:
                found = discover(create_tree(Path(tmp)), "simulated")
        else:
            found = discover(s.hwmon_path if s.source == "hwmon" and s.hwmon_path else root,
                             s.source)
    except JetpowerError as e:
        return None, [f"sampler.source = {s.source!r}: {e}"]
    except OSError as e:
        return None, [f"sampler.source = {s.source!r}: cannot read the sensor: {e}"]
    problems = []
    for key, names in (("sampler.rails", s.rails), ("sampler.total_rail", s.total_rail)):
        unknown = [n for n in names or () if n not in found.labels]
        if unknown:
            problems.append(f"{key}: {', '.join(map(repr, unknown))} not found; the "
                            f"{found.source} sensor has: {', '.join(found.labels)}")
    if problems:
        return None, problems
    return found.select(s.rails, s.total_rail), []


def _cpu_problems(plan: Plan) -> list[str]:
    cpu = plan.sampler.cpu
    if cpu == "last":
        return []
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        return [f"sampler.cpu: CPU {cpu} is not online or not allowed to this process; "
                f"expected one of {allowed} (or \"last\")"]
    return []


def worker_check(plan: Plan, python: str = sys.executable) -> tuple[dict[str, Any], list[str]]:
    """Run ``python -m jetpower.worker.check`` on the plan's models: (its answer, problems)."""
    request = {"models": [{"model": m.name, "label": m.label, "backend": m.backend,
                           "device": m.device} for m in plan.models]}
    try:
        done = subprocess.run([python, "-m", "jetpower.worker.check"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=WORKER_CHECK_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        return {}, [f"the worker's check ({python} -m jetpower.worker.check) did not answer in "
                    f"{WORKER_CHECK_TIMEOUT_S:g} s"]
    except OSError as e:
        return {}, [f"cannot start the worker's interpreter {python!r}: {e}"]
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {}, [f"the worker's check failed (exit status {done.returncode}): {tail}"]
    return answer, [str(p) for p in answer.get("problems", [])]


def _space_problems(plan: Plan, channels: int) -> list[str]:
    est = estimate_output(plan, channels)
    out = []
    base = _existing_ancestor(plan.result_dir)
    free = None if _under_pseudo(base) else _free(base)
    if free is not None and free < est.output_bytes * SPACE_MARGIN:
        out.append(f"run.result_dir: {_mb(free)} free on {base}; the run will write about "
                   f"{_mb(est.output_bytes)} (samples {_mb(est.samples_bytes)}, model files "
                   f"{_mb(est.model_bytes)}): free space or choose another disk")
    if ring_dir_parent(est.ring_bytes) is None:  # not in /dev/shm: the temporary directory
        tmp = tempfile.gettempdir()
        tfree = _free(Path(tmp))
        if tfree is not None and tfree < 2 * est.ring_bytes:
            out.append(f"sampler.ring_capacity: the ring needs {_mb(est.ring_bytes)}; neither "
                       f"{SHM} nor {tmp} has that free ({_mb(tfree)}): lower ring_capacity")
    return out


def settings_problems(plan: Plan, root: Path, sensor: Any) -> list[str]:
    """What stands in the way of the plan's ``[sampler.ina3221]`` on this machine."""
    from jetpower.sensors import chipsettings as cs

    asked = plan.sampler.ina3221
    if asked is None:
        return []
    key = "sampler.ina3221"
    if sensor is not None and sensor.source != "ina3221":
        return [f"{key}: the sensor found is {sensor.source!r}; only the hwmon ina3221 driver "
                "(JetPack 5/6) exposes update_interval, samples and inN_enable"]
    request = asked  # the plan holds the sensors' own Request
    try:
        planned = cs.plan_writes(root, request)
        left = cs.pending(root)
    except JetpowerError as e:
        return [f"{key}: {e}"]
    out = []
    why = cs.permission_problem(root, planned)
    if why:
        out.append(f"{key}: {why}")
    if left is not None and cs.owner_alive(left):
        out.append(f"{key}: another jetpower run (pid {left['owner']['pid']}, result directory "
                   f"{left.get('result_dir')}) holds the INA3221 settings: wait for it to end")
    if asked.enabled is not None and sensor is not None:
        s = plan.sampler
        keep = set(asked.enabled)
        on_chips = {lb for c in cs.chips(root) for lb in c.labels.values()}
        for what, names in (("sampler.rails", s.rails), ("the total rail", sensor.total.rails)):
            off = [n for n in names or () if n in on_chips and n not in keep]
            if off:
                out.append(f"{key}.enabled: {', '.join(map(repr, off))} ({what}) would stop "
                           f"converting; add {'it' if len(off) == 1 else 'them'} to enabled")
    return out


def machine_problems(plan: Plan, root: Path = Path("/"), python: str = sys.executable
                     ) -> list[str]:
    """The checks that look at this machine (skipped by ``validate --offline``)."""
    sensor, out = _sensor(plan, root)
    out += settings_problems(plan, root, sensor)
    out += _cpu_problems(plan)
    out += worker_check(plan, python)[1]
    channels = len(sensor.channels) if sensor is not None else 6
    out += _space_problems(plan, channels)
    return out


def run_problems(plan: Plan, *, resume: bool) -> list[str]:
    """What ``run`` needs of the result directory: empty for a new run, a manifest to resume."""
    where = plan.result_dir
    if where.is_dir() and (holder := lock_holder(where)) is not None:
        return [f"run.result_dir: {in_use_message(where, holder, 'result directory')}"]
    if not resume:
        if where.is_dir() and any(where.iterdir()):
            return [f"run.result_dir: {str(where)!r} is not empty; jetpower never overwrites "
                    "data: give a new directory with --result-dir DIR, or continue that run "
                    "with --resume"]
        if where.exists() and not where.is_dir():
            return [f"run.result_dir: {str(where)!r} exists and is not a directory"]
        return []
    if not where.is_dir():
        return [f"--resume: result directory {str(where)!r} does not exist"]
    return manifest_problems(where / MANIFEST_NAME)


def manifest_problems(path: Path) -> list[str]:
    """Why the manifest at ``path`` cannot be resumed from ([] when it can)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"--resume: {path} is missing: not a jetpower run that can be resumed"]
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        return [f"--resume: {path}: not readable JSON ({type(e).__name__}: {e})"]
    if not isinstance(data, dict):
        return [f"--resume: {path}: expected a JSON object, found {type(data).__name__}"]
    if data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
        return [f"--resume: {path}: format {data.get('format')!r} version "
                f"{data.get('version')!r}; expected {MANIFEST_FORMAT!r} {MANIFEST_VERSION}"]
    if data.get("status") == "complete":
        return [f"--resume: {path.parent} holds a complete run: nothing to resume"]
    shapes: dict[str, type] = {"status": str, "models": dict, "phases": list, "checksums": dict,
                               "events": list}
    out = [f"--resume: {path}: key {key!r} should be a {kind.__name__}, found "
           f"{type(data.get(key)).__name__}"
           for key, kind in shapes.items() if not isinstance(data.get(key), kind)]
    if isinstance(data.get("models"), dict):
        out += [f"--resume: {path}: models.{k} should be an object"
                for k, v in data["models"].items() if not isinstance(v, dict)]
    for key in ("sampler", "idle", "plan"):
        if key in data and not isinstance(data[key], dict):
            out.append(f"--resume: {path}: key {key!r} should be an object")
    sampler = data.get("sampler")
    if isinstance(sampler, dict) and not isinstance(sampler.get("samples_files", []), list):
        out.append(f"--resume: {path}: sampler.samples_files should be a list")
    if isinstance(data.get("checksums"), dict):
        out += [f"--resume: {path}: checksums.{k} should be a string"
                for k, v in data["checksums"].items() if not isinstance(v, str)]
    return out


def preflight(plan: Plan, *, root: Path = Path("/"), offline: bool = False,
              run: bool = False, resume: bool = False) -> None:
    """Raise one PlanError listing every problem found (see the module doc); else return."""
    problems = plan_problems(plan)
    if run:
        problems += run_problems(plan, resume=resume)
    if not offline:
        problems += machine_problems(plan, root)
    if problems:
        raise PlanError([f"{plan.source}: {p}" for p in problems])


def disk_free(path: Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing ancestor)."""
    return _free(_existing_ancestor(path))



