"""Entry point for ``python -m mpdopf_pyomo`` and the ``mpdopf`` console script."""

import os
import sys


def single_thread_blas_default() -> None:
    """One OpenBLAS thread for this command and the processes it starts, unless the user set a count.

    numpy's OpenBLAS otherwise starts a thread per core, whose busy-waiting takes the core the IPOPT
    process, the figure workers or the area workers need; this program's BLAS calls are small. Measured on
    2 shared cores, A B A B, 5 runs each (`solve --case ieee123`): 24 h without figures 3.25 against 3.40 s
    wall (3.26 against 3.68 s CPU), the default 5 h command 2.95 against 3.22 s; `import numpy` alone 0.15
    against 0.20 s. Set before numpy loads; ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` given by the
    user win. Library use (``import mpdopf_pyomo``) leaves the user's process as it is.
    """
    if "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


single_thread_blas_default()

from mpdopf_pyomo import interrupts  # noqa: E402  (after the BLAS thread default)
from mpdopf_pyomo.cli import main  # noqa: E402


def run() -> None:
    """Run the CLI with SIGTERM handled like Ctrl-C, then leave without tearing the interpreter down.

    Everything is written (or cleaned up, after an error or interrupt) by the time ``main`` returns:
    temporary folders and the output claim are released by ``with`` blocks and click's context
    teardown, not at interpreter exit, so ``os._exit`` skips nothing that matters. Freeing a large Pyomo
    model object by object at interpreter exit takes 0.1-0.3 s (ieee123, 5-24 h), a tenth of a whole
    solve command.
    """
    interrupts.install()
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt as exc:  # outside a command (the CLI reports those itself)
        print(f"error: interrupted by {interrupts.describe(exc)}", file=sys.stderr)
        code = interrupts.exit_code(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
