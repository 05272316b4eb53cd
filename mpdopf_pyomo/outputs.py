"""Output folders: claimed before the solve, written beside the target, put into place atomically.

Rules (README, and docs/src/reference/cli.md "Output folders"):

* A results folder carries a marker file, :data:`MARKER` (``.mpdopf-run``), naming the tool, its version
  and every file the program wrote there. Only such a folder is ever replaced, and only when it holds
  nothing but those files: a user's notes or subfolders put into it make it "not ours" again.
* ``--out`` may be a path that does not exist yet (missing parents are created), an existing *empty*
  folder, or a results folder written by this program. Anything else -- a non-empty folder without the
  marker, a file, a device, a FIFO, a socket, a symbolic link, a read-only folder -- is refused with one
  line (exit 2) before the solve, and left untouched.
* :meth:`OutputFolder.claim` runs before the solve: it takes a lock (``.NAME.mpdopf-lock`` beside the
  target, ``fcntl.flock``) so that a second run to the same folder is refused at once, and creates the
  staging folder ``.NAME.tmp-XXXX`` beside the target (inside it when it is an empty folder), which
  proves that the location is writable (``os.access`` is no proof when running as root; creating is).
* :meth:`OutputFolder.commit` moves the finished staging folder into place: the previous run is renamed
  aside, the new one renamed in, then the old one deleted file by file (only the files its marker lists).
  Signals are held back during these renames. On any failure or interrupt, :meth:`OutputFolder.discard`
  removes the staging folder, the lock and the parent folders the claim created.
* Folder and file modes follow the umask.
* A case name is a label, never a path: :func:`safe_label` turns it into one folder-name component.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mpdopf_pyomo import __version__
from mpdopf_pyomo.errors import MpdopfError

#: Name of the marker file in every results folder the program writes.
MARKER = ".mpdopf-run"
TOOL = "mpdopf_pyomo"
_LOCK_SUFFIX = ".mpdopf-lock"
#: A temporary file left by an atomic rewrite (write_atomic) that was killed: ``.NAME.tmp-XXXX``.
_ATOMIC_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.tmp-[A-Za-z0-9_]+$")


class OutputError(MpdopfError):
    """An output location that cannot or must not be written (exit 2)."""

    exit_code = 2


# ------------------------------------------------------------------------------------------------------
# Names and modes
# ------------------------------------------------------------------------------------------------------

def safe_label(text: str, fallback: str = "case", max_len: int = 80) -> str:
    """``text`` as one harmless file-name component: no separators, no leading dot, no control characters.

    ``"../../victim"`` becomes ``"victim"``, ``"cases/x.toml"`` ``"cases_x.toml"``; an empty result is
    ``fallback``.
    """
    label = re.sub(r"[^\w.+-]+", "_", str(text))
    label = re.sub(r"\.{2,}", ".", label).strip("._-")[:max_len].rstrip("._-")
    return label or fallback


def default_folder(case_name: str, hours: int, algorithm: str, start: int | None = None) -> Path:
    """The default ``--out``: ``runs/<case>_<hours>h_<algorithm>`` (``<case>_<hours>h_from<HH>_<algorithm>``
    with ``--start``, so another window does not replace it), always directly under ``runs/``."""
    window = f"_from{int(start):02d}" if start is not None else ""
    return Path("runs") / f"{safe_label(case_name)}_{int(hours)}h{window}_{safe_label(algorithm)}"


def current_umask() -> int:
    """The process umask (read from /proc where possible; ``os.umask`` has no read-only form)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dir_mode() -> int:
    """Mode of a new folder under the current umask (``mkdtemp`` alone gives 0700)."""
    return 0o777 & ~current_umask()


def file_mode() -> int:
    """Mode of a new file under the current umask (``mkstemp`` alone gives 0600)."""
    return 0o666 & ~current_umask()


