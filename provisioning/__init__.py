"""Provisioning: the `nodectl` CLI technicians use to flash, configure and register nodes."""
