"""The daemon's TOML config: every documented key parses; bad input is one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harepl.runtime.config import PROFILES, ConfigError, Timing, load_config

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
node = "n1"
data_dir = "data"
secret_file = "secret"
log_file = "n1.log"

[[nodes]]
name = "n1"
address = "127.0.0.1"
raft_port = 17001

[[nodes]]
name = "n2"
address = "127.0.0.1"
raft_port = 17002

[api]
socket = "api.sock"

[timing]
profile = "fast"
"""


def write(tmp_path: Path, text: str, secret_mode: int = 0o600) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-s3cret-s3cret\n")
    os.chmod(secret, secret_mode)
    cfg = tmp_path / "harepl.toml"
    cfg.write_text(text)
    return cfg


def test_good_config_parses_with_profile_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.node == "n1"
    assert cfg.timing == PROFILES["fast"]
    assert [m.raft_addr for m in cfg.peers] == ["127.0.0.1:17002"]
    assert cfg.self_member.raft_port == 17001
    assert cfg.data_dir == tmp_path / "data"  # relative to the config file
    assert cfg.read_secret() == "s3cret-s3cret-s3cret"
    assert cfg.api_tcp is None and cfg.watchdog_backend == "auto"


def test_the_shipped_example_parses_and_documents_every_key() -> None:
    example = ROOT / "deploy" / "harepl.toml.example"
    cfg = load_config(example, check_files=False)
    assert cfg.profile == "default"
    text = example.read_text()
    for key in ("node", "data_dir", "secret_file", "log_file", "[[nodes]]", "address", "raft_port",
                "socket", "tcp", "token_file", "profile", "loop_s", "lease_local_s", "watchdog_s",
                "lease_timeout_s", "margin_s", "max_workers", "backend", "device"):
        assert key in text, key


def test_overrides_replace_profile_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD + "loop_s = 0.25\nmax_workers = 8\n"))
    assert cfg.timing.loop_s == 0.25 and cfg.timing.max_workers == 8
    assert cfg.timing.lease_timeout_s == PROFILES["fast"].lease_timeout_s


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_builtin_profile_is_safe(profile: str) -> None:
    PROFILES[profile].check_safe()


def test_unsafe_timings_are_refused_at_start_up(tmp_path: Path) -> None:
    # 2 + 3 + 1 = 6 is not < 6
    with pytest.raises(ConfigError, match="unsafe timings: lease_timeout_s must be >"):
        load_config(write(tmp_path, GOOD + "lease_timeout_s = 6\n"))
    with pytest.raises(ConfigError, match="unsafe timings"):
        Timing(1, 5, 10, 17, 2, 4).check_safe()
    Timing(1, 5, 10, 17.01, 2, 4).check_safe()  # just over the bound is fine


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('node = "n1"', 'node = "n9"'), "node 'n9' is not listed in [[nodes]]"),
        (lambda t: t.replace('profile = "fast"', 'profile = "warp"'), "unknown profile 'warp'"),
        (lambda t: t + "loop_secs = 1\n", "unknown key timing.loop_secs"),
        (lambda t: t + 'loop_s = "1"\n', "timing.loop_s: must be a number"),
        (lambda t: t + "loop_s = 3\n", "timing.loop_s (3) must be < timing.lease_local_s"),
        (lambda t: t + "max_workers = 0\n", "max_workers must be >= 1"),
        (lambda t: t.replace("raft_port = 17002", "raft_port = 70000"), "nodes[1].raft_port: must be a port"),
        (lambda t: t.replace("raft_port = 17002", "raft_port = 17001"), "raft address 127.0.0.1:17001 used twice"),
        (lambda t: t.replace('name = "n2"', 'name = "n1"'), "node 'n1' listed twice"),
        (lambda t: t.replace('address = "127.0.0.1"', 'address = "localhost"', 1), "not an IP address"),
        (lambda t: t.replace("[api]\nsocket", "[api]\nsock"), "unknown key api.sock"),
        (lambda t: t.replace('socket = "api.sock"', 'socket = "api.sock"\ntcp = "127.0.0.1:8007"'),
         "api.tcp needs api.token_file"),
        (lambda t: t.replace('secret_file = "secret"\n', ""), "missing key secret_file"),
        (lambda t: t + "[watchdog]\nbackend = \"dev\"\n", "watchdog.backend: must be one of"),
        (lambda t: t.replace("[[nodes]]", "[nodes]", 1), "invalid TOML"),
        (lambda t: "node = ", "invalid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, edit(GOOD)))
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "harepl.toml"))


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable by others"):
        load_config(write(tmp_path, GOOD, secret_mode=0o644))


def test_missing_secret_and_missing_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, GOOD)
    (tmp_path / "secret").unlink()
    with pytest.raises(ConfigError, match="secret_file: cannot read"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_daemon_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harepl.runtime.daemon_cli import daemon

    cfg = write(tmp_path, GOOD + "lease_timeout_s = 5\n")
    result = CliRunner().invoke(daemon, ["--config", str(cfg)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unsafe timings" in lines[0], result.output
    assert "Traceback" not in result.output


def test_daemon_cli_check_accepts_good_config(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harepl.runtime.daemon_cli import daemon

    result = CliRunner().invoke(daemon, ["--config", str(write(tmp_path, GOOD)), "--check"])
    assert result.exit_code == 0, result.output
    assert "config OK: node n1, 2 members, profile fast" in result.output
