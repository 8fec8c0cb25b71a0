"""Putting a finished bundle at ``--out`` so that there is no moment without a whole bundle there.

``--out`` is a symbolic link to a versioned folder beside it (``artifacts -> .artifacts.v-<time>-<pid>``);
a new export writes a new version and replaces the link in one rename, then removes the old
version. A plain folder at ``--out`` (an older export, or a bundle kept inside a package) stays a
plain folder: it is swapped with the new one in one ``renameat2(RENAME_EXCHANGE)`` on Linux, and by
two renames elsewhere. What killed exports left beside ``--out`` is removed on the next export.
Standard library only.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("tmp", "v", "link", "old")  # .<out>.<kind>-...: staging, version, new link, today's moved-aside


def _sibling(out: Path, kind: str, tag: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{tag}"


def staging_dir(out: Path) -> Path:
    """A new hidden folder beside ``out`` to write the bundle into (same filesystem, so renames are atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _owner(name: str) -> int | None:
    """The process id in a leftover's name (``.artifacts.tmp-<pid>-x``, ``.artifacts.v-<ns>-<pid>``)."""
    kind, _, tag = name.rpartition(".")[2].partition("-")
    parts = tag.split("-")
    digits = {"tmp": parts[0], "link": parts[0], "v": parts[-1]}.get(kind, "")
    return int(digits) if digits.isdigit() else None


def leftovers(out: Path) -> list[Path]:
    """Staging folders, versions and links beside ``out`` that no running export owns and ``out``
    does not point at: what an export killed part-way left behind."""
    if not out.parent.is_dir():
        return []
    current = out.resolve() if out.is_symlink() else None
    found = []
    for path in out.parent.iterdir():
        prefix = f".{out.name}."
        kind = path.name[len(prefix) :].partition("-")[0] if path.name.startswith(prefix) else ""
        if kind not in KINDS or path.resolve() == current:
            continue
        pid = _owner(path.name)
        if pid is None or pid == os.getpid() or not _alive(pid):
            found.append(path)
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(out: Path) -> list[Path]:
    gone = leftovers(out)
    for path in gone:
        _remove(path)
    return gone


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where not offered."""
    if sys.platform != "linux":
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel, or a filesystem without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def install(staged: Path, out: Path) -> Path:
    """Make the finished bundle in ``staged`` the one at ``out``; returns the folder it now lives in."""
    staged, out = Path(staged), Path(out)
    if out.is_dir() and not out.is_symlink():
        if _exchange(staged, out):
            shutil.rmtree(staged)  # it holds the old bundle now
            return out
        old = _sibling(out, "old", f"{time.time_ns()}-{os.getpid()}")  # no atomic swap here: a short gap
        out.rename(old)
        staged.rename(out)
        shutil.rmtree(old)
        return out
    previous = out.resolve() if out.is_symlink() else None
    version = _sibling(out, "v", f"{time.time_ns()}-{os.getpid()}")
    staged.rename(version)
    link = _sibling(out, "link", str(os.getpid()))
    _remove(link)
    os.symlink(version.name, link)  # relative, so the folder holding both can move
    os.replace(link, out)  # the one step: the old link until here, the new one after
    if previous is not None and previous.parent == out.parent.resolve() and previous.name.startswith(f".{out.name}.v-"):
        shutil.rmtree(previous, ignore_errors=True)  # only our own versions; a folder the user linked to stays
    return version
