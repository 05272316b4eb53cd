"""The bundled cases and network files: where they are and their one-line descriptions.

Its own module, importing neither pandas nor OpenDSS, so that ``python -m mpdopf_pyomo cases`` lists them
at once; :mod:`mpdopf_pyomo.case` loads them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from mpdopf_pyomo.errors import one_line

_PACKAGE = Path(__file__).resolve().parent
#: Folder of the bundled cases: inside the installed package (a wheel carries cases/ as mpdopf_pyomo/cases),
#: else the repository's cases/ beside the package (source tree, editable install).
CASES_DIR = _PACKAGE / "cases" if (_PACKAGE / "cases").is_dir() else _PACKAGE.parent / "cases"
#: Folder of the bundled network files (``models/<name>/<file>``), found by file name as bare cases; it sits
#: beside CASES_DIR in both layouts (the case files' ``../models/...`` paths rely on that).
MODELS_DIR = CASES_DIR.parent / "models"


def list_cases() -> list[tuple[str, str]]:
    """Bundled cases as ``(name, description)``, sorted by name (read from the TOML, no network load)."""
    out = []
    for path in sorted(CASES_DIR.glob("*.toml"), key=lambda p: p.stem):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            desc = one_line(str(data.get("case", {}).get("description", "")))
        except (OSError, UnicodeDecodeError, RecursionError, AttributeError, tomllib.TOMLDecodeError):
            desc = "(unreadable case file)"
        out.append((path.stem, desc))
    return out
