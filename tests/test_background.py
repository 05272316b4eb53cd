"""Warm figure workers (mpdopf_pyomo.background): forked before the plan exists, they draw the jobs sent
later, each worker ends when its input ends (also with a sibling alive), a failing figure leaves the others
written, stop() leaves no process behind; the figures are shared out by cost."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from mpdopf_pyomo import background
from mpdopf_pyomo.background import FIGURE_COST, FigureWorker, share

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="figure workers fork (Linux only)")


@pytest.fixture(scope="module")
def solved():
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.pipeline import solve_central

    case = load_case("ieee123", 2, warn=None)
    return case, solve_central(case, "linear")


@pytest.fixture()
def free_core(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.fixture()
def alarm():
    """Fail instead of hanging (a worker that never sees the end of its input would block wait())."""
    def boom(*_):
        raise TimeoutError("a figure worker did not finish")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@linux
def test_two_workers_draw_their_jobs_and_end(solved, tmp_path, free_core, alarm):
    case, res = solved
    a, b = FigureWorker.start(), FigureWorker.start()
    assert a is not None and b is not None
    a.submit(case, res, ["forecast", "substation"], tmp_path)
    b.submit(case, res, ["profile"], tmp_path)
    a.submit(case, res, ["voltages"], tmp_path)  # a second job to the same worker
    assert sorted(b.wait()) == ["profile.png"]
    assert sorted(a.wait()) == ["forecast.png", "substation.png", "voltages.png"]
    assert a.pid is None and b.pid is None and a.seconds > 0
    assert (tmp_path / "voltages.png").read_bytes()[:4] == b"\x89PNG"
    assert not background._PARENT_FDS


@linux
def test_a_failing_figure_leaves_the_others(solved, tmp_path, free_core, alarm):
    case, res = solved
    w = FigureWorker.start()
    w.submit(case, res, ["no-such-figure", "forecast"], tmp_path)
    assert w.wait() == ["forecast.png"]  # the caller draws "no-such-figure" itself and sees its error


@linux
def test_stop_kills_and_reaps(solved, tmp_path, free_core):
    case, res = solved
    w = FigureWorker.start()
    pid = w.pid
    w.submit(case, res, ["battery"] * 20, tmp_path)
    w.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert w.wait() == []


@linux
def test_a_job_in_two_parts_is_drawn_by_the_worker_and_a_copy(solved, tmp_path, free_core, alarm):
    """parts=2: half the figures in a copy of the warm worker forked for the job (no second matplotlib
    import); every file is reported, a failing figure in either half leaves the rest."""
    case, res = solved
    w = FigureWorker.start()
    w.submit(case, res, ["forecast", "battery", "no-such-figure", "profile"], tmp_path, parts=2)
    w.submit(case, res, ["voltages"], tmp_path)
    assert sorted(w.wait()) == ["battery.png", "forecast.png", "profile.png", "voltages.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["battery.png", "forecast.png", "profile.png",
                                                          "voltages.png"]


@linux
def test_a_part_that_cannot_be_forked_is_drawn_by_the_worker(solved, tmp_path, free_core, monkeypatch):
    from mpdopf_pyomo import plots

    def no_fork():
        raise OSError("fork: Resource temporarily unavailable")

    case, res = solved
    monkeypatch.setattr(os, "fork", no_fork)  # what the worker sees (called here, in this process)
    got = background._draw_parts(plots, case, res, [["forecast"], ["profile"]], str(tmp_path), ())
    assert sorted(got) == ["forecast.png", "profile.png"]


@linux
def test_stop_also_ends_the_copy_drawing_a_part(solved, tmp_path, free_core):
    import time

    case, res = solved
    w = FigureWorker.start()
    w.submit(case, res, ["battery"] * 10 + ["forecast"] * 10, tmp_path, parts=2)
    time.sleep(2.0)  # matplotlib imported and both halves drawing
    w.stop()
    time.sleep(0.3)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    time.sleep(1.0)  # a copy left running would go on rewriting its files
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_no_worker_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1), 0.0, 0.0))
    assert FigureWorker.start() is None


def test_share_balances_the_cost_and_keeps_the_order():
    names = ["substation", "forecast", "battery", "reactive", "voltages", "profile", "network"]
    groups = share(names, 2)
    assert sorted(sum(groups, [])) == sorted(names)
    costs = [sum(FIGURE_COST[n] for n in g) for g in groups]
    assert abs(costs[0] - costs[1]) <= max(FIGURE_COST.values())
    for g in groups:
        assert g == [n for n in names if n in g]
    assert share(["forecast"], 2) == [["forecast"], []]
