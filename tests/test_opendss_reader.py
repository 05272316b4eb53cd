"""read_opendss on the public IEEE feeders and on small hand-written circuits.

Every count and total is compared with what OpenDSS itself reports for the same compiled circuit (read
right after read_opendss, which leaves the circuit compiled), and with the figures of
shared/reference/feeders/README.md. Feeders come from ``shared/reference/feeders`` in the nearest parent
folder of the repository that has one; the tests that need them skip when it is absent.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mpdopf_pyomo import network
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network import read_opendss

REPO = Path(__file__).resolve().parents[1]


def _feeders() -> Path | None:
    for parent in REPO.parents:
        cand = parent / "shared" / "reference" / "feeders"
        if cand.is_dir():
            return cand
    return None


FEEDERS = _feeders()
needs_feeders = pytest.mark.skipif(FEEDERS is None, reason="shared/reference/feeders not found beside the repository")
MASTERS = {
    "ieee13": "ieee13/opendss/IEEE13Nodeckt.dss",
    "ieee34": "ieee34/opendss/ieee34Mod1.dss",
    "ieee123": "ieee123/opendss/IEEE123Master.dss",
    "ieee8500": "ieee8500/opendss/Master.dss",
    "ieee9500": "ieee9500/opendss/ieee9500_base.dss",
}
#: From shared/reference/feeders/README.md: buses, Line objects, loads, capacitors, RegControls, switches.
README = {
    "ieee13": (16, 12, 15, 2, 3, 1),
    "ieee34": (37, 32, 68, 2, 6, 0),
    "ieee123": (132, 126, 91, 4, 7, 8),
    "ieee8500": (4876, 3703, 1177, 10, 12, 38),
    "ieee9500": (5294, 4018, 1275, 10, 18, 109),
}


def _truth() -> dict:
    """What OpenDSS reports for the circuit compiled now (enabled elements)."""
    dss = network.engine()

    def each(iface, *getters):
        out = []
        i = iface.First()
        while i:
            out.append(tuple(g() for g in getters))
            i = iface.Next()
        return out

    loads = each(dss.Loads, dss.Loads.kW, dss.Loads.kvar)
    lines = each(dss.Lines, dss.Lines.Name, dss.Lines.IsSwitch)
    return dict(
        buses=dss.Circuit.NumBuses(), lines=len(lines), switches=sum(s for _, s in lines),
        loads=len(loads), kw=sum(p for p, _ in loads), kvar=sum(q for _, q in loads),
        transformers=dss.Transformers.Count(), capacitors=dss.Capacitors.Count(),
        cap_kvar=sum(k for (k,) in each(dss.Capacitors, dss.Capacitors.kvar)),
        regulated={t.lower() for (t,) in each(dss.RegControls, dss.RegControls.Transformer)},
        pv_kw=sum(k for (k,) in each(dss.PVsystems, dss.PVsystems.Pmpp)),
        pvs=dss.PVsystems.Count(), storages=dss.Storages.Count(), generators=dss.Generators.Count(),
        gen_kw=sum(k for (k,) in each(dss.Generators, dss.Generators.kW)),
    )


_CACHE: dict[str, tuple] = {}


def _read(name: str, active: bool = False):
    """(Network, OpenDSS truth, read seconds), read once per test session; ``active``: the feeder is also
    the circuit compiled in OpenDSS on return (for tests that query OpenDSS next)."""
    if FEEDERS is None:
        pytest.skip("shared/reference/feeders not found beside the repository")
    if name not in _CACHE:
        t0 = time.perf_counter()
        net = read_opendss(FEEDERS / MASTERS[name])
        dt = time.perf_counter() - t0
        _CACHE[name] = (net, _truth(), dt)
    elif active and network.engine().Circuit.Name().lower() != _CACHE[name][0].name:
        network.compile_model(FEEDERS / MASTERS[name])
    return _CACHE[name]


def _members(net, kinds) -> list[str]:
    return [e for b in net.branches if b.kind in kinds for e in (b.elements or (b.name,))]


@needs_feeders
@pytest.mark.parametrize("name", list(MASTERS))
def test_counts_and_totals_equal_opendss(name):
    net, truth, dt = _read(name)
    n_bus, n_lines, n_loads, n_caps, n_regctl, n_sw = README[name]
    assert len(net.buses) == truth["buses"] == n_bus
    lines = _members(net, ("line", "switch"))
    assert len(lines) == len(set(lines)) == truth["lines"]
    assert len(_members(net, ("switch",))) == truth["switches"] == n_sw
    disabled = n_lines - truth["lines"]  # the 8500's five disabled ties
    assert disabled == (5 if name == "ieee8500" else 0)
    xf = _members(net, ("transformer", "regulator"))
    assert len(xf) == truth["transformers"]
    assert set(_members(net, ("regulator",))) == truth["regulated"]
    assert len(net.loads) == truth["loads"] == n_loads
    assert sum(ld.kw for ld in net.loads) == pytest.approx(truth["kw"], rel=1e-12)
    assert sum(ld.kvar for ld in net.loads) == pytest.approx(truth["kvar"], rel=1e-12)
    caps = [s for s in net.shunts if s.kvar > 0]
    assert len(caps) == truth["capacitors"] == n_caps
    assert sum(s.kvar for s in caps) == pytest.approx(truth["cap_kvar"], rel=1e-12)
    kinds = Counter(d.kind for d in net.ders)
    assert (kinds["pv"], kinds["battery"], kinds["generator"]) == (truth["pvs"], truth["storages"], truth["generators"])
    assert sum(d.kw for d in net.ders if d.kind == "pv") == pytest.approx(truth["pv_kw"])
    assert sum(d.kw for d in net.ders if d.kind == "generator") == pytest.approx(truth["gen_kw"])
    regctl_notes = [n for n in net.notes if n.startswith("RegControl ")]
    assert len(regctl_notes) == len({b.name for b in net.branches if b.kind == "regulator"})
    assert sum(n.split(" on ")[0].count(",") + 1 for n in regctl_notes) == n_regctl
    assert all(b.kv_ln > 0 for b in net.buses.values())
    # every branch endpoint is a bus; the closed branches form a radial tree reaching every bus
    import pandas as pd

    closed = [b for b in net.branches if not b.normally_open]
    df = pd.DataFrame({"bus1": [b.bus1 for b in closed], "bus2": [b.bus2 for b in closed]},
                      index=[b.name for b in closed])
    tree = network.build_tree(df, list(net.buses), net.source.bus, name)
    assert len(tree) == len(net.buses) - 1
    for b in net.branches:
        n = len(b.phases)
        assert b.z_ohm.shape == b.y_shunt_s.shape == (n, n) and b.tap.shape == (n,)
    print(f"{name}: read in {dt:.2f} s")
    assert dt < 20  # a few seconds on an idle machine (9500: ~2.5 s, most of it the model's own Solve)


@needs_feeders
def test_ieee13_phases_of_laterals_and_nominal_loads():
    net, _, _ = _read("ieee13")
    br = {b.name: b for b in net.branches}
    assert br["684652"].phases == (1,) and br["684611"].phases == (3,)
    assert br["671684"].phases == (1, 3)
    assert br["632645"].phases == (3, 2)  # bus node order as written: Bus1=632.3.2
    assert net.buses["652"].phases == (1,) and net.buses["611"].phases == (3,)
    assert br["671692"].kind == "switch"
    assert sum(ld.kw for ld in net.loads) == pytest.approx(3466.0)
    assert {ld.name: ld.zip for ld in net.loads}["671"] == (0, 0, 1, 0, 0, 1)
    assert {ld.name: ld.conn for ld in net.loads}["692"] == "delta"


@needs_feeders
def test_ieee13_transformer_impedance_referred_to_bus2_by_hand():
    """XFM1: 500 kVA, 4.16/0.48 kV, %R = 0.55 + 0.55, XHL = 2 %: z = (1.1 + 2j) % x 0.48^2 / 0.5 MVA."""
    net, _, _ = _read("ieee13")
    br = {b.name: b for b in net.branches}
    xfm1 = br["xfm1"]
    z = (0.011 + 0.02j) * 0.48**2 / 0.5
    assert xfm1.kind == "transformer" and xfm1.phases == (1, 2, 3) and xfm1.kva == 500
    np.testing.assert_allclose(xfm1.z_ohm, np.eye(3) * z, rtol=1e-12)
    np.testing.assert_allclose(xfm1.tap, 1.0, rtol=1e-9)
    sub = br["sub"]  # 115 kV delta / 4.16 kV wye, 5000 kVA, impedance divided by 1000 in the model
    assert sub.conn == ("delta", "wye")
    np.testing.assert_allclose(sub.z_ohm, np.eye(3) * (0.00001 + 0.00008j) * 4.16**2 / 5, rtol=1e-12)
    assert net.buses["634"].kv_ln == pytest.approx(0.48 / math.sqrt(3))


@needs_feeders
def test_ieee13_regulator_bank_at_its_present_taps():
    """Reg1-3 (one bank, 650 -> rg60) become one regulator branch; tap = 1 / winding-2 tap (|V1|/|V2|)."""
    net, _, _ = _read("ieee13", active=True)
    dss = network.engine()
    reg = next(b for b in net.branches if b.kind == "regulator")
    assert (reg.bus1, reg.bus2, reg.phases, reg.elements) == ("650", "rg60", (1, 2, 3), ("reg1", "reg2", "reg3"))
    want = []
    for name in reg.elements:
        dss.Transformers.Name(name)
        dss.Transformers.Wdg(2)
        want.append(1.0 / dss.Transformers.Tap())
    np.testing.assert_allclose(reg.tap, want, rtol=1e-12)
    # the model's Solve moved the taps off neutral (tap 9 = 1 + 9 x 0.00625 on phase A)
    assert reg.tap[0] == pytest.approx(1 / 1.05625)
    # XHL = 0.01 %, %LoadLoss = 0.01 (R of both windings), 1666 kVA, 2.4 kV at winding 2's tap: OpenDSS
    # scales a winding's impedance base with its tap (the faithful export's 1e-9 pu agreement needs it)
    np.testing.assert_allclose(np.diag(reg.z_ohm), (0.0001 + 0.0001j) * (2.4 / np.asarray(want)) ** 2 * 1000 / 1666,
                               rtol=1e-9)


@needs_feeders
def test_line_impedance_equals_opendss_primitive_admittance():
    """z_ohm (R, X matrices x length) is the inverse of the series block of the line's own Yprim, and
    y_shunt_s the two shunt blocks: the units are OpenDSS's, whatever each line's `units`."""
    net, _, _ = _read("ieee123", active=True)
    dss = network.engine()
    checked = 0
    for b in net.branches:
        if b.kind not in ("line", "switch"):
            continue
        dss.Circuit.SetActiveElement(f"Line.{b.name}")
        y = np.asarray(dss.CktElement.YPrim(), dtype=float)
        n = len(b.phases)
        y = (y[0::2] + 1j * y[1::2]).reshape(2 * n, 2 * n)
        ys = -y[:n, n:]
        np.testing.assert_allclose(np.linalg.inv(ys), b.z_ohm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(2 * (y[:n, :n] - ys), b.y_shunt_s, rtol=1e-6, atol=1e-12)
        checked += 1
    assert checked == 126


@needs_feeders
def test_ieee123_regulators_switches_and_delta_transformer():
    net, _, _ = _read("ieee123")
    kinds = Counter(b.kind for b in net.branches)
    assert kinds == {"line": 118, "switch": 8, "regulator": 4, "transformer": 1}
    regs = {b.name: b for b in net.branches if b.kind == "regulator"}
    assert regs["reg3a"].phases == (1, 3) and regs["reg3a"].elements == ("reg3a", "reg3c")
    assert regs["reg2a"].phases == (1,)
    xfm1 = next(b for b in net.branches if b.kind == "transformer")
    assert xfm1.conn == ("delta", "delta") and (xfm1.bus1, xfm1.bus2) == ("61s", "610")
    zips = Counter(ld.zip for ld in net.loads)
    assert set(zips) == {(0, 0, 1, 0, 0, 1), (1, 0, 0, 1, 0, 0), (0, 1, 0, 0, 1, 0)}  # models 1, 2, 5


@needs_feeders
def test_ieee8500_centre_tap_transformer_and_reactor():
    """T21396254A (CT15): 7.2 / 0.12 / 0.12 kV, 15 kVA, %R = 0.6, 1.2, 1.2, XHL = XHT = 2.04, XLT = 1.36:
    Z = Zh + (Zl + Zt)/4 = (0.6 + 0.6) + j(2.04 - 1.36/4) % on 15 kVA, referred to 120 V."""
    net, _, _ = _read("ieee8500")
    br = {b.name: b for b in net.branches}
    ct = br["t21396254a"]
    assert ct.center_tap and ct.kind == "transformer" and ct.phases == (1,) and ct.phases2 == (1, 2)
    assert (ct.bus1, ct.bus2) == ("l2804253", "x2804253a")
    z = (0.012 + 0.017j) * 0.12**2 * 1000 / 15
    np.testing.assert_allclose(ct.z_ohm, [[z]], rtol=1e-12)
    # off-nominal only through the bus bases: 7.2 kV on a 12.47/sqrt(3) base, 0.12 kV on 0.208/sqrt(3)
    assert ct.tap[0] == pytest.approx((7.2 / (12.47 / math.sqrt(3))) / (0.12 / (0.208 / math.sqrt(3))))
    assert net.buses["x2804253a"].kv_ln == pytest.approx(0.12009, rel=1e-4)  # 0.208 kV / sqrt(3)
    assert sum(b.center_tap for b in net.branches) == 1177
    reactors = [b for b in net.branches if b.kind == "reactor"]
    assert len(reactors) == 1 and reactors[0].z_ohm.shape == (3, 3)
    assert any("centre-tap" in n for n in net.notes) and any("5 disabled line" in n for n in net.notes)


@needs_feeders
def test_ieee9500_reads_from_any_working_directory(tmp_path, monkeypatch):
    """The 9500 ends with a relative `uuids` command; it compiles from elsewhere and the cwd is unchanged.
    Its own Solve does not converge on this DSS C-API: reading still works and says so."""
    monkeypatch.chdir(tmp_path)
    net, _, _ = _read("ieee9500")
    assert Path.cwd() == tmp_path
    kinds = Counter(d.kind for d in net.ders)
    assert kinds == {"pv": 178, "generator": 9, "battery": 2}
    bat = next(d for d in net.ders if d.kind == "battery")
    # kva=250 kwhrated=500 kwhstored=500 and no kWrated: OpenDSS's default kWrated is 25 kW
    assert (bat.kw, bat.kva, bat.kwh, bat.kwh_stored) == (25.0, 250.0, 500.0, 500.0)
    assert bat.phases == (1, 2, 3)
    assert sum(b.normally_open for b in net.branches) == 11
    assert any("did not converge" in n for n in net.notes)
    assert Counter(b.kind for b in net.branches)["regulator"] == 6


def test_bundled_ieee123_converts_exactly():
    """The hand-made balanced model goes through the reduction unchanged: nothing approximated, every branch
    the positive-sequence r, x of its line on the 4.16 kV base, no taps, no shunts, constant-power loads,
    the kW=0 generators' kvar as the fixed capacitor injections (the old strict reader's tables)."""
    from mpdopf_pyomo.case import load_case

    model = REPO / "models" / "ieee123" / "master.dss"
    case = load_case("ieee123", warn=None)
    net = read_opendss(model)
    assert case.conversion.entries == []
    lines = {b.name: b for b in net.branches}
    assert set(case.branches.index) == set(lines)
    for name, row in case.branches.iterrows():
        z = lines[name].z_ohm
        z1 = (np.trace(z) / 3 - (z.sum() - np.trace(z)) / 6) / case.bases.z_ohm
        assert (row["r"], row["x"]) == pytest.approx((z1.real, z1.imag), rel=1e-12)
        assert {row["from_bus"], row["to_bus"]} == {lines[name].bus1, lines[name].bus2}
    assert (case.branches["tap"] == 1.0).all() and (case.buses["b_shunt"] == 0).all()
    assert (case.buses[["p_zip_p", "q_zip_p"]] == 1.0).all().all()
    s = case.bases.s_kva
    assert case.buses["p_load"].sum() * s == pytest.approx(sum(ld.kw for ld in net.loads), rel=1e-12)
    assert case.buses["q_load"].sum() * s == pytest.approx(sum(ld.kvar for ld in net.loads), rel=1e-12)
    caps = {d.bus: d.kvar for d in net.ders}
    assert {b: q * s for b, q in case.buses["q_cap"].items() if q} == pytest.approx(caps, rel=1e-12)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.dss"
    path.write_text("Clear\nNew Circuit.t basekV=12.47 bus1=src pu=1.0 R1=0 X1=1e-6\n" + body)
    return path


def test_all_unsupported_elements_in_one_error(tmp_path):
    path = _write(tmp_path, """
