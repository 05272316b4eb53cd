"""The progress receiver every layer may report to (the CLI prints each line on stderr with a timestamp).

Its own module so that the decomposition, the pipeline and the CLI share it without importing each other.
"""

from __future__ import annotations

from typing import Callable

#: Receives one line per stage or iteration.
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default progress receiver: says nothing."""
