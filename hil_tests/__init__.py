"""Hardware-in-the-loop tests and the virtual boards they run against."""
