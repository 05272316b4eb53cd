"""A distributed run reads its results back from the area solvers themselves: each area model is built once
(in its worker), and the tables are exactly those of the solved area models."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from mpdopf_pyomo import formulations
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition import executors, solve_distributed
from mpdopf_pyomo.results import Results
from mpdopf_pyomo.progress import quiet


@pytest.fixture(scope="module")
def case():
    return load_case("ieee123", 2)


def test_each_area_is_built_once_and_the_tables_are_its_solution(case, monkeypatch):
    f = formulations.get("exact")
    built: list[int] = []
    build_area = f.build_area

    def counting(case_, area):  # type: ignore[no-untyped-def]
        built.append(area)
        return build_area(case_, area)

    monkeypatch.setattr(f, "build_area", counting)
    made: list[executors.Executor] = []
    make = executors.make_executor

    def keep(*args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr("mpdopf_pyomo.decomposition.make_executor", keep)
    res = solve_distributed(case, "enapp", executor="serial", n_areas=3, progress=quiet)
    assert res.summary["distributed"]["converged"]
    assert sorted(built) == [1, 2, 3]  # the coordinator built no second copy of an area to read it back
    # the same tables as reading the solved area models in this process (the serial executor's)
    host = made[0].host
    split = res.case
    ref = Results.from_models(split, [host.solvers[a].model for a in sorted(host.solvers)])
    for name in ("voltages", "branches", "pv", "battery", "substation"):
        pd.testing.assert_frame_equal(getattr(res, name), getattr(ref, name), check_exact=True, obj=name)
    assert res.summary["objective_usd"] == ref.summary["objective_usd"]
    assert res.summary["losses_kwh"] == ref.summary["losses_kwh"]


def test_workers_fork_unless_another_thread_runs():
    import threading

    if threading.active_count() > 1:
        pytest.skip("another test left a thread running in this process")
    assert executors.start_method() == "fork"  # Linux, no other thread
    done = threading.Event()
    importing = threading.Thread(target=lambda: done.wait(0.3), name=executors.IMPORT_THREAD_PREFIX + "x")
    importing.start()
    assert executors.start_method() == "fork" and not importing.is_alive()  # an import is waited for
    busy = threading.Thread(target=done.wait, name="busy")
    busy.start()
    try:
        assert executors.start_method() == "spawn"  # its locks would stay held in a forked child
    finally:
        done.set()
        busy.join()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_forked_and_spawned_workers_give_the_serial_answer(case, method, monkeypatch):
    serial = solve_distributed(case, "enapp", executor="serial", n_areas=3, progress=quiet)
    monkeypatch.setattr(executors, "start_method", lambda: method)
    res = solve_distributed(case, "enapp", executor="processes", n_workers=2, n_areas=3, progress=quiet)
    assert res.summary["distributed"]["iterations"] == serial.summary["distributed"]["iterations"]
    for name in ("voltages", "branches", "pv", "battery", "substation"):
        pd.testing.assert_frame_equal(getattr(res, name), getattr(serial, name), check_exact=True, obj=name)
    assert {w["pid"] for w in res.summary["distributed"]["workers"]}.isdisjoint({os.getpid()})
