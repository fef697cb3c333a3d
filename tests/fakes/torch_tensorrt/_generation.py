"""Which torch-tensorrt release the stand-in plays: ``$JETPOWER_FAKE_TTRT_VERSION`` (default 2.4.0).

``$JETPOWER_FAKE_TTRT_RUNTIME`` = ``cpp`` (default: the C++ runtime library is installed, as in
every wheel) or ``python`` (a ``PYTHON_ONLY=1`` build).  The stand-in's behaviour per release is
written here from the release sources (pytorch/TensorRT at the tags named), independently of
jetpower's own table, so that a wrong call in jetpower fails against it.
"""

from __future__ import annotations

import os
import re

VERSION = os.environ.get("JETPOWER_FAKE_TTRT_VERSION", "2.4.0")
_m = re.match(r"(\d+)\.(\d+)", VERSION)
assert _m, VERSION
MM = (int(_m[1]), int(_m[2]))
CPP_RUNTIME = os.environ.get("JETPOWER_FAKE_TTRT_RUNTIME", "cpp") == "cpp"


def at_least(major: int, minor: int) -> bool:
    return (major, minor) <= MM


#: compile(debug=) is a parameter before 2.8 (v2.7.0 dynamo/_compiler.py); after, a kwarg that warns
HAS_DEBUG_PARAM = not at_least(2, 8)
#: dynamo.Debugger from 2.8 (v2.8.0 dynamo/__init__.py)
HAS_DEBUGGER = at_least(2, 8)
#: 2.8-2.11: DETAILED needs save_engine_profile; 2.12+: any debugger config (_TRTInterpreter.py)
DETAIL_NEEDS_ENGINE_PROFILE = at_least(2, 8) and not at_least(2, 12)
#: use_explicit_typing: parameter from 2.6, default True from 2.10, gone (always on) in 2.13
HAS_EXPLICIT_TYPING_PARAM = at_least(2, 6) and not at_least(2, 13)
EXPLICIT_TYPING_DEFAULT = at_least(2, 10)
#: 2.13 removed enabled_precisions and PythonTorchTensorRTModule; use_python_runtime only warns
HAS_ENABLED_PRECISIONS = not at_least(2, 13)
HAS_PYTHON_MODULE = not at_least(2, 13)
