"""One exception hierarchy for virtual boards; the CLI prints it as one line."""

from __future__ import annotations


class VBoardError(Exception):
    """A virtual board could not be started, reached or controlled."""


class BoardBusyError(VBoardError):
    """Another `vboard run` already owns this board directory."""


class NotRunningError(VBoardError):
    """No `vboard run` is serving this board directory."""


class ControlError(VBoardError):
    """The control socket refused or failed a command."""
