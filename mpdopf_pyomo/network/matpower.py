"""MATPOWER case file (``.m``) -> :class:`~mpdopf_pyomo.network.model.Network`, without MATLAB.

The reader runs the small subset of MATLAB that case files use, statement by statement, in file order:

* ``function mpc = name`` (version 2) or ``function [baseMVA, bus, gen, branch, ...] = name`` (version 1);
* assignments of numbers, strings, matrices ``[...]`` and cell arrays ``{...}`` to ``mpc.<field>`` or to
  plain variables (comments ``%``, ``%{ ... %}``, ``...`` continuations, ``;``/``,``/newline separators,
  scientific notation, ``Inf``/``NaN``);
* the column-name constants: ``[PQ, PV, ..., VMIN] = idx_bus;`` (likewise ``idx_brch``, ``idx_gen``,
  ``idx_cost``) and ``define_constants;``;
* arithmetic (``+ - * / ^`` and their element-wise forms, parentheses, ``sin cos tan asin acos atan sqrt
  abs exp log``, ``pi``) on scalars and on matrix slices ``mpc.bus(:, [PD, QD])``, and assignments to such
  slices.

That subset is what the radial benchmarks need: case33bw, case69 and case141 store loads in kW (kVA at
pf 0.85 for case141) and branch r, x in ohm, and convert them in trailing statements such as
``mpc.bus(:, [PD, QD]) = mpc.bus(:, [PD, QD]) / 1e3;`` and
``mpc.branch(:, [BR_R BR_X]) = mpc.branch(:, [BR_R BR_X]) / (Vbase^2 / Sbase);``. Running them is what
MATLAB would do, so no file is special-cased and a standard file (MW, pu) gets no conversion. Any
statement outside the subset is a :class:`CaseError` naming the file and line, never a silent skip.

The resulting matrices (MW, MVAr, pu on ``baseMVA`` and each bus's ``baseKV``) become physical units:
series impedance in ohm on the to-bus base (MATPOWER's ideal transformer sits at the from end, the series
impedance and both charging halves behind it), loads in kW/kvar, shunts in kvar.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Bus, Der, Load, Network, Shunt, Source

# MATPOWER's column names (idx_bus, idx_brch, idx_gen, idx_cost), 1-based as in MATLAB.
_IDX = {
    "idx_bus": (
        "PQ PV REF NONE BUS_I BUS_TYPE PD QD GS BS BUS_AREA VM VA BASE_KV ZONE VMAX VMIN LAM_P LAM_Q "
        "MU_VMAX MU_VMIN"
    ),
    "idx_brch": (
        "F_BUS T_BUS BR_R BR_X BR_B RATE_A RATE_B RATE_C TAP SHIFT BR_STATUS PF QF PT QT MU_SF MU_ST "
        "ANGMIN ANGMAX MU_ANGMIN MU_ANGMAX"
    ),
    "idx_gen": (
        "GEN_BUS PG QG QMAX QMIN VG MBASE GEN_STATUS PMAX PMIN PC1 PC2 QC1MIN QC1MAX QC2MIN QC2MAX "
        "RAMP_AGC RAMP_10 RAMP_30 RAMP_Q APF MU_PMAX MU_PMIN MU_QMAX MU_QMIN"
    ),
    "idx_cost": "PW_LINEAR POLYNOMIAL MODEL STARTUP SHUTDOWN NCOST COST",
}
_VALUES = {
    "idx_bus": [1, 2, 3, 4] + list(range(1, 18)),
    "idx_brch": list(range(1, 22)),
    "idx_gen": list(range(1, 26)),
    "idx_cost": [1, 2, 1, 2, 3, 4, 5],
}
CONSTANTS = {
    kind: dict(zip(names.split(), _VALUES[kind], strict=True)) for kind, names in _IDX.items()
}
_FUNCS = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sqrt": np.sqrt, "abs": np.abs, "exp": np.exp, "log": np.log,
}  # fmt: skip
_BUILTINS = {"pi": math.pi, "Inf": math.inf, "inf": math.inf, "NaN": math.nan, "nan": math.nan}
#: Columns each matrix must have (MATPOWER's minimum for a power flow).
_MIN_COLS = {"bus": 13, "gen": 10, "branch": 11}
#: MATPOWER files carry no frequency; this one only turns line charging into capacitance in an export.
DEFAULT_FREQUENCY_HZ = 60.0


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------
@dataclass
class _Tok:
    kind: str  # num, name, str, op, nl, end
    text: str
    line: int
    space_before: bool = False


_NUM_RE = re.compile(r"(\d+\.?\d*|\.\d+)([eEdD][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")
_OPS = (".*", "./", ".^", "==", "~=", "<=", ">=", "&&", "||", "+", "-", "*", "/", "^", "(", ")", "[",
        "]", "{", "}", ",", ";", "=", ":", ".", "<", ">", "&", "|", "~", "\\", "'")  # fmt: skip


def _tokenize(text: str, where: str) -> list[_Tok]:
    """Tokens with line numbers; comments and ``...`` continuations removed, newlines kept."""
    toks: list[_Tok] = []
    i, line, n = 0, 1, len(text)
    space = False
    in_block = 0
    while i < n:
        c = text[i]
        if c == "\n":
            toks.append(_Tok("nl", "\n", line, space))
            line += 1
            i += 1
            space = False
            continue
        # comments to the end of the line; block comments: a line holding only %{ ... a line holding only %}
        if c == "%" or in_block:
            eol = text.find("\n", i)
            eol = n if eol < 0 else eol
            bol = text.rfind("\n", 0, i) + 1
            stripped = text[bol:eol].strip()
            if stripped == "%{" and text[bol:i].strip() == "":
                in_block += 1
            elif stripped == "%}" and in_block:
                in_block -= 1
            i = eol
            continue
        if c in " \t\r\f\v":
            space = True
            i += 1
            continue
        if text.startswith("...", i):  # continuation: drop the rest of the line and the newline
            eol = text.find("\n", i)
            i = n if eol < 0 else eol + 1
            line += 1
            space = True
            continue
        m = _NUM_RE.match(text, i)
        if m and (c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit())):
            toks.append(_Tok("num", m.group(0).replace("d", "e").replace("D", "e"), line, space))
            i = m.end()
            space = False
            continue
        m = _NAME_RE.match(text, i)
        if m:
            toks.append(_Tok("name", m.group(0), line, space))
            i = m.end()
            space = False
            continue
        if c in "'\"":
            prev = toks[-1] if toks else None
            transpose = (
                c == "'" and prev is not None and not space
                and (prev.kind in ("num", "name", "str") or prev.text in (")", "]", "}", "'"))
            )  # fmt: skip
            if transpose:
                raise CaseError(f"{where}, line {line}: the transpose operator ' is not supported")
            j = i + 1
            buf = []
            while True:
                if j >= n or text[j] == "\n":
                    raise CaseError(f"{where}, line {line}: unterminated string")
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote = literal quote
                        buf.append(c)
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            toks.append(_Tok("str", "".join(buf), line, space))
            i = j + 1
            space = False
            continue
        for op in _OPS:
            if text.startswith(op, i):
                toks.append(_Tok("op", op, line, space))
                i += len(op)
                space = False
                break
        else:
            raise CaseError(f"{where}, line {line}: unexpected character {c!r}")
    toks.append(_Tok("end", "", line, space))
    return toks


# --------------------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------------------
@dataclass
class _Matrix:
    """A numeric matrix with the source line of each row (for error messages)."""

    values: np.ndarray
    row_lines: list[int]


@dataclass
class _State:
    where: str
    struct: str | None = None  # the function's struct output name (version 2), e.g. "mpc"
    outputs: list[str] = field(default_factory=list)
    function_name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    row_lines: dict[str, list[int]] = field(default_factory=dict)
    modified: list[str] = field(default_factory=list)  # "line N: text" of each slice assignment applied


class _Parser:
    """Recursive-descent evaluator over the token list (see the module docstring for the subset)."""

    def __init__(self, toks: list[_Tok], state: _State, text_lines: list[str]):
        self.t = toks
        self.p = 0
        self.s = state
        self.lines = text_lines
        self.matrix_depth = 0

    # --- helpers ----------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> _Tok:
        return self.t[min(self.p + k, len(self.t) - 1)]

    def next(self) -> _Tok:
        tok = self.t[self.p]
        self.p += 1
        return tok

    def fail(self, msg: str, tok: _Tok | None = None) -> CaseError:
        tok = tok or self.peek()
        src = self.lines[tok.line - 1].strip() if 0 < tok.line <= len(self.lines) else ""
        shown = f" ({src[:80]})" if src else ""
        return CaseError(f"{self.s.where}, line {tok.line}: {msg}{shown}")

    def expect(self, text: str) -> _Tok:
        tok = self.peek()
        if tok.text != text or tok.kind not in ("op", "name"):
            raise self.fail(f"expected {text!r}, found {tok.text or 'end of file'!r}")
        return self.next()

    def skip_newlines(self) -> None:
        while self.peek().kind == "nl" or (self.peek().kind == "op" and self.peek().text in (";", ",")):
            self.next()

    # --- statements -------------------------------------------------------------------------------
    def run(self) -> None:
        self.skip_newlines()
        if self.peek().kind == "name" and self.peek().text == "function":
            self.function_header()
        else:  # a script: plain mpc.* assignments
            self.s.struct = "mpc"
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok.kind == "end":
                return
            self.statement()

    def end_of_statement(self) -> None:
        tok = self.peek()
        if tok.kind in ("nl", "end") or (tok.kind == "op" and tok.text in (";", ",")):
            if tok.kind != "end":
                self.next()
            return
        raise self.fail(f"unexpected {tok.text!r} after the statement")

    def function_header(self) -> None:
        self.next()  # 'function'
        if self.peek().text == "[":
            self.next()
            while self.peek().text != "]":
                tok = self.next()
                if tok.kind == "name":
                    self.s.outputs.append(tok.text)
                elif tok.text != ",":
                    raise self.fail("malformed function outputs", tok)
            self.next()
            self.expect("=")
        elif self.peek(1).text == "=":
            self.s.struct = self.next().text
            self.next()
        name = self.next()
        if name.kind != "name":
            raise self.fail("expected the function name", name)
        self.s.function_name = name.text
        if self.peek().text == "(":  # input arguments: ignored
            while self.next().text != ")":
                if self.peek().kind == "end":
                    raise self.fail("unterminated function arguments")
        self.end_of_statement()

    def statement(self) -> None:
        tok = self.peek()
        after = self.peek(1)
        if tok.kind == "name" and tok.text in ("end", "return") and (
            after.kind in ("nl", "end") or after.text in (";", ",")
        ):
            self.next()
            self.end_of_statement()
            return
        if tok.kind == "name" and tok.text == "define_constants":
            self.next()
            for consts in CONSTANTS.values():
                self.s.variables.update(consts)
            self.end_of_statement()
            return
        if tok.text == "[":  # [A, B, ...] = idx_bus;
            self.multi_assign()
            return
        if tok.kind != "name":
            raise self.fail("cannot interpret this statement")
        start = tok
        target = self.next().text
        fieldname = None
        if self.peek().text == "." and self.peek(1).kind == "name":
            if target != self.s.struct:
                raise self.fail(f"unknown struct {target!r} (the function returns {self.s.struct!r})", start)
            self.next()
            fieldname = self.next().text
        index = None
        if self.peek().text == "(":
            self.next()
            index = self.index_args()
        if self.peek().text != "=" or self.peek(1).text == "=":
            raise self.fail("cannot interpret this statement (expected an assignment)", start)
        self.next()
        value = self.rhs()
        key = fieldname if fieldname is not None else target
        store = self.s.fields if fieldname is not None else self.s.variables
        if index is None:
            if isinstance(value, _Matrix):
                self.s.row_lines[key] = value.row_lines
                value = value.values
            elif isinstance(value, np.ndarray):
                value = value.copy()  # MATLAB assigns by value: b = mpc.bus; b(:, 3) = 0 leaves mpc.bus alone
            store[key] = value
        else:
            self.assign_slice(store, key, index, value, start)
        self.end_of_statement()

    def multi_assign(self) -> None:
        start = self.next()  # '['
        names = []
        while self.peek().text != "]":
            tok = self.next()
            if tok.kind == "name":
                names.append(tok.text)
            elif tok.text != "," and tok.kind != "nl":
                raise self.fail("malformed multiple assignment", tok)
            if tok.kind == "end":
                raise self.fail("unterminated multiple assignment", start)
        self.next()
        self.expect("=")
        fn = self.next()
        if fn.kind != "name" or fn.text not in CONSTANTS:
            raise self.fail(f"cannot interpret a multiple assignment from {fn.text!r}", start)
        consts = list(CONSTANTS[fn.text].items())
        if len(names) > len(consts):
            raise self.fail(f"{fn.text} returns {len(consts)} values, {len(names)} requested", start)
        for name, (_, value) in zip(names, consts):
            self.s.variables[name] = value
        self.end_of_statement()

    def assign_slice(self, store: dict, key: str, index: list, value: Any, start: _Tok) -> None:
        if key not in store or not isinstance(store[key], np.ndarray):
            raise self.fail(f"assignment to a slice of {key!r}, which is not a numeric matrix", start)
        mat = store[key]
        rows, cols = self.resolve_index(mat, index, start)
        if isinstance(value, _Matrix):
            value = value.values
        val = np.asarray(value, dtype=float)
        try:
            mat[np.ix_(rows, cols)] = val
        except ValueError:
            raise self.fail(
                f"cannot assign a {val.shape} value to a {len(rows)} x {len(cols)} slice of {key}", start
            ) from None
        self.s.modified.append(f"line {start.line}: {self.lines[start.line - 1].strip().rstrip(';')}")

    def resolve_index(self, mat: np.ndarray, index: list, start: _Tok) -> tuple[np.ndarray, np.ndarray]:
        if mat.ndim != 2 or len(index) != 2:
            raise self.fail("only two-dimensional indexing (rows, columns) is supported", start)
        out = []
        for k, ix in enumerate(index):
            size = mat.shape[k]
            if isinstance(ix, str) and ix == ":":
                out.append(np.arange(size))
                continue
            arr = np.atleast_1d(np.asarray(ix, dtype=float)).ravel()
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 1) or np.any(arr > size):
                raise self.fail(f"index {arr.tolist()} outside 1..{size}", start)
            out.append(arr.astype(int) - 1)
        return out[0], out[1]

    # --- expressions ------------------------------------------------------------------------------
    def index_args(self) -> list:
        args: list = []
        while True:
            if self.peek().text == ":" and self.peek(1).text in (",", ")"):
                self.next()
                args.append(":")
            else:
                args.append(self.value(self.expr()))
            tok = self.next()
            if tok.text == ")":
                return args
            if tok.text != ",":
                raise self.fail("expected ',' or ')' in an index", tok)

    def rhs(self) -> Any:
        tok = self.peek()
        if tok.kind == "str":
            self.next()
            return tok.text
        if tok.text == "[":
            return self.matrix()
        if tok.text == "{":
            return self.cell()
        return self.expr()

    @staticmethod
    def value(v: Any) -> Any:
        return v.values if isinstance(v, _Matrix) else v

    def matrix(self) -> _Matrix:
        """``[ ... ]``: rows split by ``;`` or newlines, elements by ``,`` or whitespace."""
        open_tok = self.next()
        rows: list[list[Any]] = []
        lines: list[int] = []
        row: list[Any] = []
        row_line = open_tok.line
        self.matrix_depth += 1
        while True:
            tok = self.peek()
            if tok.kind == "end":
                raise self.fail("unterminated matrix (missing ']')", open_tok)
            if tok.text == "]" and tok.kind == "op":
                self.next()
                break
            if tok.kind == "nl" or (tok.kind == "op" and tok.text == ";"):
                self.next()
                if row:
                    rows.append(row)
                    lines.append(row_line)
                    row = []
                continue
            if tok.kind == "op" and tok.text == ",":
                self.next()
                continue
            if not row:
                row_line = tok.line
            row.append(self.value(self.expr()))
        self.matrix_depth -= 1
        if row:
            rows.append(row)
            lines.append(row_line)
        if not rows:
            return _Matrix(np.zeros((0, 0)), [])
        try:
            arr = np.vstack([np.hstack([np.atleast_2d(np.asarray(e, dtype=float)) for e in r]) for r in rows])
        except ValueError:
            widths = sorted({len(r) for r in rows})
            bad = next(k for k, r in enumerate(rows) if len(r) != len(rows[0]))
            raise CaseError(
                f"{self.s.where}, line {lines[bad]}: matrix rows of different lengths ({widths}): this row has "
                f"{len(rows[bad])} values, the first row {len(rows[0])}"
            ) from None
        return _Matrix(arr, lines)

    def cell(self) -> list:
        open_tok = self.next()
        items: list = []
        while True:
            tok = self.next()
            if tok.kind == "end":
                raise self.fail("unterminated cell array (missing '}')", open_tok)
            if tok.text == "}" and tok.kind == "op":
                return items
            if tok.kind == "str":
                items.append(tok.text)
            elif tok.kind == "num":
                items.append(float(tok.text))
            elif tok.kind == "nl" or tok.text in (",", ";"):
                continue
            else:
                raise self.fail("a cell array may hold only strings and numbers", tok)

    def _elem_break(self) -> bool:
        """Inside ``[...]``, ``a -b`` is two elements: a +/- with space before and none after starts one."""
        tok = self.peek()
        if self.matrix_depth == 0 or not tok.space_before:
            return False
        return not self.peek(1).space_before

    def expr(self) -> Any:
        left = self.term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-") and not self._elem_break():
            op = self.next().text
            right = self.term()
            left = left + right if op == "+" else left - right
        return left

    def term(self) -> Any:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", ".*", "./"):
            op = self.next()
            right = self.unary()
            if op.text in ("*", "/") and np.ndim(left) > 0 and np.ndim(right) > 0 and np.size(right) > 1:
                raise self.fail("matrix products and divisions are not supported (use .* and ./)", op)
            left = left * right if op.text in ("*", ".*") else left / right
        return left

    def unary(self) -> Any:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.next()
            v = self.unary()
            return -v if tok.text == "-" else v
        return self.power()

    def power(self) -> Any:
        base = self.primary()
        while self.peek().kind == "op" and self.peek().text in ("^", ".^"):
            op = self.next()
            expo = self.unary() if self.peek().text in ("-", "+") else self.primary()
            if op.text == "^" and np.size(base) > 1:
                raise self.fail("matrix power is not supported (use .^)", op)
            base = np.power(base, expo) if np.ndim(base) or np.ndim(expo) else base**expo
        return base

    def primary(self) -> Any:
        tok = self.next()
        if tok.kind == "num":
            return float(tok.text)
        if tok.text == "(" and tok.kind == "op":
            saved, self.matrix_depth = self.matrix_depth, 0
            v = self.expr()
            self.matrix_depth = saved
            self.expect(")")
            return v
        if tok.text == "[" and tok.kind == "op":
            self.p -= 1
            return self.matrix().values
        if tok.kind != "name":
            raise self.fail(f"unexpected {tok.text or 'end of file'!r} in an expression", tok)
        name = tok.text
        if name == self.s.struct and self.peek().text == "." and self.peek(1).kind == "name":
            self.next()
            fld = self.next().text
            if fld not in self.s.fields:
                raise self.fail(f"{name}.{fld} is used before it is defined", tok)
            return self.maybe_index(self.s.fields[fld], f"{name}.{fld}", tok)
        if name in _FUNCS and self.peek().text == "(":
            self.next()
            saved, self.matrix_depth = self.matrix_depth, 0
            arg = self.expr()
            self.matrix_depth = saved
            self.expect(")")
            return _FUNCS[name](arg)
        if name in self.s.variables:
            return self.maybe_index(self.s.variables[name], name, tok)
        if name in _BUILTINS:
            return _BUILTINS[name]
        raise self.fail(f"unknown name {name!r}", tok)

    def maybe_index(self, val: Any, label: str, tok: _Tok) -> Any:
        if self.peek().text != "(" or self.peek().space_before and self.matrix_depth:
            return val
        if not isinstance(val, np.ndarray):
            raise self.fail(f"{label} is not a matrix and cannot be indexed", tok)
        self.next()
        saved, self.matrix_depth = self.matrix_depth, 0
        index = self.index_args()
        self.matrix_depth = saved
        rows, cols = self.resolve_index(val, index, tok)
        out = val[np.ix_(rows, cols)].copy()
        return float(out[0, 0]) if out.size == 1 else out


def _evaluate(path: Path) -> _State:
    """Run the case file's statements; return the fields and variables it defines."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaseError(f"{where}: cannot read the MATPOWER file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # comments with accented names in older case files
    state = _State(where=where)
    _Parser(_tokenize(text, where), state, text.splitlines()).run()
    if state.struct is None and state.outputs:  # version 1: bare variables are the fields
        for name in state.outputs:
            if name in state.variables:
                state.fields[name] = state.variables[name]
    return state


