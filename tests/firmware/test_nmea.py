# nmea.parse, nmea.LineReader and nmea.to_unix on the five real captures in
# ../shared/data/nmea/ and on generated noise. Runs on CPython and MicroPython.

import math

import nmea
from fwtest import lcg, shared_path
from gpssim import cs as _cs

# Sentences per log (counted with grep: complete '$..RMC' etc. lines).
# ublox-8 also has an RMC glued behind binary garbage (only the LineReader,
# which resyncs on '$', recovers it) and a truncated RMC as its last line.
LOGS = {
    "haicom-305N.log": {"RMC": 74, "GGA": 73, "VTG": 73, "RMCfix": 68},
    "mt3339.log": {"RMC": 30, "GGA": 30, "VTG": 0, "RMCfix": 30},
    "quectel-l76k-nmea.log": {"RMC": 150, "GGA": 150, "VTG": 150, "RMCfix": 150},
    "sirfstarv-nmea.log": {"RMC": 59, "GGA": 118, "VTG": 0, "RMCfix": 59},
    "ublox-8.log": {"RMC": 71, "GGA": 72, "VTG": 72, "RMCfix": 71},
}


def _lines(name):
    with open(shared_path("data/nmea/" + name), "rb") as f:
        return [x for x in f.read().split(b"\n") if x]


def _deg(dm, deg_digits, hemi):
    # 'ddmm.mmmm' + hemisphere -> degrees, by hand: the expected value.
    v = int(dm[:deg_digits]) + float(dm[deg_digits:]) / 60
    return -v if hemi in ("S", "W") else v


def _dist_m(lat1, lon1, lat2, lon2):
    # Flat-earth distance, good enough for "within some km".
    x = math.radians(lon2 - lon1) * math.cos(math.radians(lat1))
    y = math.radians(lat2 - lat1)
    return 6371000 * math.sqrt(x * x + y * y)


def _find(name, prefix):
    for line in _lines(name):
        if line.startswith(prefix.encode()):
            return line.decode().rstrip("\r")
    raise AssertionError("no line %s in %s" % (prefix, name))


def test_every_log_parses_to_the_expected_counts_and_never_raises():
    for name, want in LOGS.items():
        got = {"RMC": 0, "GGA": 0, "VTG": 0, "RMCfix": 0, "none": 0}
        lines = _lines(name)
        for i, line in enumerate(lines):
            d = nmea.parse(line)
            if d is None:
                got["none"] += 1
                # Of our types only the ublox log's cut last line is refused.
                if line[3:6] in (b"RMC", b"GGA", b"VTG") and line.startswith(b"$"):
                    assert i == len(lines) - 1 and b"*" not in line, (name, line)
                continue
            got[d["type"]] += 1
            if d["type"] == "RMC" and d["lat"] is not None:
                got["RMCfix"] += 1
        for k in want:
            assert got[k] == want[k], (name, k, got[k], want[k])
        assert got["none"] > 0  # GSV/GSA/comments are in every log


def test_positions_are_plausible_and_consistent_within_each_log():
    for name in LOGS:
        first = None
        n = 0
        for line in _lines(name):
            d = nmea.parse(line)
            if d is None or d["type"] == "VTG" or d["lat"] is None:
                continue
            lat, lon = d["lat"], d["lon"]
            assert -90 <= lat <= 90 and -180 <= lon <= 180
            # micro-degrees: the float rounded (ties may go either way)
            assert abs(d["lat6"] - lat * 1000000) <= 0.5 and abs(d["lon6"] - lon * 1000000) <= 0.5
            if first is None:
                first = (lat, lon)
            # every capture is one receiver standing or walking around one spot
            assert _dist_m(first[0], first[1], lat, lon) < 2000, (name, line)
            n += 1
        assert n > 50, name


