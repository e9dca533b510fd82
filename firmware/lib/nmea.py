# NMEA 0183 parsing for the boat and truck roles: RMC, GGA and VTG only; and
# FixTracker, the trackers' common base: what they keep of the receiver's fix.
#
# parse(line) -> dict or None. None for anything that is not a complete,
# checksummed, well-formed sentence of a supported type: noise, partial lines,
# bad or missing checksum, wrong field count, non-printable or non-ASCII bytes,
# out-of-range fields. It never raises on bad input.
#
# Common keys: 'type' ('RMC' | 'GGA' | 'VTG'), 'talker' ('GP', 'GN', ...).
# RMC and GGA: 'time' = seconds since midnight UTC (float, None when empty);
#   'lat6', 'lon6' = signed integer micro-degrees (S and W negative), rounded
#   from the text with integer arithmetic (small ints on MicroPython), and
#   'lat', 'lon' = the same in decimal degrees (lat6 / 1e6); all four None
#   without a fix (RMC status V or mode N, GGA quality 0) or with empty fields.
# RMC: 'valid' (bool), 'speed_kn', 'course' (float or None), 'date'
#   ((yyyy, mm, dd) or None; two-digit years < 80 are 20yy).
# GGA: 'quality' (int), 'sats' (int or None), 'hdop', 'alt' (float or None).
# VTG: 'course' (true, float or None), 'speed_kn', 'speed_kmh' (float or None).
#
# The ESP32 port has single-precision floats (24-bit mantissa): a unix time
# does not fit in one (to_unix returns an int) and a longitude near 105 E is
# only good to about 1 m, so trackers use 'lat6'/'lon6' for differences.

TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD")
# The talker's two bytes as an int -> the talker string (no allocation).
_TALK = {}
for _t in TALKERS:
    _TALK[ord(_t[0]) << 8 | ord(_t[1])] = _t
# Fields after the address, checksum excluded: RMC has 11 (NMEA 2.0), 12 (2.3,
# mode) or 13 (4.1, nav status); GGA always 14; VTG 8, or 9 with the mode.
_COUNTS = {"RMC": (11, 12, 13), "GGA": (14,), "VTG": (8, 9)}
_MAXLEN = 120  # NMEA says 82 with $ and CRLF; some receivers exceed it a little
_MAXF = 15  # more fields than any supported sentence has: not ours
_CUTS = [6] * (_MAXF + 1)  # scratch for parse(), reused: parse is not re-entrant

# RAM: the line is never split. Fields are read in place between comma
# offsets (kept in one reused list), digit by digit, so a sentence costs the
# result dict and its floats: measured on the 64-bit unix VM about 0.6 KB per
# RMC (bytes.split alone took 1.1 KB), roughly half that on an ESP32.


def _hexval(c):
    # One ASCII hex digit (either case) -> 0..15, or -1.
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


def _digits(b, i, j):
    # Unsigned decimal int of b[i:j], all digits, else ValueError.
    if i >= j:
        raise ValueError
    v = 0
    while i < j:
        c = b[i] - 48
        if c < 0 or c > 9:
            raise ValueError
        v = v * 10 + c
        i += 1
    return v


def _uint(b, i, j):
    return _digits(b, i, j) if i < j else None


def _ufloat(b, i, j):
    # A plain unsigned decimal ('12', '0.029', '.5', '3.') -> float, None when
    # empty. No signs, exponents, spaces, 'nan' or 'inf', which float() takes.
    if i >= j:
        return None
    dot = b.find(b".", i, j)
    if dot < 0:
        return float(_digits(b, i, j))
    w = _digits(b, i, dot) if dot > i else 0
    if dot + 1 == j:
        if dot == i:
            raise ValueError  # '.'
        return float(w)
    return w + _digits(b, dot + 1, j) / 10 ** (j - dot - 1)


def _char(b, i, j):
    # The one-letter field b[i:j] as its byte value, 0 when empty, else ValueError.
    if j == i:
        return 0
    if j != i + 1:
        raise ValueError
    return b[i]


def _time(b, i, j):
    # 'hhmmss[.sss]' -> seconds of the day (float), None when empty.
    if i == j:
        return None
    if j < i + 6:
        raise ValueError
    hms = _digits(b, i, i + 6)
    h = hms // 10000
    m = hms // 100 % 100
    sec = hms % 100
    if h > 23 or m > 59 or sec > 60:
        raise ValueError
    t = h * 3600 + m * 60 + sec
    if j > i + 6:
        if b[i + 6] != 46:
            raise ValueError
        return t + (_ufloat(b, i + 6, j) or 0.0)
    return t + 0.0


