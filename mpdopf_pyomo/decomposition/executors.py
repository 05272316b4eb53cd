"""Where the area solvers live: in this process, in local worker processes, or on a Dask cluster.

Every executor has the same small interface, so an algorithm never knows which one runs it:

* ``start(specs)``: build the area solvers (once per run) in their workers; returns ``info`` per area;
* ``map(method, args_by_area)``: call ``AreaSolver.<method>(*args)`` for each listed area, in parallel
  where the executor can, and return the results by area;
* ``close()``; ``parallel`` says whether areas run concurrently; ``worker_pids()`` lists the processes,
  ``groups()`` the areas of each worker and ``worker_labels()`` their names; ``capacity()`` tells
  ``--areas auto`` how many workers there are.

A worker that dies raises :class:`WorkerDied` (an :class:`MpdopfError`) within about a second; nothing
waits forever.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
import warnings
from abc import ABC, abstractmethod
from multiprocessing.connection import wait as mp_wait
from typing import Any, Mapping

from mpdopf_pyomo.decomposition.area_solver import AreaHost, AreaSpec, prepare_process
from mpdopf_pyomo.errors import MpdopfError, WorkerDied, bad_setting

EXECUTORS = ("serial", "processes", "dask")


def split_areas(specs: list[AreaSpec], n_workers: int) -> list[list[AreaSpec]]:
    """Group areas onto workers, largest first onto the least-loaded worker (size = bus count)."""
    groups: list[list[AreaSpec]] = [[] for _ in range(max(1, min(n_workers, len(specs))))]
    load = [0] * len(groups)
    sizes = {s.area: int((s.case.buses["area"] == s.area).sum()) for s in specs}
    for s in sorted(specs, key=lambda s: -sizes[s.area]):
        w = load.index(min(load))
        groups[w].append(s)
        load[w] += sizes[s.area]
    return [g for g in groups if g]


class Executor(ABC):
    """Runs area-solver methods; see the module docstring."""

    name = "executor"
    parallel = False

    @abstractmethod
    def start(self, specs: list[AreaSpec]) -> dict[int, dict[str, Any]]: ...

    @abstractmethod
    def map(self, method: str, args_by_area: Mapping[int, tuple]) -> dict[int, Any]: ...

    def close(self) -> None:
        pass

    def worker_pids(self) -> list[int]:
        return [os.getpid()]

    def groups(self) -> list[list[int]]:
        """The areas of each worker (a worker solves its areas one after another)."""
        return []

    def worker_labels(self) -> list[str]:
        """A name for each worker of :meth:`groups` (its process id, or its Dask address)."""
        return [f"pid {pid}" for pid in self.worker_pids()]

    def capacity(self) -> dict[str, int]:
        """Keywords of :func:`.partition.auto_areas` for this executor (``cores``: its workers); empty:
        this machine's."""
        return {}

    def describe(self) -> str:
        return self.name

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SerialExecutor(Executor):
    """All areas in this process, one after the other."""

    name = "serial"

    def start(self, specs: list[AreaSpec]) -> dict[int, dict[str, Any]]:
        self.host = AreaHost(specs)
        return self.host.call("info", {s.area: () for s in specs})

    def map(self, method: str, args_by_area: Mapping[int, tuple]) -> dict[int, Any]:
        return self.host.call(method, args_by_area)

    def groups(self) -> list[list[int]]:
        return [list(self.host.solvers)]

    def worker_labels(self) -> list[str]:
        return [f"coordinator (pid {os.getpid()})"]


# --------------------------------------------------------------------------------------------------
# Local worker processes
# --------------------------------------------------------------------------------------------------


#: Name prefix of threads that only import modules (the CLI's background import of the plotting code):
#: :func:`start_method` waits for them to finish rather than give up forking.
IMPORT_THREAD_PREFIX = "import "
#: Seconds :func:`start_method` waits for such threads (an import takes a fraction of a second).
IMPORT_WAIT_S = 5.0


