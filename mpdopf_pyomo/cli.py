"""Command-line interface (click). Every user-facing failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

import click

from mpdopf_pyomo import __version__
from mpdopf_pyomo.errors import MpdopfError


class _Group(click.Group):
    """A click group that turns :class:`MpdopfError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MpdopfError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


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
                click.echo(
                    f"  {s['name']:<8} OK       {s['version'] or '?':<10} route={s['route']}"
                    f"  linear solver={s['linear_solver']}  at {s['location']}"
                )
            else:
                click.echo(f"  {s['name']:<8} MISSING  {s['detail']}")
                click.echo(f"           fix: {s['fix']}")
    if not report["ok"]:
        click.echo("error: no NLP solver works; see the fixes above", err=True)
        sys.exit(1)


@main.command("install-solvers")
def install_solvers() -> None:
    """Compile Pyomo's PyNumero ASL library so that IPOPT runs through cyipopt (needs cmake, g++)."""
    from mpdopf_pyomo import solvers

    lib = solvers.build_pynumero()
    click.echo(f"PyNumero ASL library installed at {lib}")
    info = solvers.probe("cyipopt")
    status = "OK" if info.available else f"NOT usable: {info.detail}"
    click.echo(f"cyipopt (IPOPT {info.version}): {status}")
    if not info.available:
        sys.exit(3)


@main.group("cases", invoke_without_command=True)
@click.pass_context
def cases(ctx: click.Context) -> None:
    """List the bundled study cases, one line each; `cases show NAME|PATH` describes one."""
    if ctx.invoked_subcommand is None:
        from mpdopf_pyomo.case import list_cases

        for name, description in list_cases():
            click.echo(f"{name:<20} {description}")


@cases.command("show")
@click.argument("case")
@click.option("--hours", type=int, default=None, help="Horizon in periods (default: the case's default_hours).")
def cases_show(case: str, hours: int | None) -> None:
    """Load CASE (a bundled name or a path to a .toml) and print its buses, branches, loads, DERs, areas."""
    from mpdopf_pyomo.case import describe_case, load_case

    click.echo(describe_case(load_case(case, hours)))
