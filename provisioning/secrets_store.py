"""Per-device secrets: generated once, kept on the host with mode 0600, never printed.

`<secrets dir>/<device>.json` holds the node's MQTT password and payload MAC
key. They are made the first time a device is configured and reused after,
so a re-run writes the same secrets to the board and the broker entry stays
valid. The key id is a fingerprint (first 16 hex digits of sha256 of the key):
it names the key in the registry and in listings without revealing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ProvisioningError

ENV = "NODECTL_SECRETS"
KEY_BYTES = 32  # HMAC-SHA256 key for COSE_Mac0: 64 hex digits in secrets.json
PASSWORD_BYTES = 24  # 32 URL-safe characters


class SecretsError(ProvisioningError):
    pass


def key_id(key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:16]


@dataclass(frozen=True)
class DeviceSecrets:
    device: str
    mqtt_pass: str
    key: str  # hex

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    def for_node(self) -> dict[str, str]:
        """The fields of the node's /secrets.json (Wi-Fi password added by the caller)."""
        return {"mqtt_pass": self.mqtt_pass, "key": self.key}

    def __repr__(self) -> str:  # never in a log or traceback
        return f"DeviceSecrets(device={self.device!r}, key_id={self.key_id!r})"


def default_dir(registry: Path | None) -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if registry is not None:
        return Path(registry).expanduser().resolve().parent / "nodectl-secrets"
    return Path.home() / ".local" / "share" / "nodectl" / "secrets"


class SecretsStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, device: str) -> Path:
        return self.root / f"{device}.json"

    def load(self, device: str) -> DeviceSecrets | None:
        path = self.path(device)
        try:
            data = json.loads(path.read_text())
            return DeviceSecrets(device, str(data["mqtt_pass"]), str(data["key"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            # no exception text: it could quote the file's content
            raise SecretsError(f"{path}: unreadable secrets file ({type(e).__name__})") from None

    def load_or_create(self, device: str) -> DeviceSecrets:
        found = self.load(device)
        if found is not None:
            return found
        made = DeviceSecrets(device, secrets.token_urlsafe(PASSWORD_BYTES),
                             secrets.token_hex(KEY_BYTES))
        self._write(made)
        return made

    def _write(self, s: DeviceSecrets) -> None:
        path = self.path(s.device)
        data = {"device": s.device, "mqtt_pass": s.mqtt_pass, "key": s.key,
                "key_id": s.key_id, "created_at": time.time()}
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by the umask; the file is not
            os.replace(tmp, path)
        except OSError as e:
            raise SecretsError(f"{path}: cannot write: {e.strerror or e}") from e

    def remove(self, device: str) -> None:
        try:
            self.path(device).unlink()
        except FileNotFoundError:
            pass
