"""Configuration: defaults, TOML, flags, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.brokerurl import parse_broker_url
from edge_agent.cli import _describe, main
from edge_agent.config import load_config
from edge_agent.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_follow_the_issue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg = load_config()
    assert str(cfg.local.url) == "mqtt://127.0.0.1:1883"
    assert cfg.upstream is None
    assert cfg.data_dir == tmp_path / "state" / "edge-agent"
    assert cfg.local.topic_prefix == "nodes"
    # issue #5: a commit's batch and the upstream window sized for throughput
    assert (cfg.commit_interval, cfg.commit_at_pending, cfg.upstream_inflight) == (0.1, 500, 1000)
    assert cfg.accept_unknown is False
    assert cfg.ack_min_interval == 0.2


def test_data_dir_falls_back_to_home_and_prefers_systemd_state_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config().data_dir == tmp_path / ".local" / "state" / "edge-agent"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-agent")
    assert load_config().data_dir == Path("/var/lib/edge-agent")


def test_file_values_then_flags_override(tmp_path: Path) -> None:
    pw = tmp_path / "up.pass"
    pw.write_text("s3cret-pw\n")
    path = write(tmp_path, f"""
log_level = "debug"
data_dir = "{tmp_path / 'd'}"
accept_unknown = true
metrics_port = 9108
offline_multiple = 2.5
[local]
url = "mqtt://127.0.0.1:1884"
topic_prefix = "site/nodes"
[upstream]
url = "mqtts://ioc.example.org"
username = "gw-01"
password_file = "{pw}"
topic_prefix = "ioc/gw-01"
inflight = 7
publish_events = false
[commit]
interval = 0.25
at_pending = 5
[queue]
max_rows = 10
max_bytes = 2048
max_age = 60
max_db_bytes = 1048576
reserve_bytes = 0
""")
    cfg = load_config(path)
    assert cfg.log_level == "debug" and cfg.accept_unknown is True
    assert (cfg.local.url.port, cfg.local.topic_prefix) == (1884, "site/nodes")
    assert cfg.upstream is not None
    assert (cfg.upstream.url.host, cfg.upstream.url.port, cfg.upstream.url.tls) == \
        ("ioc.example.org", 8883, True)
    assert cfg.upstream.password() == "s3cret-pw"
    assert (cfg.upstream_inflight, cfg.commit_interval, cfg.commit_at_pending) == (7, 0.25, 5)
    assert (cfg.max_rows, cfg.max_bytes, cfg.max_age) == (10, 2048, 60.0)
    assert (cfg.max_db_bytes, cfg.reserve_bytes, cfg.publish_events) == (1 << 20, 0, False)
    assert (cfg.metrics_port, cfg.offline_multiple) == (9108, 2.5)
    # The password is read from its file when connecting; it is nowhere in the config or logs.
    assert "s3cret" not in repr(cfg) and "s3cret" not in _describe(cfg)

    cfg = load_config(path, [("--upstream", "upstream.url", "none"),
                             ("--log-level", "log_level", "warning"),
                             ("--local-broker", "local.url", "mqtt://10.0.0.5:1999")])
    assert cfg.upstream is None and cfg.log_level == "warning"
    assert str(cfg.local.url) == "mqtt://10.0.0.5:1999"


@pytest.mark.parametrize("text, message", [
    ("[queue]\nmax_rows = -5", "config.toml: queue.max_rows: must be a positive integer, got -5"),
    ("[queue]\nmax_rows = true", "config.toml: queue.max_rows: must be a positive integer, "
                                 "got True"),
    ("[commit]\ninterval = 0", "config.toml: commit.interval: must be a positive number, got 0"),
    ("[ack]\nmin_interval = -0.1", "config.toml: ack.min_interval: must be a number >= 0, "
                                  "got -0.1"),
    ("[ack]\nmin_interval = nan", "config.toml: ack.min_interval: must be a number >= 0, "
                                 "got nan"),
    ("[queue]\nmax_row = 5", "config.toml: queue.max_row: unknown key"),
    ("colour = 'red'", "config.toml: colour: unknown key"),
    ("queue = 5", "config.toml: queue: must be a table [queue], got 5"),
    ("log_level = 'loud'", "config.toml: log_level: must be one of debug, info, warning, error, "
                           "got 'loud'"),
    ("[local]\nurl = 'http://x:1'", "config.toml: local.url: scheme must be mqtt:// or "
                                    "mqtts://, got 'http://x:1'"),
    ("[local]\nurl = 'mqtt://x:99999'", "config.toml: local.url: port must be a number "
                                        "1..65535, got 'mqtt://x:99999'"),
    ("[local]\nurl = 'mqtt://x:0'", "config.toml: local.url: port must be 1..65535, got 0"),
    ("[upstream]\nurl = 'mqtt://u:p@x:1'", "config.toml: upstream.url: credentials do not "
                                           "belong in the URL: use username and password_file"),
    ("[local]\ntopic_prefix = 'nodes/+'", "config.toml: local.topic_prefix: must be topic "
                                          "levels without wildcards or outer slashes, "
                                          "got 'nodes/+'"),
    ("[upstream]\nurl = 'mqtt://x:1'\npassword_file = '/nonexistent/pw'",
     "config.toml: upstream.password_file: no readable file at '/nonexistent/pw'"),
    ("[upstream]\ninflight = 40000", "config.toml: upstream.inflight: must be an integer "
                                     "1..30000, got 40000"),
    ("[commit]\nat_pending = 2.5", "config.toml: commit.at_pending: must be a positive integer, "
                                   "got 2.5"),
    ("metrics_port = 70000", "config.toml: metrics_port: must be a port number 0..65535 "
                             "(0: off), got 70000"),
    ("[queue]\nmax_db_bytes = -1", "config.toml: queue.max_db_bytes: must be an integer >= 0, "
                                   "got -1"),
    ("[queue]\nreserve_bytes = 1.5", "config.toml: queue.reserve_bytes: must be an integer >= 0,"
                                     " got 1.5"),
    ("[upstream]\npublish_events = 'yes'", "config.toml: upstream.publish_events: must be true "
                                           "or false, got 'yes'"),
])
def test_bad_values_name_the_key_and_the_problem(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).replace(str(path), "config.toml") == message
    assert "\n" not in str(e.value)


def test_cross_key_checks(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    pw = tmp_path / "pw"
    pw.write_text("x")
    cases = [
        (f"[upstream]\nurl = 'mqtt://x:1'\nca_file = '{ca}'",
         "upstream.ca_file: TLS files need an mqtts:// url, got mqtt://x:1"),
        (f"[upstream]\nurl = 'mqtts://x:1'\ncert_file = '{ca}'",
         "upstream.cert_file: cert_file and key_file go together"),
        (f"[upstream]\nurl = 'mqtt://x:1'\npassword_file = '{pw}'",
         "upstream.password_file: a password needs a username"),
    ]
    for text, tail in cases:
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match="^" + str(path) + ": ") as e:
            load_config(path)
        assert str(e.value).endswith(tail)


def test_flag_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [("--upstream", "upstream.url", "ioc.example.org:8883")])
    assert str(e.value).startswith("--upstream: upstream.url: scheme must be mqtt://")


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.toml: cannot read: No such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"config.toml: invalid TOML: .*line 2, column 7"):
        load_config(write(tmp_path, "a = 1\nb = 2 3\n"))


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://gw.local") == parse_broker_url("mqtt://gw.local:1883")
    u = parse_broker_url("mqtts://[::1]:8884")
    assert (u.host, u.port, u.tls, str(u)) == ("::1", 8884, True, "mqtts://[::1]:8884")
    for bad in ("", "mqtt://", "mqtt://h:1/path", "tcp://h:1", "mqtt://h:1?x=1"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_main_prints_one_line_and_exits_2_on_config_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[queue]\nmax_rows = -5\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"edge-agent: {path}: queue.max_rows: must be a positive integer, got -5\n"
    assert main(["status", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "no store yet" in capsys.readouterr().err
