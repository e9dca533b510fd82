# Wire contract version 1 (docs/wire-format.md): uplink envelope with a
# SenML pack, status map, downlink parser, topic names. Encoding is cbor.py's
# deterministic CBOR, so the same inputs give the same bytes on the node, on
# the MicroPython VM and on CPython.
#
# Records are plain dicts keyed by RFC 8428 integer labels (BT, N, V, ...):
# what rec() builds is exactly what the agent decodes.

import cbor

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)

# Uplink envelope keys.
K_V = const(0)
K_DEV = const(1)
K_BOOT = const(2)
K_SEQ = const(3)
K_ROLE = const(4)
K_PACK = const(5)
K_UT = const(6)
K_LO = const(7)

# SenML labels (RFC 8428 section 6, CBOR representation).
BN = const(-2)  # never sent: consumers use "<device>:"
BT = const(-3)
BU = const(-4)
N = const(0)
U = const(1)
V = const(2)
VS = const(3)
VB = const(4)
T = const(6)
VD = const(8)

# Downlink keys.
D_V = const(0)
D_DEV = const(1)
D_ACK = const(8)
D_CMD = const(9)
D_ARGS = const(10)
D_ID = const(11)

MAX_RECORDS = const(64)
ROLES = ("water_level", "boat", "truck")
RESETS = ("power_on", "hard", "wdt", "deepsleep", "soft", "brownout")
LINKS = ("wifi", "cell")
CMDS = ("set_interval", "set_thresholds", "status", "reboot")

# Event kinds and the roles that send them.
EVENTS = {
    "flood_alert": ("water_level",),
    "flood_clear": ("water_level",),
    "zone_exit": ("boat",),
    "zone_enter": ("boat",),
    "off_hours": ("boat",),
    "dwell": ("boat",),
    "fix_lost": ("boat", "truck"),
    "trip_start": ("truck",),
    "trip_end": ("truck",),
    "stop": ("truck",),
}
# Always alarms; "dwell" is one only outside every zone (see is_alarm).
ALARM_EVENTS = ("flood_alert", "zone_exit", "off_hours")


# ---------------------------------------------------------------- topics


def topic_up(prefix, dev):
    return prefix + "/" + dev + "/up"


def topic_status(prefix, dev):
    return prefix + "/" + dev + "/status"


def topic_down(prefix, dev):
    return prefix + "/" + dev + "/down"


def valid_dev(dev):
    """True for a device id matching ^[a-z0-9][a-z0-9-]{0,31}$ (no re module needed)."""
    if not isinstance(dev, str) or not 1 <= len(dev) <= 32 or dev[0] == "-":
        return False
    for c in dev:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"):
            return False
    return True


# ---------------------------------------------------------------- uplink


def _num(x):
    return isinstance(x, (int, float)) and x is not True and x is not False


def _uint(x, low):
    return isinstance(x, int) and x is not True and x is not False and x >= low


def rec(name, v=None, u=None, vs=None, vb=None, vd=None, t=None, bt=None):
    """One SenML record: a name, exactly one of v/vs/vb/vd, optional unit,
    time relative to bt (t) or, for the first record, the base time (bt)."""
    if not isinstance(name, str) or not name:
        raise ValueError("record name")
    r = {N: name}
    nv = 0
    if v is not None:
        if not _num(v):
            raise ValueError("v must be a number")
        r[V] = v
        nv += 1
    if vs is not None:
        if not isinstance(vs, str):
            raise ValueError("vs must be str")
        r[VS] = vs
        nv += 1
    if vb is not None:
        if vb is not True and vb is not False:
            raise ValueError("vb must be bool")
        r[VB] = vb
        nv += 1
    if vd is not None:
        if not isinstance(vd, (bytes, bytearray)):
            raise ValueError("vd must be bytes")
        r[VD] = bytes(vd)
        nv += 1
    if nv != 1:
        raise ValueError("record needs exactly one value")
    if u is not None:
        if not isinstance(u, str):
            raise ValueError("u must be str")
        r[U] = u
    if t is not None:
        if not _num(t):
            raise ValueError("t must be a number")
        r[T] = t
    if bt is not None:
        if not _num(bt):
            raise ValueError("bt must be a number")
        r[BT] = bt
    return r


