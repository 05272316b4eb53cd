"""The balanced model's physics, one element kind at a time, against OpenDSS and closed-form answers.

Each test writes a 2-4 bus OpenDSS circuit by hand (stiff source, balanced three-phase elements), builds the
same circuit as Case tables by hand (one hour, no DERs: the exact formulation is then a power flow), solves
the optimisation and compares every bus voltage (1e-6 pu) and the source power (1e-6 relative) with
OpenDSS. Where the answer has a closed form, the test checks it too, so that a convention shared by both
sides (a tap on the wrong side, a shunt counted twice) cannot hide.

Per unit here: S_base = 1000 kVA three-phase; each bus on its own line-to-line base (12.47 kV or 4.16 kV),
Z_base = kV^2 * 1000 / S_base ohm.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

from mpdopf_pyomo import network, problem
from mpdopf_pyomo.case import Bases, Case, Settings
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.pipeline import solve_central

S_KVA = 1000.0
KV_HV, KV_LV = 12.47, 4.16
V_SUB = 1.02
FREQ_HZ = 60.0
TOL_V = 1e-6
TOL_S = 1e-6


def zbase(kv_ll: float) -> float:
    return kv_ll**2 * 1000.0 / S_KVA


# --------------------------------------------------------------------------------------------------
# One circuit, written twice: as OpenDSS text and as Case tables
# --------------------------------------------------------------------------------------------------


@dataclass
class Line:
    name: str
    bus1: str
    bus2: str
    r_ohm: float
    x_ohm: float
    c_nf: float = 0.0  #: positive-sequence capacitance of the whole line, nF


@dataclass
class Transformer:
    name: str
    bus1: str
    bus2: str
    kva: float
    r_pct: float  #: total %R (split equally between the windings)
    x_pct: float  #: %X (XHL)
    tap: float  #: the tap, pu of the winding's rated kV
    winding: int = 1  #: the winding that carries the tap (OpenDSS regulators usually tap winding 2)


@dataclass
class Load:
    bus: str
    kw: float
    kvar: float
    zip: tuple[float, float, float, float, float, float] = (0, 0, 1, 0, 0, 1)  #: P z,i,p; Q z,i,p


@dataclass
class Capacitor:
    bus: str
    kvar: float  #: rated three-phase kvar at the bus's rated voltage


@dataclass
class Circuit:
    kv: dict[str, float]  #: bus -> line-to-line base kV; the first bus is the source
    lines: list[Line]
    transformers: list[Transformer]
    loads: list[Load]
    capacitors: list[Capacitor]

    @property
    def root(self) -> str:
        return next(iter(self.kv))

    # ---- OpenDSS ----
    def dss(self) -> str:
        out = [
            "Clear",
            f"New Circuit.phys basekv={self.kv[self.root]} pu={V_SUB} phases=3 bus1={self.root} "
            "MVAsc3=1e9 MVAsc1=1e9",
            f"Set DefaultBaseFrequency={FREQ_HZ:g}",
        ]
        for ln in self.lines:
            # Lines with units=none and length 1: R1/X1 in ohm, C1 in nF for the whole line
            out.append(
                f"New Line.{ln.name} bus1={ln.bus1} bus2={ln.bus2} phases=3 length=1 units=none "
                f"R1={ln.r_ohm} X1={ln.x_ohm} R0={ln.r_ohm} X0={ln.x_ohm} C1={ln.c_nf} C0={ln.c_nf}"
            )
        for tr in self.transformers:
            taps = f"{tr.tap} 1" if tr.winding == 1 else f"1 {tr.tap}"
            out.append(
                f"New Transformer.{tr.name} phases=3 windings=2 buses=[{tr.bus1} {tr.bus2}] conns=[wye wye] "
                f"kVs=[{self.kv[tr.bus1]} {self.kv[tr.bus2]}] kVAs=[{tr.kva} {tr.kva}] "
                f"%Rs=[{tr.r_pct / 2} {tr.r_pct / 2}] XHL={tr.x_pct} taps=[{taps}] %noloadloss=0 %imag=0 "
                "ppm_antifloat=0"
            )
        for k, ld in enumerate(self.loads):
            pz, pi, pp, qz, qi, qp = ld.zip
            model = {(0, 0, 1, 0, 0, 1): "model=1", (1, 0, 0, 1, 0, 0): "model=2", (0, 1, 0, 0, 1, 0): "model=5"}
            spec = model.get(tuple(float(c) for c in ld.zip)) or f"model=8 ZIPV=[{pz} {pi} {pp} {qz} {qi} {qp} 0]"
            # vminpu/vmaxpu widened: OpenDSS otherwise turns a load into constant Z outside 0.95-1.05 pu
            out.append(
                f"New Load.ld{k} bus1={ld.bus} phases=3 conn=wye kV={self.kv[ld.bus]} kW={ld.kw} kvar={ld.kvar} "
                f"{spec} vminpu=0.5 vmaxpu=1.5"
            )
        for k, cap in enumerate(self.capacitors):
            out.append(f"New Capacitor.c{k} bus1={cap.bus} phases=3 kvar={cap.kvar} kV={self.kv[cap.bus]}")
        levels = " ".join(f"{kv:g}" for kv in sorted(set(self.kv.values()), reverse=True))
        out += [f"Set VoltageBases=[{levels}]", "CalcVoltageBases", "Set Tolerance=1e-12", "Set MaxIterations=200"]
        return "\n".join(out) + "\n"

    def opendss(self, folder: Path) -> tuple[pd.Series, complex, float]:
        """Bus voltages (pu), the power sent from the source bus (kW + j kvar) and the losses (kW).

        The source power is summed over the terminals of the branches leaving the source bus: the stiff
        source's own reading is I = Y_source (E - V) with Y_source ~ 1e7 S, so rounding in E - V puts
        ~0.03 W of noise per phase into it.
        """
        path = folder / "circuit.dss"
        path.write_text(self.dss())
        network.compile_model(path)
        v = network.solve_power_flow()
        dss = network.engine()
        sent = 0j
        leaving = [f"Line.{ln.name}" for ln in self.lines if ln.bus1 == self.root]
        leaving += [f"Transformer.{tr.name}" for tr in self.transformers if tr.bus1 == self.root]
        for element in leaving:
            dss.Circuit.SetActiveElement(element)
            powers = np.asarray(dss.CktElement.Powers(), dtype=float)[: 2 * dss.CktElement.NumConductors()]
            sent += complex(powers[0::2].sum(), powers[1::2].sum())
        losses_kw = dss.Circuit.Losses()[0] / 1000.0
        return v, sent, losses_kw

    # ---- Case tables ----
    def case(self, folder: Path) -> Case:
        buses = list(self.kv)
        tab = pd.DataFrame(0.0, index=pd.Index(buses, name="bus"), columns=["p_load", "q_load", "q_cap", "b_shunt"])
        tab.insert(0, "area", 1)
        tab["v_base_kv_ln"] = [self.kv[b] / math.sqrt(3) for b in buses]
        for c in ("p_zip_z", "p_zip_i", "p_zip_p", "q_zip_z", "q_zip_i", "q_zip_p"):
            tab[c] = 0.0
        for ld in self.loads:
            assert ld.bus not in set(l2.bus for l2 in self.loads if l2 is not ld), "one load per bus here"
            tab.loc[ld.bus, ["p_load", "q_load"]] = [ld.kw / S_KVA, ld.kvar / S_KVA]
            tab.loc[ld.bus, ["p_zip_z", "p_zip_i", "p_zip_p", "q_zip_z", "q_zip_i", "q_zip_p"]] = ld.zip
        for b in buses:
            if not any(ld.bus == b for ld in self.loads):
                tab.loc[b, ["p_zip_p", "q_zip_p"]] = 1.0
        for cap in self.capacitors:  # kvar at rated (= base) voltage: b = Q_rated / S_base
            tab.loc[cap.bus, "b_shunt"] += cap.kvar / S_KVA
        rows = []
        for ln in self.lines:
            z = zbase(self.kv[ln.bus2])
            b_total = 2 * math.pi * FREQ_HZ * ln.c_nf * 1e-9 * z  # pu
            tab.loc[ln.bus1, "b_shunt"] += b_total / 2  # pi model: half at each end
            tab.loc[ln.bus2, "b_shunt"] += b_total / 2
            rows.append((ln.name, ln.bus1, ln.bus2, ln.r_ohm / z, ln.x_ohm / z, 1.0))
        for tr in self.transformers:  # % on the transformer's kVA -> pu on S_base (to-bus side)
            scale = S_KVA / tr.kva / 100.0
            if tr.winding == 1:
                rows.append((tr.name, tr.bus1, tr.bus2, tr.r_pct * scale, tr.x_pct * scale, tr.tap))
            else:  # V1 - V2 / t = z I / t  <=>  V1 / (1/t) - V2 = (t^2 z) I2: ratio 1/t, impedance t^2 z
                scale *= tr.tap**2
                rows.append((tr.name, tr.bus1, tr.bus2, tr.r_pct * scale, tr.x_pct * scale, 1.0 / tr.tap))
        order = {b: k for k, b in enumerate(buses)}
        rows.sort(key=lambda row: order[row[2]])
        branches = pd.DataFrame(rows, columns=["branch", "from_bus", "to_bus", "r", "x", "tap"]).set_index("branch")
        tab["x"], tab["y"] = np.nan, np.nan
        profile = pd.DataFrame(
            {"load_mult": [1.0], "pv_mult": [0.0], "price": [0.1], "clock_hour": [0]}, index=pd.Index([1], name="t")
        )
        pvs = pd.DataFrame(columns=["p_rated", "s_rated"], index=pd.Index([], name="bus"), dtype=float)
        bat_cols = ["p_rated", "s_rated", "e_rated", "soc_min", "soc_max", "soc0", "eta_c", "eta_d"]
        batteries = pd.DataFrame(columns=bat_cols, index=pd.Index([], name="bus"), dtype=float)
        return Case(
            name="physics",
            source=folder / "circuit.toml",
            network_model=folder / "circuit.dss",
            bases=Bases(v_kv_ll=self.kv[self.root], s_kva=S_KVA),
            settings=Settings(v_sub_pu=V_SUB, v_min_pu=0.5, v_max_pu=1.5),
            root=self.root,
            buses=tab,
            branches=branches,
            pvs=pvs,
            batteries=batteries,
            profile=profile,
        )


def _solve(case: Case, formulation: str = "exact"):
    res = solve_central(case, formulation)
    v = res.voltages[1]
    sub = res.substation.loc[1]
    return res, v, complex(sub["p_kw"], sub["q_kvar"])


def _agree(circuit: Circuit, tmp_path: Path):
    """Solve both sides and assert the voltages and the source power agree; return the optimisation's."""
    case = circuit.case(tmp_path)
    res, v_opt, s_opt = _solve(case)
    v_dss, s_dss, loss_dss = circuit.opendss(tmp_path)
    for bus in circuit.kv:
        assert v_opt[bus] == pytest.approx(v_dss[bus], abs=TOL_V), f"bus {bus}"
    assert s_opt.real == pytest.approx(s_dss.real, rel=TOL_S, abs=1e-6)
    assert s_opt.imag == pytest.approx(s_dss.imag, rel=TOL_S, abs=1e-6)
    # losses read back from the plan (r l per branch) are OpenDSS's series losses
    assert res.summary["losses_kwh"] == pytest.approx(loss_dss, rel=1e-6, abs=1e-7)
    return res, v_opt, s_opt