# --------------------------------------------------------------------------------------------------
# Matrices -> Network
# --------------------------------------------------------------------------------------------------
def read_matpower(path: str | Path) -> Network:
    """Read a MATPOWER ``.m`` case into a :class:`Network` in physical units (balanced three-phase).

    Buses are named by their MATPOWER number. The slack bus (type 3) holds the :class:`Source` at its
    generator's Vg; other in-service generators become ``Der(kind="generator")`` at their (Pg, Qg).
    Branches with status 0 (ties) are kept with ``normally_open=True``; a non-zero ratio makes a
    transformer with that tap. Bus Bs becomes a :class:`Shunt`, Gs a constant-impedance load. MATPOWER
    loads are constant power at every voltage, so their ``vminpu`` is 0 and ``vmaxpu`` infinite.
    Raises :class:`CaseError` (naming file and line) on anything it cannot interpret.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise CaseError(f"{path}: MATPOWER file not found")
    st = _evaluate(path)
    where = str(path)
    notes: list[str] = []

    def line_of(fld: str, row: int) -> str:
        lines = st.row_lines.get(fld)
        return f", line {lines[row]}" if lines and row < len(lines) else ""

    base_mva = st.fields.get("baseMVA")
    if not isinstance(base_mva, float) or not (math.isfinite(base_mva) and base_mva > 0):
        raise CaseError(f"{where}: baseMVA missing or not a positive number")
    mats: dict[str, np.ndarray] = {}
    for fld, ncol in _MIN_COLS.items():
        m = st.fields.get(fld)
        if not isinstance(m, np.ndarray) or m.ndim != 2 or m.shape[0] == 0:
            raise CaseError(f"{where}: mpc.{fld} missing or empty")
        if m.shape[1] < ncol:
            raise CaseError(f"{where}{line_of(fld, 0)}: mpc.{fld} has {m.shape[1]} columns, needs at least {ncol}")
        bad = np.argwhere(~np.isfinite(m[:, :ncol]))
        if len(bad):
            r, c = bad[0]
            raise CaseError(f"{where}{line_of(fld, r)}: mpc.{fld} row {r + 1} column {c + 1} is not finite")
        mats[fld] = m
    bus, gen, branch = mats["bus"], mats["gen"], mats["branch"]

    # --- buses ------------------------------------------------------------------------------------
    buses: dict[str, Bus] = {}
    row_of: dict[int, int] = {}
    isolated: set[str] = set()
    slack: list[int] = []
    for r, row in enumerate(bus):
        num = row[0]
        if num != round(num) or num < 1:
            raise CaseError(f"{where}{line_of('bus', r)}: bus number {num:g} is not a positive integer")
        if int(num) in row_of:
            raise CaseError(f"{where}{line_of('bus', r)}: bus {int(num)} defined twice")
        row_of[int(num)] = r
        btype = int(row[1])
        if btype not in (1, 2, 3, 4):
            raise CaseError(f"{where}{line_of('bus', r)}: bus {int(num)} has type {row[1]:g} (1..4 expected)")
        kv = row[9]
        if not kv > 0:
            raise CaseError(
                f"{where}{line_of('bus', r)}: bus {int(num)} has baseKV {kv:g}; physical units need a positive baseKV"
            )
        name = str(int(num))
        if btype == 4:
            isolated.add(name)
            continue
        if btype == 3:
            slack.append(r)
        buses[name] = Bus(name=name, kv_ln=kv / math.sqrt(3), phases=(1, 2, 3))
    if isolated:
        notes.append(f"{len(isolated)} isolated bus(es) (type 4) dropped with their loads and branches")
    if len(slack) != 1:
        raise CaseError(f"{where}: a radial feeder needs exactly one slack bus (type 3), found {len(slack)}")
    slack_name = str(int(bus[slack[0], 0]))

    def bus_ref(fld: str, r: int, value: float, what: str) -> str:
        if value != round(value) or int(value) not in row_of:
            raise CaseError(f"{where}{line_of(fld, r)}: {what} {value:g} is not a bus of mpc.bus")
        return str(int(value))

    # --- loads and shunts ---------------------------------------------------------------------------
    loads: list[Load] = []
    shunts: list[Shunt] = []
    for r, row in enumerate(bus):
        name = str(int(row[0]))
        if name in isolated:
            continue
        pd_, qd, gs, bs = row[2:6]
        if pd_ != 0 or qd != 0:
            loads.append(Load(f"load_{name}", name, (1, 2, 3), "wye", pd_ * 1e3, qd * 1e3,
                              (0.0, 0.0, 1.0, 0.0, 0.0, 1.0), vminpu=0.0, vmaxpu=math.inf))  # fmt: skip
        if gs != 0:  # MW consumed at 1 pu: a constant-impedance load
            loads.append(Load(f"gs_{name}", name, (1, 2, 3), "wye", gs * 1e3, 0.0,
                              (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), vminpu=0.0, vmaxpu=math.inf))  # fmt: skip
        if bs != 0:  # MVAr injected at 1 pu
            shunts.append(Shunt(f"shunt_{name}", name, (1, 2, 3), "wye", bs * 1e3, buses[name].kv_ln))
    if any(ld.name.startswith("gs_") for ld in loads):
        notes.append("bus shunt conductance Gs became constant-impedance loads (gs_<bus>)")

    # --- generators ---------------------------------------------------------------------------------
    ders: list[Der] = []
    source_pu: float | None = None
    for r, row in enumerate(gen):
        b = bus_ref("gen", r, row[0], "generator bus")
        if row[7] <= 0 or b in isolated:
            continue
        if b == slack_name:
            if source_pu is None:
                source_pu = float(row[5])
            elif abs(row[5] - source_pu) > 1e-9:
                raise CaseError(f"{where}{line_of('gen', r)}: generators at the slack bus {b} disagree on Vg")
            continue
        kva = math.hypot(row[8], max(abs(row[3]), abs(row[4]))) * 1e3
        ders.append(Der(f"gen{r + 1}", "generator", b, (1, 2, 3), kw=row[1] * 1e3,
                        kva=max(kva, math.hypot(row[1], row[2]) * 1e3), kvar=row[2] * 1e3))  # fmt: skip
        if int(bus[row_of[int(row[0])], 1]) == 2:
            notes.append(f"generator gen{r + 1} at PV bus {b}: fixed injection at its Pg, Qg (Vg {row[5]:g} not held)")
    if source_pu is None:
        source_pu = float(bus[slack[0], 7])
        notes.append(f"no in-service generator at the slack bus {slack_name}: source voltage from its Vm")
    if not (0.5 <= source_pu <= 1.5):
        raise CaseError(f"{where}: source voltage {source_pu:g} pu at the slack bus is outside 0.5..1.5")
    source = Source(bus=slack_name, kv_ll=float(bus[slack[0], 9]), pu=source_pu, angle_deg=float(bus[slack[0], 8]))

    # --- branches -----------------------------------------------------------------------------------
    branches: list[Branch] = []
    seen: dict[tuple[str, str], int] = {}
    n_open = n_xf = 0
    eye = np.eye(3)
    for r, row in enumerate(branch):
        f = bus_ref("branch", r, row[0], "from bus")
        t = bus_ref("branch", r, row[1], "to bus")
        if f == t:
            raise CaseError(f"{where}{line_of('branch', r)}: branch connects bus {f} to itself")
        if f in isolated or t in isolated:
            continue
        rr, xx, bb, rate, ratio, shift, status = row[2], row[3], row[4], row[5], row[8], row[9], row[10]
        if shift != 0:
            raise CaseError(
                f"{where}{line_of('branch', r)}: branch {f}-{t} has phase shift {shift:g} deg; phase shifters "
                "are not supported"
            )
        if ratio < 0:
            raise CaseError(f"{where}{line_of('branch', r)}: branch {f}-{t} has negative ratio {ratio:g}")
        z_base = buses[t].kv_ln**2 * 3 / base_mva  # ohm, (kV_LL)^2 / MVA on the to-bus base
        key = (f, t)
        seen[key] = seen.get(key, 0) + 1
        name = f"{f}-{t}" if seen[key] == 1 else f"{f}-{t}-{seen[key]}"
        kind = "transformer" if ratio != 0 else "line"
        n_xf += kind == "transformer"
        n_open += status == 0
        branches.append(
            Branch(
                name=name, kind=kind, bus1=f, bus2=t, phases=(1, 2, 3),
                z_ohm=eye * complex(rr, xx) * z_base,
                y_shunt_s=eye * complex(0.0, bb) / z_base,
                tap=np.full(3, ratio if ratio != 0 else 1.0),
                kva=rate * 1e3 if rate > 0 else math.nan,
                normally_open=bool(status == 0),
            )  # fmt: skip
        )
    if n_open:
        notes.append(f"{n_open} branch(es) with status 0 (ties) kept as normally open")
    if n_xf:
        notes.append(f"{n_xf} transformer branch(es) (ratio != 0): tap at the from bus, impedance on the to-bus base")
    if st.modified:
        notes.append("unit conversions the file applies to its matrices: " + "; ".join(st.modified))
    notes.append(
        f"MATPOWER gives no frequency: {DEFAULT_FREQUENCY_HZ:g} Hz assumed (it only turns line charging into capacitance)"
    )

    return Network(
        name=st.function_name or path.stem,
        path=path,
        fmt="matpower",
        source=source,
        frequency_hz=DEFAULT_FREQUENCY_HZ,
        buses=buses,
        branches=branches,
        loads=loads,
        shunts=shunts,
        ders=ders,
        profiles={},
        notes=notes,
    )
