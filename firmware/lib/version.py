# Firmware version, reported in every status message (`fw`).
VERSION = "0.1.0"
