"""SIGTERM handled like Ctrl-C, so that an interrupted run cleans up after itself.

Python turns SIGINT into :class:`KeyboardInterrupt`, which unwinds every ``with`` and ``finally`` block
(temporary solver folders, the output staging folder, worker processes); SIGTERM by default kills the
process on the spot and leaves all of those behind. :func:`install` makes both signals raise
:class:`Interrupted` (a ``KeyboardInterrupt``, so code that already cleans up on Ctrl-C does the same on
SIGTERM). The CLI reports it as one line and exits ``128 + signal number``: 130 for SIGINT, 143 for SIGTERM.

While cleanup runs, a second signal is ignored; a third ends the process at once. Inside
:func:`deferred` (the few renames that put a finished output folder into place) a signal is held back
and acted on when the block ends, so a folder is never left half-replaced.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_state: dict[str, Any] = {"received": 0, "deferred": 0, "pending": None}


def _handler(signum: int, frame: Any) -> None:
    if _state["deferred"]:
        _state["pending"] = _state["pending"] or signum
        return
    _state["received"] += 1
    if _state["received"] == 1:
        raise Interrupted(signum)
    if _state["received"] >= 3:  # cleanup itself hangs: give up at once
        os._exit(128 + signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def exit_code(exc: BaseException) -> int:
    """The exit code for an interrupt: 128 + signal number (130 for a plain KeyboardInterrupt)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def describe(exc: BaseException) -> str:
    """'SIGTERM' or 'SIGINT' for an interrupt."""
    return exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the duration of the block, then act on one that arrived."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
        pending = _state["pending"]
        if not _state["deferred"] and pending is not None:
            _state["pending"] = None
            _handler(pending, None)