def event(kind, t=None, bt=None):
    """The record announcing an event of a known kind."""
    if kind not in EVENTS:
        raise ValueError("unknown event")
    return rec("event", vs=kind, t=t, bt=bt)


def envelope(dev, boot, seq, role, records, ut=None, lo=None):
    """Encode an uplink: the first record carries BT when the clock is valid;
    otherwise pass ut (uptime in ms) and leave BT out. lo: the lowest seq of
    this boot still in the outbox, passed only once the overflow policy has
    dropped records of this boot (1 <= lo <= seq)."""
    if not valid_dev(dev):
        raise ValueError("device id")
    if not _uint(boot, 1) or not _uint(seq, 1):
        raise ValueError("boot and seq must be >= 1")
    if role not in ROLES:
        raise ValueError("role")
    if not isinstance(records, (list, tuple)) or not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError("pack needs 1..64 records")
    has_bt = BT in records[0]
    if ut is None and not has_bt:
        raise ValueError("first record needs bt, or pass ut")
    if ut is not None and (has_bt or not _uint(ut, 0)):
        raise ValueError("ut is a uint and excludes bt")
    if lo is not None and (not _uint(lo, 1) or lo > seq):
        raise ValueError("lo must be in 1..seq")
    m = {K_V: VERSION, K_DEV: dev, K_BOOT: boot, K_SEQ: seq, K_ROLE: role, K_PACK: records}
    if ut is not None:
        m[K_UT] = ut
    if lo is not None:
        m[K_LO] = lo
    return cbor.dumps(m)


def track_bytes(points, bt, udeg=False):
    """vd of a `track` record: points [(t, lat, lon), ...] with t in the
    seconds of bt and lat/lon in degrees (or, with udeg=True, already integer
    micro-degrees: an ESP32 float has only 24 bits, about 0.8 m of longitude),
    as the CBOR array [dt0, lat0, lon0, dt1, dlat1, dlon1, ...] of whole
    seconds and micro-degrees, each later triple relative to the previous point."""
    if not points:
        raise ValueError("empty track")
    scale = 1 if udeg else 1000000
    out = []
    pt = pla = plo = 0
    for p in points:
        # Round absolute values first, then subtract: no drift over the track.
        ti = round(p[0] - bt)
        la = round(p[1] * scale)
        lo = round(p[2] * scale)
        out.append(ti - pt)
        out.append(la - pla)
        out.append(lo - plo)
        pt, pla, plo = ti, la, lo
    return cbor.dumps(out)


def track_points(vd, bt):
    """Inverse of track_bytes: [(bt + seconds, lat_udeg, lon_udeg), ...] with
    integer micro-degrees; ValueError when vd is not a track."""
    a = cbor.loads(vd)
    if not isinstance(a, list) or not a or len(a) % 3:
        raise ValueError("track is not a list of triples")
    out = []
    t = la = lo = 0
    for i in range(0, len(a), 3):
        for x in a[i : i + 3]:
            if not isinstance(x, int) or x is True or x is False:
                raise ValueError("track holds a non-integer")
        t += a[i]
        la += a[i + 1]
        lo += a[i + 2]
        out.append((bt + t, la, lo))
    return out


def is_alarm(records):
    """True when the pack holds an alarm event. A `dwell` is an alarm when the
    pack's `zone` is "" or, failing safe, when the pack has no `zone` record."""
    dwell = False
    zone = None
    for r in records:
        n = r.get(N)
        if n == "event":
            k = r.get(VS)
            if k in ALARM_EVENTS:
                return True
            if k == "dwell":
                dwell = True
        elif n == "zone":
            zone = r.get(VS)
    return dwell and not zone


