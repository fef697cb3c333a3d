"""``jetpower upload RESULT_DIR --repo OWNER/NAME``: push a result directory to DagsHub (DVC).

The token comes from ``DAGSHUB_USER_TOKEN``, the host from ``DAGSHUB_CLIENT_HOST`` (default
https://dagshub.com).  Progress is logged as JSON lines (``upload_started``, ``dagshub_retry``,
``upload_finished`` with the URL); a failure exits with status 6 and prints the retry command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = (
    "environment: DAGSHUB_USER_TOKEN (required), DAGSHUB_CLIENT_HOST (default "
    "https://dagshub.com). Needs the DagsHub client: pip install 'jetpower[upload]'."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("result_dir", type=Path, metavar="RESULT_DIR", help="the result directory")
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="DagsHub repository")
    parser.add_argument("--branch", default="main", help="branch to commit to (default: main)")
    parser.add_argument(
        "--remote-path",
        metavar="P",
        help="directory in the repository (default: the result directory's name; '' = root)",
    )
    parser.add_argument("--message", "-m", metavar="M", help="commit message")
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries of a request that failed transiently (5xx, timeout); default 5",
    )


def run(args: argparse.Namespace) -> int:
    from jetpower.upload import upload_result

    upload_result(
        args.result_dir,
        args.repo,
        branch=args.branch,
        remote_path=args.remote_path,
        message=args.message,
        retries=args.retries,
    )
    return 0
