"""The three-phase physics against OpenDSS itself: primitive admittances (YPrim) of every series element and
power flows node by node (magnitude and angle), on small unbalanced circuits written here."""

from __future__ import annotations

import numpy as np
import pytest

from mpdopf_pyomo.network import compile_model, engine
from mpdopf_pyomo.network.opendss import _yprim, read_opendss
from mpdopf_pyomo.network.phases import phase_tables, power_flow, primitive

#: 2 buses: an untransposed line with mutual coupling and charging, a wye load on phase a, a delta load
#: across b-c (constant Z) and a three-phase delta constant-current load; delta capacitors (one across a-b,
#: one three-phase); a source with its own impedance.
TWO_BUS = """
Clear
New Circuit.two basekv=12.47 pu=1.02 phases=3 bus1=src MVAsc3=200 MVAsc1=180
New Line.l1 bus1=src bus2=b phases=3 length=1 units=mi
~ rmatrix=[0.3465 | 0.1560 0.3375 | 0.1580 0.1535 0.3414] xmatrix=[1.0179 | 0.5017 1.0478 | 0.4236 0.3849 1.0348]
~ cmatrix=[13.6 | -4.3 12.9 | -2.4 -1.2 11.4]
New Load.la bus1=b.1 phases=1 conn=wye kV=7.2 kW=800 kvar=300 model=1 vminpu=0.8 vmaxpu=1.2
New Load.lbc bus1=b.2.3 phases=1 conn=delta kV=12.47 kW=500 kvar=250 model=2
New Load.l3 bus1=b phases=3 conn=delta kV=12.47 kW=900 kvar=400 model=5 vminpu=0.8 vmaxpu=1.2
New Capacitor.cd bus1=b.1.2 phases=1 conn=delta kvar=200 kV=12.47
New Capacitor.c3 bus1=b phases=3 conn=delta kvar=300 kV=12.47
Set VoltageBases=[12.47]
CalcVoltageBases
"""

#: 4 buses and more: line, delta-wye substation-style transformer, a single-phase lateral (phase b), a
#: wye-wye transformer to 480 V, a bank of two single-phase regulators with different taps, a capacitor,
#: unbalanced wye loads and a two-phase delta load.
FOUR_BUS = """
Clear
New Circuit.four basekv=12.47 pu=1.0 phases=3 bus1=src MVAsc3=500 MVAsc1=400
New Line.feeder bus1=src bus2=b2 phases=3 length=0.5 units=mi
~ rmatrix=[0.3465 | 0.1560 0.3375 | 0.1580 0.1535 0.3414] xmatrix=[1.0179 | 0.5017 1.0478 | 0.4236 0.3849 1.0348]
~ cmatrix=[13.6 | -4.3 12.9 | -2.4 -1.2 11.4]
New Transformer.t1 phases=3 windings=2 buses=[b2 b3] conns=[delta wye] kVs=[12.47 4.16] kVAs=[3000 3000] XHL=6 %Rs=[0.5 0.5]
New Line.lat bus1=b3.2 bus2=b4.2 phases=1 length=0.3 units=mi r1=0.6 x1=0.9 c1=3.0
New Load.l4 bus1=b4.2 phases=1 conn=wye kV=2.4 kW=300 kvar=120 model=1 vminpu=0.8 vmaxpu=1.2
New Load.l3a bus1=b3.1 phases=1 conn=wye kV=2.4 kW=500 kvar=200 model=1 vminpu=0.8 vmaxpu=1.2
New Load.l3c bus1=b3.3 phases=1 conn=wye kV=2.4 kW=250 kvar=150 model=2
New Load.l3ab bus1=b3.1.2 phases=1 conn=delta kV=4.16 kW=200 kvar=90 model=1 vminpu=0.8 vmaxpu=1.2
New Capacitor.c3 bus1=b3 phases=3 kvar=300 kV=4.16
New Transformer.t2 phases=3 windings=2 buses=[b2 b5] conns=[wye wye] kVs=[12.47 0.48] kVAs=[500 500] XHL=4 %Rs=[0.6 0.6]
New Load.l5 bus1=b5 phases=3 conn=wye kV=0.48 kW=150 kvar=60 model=1 vminpu=0.8 vmaxpu=1.2
New Transformer.rega phases=1 windings=2 buses=[b3.1 b6.1] kVs=[2.4 2.4] kVA=2000 XHL=1 %LoadLoss=0.01 taps=[1 1.05]
New Transformer.regc phases=1 windings=2 buses=[b3.3 b6.3] kVs=[2.4 2.4] kVA=2000 XHL=1 %LoadLoss=0.01 taps=[1 0.9875]
New Load.l6 bus1=b6.1.3 phases=1 conn=delta kV=4.16 kW=180 kvar=70 model=1 vminpu=0.8 vmaxpu=1.2
Set VoltageBases=[12.47 4.16 0.48]
CalcVoltageBases
"""


