"""User-facing errors: each carries the CLI exit code and prints as one clear line."""


class MpdopfError(Exception):
    """Base class of every error the CLI reports as one line instead of a traceback.

    The message names settings as the Python API does (``tol = 1e+09: ...``); ``cli_message``, when given,
    is the same error in the command line's words (``--tol 1e+09: ...``), which the CLI prints instead.
    """

    exit_code = 2

    def __init__(self, message: str = "", cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message


def bad_setting(name: str, flag: str, shown: str, what: str, cls: type[MpdopfError] | None = None) -> MpdopfError:
    """A bad value of a setting: ``NAME = VALUE: WHAT`` for the API, ``--FLAG VALUE: WHAT`` for the CLI."""
    return (cls or CaseError)(f"{name} = {shown}: {what}", cli_message=f"{flag} {shown}: {what}")


class CaseError(MpdopfError):
    """Bad input: a case file, network model or profile that is missing or inconsistent."""

    exit_code = 2


class SolverUnavailable(MpdopfError):
    """The requested solver is not installed or cannot be loaded."""

    exit_code = 3


class SolveFailed(MpdopfError):
    """The solver ran but did not reach an optimal point (infeasible, iteration or time limit...)."""

    exit_code = 4


class ValidationFailed(MpdopfError):
    """The OpenDSS power flow could not be run or did not converge."""

    exit_code = 5


class WorkerDied(MpdopfError):
    """A worker process holding area models of a distributed run ended during the run."""

    exit_code = 6


class RunFailed(MpdopfError):
    """A fresh process that a benchmark tool timed ended with an error. The tool exits with that process's
    own code when it is one of these (2 bad input ... 6 worker died), else 1 (a crash, a signal)."""

    exit_code = 1

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        if returncode in (2, 3, 4, 5, 6):
            self.exit_code = returncode


def one_line(text: str) -> str:
    """``text`` with every control or other non-printable character escaped, so a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
