"""Entry point for ``python -m mpdopf_pyomo`` and the ``mpdopf`` console script."""

import os
import sys

from mpdopf_pyomo import interrupts
from mpdopf_pyomo.cli import main


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
