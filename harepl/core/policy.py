"""Where harepl is deliberately safer than Proxmox, in one place.

Every field is a rule that differs from Proxmox's `Manager.pm`/`LRM.pm`. `SAFE` is what a
harepl node runs (the daemon, and every simulator profile of harepl's own); `PVE` keeps
Proxmox's behaviour so that the `pve` simulator profile replays its regression scenarios
decision for decision. docs/safety.md lists each divergence with the double run it closes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SafetyPolicy:
    # A frozen service still runs. The LRM takes its lease and arms its watchdog for it
    # (it counts as active), and the CRM unfreezes it only once the node's LRM reports
    # state 'active' (lease held, watchdog armed), not merely mode 'active'. Proxmox
    # unfreezes on mode 'active' while the LRM still waits for its lock: a node that
    # stalls in between runs the service with nothing armed to kill it.
    guard_frozen: bool = True
    # When the node lease lapses with the watchdog armed, stop every local service at once
    # and disarm cleanly if all are confirmed stopped in time (Proxmox lets it fire).
    stop_on_lease_loss: bool = True
    # A failed stop leaves the service in 'error' ("stop not confirmed") until the LRM
    # confirms it no longer runs; Proxmox goes 'error' -> 'stopped' as soon as the
    # service is disabled, and a stopped service may be moved and started elsewhere.
    confirm_stop: bool = True
    # A migration whose result was lost (the source node failed meanwhile) is resolved by
    # where the service's configuration says it is; Proxmox ends such a service in 'error'.
    resolve_lost_migration: bool = True
    # The LRM refuses to start a service while its node lease is not locally valid.
    start_needs_lease: bool = True


SAFE = SafetyPolicy()
PVE = SafetyPolicy(guard_frozen=False, stop_on_lease_loss=False, confirm_stop=False,
                   resolve_lost_migration=False, start_needs_lease=False)