New Line.l1 bus1=src bus2=b phases=3 r1=0.1 x1=0.2 length=1
New Isource.i1 bus1=b amps=1
New Fault.f1 bus1=b
New Fault.f2 bus1=src
New Load.ok bus1=b kW=10 kvar=1 kV=12.47
New Vsource.second bus1=b basekV=12.47
New Line.l4 bus1=b.1.2.3.4 bus2=c.1.2.3.4 phases=4 length=1
""")
    with pytest.raises(CaseError) as err:
        read_opendss(path)
    msg = str(err.value)
    assert msg.count("\n") == 0 and "5 element(s) cannot be represented" in msg
    assert "Isource (1: i1)" in msg and "Fault (2: f1, f2)" in msg and "second source" in msg and "neutral" in msg


def test_load_models_and_shapes(tmp_path):
    path = _write(tmp_path, """
New Line.l1 bus1=src bus2=b phases=3 r1=0.1 x1=0.2 length=1
New Loadshape.q15 npts=8 minterval=15 mult=[1 2 3 4 0.5 0.5 0.5 0.5]
New Loadshape.h npts=3 interval=1 mult=[0.2 0.4 0.6]
New Load.m1 bus1=b kW=10 kvar=1 kV=12.47 model=1 daily=q15
New Load.m2 bus1=b.2 phases=1 kW=10 kvar=1 kV=7.2 model=2 yearly=h
New Load.m3 bus1=b kW=10 kvar=1 kV=12.47 model=3
New Load.m4 bus1=b kW=10 kvar=1 kV=12.47 model=4 CVRwatts=0.8 CVRvars=3
New Load.m5 bus1=b.1.3 phases=1 conn=delta kW=10 kvar=1 kV=12.47 model=5 vminpu=0.9
New Load.m8 bus1=b kW=10 kvar=1 kV=12.47 model=8 ZIPV=[0.2 0.3 0.5 0.1 0.1 0.8 0.6]
Set VoltageBases=[12.47]
CalcVoltageBases
""")
    net = read_opendss(path)
    ld = {x.name: x for x in net.loads}
    assert ld["m1"].zip == (0, 0, 1, 0, 0, 1) and ld["m2"].zip == (1, 0, 0, 1, 0, 0)
    assert ld["m3"].zip == (0, 0, 1, 1, 0, 0) and ld["m5"].zip == (0, 1, 0, 0, 1, 0)
    assert ld["m4"].zip == pytest.approx((0, 0.8, 0.2, 2, -1, 0))  # value and slope of V^0.8, V^3 at 1 pu
    assert ld["m8"].zip == pytest.approx((0.2, 0.3, 0.5, 0.1, 0.1, 0.8))
    assert ld["m2"].phases == (2,) and ld["m5"].phases == (1, 3) and ld["m5"].conn == "delta"
    assert ld["m5"].vminpu == 0.9 and ld["m2"].kv_rated == 7.2
    assert (ld["m1"].shape, ld["m2"].shape, ld["m3"].shape) == ("q15", "h", None)
    np.testing.assert_allclose(net.profiles["q15"], [2.5, 0.5])
    np.testing.assert_allclose(net.profiles["h"], [0.2, 0.4, 0.6])
    assert "default" not in net.profiles
    assert any("q15 (8 points -> 2 h)" in n for n in net.notes)
    assert any("model 4" in n for n in net.notes)


def test_bases_derived_without_voltage_bases_and_centre_tap_drop_matches_opendss(tmp_path):
    """No Set VoltageBases: bases come from the source and the transformer ratios (noted). The centre-tap
    impedance Zh + (Zl + Zt)/4 gives OpenDSS's own secondary voltage for a load across 240 V."""
    path = _write(tmp_path, """
New Transformer.ct phases=1 windings=3 wdg=1 bus=src.1 kv=7.2 kVA=15 wdg=2 bus=x.1.0 kv=0.12 kVA=15
~ wdg=3 bus=x.0.2 kv=0.12 kVA=15 %imag=0 %Rs=[0.6 1.2 1.2] %noloadloss=0 Xhl=2.04 Xht=2.04 Xlt=1.36
New Load.s phases=1 bus1=x.1.2 kV=0.24 kW=10 pf=1 model=2
New Line.l1 bus1=src bus2=m phases=3 r1=0.1 x1=0.2 length=1
New Transformer.t2 phases=3 windings=2 buses=[m n] kVs=[12.47 4.16] kVA=500 XHL=5 %Rs=[0.5 0.5]
""")
    net = read_opendss(path)
    assert net.buses["n"].kv_ln == pytest.approx(4.16 / math.sqrt(3))
    assert net.buses["x"].kv_ln == pytest.approx(12.47 / math.sqrt(3) * 0.12 / 7.2)  # source base x ratio
    assert any("no voltage base" in n for n in net.notes)
    ct = next(b for b in net.branches if b.center_tap)
    z_pu = ct.z_ohm[0, 0] / (0.12**2 * 1000 / 15)  # on 15 kVA, the full winding's 240 V base
    dss = network.engine()
    dss.Solution.Solve()
    assert dss.Solution.Converged()
    dss.Circuit.SetActiveBus("src")
    v1 = abs(complex(*dss.Bus.Voltages()[:2])) / 7200.0
    dss.Circuit.SetActiveBus("x")
    v = dss.Bus.Voltages()
    v12 = abs(complex(v[0], v[1]) - complex(v[2], v[3])) / 240.0
    z_load = (0.24**2 * 1000 / 10) / (0.24**2 * 1000 / 15)
    assert v12 == pytest.approx(v1 / abs(1 + z_pu / z_load), rel=2e-5)


