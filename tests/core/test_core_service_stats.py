"""What a service weighs for the 'static' scheduler: its maxcpu / maxmem parameters."""

from __future__ import annotations

import pytest

from harepl.core.placement import DEFAULT_SERVICE_MEM, configured_service_stats, parse_service_size


def test_configured_figures_with_defaults() -> None:
    stats = configured_service_stats({
        "exec:big": {"params": {"command": "x", "maxcpu": "4", "maxmem": "8G"}},
        "exec:plain": {"params": {"command": "x"}},
        "vm:100": {},
        "exec:bad": {"params": {"maxcpu": "lots", "maxmem": "1024"}},
    })
    assert stats == {
        "exec:big": {"maxcpu": 4.0, "maxmem": 8.0 * 1024**3},
        "exec:plain": {"maxcpu": 1.0, "maxmem": float(DEFAULT_SERVICE_MEM)},
        "vm:100": {"maxcpu": 1.0, "maxmem": float(DEFAULT_SERVICE_MEM)},
        "exec:bad": {"maxcpu": 1.0, "maxmem": 1024.0},
    }


@pytest.mark.parametrize("key, raw, want", [("maxcpu", "0", 0.0), ("maxcpu", "2.5", 2.5), ("maxmem", "512M", 512 << 20),
                                            ("maxmem", "3g", 3 << 30), ("maxmem", "100", 100.0)])
def test_sizes(key: str, raw: str, want: float) -> None:
    assert parse_service_size(key, raw) == want


@pytest.mark.parametrize("key, raw", [("maxcpu", "-1"), ("maxcpu", "4G"), ("maxmem", "x"), ("maxmem", "inf")])
def test_bad_sizes(key: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"parameter '{key}'"):
        parse_service_size(key, raw)