def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path`` (``.NAME.tmp-XXXX``), then rename it over
    ``path``: an interrupt or a failure leaves the old file (or none), never a half-written one.

    The new file keeps the mode of the one it replaces (a new one follows the umask; ``mkstemp`` alone
    would make it 0600). A folder that cannot be written is one error line (:class:`OutputError`).
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = file_mode()
    except OSError as exc:
        raise OutputError(f"{path}: cannot be rewritten ({_os_reason(exc)})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write in this folder ({_os_reason(exc)})") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot be written ({_os_reason(exc)})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------------
# The marker
# ------------------------------------------------------------------------------------------------------

def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a results folder this program wrote, or None (absent, not a regular file, not ours)."""
    path = folder / MARKER
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and f and "/" not in f and f not in (".", "..")
                                              for f in files):
        return None
    return data


def _marker_text(files: Iterable[str], staging: bool = False) -> str:
    data: dict[str, Any] = {"tool": TOOL, "version": __version__, "files": sorted(set(files) - {MARKER})}
    if staging:  # a folder still being written; one left by a killed run is removed by the next claim
        data["staging"] = True
    return json.dumps(data, indent=2) + "\n"


@contextmanager
def _marker_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself while its marker is read, checked and rewritten, so
    that two tools adding files to one folder at the same time do not lose each other's entries."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def record_files(folder: str | Path, names: Iterable[str]) -> None:
    """Add ``names`` to the marker of ``folder`` (files a later ``validate`` wrote); no marker, no change."""
    folder = Path(folder)
    with _marker_lock(folder):
        data = read_marker(folder)
        if data is not None:
            _add_to_marker(folder, data, names)


def _add_to_marker(folder: Path, data: dict[str, Any], names: Iterable[str]) -> None:
    """Rewrite the marker ``data`` of ``folder`` atomically with ``names`` added (caller holds the lock)."""
    text = _marker_text([*data["files"], *names])
    fd, tmp = tempfile.mkstemp(prefix=f".{MARKER}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, stat.S_IMODE(os.lstat(folder / MARKER).st_mode))
        os.replace(tmp, folder / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_rewritable(folder: str | Path, names: Iterable[str]) -> None:
    """Refuse (:class:`OutputError`) to rewrite ``names`` in ``folder`` unless it is one of our results
    folders and each name is either absent or a file its marker lists (``validate`` rewrites in place)."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise OutputError(f"{folder}: not a results folder this program wrote (no {MARKER} marker); "
                          "not rewriting files in it")
    ours = set(marker["files"])
    clash = sorted(n for n in names if n not in ours and os.path.lexists(folder / n))
    if clash:
        raise OutputError(f"{folder}: {', '.join(clash)} not written by this program; not replacing it")


def _foreign_entries(folder: Path, marker: dict[str, Any]) -> list[str]:
    """Entries of our results folder that its marker does not account for (or that are not plain files)."""
    ours = set(marker["files"]) | {MARKER}
    foreign = []
    for entry in os.scandir(folder):
        leftover = _ATOMIC_LEFTOVER.match(entry.name)
        known = entry.name in ours or bool(leftover and leftover.group("name") in ours)
        if not known or not entry.is_file(follow_symlinks=False):
            foreign.append(entry.name)
    return sorted(foreign)


# ------------------------------------------------------------------------------------------------------
# Claiming, committing, discarding
# ------------------------------------------------------------------------------------------------------

