"""Run the tutorials (docs/tutorials/*.py) and write what the documentation pages show.

A tutorial is a plain Python script, runnable on its own (``python docs/tutorials/01_central.py``). Its
``# %% name`` comment lines split it into cells, as in the "percent" format that VS Code, Spyder and
jupytext understand. This runner executes the cells in order in one namespace (like a notebook) and
writes, for the page ``docs/src/tutorials/<page>.md`` to include:

* ``docs/src/tutorials/generated/<stem>/<cell>.md``: the cell's code and the text it printed;
* the figures the script saves into ``MPDOPF_TUTORIAL_OUT`` (set by this runner to the same folder);
* ``meta.json``: status (``ok`` or ``pending``), run time, package version.

A cell that raises fails the tutorial: the runner exits non-zero and leaves the previous outputs in place
(everything is written into a temporary folder and renamed at the end). A script whose header names a
module that is not importable yet (``# docs-requires: mpdopf_pyomo.x, mpdopf_pyomo.y:function``) is not run: its cells are
written with a clear "not run yet" note and status ``pending``.

    python docs/run_tutorials.py                 # every tutorial (what `make docs` does)
    python docs/run_tutorials.py 01_central      # one tutorial, by stem
    python docs/run_tutorials.py --missing       # only those without outputs (what the mkdocs hook does)
    python docs/run_tutorials.py path/to/x.py --out DIR   # any script, outputs into DIR

The test suite (tests/test_docs.py) runs every tutorial through this file, so the outputs and figures the
built pages show are those of the last test or ``make docs`` run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
TUTORIALS = DOCS / "tutorials"
GENERATED = DOCS / "src" / "tutorials" / "generated"
ENV_OUT = "MPDOPF_TUTORIAL_OUT"

_CELL = re.compile(r"^# %%[ \t]*(?P<name>[A-Za-z0-9_-]+)?[^\n]*$", re.M)
_REQUIRES = re.compile(r"^# docs-requires:(?P<mods>.*)$", re.M)


def tutorials() -> list[Path]:
    """The tutorial scripts, in page order (their names start with a number)."""
    return sorted(p for p in TUTORIALS.glob("[0-9]*.py"))


def cells(source: str) -> list[tuple[str, str]]:
    """``(name, code)`` per cell; code before the first marker is the cell ``preamble``."""
    out: list[tuple[str, str]] = []
    marks = list(_CELL.finditer(source))
    head = source[: marks[0].start()] if marks else source
    out.append(("preamble", head))
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(source)
        name = m.group("name") or f"cell{k + 1}"
        out.append((name, source[m.end() :end]))
    names = [n for n, _ in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"duplicate cell names: {sorted(dupes)}")
    return [(n, c.strip("\n")) for n, c in out]


def missing_modules(source: str) -> list[str]:
    """Names in ``# docs-requires:`` lines (``module`` or ``module:attribute``) that cannot be imported here."""
    names = [m.strip() for line in _REQUIRES.finditer(source) for m in line.group("mods").split(",") if m.strip()]
    missing = []
    for name in names:
        mod, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(mod)
            if attr:
                getattr(obj, attr)
        except Exception:  # not there yet, or half-written: either way the tutorial cannot run
            missing.append(name)
    return missing


def _cell_md(code: str, output: str) -> str:
    text = f"```python\n{code}\n```\n"
    if output.strip():
        text += f'\n```text title="output"\n{output.rstrip()}\n```\n'
    return text


def run_one(script: Path, out: Path) -> dict:
    """Execute ``script`` cell by cell (in this process) and write its outputs into ``out``."""
    source = script.read_text(encoding="utf-8")
    parts = cells(source)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    meta: dict = {"script": script.name, "cells": [n for n, _ in parts]}
    try:
        missing = missing_modules(source)
        if missing:
            note = (
                '!!! warning "Not run yet"\n'
                f"    This tutorial needs `{'`, `'.join(missing)}`, which this version of the package does not "
                "have yet. The code below is shown without output.\n\n"
            )
            for name, code in parts:
                (tmp / f"{name}.md").write_text((note if name == "preamble" else "") + _cell_md(code, ""))
            meta.update(status="pending", missing=missing)
        else:
            os.environ[ENV_OUT] = str(tmp)
            import matplotlib

            matplotlib.use("Agg")
            namespace: dict = {"__name__": "__main__", "__file__": str(script)}
            t0 = time.perf_counter()
            log = []
            for name, code in parts:
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    try:
                        exec(compile(code + "\n", f"{script.name}[{name}]", "exec"), namespace)
                    except BaseException:
                        sys.stdout.write(buf.getvalue())
                        traceback.print_exc()
                        raise SystemExit(f"{script.name}: cell '{name}' failed") from None
                text = buf.getvalue()
                log.append(text)
                sys.stdout.write(text)
                (tmp / f"{name}.md").write_text(_cell_md(code, text))
            import mpdopf_pyomo

            (tmp / "output.txt").write_text("".join(log))
            meta.update(status="ok", seconds=round(time.perf_counter() - t0, 2), version=mpdopf_pyomo.__version__)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="tutorial stems (default: all) or paths to scripts")
    ap.add_argument("--missing", action="store_true", help="only tutorials without outputs")
    ap.add_argument("--out", type=Path, help="output folder (one script only)")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    scripts: list[Path] = []
    for name in args.names or [p.stem for p in tutorials()]:
        p = Path(name)
        scripts.append(p if p.suffix == ".py" else TUTORIALS / f"{name}.py")
    for s in scripts:
        if not s.is_file():
            print(f"error: no tutorial {s}", file=sys.stderr)
            return 2
    if args.out and len(scripts) != 1:
        print("error: --out needs exactly one script", file=sys.stderr)
        return 2
    if args.missing:
        scripts = [s for s in scripts if not (GENERATED / s.stem / "meta.json").is_file()]

    if args.in_process:  # one script, here
        meta = run_one(scripts[0], args.out or GENERATED / scripts[0].stem)
        print(f"[{scripts[0].stem}: {meta['status']}]", file=sys.stderr)
        return 0
    # Each tutorial in its own interpreter: OpenDSS and matplotlib keep global state.
    failed = []
    for s in scripts:
        t0 = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), str(s.resolve()), "--in-process"]
        if args.out:
            cmd += ["--out", str(args.out.resolve())]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            failed.append(s.stem)
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
            print(f"tutorial {s.stem}: FAILED ({dt:.1f} s)", file=sys.stderr)
        else:
            status = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            print(f"tutorial {s.stem}: {status} {dt:.1f} s", file=sys.stderr)
    if failed:
        print(f"error: tutorial(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
