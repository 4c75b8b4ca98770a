"""The two failures of the replicated state that every layer above the store handles.

They live here, at the bottom, so that the store raises them without importing the
roles; `harepl.roles.env` re-exports them under the same names (the roles, the runtime
and the simulator catch them from there).
"""

from __future__ import annotations


class StaleLeaseError(Exception):
    """A command acting for a lease holder carried a stale epoch and was rejected."""


class StoreUnavailableError(Exception):
    """The replicated state could not be read or written (no quorum, timeout, ...)."""
