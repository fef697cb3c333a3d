"""``jetpower download --repo OWNER/NAME DEST``: fetch a result directory back from DagsHub.

``DEST`` must not exist or be empty; it appears only once every file has arrived.  Token and host
come from ``DAGSHUB_USER_TOKEN`` and ``DAGSHUB_CLIENT_HOST`` as for ``upload``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jetpower.commands.upload import EPILOG


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="DagsHub repository")
    parser.add_argument(
        "--revision", metavar="R", help="branch, tag or commit (default: the default branch)"
    )
    parser.add_argument(
        "--remote-path",
        metavar="P",
        default="",
        help="directory (or file) in the repository to fetch (default: the whole repository)",
    )
    parser.add_argument(
        "--retries", type=int, default=5, metavar="N", help="retries of a failed request"
    )
    parser.add_argument("dest", type=Path, metavar="DEST", help="where to put the files")


def run(args: argparse.Namespace) -> int:
    from jetpower.upload import download_result

    download_result(
        args.repo,
        args.dest,
        revision=args.revision,
        remote_path=args.remote_path,
        retries=args.retries,
    )
    return 0
