"""harepl: a high-availability manager for cluster services on a Raft log."""

__version__ = "0.1.0"
