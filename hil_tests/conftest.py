"""The HIL suite's pytest plugin (options, fixtures, markers): see hil_tests/README.md."""

from hil_tests.plugin import *  # noqa: F401,F403