def _fail(path: Path, what: str) -> OutputError:
    return OutputError(f"--out {path}: {what}")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _inspect_kind(path: Path) -> str:
    """'new' (nothing there) or 'folder' (a real, writable folder); raise :class:`OutputError` for a
    symbolic link, a file, a FIFO, a socket, a device or a read-only folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise _fail(path, f"cannot be inspected ({_os_reason(exc)})") from None
    if stat.S_ISLNK(st.st_mode):
        raise _fail(path, "is a symbolic link; refusing to replace it (give the folder itself, or a new path)")
    if not stat.S_ISDIR(st.st_mode):
        kind = ("a regular file" if stat.S_ISREG(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "not a folder")
        raise _fail(path, f"exists and is {kind}; refusing to touch it (choose a new folder)")
    if not st.st_mode & stat.S_IWUSR:
        raise _fail(path, f"is a read-only folder (mode {stat.S_IMODE(st.st_mode):04o}); refusing to write "
                          "into or replace it")
    return "folder"


def _inspect(path: Path) -> str:
    """'new', 'empty' or 'replace' for an acceptable target; raise :class:`OutputError` for anything else."""
    if _inspect_kind(path) == "new":
        return "new"
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({_os_reason(exc)})") from None
    if not entries:
        return "empty"
    marker = read_marker(path)
    if marker is None:
        raise _fail(path, f"is a non-empty folder this program did not write (no {MARKER} marker); refusing "
                          "to replace it (choose a new or empty folder)")
    foreign = _foreign_entries(path, marker)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise _fail(path, f"holds files this program did not write ({shown}); refusing to replace it "
                          "(move them away or choose another folder)")
    if os.path.ismount(path):  # rename() cannot move a mount point: found out now, not after the solve
        raise _fail(path, "is a mount point and cannot be replaced atomically (empty it, or choose a folder "
                          "inside it)")
    return "replace"


class OutputFolder:
    """A claimed output location: checked, locked and with a staging folder, until commit or discard."""

    def __init__(self, path: Path, mode: str, staging: Path, lock_path: Path, lock_fd: int,
                 created: list[Path]) -> None:
        self.path = path
        self.mode = mode
        self.staging = staging
        self._lock_path = lock_path
        self._lock_fd: int | None = lock_fd
        self._created = created

    # -- claim ------------------------------------------------------------------------------------
    @classmethod
    def claim(cls, target: str | Path) -> "OutputFolder":
        """Check ``target``, lock it and create its staging folder; raise :class:`OutputError` if unusable."""
        import fcntl

        if not os.fspath(target).strip():
            raise OutputError("--out: the path is empty")
        path = Path(os.path.abspath(os.fspath(target)))
        if not path.name or path == path.parent:
            raise _fail(path, "is the file-system root; choose a folder below it")
        from mpdopf_pyomo.interrupts import deferred

        created: list[Path] = []
        lock_path = path.parent / f".{path.name}{_LOCK_SUFFIX}"
        fd = -1
        staging: Path | None = None
        try:
            with deferred():  # an interrupt is acted on only once the cleanup below knows what to remove
                created = _make_parents(path)
                try:
                    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
                except OSError as exc:
                    raise _fail(path, f"cannot write in {path.parent} ({_os_reason(exc)})") from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    # the lock file may have been unlinked by a run that just finished: then it locks nothing
                    if os.fstat(fd).st_ino != os.lstat(lock_path).st_ino:
                        raise BlockingIOError(errno.EAGAIN, "lock file replaced")
                except (BlockingIOError, FileNotFoundError):
                    raise _fail(path, "another run is writing this folder right now (lock "
                                      f"{lock_path.name}); wait for it to finish or choose another "
                                      "folder") from None
                _remove_stale_staging(path)
                mode = _inspect(path)
                parent = path if mode == "empty" else path.parent
                try:
                    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
                    os.chmod(staging, dir_mode())
                    (staging / MARKER).write_text(_marker_text([], staging=True), encoding="utf-8")
                except OSError as exc:
                    raise _fail(path, f"cannot write in {parent} ({_os_reason(exc)})") from None
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if fd >= 0:
                _release_lock(lock_path, fd)
            _remove_created(created)
            raise
        return cls(path, mode, staging, lock_path, fd, created)

    # -- context manager: discard unless committed ------------------------------------------------
    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()

    @property
    def active(self) -> bool:
        return self._lock_fd is not None

    # -- commit -----------------------------------------------------------------------------------
    def commit(self, files: Iterable[str]) -> Path:
        """Write the marker (listing ``files``) and put the staging folder into place; release the claim."""
        from mpdopf_pyomo.interrupts import deferred

        if not self.active:
            raise RuntimeError("output folder already committed or discarded")
        files = sorted(set(files))
        marker = self.staging / MARKER
        marker.write_text(_marker_text(files), encoding="utf-8")
        with deferred():
            try:
                if self.mode == "new":
                    if os.path.lexists(self.path):
                        raise _fail(self.path, "was created by someone else while the run was solving")
                    os.rename(self.staging, self.path)
                elif self.mode == "empty":
                    self._fill_empty(files)
                else:
                    if _inspect(self.path) != "replace":
                        raise _fail(self.path, "changed while the run was solving")
                    self._replace()
            except OutputError as exc:
                raise OutputError(f"{exc}; the new results were discarded") from None
            except OSError as exc:
                raise _fail(self.path, f"cannot put the results into place ({_os_reason(exc)}); the new "
                                       "results were discarded") from None
            self._release()
        return self.path

    def _fill_empty(self, files: list[str]) -> None:
        if sorted(os.listdir(self.path)) != [self.staging.name]:
            raise _fail(self.path, "changed while the run was solving (no longer empty)")
        moved: list[str] = []
        try:
            for name in [*files, MARKER]:  # the marker last
                os.rename(self.staging / name, self.path / name)
                moved.append(name)
            os.rmdir(self.staging)
        except BaseException:
            for name in moved:
                (self.path / name).unlink(missing_ok=True)
            raise

    def _replace(self) -> None:
        old_marker = read_marker(self.path)
        assert old_marker is not None  # _inspect said 'replace'
        # an empty placeholder gives a unique name; rename() replaces an empty folder atomically
        old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
        try:
            os.rename(self.path, old)
        except BaseException:
            os.rmdir(old)
            raise
        try:
            os.rename(self.staging, self.path)
        except BaseException:
            os.rename(old, self.path)
            raise
        _delete_run_folder(old, old_marker)

    # -- discard ----------------------------------------------------------------------------------
    def discard(self) -> None:
        """Remove the staging folder, the lock and the parents the claim created (no-op once committed)."""
        if not self.active:
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            _release_lock(self._lock_path, self._lock_fd)
            self._lock_fd = None
        _remove_created(self._created)
        self._created = []


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of ``path`` (umask modes); return those created, deepest last."""
    missing: list[Path] = []
    parent = path.parent
    while True:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            missing.append(parent)
            parent = parent.parent
            continue
        except OSError as exc:  # ENOTDIR: a component is a file; EACCES...
            raise _fail(path, f"cannot use {parent} as a parent folder ({_os_reason(exc)})") from None
        if not stat.S_ISDIR(st.st_mode):
            raise _fail(path, f"{parent} is not a folder")
        break
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:  # made by someone else meanwhile: not ours to remove
            continue
        except OSError as exc:
            _remove_created(created)
            raise _fail(path, f"cannot create {folder} ({_os_reason(exc)})") from None
        created.append(folder)
    return created