def _line(bus1: str, bus2: str, r: float = 3.0, x: float = 6.0, c_nf: float = 0.0, name: str | None = None) -> Line:
    return Line(name or f"l_{bus2}", bus1, bus2, r, x, c_nf)


# --------------------------------------------------------------------------------------------------
# Loads: constant Z, constant I, constant PQ, ZIP
# --------------------------------------------------------------------------------------------------


def test_constant_z_load_is_a_voltage_divider(tmp_path):
    """V2 = Vs * Z_load / (Z_line + Z_load), Z_load = 1 / conj(s) at 1 pu."""
    circuit = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b")], [], [Load("b", 1500.0, 600.0, (1, 0, 0, 1, 0, 0))], [])
    _, v, s_sub = _agree(circuit, tmp_path)
    z_line = complex(3.0, 6.0) / zbase(KV_HV)
    z_load = 1 / complex(1.5, 0.6).conjugate()
    v2 = V_SUB * abs(z_load / (z_line + z_load))
    assert v["b"] == pytest.approx(v2, abs=1e-9)
    assert abs(1 - v2 / V_SUB) > 0.01  # the line matters: a model without the load's V dependence misses it
    # the load takes p V^2: 1.5 pu at 1 pu, less here
    p_load = 1.5 * v2**2
    i_sq = abs(V_SUB / (z_line + z_load)) ** 2
    assert s_sub.real / S_KVA == pytest.approx(p_load + z_line.real * i_sq, rel=1e-8)


