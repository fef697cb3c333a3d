"""The torch-tensorrt releases the stand-in plays in tests: one or two per generation.

Each entry maps a test id to the environment that selects it (read by ``torch_tensorrt/
_generation.py`` and ``tensorrt/__init__.py`` at import).
"""

from __future__ import annotations

_VARS = ("JETPOWER_FAKE_TTRT_VERSION", "JETPOWER_FAKE_TTRT_RUNTIME", "JETPOWER_FAKE_TRT_VERSION")

RELEASES: dict[str, dict[str, str]] = {
    # NGC 24.06-py3-igpu: branch release/ngc/24.06_igpu, version.txt 2.3.0a0, TensorRT 8.6
    "2.3.0a0-igpu": {"JETPOWER_FAKE_TTRT_VERSION": "2.3.0a0", "JETPOWER_FAKE_TRT_VERSION": "8.6.2"},
    "2.4.0": {"JETPOWER_FAKE_TTRT_VERSION": "2.4.0"},
    "2.6.1": {"JETPOWER_FAKE_TTRT_VERSION": "2.6.1"},
    "2.9.0": {"JETPOWER_FAKE_TTRT_VERSION": "2.9.0"},
    "2.11.0": {"JETPOWER_FAKE_TTRT_VERSION": "2.11.0"},
    "2.12.1": {"JETPOWER_FAKE_TTRT_VERSION": "2.12.1"},
    "2.13.0": {"JETPOWER_FAKE_TTRT_VERSION": "2.13.0", "JETPOWER_FAKE_TTRT_RUNTIME": "cpp"},
    "2.13.0-python-only": {
        "JETPOWER_FAKE_TTRT_VERSION": "2.13.0",
        "JETPOWER_FAKE_TTRT_RUNTIME": "python",
    },
    "2.14.0a0": {"JETPOWER_FAKE_TTRT_VERSION": "2.14.0a0"},
}


def environ(release: str, base: dict[str, str]) -> dict[str, str]:
    """``base`` with the stand-in variables set for ``release`` (and no others of them)."""
    env = {k: v for k, v in base.items() if k not in _VARS}
    return env | RELEASES[release]


def apply(release: str, monkeypatch: object) -> None:
    """Set the variables for ``release`` through a pytest ``monkeypatch``."""
    for k in _VARS:
        monkeypatch.delenv(k, raising=False)  # type: ignore[attr-defined]
    for k, v in RELEASES[release].items():
        monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
