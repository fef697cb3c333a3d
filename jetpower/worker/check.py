"""``python -m jetpower.worker.check``: can the worker's interpreter run these models? (preflight)

Reads one JSON object on stdin, ``{"models": [{"model", "label", "backend", "device"}, ...]}``,
and writes one JSON object on stdout: ``{"format": "jetpower.worker-check", "version": 1,
"packages": {name: {"version", "supported", "verdict"}}, "cuda": {...}, "problems": [...]}``.
Each problem names the model (``models[i]``) or the package. It imports only what the check needs:
the backend's packages, torchvision when a model is not built in, and a ``module:factory``
(calling the factory once, which must return a ``torch.nn.Module``). Nothing is compiled, nothing
is written. ``SUPPORTED`` is the one table of the versions jetpower supports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import sys
from typing import Any

FORMAT = "jetpower.worker-check"
VERSION = 1

#: package -> (oldest supported version, import name); the same floors as pyproject's extras
SUPPORTED: dict[str, tuple[str, str]] = {
    "numpy": ("1.24", "numpy"),
    "torch": ("2.3", "torch"),
    "torchvision": ("0.18", "torchvision"),
    "torch-tensorrt": ("2.4", "torch_tensorrt"),
    "tensorrt": ("10.1", "tensorrt"),
}
#: the packages each backend imports
BACKEND_PACKAGES = {"torch": ("numpy", "torch"), "tensorrt": ("numpy", "torch", "torch-tensorrt",
                                                               "tensorrt")}
BUILTIN = ("lenet", "tinycnn")


def _release(version: str) -> tuple[int, ...]:
    parts = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(x) for x in parts[0].split(".")) if parts else ()


def package_verdict(name: str) -> dict[str, Any]:
    """Installed version of ``name`` and whether it is in the supported range (metadata only)."""
    floor = SUPPORTED[name][0]
    try:
        version: str | None = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is None:
        return {"version": None, "supported": f">={floor}", "verdict": "missing"}
    ok = _release(version) >= _release(floor)
    return {"version": version, "supported": f">={floor}", "verdict": "ok" if ok else "too old"}


def _import(name: str) -> str | None:
    """None when package ``name`` imports, else why not."""
    try:
        importlib.import_module(SUPPORTED[name][1])
    except Exception as e:  # an import can fail in many ways (missing .so, ABI, CUDA)
        return f"{type(e).__name__}: {e}"
    return None


def _resolve(entry: dict[str, Any], where: str, problems: list[str]) -> None:  # noqa: PLR0911
    name = str(entry.get("model"))
    if name in BUILTIN:
        return
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except Exception as e:
            problems.append(f"{where}: model {name!r}: cannot import {mod_name!r}: "
                            f"{type(e).__name__}: {e}")
            return
        factory = getattr(mod, attr, None)
        if not callable(factory):
            problems.append(f"{where}: model {name!r}: {mod_name!r} has no callable {attr!r}")
            return
        # said first: a factory that ends the process leaves this as the check's last word
        print(f"calling {where}'s factory {name}", file=sys.stderr, flush=True)
        try:
            model = factory()
        except Exception as e:
            problems.append(f"{where}: model {name!r}: {attr}() raised {type(e).__name__}: {e}")
            return
        try:
            from torch import nn
        except ImportError:
            return
        if not isinstance(model, nn.Module):
            problems.append(f"{where}: model {name!r}: {attr}() returned "
                            f"{type(model).__name__}, expected a torch.nn.Module")
        return
    try:
        import torchvision
    except Exception:
        problems.append(f"{where}: model {name!r} is not built in ({', '.join(BUILTIN)}) and "
                        "torchvision is not installed in the worker's interpreter "
                        f"({sys.executable}): pip install torchvision")
        return
    names = set(torchvision.models.list_models(module=torchvision.models))
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, sorted(names) + list(BUILTIN), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        problems.append(f"{where}: unknown model {name!r}: not built in ({', '.join(BUILTIN)}), "
                        f"not a torchvision classification model{hint}")


def check(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole check (see the module doc)."""
    problems: list[str] = []
    backends = sorted({str(m.get("backend")) for m in models})
    needed = sorted({p for b in backends for p in BACKEND_PACKAGES.get(b, ())})
    packages = {name: package_verdict(name) for name in needed}
    broken: set[str] = set()
    for name in needed:
        info = packages[name]
        users = ", ".join(b for b in backends if name in BACKEND_PACKAGES.get(b, ()))
        if info["verdict"] == "missing":
            problems.append(f"package {name} is not installed (needed by backend {users}): "
                            f"pip install '{name}{info['supported']}'")
            broken.add(name)
        elif info["verdict"] == "too old":
            problems.append(f"package {name} {info['version']} is older than jetpower supports "
                            f"({info['supported']})")
        elif (why := _import(name)) is not None:
            info["verdict"] = "does not import"
            problems.append(f"package {name} {info['version']} does not import: {why}")
            broken.add(name)
    cuda: dict[str, Any] = {"available": None, "devices": 0}
    if "torch" not in broken and "torch" in needed:
        import torch

        cuda = {"available": bool(torch.cuda.is_available()),
                "devices": int(torch.cuda.device_count()) if torch.cuda.is_available() else 0}
    for i, m in enumerate(models):
        where = f"models[{i}] ({m.get('label') or m.get('model')})"
        backend_ok = not (broken & set(BACKEND_PACKAGES.get(str(m.get("backend")), ())))
        if m.get("device") == "cuda" and backend_ok and cuda["available"] is False:
            problems.append(f"{where}: device = \"cuda\" but torch sees no CUDA device "
                            "(torch.cuda.is_available() is False)")
        if m.get("backend") == "tensorrt" and backend_ok and cuda["available"] is False:
            problems.append(f"{where}: backend = \"tensorrt\" needs a CUDA device; torch sees none")
        if "torch" not in broken:
            _resolve(m, where, problems)
    return {"format": FORMAT, "version": VERSION, "python": sys.executable,
            "packages": packages, "cuda": cuda, "problems": problems}


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        models = list(request["models"])
    except (ValueError, KeyError, TypeError) as e:
        print(f"jetpower.worker.check: bad request: {e}", file=sys.stderr)
        return 2
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # whatever an import or a factory prints stays off the answer
    try:
        answer = check(models)
    finally:
        sys.stdout = real_stdout
    real_stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
