"""Processes that draw figures beside the command, without importing matplotlib into it.

:class:`FigureWorker` is forked by ``solve`` before the model is built: it imports matplotlib while the
command builds and solves (on the other core, and while the IPOPT executable runs), then draws whatever
figures it is sent. On ieee123 x 5 h the figures are ~0.75 s of CPU after the solve and the OpenDSS check
~0.3 s with its engine's import; the warm worker, a copy of it forked per job (matplotlib already imported:
one import of ~0.3 s CPU instead of two) and the command share that on two cores instead of the command
importing matplotlib itself after the solve. When no worker could be forked before the build, the
command forks one after the solve, once it has imported matplotlib itself.

Nothing here imports matplotlib, pandas or Pyomo: the command line imports this module before they are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

#: F_SETPIPE_SZ (Linux): a job (the case and the results, ~0.1 MB at ieee123 x 5 h) fits into the pipe, so
#: sending one never waits for a worker still importing matplotlib.
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20


#: The figures every run has, in drawing order (the validation and distributed ones follow when they apply).
BASE_FIGURES = ("substation", "forecast", "battery", "reactive", "voltages", "profile", "network")
#: Relative CPU cost of drawing and saving each figure (ieee123, 5 h; unlisted: 1), to share them out.
FIGURE_COST = {"substation": 1.3, "forecast": 0.6, "battery": 1.4, "reactive": 1.0, "voltages": 0.7,
               "profile": 0.6, "network": 1.0, "validation": 1.0}


def figure_names(results: Any, validated: bool | None = None) -> list[str]:
    """The names (PNG file stems) of the figures :func:`mpdopf_pyomo.plots.figures` draws for ``results``.

    ``validated``: whether the run has (or will have, once validated) its OpenDSS check; None reads it
    from ``results``. The command line asks before validating, to draw the other figures meanwhile.
    """
    import math

    extra = results.extra_tables
    names = list(BASE_FIGURES)
    if validated or (validated is None and "validation_voltages" in extra):
        names.append("validation")
    if "convergence" in extra and len(extra["convergence"]):
        names.append("convergence")
        central = results.summary.get("central_objective_usd")
        if isinstance(central, (int, float)) and not isinstance(central, bool) and math.isfinite(central):
            names.append("comparison")
    return names


def share(names: list[str], n: int) -> list[list[str]]:
    """``names`` split into ``n`` groups of about equal :data:`FIGURE_COST` (largest first, each to the
    lightest group so far), every group in drawing order."""
    groups: list[list[str]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for name in sorted(names, key=lambda x: -FIGURE_COST.get(x, 1.0)):
        k = loads.index(min(loads))
        groups[k].append(name)
        loads[k] += FIGURE_COST.get(name, 1.0)
    return [[x for x in names if x in g] for g in groups]


def core_is_free() -> bool:
    """Whether another core is idle, judged by the 1-minute load average (this process counts about 1).

    A second process only pays when it gets a core of its own: on a busy machine it adds CPU (its own
    font set-up, copy-on-write page faults) and no parallelism. Measured on 2 shared cores at a load of
    about 10 (ieee123, 5 h): 0.1-0.2 s more CPU and no shorter wall time than drawing in-process.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available: assume a free core
        return True
    return load < (os.cpu_count() or 1) - 0.5