def _remove_created(created: list[Path]) -> None:
    """Remove the folders a claim created, deepest first, only while they are empty."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            break


def _release_lock(lock_path: Path, fd: int) -> None:
    """Unlink the lock file while still holding the lock, then close it."""
    try:
        if os.fstat(fd).st_ino == os.lstat(lock_path).st_ino:
            lock_path.unlink()
    except OSError:
        pass
    os.close(fd)


def _remove_stale_staging(path: Path) -> None:
    """Remove staging folders of ``path`` that a killed run (SIGKILL, power loss) left behind.

    Called with the lock held, so no live run owns them. Only folders named ``.NAME.tmp-*`` whose marker
    says they are this program's staging folders are touched, and in them only the kinds of file the
    program writes (CSV, PNG, JSON, the marker); anything else keeps the folder.
    """
    places = [path.parent] + ([path] if path.is_dir() and not path.is_symlink() else [])
    prefix = f".{path.name}.tmp-"
    for place in places:
        try:
            entries = [e for e in os.scandir(place) if e.name.startswith(prefix)]
        except OSError:
            continue
        for entry in entries:
            folder = Path(entry.path)
            marker = read_marker(folder) if entry.is_dir(follow_symlinks=False) else None
            if marker is None or marker.get("staging") is not True:
                continue
            for item in os.scandir(folder):
                if item.is_file(follow_symlinks=False) and (item.name == MARKER or item.name == "summary.json"
                                                            or item.name.endswith((".csv", ".png"))):
                    try:
                        os.unlink(item.path)
                    except OSError:
                        pass
            try:
                os.rmdir(folder)
            except OSError:
                pass


def _delete_run_folder(folder: Path, marker: dict[str, Any]) -> None:
    """Delete a previous results folder file by file: only what its marker accounts for, then the folder."""
    ours = set(marker["files"]) | {MARKER}
    for entry in os.scandir(folder):
        leftover = _ATOMIC_LEFTOVER.match(entry.name)
        if (entry.name in ours or (leftover and leftover.group("name") in ours)) \
                and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(folder)
    except OSError as exc:
        print(f"warning: the previous run could not be removed completely and is left as {folder} "
              f"({_os_reason(exc)})", file=sys.stderr)


# ------------------------------------------------------------------------------------------------------
# Benchmark folders: tables added to a shared folder, file by file
# ------------------------------------------------------------------------------------------------------

class BenchFolder:
    """The ``--out`` folder of a benchmark tool (``benchmark``, ``benchmark_scale``, ``feeders``,
    ``bench_distopf``): several tools add their fixed-name tables to one folder (``make bench``).

    Unlike :class:`OutputFolder`, the folder is never replaced, only files in it. :meth:`claim`, run before
    any benchmark, accepts a path that does not exist (it and its missing parents are created), an empty
    folder, or a folder carrying the :data:`MARKER`; it then creates the marker if there is none. Each file
    the tool will write must be absent or listed in the marker (a table an earlier run of any of these tools
    wrote); a file of that name that the program did not write, a non-empty folder without the marker, and a
    symbolic link, file, FIFO, device or read-only folder given as ``--out`` are refused with one line
    (:class:`OutputError`, exit 2), and left untouched. Other files a user keeps in a marked folder are left
    alone: nothing here is ever deleted. :meth:`write_text` writes a file atomically (:func:`write_atomic`)
    and then adds its name to the marker (under a lock; re-checked at that moment). Leaving the ``with``
    block having written nothing removes what :meth:`claim` created (marker, folder, parents).
    """

    def __init__(self, path: Path, names: frozenset[str], created: list[Path], made_marker: bool) -> None:
        self.path = path
        self.names = names
        self.written: list[str] = []
        self._created = created
        self._made_marker = made_marker

    @classmethod
    def claim(cls, target: str | Path, names: Iterable[str]) -> "BenchFolder":
        """Check ``target`` and that each of ``names`` may be written in it; create the folder and its
        marker; raise :class:`OutputError` (nothing changed) when the folder or one of the files is not ours."""
        if not os.fspath(target).strip():
            raise OutputError("--out: the path is empty")
        path = Path(os.path.abspath(os.fspath(target)))
        names = frozenset(names)
        bad = sorted(n for n in names if not n or "/" in n or n in (".", "..", MARKER))
        if bad:
            raise ValueError(f"not file names of a benchmark folder: {bad}")
        created: list[Path] = []
        made_marker = False
        if _inspect_kind(path) == "folder":
            try:
                entries = os.listdir(path)
            except OSError as exc:
                raise _fail(path, f"cannot be read ({_os_reason(exc)})") from None
            marker = read_marker(path)
            if entries and marker is None:
                _check_ours(path, names, {"files": []})  # name the user's file of a table's name, if any
                raise _fail(path, f"is a non-empty folder this program did not write (no {MARKER} marker); "
                                  "refusing to write tables into it (choose a new or empty folder)")
            if marker is not None:
                _check_ours(path, names, marker)
        else:
            created = _make_parents(path)
            try:
                os.mkdir(path)
            except OSError as exc:
                _remove_created(created)
                raise _fail(path, f"cannot be created ({_os_reason(exc)})") from None
            created.append(path)
            marker = None
        if marker is None:  # a new or empty folder: mark it now, which also proves that it is writable
            try:
                write_atomic(path / MARKER, lambda p: p.write_text(_marker_text([]), encoding="utf-8"))
            except OutputError:
                _remove_created(created)
                raise
            made_marker = True
        return cls(path, names, created, made_marker)

    def __enter__(self) -> "BenchFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` to the file ``name`` (one of the claimed names) atomically; record it in the marker."""
        return self._write(name, lambda p: p.write_text(text, encoding="utf-8"))

    def write_csv(self, name: str, rows: list[dict[str, Any]]) -> Path:
        """Write ``rows`` (dicts; the columns are the keys in order of first appearance) as the CSV ``name``."""
        import csv

        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]

        def write(p: Path) -> None:
            with p.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

        return self._write(name, write)

    def _write(self, name: str, write: Callable[[Path], Any]) -> Path:
        from mpdopf_pyomo.interrupts import deferred

        if name not in self.names:
            raise ValueError(f"{name!r} was not claimed for {self.path}")
        with _marker_lock(self.path):
            marker = read_marker(self.path)
            if marker is None:
                raise _fail(self.path, f"its {MARKER} marker disappeared while the benchmark ran; not writing "
                                       f"{name}")
            _check_ours(self.path, [name], marker)  # again: the user may have put a file there meanwhile
            with deferred():  # the file and its marker entry, or neither
                write_atomic(self.path / name, write)
                if name not in marker["files"]:
                    _add_to_marker(self.path, marker, [name])
        if name not in self.written:
            self.written.append(name)
        return self.path / name

    def close(self) -> None:
        """Remove the marker and the folders :meth:`claim` created if nothing was written; keep them else."""
        if not self.written and self._made_marker:
            try:
                with _marker_lock(self.path):
                    marker = read_marker(self.path)
                    if marker is not None and not marker["files"]:  # no other tool wrote here meanwhile
                        (self.path / MARKER).unlink()
            except OSError:
                pass
            _remove_created(self._created)
        self._made_marker = False
        self._created = []


