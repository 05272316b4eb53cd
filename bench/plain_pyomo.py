"""The baseline of ``make bench``: the central OPF written directly in Pyomo, solved with cyipopt-wheels.

What a user would write by hand without this package: read the case data (a JSON file the benchmark
exports from ``load_case``, untimed), declare the same branch-flow equations, PV and battery limits and
objective as :mod:`mpdopf_pyomo.problem` in one ``ConcreteModel``, and call ``SolverFactory('cyipopt')``
(Pyomo's PyNumero interface to the cyipopt-wheels package, IPOPT's default options). Start: v at the
substation voltage, flows 0. It covers what ``ieee123-published`` uses -- constant-power loads with fixed
capacitors, lines only (no taps, ZIP loads or shunts), the ``box`` inverter limit, the ``hard`` terminal
rule, no reverse power -- and refuses other data.

    python bench/plain_pyomo.py DATA.json [--timing]  ->  last line JSON: objective_usd, termination, iterations

One option is set, ``honor_original_bounds yes``, so that loading the solution does not print a warning
for every variable IPOPT left a hair outside its bounds (the package sets it too). ``--timing`` adds
IPOPT's ``print_timing_statistics`` and its log on stdout (the benchmark's time split).
"""

import json
import math
import sys

import pyomo.environ as pyo