def can_fork() -> bool:
    """Whether forking is available and safe here: Linux, and no other Python thread running (a dask
    client, say, whose locks the child would inherit)."""
    import threading

    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def child_setup(parent: int) -> None:
    """In a forked child: default signal handling (Ctrl-C or SIGTERM ends it at once, with no clean-up
    of the parent's), and death with the parent (Linux ``PR_SET_PDEATHSIG``) so that a killed run leaves
    no process writing into its staging folder."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux's libc: the child just finishes its figures
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def fork_child(body: Callable[[], None], close: Iterable[int] = ()) -> int:
    """Fork; in the child close the file descriptors ``close`` (the parent's pipe ends), set it up
    (:func:`child_setup`), run ``body`` and leave with ``os._exit`` (0 when ``body`` returned, 1 on any
    exception: the parent draws what is missing and reports any error itself), never running the
    parent's clean-up. Returns the child's pid in the parent; raises :class:`OSError` if it cannot fork."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in close:
                os.close(fd)
            child_setup(parent)
            body()
            code = 0
        except BaseException:  # noqa: BLE001 - see the docstring
            pass
        finally:
            os._exit(code)
    return pid


#: This process's ends of the pipes of its live workers: a later worker closes them at once, or a worker
#: would never see the end of its input while a sibling holds the write end.
_PARENT_FDS: set[int] = set()


def reap(pid: int, kill: bool = True) -> None:
    """Wait for the child ``pid`` to end (SIGKILL it first when ``kill``); a child already gone is fine."""
    import signal

    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_message(fd: int, data: bytes) -> None:
    payload = len(data).to_bytes(8, "little") + data
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _read_message(fd: int) -> bytes | None:
    """One length-prefixed message, or None at end of file."""
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    body = _read_exactly(fd, int.from_bytes(head, "little"))
    return body


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FigureWorker:
    """A forked child that imports matplotlib at once and then draws the figures of each job it is sent
    into the job's folder (the output claim's staging folder: nothing is visible before the run commits).

    :meth:`submit` sends (case, results, names, folder); :meth:`wait` returns the PNG files of every job
    sent so far (a figure it did not write -- it failed or was killed -- is left to the caller to draw
    in-process, so an error in a figure surfaces there as usual); :meth:`stop` kills and reaps it (on an
    error or interrupt, before the staging folder is removed; after :meth:`wait` it only reaps).
    """

    def __init__(self, pid: int, job_fd: int, report_fd: int) -> None:
        self.pid: int | None = pid
        self._job_fd: int | None = job_fd
        self._report_fd: int | None = report_fd
        self._pending: list[list[str]] = []
        #: The :data:`FIGURE_COST` of every figure sent so far.
        self.load = 0.0
        #: The names of every figure sent to this worker.
        self.names: list[str] = []
        #: The worker's own drawing and saving time, s (overlapping with the caller's work).
        self.seconds = 0.0

    @classmethod
    def start(cls) -> "FigureWorker | None":
        """Fork a worker; None where forking is not available or not safe (:func:`can_fork`), or not worth
        it (:func:`core_is_free`)."""
        if not can_fork() or not core_is_free():
            return None
        import gc

        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # objects alive now are not scanned again: no copy-on-write of the shared heap
        job_r, job_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            import fcntl

            fcntl.fcntl(job_w, _F_SETPIPE_SZ, _PIPE_BYTES)
        except (ImportError, OSError):  # smaller pipe: a large job waits for the worker to read it
            pass
        def serve() -> None:  # in the child, whose copies of the siblings' pipes fork_child closed
            _PARENT_FDS.clear()
            _serve(job_r, report_w)

        pid = fork_child(serve, (job_w, report_r, *_PARENT_FDS))
        os.close(job_r)
        os.close(report_w)
        _PARENT_FDS.update((job_w, report_r))
        return cls(pid, job_w, report_r)

    def submit(self, case: Any, results: Any, names: list[str], folder: str | Path, parts: int = 1) -> None:
        """Send a job: draw ``names`` of (case, results) into ``folder``, shared out (:func:`share`) between
        the worker and ``parts - 1`` copies of it forked for the job (with matplotlib already imported, a
        copy costs no import: one warm worker instead of two saves ~0.3 s of CPU). A worker that is gone
        gets none."""
        import pickle

        if self._job_fd is None or not names:
            return
        groups = [g for g in share(list(names), max(1, parts)) if g]
        try:
            _write_message(self._job_fd, pickle.dumps((case, results, groups, str(folder)),
                                                      protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return  # not sent: the caller draws these itself
        self._pending.append(list(names))
        self.names += list(names)
        self.load += sum(FIGURE_COST.get(n, 1.0) for n in names)

    def wait(self) -> list[str]:
        """End the worker's input, reap it and return the PNG files it wrote for every job sent."""
        import json

        if self.pid is None:
            return []
        written: list[str] = []
        try:
            _PARENT_FDS.discard(self._job_fd)  # type: ignore[arg-type]
            os.close(self._job_fd)  # type: ignore[arg-type]
            self._job_fd = None
            for names in self._pending:
                data = _read_message(self._report_fd)  # type: ignore[arg-type]
                if data is None:
                    break
                report = json.loads(data)
                self.seconds += float(report.get("seconds", 0.0))
                written += [f for f in report.get("files", []) if f in {f"{n}.png" for n in names}]
        except (OSError, ValueError):
            pass
        finally:
            self._pending = []
            self._reap(kill=False)
        return written

    def stop(self) -> None:
        """Kill and reap the worker if it still runs (no-op after :meth:`wait`)."""
        self._reap(kill=True)

    def _reap(self, kill: bool) -> None:
        for attr in ("_job_fd", "_report_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                _PARENT_FDS.discard(fd)
                os.close(fd)
                setattr(self, attr, None)
        if self.pid is None:
            return
        reap(self.pid, kill)
        self.pid = None


def _serve(job_fd: int, report_fd: int) -> None:
    """The worker's loop: import the figures module, then draw each job and report its files."""
    import gc
    import json
    import pickle
    import time

    from mpdopf_pyomo import plots

    gc.freeze()  # matplotlib's modules are shared with the copies forked per job, not copied on write
    while (data := _read_message(job_fd)) is not None:
        case, results, groups, folder = pickle.loads(data)
        t0 = time.perf_counter()
        written = _draw_parts(plots, case, results, groups, folder, (job_fd, report_fd))
        _write_message(report_fd, json.dumps({"files": written, "seconds": time.perf_counter() - t0}).encode())


def _draw(plots: Any, case: Any, results: Any, names: list[str], folder: str) -> list[str]:
    """Draw ``names`` one at a time (a failing figure leaves the others written); the files written."""
    written: list[str] = []
    for name in names:
        try:
            written += plots.write_figures(case, results, [name], folder)
        except Exception:  # noqa: BLE001 - the parent draws it again and reports the error
            pass
    return written


def _draw_parts(plots: Any, case: Any, results: Any, groups: list[list[str]], folder: str,
                own_fds: tuple[int, ...]) -> list[str]:
    """Draw ``groups[0]`` here and each later group in a forked copy of this worker (which dies with it:
    :func:`child_setup`); the files written by all, once every copy has ended."""
    import json

    children: list[tuple[int, int]] = []
    here = list(groups[0]) if groups else []
    for group in groups[1:]:
        try:
            read_fd, write_fd = os.pipe()
        except OSError:  # no pipe or process to spare: this worker draws the group itself
            here += group
            continue
        def draw_group(group: list[str] = group, write_fd: int = write_fd) -> None:
            _write_message(write_fd, json.dumps(_draw(plots, case, results, group, folder)).encode())

        try:  # this worker reports what the copy wrote; the parent draws the rest
            pid = fork_child(draw_group, (read_fd, *own_fds, *(r for _, r in children)))
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            here += group
            continue
        os.close(write_fd)
        children.append((pid, read_fd))
    written = _draw(plots, case, results, here, folder)
    for pid, read_fd in children:
        try:
            data = _read_message(read_fd)
            if data is not None:
                written += [str(f) for f in json.loads(data)]
        except (OSError, ValueError):
            pass
        finally:
            os.close(read_fd)
            reap(pid, kill=False)
    return written
