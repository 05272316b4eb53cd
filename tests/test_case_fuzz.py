"""Property-based: mutated bundled case files either load or fail as one line (issue 10).

The mutations are what a careless or hostile user produces: keys deleted, values of the wrong type,
extreme or non-finite numbers, number-like strings, huge or negative values, shuffled or emptied lists,
sections replaced by scalars, and the network path changed to something that is not a model. Every
outcome of ``load_case`` must be a ``Case`` or an ``MpdopfError`` whose message is one line -- never
another exception. A smaller set goes through the real CLI (`cases show`): exit 0 or 2, no traceback.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpdopf_pyomo.case import Case, load_case
from mpdopf_pyomo.errors import MpdopfError

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "models" / "ieee123" / "master.dss"


def _bundled() -> list[dict[str, Any]]:
    out = []
    for f in sorted((REPO / "cases").glob("*.toml")):
        data = tomllib.loads(f.read_text())
        data["case"]["network"] = MASTER.as_posix()  # the mutated file is written elsewhere
        out.append(data)
    return out


BUNDLED = _bundled()


# ------------------------------------------------------------------------------------------ TOML out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string (\uXXXX escapes)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def _toml(data: dict[str, Any]) -> str:
    """``data`` as TOML: top-level scalars first, then one [table] per section (sub-tables inline)."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(str(kk))} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ mutations

NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 1e300, -1e300, 1e-300, 1e308, float("nan"), float("inf"), -float("inf"),
                     10**30, -(10**30), 10**400, 0.5, 1.5, 24, 25, 8785, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
)
TEXTS = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "0x10", "1_000", "abc", "../../victim", "a/b",
                     "..", "\n", "\x1b[31mred", "\x00", "150", "sw2", "circle", "box", "hard", "penalty"]),
    st.text(max_size=20),
)
SCALARS = st.one_of(NUMBERS, TEXTS, st.booleans())
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=6),
    st.dictionaries(TEXTS, SCALARS, max_size=3),
    st.lists(st.lists(SCALARS, max_size=3), max_size=3),
)
NETWORKS = st.sampled_from([
    "", "no/such/master.dss", "/dev/null", "/", "..", str(REPO / "cases" / "ieee123.toml"),
    str(REPO / "models" / "ieee123" / "lines.dss"), str(REPO / "models" / "ieee123" / "loads.dss"),
    str(REPO / "models"), "master.dss", "\x00.dss",
])


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of nested tables (``('battery', 'soc0')``, ``('profiles', 'horizon', '5')``, ...)."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    return out


@st.composite
def mutated(draw) -> tuple[dict[str, Any], int | None]:
    data = copy.deepcopy(draw(st.sampled_from(BUNDLED)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["delete", "replace", "scale", "shuffle", "network", "rename", "element"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(VALUES)
        elif op == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * draw(st.sampled_from([-1, 0, 1e-300, 1e300, 10, 1e6]))
        elif op == "shuffle" and isinstance(parent[key], list):
            parent[key] = draw(st.permutations(parent[key]))[: draw(st.integers(0, len(parent[key])))]
        elif op == "element" and isinstance(parent[key], list) and parent[key]:
            parent[key][draw(st.integers(0, len(parent[key]) - 1))] = draw(SCALARS)
        elif op == "network":
            data.setdefault("case", {})
            if isinstance(data["case"], dict):
                data["case"]["network"] = draw(NETWORKS)
        elif op == "rename":
            parent[draw(TEXTS)] = parent.pop(key)
    hours = draw(st.one_of(st.none(), st.integers(-2, 30), st.sampled_from([10**6, 8785])))
    return data, hours


def _assert_clean(path: Path, hours: int | None) -> None:
    try:
        case = load_case(path, hours, warn=None)
    except MpdopfError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        assert all(c.isprintable() for c in msg), repr(msg)
        return
    assert isinstance(case, Case)
    assert all("\n" not in w for w in case.warnings)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_mutated_case_loads_or_fails_as_one_line(tmp_path_factory, sample):
    data, hours = sample
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / "case.toml"
    path.write_text(_toml(data))
    _assert_clean(path, hours)


def _cli_show(path: Path, hours: int | None) -> int:
    args = ["cases", "show", str(path)] + (["--hours", str(hours)] if hours is not None else [])
    proc = subprocess.run([sys.executable, "-m", "mpdopf_pyomo", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.returncode


@pytest.mark.parametrize("sec,key,val", [("bases", "s_kva", 1e300), ("settings", "v_max_pu", "1.05"),
                                         ("case", "name", "../../x\n"), ("profiles", "daily", 3)])
def test_hostile_edits_through_the_cli(tmp_path, sec, key, val):
    """The real command on fixed hostile edits: exit 2, one line, no traceback."""
    data = copy.deepcopy(BUNDLED[0])
    data[sec][key] = val
    path = tmp_path / "case.toml"
    path.write_text(_toml(data))
    assert _cli_show(path, None) == 2


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_cases_through_the_cli(tmp_path_factory, sample):
    """The real command on a few drawn mutations (one process each): exit 0 or 2, never a traceback."""
    data, hours = sample
    path = tmp_path_factory.mktemp("cli", numbered=True) / "case.toml"
    path.write_text(_toml(data))
    _cli_show(path, hours)
