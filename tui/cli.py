"""`harepl tui`: start the terminal UI against a node's local API."""

from __future__ import annotations

import os

import click

from harepl.runtime.api.client import DEFAULT_SOCKET, ApiClient, ApiClientError

API_TIMEOUT_S = 5.0     # a hung daemon shows up as an error line after this, the UI keeps going


class _BadInput(click.ClickException):
    exit_code = 2


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api", "api", default=None, metavar="ADDR",
              help="API address: a Unix socket path or http://HOST:PORT "
                   "(default: $HAREPL_API, else /run/harepl/api.sock). TCP needs $HAREPL_TOKEN.")
@click.option("--interval", "interval_s", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes.")
def tui(api: str | None, interval_s: float) -> None:
    """Terminal UI: cluster, nodes and services, with Proxmox's HA actions.

    \b
    Keys: m migrate, r relocate, e enable, d disable, t requested state,
    s stop, x remove, n node maintenance, / filter services, Enter details,
    h history, c groups and rules, g refresh, q quit.
    """
    target = api or os.environ.get("HAREPL_API") or DEFAULT_SOCKET
    try:
        client = ApiClient(target, os.environ.get("HAREPL_TOKEN") or None, timeout_s=API_TIMEOUT_S)
    except ApiClientError as exc:
        raise _BadInput(exc.message) from None
    from tui.app import HareplApp  # Textual only when the UI really starts

    HareplApp(client, interval_s=interval_s).run()
