"""Entry point for ``python -m mpdopf_pyomo`` and the ``mpdopf`` console script."""

import os
import sys

from mpdopf_pyomo.cli import main


def run() -> None:
    """Run the CLI, then leave without tearing the interpreter down.

    Everything is written by then; freeing a large Pyomo model object by object at interpreter exit takes
    0.1-0.3 s (ieee123, 5-24 h), a tenth of a whole solve command.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
