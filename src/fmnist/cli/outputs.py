"""Where a command will write, checked before it does any work: a path that cannot be written is
one line and exit code 2 up front, not a traceback after the model has run. Standard library only
(the inference commands import it for their cold start)."""

from __future__ import annotations

import os
from pathlib import Path

from fmnist.errors import InputError


def _reason(error: OSError) -> str:
    return (error.strerror or type(error).__name__).lower()


def check_file(out: Path, suffixes: tuple[str, ...], flag: str = "--out") -> Path:
    """``out`` is a file this process can create or overwrite, with one of ``suffixes``.

    Tried for real: the file is opened for appending when it exists (nothing is written), else
    created and removed, so permissions, read-only file systems and over-long names all show now.
    """
    if out.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {out}: give a {' or a '.join(suffixes)} path")
    try:
        if out.is_dir():
            raise InputError(f"{flag} {out} is a folder; give a file name")
        parent = out.parent
        if not parent.exists():
            raise InputError(f"{flag} {out}: folder {parent} does not exist")
        if not parent.is_dir():
            raise InputError(f"{flag} {out}: {parent} is not a folder")
        if out.exists():
            with open(out, "ab"):
                pass
        else:
            with open(out, "xb"):
                pass
            out.unlink()
    except OSError as e:  # a name too long, no permission, a read-only file system, ...
        raise InputError(f"{flag} {out}: cannot write there ({_reason(e)})") from None
    return out


def check_folder(folder: Path, flag: str = "--out") -> Path:
    """``folder`` is, or can be made, a folder this process can write files in.

    The nearest existing folder on its path is tried with a temporary file; nothing is created.
    """
    existing = folder
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        is_dir = existing.is_dir()
    except OSError as e:
        raise InputError(f"{flag} {folder}: cannot write there ({_reason(e)})") from None
    if not is_dir:
        what = "is not a folder" if existing == folder else f"cannot be made: {existing} is not a folder"
        raise InputError(f"{flag} {folder} {what}")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    for part in folder.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"{flag} {folder}: cannot write there (file name too long)")
    import tempfile  # here: the commands writing one file start without it

    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".fmnist-write-check-"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {folder}: cannot write in {existing} ({_reason(e)})") from None
    return folder


def check_not_inputs(outs: tuple[Path, ...] | list[Path], inputs: list[Path], flag: str = "--out") -> None:
    """InputError when an output path is one of the inputs, whatever the spelling (``./x.png``,
    a link, a hard link): writing it would destroy what the command reads. Only an existing
    output can be an input, so only those are compared, by device and inode."""
    existing = {_identity(out): out for out in outs if out is not None and out.exists()}
    existing.pop(None, None)
    if not existing:
        return
    for path in inputs:
        out = existing.get(_identity(path))
        if out is not None:
            raise InputError(f"{flag} {out} is also an input ({path}); give {flag} another path")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
