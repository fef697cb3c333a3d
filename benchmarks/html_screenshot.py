"""Open a report's ``report.html`` in a real headless browser and save a screenshot to look at.

Usage: python benchmarks/html_screenshot.py REPORT_DIR [--out shot.png] [--browser chromium]

The report is meant to be one self-contained file: the page is loaded from a copy in an empty
temporary directory, with the network switched off, so a plot that is linked rather than embedded
shows as a broken image in the screenshot. Prints the screenshot's path and size, and the page's
size and the number of embedded images.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("report-screenshot.png"))
    ap.add_argument("--browser", default=None, help="default: chromium or chromium-browser")
    ap.add_argument("--size", default="1280,4000", help="window size WIDTH,HEIGHT")
    args = ap.parse_args()
    html = args.report_dir / "report.html"
    if not html.is_file():
        print(f"no report.html in {args.report_dir}", file=sys.stderr)
        return 2
    browser = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium found (apt install chromium)", file=sys.stderr)
        return 2
    text = html.read_text(encoding="utf-8")
    embedded = len(re.findall(r'src="data:image/', text))
    linked = len(re.findall(r'src="(?!data:)', text))
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        shutil.copyfile(html, page)  # alone: linked files would not load
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--proxy-server=127.0.0.1:9", f"--window-size={args.size}",
               f"--screenshot={args.out.resolve()}", page.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not args.out.is_file():
        print(f"{browser} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}",
              file=sys.stderr)
        return 1
    print(f"page {len(text) / 1e6:.2f} MB, {embedded} embedded images, {linked} linked")
    print(f"screenshot {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0 if linked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
