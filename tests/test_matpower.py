"""MATPOWER reader and OpenDSS export: counts, units, published base cases, a hand-checked circuit, bad input.

The published base cases are OpenDSS's own solution of the exported network (balanced, stiff source at
the slack bus's Vg = 1.0 pu); an independent complex backward/forward sweep over the Network checks that
the export is exact (1e-8 pu), so a mismatch against the literature is a data question, not ours.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mpdopf_pyomo import network
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.export import write_opendss
from mpdopf_pyomo.network.matpower import read_matpower
from mpdopf_pyomo.network.model import Network

REPO = Path(__file__).resolve().parents[1]


def _feeders() -> Path | None:
    """``shared/reference/feeders/matpower_radial`` in the nearest parent folder that has it."""
    for parent in REPO.parents:
        cand = parent / "shared" / "reference" / "feeders" / "matpower_radial"
        if cand.is_dir():
            return cand
    return None


FEEDERS = _feeders()
needs_feeders = pytest.mark.skipif(
    FEEDERS is None, reason="shared/reference/feeders/matpower_radial not found beside the repository"
)

TINY = """\
function mpc = tiny
%TINY  three buses, standard MATPOWER units (MW, MVAr, p.u.); every number checked by hand in the test
mpc.version = '2';
mpc.baseMVA = 10;
%	bus_i	type	Pd	Qd	Gs	Bs	area	Vm	Va	baseKV	zone	Vmax	Vmin
mpc.bus = [
	1	3	0	0	0	0	1	1	0	12.47	1	1.1	0.9;
	2	1	0	0	0	0	1	1	0	4.16	1	1.1	0.9;
	3	1	1.0	0.5	0	1.0	1	1	0	4.16	1	1.1	0.9;  % 1 MW + 0.5 MVAr, 1 MVAr capacitor
];
mpc.gen = [
	1	0	0	10	-10	1.02	10	1	10	0;
];
mpc.branch = [ ...
	1	2	0.01	0.06	0	0	0	0	1.05	0	1	-360	360;   % transformer, ratio 1.05
	2	3	2e-2	0.04	0.002	0	0	0	0	0	1	-360	360;   % line with charging
];
"""


def _solve(net: Network, folder: Path) -> tuple[dict[str, float], float]:
    """Export, compile and solve in OpenDSS; (bus voltage magnitudes in pu, total losses in kW)."""
    master = write_opendss(net, folder)
    network.compile_model(master)
    v = network.solve_power_flow()
    return v.to_dict(), network.engine().Circuit.Losses()[0] / 1e3


def _sweep(net: Network, base_mva: float = 10.0) -> dict[str, complex]:
    """Independent radial power flow of a MATPOWER-style Network (complex backward/forward sweep, pu).

    Branch model: ideal transformer 1:tap at bus1, then the series impedance with half the charging at
    each end (MATPOWER's); loads constant power, shunts Y = jB; Gs loads constant impedance.
    """
    s_base = base_mva * 1e3  # kVA
    closed = [b for b in net.branches if not b.normally_open]
    parent = {b.bus2: b for b in closed}
    order = [net.source.bus]
    children: dict[str, list] = {}
    for b in closed:
        children.setdefault(b.bus1, []).append(b)
    for bus in order:
        order.extend(b.bus2 for b in children.get(bus, []))
    assert len(order) == len(net.buses)
    s_load = dict.fromkeys(net.buses, 0j)
    y_load = dict.fromkeys(net.buses, 0j)
    for ld in net.loads:
        if ld.zip[2] == 1.0:
            s_load[ld.bus] += complex(ld.kw, ld.kvar) / s_base
        else:
            y_load[ld.bus] += complex(ld.kw, ld.kvar) / s_base  # drawn S = conj(Y)|V|^2 = (P + jQ)|V|^2
    for sh in net.shunts:
        y_load[sh.bus] -= 1j * sh.kvar / s_base
    for d in net.ders:  # generators: constant-power injections
        s_load[d.bus] -= complex(d.kw, d.kvar) / s_base
    pu = {}
    for b in closed:
        zb = net.buses[b.bus2].kv_ln ** 2 * 3 / base_mva
        pu[b.name] = (b.z_ohm[0, 0] / zb, b.y_shunt_s[0, 0] * zb, b.tap[0])
    v = dict.fromkeys(net.buses, complex(net.source.pu))
    for _ in range(200):
        i_in: dict[str, complex] = {}  # current the bus draws: its loads, shunts and child branches
        i_series: dict[str, complex] = {}  # current through a branch's series impedance, by child bus
        for bus in reversed(order):
            cur = np.conj(s_load[bus] / v[bus]) + np.conj(y_load[bus]) * v[bus]
            for b in children.get(bus, []):
                z, y, tap = pu[b.name]
                c = b.bus2
                i_series[c] = i_in[c] + y / 2 * v[c]
                cur += (i_series[c] + y / 2 * v[bus] / tap) / tap  # secondary current / tap
            i_in[bus] = cur
        new = {net.source.bus: v[net.source.bus]}
        for bus in order[1:]:
            b = parent[bus]
            z, y, tap = pu[b.name]
            new[bus] = new[b.bus1] / tap - z * i_series[bus]
        delta = max(abs(new[k] - v[k]) for k in v)
        v = new
        if delta < 1e-13:
            break
    return v


# ------------------------------------------------------------------------------------------------
@needs_feeders
@pytest.mark.parametrize(
    "case, n_bus, n_closed, n_open, kw, kvar",
    [
        ("case33bw", 33, 32, 5, 3715.0, 2300.0),
        ("case69", 69, 68, 0, 3802.1, 2694.7),
        # case141 stores 14052.5 kVA at pf 0.85: 11944.625 kW + 14052.5 sin(acos 0.85) = 7402.61 kvar
        # (the feeders README rounds it to 7402.7)
        ("case141", 141, 140, 0, 11944.625, 14052.5 * math.sin(math.acos(0.85))),
    ],
)
def test_counts_and_totals(case, n_bus, n_closed, n_open, kw, kvar):
    net = read_matpower(FEEDERS / f"{case}.m")
    assert net.fmt == "matpower" and net.name == case
    assert len(net.buses) == n_bus
    assert sum(not b.normally_open for b in net.branches) == n_closed
    assert sum(b.normally_open for b in net.branches) == n_open
    assert sum(ld.kw for ld in net.loads) == pytest.approx(kw, abs=1e-6)
    assert sum(ld.kvar for ld in net.loads) == pytest.approx(kvar, abs=1e-6)
    assert all(b.kind == "line" for b in net.branches) and not net.shunts and not net.ders
    assert net.source.bus == "1" and net.source.pu == 1.0
    # the file's own trailing conversions were run (kW -> MW and ohm -> pu), and we went back to physical units
    assert any("unit conversions" in n and "BR_R BR_X" in n for n in net.notes)


@needs_feeders
def test_case33bw_branch_in_ohm_as_stored():
    """The file stores r, x in ohm, converts to pu; the Network is back in ohm: the stored numbers."""
    net = read_matpower(FEEDERS / "case33bw.m")
    b = net.branches[0]
    assert (b.bus1, b.bus2) == ("1", "2")
    assert b.z_ohm[0, 0] == pytest.approx(0.0922 + 0.0470j, abs=1e-12)
    assert np.count_nonzero(b.z_ohm) == 3  # diagonal: balanced positive sequence
    tie = [b for b in net.branches if b.normally_open]
    assert [(t.bus1, t.bus2) for t in tie] == [("21", "8"), ("9", "15"), ("12", "22"), ("18", "33"), ("25", "29")]
    assert net.buses["18"].kv_ln == pytest.approx(12.66 / math.sqrt(3))
    assert {ld.bus: ld.kw for ld in net.loads}["30"] == pytest.approx(200.0)
    assert {ld.bus: ld.kvar for ld in net.loads}["30"] == pytest.approx(600.0)


@pytest.mark.parametrize("origin", ["bundled", "source"])
@pytest.mark.parametrize(
    "case, loss_kw, loss_tol, bus, v_pu",
    [
        # Baran & Wu 1989 / MATPOWER: 202.68 kW, 0.9131 pu at bus 18 (slack at 1.0 pu). OpenDSS: 202.677 kW.
        ("case33bw", 202.68, 0.1, "18", 0.9131),
        # Published 224.96 kW, 0.9092 pu at bus 65. OpenDSS (and the sweep below, to 1e-8 pu) give 224.99 kW
        # for this data (MATPOWER v2: BASE_KV 12.66 kV): the published figure is 0.03 kW (0.013 %) lower,
        # within the literature's rounding of the data and of its iterative solutions.
        ("case69", 224.96, 0.05, "65", 0.9092),
    ],
)
def test_published_base_cases(tmp_path, origin, case, loss_kw, loss_tol, bus, v_pu):
    """The published base case, from our bundled file (always) and from MATPOWER's own file (when present)."""
    if origin == "source":
        if FEEDERS is None:
            pytest.skip("shared/reference/feeders/matpower_radial not found beside the repository")
        path = FEEDERS / f"{case}.m"
    else:
        path = REPO / "models" / case / f"{case}.m"
    net = read_matpower(path)
    v, loss = _solve(net, tmp_path / "dss")
    assert loss == pytest.approx(loss_kw, abs=loss_tol)
    assert v[bus] == pytest.approx(v_pu, abs=5e-5)
    assert min(v, key=v.get) == bus  # the published minimum-voltage bus
    # the export is exact: an independent sweep over the Network gives the same voltages
    ref = _sweep(net)
    assert max(abs(abs(ref[b]) - v[b]) for b in ref) < 1e-8


@needs_feeders
@pytest.mark.parametrize("case", ["case33bw", "case69", "case141"])
def test_bundled_network_files_equal_the_source(case):
    """models/<case>/<case>.m (standard units, ours) holds MATPOWER's numbers after the file's own conversion."""
    src = read_matpower(FEEDERS / f"{case}.m")
    ours = read_matpower(REPO / "models" / case / f"{case}.m")
    assert not any("unit conversions" in n for n in ours.notes)  # ours needs none
    assert {b: x.kv_ln for b, x in src.buses.items()} == {b: x.kv_ln for b, x in ours.buses.items()}
    assert [(b.bus1, b.bus2, b.normally_open) for b in src.branches] == [
        (b.bus1, b.bus2, b.normally_open) for b in ours.branches
    ]
    z_src = np.array([b.z_ohm[0, 0] for b in src.branches])
    z_ours = np.array([b.z_ohm[0, 0] for b in ours.branches])
    assert np.max(np.abs(z_ours - z_src) / np.abs(z_src)) < 1e-11  # 12 significant digits
    assert [ld.bus for ld in ours.loads] == [ld.bus for ld in src.loads]
    assert [(ld.kw, ld.kvar) for ld in ours.loads] == [
        (pytest.approx(ld.kw, abs=1e-8), pytest.approx(ld.kvar, abs=1e-8)) for ld in src.loads
    ]


@pytest.mark.parametrize("case", ["case33bw", "case69", "case141"])
def test_bundled_case_placement_follows_its_rule(case):
    """The TOML's PV/battery lists are the 20 %/30 % largest loads, and its area sizes are as its comment says."""
    import re
    import tomllib

    import pandas as pd

    text = (REPO / "cases" / f"{case}.toml").read_text()
    data = tomllib.loads(text)
    net = read_matpower(REPO / data["case"]["network"].replace("../", "", 1))
    loads = sorted(((ld.kw, int(ld.bus)) for ld in net.loads if ld.kw > 0), key=lambda t: (-t[0], t[1]))
    n = len(loads)
    for section, share in (("pv", 0.2), ("battery", 0.3)):
        k = math.floor(share * n + 0.5)
        assert data[section]["buses"] == [str(b) for b in sorted(b for _, b in loads[:k])]
    closed = [b for b in net.branches if not b.normally_open]
    lines = pd.DataFrame(
        {"bus1": [b.bus1 for b in closed], "bus2": [b.bus2 for b in closed]}, index=[b.name for b in closed]
    )
    tree = network.build_tree(lines, list(net.buses), net.source.bus)
    cuts = [network.resolve_branch(tree, pair) for pair in data["areas"]["cut_branches"]]
    sizes = network.assign_areas(tree, net.source.bus, cuts).value_counts().sort_index().tolist()
    stated = re.search(r"Area sizes \(buses\) 1..4: ([\d, ]+)\.", text).group(1)
    assert sizes == [int(x) for x in stated.split(",")]


@needs_feeders
def test_case141_exports_and_solves(tmp_path):
    net = read_matpower(FEEDERS / "case141.m")
    v, loss = _solve(net, tmp_path / "dss")
    ref = _sweep(net)
    assert max(abs(abs(ref[b]) - v[b]) for b in ref) < 1e-8
    assert loss == pytest.approx(632.70, abs=0.01)  # OpenDSS on this data (no published figure in the file)


# ------------------------------------------------------------------------------------------------
def test_tiny_by_hand(tmp_path):
    """Three buses in MW/pu, a 1.05 transformer, line charging and a capacitor: numbers by hand."""
    path = tmp_path / "tiny.m"
    path.write_text(TINY)
    net = read_matpower(path)
    assert not any("unit conversions" in n for n in net.notes)  # a standard file: no conversion applied
    assert net.source.bus == "1" and net.source.pu == 1.02 and net.source.kv_ll == 12.47
    xf, line = net.branches
    assert xf.kind == "transformer" and np.all(xf.tap == 1.05) and line.kind == "line" and np.all(line.tap == 1.0)
    zb = 4.16**2 / 10  # ohm on the to-bus base: kV_LL^2 / MVA = 1.73056
    assert xf.z_ohm[0, 0] == pytest.approx((0.01 + 0.06j) * zb)
    assert line.z_ohm[0, 0] == pytest.approx((0.02 + 0.04j) * zb)
    assert line.y_shunt_s[0, 0] == pytest.approx(0.002j / zb)  # total charging, siemens
    (load,) = net.loads
    assert (load.bus, load.kw, load.kvar, load.zip) == ("3", 1000.0, 500.0, (0, 0, 1, 0, 0, 1))
    (cap,) = net.shunts
    assert (cap.bus, cap.kvar) == ("3", 1000.0) and cap.kv_ln_rated == pytest.approx(4.16 / math.sqrt(3))

    v, loss = _solve(net, tmp_path / "dss")
    ref = _sweep(net)
    for b in ("1", "2", "3"):
        assert v[b] == pytest.approx(abs(ref[b]), abs=1e-9)
    # Hand check of the sweep's result: at bus 3, S = 0.1 + 0.05j pu minus the capacitor's 0.1 |V|^2 and half
    # the charging (0.001 |V|^2); then V2 = V3 + z I, and I at the transformer adds bus 2's charging half.
    v3 = ref["3"]
    i3 = np.conj((0.1 + 0.05j) / v3) + 0.1j * v3 + 0.001j * v3
    v2 = v3 + (0.02 + 0.04j) * i3
    i2 = i3 + 0.001j * v2
    assert abs(v2 - ref["2"]) < 1e-12
    assert abs(1.02 / 1.05 - (v2 + (0.01 + 0.06j) * i2)) < 1e-12
    assert loss == pytest.approx(abs(i2) ** 2 * 0.01 * 1e4 + abs(i3) ** 2 * 0.02 * 1e4, rel=1e-6)


def test_gs_bs_generators_and_v1_format(tmp_path):
    """Version-1 bare-variable file: a PV-bus generator, Gs as a constant-Z load, a negative Bs (reactor)."""
    path = tmp_path / "v1.m"
    path.write_text(
        "function [baseMVA, bus, gen, branch] = v1\n"
        "baseMVA = 100;\n"
        "bus = [1 3 0 0 0 0 1 1.0 0 11 1 1.1 0.9; 2 2 2 1 0.5 -0.3 1 1 0 11 1 1.1 0.9];\n"
        "gen = [1 0 0 10 -10 1.0 100 1 10 0; 2 1.5 0.2 1 -1 1.01 100 1 2 0];\n"
        "branch = [1 2 0.001 0.002 0 0 0 0 0 0 1];\n"
    )
    net = read_matpower(path)
    assert [(ld.name, ld.kw, ld.kvar, ld.zip[0]) for ld in net.loads] == [
        ("load_2", 2000.0, 1000.0, 0.0),
        ("gs_2", 500.0, 0.0, 1.0),
    ]
    assert [(s.name, s.kvar) for s in net.shunts] == [("shunt_2", -300.0)]
    (g,) = net.ders
    assert (g.kind, g.bus, g.kw, g.kvar) == ("generator", "2", 1500.0, 200.0)
    assert any("PV bus 2" in n for n in net.notes)
    v, _ = _solve(net, tmp_path / "dss")
    ref = _sweep(net, base_mva=100.0)
    assert v["2"] == pytest.approx(abs(ref["2"]), abs=1e-8)
    assert "Reactor" in (tmp_path / "dss" / "shunts.dss").read_text()


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, line, words",
    [
        (("	3	1	1.0	0.5	0	1.0", "	3	1	1.0	0.5	0"), 9, "different lengths"),
        (("mpc.baseMVA = 10;", "mpc.baseMVA = 10 +;"), 4, "unexpected ';'"),
        (("];\nmpc.gen", "];\nmpc.bus(:, 3) = foo(2);\nmpc.gen"), 11, "unknown name 'foo'"),
        (("mpc.version = '2';", "if true\nmpc.version = '2';"), 3, "cannot interpret"),
        (("mpc.gen = [", "mpc.bus(1, 20) = 1;\nmpc.gen = ["), 11, "outside 1..13"),
        (("mpc.baseMVA = 10;", "mpc.baseMVA = 10;\nmpc.bus(1, 2) = 1;"), 5, "not a numeric matrix"),
        (("	1	2	0.01", "	1	7	0.01"), 15, "to bus 7 is not a bus"),
        (("	2	3	2e-2", "	2	3 2e-2"), None, None),  # whitespace only: fine
    ],
)
def test_malformed_names_file_and_line(tmp_path, edit, line, words):
    path = tmp_path / "bad.m"
    assert edit[0] in TINY
    path.write_text(TINY.replace(edit[0], edit[1], 1))
    if line is None:
        read_matpower(path)
        return
    with pytest.raises(CaseError) as exc:
        read_matpower(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}, line {line}:") or f"{path}, line {line}:" in msg, msg
    assert words in msg and "\n" not in msg