def with_bench_folder(target: str | Path, names: Iterable[str], body: Callable[[BenchFolder], int]) -> int:
    """A benchmark tool's command line around ``body``: claim ``target`` for ``names`` (before any benchmark
    runs), run ``body(folder)`` and return its exit code. Any :class:`~mpdopf_pyomo.errors.MpdopfError` --
    the claim refused or a table that could not be written (:class:`OutputError`, 2), a timed run that
    failed (:class:`~mpdopf_pyomo.errors.RunFailed`: that run's code), a bad case or generated feeder (2) --
    is one ``error:`` line on stderr and its exit code; the folder keeps only the tables already written
    (none: :meth:`BenchFolder.claim`'s folder and marker are removed again)."""
    from mpdopf_pyomo.errors import MpdopfError, one_line

    try:
        with BenchFolder.claim(target, names) as folder:
            return body(folder)
    except MpdopfError as exc:
        print(f"error: {one_line(exc.cli_message or str(exc))}", file=sys.stderr)
        return exc.exit_code


def _check_ours(folder: Path, names: Iterable[str], marker: dict[str, Any]) -> None:
    """Raise :class:`OutputError` naming the files among ``names`` in ``folder`` that exist but are not
    regular files the ``marker`` lists."""
    ours = set(marker["files"])
    clash = []
    for name in sorted(names):
        try:
            st = os.lstat(folder / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _fail(folder, f"{name} cannot be inspected ({_os_reason(exc)})") from None
        if name not in ours or not stat.S_ISREG(st.st_mode):
            clash.append(name)
    if clash:
        shown = ", ".join(clash[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        raise _fail(folder, f"{shown} {'was' if len(clash) == 1 else 'were'} not written by this program (not "
                            f"listed in a {MARKER} marker there); refusing to replace {'it' if len(clash) == 1 else 'them'} "
                            f"(move {'it' if len(clash) == 1 else 'them'} away or choose another --out)")
