# 4-20 mA loop sensors read through a shunt resistor on an ADC, and the
# battery voltage through a resistor divider. Pure arithmetic: the board layer
# reads ADC.read_uv() (calibrated microvolts on the ESP32) and passes numbers in.
#
# Fault bands follow NAMUR NE43: a loop current <= 3.6 mA (broken wire, dead
# transmitter) or >= 21.0 mA (short, transmitter failure signal) is a fault
# and gives None. 3.6..4 mA and 20..21 mA are the transmitter saturating below
# or above its span: the level is clamped to the span, not extrapolated, since
# a submerged pressure sensor cannot read a depth below zero.
#
# Shunt choice: ESP-IDF documents the ESP32 ADC at 11/12 dB attenuation as
# accurate over 150..2450 mV. 100 ohm gives 0.4..2.0 V for 4..20 mA (2.1 V at
# the 21 mA fault line); 120 ohm (boards.yaml) 0.48..2.4 V, with the fault
# line at 2.52 V just past the accurate span: still read, less exactly.

FAULT_LOW_MA = 3.6
FAULT_HIGH_MA = 21.0


def ma_from_uv(uv, shunt_ohm):
    """Loop current in mA from the shunt voltage in microvolts (uV / ohm = uA)."""
    return uv / shunt_ohm / 1000


def is_fault(ma):
    """True when the loop current is in a NE43 failure band (or missing)."""
    return ma is None or ma <= FAULT_LOW_MA or ma >= FAULT_HIGH_MA


def level_from_ma(ma, range_m, offset_m=0.0):
    """Level in metres: offset_m + depth, 4 mA = 0 m depth, 20 mA = range_m; None on fault.

    offset_m is the height of the pressure sensor above the datum, so the result
    is on the same datum as the ultrasonic level.
    """
    if is_fault(ma):
        return None
    if ma < 4.0:
        ma = 4.0
    elif ma > 20.0:
        ma = 20.0
    return offset_m + (ma - 4.0) * range_m / 16.0


def battery_v(uv, ratio):
    """Battery voltage from the divider's ADC voltage in uV; ratio = (R1 + R2) / R2."""
    return uv * ratio / 1e6