def test_constant_current_load(tmp_path):
    """|I| = |s0| fixed, angle following V: |V2| = sqrt(Vs^2 - Im(c)^2) - Re(c), c = z conj(s0)."""
    s0 = complex(1.2, 0.5)
    circuit = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b")], [], [Load("b", 1200.0, 500.0, (0, 1, 0, 0, 1, 0))], [])
    _, v, _ = _agree(circuit, tmp_path)
    c = complex(3.0, 6.0) / zbase(KV_HV) * s0.conjugate()
    assert v["b"] == pytest.approx(math.sqrt(V_SUB**2 - c.imag**2) - c.real, abs=1e-9)


def test_constant_power_load(tmp_path):
    """The classic two-bus quadratic: V2^4 + (2 (r p + x q) - Vs^2) V2^2 + |z|^2 |s|^2 = 0."""
    circuit = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b")], [], [Load("b", 1500.0, 600.0)], [])
    _, v, _ = _agree(circuit, tmp_path)
    z = complex(3.0, 6.0) / zbase(KV_HV)
    p, q = 1.5, 0.6
    bq = 2 * (z.real * p + z.imag * q) - V_SUB**2
    v2sq = (-bq + math.sqrt(bq**2 - 4 * abs(z) ** 2 * (p**2 + q**2))) / 2
    assert v["b"] == pytest.approx(math.sqrt(v2sq), abs=1e-9)


