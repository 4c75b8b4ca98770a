"""`harepl daemon --config FILE`: run this node's daemon in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from harepl.runtime.config import ConfigError, load_config


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The node's TOML config (see deploy/harepl.toml.example).")
@click.option("--check", is_flag=True, help="Only check the config and print the timings, then exit.")
def daemon(config_path: Path, check: bool) -> None:
    """Run the node daemon: Raft member, CRM, LRM, local API and watchdog client."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"harepl daemon: {exc}", err=True)
        raise SystemExit(2) from None
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