def test_rmc_fields_from_a_known_line():
    raw = _find("mt3339.log", "$GPRMC,202640.000")
    f = raw.split("*")[0].split(",")
    d = nmea.parse(raw)
    assert d["type"] == "RMC" and d["talker"] == "GP" and d["valid"] is True
    assert abs(d["lat"] - _deg(f[3], 2, f[4])) < 6e-7
    assert abs(d["lon"] - _deg(f[5], 3, f[6])) < 6e-7
    assert d["lon"] < 0  # W
    assert d["time"] == int(f[1][0:2]) * 3600 + int(f[1][2:4]) * 60 + float(f[1][4:])
    assert d["speed_kn"] == float(f[7]) and d["course"] == float(f[8])
    assert d["date"] == (2000 + int(f[9][4:6]), int(f[9][2:4]), int(f[9][0:2]))


def test_southern_eastern_fix_and_the_void_rmc_before_it():
    raw = _find("haicom-305N.log", "$GPGGA,095305.802")
    f = raw.split("*")[0].split(",")
    d = nmea.parse(raw)
    assert d["type"] == "GGA" and d["quality"] == 1 and d["sats"] == int(f[7])
    assert abs(d["lat"] - _deg(f[2], 2, f[3])) < 6e-7 and d["lat"] < 0  # S
    assert abs(d["lon"] - _deg(f[4], 3, f[5])) < 6e-7 and d["lon"] > 0  # E
    assert d["hdop"] == float(f[8]) and d["alt"] == float(f[9])
    # the receiver's first RMC is status V with a stale position: no fix
    v = nmea.parse(_find("haicom-305N.log", "$GPRMC,095255.810"))
    assert v["valid"] is False and v["lat"] is None and v["lon6"] is None
    assert v["date"] == (2007, 4, 8)
    q0 = nmea.parse(_find("haicom-305N.log", "$GPGGA,095257.809"))
    assert q0["quality"] == 0 and q0["lat"] is None


def test_other_talkers_and_layouts():
    # NMEA 4.1 RMC (13 fields) from the Quectel, GN talker, 5 decimals
    raw = _find("quectel-l76k-nmea.log", "$GNRMC,055253.800")
    f = raw.split("*")[0].split(",")
    d = nmea.parse(raw)
    assert d["talker"] == "GN" and d["valid"]
    assert d["lat6"] == round(_deg(f[3], 2, f[4]) * 1000000)
    assert d["lon6"] == round(_deg(f[5], 3, f[6]) * 1000000)
    assert d["date"] == (2026, 8, 5)
    # GLONASS-only GGA from the SiRF
    g = nmea.parse(_find("sirfstarv-nmea.log", "$GLGGA,020935.000"))
    assert g["talker"] == "GL" and g["sats"] == 2 and g["alt"] == 1123.9
    # u-blox VTG with no course (too slow)
    v = nmea.parse(_find("ublox-8.log", "$GNVTG,,T,,M,0.029"))
    assert v["type"] == "VTG" and v["course"] is None
    assert v["speed_kn"] == 0.029 and v["speed_kmh"] == 0.053
    # every listed talker is taken, others are not
    body = "RMC,010203.00,A,1001.8000,N,10546.8000,E,1.0,90.0,010124,,,A"
    for t in nmea.TALKERS:
        assert nmea.parse(_cs(t + body))["talker"] == t
    assert nmea.parse(_cs("XX" + body)) is None
    d = nmea.parse(_cs("GPRMC" + body[3:]))  # 10 deg 01.8 min, 105 deg 46.8 min
    assert abs(d["lat"] - 10.03) < 6e-7 and d["lat6"] == 10030000 and d["lon6"] == 105780000


