# MicroPython code: an empty module that vb_main fills with the unix port's
# `os` plus the ESP32's differences and installs as sys.modules["os"].
