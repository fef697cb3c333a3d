"""The run manifest (``jetpower_manifest.json``, format "jetpower.manifest" version 1).

It is rewritten atomically at every change of phase, so an interrupted or crashed run leaves a
manifest that says how far it got.  ``--resume`` reads it back; checksums decide which models'
results are complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jetpower._fs import atomic_write_json, sha256_file
from jetpower.errors import UsageError

FORMAT = "jetpower.manifest"
VERSION = 1
NAME = "jetpower_manifest.json"


class Manifest:
    def __init__(self, result_dir: Path, data: dict[str, Any]) -> None:
        self.result_dir = result_dir
        self.data = data

    @classmethod
    def new(cls, result_dir: Path, **fields: Any) -> Manifest:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "status": "running",
            "phases": [],
            "models": {},
            "checksums": {},
            "events": [],
            **fields,
        }
        return cls(result_dir, data)

    @classmethod
    def load(cls, result_dir: Path) -> Manifest:
        path = result_dir / NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"{str(result_dir)!r} has no {NAME}: it is not a jetpower run that can be resumed"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"cannot read {path}: {e}") from e
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise UsageError(
                f"{path} is format {data.get('format')!r} version {data.get('version')!r}; "
                f"this jetpower reads {FORMAT!r} version {VERSION}"
            )
        return cls(result_dir, data)

    def write(self) -> None:
        atomic_write_json(self.result_dir / NAME, self.data, indent=2)

    # -- content ------------------------------------------------------------------------------

    def add_phase(self, name: str, model: str | None, start_ns: int, end_ns: int,
                  **extra: Any) -> None:
        self.data["phases"].append(
            {"name": name, "model": model, "start_ns": start_ns, "end_ns": end_ns, **extra}
        )

    def note(self, event: str, **fields: Any) -> None:
        """Something the reader of the manifest must know (sampler restart, channel failure)."""
        self.data["events"].append({"event": event, **fields})

    def model(self, label: str) -> dict[str, Any]:
        models: dict[str, dict[str, Any]] = self.data["models"]
        return models.setdefault(label, {"status": "pending"})

    def checksum(self, paths: list[Path]) -> None:
        for p in paths:
            self.data["checksums"][str(p.relative_to(self.result_dir))] = sha256_file(p)

    def verified(self, prefix: str) -> bool:
        """True when every checksummed file under ``prefix`` exists and still matches."""
        items = [(k, v) for k, v in self.data["checksums"].items()
                 if k == prefix or k.startswith(prefix + "/")]
        if not items:
            return False
        for rel, digest in items:
            p = self.result_dir / rel
            if not p.is_file() or sha256_file(p) != digest:
                return False
        return True

    def forget(self, prefix: str) -> None:
        self.data["checksums"] = {k: v for k, v in self.data["checksums"].items()
                                  if not (k == prefix or k.startswith(prefix + "/"))}
