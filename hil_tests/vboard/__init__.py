"""Virtual ESP32 boards: a real MicroPython VM behind a pty, driven like a board.

See hil_tests/README.md ("Virtual boards") for the design and its limits.
"""

from .board import VirtualBoard
from .control import VBoardControl
from .errors import VBoardError

__all__ = ["VirtualBoard", "VBoardControl", "VBoardError"]