@pytest.fixture(params=["two", "four"])
def circuit(request, tmp_path):
    path = tmp_path / f"{request.param}.dss"
    path.write_text(TWO_BUS if request.param == "two" else FOUR_BUS)
    return path


def _opendss_nodes(path, load_mult: float) -> dict[str, complex]:
    """OpenDSS's own node voltages (volts) at ``load_mult``, controls off, tight tolerance."""
    compile_model(path)
    dss = engine()
    dss.Text.Command("Set ControlMode=OFF")
    dss.Text.Command("Set Tolerance=1e-12")
    dss.Solution.MaxIterations(100)
    dss.Solution.LoadMult(load_mult)
    dss.Solution.Solve()
    assert dss.Solution.Converged()
    v = np.asarray(dss.Circuit.AllBusVolts(), float)
    return dict(zip((n.lower() for n in dss.Circuit.AllNodeNames()), v[0::2] + 1j * v[1::2]))


def test_primitive_admittance_is_opendss_yprim(circuit):
    """Every series element's primitive admittance built from the network model alone (lines with mutual
    terms and charging, delta-wye and wye-wye transformers, single-phase regulators) equals YPrim."""
    net = read_opendss(circuit)
    dss = engine()
    seen = set()
    for b in net.branches:
        cls = "Line" if b.kind in ("line", "switch") else "Transformer"
        order = [f"{b.bus1}.{p}" for p in b.phases] + [f"{b.bus2}.{p}" for p in (b.phases2 or b.phases)]
        pos = {n: i for i, n in enumerate(order)}
        ref = np.zeros((len(order), len(order)), complex)
        for name in b.elements or (b.name,):
            dss.Circuit.SetActiveElement(f"{cls}.{name}")
            y = _yprim()
            nodes = list(dss.CktElement.NodeOrder())
            nc = dss.CktElement.NumConductors()
            buses = [x.split(".")[0].lower() for x in dss.CktElement.BusNames()]
            keys = [f"{buses[i // nc]}.{nodes[i]}" for i in range(len(nodes))]
            keep = [i for i, k in enumerate(keys) if k in pos]  # ground and neutral (node 0) dropped
            for i in keep:
                for j in keep:
                    ref[pos[keys[i]], pos[keys[j]]] += y[i, j]
        mine = primitive(b, net.buses[b.bus1].kv_ln, net.buses[b.bus2].kv_ln)
        assert np.abs(mine - ref).max() <= 1e-9 * np.abs(ref).max(), b.name
        seen.add((b.kind, b.conn, len(b.elements)))
    if circuit.stem == "four":  # delta-wye, wye-wye and the two-unit single-phase bank were all compared
        assert {("transformer", ("delta", "wye"), 0), ("transformer", ("wye", "wye"), 0),
                ("transformer", ("wye", "wye"), 2)} <= seen, seen


@pytest.mark.parametrize("load_mult", [1.0, 0.6])
def test_power_flow_matches_opendss_node_by_node(circuit, load_mult):
    """The per-node tables' power flow (ZIP loads wye and delta, capacitor, source impedance, transformer
    phase shifts) gives OpenDSS's complex node voltages to 1e-8 pu at two load levels."""
    net = read_opendss(circuit)
    tables = phase_tables(net, 1000.0)
    v, _ = power_flow(tables, np.array([load_mult]))
    ref = _opendss_nodes(circuit, load_mult)
    expect = np.array([ref[n] for n in tables.nodes]) / (tables.v_base_kv * 1000.0)
    assert len(tables.nodes) == len(ref)
    err = np.abs(v[:, 0] - expect)
    assert err.max() < 1e-8, tables.nodes[int(np.argmax(err))]
    if circuit.stem == "four":  # the delta-wye transformer shifts the low side by -30 degrees
        b3 = tables.index["b3.1"]
        assert abs(np.degrees(np.angle(v[b3, 0])) - (-30.0)) < 5.0


def test_load_above_vmaxpu_is_an_impedance_as_in_opendss(tmp_path):
    """A constant-power load above its vmaxpu: OpenDSS draws it as the impedance of its power at vmaxpu; the
    tables' power flow does the same (a load at 1.06 pu with vmaxpu = 1.02 would differ by 8 % otherwise)."""
    path = tmp_path / "high.dss"
    path.write_text(TWO_BUS.replace("pu=1.02", "pu=1.08").replace("model=1 vminpu=0.8 vmaxpu=1.2",
                                                                   "model=1 vminpu=0.8 vmaxpu=1.02"))
    tables = phase_tables(read_opendss(path), 1000.0)
    v, _ = power_flow(tables, np.array([1.0]))
    ref = _opendss_nodes(path, 1.0)
    expect = np.array([ref[n] for n in tables.nodes]) / (tables.v_base_kv * 1000.0)
    assert abs(v[tables.index["b.1"], 0]) > 1.02  # the load is in its impedance regime
    assert np.abs(v[:, 0] - expect).max() < 1e-8