def start_method() -> str:
    """How :class:`ProcessExecutor` starts its workers: ``"fork"`` on Linux when this process runs no other
    Python thread, else ``"spawn"``.

    A forked worker starts with the modules and the case already in memory; a spawned one starts a new
    interpreter, imports Pyomo, pandas, SciPy... and unpickles its areas' case (1,025 buses, 8 areas, 2
    workers: about 1.8 s CPU less with fork). Another thread's locks (an import in progress, a Dask
    client's event loop) would stay locked for ever in a forked child, so such a process spawns; threads
    named :data:`IMPORT_THREAD_PREFIX` are first waited for (up to :data:`IMPORT_WAIT_S`).
    """
    import sys
    import threading

    if not sys.platform.startswith("linux") or "fork" not in mp.get_all_start_methods():
        return "spawn"
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and t.name.startswith(IMPORT_THREAD_PREFIX):
            t.join(IMPORT_WAIT_S)
    return "fork" if threading.active_count() == 1 else "spawn"


def _worker_main(conn: Any, specs: list[AreaSpec], inherited: tuple[Any, ...] | None = None) -> None:
    """A worker process: build the area solvers, then serve (method, args_by_area) requests.

    Ctrl-C is left to the coordinator (it closes the workers); a coordinator that is gone -- broken
    pipe -- ends the worker quietly instead of with a traceback. A forked worker (``inherited``: the
    coordinator's ends of its own and the earlier workers' pipes, which it closes so that a coordinator
    that dies leaves every pipe at EOF) also drops the coordinator's SIGTERM handler
    (:mod:`mpdopf_pyomo.interrupts`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if inherited is not None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for other in inherited:
            other.close()
    try:
        _serve(conn, specs)
    except (BrokenPipeError, EOFError, ConnectionError):
        pass


def _serve(conn: Any, specs: list[AreaSpec]) -> None:
    try:
        host = AreaHost(specs)
        conn.send(("ok", host.call("info", {s.area: () for s in specs})))
    except BaseException as exc:  # noqa: BLE001  (report anything to the coordinator)
        conn.send(("error", _portable(exc)))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        method, args = msg
        try:
            conn.send(("ok", host.call(method, args)))
        except (BrokenPipeError, ConnectionError):
            raise
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles (our MpdopfErrors do), else an MpdopfError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        tb = traceback.format_exception_only(type(exc), exc)
        return MpdopfError("worker error: " + "".join(tb).strip())


class ProcessExecutor(Executor):
    """Persistent local worker processes, each holding a group of areas (forked where
    :func:`start_method` allows, else spawned)."""

    name = "processes"
    parallel = True

    def __init__(self, n_workers: int | None = None, poll_s: float = 0.2):
        self.n_workers = n_workers or (os.cpu_count() or 1)
        self.poll_s = poll_s
        self.workers: list[tuple[Any, Any, list[int]]] = []  # (process, connection, areas)
        self.method: str | None = None  #: "fork" or "spawn" (:func:`start_method`), once started

    def start(self, specs: list[AreaSpec]) -> dict[int, dict[str, Any]]:
        import gc
        import sys

        self.method = start_method()
        ctx = mp.get_context(self.method)
        forked = self.method == "fork"
        if forked:
            if specs:
                prepare_process(specs[0].solver)  # once here, not once per worker
            # a child would flush the parent's buffered output a second time when it ends
            sys.stdout.flush()
            sys.stderr.flush()
            # objects alive now (modules, the case) are not scanned by the children's collector: a scan
            # writes into every object, which would copy each shared page of the heap into every worker
            gc.freeze()
        try:
            for group in split_areas(specs, self.n_workers):
                parent_conn, child_conn = ctx.Pipe()
                # a forked child holds copies of the coordinator's pipe ends (its own and the earlier
                # workers'): closed in the child, or no worker would see the coordinator die (EOF)
                inherited = (*(c for _, c, _ in self.workers), parent_conn) if forked else None
                proc = ctx.Process(target=_worker_main, args=(child_conn, group, inherited), daemon=True,
                                   name=f"mpdopf-areas-{'-'.join(str(s.area) for s in group)}")
                proc.start()
                child_conn.close()
                self.workers.append((proc, parent_conn, [s.area for s in group]))
        finally:
            if forked:
                gc.unfreeze()
        info: dict[int, dict[str, Any]] = {}
        for res in self._gather(list(range(len(self.workers))), "start"):
            info.update(res)
        return info

    def _gather(self, pending_workers: list[int], what: str) -> list[Any]:
        pending = {self.workers[w][1]: w for w in pending_workers}
        results: list[Any] = []
        error: BaseException | None = None
        while pending:
            ready = mp_wait(list(pending), timeout=self.poll_s)
            for conn in ready:
                w = pending.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    raise self._died(w, what) from None
                if status == "error":
                    error = error or payload
                else:
                    results.append(payload)
            for conn, w in list(pending.items()):
                if not self.workers[w][0].is_alive() and not conn.poll():
                    raise self._died(w, what)
        if error is not None:
            raise error
        return results

    def _died(self, w: int, what: str) -> WorkerDied:
        proc, _, areas = self.workers[w]
        proc.join(timeout=1.0)
        return WorkerDied(
            f"worker process {proc.pid} holding area(s) {', '.join(map(str, areas))} died "
            f"(exit code {proc.exitcode}) during '{what}'; the distributed run was stopped"
        )

    def map(self, method: str, args_by_area: Mapping[int, tuple]) -> dict[int, Any]:
        involved = []
        for w, (_, conn, areas) in enumerate(self.workers):
            sub = {a: args_by_area[a] for a in areas if a in args_by_area}
            if sub:
                try:
                    conn.send((method, sub))
                except (BrokenPipeError, OSError):
                    raise self._died(w, method) from None
                involved.append(w)
        out: dict[int, Any] = {}
        for res in self._gather(involved, method):
            out.update(res)
        return out

    def worker_pids(self) -> list[int]:
        return [p.pid for p, _, _ in self.workers]

    def groups(self) -> list[list[int]]:
        return [list(areas) for _, _, areas in self.workers]

    def capacity(self) -> dict[str, int]:
        return {"cores": self.n_workers}

    def close(self) -> None:
        for proc, conn, _ in self.workers:
            try:
                if proc.is_alive():
                    conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 3.0
        for proc, conn, _ in self.workers:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
            conn.close()
        self.workers = []

    def describe(self) -> str:
        return f"processes ({len(self.workers)} workers, {self.method or 'not started'})"


# --------------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------------


class DaskExecutor(Executor):
    """``dask.distributed`` Actors, one per worker, each holding a group of areas for the whole run.

    Without ``scheduler``: a LocalCluster on 127.0.0.1 of ``n_workers`` worker processes (default: one per
    core; at most one per area), one thread each, no Dask memory limit (a solve is never paused or killed
    by Dask's memory manager; the operating system's limits apply), Dask's logging silenced and Ctrl-C left
    to this process (the workers ignore SIGINT; closing the cluster ends them). With ``scheduler``:
    ``Client(address)`` joins an existing cluster and spreads the areas over its workers (the first
    ``n_workers`` of them, waiting up to :data:`WAIT_WORKERS_S` for that many to join, when given). Every
    worker must run the same versions of this package and of the numerical stack (:data:`SAME_VERSIONS`);
    a worker that does not is refused before any area is built.

    Each actor (an :class:`AreaHost`) builds its areas' models once; an iteration sends each worker only
    its areas' boundary vectors and receives their port values.
    """

    name = "dask"
    parallel = True

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None, poll_s: float = 0.5):
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.poll_s = poll_s
        self.cluster: Any = None
        self.client: Any = None
        self.workers: list[str] = []  # addresses of the workers this run uses
        self.actors: list[tuple[Any, str, list[int]]] = []  # (actor, worker address, areas)

    # ----------------------------------------------------------------------------------------------
    def connect(self, n_areas: int | None = None) -> None:
        """Join the scheduler or start the local cluster (once), and check the workers' versions."""
        if self.client is not None:
            return
        # An interrupt (Ctrl-C, SIGTERM) abandons the actors' pending result coroutines; when they are
        # collected, tornado warns "coroutine 'ActorFuture._result' was never awaited" on stderr (seen in one
        # of two CI runs of test_ctrl_c_is_one_line_and_leaves_no_worker). Nothing is lost: the run stops.
        warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover
            raise bad_setting("executor", "--executor", "'dask'", f"needs the 'distributed' package: {exc}",
                              MpdopfError) from None
        self._silence_dask()
        try:
            if self.scheduler:
                _reachable(self.scheduler)
                try:
                    self.client = Client(self.scheduler, timeout=f"{CONNECT_TIMEOUT_S:g}s")
                except Exception as exc:
                    raise WorkerDied(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
                self.workers = self._cluster_workers()
            else:
                n = self.n_workers or os.cpu_count() or 1
                n = max(1, min(n, n_areas or n))  # at most one worker per area
                self.cluster = _local_cluster(n)
                self.client = Client(self.cluster)
                self.workers = sorted(self._identity()["workers"])
            check_worker_versions(self.client, self.workers)
        except BaseException:
            self.close()
            raise

    def _cluster_workers(self) -> list[str]:
        """The existing cluster's workers this run uses (waits for ``n_workers`` or at least one)."""
        want = self.n_workers or 1
        try:
            self.client.wait_for_workers(want, timeout=WAIT_WORKERS_S if self.n_workers else CONNECT_TIMEOUT_S)
        except TimeoutError:
            have = len(self._identity()["workers"])
            raise WorkerDied(f"the Dask scheduler at {self.scheduler} has {have} worker(s), {want} needed "
                             f"(waited {WAIT_WORKERS_S if self.n_workers else CONNECT_TIMEOUT_S:g} s); start "
                             "them with `dask worker " + self.scheduler + " --nthreads 1`") from None
        workers = sorted(self._identity()["workers"])
        return workers[: self.n_workers] if self.n_workers else workers

    def _identity(self) -> dict[str, Any]:
        """The scheduler's description of the cluster, with every worker, fetched now.

        (``Client.scheduler_info()`` returns a cached copy that the client's periodic refresh replaces
        by one *without* the workers: it raced with a check of whether a worker is alive.)"""
        return self.client.sync(self.client.scheduler.identity, n_workers=-1)

    def capacity(self) -> dict[str, int]:
        """What ``--areas auto`` should plan for: the cluster's workers (and their memory, when limited)."""
        if not self.scheduler:
            return {"cores": self.n_workers} if self.n_workers else {}
        self.connect()
        info = self._identity()["workers"]
        limits = [int(info[w].get("memory_limit") or 0) for w in self.workers]
        out = {"cores": len(self.workers)}
        if limits and all(limits):
            out["memory_bytes"] = sum(limits)
        return out

    def _silence_dask(self) -> None:
        """Dask logs a lost worker or scheduler as several ERROR/WARNING lines on stderr; the run reports it
        as one line (WorkerDied), so keep its own logging to CRITICAL while this executor runs."""
        import logging

        names = ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
        self._dask_levels = {n: logging.getLogger(n).level for n in names}
        for n in names:
            logging.getLogger(n).setLevel(logging.CRITICAL)

    def start(self, specs: list[AreaSpec]) -> dict[int, dict[str, Any]]:
        self.connect(len(specs))
        if not self.workers:
            raise WorkerDied("the Dask cluster has no workers")
        groups = split_areas(specs, len(self.workers))
        futures = []
        for w, group in zip(self.workers, groups):
            fut = self.client.submit(AreaHost, group, actor=True, workers=[w], allow_other_workers=False,
                                     pure=False)
            futures.append((fut, w, [s.area for s in group]))
        for fut, w, areas in futures:
            self.actors.append((self._wait(fut, w, "start", areas), w, areas))
        return self.map("info", {a: () for _, _, areas in self.actors for a in areas})

    def groups(self) -> list[list[int]]:
        return [list(areas) for _, _, areas in self.actors]

    def worker_labels(self) -> list[str]:
        return [w for _, w, _ in self.actors]

    def _alive(self, address: str) -> bool | None:
        """Whether the scheduler lists the worker; None when the scheduler itself does not answer."""
        try:
            return address in self._identity()["workers"]
        except Exception:
            return None

    def _scheduler_lost(self, what: str, lost: bool = False) -> None:
        """Raise :class:`WorkerDied` naming the scheduler when the client lost its connection to it."""
        status = str(getattr(self.client, "status", "running"))
        if lost or status not in ("running", "newly-created"):
            where = self.scheduler or "of the local cluster"
            raise WorkerDied(f"lost the connection to the Dask scheduler {where} during '{what}' (client "
                             f"status '{status}'); the distributed run was stopped")

    def _gone(self, address: str, what: str, state: bool | None, areas: list[int]) -> None:
        """Raise for a lost scheduler (state None) or a worker the scheduler no longer lists (False)."""
        self._scheduler_lost(what, lost=state is None)
        if state is False:
            raise WorkerDied(f"Dask worker {address} holding area(s) {', '.join(map(str, areas))} died during "
                             f"'{what}'; the distributed run was stopped")

    def _wait(self, fut: Any, address: str, what: str, areas: list[int]) -> Any:
        """Result of a (actor) future; a clear error when its worker or the scheduler is gone, not a hang."""
        while True:
            self._scheduler_lost(what)
            try:
                return fut.result(timeout=self.poll_s)
            except TimeoutError:
                pass
            except Exception as exc:
                self._scheduler_lost(what)
                state = self._alive(address)
                deadline = time.monotonic() + 5.0  # let the scheduler notice a dead worker
                while state is True and time.monotonic() < deadline and not isinstance(exc, MpdopfError):
                    time.sleep(0.2)
                    state = self._alive(address)
                self._gone(address, what, state, areas)
                if isinstance(exc, MpdopfError):
                    raise
                raise MpdopfError(f"Dask worker {address} failed during '{what}': {exc}") from None
            self._gone(address, what, self._alive(address), areas)

    def map(self, method: str, args_by_area: Mapping[int, tuple]) -> dict[int, Any]:
        calls = []
        for actor, w, areas in self.actors:
            sub = {a: args_by_area[a] for a in areas if a in args_by_area}
            if sub:
                calls.append((actor.call(method, sub), w, areas))
        out: dict[int, Any] = {}
        for fut, w, areas in calls:
            out.update(self._wait(fut, w, method, areas))
        return out

    def worker_pids(self) -> list[int]:
        return [self._wait(actor.pid(), w, "pid", areas) for actor, w, areas in self.actors]

    def close(self) -> None:
        self.actors = []
        for obj in (self.client, self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except BaseException:  # an interrupt while closing: the workers go with this process
                    pass
        self.client = self.cluster = None
        import logging

        for n, level in getattr(self, "_dask_levels", {}).items():
            logging.getLogger(n).setLevel(level)

    def describe(self) -> str:
        where = self.scheduler or "local cluster"
        return f"dask ({where}, {len(self.actors)} workers)"


def _local_cluster(n_workers: int) -> Any:
    """A LocalCluster of ``n_workers`` single-threaded worker processes on 127.0.0.1 whose processes
    ignore SIGINT (the disposition is inherited through spawn), so that Ctrl-C in a terminal -- sent to
    the whole process group -- reaches only this process, which then closes the cluster quietly."""
    import logging
    import signal
    import threading

    from distributed import LocalCluster

    _quiet_resource_tracker()
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            scheduler_port=0, dashboard_address=None, memory_limit=0,
                            silence_logs=logging.CRITICAL,
                            # no dashboard; its HTTP server (health checks) on a free port, not 8787,
                            # which another cluster may hold (Dask then warns on stderr)
                            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


#: Packages whose versions must be the same on every Dask worker as in this process (the area models and
#: their solves must be the ones this process would build: a distributed run gives the serial answer).
SAME_VERSIONS = ("mpdopf_pyomo", "python", "pyomo", "numpy", "cyipopt-wheels")


def environment() -> dict[str, str | None]:
    """This process's versions of :data:`SAME_VERSIONS` (run on every Dask worker by ``client.run``)."""
    import importlib.metadata
    import platform

    import mpdopf_pyomo

    out: dict[str, str | None] = {"mpdopf_pyomo": mpdopf_pyomo.__version__,
                                  "python": ".".join(platform.python_version_tuple()[:2])}
    for pkg in SAME_VERSIONS[2:]:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def check_worker_versions(client: Any, workers: list[str]) -> None:
    """Refuse (exit 2, one line naming the worker) a Dask worker that cannot import this package or runs
    other versions of :data:`SAME_VERSIONS` than this process."""
    here = environment()
    try:
        theirs = client.run(environment, workers=workers, on_error="return")
    except Exception as exc:
        raise WorkerDied(f"the Dask workers did not answer the version check: {exc}") from None
    for w in workers:
        env = theirs.get(w)
        if isinstance(env, BaseException):
            raise MpdopfError(f"Dask worker {w} cannot run mpdopf_pyomo ({type(env).__name__}: {env}); install "
                              f"mpdopf_pyomo {here['mpdopf_pyomo']} in the environment of every worker")
        for pkg in SAME_VERSIONS:
            if env.get(pkg) != here[pkg]:
                raise MpdopfError(f"Dask worker {w} runs {pkg} {env.get(pkg)}, this process {here[pkg]}: "
                                  "install the same versions on every worker (the workers must build the "
                                  "same area models)")


#: Seconds to wait for a Dask scheduler to answer when joining it (a refused port fails at once).
CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for ``n_workers`` workers to join an existing cluster.
WAIT_WORKERS_S = 30.0
#: Address schemes of dask.distributed; only tcp/tls addresses can be checked for a host and port.
_DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def check_scheduler_address(address: str) -> None:
    """Reject a malformed Dask scheduler address (no host, a port outside 1-65535, an unknown scheme)
    with :class:`CaseError` (exit 2), before anything is built."""
    from mpdopf_pyomo.errors import CaseError

    try:
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, loc = parse_address(address.strip(), strict=False)
        if scheme not in _DASK_SCHEMES:
            raise ValueError(f"unknown scheme '{scheme}://' (use tcp://HOST:PORT)")
        if scheme in ("tcp", "tls"):
            host, port = parse_host_port(loc)
            if not host or any(c.isspace() for c in host):
                raise ValueError("no host name")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1-65535")
    except ImportError:  # pragma: no cover - reported when the executor starts
        return
    except (ValueError, TypeError) as exc:
        raise bad_setting("scheduler", "--scheduler", repr(address),
                          f"not a Dask scheduler address (tcp://HOST:PORT): {exc}") from None


def _reachable(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S when nothing listens at a tcp address (Dask itself retries for 20 s+)."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address.strip(), strict=False)
    if scheme not in ("tcp", "tls"):
        return
    host, port = parse_host_port(loc)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise WorkerDied(f"cannot reach the Dask scheduler at {address}: {exc.strerror or exc}; is "
                         "`dask scheduler` running there?") from None


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its stderr on /dev/null.

    When a LocalCluster worker is killed, the tracker warns about the semaphores it leaked (and removes
    them) when this process exits, i.e. after our one-line error; that warning is noise, not a fault.
    A tracker that is already running keeps its stderr.
    """
    try:
        from multiprocessing import resource_tracker

        tracker = resource_tracker._resource_tracker
        if getattr(tracker, "_fd", None) is not None:
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(2)
        try:
            os.dup2(devnull, 2)
            resource_tracker.ensure_running()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    except Exception:  # a private API: without it only the warning stays
        pass


def worker_table(exe: Executor, info: Mapping[int, Mapping[str, Any]], peak: Mapping[int, float]) -> list[dict[str, Any]]:
    """``summary['distributed']['workers']``: per worker its name (process id or Dask address), process
    id, areas and peak resident memory (MB), so a run shows where each area ran and what it cost."""
    return [{"worker": label, "pid": int(info[areas[0]]["pid"]), "areas": list(areas),
             "peak_mb": float(max(peak[a] for a in areas))}
            for label, areas in zip(exe.worker_labels(), exe.groups()) if areas]


def default_executor(scheduler: str | None = None, n_workers: int | None = None) -> str:
    """'dask' when a scheduler is named; else 'processes' on a multi-core machine (ieee123, 5 h, 2 cores:
    ADMM command 4.0-4.2 s against 4.95-5.0 s serial) or when workers are asked for, 'serial' on one core."""
    if scheduler:
        return "dask"
    return "processes" if (os.cpu_count() or 1) > 1 or n_workers else "serial"


def make_executor(name: str = "serial", scheduler: str | None = None, n_workers: int | None = None) -> Executor:
    """An executor by name: 'serial', 'processes' or 'dask' (``scheduler`` only with dask)."""
    if scheduler and name != "dask":
        raise MpdopfError(f"scheduler = {scheduler!r} needs executor = 'dask', got {name!r}",
                          cli_message="--scheduler needs --executor dask")
    if n_workers is not None and not (isinstance(n_workers, int) and n_workers >= 1):
        raise bad_setting("n_workers", "--workers", repr(n_workers), "the number of workers must be an integer >= 1")
    if n_workers is not None and name == "serial":
        raise bad_setting("n_workers", "--workers", str(n_workers), "applies to executor 'processes' or 'dask', "
                          "not 'serial'")
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(n_workers)
    if name == "dask":
        return DaskExecutor(scheduler, n_workers)
    raise MpdopfError(f"unknown executor '{name}'; choose one of {', '.join(EXECUTORS)}")
