"""``python -m jetpower.worker --config CONFIG.json [--progress-fd N]`` (docs/FORMATS.md, "Worker").

Exit status: 0 success, 2 bad configuration (no traceback, one clear message), 3 failure while
running.  Every failure also writes ``jetpower_failure.json`` (when the model directory is known)
and a ``worker_failed`` progress line.  The only place in the worker that maps errors to statuses.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from jetpower._process import die_with_parent
from jetpower.errors import JetpowerError
from jetpower.worker import output
from jetpower.worker.config import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, WorkerConfig
from jetpower.worker.progress import Progress


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m jetpower.worker", description=__doc__)
    ap.add_argument("--config", required=True, help="worker configuration (JSON)")
    ap.add_argument("--progress-fd", type=int, default=None, help="fd for JSON progress lines")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    die_with_parent()  # a supervisor that is SIGKILLed leaves no worker behind
    args = _parse(argv)
    progress = Progress(args.progress_fd)
    cfg: WorkerConfig | None = None
    try:
        cfg = WorkerConfig.read(args.config)
        output.remove_stale(cfg.model_dir)
        from jetpower.worker.runner import run

        files = run(cfg, progress)
    except JetpowerError as e:
        code = EXIT_CONFIG if getattr(e, "exit_code", None) == EXIT_CONFIG else EXIT_FAILED
        if code != EXIT_CONFIG:
            traceback.print_exc(file=sys.stderr)
        return _fail(progress, cfg, type(e).__name__, str(e), code)
    except KeyboardInterrupt:
        return _fail(progress, cfg, "KeyboardInterrupt", "interrupted", EXIT_FAILED)
    except Exception as e:  # the worker's boundary: anything else is a failure while running
        traceback.print_exc(file=sys.stderr)
        return _fail(progress, cfg, type(e).__name__, str(e) or repr(e), EXIT_FAILED)
    progress.emit("worker_finished", files=[str(p) for p in files])
    progress.close()
    return EXIT_OK


def _fail(
    progress: Progress, cfg: WorkerConfig | None, error_type: str, message: str, code: int
) -> int:
    phase = progress.current_phase
    progress.emit("worker_failed", error_type=error_type, message=message, phase=phase)
    print(f"jetpower worker: {message}", file=sys.stderr)
    if cfg is not None:
        try:
            output.write_json(
                cfg.model_dir / output.FAILURE, output.failure(error_type, message, code, phase)
            )
        except OSError as e:
            print(f"jetpower worker: cannot write {output.FAILURE}: {e}", file=sys.stderr)
    progress.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
