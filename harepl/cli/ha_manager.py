"""The operator CLI, `ha-manager` (Proxmox's verbs and output)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Manage HA services (Proxmox's ha-manager verbs)."""