def test_reactors_capacitor_steps_and_switch(tmp_path):
    path = _write(tmp_path, """
New Line.l1 bus1=src bus2=b phases=3 r1=0.1 x1=0.2 c1=10 c0=5 length=2 units=km
New Reactor.shunt bus1=b phases=3 kvar=100 kV=12.47
New Reactor.series bus1=b bus2=c phases=3 R=0.5 X=2
New Capacitor.c2 bus1=c phases=3 numsteps=2 kvar=[100 200] kV=12.47
Edit Capacitor.c2 states=[0 1]
New Capacitor.c1 bus1=c.2 phases=1 kvar=50 kV=7.2
New Line.sw bus1=c bus2=d phases=3 switch=yes
Open Line.sw term=2
Set VoltageBases=[12.47]
CalcVoltageBases
""")
    net = read_opendss(path)
    sh = {s.name: s for s in net.shunts}
    assert (sh["shunt"].kvar, sh["shunt"].kv_ln_rated) == pytest.approx((-100.0, 12.47 / math.sqrt(3)))
    assert (sh["c2"].kvar, sh["c1"].kvar, sh["c1"].phases, sh["c1"].kv_ln_rated) == (200.0, 50.0, (2,), 7.2)
    assert any("c2 (1/2)" in n for n in net.notes)
    br = {b.name: b for b in net.branches}
    assert br["series"].kind == "reactor"
    np.testing.assert_allclose(br["series"].z_ohm, np.eye(3) * (0.5 + 2j), atol=1e-9)
    assert br["sw"].kind == "switch" and br["sw"].normally_open
    # c1 = 10 nF/km, c0 = 5 nF/km over 2 km: positive-sequence susceptance of the total shunt
    y = br["l1"].y_shunt_s
    b1 = (np.trace(y) / 3 - (y.sum() - np.trace(y)) / 6).imag
    assert b1 == pytest.approx(2 * math.pi * 60 * 10e-9 * 2)


