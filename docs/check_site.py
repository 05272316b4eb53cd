"""Check a built documentation site as a reader sees it, offline (``make docs-check``).

Static checks of the HTML (:func:`static_problems`):

* equations are MathML (``<math>``), no TeX delimiters left for a script to typeset;
* no page loads a script, style sheet or font from the network (the site must work offline);
* the CLI reference shows no ``Sentinel.UNSET`` default;
* no page shows the absolute path of the checkout it was built in.

Browser checks with headless Chromium (:func:`browser_problems`, skipped when Chromium is absent), with
the network and Chromium's background services off and a fresh profile:

* MathML is laid out as mathematics: a fraction from the model page is at least 1.6 times as tall as one
  of its letters (when MathML is not supported the numerator and denominator sit on one line);
* screenshots of the pages with equations, figures and wide code blocks go to ``--shots`` (default
  ``site-screenshots/`` next to the site) for a person to look at.

    python docs/check_site.py [SITE] [--shots DIR]     # exit 1 and one line per problem when any fails
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
PAGES = ("model.html", "algorithms.html", "ieee123.html", "reference/cli.html", "tutorials/01-central.html")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")
_REMOTE = re.compile(r'<(?:script|link)\b[^>]*(?:src|href)="(?:https?:)?//[^"]+"[^>]*>', re.I)
_TEX = re.compile(r'class="arithmatex">\s*\\[(\[]')


def chromium() -> str | None:
    """The Chromium executable on the PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def static_problems(site: Path) -> list[str]:
    """Problems found in the built HTML of ``site``; empty when every check passes."""
    problems = []
    pages = sorted(site.rglob("*.html"))
    if not pages:
        return [f"{site}: no HTML pages (build the site first: make docs)"]
    n_math = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        rel = page.relative_to(site)
        n_math += text.count("<math")
        if _TEX.search(text):
            problems.append(f"{rel}: an equation is still TeX (not converted to MathML)")
        for m in _REMOTE.finditer(text):
            if "rel=\"preconnect\"" not in m.group(0):
                problems.append(f"{rel}: loads from the network: {m.group(0)[:120]}")
        if "Sentinel." in text:
            problems.append(f"{rel}: shows {text.count('Sentinel.')} click sentinel default(s)")
        if str(REPO) in text:
            problems.append(f"{rel}: shows the checkout path {REPO}")
    if n_math == 0:
        problems.append(f"{site}: no MathML equation in any page")
    return problems


def _run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def _probe_page(site: Path, folder: Path) -> Path | None:
    """A page holding one display equation with a fraction from the model page, and a script that writes
    the fraction's height over a letter's height into the DOM."""
    text = (site / "model.html").read_text(encoding="utf-8")
    for m in re.finditer(r'<div class="arithmatex">(<math.*?</math>)</div>', text, re.S):
        if "<mfrac" in m.group(1):
            probe = folder / "probe.html"
            probe.write_text(
                "<!doctype html><html><body style='font-size:20px'>" + m.group(1) + "<script>"
                "const f = document.querySelector('mfrac').getBoundingClientRect().height;"
                "const i = document.querySelector('mi').getBoundingClientRect().height;"
                "document.body.setAttribute('data-ratio', String(f / i));</script></body></html>",
                encoding="utf-8")
            return probe
    return None


def browser_problems(site: Path, shots: Path, exe: str) -> list[str]:
    """Render the site in headless Chromium: MathML laid out, and screenshots of :data:`PAGES` in ``shots``."""
    problems = []
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="docs-check-") as tmp:
        folder = Path(tmp)
        probe = _probe_page(site, folder)
        if probe is None:
            problems.append("model.html: no display equation with a fraction to probe")
        else:
            proc = _run_chromium(exe, folder / "profile", "--dump-dom", probe.as_uri())
            m = re.search(r'data-ratio="([0-9.eE+-]+)"', html.unescape(proc.stdout))
            if not m:
                problems.append(f"chromium did not run the MathML probe: {proc.stderr.strip()[-300:]}")
            elif float(m.group(1)) < 1.6:
                problems.append(f"MathML is not laid out as mathematics (fraction/letter height {float(m.group(1)):.2f})")
        for page in PAGES:
            if not (site / page).is_file():
                problems.append(f"{page}: missing")
                continue
            png = shots / (page.replace("/", "_").removesuffix(".html") + ".png")
            proc = _run_chromium(exe, folder / "profile", "--window-size=1280,6000", f"--screenshot={png}",
                                 (site / page).resolve().as_uri())
            if not png.is_file() or png.stat().st_size < 20_000:
                problems.append(f"{page}: no screenshot ({proc.stderr.strip()[-300:]})")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", nargs="?", type=Path, default=REPO / "site", help="built site (default: site/)")
    ap.add_argument("--shots", type=Path, default=None, help="screenshot folder (default: site-screenshots/)")
    args = ap.parse_args(argv)
    site = args.site.resolve()
    problems = static_problems(site)
    exe = chromium()
    shots = (args.shots or site.parent / "site-screenshots").resolve()
    if exe is None:
        print("note: chromium not found: browser checks skipped (apt-get install chromium)", file=sys.stderr)
    elif not problems:
        problems += browser_problems(site, shots, exe)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if not problems:
        where = f"; screenshots in {shots}" if exe else ""
        print(f"docs check: {site} OK{where}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
