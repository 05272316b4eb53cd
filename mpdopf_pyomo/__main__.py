"""Entry point for ``python -m mpdopf_pyomo``."""

from mpdopf_pyomo.cli import main

if __name__ == "__main__":
    main()