def test_missing_parts(tmp_path):
    path = tmp_path / "nogen.m"
    path.write_text(TINY.split("mpc.gen")[0])
    with pytest.raises(CaseError, match=r"nogen\.m: mpc\.gen missing"):
        read_matpower(path)
    with pytest.raises(CaseError, match="not found"):
        read_matpower(tmp_path / "absent.m")


def test_export_refuses_a_foreign_folder(tmp_path):
    path = tmp_path / "tiny.m"
    path.write_text(TINY)
    net = read_matpower(path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CaseError, match="not empty"):
        write_opendss(net, other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    ours = tmp_path / "ours"
    write_opendss(net, ours)
    write_opendss(net, ours)  # our own folder: rewritten
    assert (ours / "master.dss").read_text().startswith("! Written by mpdopf_pyomo.network.export")


# ------------------------------------------------------------------------------------------------
@pytest.mark.skip(reason="needs the network package integration (issue 11 step 1, NET)")
@pytest.mark.parametrize(
    "name, n_bus, kw", [("case33bw", 33, 3715.0), ("case69", 69, 3802.1), ("case141", 141, 11944.625)]
)
def test_bundled_cases_load(name, n_bus, kw):
    from mpdopf_pyomo.case import load_case

    case = load_case(name)
    assert len(case.buses) == n_bus
    assert case.buses["p_load"].sum() * case.bases.s_kva == pytest.approx(kw, rel=1e-9)


# ------------------------------------------------------------------------------------------------
def _two_bus(kind: str = "line", tap=(1.0, 1.0, 1.0), loads=()) -> Network:
    """A 12.47 kV source bus and a second bus joined by one branch (a full, balanced 3 x 3 line matrix)."""
    from mpdopf_pyomo.network.model import Branch, Bus, Source

    kv_ln = 12.47 / math.sqrt(3)
    z = np.full((3, 3), 0.1 + 0.4j) + np.eye(3) * (0.2 + 0.5j)  # self 0.3 + 0.9j, mutual 0.1 + 0.4j ohm
    return Network(
        name="two", path=Path("two"), fmt="opendss", source=Source("a", 12.47, 1.0), frequency_hz=60.0,
        buses={"a": Bus("a", kv_ln, (1, 2, 3)), "b": Bus("b", kv_ln, (1, 2, 3))},
        branches=[Branch("ab", kind, "a", "b", (1, 2, 3), z, np.zeros((3, 3), complex), np.array(tap, float))],
        loads=list(loads), shunts=[], ders=[], profiles={}, notes=[],
    )  # fmt: skip


def _phase_pu(bus: str) -> np.ndarray:
    dss = network.engine()
    dss.Circuit.SetActiveBus(bus)
    return np.asarray(dss.Bus.puVmagAngle())[0::2]


def test_export_per_phase_regulator_taps(tmp_path):
    """A regulator with a different tap on each phase: at no load |V_b| = |V_a| / tap on every phase."""
    net = _two_bus("regulator", tap=(1.0, 1.025, 1.05))
    network.compile_model(write_opendss(net, tmp_path / "dss"))
    network.solve_power_flow()
    assert _phase_pu("b") == pytest.approx([1.0, 1 / 1.025, 1 / 1.05], abs=1e-9)
    assert "Transformer.ab_3" in (tmp_path / "dss" / "transformers.dss").read_text()


@pytest.mark.parametrize(
    "zip_", [(0, 0, 1, 0, 0, 1), (1, 0, 0, 1, 0, 0), (0, 1, 0, 0, 1, 0), (0.5, 0.3, 0.2, 0.2, 0.3, 0.5)]
)
def test_export_load_models(tmp_path, zip_):
    """Each ZIP mix draws P0 (z v^2 + i v + p) and likewise Q, at the solved voltage (model 1, 2, 5 or 8)."""
    from mpdopf_pyomo.network.model import Load

    load = Load("l", "b", (1, 2, 3), "wye", 8000.0, 4000.0, tuple(float(x) for x in zip_))
    net = _two_bus(loads=[load])
    network.compile_model(write_opendss(net, tmp_path / "dss"))
    network.solve_power_flow()
    v = _phase_pu("b").mean()
    assert v < 0.98  # a real voltage drop, so the models differ
    dss = network.engine()
    dss.Circuit.SetActiveElement("Load.l")
    powers = np.asarray(dss.CktElement.Powers())
    p, q = powers[0:6:2].sum(), powers[1:6:2].sum()
    zp, ip, pp, zq, iq, pq = zip_
    assert p == pytest.approx(8000.0 * (zp * v**2 + ip * v + pp), rel=1e-6)
    assert q == pytest.approx(4000.0 * (zq * v**2 + iq * v + pq), rel=1e-6)


def test_matlab_subset(tmp_path):
    """CRLF, block comments, define_constants, cell arrays, value semantics, MATLAB's element splitting."""
    from mpdopf_pyomo.network.matpower import _evaluate

    text = (
        TINY.replace("mpc.version = '2';", "mpc.version = '2';\n%{\nanything = [here;\n%}\ndefine_constants;")
        + "mpc.bus_name = {'one'; 'two'; 'it''s three'};\n"
        + "b = mpc.bus; b(:, PD) = 0;\n"  # a copy: mpc.bus keeps its loads
        + "mpc.branch(:, [BR_R, BR_X]) = mpc.branch(:, [BR_R BR_X]) .* 2;\n"
        + "mpc.extra = [1 -2; 1 - 2, +3; -2^2 2^-1; 1.5e-3, .5];\n"
        + "mpc.bus(3, QD) = mpc.bus(3, QD) * sqrt(4) - 1 ...  a continuation\n  + 1;\n"
    ).replace("\n", "\r\n")
    path = tmp_path / "subset.m"
    path.write_text(text, newline="")
    st = _evaluate(path)
    assert st.fields["bus_name"] == ["one", "two", "it's three"]
    assert st.fields["extra"].tolist() == [[1, -2], [-1, 3], [-4, 0.5], [1.5e-3, 0.5]]
    net = read_matpower(path)
    assert net.loads[0].kw == 1000.0 and net.loads[0].kvar == pytest.approx(1000.0)
    assert net.branches[1].z_ohm[0, 0] == pytest.approx((0.04 + 0.08j) * 4.16**2 / 10)
    assert len([n for n in net.notes if "BR_R" in n]) == 1