# ---------------------------------------------------------------- status


def status(dev, boot, fw, reset, heap, link, batt, outbox, dropped, uptime, interval,
           rssi=None, cmd_id=None):
    """The retained status map (online form). rssi and cmd_id are left out when None."""
    if not valid_dev(dev):
        raise ValueError("device id")
    if reset not in RESETS:
        raise ValueError("reset cause")
    if link not in LINKS:
        raise ValueError("link")
    for x in (boot, heap, outbox, dropped, uptime, interval):
        if not _uint(x, 0):
            raise ValueError("counters are uints")
    m = {
        "v": VERSION,
        "dev": dev,
        "online": True,
        "fw": fw,
        "boot": boot,
        "reset": reset,
        "heap": heap,
        "link": link,
        "batt": float(batt),
        "outbox": outbox,
        "dropped": dropped,
        "uptime": uptime,
        "interval": interval,
    }
    if rssi is not None:
        m["rssi"] = rssi
    if cmd_id is not None:
        m["cmd_id"] = cmd_id
    return cbor.dumps(m)


def status_offline(dev):
    """The last-will payload: the offline form of the status map."""
    return cbor.dumps({"v": VERSION, "dev": dev, "online": False})


# ---------------------------------------------------------------- downlink


def down(dev, ack=None, cmd=None, args=None, cid=None):
    """Encode a downlink (the agent's side; used by tests and virtual gateways)."""
    if not ack and cmd is None:
        raise ValueError("downlink needs ack or cmd")
    m = {D_V: VERSION, D_DEV: dev}
    if ack:
        m[D_ACK] = ack
    if cmd is not None:
        m[D_CMD] = cmd
        m[D_ARGS] = args or {}
        if cid is not None:
            m[D_ID] = cid
    return cbor.dumps(m)


def decode_down(data, dev=None):
    """Parse a downlink into {"dev", "ack": {boot: seq}, "cmd", "args", "id"}
    (cmd/id None when absent). Checks structure only: an unknown command name
    is returned as is, so an ack in the same message is never lost.
    ValueError when malformed, or addressed to another device than dev."""
    m = cbor.loads(data)
    if not isinstance(m, dict):
        raise ValueError("downlink is not a map")
    for k in m:
        if not isinstance(k, int) or k is True or k is False:
            raise ValueError("downlink key %r" % (k,))
        if k < 16 and k not in (D_V, D_DEV, D_ACK, D_CMD, D_ARGS, D_ID):
            raise ValueError("unknown downlink key %d" % k)
    if not _uint(m.get(D_V), 0) or m[D_V] != VERSION:
        raise ValueError("downlink version")
    d = m.get(D_DEV)
    if not isinstance(d, str) or (dev is not None and d != dev):
        raise ValueError("downlink device")
    ack = m.get(D_ACK, {})
    if not isinstance(ack, dict):
        raise ValueError("ack is not a map")
    for b in ack:
        if not _uint(b, 1) or not _uint(ack[b], 1):
            raise ValueError("ack entries are boot: seq >= 1")
    cmd = m.get(D_CMD)
    args = m.get(D_ARGS, {})
    cid = m.get(D_ID)
    if cmd is None:
        if D_ARGS in m or D_ID in m:
            raise ValueError("args or id without cmd")
        if not ack:
            raise ValueError("downlink has neither ack nor cmd")
    elif not isinstance(cmd, str):
        raise ValueError("cmd is not text")
    if not isinstance(args, dict):
        raise ValueError("args is not a map")
    for k in args:
        if not isinstance(k, str):
            raise ValueError("args keys are text")
    if cid is not None and not _uint(cid, 0):
        raise ValueError("id is not a uint")
    return {"dev": d, "ack": ack, "cmd": cmd, "args": args, "id": cid}
