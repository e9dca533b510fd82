"""Edge agent: the gateway service between the nodes' local MQTT broker and the upstream IOC.

Readings are committed to SQLite (fsync) before the broker's PUBACK and the node's
end-to-end ack, and deleted only after the upstream's PUBACK. See README.md.
"""

__version__ = "0.1.0"