def _coord(b, i, j, deg_digits, maxdeg):
    # 'ddmm.mmmm' / 'dddmm.mmmm' -> micro-degrees (int, rounded).
    dot = b.find(b".", i, j)
    if dot < 0:
        dot = j
    if dot - i != deg_digits + 2:
        raise ValueError
    dm = _digits(b, i, dot)
    deg = dm // 100
    k = j - dot - 1  # fraction digits of the minutes; -1: no dot
    if k <= 0:
        if k == 0:
            raise ValueError  # 'ddmm.'
        k = 0
        mint = dm % 100
    else:
        frac = _digits(b, dot + 1, j)
        if k > 6:  # beyond 1e-6 minute is noise
            frac //= 10 ** (k - 6)
            k = 6
        mint = dm % 100 * 10**k + frac
    # mint * 10**(6-k) <= 6e7: small ints on MicroPython
    m6 = (mint * 10 ** (6 - k) + 30) // 60
    e6 = deg * 1000000 + m6
    if m6 >= 1000000 or e6 > maxdeg * 1000000:
        raise ValueError
    return e6


def _position(b, c, k):
    # Fields k..k+3 = lat, N/S, lon, E/W -> (lat6, lon6), None when both empty.
    # c: offsets of the commas; field k is b[c[k] + 1 : c[k + 1]].
    ns = _char(b, c[k + 1] + 1, c[k + 2])
    ew = _char(b, c[k + 3] + 1, c[k + 4])
    if c[k] + 1 == c[k + 1] and c[k + 2] + 1 == c[k + 3]:
        return None
    if (ns != 78 and ns != 83) or (ew != 69 and ew != 87):  # N S, E W
        raise ValueError
    lat6 = _coord(b, c[k] + 1, c[k + 1], 2, 90)
    lon6 = _coord(b, c[k + 2] + 1, c[k + 3], 3, 180)
    return (-lat6 if ns == 83 else lat6), (-lon6 if ew == 87 else lon6)


def parse(line):
    """One NMEA sentence (str or bytes, CR/LF optional) -> dict, or None."""
    if isinstance(line, str):
        try:
            line = line.encode()
        except Exception:
            return None
    elif not isinstance(line, (bytes, bytearray)):
        line = bytes(line)
    n = len(line)
    while n and line[n - 1] in (10, 13):
        n -= 1
    # '$' + 'TTSSS' + ',' ... '*' + two hex digits
    if n < 10 or n > _MAXLEN or line[0] != 36 or line[n - 3] != 42 or line[6] != 44:
        return None
    c3 = line[3]
    c4 = line[4]
    c5 = line[5]
    if c3 == 82 and c4 == 77 and c5 == 67:
        kind = "RMC"
    elif c3 == 71 and c4 == 71 and c5 == 65:
        kind = "GGA"
    elif c3 == 86 and c4 == 84 and c5 == 71:
        kind = "VTG"
    else:
        return None  # cheap reject before the checksum: GSV/GSA are most lines
    talker = _TALK.get(line[1] << 8 | line[2])
    hi = _hexval(line[n - 2])
    lo = _hexval(line[n - 1])
    if talker is None or hi < 0 or lo < 0:
        return None
    x = 0
    c = _CUTS  # offsets of the commas, then of the '*': field k is b[c[k] + 1 : c[k + 1]]
    nf = 1
    for i in range(1, n - 3):
        b = line[i]
        if b < 32 or b > 126:
            return None
        x ^= b
        if b == 44 and i > 6:
            if nf == _MAXF:
                return None
            c[nf] = i
            nf += 1
    if x != (hi << 4 | lo):
        return None
    c[nf] = n - 3
    if nf not in _COUNTS[kind]:
        return None
    try:
        if kind == "RMC":
            return _rmc(talker, line, c, nf)
        if kind == "GGA":
            return _gga(talker, line, c)
        if _char(line, c[5] + 1, c[6]) != 78 or _char(line, c[7] + 1, c[8]) != 75:  # N, K
            return None  # a pre-2.3 layout without unit letters, or garbage
        return {
            "type": kind,
            "talker": talker,
            "course": _ufloat(line, c[0] + 1, c[1]),
            "speed_kn": _ufloat(line, c[4] + 1, c[5]),
            "speed_kmh": _ufloat(line, c[6] + 1, c[7]),
        }
    except ValueError:
        return None


# Type and own four keys of an RMC and of a GGA; _fix sets the keys both have.
_RMC = ("RMC", "valid", "speed_kn", "course", "date")
_GGA = ("GGA", "quality", "sats", "hdop", "alt")


def _fix(keys, talker, b, c, pos):
    # An RMC or GGA result; keys[1:] start None for the caller to set. One literal with
    # every key sizes the dict once (a key added later regrows it on MicroPython), and five
    # arguments keep the frame within the 11 words MicroPython puts on the C stack, not the
    # heap: a sentence allocates no more than with a literal in each caller. Degrees are
    # derived from the exact micro-degrees so the two always agree (1e-6 deg is 0.11 m, far
    # below a receiver's error).
    return {
        "type": keys[0],
        "talker": talker,
        "time": _time(b, c[0] + 1, c[1]),
        keys[1]: None,
        "lat": pos[0] / 1000000 if pos else None,
        "lon": pos[1] / 1000000 if pos else None,
        "lat6": pos[0] if pos else None,
        "lon6": pos[1] if pos else None,
        keys[2]: None,
        keys[3]: None,
        keys[4]: None,
    }


