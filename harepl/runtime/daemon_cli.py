"""`harepl daemon --config FILE`: run this node's daemon in the foreground.

Every start-up refusal is one line on standard error naming the cause and the key to fix,
exit status 2, no traceback; the daemon (not `--check`) also appends it to its log file,
so a node that did not come up says why in `harepl.log` as well as in the journal.
`--check` runs the same checks (the file, then this host: paths, permissions, ports, the
API socket) and starts nothing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

from harepl.runtime.config import ConfigError, NodeConfig, check_host, load_config

#: exit status of a refused start (bad config, or a host that cannot run it)
EXIT_REFUSED = 2


def log_refusal(msg: str, cfg: NodeConfig | None = None, config_path: Path | None = None,
                level: str = "err") -> None:
    """Append one daemon line to the node's log file, best effort: with no usable config
    the log file is looked up in the raw TOML, and nothing is written when there is none
    or it cannot be opened (the line still went to standard error)."""
    node, path = (cfg.node, cfg.log_file) if cfg is not None else _raw_log_target(config_path)
    if path is None:
        return
    try:
        if not path.parent.is_dir():
            return
        from harepl.runtime.nodelog import NodeLog

        log = NodeLog(node, path, store_logs=False)
    except OSError:
        return
    log.write("daemon", level, msg)
    log.close()


def _raw_log_target(config_path: Path | None) -> tuple[str, Path | None]:
    if config_path is None:
        return "?", None
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "?", None
    node, log_file = data.get("node"), data.get("log_file")
    if not isinstance(log_file, str) or not log_file:
        return "?", None
    p = Path(log_file)
    return (node if isinstance(node, str) and node else "?"), (p if p.is_absolute() else config_path.parent / p)


def refuse(msg: str, cfg: NodeConfig | None = None, config_path: Path | None = None,
           to_log: bool = True) -> int:
    click.echo(f"harepl daemon: {msg}", err=True)
    if to_log:
        log_refusal(f"refusing to start: {msg}", cfg, config_path)
    return EXIT_REFUSED


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The node's TOML config (see deploy/harepl.toml.example).")
@click.option("--check", is_flag=True, help="Only check the config and this host (paths, permissions, "
                                             "ports, API socket) and print the timings, then exit.")
def daemon(config_path: Path, check: bool) -> None:
    """Run the node daemon: Raft member, CRM, LRM, local API and watchdog client."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise SystemExit(refuse(str(exc), config_path=config_path, to_log=not check)) from None
    try:
        check_host(cfg)
    except ConfigError as exc:
        raise SystemExit(refuse(f"{config_path}: {exc}", cfg, to_log=not check)) from None
    if check:
        t = cfg.timing
        click.echo(f"config OK: node {cfg.node}, {len(cfg.members)} members, profile {cfg.profile}: "
                   f"loop {t.loop_s:g} s, lease_local {t.lease_local_s:g} s, watchdog {t.watchdog_s:g} s, "
                   f"lease_timeout {t.lease_timeout_s:g} s, margin {t.margin_s:g} s, "
                   f"max_workers {t.max_workers}")
        return
    # imported here so that `--check` works without the runtime's heavier imports
    from harepl.runtime.daemon import run_daemon

    raise SystemExit(run_daemon(cfg))


if __name__ == "__main__":
    daemon()