def build(d):
    s = d["settings"]
    assert s["inverter_limit"] == "box" and s["terminal_soc"] == "hard" and not s["reverse_power"], s
    T = list(range(1, len(d["price"]) + 1))
    lm, pm, price = (dict(zip(T, d[k])) for k in ("load_mult", "pv_mult", "price"))
    bus, br, pv, bat = d["buses"], d["branches"], d["pvs"], d["batteries"]
    assert all(b["tap"] == 1.0 for b in br.values())
    root, dt = d["root"], s["dt_h"]
    into = {b["to_bus"]: e for e, b in br.items()}
    children = {j: [e for e, b in br.items() if b["from_bus"] == j] for j in bus}

    m = pyo.ConcreteModel()
    m.T = pyo.Set(initialize=T)
    m.N = pyo.Set(initialize=list(bus))
    m.E = pyo.Set(initialize=list(br))
    m.J = pyo.Set(initialize=list(pv))
    m.B = pyo.Set(initialize=list(bat))
    m.v = pyo.Var(m.N, m.T, bounds=(s["v_min_pu"] ** 2, s["v_max_pu"] ** 2), initialize=s["v_sub_pu"] ** 2)
    m.P = pyo.Var(m.E, m.T, initialize=0.0)
    m.Q = pyo.Var(m.E, m.T, initialize=0.0)
    m.l = pyo.Var(m.E, m.T, bounds=(0.0, None), initialize=0.0)
    qpv = {j: math.sqrt(max(pv[j]["s_rated"] ** 2 - pv[j]["p_rated"] ** 2, 0.0)) for j in pv}
    m.qpv = pyo.Var(m.J, m.T, bounds=lambda m, j, t: (-qpv[j], qpv[j]), initialize=0.0)
    m.pc = pyo.Var(m.B, m.T, bounds=lambda m, j, t: (0.0, bat[j]["p_rated"]), initialize=0.0)
    m.pd = pyo.Var(m.B, m.T, bounds=lambda m, j, t: (0.0, bat[j]["p_rated"]), initialize=0.0)
    qb = {j: math.sqrt(max(bat[j]["s_rated"] ** 2 - bat[j]["p_rated"] ** 2, 0.0)) for j in bat}
    m.qb = pyo.Var(m.B, m.T, bounds=lambda m, j, t: (-qb[j], qb[j]), initialize=0.0)
    e0 = {j: bat[j]["soc0"] * bat[j]["e_rated"] for j in bat}
    m.e = pyo.Var(m.B, m.T, bounds=lambda m, j, t: (bat[j]["soc_min"] * bat[j]["e_rated"],
                                                     bat[j]["soc_max"] * bat[j]["e_rated"]),
                  initialize=lambda m, j, t: e0[j])
    m.Psub = pyo.Var(m.T, bounds=(0.0, None), initialize=0.0)
    m.Qsub = pyo.Var(m.T, initialize=0.0)
    for t in T:
        m.v[root, t].fix(s["v_sub_pu"] ** 2)

    def p_inj(j, t):
        return (pv[j]["p_rated"] * pm[t] if j in pv else 0.0) + (m.pd[j, t] - m.pc[j, t] if j in bat else 0.0)

    def q_inj(j, t):
        return (m.qpv[j, t] if j in pv else 0.0) + (m.qb[j, t] if j in bat else 0.0)

    others = [j for j in bus if j != root]
    m.real = pyo.Constraint(others, m.T, rule=lambda m, j, t: m.P[into[j], t] - br[into[j]]["r"] * m.l[into[j], t]
                            - sum(m.P[k, t] for k in children[j]) + p_inj(j, t) == bus[j]["p_load"] * lm[t])
    m.reactive = pyo.Constraint(
        others, m.T, rule=lambda m, j, t: m.Q[into[j], t] - br[into[j]]["x"] * m.l[into[j], t]
        - sum(m.Q[k, t] for k in children[j]) + q_inj(j, t) == bus[j]["q_load"] * lm[t] - bus[j]["q_cap"])
    m.drop = pyo.Constraint(m.E, m.T, rule=lambda m, e, t: m.v[br[e]["to_bus"], t] == m.v[br[e]["from_bus"], t]
                            - 2 * (br[e]["r"] * m.P[e, t] + br[e]["x"] * m.Q[e, t])
                            + (br[e]["r"] ** 2 + br[e]["x"] ** 2) * m.l[e, t])
    m.current = pyo.Constraint(m.E, m.T, rule=lambda m, e, t: m.l[e, t] * m.v[br[e]["from_bus"], t]
                               == m.P[e, t] ** 2 + m.Q[e, t] ** 2)
    m.soc = pyo.Constraint(m.B, m.T, rule=lambda m, j, t: m.e[j, t] == (e0[j] if t == T[0] else m.e[j, t - 1])
                           + dt * (bat[j]["eta_c"] * m.pc[j, t] - m.pd[j, t] / bat[j]["eta_d"]))
    m.terminal = pyo.Constraint(m.B, rule=lambda m, j: m.e[j, T[-1]] == e0[j])
    m.psub = pyo.Constraint(m.T, rule=lambda m, t: m.Psub[t] == sum(m.P[e, t] for e in children[root])
                            + bus[root]["p_load"] * lm[t])
    m.qsub = pyo.Constraint(m.T, rule=lambda m, t: m.Qsub[t] == sum(m.Q[e, t] for e in children[root])
                            + bus[root]["q_load"] * lm[t] - bus[root]["q_cap"])
    base = d["s_base_kva"]
    m.obj = pyo.Objective(expr=sum(price[t] * m.Psub[t] * dt * base for t in T) + s["alpha_usd_per_kwh"] * base * dt
                          * sum((1 - bat[j]["eta_c"]) * m.pc[j, t] + (1 / bat[j]["eta_d"] - 1) * m.pd[j, t]
                                for j in bat for t in T))
    return m


def main(path, timing=False):
    with open(path) as fh:
        data = json.load(fh)
    m = build(data)
    iterations = []

    def count(nlp, problem, alg_mod, iter_count, obj, inf_pr, inf_du, mu, d_norm, reg, a_du, a_pr, ls):
        iterations.append(iter_count)
        return True

    solver = pyo.SolverFactory("cyipopt", intermediate_callback=count)
    if data.get("pynumero_library"):  # where `make setup` compiled Pyomo's ASL library
        from pyomo.contrib.pynumero.asl import AmplInterface

        AmplInterface.libname = data["pynumero_library"]
    solver.config.options["honor_original_bounds"] = "yes"
    if timing:
        solver.config.options["print_timing_statistics"] = "yes"
    res = solver.solve(m, tee=timing)
    import cyipopt

    print(json.dumps({"objective_usd": pyo.value(m.obj), "termination": str(res.solver.termination_condition),
                      "iterations": iterations[-1] if iterations else None, "cyipopt": cyipopt.__file__}))


if __name__ == "__main__":
    main(sys.argv[1], "--timing" in sys.argv[2:])
