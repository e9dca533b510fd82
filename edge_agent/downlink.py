"""End-to-end acks sent outside the running agent (`dlq replay`): one short connection to
the local broker with the agent's settings and credentials, QoS1, waiting for PUBACKs."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from .config import BrokerConfig
from .errors import EdgeAgentError
from .ingress import encode_ack
from .mqttlink import make_plain_client


class DownlinkError(EdgeAgentError):
    """The acks could not be handed to the local broker."""


def send_acks(cfg: BrokerConfig, acks: dict[str, dict[int, int]], timeout: float = 10.0
              ) -> None:
    """Publish {dev: {boot: seq}} on `<prefix>/<dev>/down` (the agent's ack format) and
    return once the broker has acknowledged every one. The client id is the agent's with
    `-dlq-<pid>` added: the agent's own would take its persistent session over."""
    if not acks:
        return
    client = make_plain_client(cfg, f"{cfg.client_id}-dlq-{os.getpid()}")
    result: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    deadline = time.monotonic() + timeout
    try:
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password())
        client.connect(cfg.url.host, cfg.url.port, keepalive=max(5, int(timeout)))
        while not result:
            _step(client, deadline, f"{cfg.url}: no CONNACK")
        if result[0].is_failure:
            raise DownlinkError(f"{cfg.url}: connection refused: {result[0]}")
        sent = [client.publish(f"{cfg.topic_prefix}/{dev}/down", encode_ack(dev, a), qos=1)
                for dev, a in sorted(acks.items())]
        while not all(m.is_published() for m in sent):
            _step(client, deadline, f"{cfg.url}: no PUBACK")
        client.disconnect()
        client.loop(0.1)  # let the DISCONNECT leave
    except (OSError, ssl.SSLError) as e:
        raise DownlinkError(f"{cfg.url}: {e.strerror or e}") from e
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()


def _step(client: mqtt.Client, deadline: float, waiting: str) -> None:
    if time.monotonic() > deadline:
        raise DownlinkError(f"{waiting} in time")
    rc = client.loop(0.1)
    if rc != mqtt.MQTT_ERR_SUCCESS:
        raise DownlinkError(f"{waiting.split(': ')[0]}: connection lost "
                            f"({mqtt.error_string(rc)})")