def test_zip_load_on_two_levels(tmp_path):
    """A ZIP load (OpenDSS model=8) behind a second line, and a constant-PQ load on the way."""
    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "b": KV_HV},
        [_line("s", "a"), _line("a", "b", 2.0, 3.0)],
        [],
        [Load("a", 400.0, 100.0), Load("b", 1300.0, 500.0, (0.3, 0.2, 0.5, 0.1, 0.6, 0.3))],
        [],
    )
    _, v, _ = _agree(circuit, tmp_path)
    assert v["b"] < 0.97  # far enough from 1 pu that the ZIP split matters


# --------------------------------------------------------------------------------------------------
# Shunts: capacitor, line charging
# --------------------------------------------------------------------------------------------------


def test_capacitor_raises_the_voltage(tmp_path):
    """No load, a capacitor at the far end: V2 = Vs / |1 + j b z| (its injection b V^2)."""
    circuit = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b")], [], [], [Capacitor("b", 900.0)])
    _, v, s_sub = _agree(circuit, tmp_path)
    z = complex(3.0, 6.0) / zbase(KV_HV)
    b = 0.9
    v2 = V_SUB / abs(1 + 1j * b * z)
    assert v["b"] == pytest.approx(v2, abs=1e-9) and v2 > V_SUB
    assert -s_sub.imag / S_KVA == pytest.approx(b * v2**2 - z.imag * (b * v2) ** 2, rel=1e-8)


