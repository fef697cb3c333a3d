"""Stand-in for ``torch_tensorrt.dynamo.Debugger`` (2.8+, dynamo/debug/_Debugger.py)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from torch_tensorrt import _generation

DEBUG_LOGGING_DIR = os.path.join(tempfile.gettempdir(), "torch_tensorrt", "debug_logs")
_LEVELS = ("debug", "info", "warning", "error", "internal_errors", "graphs")

#: the configuration of the Debugger whose ``with`` block is open (compile() reads it)
ACTIVE: list[DebuggerConfig] = []


@dataclass
class DebuggerConfig:
    log_level: str = "debug"
    save_engine_profile: bool = False
    engine_builder_monitor: bool = True
    logging_dir: str = DEBUG_LOGGING_DIR
    profile_format: str = "perfetto"
    save_layer_info: bool = False


class Debugger:
    def __init__(
        self,
        log_level: str = "debug",
        capture_fx_graph_before: list[str] | None = None,
        capture_fx_graph_after: list[str] | None = None,
        save_engine_profile: bool = False,
        profile_format: str = "perfetto",
        engine_builder_monitor: bool = True,
        logging_dir: str = DEBUG_LOGGING_DIR,
        save_layer_info: bool = False,
        **kwargs: Any,
    ) -> None:
        extra = set(kwargs) - (
            {"capture_tensorrt_api_recording"} if _generation.MM in ((2, 10), (2, 11)) else set()
        )
        if extra:
            raise TypeError(f"Debugger() got an unexpected keyword argument {extra.pop()!r}")
        os.makedirs(logging_dir, exist_ok=True)
        if log_level not in _LEVELS:
            raise ValueError(f"Invalid level: {log_level}, allowed levels are: {_LEVELS}")
        self.cfg = DebuggerConfig(log_level, save_engine_profile, engine_builder_monitor,
                                  logging_dir, profile_format, save_layer_info)

    def __enter__(self) -> None:
        ACTIVE.append(self.cfg)

    def __exit__(self, *exc: Any) -> None:
        ACTIVE.remove(self.cfg)
