"""MkDocs hooks of the mpdopf_pyomo documentation (docs/mkdocs.yml ``hooks:``).

* ``on_pre_build``: run the tutorials that have no outputs yet (docs/run_tutorials.py ``--missing``), so a
  plain ``mkdocs build`` or ``mkdocs serve`` works from a fresh clone. ``make docs`` and the test suite
  re-run every tutorial first, so the pages show the current code's output; a failing tutorial fails the
  build.
* ``on_config``: the CLI reference (mkdocs-click, ``:style: table``) shows an option without a default as
  ``None`` (``False`` for a flag). mkdocs-click 0.9 tests ``option.default is not None``, but click 8.3+
  stores "no default" as its ``UNSET`` sentinel, which printed as ``Sentinel.UNSET``.
* ``on_page_markdown``: ``<!-- if-module NAME -->...<!-- end-if-module -->`` blocks are kept only when
  module ``NAME`` can be imported (API pages of modules that are still being written).
* ``on_page_markdown`` also drops figure links (``generated/...`` from a tutorial page, ``tutorials/generated/...``
  from another page) of tutorials whose outputs are ``pending`` (the module the
  tutorial needs is not in this version yet; the page says so). A missing figure of a tutorial that ran
  stays a broken link, which fails the strict build.
* ``on_page_content``: Sphinx roles in docstrings (``:func:`x```) render as plain code.
* ``on_page_content`` also turns the TeX that ``pymdownx.arithmatex`` (generic mode) leaves in
  ``<span|div class="arithmatex">`` into MathML (latex2mathml), at build time: browsers draw MathML
  natively, so the equations show with no script and no network (a site opened from disk, offline).
  TeX that latex2mathml cannot read fails the build, naming the page.
* ``on_page_content`` last: absolute paths of this checkout (``/…/docs/…``) in generated pages become
  repository-relative, so no page shows where it was built.
"""

from __future__ import annotations

import copy
import html as html_lib
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
_FIGURE = re.compile(r"!\[[^\]]*\]\((?:tutorials/)?generated/(?P<stem>[\w-]+)/[^)]+\)\n?")
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")
_MATH = re.compile(r'<(?P<tag>span|div) class="arithmatex">(?P<tex>.*?)</(?P=tag)>', re.S)
_DELIMS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}
REPO = DOCS.parent


def _unset_default_row(row):
    """Wrap mkdocs-click's table-row formatter so that click's ``UNSET`` default reads as no default."""
    try:
        from click._utils import UNSET as unset
    except ImportError:  # click < 8.3: "no default" is None already
        return row

    def fixed(option):
        if option.default is unset:
            option = copy.copy(option)
            option.default = False if option.is_flag else None
        return row(option)

    fixed.__wrapped__ = row
    return fixed


def on_config(config, **kwargs):
    from mkdocs_click import _docs

    if not hasattr(_docs._format_table_option_row, "__wrapped__"):
        _docs._format_table_option_row = _unset_default_row(_docs._format_table_option_row)
    return config


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


def tex_to_mathml(html: str, where: str = "page") -> str:
    """Replace arithmatex's generic-mode TeX (``\\(..\\)`` in a span, ``\\[..\\]`` in a div) by MathML."""
    from latex2mathml.converter import convert

    def one(m: re.Match) -> str:
        tag = m.group("tag")
        tex = html_lib.unescape(m.group("tex")).strip()
        start, end = _DELIMS[tag]
        if tex.startswith(start) and tex.endswith(end):
            tex = tex[len(start) : -len(end)]
        try:
            mathml = convert(tex, display="block" if tag == "div" else "inline")
        except Exception as exc:  # latex2mathml raises its own exception types and plain ones
            raise PluginError(f"{where}: cannot convert the equation {tex[:80]!r} to MathML: {exc}") from None
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _MATH.sub(one, html)


def relative_paths(html: str) -> str:
    """This checkout's absolute path (as a docstring or an output may print it) -> the repository-relative one."""
    return html.replace(f"{REPO}/", "").replace(str(REPO), ".")


def on_page_content(html: str, page, config, files) -> str:
    html = tex_to_mathml(_ROLE.sub("", html), page.file.src_path)
    return relative_paths(html)