def _rmc(talker, b, c, nf):
    status = _char(b, c[1] + 1, c[2])
    if status != 65 and status != 86:  # A, V
        raise ValueError
    # mode indicator (NMEA 2.3+) N = data not valid
    valid = status == 65 and not (nf > 11 and _char(b, c[11] + 1, c[12]) == 78)
    pos = _position(b, c, 2)
    d = _fix(_RMC, talker, b, c, pos if valid else None)
    d["valid"] = valid
    d["speed_kn"] = _ufloat(b, c[6] + 1, c[7])
    d["course"] = _ufloat(b, c[7] + 1, c[8])
    i = c[8] + 1
    j = c[9]
    if j > i:
        if j - i != 6:
            raise ValueError
        dmy = _digits(b, i, j)
        dd = dmy // 10000
        mm = dmy // 100 % 100
        yy = dmy % 100
        if not (1 <= dd <= 31 and 1 <= mm <= 12):
            raise ValueError
        d["date"] = (2000 + yy if yy < 80 else 1900 + yy, mm, dd)
    return d


def _gga(talker, b, c):
    q = _uint(b, c[5] + 1, c[6]) or 0
    pos = _position(b, c, 1)
    i = c[8] + 1  # altitude: may be negative (below the geoid)
    if i < c[9] and b[i] == 45:
        alt = _ufloat(b, i + 1, c[9])
        if alt is None:
            raise ValueError  # '-' alone
        alt = -alt
    else:
        alt = _ufloat(b, i, c[9])
    d = _fix(_GGA, talker, b, c, pos if q else None)
    d["quality"] = q
    d["sats"] = _uint(b, c[6] + 1, c[7])
    d["hdop"] = _ufloat(b, c[7] + 1, c[8])
    d["alt"] = alt
    return d


def _days(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    # days_from_civil): no time.mktime, whose epoch differs between ports.
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def to_unix(date, tod):
    """(yyyy, mm, dd) and seconds of day -> int seconds since 1970 UTC (fraction dropped).

    An int because a single-precision float (ESP32) cannot hold a unix time.
    None when either part is None.
    """
    if date is None or tod is None:
        return None
    return _days(date[0], date[1], date[2]) * 86400 + int(tod)


class LineReader:
    """Splits UART byte chunks into NMEA lines, in bounded RAM.

    A line starts at '$' (a '$' inside a line restarts it: the receiver began a
    new sentence) and ends at '\\n'; the CR/LF are not returned. Bytes outside
    a '$'-line and lines longer than maxlen are dropped, so the buffer never
    grows past maxlen whatever arrives.
    """

    def __init__(self, maxlen=_MAXLEN):
        self._buf = bytearray(maxlen)
        self._n = 0
        self._skip = True  # not inside a '$'-line: drop bytes until the next '$'
        self.dropped = 0  # lines dropped for length

    def feed(self, data):
        """Bytes in, list of complete lines (bytes, without CR/LF) out."""
        out = []
        buf = self._buf
        cap = len(buf)
        i = 0
        end = len(data)
        while i < end:
            j = data.find(b"\n", i)
            stop = end if j < 0 else j
            k = data.rfind(b"$", i, stop)
            if k >= 0:  # (re)start a line at the last '$' of this segment
                self._n = 0
                self._skip = False
                i = k
            if not self._skip:
                m = stop - i
                if self._n + m > cap:
                    self._skip = True
                    self._n = 0
                    self.dropped += 1
                else:
                    buf[self._n : self._n + m] = memoryview(data)[i:stop]  # no copy
                    self._n += m
            if j >= 0:
                if not self._skip:
                    n = self._n
                    if n and buf[n - 1] == 13:
                        n -= 1
                    out.append(bytes(memoryview(buf)[:n]))
                self._n = 0
                self._skip = True
            i = stop + 1
        return out


class FixTracker:
    """What the boat and truck trackers keep of the receiver: satellites, the last valid
    position and fix loss, from nmea.parse results; their common base.

    lost_after_s: no valid fix for this long is a fix loss, reported once per loss.
    """

    def __init__(self, lost_after_s):
        self.lost_after_s = lost_after_s
        self.sats = None
        self.lat6 = self.lon6 = None  # last valid position
        self._last_ok = None  # time of the last valid fix
        self._lost = False  # fix_lost already reported for the current loss

    def _fix_ok(self, fix, now):
        # True for an RMC with a valid position, which becomes the last position; a GGA
        # gives the satellite count; fix None (a tick) or anything else changes nothing.
        if fix is None:
            return False
        kind = fix.get("type")
        if kind == "GGA":
            self.sats = fix["sats"]
        elif kind == "RMC" and fix["valid"] and fix["lat6"] is not None:
            self._last_ok = now
            self._lost = False
            self.lat6 = fix["lat6"]
            self.lon6 = fix["lon6"]
            return True
        return False

    def _fix_lost(self, now):
        # True once when the last valid fix has become lost_after_s old.
        if self._lost or self._last_ok is None or now - self._last_ok < self.lost_after_s:
            return False
        self._lost = True
        return True

    def _fresh(self, now):
        # A fix counts until it is lost_after_s old.
        return self._last_ok is not None and now - self._last_ok < self.lost_after_s
