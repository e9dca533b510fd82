# MicroPython code: the `esp` module of the ESP32 port, as much as boot.py files use.


def osdebug(level, *args):
    pass


def flash_size():
    return 4 * 1024 * 1024


def flash_user_start():
    return 0x200000
