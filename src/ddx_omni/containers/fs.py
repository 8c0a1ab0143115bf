"""Reading and writing a container's /mnt/data from the server, safely: the sandboxed code owns that directory.

The code inside can plant symlinks (to /etc/shadow, to another container) or FIFOs there, and swap them in
between a check and an open. So every path is walked component by component from the directory's own fd with
O_NOFOLLOW (no symlink is ever followed), only regular files are read, and scans never follow links either.
All functions here block: callers run them in a thread.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_SCAN_ENTRIES = 2000  # a directory with a million files must not stall the server


class UnsafePath(Exception):
    """A path that escapes /mnt/data, goes through a symlink, or is not a regular file."""


def relative(path: str) -> str:
    """`/mnt/data/a/b.csv`, `a/b.csv` → `a/b.csv`; refuses `..`, empty and absolute paths elsewhere."""
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            pure = pure.relative_to("/mnt/data")
        except ValueError:
            raise UnsafePath(f"{path!r} is not under /mnt/data") from None
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"{path!r} is not a file path under /mnt/data")
    return "/".join(parts)


def _parent_fd(root: Path, dirs: list[str], create: bool) -> int:
    """An fd of the directory `dirs` below `root`, reached without following any symlink."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in dirs:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_beneath(root: Path, rel: str, flags: int, mode: int = 0o644) -> int:
    *dirs, leaf = rel.split("/")
    try:
        fd = _parent_fd(root, dirs, bool(flags & os.O_CREAT))
        try:
            # O_NONBLOCK: opening a FIFO planted there must not hang the server
            leaf_fd = os.open(leaf, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise UnsafePath(f"/mnt/data/{rel}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(leaf_fd).st_mode):
        os.close(leaf_fd)
        raise UnsafePath(f"/mnt/data/{rel} is not a regular file")
    return leaf_fd


def read_file(root: Path, rel: str) -> bytes:
    fd = _open_beneath(root, rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def write_file(root: Path, rel: str, data: bytes, owner: int | None) -> int:
    """Write (replace) a file; `owner`: its uid and gid, so the container's code may change or delete it."""
    fd = _open_beneath(root, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        if owner is not None:
            os.fchown(fh.fileno(), owner, owner)
    return len(data)


def remove_file(root: Path, rel: str) -> None:
    *dirs, leaf = rel.split("/")
    try:
        fd = _parent_fd(root, dirs, create=False)
    except OSError:  # its directory is gone already (or was swapped for a link): nothing of ours to remove
        return
    try:
        os.unlink(leaf, dir_fd=fd)
    except (FileNotFoundError, IsADirectoryError):
        pass
    finally:
        os.close(fd)


@dataclass
class Entry:
    path: str  # relative to /mnt/data
    size: int
    mtime_ns: int


def scan(root: Path) -> list[Entry]:
    """Regular files under `root` (symlinks and special files skipped), at most MAX_SCAN_ENTRIES of them."""
    found: list[Entry] = []
    stack = [root]
    while stack and len(found) < MAX_SCAN_ENTRIES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                found.append(Entry(Path(entry.path).relative_to(root).as_posix(), info.st_size, info.st_mtime_ns))
    return found[:MAX_SCAN_ENTRIES]
