"""The gateway broker's view of the nodes: mosquitto's password file, ACL file, reload.

Password hashes are mosquitto 2's own format, written here rather than by
running `mosquitto_passwd`: `$7$<iterations>$<base64 salt>$<base64 hash>`,
PBKDF2-HMAC-SHA512 with a 12-byte salt and 101 iterations (mosquitto_passwd's
defaults). An entry whose hash already matches the password is kept as it is,
so re-registering changes nothing.

The ACL file gets a block between `# BEGIN nodectl` and `# END nodectl`,
rewritten from the registry each time; anything outside the block is the
operator's and is kept. Each node may write only its own `up` and `status`
topics and read only its own `down` topic; the agent's user reads and writes
every node topic. Files are replaced atomically, keeping their mode and owner
(mosquitto, after dropping privileges, must still read them on reload); new
files are created 0600.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import BrokerAuthError

ITERATIONS = 101
SALT_BYTES = 12
BEGIN = "# BEGIN nodectl: managed by `nodectl register`, do not edit inside this block"
END = "# END nodectl"
DEFAULT_AGENT_USER = "edge-agent"

_thread_lock = threading.Lock()


@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker keeps its users and ACL, and how to make it reread them."""

    passwd: Path
    acl: Path
    pid: int | None = None
    pidfile: Path | None = None
    agent_user: str = DEFAULT_AGENT_USER
    topic_prefix: str = "nodes"


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """Whether `encoded` (a `$7$` or `$6$` mosquitto hash) is a hash of `password`."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt = int(parts[2]), base64.b64decode(parts[3])
            want = base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
            return hmac.compare_digest(got, want)
        if len(parts) == 4 and parts[1] == "6":  # mosquitto 1.x: sha512(password + salt)
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), want)
    except ValueError:
        return False
    return False


@contextmanager
def locked(lock_dir: Path) -> Iterator[None]:
    """One writer of the broker files at a time: threads of this process, and other
    nodectl processes (flock on a file in nodectl's own directory)."""
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _thread_lock, open(lock_dir / ".broker.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise BrokerAuthError(f"{path}: cannot read: {e.strerror or e}") from e


def _replace(path: Path, lines: Iterable[str]) -> None:
    """Write atomically, keeping the old file's mode and owner (new files: 0600)."""
    text = "".join(line + "\n" for line in lines)
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, st.st_mode & 0o7777 if st else 0o600)
            if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise BrokerAuthError(f"{path}: cannot write: {e.strerror or e}") from e


def set_password(path: Path, user: str, password: str) -> bool:
    """Add or update `user`; True if the file changed (a matching hash is kept)."""
    lines = _read_lines(path)
    out: list[str] = []
    found = False
    changed = False
    for line in lines:
        name, sep, encoded = line.partition(":")
        if sep and name == user:
            if found:  # a duplicate entry: drop it
                changed = True
                continue
            found = True
            if check_password(password, encoded.strip()):
                out.append(line)
            else:
                out.append(f"{user}:{hash_password(password)}")
                changed = True
        else:
            out.append(line)
    if not found:
        out.append(f"{user}:{hash_password(password)}")
        changed = True
    if changed:
        _replace(path, out)
    return changed


def password_hash(path: Path, user: str) -> str | None:
    for line in _read_lines(path):
        name, sep, encoded = line.partition(":")
        if sep and name == user:
            return encoded.strip()
    return None


def remove_user(path: Path, user: str) -> bool:
    lines = _read_lines(path)
    out = [ln for ln in lines if ln.partition(":")[0] != user or ":" not in ln]
    if len(out) != len(lines):
        _replace(path, out)
        return True
    return False


def acl_block(devices: Iterable[str], agent_user: str, prefix: str) -> list[str]:
    lines = [BEGIN, f"user {agent_user}", f"topic readwrite {prefix}/#", ""]
    for dev in sorted(devices):
        lines += [
            f"user {dev}",
            f"topic write {prefix}/{dev}/up",
            f"topic write {prefix}/{dev}/status",
            f"topic read {prefix}/{dev}/down",
            "",
        ]
    lines.append(END)
    return lines


def write_acl(path: Path, devices: Iterable[str], agent_user: str, prefix: str) -> bool:
    """Replace nodectl's block (or append it); True if the file changed."""
    lines = _read_lines(path)
    block = acl_block(devices, agent_user, prefix)
    if BEGIN in lines and END in lines[lines.index(BEGIN):]:
        start = lines.index(BEGIN)
        end = lines.index(END, start)
        out = lines[:start] + block + lines[end + 1:]
    else:
        out = lines + ([""] if lines and lines[-1].strip() else []) + block
    if out == lines:
        return False
    _replace(path, out)
    return True


def reload_broker(files: BrokerFiles) -> str:
    """Make mosquitto reread its password and ACL files; says how it was done."""
    pid = files.pid
    if pid is None and files.pidfile is not None:
        try:
            pid = int(files.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise BrokerAuthError(f"{files.pidfile}: no broker pid in it: {e}") from e
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as e:
            raise BrokerAuthError(f"cannot signal the broker (pid {pid}): {e.strerror}") from e
        return f"SIGHUP to pid {pid}"
    systemctl = shutil.which("systemctl")
    if systemctl:
        try:
            r = subprocess.run([systemctl, "reload", "mosquitto"], capture_output=True,
                               text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BrokerAuthError(f"systemctl reload mosquitto: {e}") from e
        if r.returncode == 0:
            return "systemctl reload mosquitto"
        raise BrokerAuthError(
            f"systemctl reload mosquitto failed: {' '.join(r.stderr.split()) or r.returncode}"
        )
    raise BrokerAuthError(
        "cannot make the broker reload: pass --broker-pid or --broker-pidfile "
        "(no systemctl here)"
    )