def test_str_bytes_and_line_endings_are_equivalent():
    s = _cs("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    want = nmea.parse(s)
    assert want is not None and want["time"] == 12 * 3600 + 35 * 60 + 19
    for v in (
        s + "\r\n",
        s + "\n",
        s.encode(),
        s.encode() + b"\r\n",
        bytearray(s.encode()),
        memoryview(s.encode()),
    ):
        assert nmea.parse(v) == want
    assert nmea.parse(s.lower()[:-2] + s[-2:].lower()) is None  # lowercase address
    assert nmea.parse(s[:-2] + s[-2:].lower()) == want  # lowercase checksum digits


def test_empty_fields_give_none_not_errors():
    d = nmea.parse(_cs("GNRMC,,V,,,,,,,,,,N"))
    assert d["valid"] is False and d["time"] is None and d["date"] is None
    assert d["lat"] is None and d["speed_kn"] is None and d["course"] is None
    g = nmea.parse(_cs("GPGGA,,,,,,0,,,,,,,,"))
    assert g["quality"] == 0 and g["sats"] is None and g["lat"] is None and g["hdop"] is None
    # a valid status with a 'not valid' mode indicator is no fix
    n = nmea.parse(_cs("GPRMC,010203,A,1001.8,N,10546.8,E,0,0,010124,,,N"))
    assert n["valid"] is False and n["lat"] is None


def test_corrupted_and_truncated_sentences_give_none():
    good = _find("mt3339.log", "$GPRMC,202640.000")
    assert nmea.parse(good) is not None
    # any one character changed in the body breaks the checksum
    for i in range(1, len(good) - 3):
        c = "0" if good[i] != "0" else "1"
        assert nmea.parse(good[:i] + c + good[i + 1 :]) is None, i
    # a wrong or missing checksum
    assert nmea.parse(good[:-2] + "00") is None
    assert nmea.parse(good[:-3]) is None
    assert nmea.parse(good[:-1]) is None
    assert nmea.parse(good[:-2] + "G3") is None
    # every truncation, and the ublox log's own cut last line
    for i in range(len(good) - 1):
        assert nmea.parse(good[:i]) is None, i
        assert nmea.parse(good[:i] + "\r\n") is None, i
    assert nmea.parse(_lines("ublox-8.log")[-1]) is None
    # not starting at '$', or with a prefix
    assert nmea.parse(good[1:]) is None
    assert nmea.parse("xx" + good) is None
    assert nmea.parse("") is None and nmea.parse(b"") is None and nmea.parse(b"\r\n") is None


def test_well_checksummed_but_malformed_sentences_give_none():
    bad = (
        "GPRMC,010203,A,1001.8,N,10546.8,E,0,0",  # too few fields
        "GPRMC,010203,A,1001.8,N,10546.8,E,0,0,010124,,,A,V,X",  # too many
        "GPGGA,010203,1001.8,N,10546.8,E,1,08,0.9,5.0,M,1.0,M,",  # 13 fields
        "GPRMC,010203,X,1001.8,N,10546.8,E,0,0,010124,,,A",  # status X
        "GPRMC,010203,A,1001.8,Q,10546.8,E,0,0,010124,,,A",  # hemisphere Q
        "GPRMC,010203,A,9101.8,N,10546.8,E,0,0,010124,,,A",  # lat 91
        "GPRMC,010203,A,1061.8,N,10546.8,E,0,0,010124,,,A",  # 61 minutes
        "GPRMC,010203,A,1001.8,N,18146.8,E,0,0,010124,,,A",  # lon 181
        "GPRMC,010203,A,101.8,N,10546.8,E,0,0,010124,,,A",  # lat digits
        "GPRMC,010203,A,10-1.8,N,10546.8,E,0,0,010124,,,A",  # sign inside
        "GPRMC,016203,A,1001.8,N,10546.8,E,0,0,010124,,,A",  # 62 minutes
        "GPRMC,250203,A,1001.8,N,10546.8,E,0,0,010124,,,A",  # hour 25
        "GPRMC,010203,A,1001.8,N,10546.8,E,0,0,011324,,,A",  # month 13
        "GPRMC,010203,A,1001.8,N,10546.8,E,abc,0,010124,,,A",  # speed text
        "GPRMC,010203,A,1001.8,N,10546.8,E,nan,0,010124,,,A",  # float() would take these
        "GPRMC,010203,A,1001.8,N,10546.8,E,1e3,0,010124,,,A",
        "GPRMC,010203,A,1001.8,N,10546.8,E, 1,0,010124,,,A",
        "GPRMC,010203,A,1001.8,N,10546.8,E,-1,0,010124,,,A",
        "GPRMC,010203,A,1001.8,N,10546.8,E,.,0,010124,,,A",
        "GPRMC,010203,A,1001.,N,10546.8,E,0,0,010124,,,A",  # no minute digits
        "GPRMC,0102,A,1001.8,N,10546.8,E,0,0,010124,,,A",  # short time
        "GPRMC,010203x00,A,1001.8,N,10546.8,E,0,0,010124,,,A",
        "GPRMC,010203,A,1001.8,N,10546.8,E,0,0,01012,,,A",  # short date
        "GPRMC,010203,AA,1001.8,N,10546.8,E,0,0,010124,,,A",
        "GPGGA,010203,1001.8,N,10546.8,E,1,08,0.9,-,M,1.0,M,,",  # a lone sign
        "GPGGA,010203,1001.8,N,10546.8,E,1,-8,0.9,5.0,M,1.0,M,,",  # negative sats
        "GPGGA,010203,1001.8,N,10546.8,E,x,08,0.9,5.0,M,1.0,M,,",  # quality x
        "GPVTG,90.0,T,,M,1.0,N,1.8",  # 7 fields
        "GPVTG,90.0,T,,M,1.0,X,1.8,K,A",  # unit letters shifted
        "GPGSV,3,1,12,01,02,003,40",  # not a type we parse
        "GPTXT,01,01,01,ANTENNA OK",
        "GPRM,010203,A",
    )
    for body in bad:
        assert nmea.parse(_cs(body)) is None, body
    assert nmea.parse(_cs("GPRMC" + "," * 30)) is None  # more fields than any of ours
    # edge values that are fine
    g = nmea.parse(_cs("GPGGA,010203,1001.80000049,N,10546.8,E,1,08,.9,-5.5,M,1.0,M,,"))
    assert g["alt"] == -5.5 and g["hdop"] == 0.9 and g["lat6"] == 10030000
    assert g["time"] == 3723.0 and isinstance(g["time"], float)
    r = nmea.parse(_cs("GPRMC,010203.5,A,1001,N,10546,E,3.,180,010124,,,A"))
    assert r["speed_kn"] == 3.0 and r["lat6"] == 10016667 and r["time"] == 3723.5
    # the same template with good values does parse (so the above fail for their reason)
    assert nmea.parse(_cs("GPRMC,010203,A,1001.8,N,10546.8,E,0,0,010124,,,A")) is not None
    assert nmea.parse(_cs("GPVTG,90.0,T,,M,1.0,N,1.8,K,A"))["course"] == 90.0


def test_non_ascii_and_control_bytes_give_none():
    for body in (
        b"GPRMC,010203,A,1001.8,N,10546.8,E,0,0,010124,,,A\xc3",
        b"GPGGA,010203,1001.8,N,10546.8,E,1,08,0.9,5.0,M,1.0,M,,\x00",
        b"GPVTG,90.0,T,,M,1.0,N,1.8,K,\tA",
    ):
        c = 0
        for b in body:
            c ^= b
        line = b"$" + body + ("*%02X" % c).encode()
        assert nmea.parse(line) is None, line
    assert nmea.parse("$GPRMC,0102é3,A*00") is None  # a str with non-ASCII


def test_random_bytes_never_raise_and_never_parse():
    g = lcg(7)
    for n in range(400):
        ln = next(g) % 100
        b = bytes(next(g) & 0xFF for _ in range(ln))
        if n % 3 == 0:
            b = b"$GPRMC," + b  # look like the start of one of ours
        elif n % 3 == 1:
            b = b"$GNGGA" + b + b"*4D\r\n"
        assert nmea.parse(b) is None


def test_linereader_recovers_every_sentence_whatever_the_chunking():
    data = b"\n".join(_lines("ublox-8.log"))
    whole = [nmea.parse(x) for x in nmea.LineReader().feed(data)]
    whole = [d for d in whole if d is not None]
    rmc = [d for d in whole if d["type"] == "RMC"]
    # the RMC glued behind the binary garbage is recovered by the '$' resync
    assert len(rmc) == LOGS["ublox-8.log"]["RMC"] + 1
    for size in (1, 2, 7, 64, 200, 4096):
        r = nmea.LineReader()
        got = []
        for i in range(0, len(data), size):
            for line in r.feed(data[i : i + size]):
                assert b"\n" not in line and not line.endswith(b"\r")
                d = nmea.parse(line)
                if d is not None:
                    got.append(d)
        assert got == whole, size


def test_linereader_drops_garbage_and_overlong_lines_in_bounded_ram():
    good = _find("mt3339.log", "$GPGGA,202640.000").encode() + b"\r\n"
    r = nmea.LineReader(maxlen=100)
    cap = len(r._buf)
    g = lcg(3)
    # 20 kB of binary without a newline, then with '$' starts but no end
    assert r.feed(bytes(next(g) & 0xFF for _ in range(20000)).replace(b"\n", b"")) == []
    assert len(r._buf) == cap
    assert r.feed(b"$GPGGA," + b"1" * 500) == []
    assert len(r._buf) == cap and r.dropped >= 1
    # the over-long line is dropped even when its end arrives
    assert r.feed(b"*00\r\n") == []
    # and the reader is back in step for the next sentence
    assert [nmea.parse(x) for x in r.feed(good)] == [nmea.parse(good)]
    # a sentence cut by a restart: the receiver's new '$' wins
    out = r.feed(b"$GPRMC,2026" + good)
    assert len(out) == 1 and nmea.parse(out[0]) == nmea.parse(good)
    assert r.feed(b"$GPRMC,2026") == []  # the same, cut across chunks
    out = r.feed(good)
    assert len(out) == 1 and nmea.parse(out[0]) == nmea.parse(good)
    # bytes before the first '$' (mid-line at power-up) are not a line
    r2 = nmea.LineReader()
    assert r2.feed(b"4,W,2,10,0.98*6C\r\n") == []
    assert r2.feed(good[:20]) == [] and len(r2.feed(good[20:])) == 1


def test_to_unix():
    assert nmea.to_unix((1970, 1, 1), 0.0) == 0
    assert nmea.to_unix((2000, 1, 1), 0) == 946684800
    assert nmea.to_unix((2000, 3, 1), 0) - nmea.to_unix((2000, 2, 28), 0) == 2 * 86400  # leap
    assert nmea.to_unix((2100, 3, 1), 0) - nmea.to_unix((2100, 2, 28), 0) == 86400  # not leap
    assert nmea.to_unix((2015, 4, 13), 73600.9) == 1428956800  # fraction dropped: an int
    assert nmea.to_unix(None, 5.0) is None and nmea.to_unix((2020, 1, 1), None) is None
    # walk every day 1999..2031 with an independent month table
    t = nmea.to_unix((1999, 1, 1), 0)
    for y in range(1999, 2032):
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        for m in range(1, 13):
            days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
            for dd in range(1, days + 1):
                assert nmea.to_unix((y, m, dd), 3661) == t + 3661
                t += 86400
    # a parsed RMC's own date and time
    d = nmea.parse(_find("quectel-l76k-nmea.log", "$GNRMC,055253.800"))
    want = nmea.to_unix((2026, 8, 5), 0) + 5 * 3600 + 52 * 60 + 53
    assert nmea.to_unix(d["date"], d["time"]) == want
