# MicroPython code: the board's flash, a host directory mounted as "/".
#
# A Python object that delegates to os.VfsPosix rather than a subclass of it:
# the VM's import machinery reads a native VfsPosix's C struct directly and
# gets garbage from a Python subclass instance (absolute imports such as
# /lib/x.py then fail), while a plain Python VFS is asked through stat().
# The VfsPosix has no root of its own and gets host paths: with a root, its
# rename() builds both paths in one buffer and renames the new name to itself.
import os

VBOARD_DIR = ".vboard"  # the relay's own files (console log, ids): not part of the flash


class Flash:
    """ilistdir yields 4-tuples with the size, as LittleFS does on the chip
    (mpremote fs ls shows it), and the relay's folder is hidden."""

    def __init__(self, root):
        self._fs = os.VfsPosix()
        self._root = root.rstrip("/")
        self._cwd = "/"

    def _abs(self, path):
        # board path (absolute or relative to the board's cwd) -> host path
        if not path.startswith("/"):
            path = self._cwd.rstrip("/") + "/" + path if path else self._cwd
        if "/." in path:  # resolve . and .. without ever leaving the board's root
            parts = []
            for p in path.split("/"):
                if p == "..":
                    if parts:
                        parts.pop()
                elif p and p != ".":
                    parts.append(p)
            path = "/" + "/".join(parts)
        return self._root + path

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def chdir(self, path):
        host = self._abs(path)
        if self._fs.stat(host)[0] & 0x4000 == 0:
            raise OSError(20)  # ENOTDIR
        self._cwd = host[len(self._root) :].rstrip("/") or "/"

    def getcwd(self):
        return self._cwd

    def ilistdir(self, path):
        host = self._abs(path)
        base = host.rstrip("/") + "/"
        at_root = base == self._root + "/"
        for entry in self._fs.ilistdir(host):
            name, typ = entry[0], entry[1]
            if at_root and name == VBOARD_DIR:
                continue
            size = 0
            if typ == 0x8000:
                try:
                    size = self._fs.stat(base + name)[6]
                except OSError:
                    pass
            yield (name, typ, 0, size)

    def stat(self, path):
        return self._fs.stat(self._abs(path))

    def statvfs(self, path):
        return self._fs.statvfs(self._abs(path))

    def open(self, path, mode):
        return self._fs.open(self._abs(path), mode)

    def mkdir(self, path):
        self._fs.mkdir(self._abs(path))

    def rmdir(self, path):
        self._fs.rmdir(self._abs(path))

    def remove(self, path):
        self._fs.remove(self._abs(path))

    def rename(self, old, new):
        self._fs.rename(self._abs(old), self._abs(new))
