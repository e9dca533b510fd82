"""Room on the disk: a reserve file given up when the disk fills, and the free-space probe.

Why a reserve: on a full disk even a DELETE needs room (SQLite writes the changed pages
to the WAL first), so the agent could not free space by dropping readings. A file of
real, allocated bytes (not sparse) in the data directory is deleted at that moment; the
drop then commits in the space it leaves, and the freed pages are reused by later
inserts. The file is recreated only when the disk has room for it and as much again, so
it never takes the last free bytes from the store.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)


def is_disk_full(e: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk, or the page cap (`max_db_bytes`), has no room left."""
    return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e)


class Reserve:
    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = Path(path), size

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the data directory's filesystem."""
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def present(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Create the reserve if it is missing and the disk has room for it twice over.
        True when it is there (or no reserve is configured)."""
        if self.size == 0 or self.present():
            return True
        try:
            if self.free_bytes() < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.write(fd, b"\0" * self.size)  # no fallocate here: write real bytes
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError as e:
            log.debug("reserve %s: %s", self.path, e)
            self.release()
            return False

    def release(self) -> bool:
        """Delete the reserve; True when there was one to give back."""
        had = self.present()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("cannot delete the reserve %s: %s", self.path, e.strerror)
            return False
        return had