def test_capacitor_with_load(tmp_path):
    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "b": KV_HV},
        [_line("s", "a"), _line("a", "b")],
        [],
        [Load("b", 1500.0, 700.0)],
        [Capacitor("a", 600.0)],
    )
    _agree(circuit, tmp_path)


def test_line_charging_half_at_each_end(tmp_path):
    """A long cable with C1: pi model, B/2 at each end. Open end: V2 = Vs / |1 + j (B/2) z|; the source
    supplies -(B/2)(Vs^2 + V2^2) + x |I|^2 of reactive power."""
    c_nf = 4000.0  # 4 uF: ~10 km of cable
    circuit = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b", 1.0, 4.0, c_nf)], [], [], [])
    _, v, s_sub = _agree(circuit, tmp_path)
    z = complex(1.0, 4.0) / zbase(KV_HV)
    half_b = 2 * math.pi * FREQ_HZ * c_nf * 1e-9 * zbase(KV_HV) / 2
    v2 = V_SUB / abs(1 + 1j * half_b * z)
    assert v["b"] == pytest.approx(v2, abs=1e-9) and v2 > V_SUB
    i_sq = (half_b * v2) ** 2
    assert s_sub.imag / S_KVA == pytest.approx(-half_b * (V_SUB**2 + v2**2) + z.imag * i_sq, rel=1e-8)


def test_line_charging_with_load(tmp_path):
    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "b": KV_HV},
        [_line("s", "a", 1.0, 3.0, 2000.0), _line("a", "b", 2.0, 4.0, 1500.0)],
        [],
        [Load("b", 1800.0, 600.0), Load("a", 300.0, 100.0, (1, 0, 0, 1, 0, 0))],
        [],
    )
    _agree(circuit, tmp_path)


# --------------------------------------------------------------------------------------------------
# Transformers: off-nominal tap, two voltage levels
# --------------------------------------------------------------------------------------------------


def test_transformer_tap_at_no_load(tmp_path):
    """No load: V2 = Vs / tap exactly (the tap divides the from-side voltage)."""
    circuit = Circuit({"s": KV_HV, "t": KV_LV}, [], [Transformer("t1", "s", "t", 2000.0, 1.0, 6.0, 1.05)], [], [])
    _, v, _ = _agree(circuit, tmp_path)
    assert v["t"] == pytest.approx(V_SUB / 1.05, abs=1e-9)


def test_transformer_tap_with_constant_z_load(tmp_path):
    """V2 = (Vs / tap) * Z_load / (z_tr + Z_load), z_tr in pu on the secondary's base and S_base."""
    circuit = Circuit(
        {"s": KV_HV, "t": KV_LV},
        [],
        [Transformer("t1", "s", "t", 2000.0, 1.0, 6.0, 1.05)],
        [Load("t", 1600.0, 700.0, (1, 0, 0, 1, 0, 0))],
        [],
    )
    _, v, _ = _agree(circuit, tmp_path)
    z_tr = complex(1.0, 6.0) / 100 * S_KVA / 2000.0
    z_load = 1 / complex(1.6, 0.7).conjugate()
    assert v["t"] == pytest.approx(V_SUB / 1.05 * abs(z_load / (z_tr + z_load)), abs=1e-9)


def test_regulator_at_a_fixed_tap_on_winding_2(tmp_path):
    """A regulator as OpenDSS writes it: 1:1 transformer, the tap (+10 steps of 0.625 %) on winding 2.
    In the case it is tap = 1/1.0625 with the impedance scaled by 1.0625^2 (referred to the tapped side)."""
    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "r": KV_HV, "b": KV_HV},
        [_line("s", "a", 3.0, 7.0), _line("r", "b", 3.0, 7.0)],
        [Transformer("reg", "a", "r", 5000.0, 0.1, 1.0, 1.0625, winding=2)],
        [Load("b", 2000.0, 900.0)],
        [],
    )
    _, v, _ = _agree(circuit, tmp_path)
    assert v["r"] > v["a"] * 1.05  # the regulator boosts


