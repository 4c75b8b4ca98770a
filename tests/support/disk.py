"""Filling a (small, test-made) file system to its last byte: the disk-full tests."""

from __future__ import annotations

import os


def fill(directory: str | os.PathLike[str]) -> str:
    """Fill the file system of `directory` up to the last byte; returns the filler's path."""
    filler = os.path.join(directory, "filler")
    with open(filler, "ab", buffering=0) as f:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler
