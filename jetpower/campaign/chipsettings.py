"""The campaign's INA3221 settings: applied before the sensor is described, restored on every exit.

:func:`chip_settings` is entered around the whole measured part of a run (sensor discovery,
probe, sampler, idle, models).  On entry it first restores what a run killed with SIGKILL left
behind (``sensors/chipsettings.py`` keeps a pending record for that), then, when the plan has
``[sampler.ina3221]``, writes the settings; discovery inside the block then reads the files as
they are, so every channel's reading model describes the settings in force.  On exit (normal end,
failure, cancellation by SIGINT/SIGTERM) the originals are written back.  The manifest's
``ina3221_settings`` says what was asked, written, read back and restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jetpower._fs import first_free
from jetpower.campaign.manifest import Manifest
from jetpower.errors import SensorError
from jetpower.log import get_logger
from jetpower.plan import Plan
from jetpower.sensors import chipsettings as cs

log = get_logger()


def _leftover(root: Path, manifest: Manifest) -> None:
    try:
        done = cs.restore_leftover(root)
    except SensorError as e:
        log.warning("ina3221_settings_left", reason=str(e))
        manifest.data.setdefault("events", []).append(
            {"event": "ina3221_settings_left", "reason": str(e)})
        return
    if done is None:
        return
    result = done["result"]
    log.info("ina3221_settings_restored", leftover_of=result.get("leftover_of"),
             state=result["state"], ok=result["ok"])
    manifest.data.setdefault("events", []).append(
        {"event": "ina3221_settings_restored", "leftover_of": result.get("leftover_of"),
         "state": result["state"], "ok": result["ok"]})


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {"asked": record["asked"], "record": cs.RECORD_NAME,
            "chips": [{k: c.get(k) for k in ("path", "original", "writes", "expected",
                                              "read_back", "in_force", "confirmed")}
                      for c in record["chips"]]}


@contextlib.asynccontextmanager
async def chip_settings(plan: Plan, root: Path, result_dir: Path, manifest: Manifest
                        ) -> AsyncIterator[None]:
    """Apply the plan's ``[sampler.ina3221]`` for the block and restore the originals after it
    (an async context manager only to share one ``async with`` with the sensor source: the
    writes are a few sysfs files, done at once)."""
    _leftover(root, manifest)
    asked = plan.sampler.ina3221
    if asked is None:
        yield
        return
    request = asked  # the plan holds the sensors' own Request
    earlier = result_dir / cs.RECORD_NAME
    if earlier.exists():  # a resumed run: the earlier attempt's record stays beside
        earlier.rename(first_free(lambda k: earlier.with_name(f"{earlier.name}.attempt-{k}")))
    record = cs.apply(root, request, result_dir)
    entry = manifest.data["ina3221_settings"] = _summary(record)
    log.info("ina3221_settings_applied", asked=record["asked"],
             chips={c["path"]: c["in_force"] for c in record["chips"]})
    for c in record["chips"]:
        if not c["confirmed"]:
            log.warning("ina3221_settings_unconfirmed", chip=c["path"], expected=c["expected"],
                        in_force=c["in_force"],
                        note="the files describe other settings than the driver's rule "
                             "predicts; the reading model follows the files, probe's change "
                             "period is the check")
    try:
        yield
    finally:
        result = cs.restore(record, root)
        cs.finish(record, root, result)
        entry["restored"] = result
        if result["ok"]:
            log.info("ina3221_settings_restored", state=result["state"])
        else:
            log.error("ina3221_settings_restore_incomplete", result=result,
                      advice="sudo jetpower doctor retries the restore")
        manifest.write()
