"""MkDocs hooks of the mpdopf_pyomo documentation (docs/mkdocs.yml ``hooks:``).

* ``on_pre_build``: run the tutorials that have no outputs yet (docs/run_tutorials.py ``--missing``), so a
  plain ``mkdocs build`` or ``mkdocs serve`` works from a fresh clone. ``make docs`` and the test suite
  re-run every tutorial first, so the pages show the current code's output; a failing tutorial fails the
  build.
* ``on_page_markdown``: ``<!-- if-module NAME -->...<!-- end-if-module -->`` blocks are kept only when
  module ``NAME`` can be imported (API pages of modules that are still being written).
* ``on_page_markdown`` also drops figure links of tutorials whose outputs are ``pending`` (the module the
  tutorial needs is not in this version yet; the page says so). A missing figure of a tutorial that ran
  stays a broken link, which fails the strict build.
* ``on_page_content``: Sphinx roles in docstrings (``:func:`x```) render as plain code.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.mpdopf")
DOCS = Path(__file__).resolve().parent

_IF_MODULE = re.compile(r"<!-- if-module (?P<mod>[\w.]+) -->\n?(?P<body>.*?)<!-- end-if-module -->\n?", re.S)
_FIGURE = re.compile(r"!\[[^\]]*\]\(generated/(?P<stem>[\w-]+)/[^)]+\)\n?")
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")


def on_pre_build(config, **kwargs) -> None:
    cmd = [sys.executable, str(DOCS / "run_tutorials.py"), "--missing"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PluginError(f"tutorials failed (run `python docs/run_tutorials.py` to see why):\n{proc.stderr[-3000:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("tutorial "):
            log.info(line)


def _importable(mod: str) -> bool:
    try:
        importlib.import_module(mod)
        return True
    except Exception:
        return False


def _pending(stem: str) -> bool:
    meta = DOCS / "src" / "tutorials" / "generated" / stem / "meta.json"
    try:
        return json.loads(meta.read_text())["status"] == "pending"
    except (OSError, ValueError, KeyError):
        return False


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = _IF_MODULE.sub(lambda m: m.group("body") if _importable(m.group("mod")) else "", markdown)
    return _FIGURE.sub(lambda m: "" if _pending(m.group("stem")) else m.group(0), markdown)


def on_page_content(html: str, page, config, files) -> str:
    return _ROLE.sub("", html)