def test_feeder_with_transformer_capacitor_and_mixed_loads(tmp_path):
    """Four buses, two voltage levels: line, transformer (tap 0.975, i.e. boosting), line on the 4.16 kV
    side; a capacitor, a ZIP load and a constant-I load."""
    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "t": KV_LV, "b": KV_LV},
        [_line("s", "a", 2.0, 5.0, 300.0), _line("t", "b", 0.2, 0.4)],
        [Transformer("t1", "a", "t", 2500.0, 1.2, 5.5, 0.975)],
        [Load("a", 300.0, 120.0, (0, 1, 0, 0, 1, 0)), Load("b", 1400.0, 550.0, (0.4, 0.3, 0.3, 0.5, 0.0, 0.5))],
        [Capacitor("t", 450.0)],
    )
    _agree(circuit, tmp_path)


# --------------------------------------------------------------------------------------------------
# The other formulations carry the same physics
# --------------------------------------------------------------------------------------------------


FEEDER = Circuit(
    {"s": KV_HV, "t": KV_LV, "b": KV_LV},
    [_line("t", "b", 0.2, 0.4)],
    [Transformer("t1", "s", "t", 2000.0, 1.0, 6.0, 1.05)],
    [Load("b", 1500.0, 600.0, (0.3, 0.4, 0.3, 0.2, 0.5, 0.3))],
    [Capacitor("t", 400.0)],
)


def test_socp_is_tight_without_controls(tmp_path):
    case = FEEDER.case(tmp_path)
    _, v_exact, s_exact = _solve(case, "exact")
    _, v_socp, s_socp = _solve(case, "socp")
    assert np.abs(v_socp - v_exact).max() < 1e-6
    assert s_socp.real == pytest.approx(s_exact.real, rel=1e-6)


def test_linear_is_lindistflow_with_taps_shunts_and_linearised_current(tmp_path):
    """LinDistFlow by hand: no losses, v_t = v_s / a^2 - 2 (r P + x Q), |V| ~ (1 + v) / 2."""
    case = FEEDER.case(tmp_path)
    res, v, s_sub = _solve(case, "linear")
    br = case.branches
    (r1, x1, a), (r2, x2) = br.loc["t1", ["r", "x", "tap"]], br.loc["l_b", ["r", "x"]]
    p0, q0, b = 1.5, 0.6, 0.4
    pz, pi, pp, qz, qi, qp = 0.3, 0.4, 0.3, 0.2, 0.5, 0.3

    def withdrawal(vb):
        mag = (1 + vb) / 2
        return p0 * (pz * vb + pi * mag + pp), q0 * (qz * vb + qi * mag + qp)

    # unknowns v_t, v_b; both equations are linear: solve the 2x2 system
    def residual(vt, vb):
        p, q = withdrawal(vb)
        q_t = q - b * vt  # the capacitor at t withdraws -b v_t
        return (vt - (V_SUB**2 / a**2 - 2 * (r1 * p + x1 * q_t)), vb - (vt - 2 * (r2 * p + x2 * q)))

    base = np.array(residual(0.0, 0.0))
    jac = np.column_stack([np.array(residual(1.0, 0.0)) - base, np.array(residual(0.0, 1.0)) - base])
    vt, vb = np.linalg.solve(jac, -base)
    assert v["t"] ** 2 == pytest.approx(vt, abs=1e-8) and v["b"] ** 2 == pytest.approx(vb, abs=1e-8)
    p, q = withdrawal(vb)
    assert s_sub.real / S_KVA == pytest.approx(p, rel=1e-8)
    assert s_sub.imag / S_KVA == pytest.approx(q - b * vt, rel=1e-8)
    assert res.summary["losses_kwh"] == 0.0


