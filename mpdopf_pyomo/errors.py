"""User-facing errors: each carries the CLI exit code and prints as one clear line."""


class MpdopfError(Exception):
    """Base class of every error the CLI reports as one line instead of a traceback."""

    exit_code = 2


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
