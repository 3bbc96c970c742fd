"""Files and directories dynvm creates: private (0600 / 0700) from their first byte.

The store and the outbox hold leases, history and token hashes; the embedded
farm's INI holds host passwords. None of it is for the other users of the
machine, whatever the umask. So every file is created with its mode in the very
call that creates it (a chmod afterwards leaves a window), and so is every
directory. A file of ours found open to others (an older dynvm made it 0644) is
made 0600, with a warning. Directories that already exist are left as they are:
they may be an operator's choice, or /tmp; what dynvm puts in them is private.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from contextlib import suppress
from typing import IO

log = logging.getLogger("dynvm.files")

FILE_MODE = 0o600
DIR_MODE = 0o700
# `dynvm serve` runs under this umask, so what libraries create (Prometheus's
# multiprocess files) is private too.
SERVE_UMASK = 0o077


def private_dir(path: str | os.PathLike[str]) -> None:
    """Create `path` and each missing parent 0700 (one mkdir each, mode given at creation)."""
    missing = []
    here = os.path.abspath(path)
    while not os.path.isdir(here):
        missing.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile by another process: theirs is private too


def tighten(path: str | os.PathLike[str]) -> None:
    """Make an existing file of ours that others may read 0600, and say so."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    try:
        os.chmod(path, FILE_MODE)
    except OSError as exc:
        log.warning("%s is readable by others (%04o) and cannot be made private: %s",
                    os.fspath(path), mode, exc.strerror or exc)
        return
    log.warning("%s was readable by others (%04o); made %04o", os.fspath(path), mode, FILE_MODE)


def private_file(path: str | os.PathLike[str]) -> None:
    """Make sure `path` exists as a private file (created 0600 in a 0700 directory)."""
    private_dir(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    os.close(fd)


def open_private(path: str | os.PathLike[str]) -> IO[bytes]:
    """`path` opened for writing from empty (a log), created 0600 or made private."""
    private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    tighten(path)
    return os.fdopen(fd, "wb")


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Replace `path` with `text` at once: a reader sees the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    private_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path), suffix=".tmp")
    try:  # mkstemp creates it 0600
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