def test_distributed_with_a_cut_at_the_transformer(tmp_path):
    """A cut branch that is a transformer: the child area sees the tap on its incoming branch; ADMM's
    plan equals the central one to its tolerance (1e-4 pu on the boundary values)."""
    from mpdopf_pyomo.pipeline import solve_case

    circuit = Circuit(
        {"s": KV_HV, "a": KV_HV, "t": KV_LV, "b": KV_LV},
        [_line("s", "a", 2.0, 5.0, 300.0), _line("t", "b", 0.2, 0.4)],
        [Transformer("t1", "a", "t", 2500.0, 1.2, 5.5, 1.05)],
        [Load("a", 300.0, 120.0, (0, 1, 0, 0, 1, 0)), Load("b", 1400.0, 550.0, (0.4, 0.3, 0.3, 0.5, 0.0, 0.5))],
        [Capacitor("t", 450.0)],
    )
    case = circuit.case(tmp_path)
    case.buses["area"] = [1, 1, 2, 2]
    case.cut_branches = ["t1"]
    central = solve_case(case)
    admm = solve_case(case, "admm", executor="serial")
    assert admm.summary["distributed"]["converged"]
    assert np.abs(admm.voltages[1] - central.voltages[1]).max() < 1e-4
    assert admm.substation.at[1, "p_kw"] == pytest.approx(central.substation.at[1, "p_kw"], rel=1e-4)


def test_flat_start_is_close_to_the_power_flow(tmp_path):
    """The LinDistFlow start honours the tap, the shunt and the ZIP loads: within 1 % of the exact v."""
    case = FEEDER.case(tmp_path)
    _, v, _ = _solve(case, "exact")
    start = problem.flat_start(case)["v"][1]
    assert v["t"] ** 2 == pytest.approx(start["t"], rel=0.01)  # the tap alone moves v by 9 %
    assert v["b"] ** 2 == pytest.approx(start["b"], rel=0.01)


# --------------------------------------------------------------------------------------------------
# Defaults and bad values of the network columns
# --------------------------------------------------------------------------------------------------


def _constraints(case: Case, formulation: str) -> dict[str, str]:
    m = problem.build_model(case, formulation)
    out = {c.name: str(c.expr) for c in m.component_data_objects(pyo.Constraint, active=True)}
    out["obj"] = str(m.obj.expr)
    return out


@pytest.mark.parametrize("formulation", ["exact", "linear"])
def test_missing_network_columns_mean_the_pq_model(tmp_path, formulation):
    """A case without tap, b_shunt and ZIP columns builds the very same model as one with their defaults."""
    circuit = Circuit({"s": KV_HV, "a": KV_HV, "b": KV_HV}, [_line("s", "a"), _line("a", "b")], [],
                      [Load("a", 500.0, 200.0), Load("b", 900.0, 300.0)], [])
    full = circuit.case(tmp_path)
    bare = circuit.case(tmp_path)
    bare.buses = bare.buses.drop(columns=[*problem.BUS_DEFAULTS, "v_base_kv_ln"], errors="ignore")
    bare.branches = bare.branches.drop(columns=["tap"])
    assert _constraints(bare, formulation) == _constraints(full, formulation)


@pytest.mark.parametrize(
    "table,column,value,message",
    [
        ("branches", "tap", 0.0, "branches.tap: must be positive"),
        ("branches", "tap", float("nan"), "branches.tap: not a finite number"),
        ("buses", "b_shunt", float("inf"), "buses.b_shunt: not a finite number"),
        ("buses", "p_zip_z", 0.5, "buses.p_zip_*: the fractions z, i, p at bus 'b' sum to 1.5"),
    ],
)
def test_bad_network_columns_are_case_errors(tmp_path, table, column, value, message):
    case = Circuit({"s": KV_HV, "b": KV_HV}, [_line("s", "b")], [], [Load("b", 500.0, 200.0)], []).case(tmp_path)
    frame = getattr(case, table)
    frame.loc[frame.index[-1], column] = value
    with pytest.raises(CaseError, match=message.replace("*", r"\*").replace("(", r"\(")):
        problem.build_model(case, "exact")
