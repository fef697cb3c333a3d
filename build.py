"""cffi out-of-line API-mode builder for ``jetpower._sampler``.

The declarations live in ``csrc/jp_sampler.h`` alone: cdef reads the same file the C sources
include, so the two cannot drift.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "jp_sampler.h").read_text())
ffibuilder.set_source(
    "jetpower._sampler",
    "#include <stdint.h>\n#include <stddef.h>\n#include \"jp_sampler.h\"",
    sources=[str(p.relative_to(HERE)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(HERE))],
    libraries=["dl", "m", "pthread"],  # NVML is dlopen'ed at run time, never linked
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
