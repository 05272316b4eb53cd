"""Command-line interface (click). Every user-facing failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import click

from mpdopf_pyomo import __version__, algorithms
from mpdopf_pyomo.errors import CaseError, MpdopfError, one_line
from mpdopf_pyomo.formulations import FORMULATIONS


class _Group(click.Group):
    """A click group that turns :class:`MpdopfError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MpdopfError as exc:
            click.echo(f"error: {one_line(exc.cli_message or str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM via mpdopf_pyomo.interrupts: cleaned up by now
            from mpdopf_pyomo import interrupts

            click.echo(f"error: interrupted by {interrupts.describe(exc)}; stopped, temporary files removed",
                       err=True)
            ctx.exit(interrupts.exit_code(exc))


class AreasType(click.ParamType):
    """``--areas``: an integer >= 2 or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        return click.IntRange(2, None).convert(value, param, ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mpdopf_pyomo")
def main() -> None:
    """Multi-period (distributed) optimal power flow for distribution feeders, checked in OpenDSS."""


def _opendss_version() -> str | None:
    try:
        import opendssdirect as dss

        return dss.Basic.Version().split("\n")[0]
    except Exception as exc:  # pragma: no cover - reported, not raised
        return f"unavailable ({exc})"


def environment_report() -> dict[str, Any]:
    """What ``doctor`` prints: Python, package and engine versions, and every NLP solver's status."""
    from mpdopf_pyomo import solvers

    infos = solvers.probe_all()
    return {
        "mpdopf_pyomo": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": solvers.package_versions(),
        "opendss_engine": _opendss_version(),
        "solvers": [info.as_dict() for info in infos],
        "ipopt_routes": [info.as_dict() for info in solvers.ipopt_routes()],
        "default_solver": "ipopt",
        "ok": any(info.available for info in infos),
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(as_json: bool) -> None:
    """Report installed versions and which NLP solvers work (exit 1 if none does)."""
    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"mpdopf_pyomo {report['mpdopf_pyomo']}  (Python {report['python']}, {report['platform']})")
        for pkg, ver in report["packages"].items():
            click.echo(f"  {pkg:<18} {ver or 'MISSING'}")
        click.echo(f"  {'OpenDSS engine':<18} {report['opendss_engine']}")
        click.echo("NLP solvers:")
        for s in report["solvers"]:
            if s["available"]:
                mumps = f" {s['mumps']}" if s.get("mumps") else ""
                click.echo(
                    f"  {s['name']:<8} OK       {s['version'] or '?':<10} route={s['route']}"
                    f"  linear solver={s['linear_solver']}{mumps}  at {s['location']}"
                )
                if s.get("note"):
                    click.echo(f"           note: {s['note']}")
            else:
                click.echo(f"  {s['name']:<8} MISSING  {s['detail']}")
                click.echo(f"           fix: {s['fix']}")
        click.echo("IPOPT routes (fastest first; --solver ipopt takes the first executable, else the first library;"
                   " --solver cyipopt and distributed area solves the first library):")
        for r in report["ipopt_routes"]:
            state = "OK     " if r["available"] else "MISSING"
            click.echo(f"  {r['route']:<10} {state} IPOPT {r['version'] or '?':<8} MUMPS {r['mumps'] or '?':<6}"
                       f" linear solver={r['linear_solver'] or '?'}  {r['build']}"
                       + (f"  at {r['location']}" if r["available"] else f": {r['detail']}"))
    if not report["ok"]:
        click.echo("error: no NLP solver works; see the fixes above", err=True)
        sys.exit(1)


@main.command("install-solvers")
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Also build IPOPT on MUMPS 5.8 (cyipopt + AMPL ipopt on casadi's libipopt); optional.")
@click.option("--force", is_flag=True, help="Rebuild the fast IPOPT even when the build is current.")
def install_solvers(fast: bool, force: bool) -> None:
    """Compile Pyomo's PyNumero ASL library (needs cmake, g++), then build the fast IPOPT routes.

    A failed fast build is reported with its reason and leaves the cyipopt-wheels route in use (exit 0);
    only a library route that does not work at all exits 3.
    """
    from mpdopf_pyomo import solver_build, solvers

    lib = solvers.build_pynumero()
    click.echo(f"PyNumero ASL library installed at {lib}")
    if fast:
        click.echo(f"Fast IPOPT (MUMPS 5.8) into {solver_build.prefix()}:")
        try:
            data = solver_build.build(force=force, progress=click.echo)
        except Exception as exc:  # optional: never fails setup; `doctor` prints the fallback and its fix
            click.echo(f"  fast IPOPT NOT built: {exc}; the cyipopt-wheels route stays in use")
        else:
            for name in ("library", "executable"):
                entry = data.get("parts", {}).get(name)
                if entry:
                    where = solver_build.prefix() / entry["path"]
                    click.echo(f"  {name:<10} OK  IPOPT {entry['ipopt']} MUMPS {entry['mumps']} at {where}")
                else:
                    click.echo(f"  {name:<10} NOT built: {data.get('errors', {}).get(name)}; fix: {solver_build.FIX}")
            if data.get("build_s"):
                click.echo(f"  (took {data['build_s']} s)")
    info = solvers.probe("cyipopt")
    status = "OK" if info.available else f"NOT usable: {info.detail}"
    click.echo(f"cyipopt (IPOPT {info.version}, MUMPS {info.mumps}, {info.build}): {status}")
    if not info.available:
        sys.exit(3)


@main.group("cases", invoke_without_command=True)
@click.pass_context
def cases(ctx: click.Context) -> None:
    """List the bundled study cases, one line each; `cases show NAME|PATH` describes one."""
    if ctx.invoked_subcommand is None:
        from mpdopf_pyomo.catalog import list_cases

        for name, description in list_cases():
            click.echo(f"{name:<20} {description}")


@cases.command("show")
@click.argument("case")
@click.option("--hours", type=int, default=None, help="Horizon in periods (default: the case's default_hours).")
@click.option("--start", type=int, default=None, metavar="HH",
              help="Clock hour of the first period, 0..23 for a 24-period day (default: the case's exact "
                   "horizon table, else the middle of the day); the window must end within the day.")
@click.option("--gap", is_flag=True,
              help="OpenDSS networks: also solve the original feeder and the converted network at the base case "
                   "and print the gap (substation P and Q, backbone voltages) split by element group.")
def cases_show(case: str, hours: int | None, start: int | None, gap: bool) -> None:
    """Load CASE (a bundled name or a path to a .toml) and print its buses, branches, loads, DERs, areas."""
    from mpdopf_pyomo import formulations
    from mpdopf_pyomo.case import describe_case, load_case

    loaded = load_case(case, hours, start=start)
    click.echo(describe_case(loaded))
    click.echo("  formulations (--formulation):")
    for name, why in formulations.supported(loaded):
        f = formulations.get(name)
        reduced = f.family == "balanced" and loaded.conversion is not None and loaded.conversion.as_dict().get("entries")
        click.echo(f"    {name:<11} {'yes' if why is None else 'no '}  {f.family}: "
                   + (f.description if why is None else why)
                   + (" (on the feeder's balanced equivalent: the conversion report above)" if reduced else ""))
    if gap:
        if loaded.network_model.suffix.lower() != ".dss":
            raise CaseError(f"--gap: {loaded.network_model} is not an OpenDSS feeder (no original to compare)")
        from mpdopf_pyomo.feeders import base_case_gap, format_gap

        click.echo(format_gap(base_case_gap(loaded.network_model)))


@cases.command("generate")
@click.option("--buses", type=click.IntRange(129, 200_000), required=True,
              help="At least this many buses: ceil((N-1)/128) ieee123 sections + the substation.")
@click.option("--layout", type=click.Choice(["tree", "chain"]), default="tree", show_default=True,
              help="Sections in a shallow tree (heap order, --fanout children each) or one chain.")
@click.option("--fanout", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Tree layout: sections hanging from the substation and from each section's root.")
@click.option("--joint-ohm", "joint_ohm", type=float, default=1e-4, show_default=True,
              help="R = X of each joint line between sections, ohm per phase (> 0).")
@click.option("--hours", type=click.IntRange(1, 24), default=None, help="The case's default_hours (default 5).")
@click.option("--out", "out_dir", type=click.Path(), required=True,
              help="New or empty folder (or one this program wrote) for master.dss ... and case.toml.")
def cases_generate(buses: int, layout: str, fanout: int, joint_ohm: float, hours: int | None,
                   out_dir: str) -> None:
    """Write a large radial test feeder (ieee123 copies joined at their roots, the study's DER recipe,
    areas = sections) after a LinDistFlow check at the study's voltage limits (exit 2 if it fails)."""
    from mpdopf_pyomo.network.generate import describe, generate

    click.echo(describe(generate(buses, out_dir, layout, fanout, joint_ohm, hours)))


@main.command()
@click.option("--case", "case_spec", required=True, help="Bundled case name (see `cases`) or path to a case .toml.")
@click.option("--hours", type=click.IntRange(1, None), default=None, help="Horizon in periods (default: the case's).")
@click.option("--start", type=int, default=None, metavar="HH",
              help="Clock hour of the first period, 0..23 for a 24-period day (default: the case's exact "
                   "horizon table, else the middle of the day); the window must end within the day.")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the OpenDSS check hour by hour (default: the worst hour and any hour above tolerance).")
@click.option("--algorithm", type=click.Choice(["central", *algorithms.names()]), default="central",
              show_default=True)
@click.option("--formulation", type=click.Choice(list(FORMULATIONS)), default="exact", show_default=True,
              help="Physics: balanced DistFlow (exact, socp: second-order-cone relaxation, linear: LinDistFlow) "
                   "or 3ph-exact (exact unbalanced three-phase AC, OpenDSS feeders; central, admm or enapp), 3ph-linear "
                   "(LinDist3Flow, its node-by-node gap reported); `cases show` "
                   "lists which a case supports.")
@click.option("--solver", default="ipopt", show_default=True, help="Any NLP solver Pyomo can drive (see `doctor`).")
@click.option("--solver-option", "solver_options", multiple=True, metavar="KEY=VALUE",
              help="Passed to the solver; repeatable (e.g. max_iter=500). IPOPT and ripopt options are checked "
                   "before anything is built; each solve stops at max_iter=1000 and max_wall_time=600 s "
                   "unless set here.")
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="Output folder: new, empty, or a previous results folder of this program (replaced); "
                   "anything else is refused before solving (default runs/<case>_<hours>h_<algorithm>).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check the plan in OpenDSS.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures.")
@click.option("--tee", is_flag=True, help="Show the solver's own log.")
@click.option("--executor", type=click.Choice(["serial", "processes", "dask"]), default=None,
              help="Distributed runs: where area problems are solved (default: processes on a multi-core "
                   "machine, serial on one core; dask with --scheduler).")
@click.option("--scheduler", default=None, help="Dask scheduler address to join (implies --executor dask).")
@click.option("--workers", "n_workers", type=click.IntRange(1, None), default=None, metavar="N",
              help="Distributed runs: worker processes of --executor processes or of the local Dask cluster "
                   "(default: one per core, at most one per area); with --scheduler: use N of the cluster's "
                   "workers, waiting up to 30 s for them to join.")
@click.option("--areas", "n_areas", type=AreasType(), default=None, metavar="N|auto",
              help="Distributed runs: partition the feeder automatically into N >= 2 areas instead of the "
                   "case's; auto: one per core, more if memory needs it.")
@click.option("--rho", type=float, default=None,
              help="ADMM penalty, USD/pu^2, finite and > 0 (default: adaptive from 2e4).")
@click.option("--tol", type=float, default=None,
              help="Distributed stopping tolerance on the boundary residuals, pu, 1e-10 <= tol <= 1e-2 "
                   "(default 1e-4): looser lets the areas disagree by more than 1 % of the base power; "
                   "tighter is below what the area solves resolve.")
@click.option("--stop", type=click.Choice(["residual", "gap"]), default=None,
              help="Distributed stopping rule: residual (both boundary residuals <= --tol, the default) or "
                   "gap (primal residual <= --tol and the objective within --gap-tol of --central-objective, "
                   "or, without it, changed by at most --gap-tol relative in the last iteration).")
@click.option("--gap-tol", "gap_tol", type=float, default=None,
              help="--stop gap: relative objective tolerance, 1e-10 <= g <= 0.1 (default 1e-4).")
@click.option("--central-objective", "central_objective", type=float, default=None, metavar="USD",
              help="Distributed runs: the central optimum, when known (e.g. from a central run's summary); "
                   "the summary reports the final gap to it and --stop gap stops on it.")
@click.option("--max-iter", "max_iter", type=click.IntRange(1, None), default=None,
              help="Distributed iteration cap.")
@click.option("--keep-last", is_flag=True, help="Distributed runs: keep the last iterate when the cap is reached.")
@click.option("--damping", type=float, default=None,
              help="ENApp damping of the exchanged values, 0 < d <= 1 (default 1: undamped, as the study; "
                   "5 iterations on ieee123 5 h, 11 at 0.7).")
@click.option("--enapp-prices", "enapp_prices", type=click.Choice(["substation", "exchange"]), default=None,
              help="ENApp: children pay the substation price for their head power (substation, the study's, "
                   "the default), or the areas also exchange their marginal values each round (exchange: "
                   "LMPs for P and Q, the voltage's value), whose fixed point is the central optimum.")
@click.option("--warm-start", "warm_start", type=click.Choice(["enapp", "none"]), default=None,
              help="ADMM starting point: a few re-priced ENApp iterations and their duals (enapp, the "
                   "default), or the LinDistFlow point at the substation price (none).")
def solve(case_spec: str, hours: int | None, start: int | None, verbose: bool, algorithm: str, formulation: str,
          solver: str, solver_options: tuple[str, ...], out_dir: str | None, as_json: bool, validate: bool, plots: bool,
          tee: bool, executor: str | None, scheduler: str | None, n_workers: int | None,
          n_areas: int | str | None, rho: float | None,
          tol: float | None, stop: str | None, gap_tol: float | None, central_objective: float | None,
          max_iter: int | None, keep_last: bool, damping: float | None, enapp_prices: str | None,
          warm_start: str | None) -> None:
    """Plan batteries and PV reactive power over the horizon at least energy cost; write results."""
    import time

    from mpdopf_pyomo import _START
    from mpdopf_pyomo.outputs import OutputFolder, default_folder
    from mpdopf_pyomo import solvers
    from mpdopf_pyomo.solvers import check_options, parse_options

    def progress(msg: str) -> None:
        if not as_json:
            click.echo(f"[{time.perf_counter() - _START:6.2f} s] {msg}", err=True)

    def claim(path: str | Path) -> OutputFolder:  # refuses a bad --out now, not after the solve
        target = OutputFolder.claim(path)
        click.get_current_context().call_on_close(target.discard)  # on failure or interrupt; no-op once saved
        return target

    options = check_options(solver, parse_options(solver_options))  # bad input: exit 2 before any work
    if algorithm != "central":
        from mpdopf_pyomo.decomposition import check_settings

        check_settings(tol=tol, rho=rho, scheduler=scheduler, damping=damping, warm_start=warm_start, stop=stop,
                       gap_tol=gap_tol, central_objective=central_objective)
    for flag, value, key in (("--damping", damping, "damping"), ("--warm-start", warm_start, "warm_start"),
                             ("--rho", rho, "rho"), ("--enapp-prices", enapp_prices, "prices")):
        if value is None:
            continue  # (the registry imports the algorithms: only when a flag needs checking)
        takers = [n for n in algorithms.names() if key in algorithms.get(n).OPTIONS]
        if algorithm not in takers:
            raise CaseError(f"{flag} applies only to --algorithm {' or '.join(takers)}")
    target = claim(out_dir) if out_dir is not None else None
    from mpdopf_pyomo import pipeline  # heavy imports (pandas, Pyomo) after the quick checks
    from mpdopf_pyomo.case import load_case

    case = load_case(case_spec, hours, start=start)
    distributed = {k: v for k, v in dict(executor=executor, scheduler=scheduler, n_workers=n_workers,
                                         n_areas=n_areas, rho=rho,
                                         tol=tol, stop=stop, gap_tol=gap_tol,
                                         central_objective=central_objective, max_iter=max_iter,
                                         keep_last=keep_last or None,
                                         damping=damping, prices=enapp_prices, warm_start=warm_start).items()
                   if v is not None}
    if target is None:
        target = claim(default_folder(case.name, case.hours, algorithm, start))
    # Figures: a warm worker forked now (it imports matplotlib while this process builds and solves), sent
    # the plan when it is ready, which it draws in two halves, one in a copy of itself forked then (no
    # second import); else a worker forked after the solve (matplotlib imported here meanwhile), else here.
    workers = _figure_workers(1) if plots else []
    # what the steps after the solve import (the OpenDSS engine 0.25 s, matplotlib 0.2-0.3 s unless the
    # workers draw), imported while the IPOPT executable runs (started then, so that it does not slow the
    # build and the NL write; after the solve at the latest); joined before any fork and before validating
    preload = _Preload((*(["mpdopf_pyomo.plots"] if plots and not workers else []),
                        *(["opendssdirect", "mpdopf_pyomo.validation"] if validate else [])))
    t_solve = time.perf_counter()
    with solvers.when_solver_runs(preload.start):
        results = pipeline.solve(case, algorithm=algorithm, formulation=formulation, solver=solver,
                                 options=options, validate=False, tee=tee, progress=progress, **distributed)
    preload.start()
    timings = results.summary["timings"]
    timings["load_s"] = t_solve - _START  # imports, option checks, the output claim, the case load
    files: list[str] = []
    if plots:  # the figures that do not need the OpenDSS check are drawn meanwhile, in child processes
        from mpdopf_pyomo import background as bg

        t_fig = time.perf_counter()
        early = [n for n in bg.figure_names(results, validated=validate) if n != "validation"]
        if not workers:  # none could be forked before the build: one now, with matplotlib imported here
            preload.join()
            workers = _figure_workers(1)
        if workers:
            workers[0].submit(case, results, early, target.staging, parts=2)
            for part in bg.share(early, 2):
                if part:
                    progress(f"drawing {', '.join(part)} in a background process")
        timings["figures_s"] = time.perf_counter() - t_fig
    if validate:
        progress("validating every hour in OpenDSS")
        t0 = time.perf_counter()
        preload.join()
        pipeline.validate_results(results)
        timings["validation_s"] = time.perf_counter() - t0
    if plots:
        t_fig = time.perf_counter()
        names = bg.figure_names(results)
        done: list[str] = []
        if workers:
            late = [n for n in names if n not in early]
            min(workers, key=lambda w: w.load).submit(case, results, late, target.staging)
            progress("waiting for the figures")
            done = [f for w in workers for f in w.wait()]
            timings["figures_background_s"] = max(w.seconds for w in workers)
        missing = [n for n in names if f"{n}.png" not in done]
        if missing:  # no worker, or one failed: drawn here (an error in a figure shows here)
            from mpdopf_pyomo import plots as plotting  # raises here if the background import failed

            progress(f"drawing figures: {', '.join(missing)}")
            done += plotting.write_figures(case, results, missing, target.staging)
        files += done
        timings["figures_s"] += time.perf_counter() - t_fig
    progress(f"writing {out_dir or target.path}")

    def stamp_total(summary: dict[str, Any]) -> None:  # after every table and figure, before summary.json
        summary["timings"]["total_s"] = time.perf_counter() - _START

    folder = results.save(target, files=files, before_summary=stamp_total)
    if as_json:
        click.echo(json.dumps(json.loads((folder / "summary.json").read_text()), indent=2))
    else:
        click.echo(format_summary(results.summary, folder, verbose))


@main.command()
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="Output folder (default runs/reproduce); the --out rules of `solve` apply.")
@click.option("--executor", type=click.Choice(["serial", "processes"]), default=None,
              help="Where ENApp's area problems are solved (default: processes on a multi-core machine).")
def reproduce(out_dir: str | None, executor: str | None) -> None:
    """Run the source study's case (ieee123-published, 5 h) central and by ENApp (4 areas, undamped) and
    print the study's figures beside ours, per phase, with the relative difference; write the table
    (reproduce.md, reproduce.csv) and both runs' summaries into the output folder."""
    import time

    from mpdopf_pyomo import _START
    from mpdopf_pyomo.outputs import OutputFolder
    from mpdopf_pyomo import reproduce as rep

    def progress(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - _START:6.2f} s] {msg}", err=True)

    target = OutputFolder.claim(out_dir or rep.DEFAULT_OUT)  # a bad --out is refused before the solves
    click.get_current_context().call_on_close(target.discard)
    table, runs = rep.reproduce(executor=executor, progress=progress)
    folder = rep.write(target, table, runs)
    click.echo(f"Reproducing the study: {rep.CASE}, {rep.HOURS} h, per phase (the study's convention)")
    click.echo(rep.format_text(table))
    click.echo(f"written to {out_dir or rep.DEFAULT_OUT}  (reproduce.md, reproduce.csv)")
    if (table["reproduced"] == "no").any():
        click.echo("note: some figures differ from the study's by more than the stated tolerance", err=True)


@main.command("validate")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Redraw the figures (PNG) in FOLDER after the check.")
@click.option("--strict", is_flag=True, help="Exit with code 1 when the mismatch is above tolerance.")
@click.option("--json", "as_json", is_flag=True, help="Print the validation summary as JSON.")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the OpenDSS check hour by hour (default: the worst hour and any hour above tolerance).")
def validate_cmd(folder: str, plots: bool, strict: bool, as_json: bool, verbose: bool) -> None:
    """Check the plan saved in FOLDER in OpenDSS again; rewrite its validation CSVs and summary entry."""
    from mpdopf_pyomo.validation import format_validation, revalidate_folder

    results = revalidate_folder(folder, figures=plots, warn=lambda m: click.echo(f"note: {m}", err=True))
    v = results.summary["validation"]
    if as_json:
        from mpdopf_pyomo.results import jsonable

        click.echo(json.dumps(jsonable(v), indent=2))
    else:
        s = results.summary
        click.echo(f"{s.get('case')}  {s.get('hours')} h  {s.get('algorithm')}  {s.get('formulation')}  "
                   f"(engine: {v['engine']}; {v['time_s']:.3f} s)")
        click.echo("\n".join(format_validation(v, verbose)))
        click.echo(f"  written to       {folder}")
    if strict and not v["passed"]:
        sys.exit(1)


class _Preload:
    """Imports ``modules`` (in order) in a thread once :meth:`start` is called (again: no-op); :meth:`join`
    waits for them (starting them first if need be). A failed import is left to the ``import`` after the
    join, which raises it.

    The solve command imports matplotlib and the OpenDSS engine this way while the IPOPT executable runs
    in its own process: this one only waits for it then, so the imports (0.2-0.3 s each) cost next to
    nothing. Started earlier, the thread would take the interpreter lock from the build and the NL write.
    """

    def __init__(self, modules: tuple[str, ...]) -> None:
        import threading

        self.modules = modules
        self._thread = threading.Thread(target=self._run, name=f"import {', '.join(modules)}", daemon=True)
        self._started = not modules

    def _run(self) -> None:
        import importlib

        for module in self.modules:
            try:
                importlib.import_module(module)
            except BaseException:  # noqa: BLE001 - re-raised by the caller's own import
                pass

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def join(self) -> None:
        self.start()
        if self.modules:
            self._thread.join()


def _figure_workers(n: int) -> list[Any]:
    """Up to ``n`` :class:`mpdopf_pyomo.background.FigureWorker` processes (none where forking is not
    possible, safe or worth it), each stopped with the command (before its staging folder is removed)."""
    from mpdopf_pyomo.background import FigureWorker

    workers = []
    for _ in range(n):
        worker = FigureWorker.start()
        if worker is None:
            break
        click.get_current_context().call_on_close(worker.stop)
        workers.append(worker)
    return workers


def format_distributed_timing(d: dict[str, Any]) -> list[str]:
    """``--verbose`` lines of a distributed run: where the time went (timing.csv summed) and the memory."""
    ts = d.get("timing_s", {})
    if not ts:
        return []
    lines = [
        f"  iteration time   critical path {ts['critical_path']:.2f} s (slowest area per iteration), area solves "
        f"{ts['area_solves_total']:.2f} s in all, waiting {ts['waiting']:.2f} s (areas queued on a worker), idle "
        f"{ts.get('idle', 0.0):.2f} s (workers), transfer {ts['transfer']:.2f} s, coordinator {ts['coordinator']:.2f} s",
        f"  projected        {ts['projected_one_core_per_area']:.2f} s with one core per area (slowest build "
        f"{ts['area_build_max']:.2f} s + critical path + transfer + coordinator), measured "
        f"{ts['measured_build_and_iterations']:.2f} s on {d.get('executor')}",
    ]
    if "critical_path_cpu" in ts:
        lines.append(f"  CPU time         critical path {ts['critical_path_cpu']:.2f} s, area solves "
                     f"{ts['area_solves_total_cpu']:.2f} s; projected {ts['projected_one_core_per_area_cpu']:.2f} s "
                     "with a free core per area")
    workers = d.get("workers") or []
    mem = [f"coordinator {d['coordinator_peak_mb']:.0f} MB"] if "coordinator_peak_mb" in d else []
    mem += [f"{w['worker']} (area{'s' if len(w['areas']) > 1 else ''} {', '.join(map(str, w['areas']))}) "
            f"{w['peak_mb']:.0f} MB" for w in workers]
    if mem:
        lines.append("  peak memory      " + "; ".join(mem))
    return lines


def format_summary(s: dict[str, Any], folder: Any, verbose: bool = False) -> str:
    """The short terminal summary of a run (``verbose``: the OpenDSS check hour by hour)."""
    from mpdopf_pyomo.case import both_conventions

    t = s["timings"]
    ph = s.get("phases", 3)
    distributed = "distributed" in s
    ipopt = (f"{s['solver_stats'].get('iterations')} {s['solver']} iterations in all area solves" if distributed
             else f"{s['solver_stats'].get('iterations')} iterations")
    lines = [
        f"{s['case']}  {s['hours']} h  {s['algorithm']}  {s['formulation']}  solver {s['solver']} "
        f"({s.get('solver_route', '')}, {ipopt})",
        f"  energy cost      {both_conventions(s['energy_cost_usd'], 'USD', ph, '.4f')}  (the study's objective)",
        f"  objective        {s['objective_usd']:.4f} USD = energy {s['energy_cost_usd']:.4f} + alpha x conversion "
        f"losses {s['conversion_loss_cost_usd']:.4f}"
        + (f" + terminal {s['terminal_cost_usd']:.4f}" if s.get("terminal_cost_usd") else "")
        + " USD, three-phase (objective_usd)",
        f"  substation       {both_conventions(s['substation_energy_kwh'], 'kWh', ph, '.1f')}, "
        f"peak {both_conventions(s['substation_peak_kw'], 'kW', ph, '.1f')}",
        f"  losses           {both_conventions(s['losses_kwh'], 'kWh', ph, '.2f')}",
        f"  PV               {both_conventions(s['pv_energy_kwh'], 'kWh', ph, '.1f')}, "
        f"reactive {both_conventions(s['pv_reactive_kvarh'], 'kvarh', ph, '.1f')}",
        f"  batteries        charge {both_conventions(s['battery_charge_kwh'], 'kWh', ph, '.1f')}, "
        f"discharge {both_conventions(s['battery_discharge_kwh'], 'kWh', ph, '.1f')}",
        f"  voltage          {s['v_min_pu']:.4f} .. {s['v_max_pu']:.4f} pu",
    ]
    if distributed:
        d = s["distributed"]
        warm = d.get("warm_start_iterations")
        split = f" ({warm} ENApp warm start + {d['iterations'] - warm} ADMM)" if warm else ""
        lines.append(
            f"  distributed      {d['iterations']} {d['algorithm']} iterations{split}, primal {d['primal_residual']:.2e}, "
            f"dual {d['dual_residual']:.2e}, {d['exchanged_per_iteration']} values exchanged per iteration"
        )
        if d.get("converged_in_warm_start"):
            lines.append("                   (converged in the warm start's price exchange: no ADMM iteration needed)")
        if d.get("gap_to_central") is not None:
            lines.append(f"  gap to central   {d['gap_to_central']:+.2e} (objective against --central-objective "
                         f"{d['central_objective_usd']:.4f} USD)")
        if verbose:
            lines += format_distributed_timing(d)
    if "validation" in s:
        from mpdopf_pyomo.validation import format_validation

        lines += format_validation(s["validation"], verbose)
    stages = [("load", "load_s"), ("build", "build_s"), ("solver", "solve_s"), ("validation", "validation_s"),
              ("figures", "figures_s"), ("writing", "write_s"), ("total", "total_s")]
    lines.append("  timings          " + ", ".join(f"{label} {t[key]:.2f} s" for label, key in stages if key in t))
    lines.append(f"  written to       {folder}")
    return "\n".join(lines)