def test_cwd_restored_when_compile_fails(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(tmp_path)
    bad = sub / "m.dss"
    bad.write_text("Clear\nNew Circuit.t basekV=12.47 bus1=src\nRedirect missing.dss\n")
    with pytest.raises(CaseError, match="could not compile"):
        read_opendss(bad)
    assert Path.cwd() == tmp_path and os.getcwd() == str(tmp_path)


@needs_feeders
def test_operating_point_taps_are_opendss_snapshot_taps():
    """operating_point=True: the 123's regulators at OpenDSS's own snapshot taps (feeders README, variant A:
    reg1a..reg4c = 6, 0, 2, 0, 10, 4, 6); without it, the compiled model's neutral taps."""
    as_written = {b.name: b for b in _read("ieee123")[0].branches if b.kind == "regulator"}
    assert all(np.all(b.tap == 1.0) for b in as_written.values())
    net = read_opendss(FEEDERS / MASTERS["ieee123"], operating_point=True)
    taps = {}
    for b in net.branches:
        if b.kind == "regulator":
            taps.update(zip(b.elements or (b.name,), b.tap))
    steps = {name: round((1 / t - 1) / 0.00625) for name, t in taps.items()}  # tap = 1 / winding-2 tap
    assert steps == {"reg1a": 6, "reg2a": 0, "reg3a": 2, "reg3c": 0, "reg4a": 10, "reg4b": 4, "reg4c": 6}
    assert any("snapshot operating point" in n for n in net.notes)
