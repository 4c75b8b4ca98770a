"""Pure lease judgement on the judge's own monotonic clock."""

from __future__ import annotations

from harepl.store.leases import HolderLease, LeaseJudge


def test_judge_expires_only_after_timeout_without_change_on_its_own_clock() -> None:
    j = LeaseJudge(lease_timeout_s=10.0, started_at=100.0)
    assert not j.expired("agent:n1", 100.0)  # never observed: unknown, not expired
    j.observe("agent:n1", 3, 7, "n1", 100.0)
    assert not j.expired("agent:n1", 109.9)
    j.observe("agent:n1", 3, 8, "n1", 105.0)  # renewed: clock restarts at observation
    assert not j.expired("agent:n1", 114.9)
    j.observe("agent:n1", 3, 8, "n1", 114.0)  # unchanged: no restart
    assert j.expired("agent:n1", 115.0)
    assert j.seen("agent:n1") == (3, 8)


def test_new_judge_waits_a_full_timeout_even_for_an_old_value() -> None:
    # a CRM taking over at t=500 must not trust anything from before its own start
    j = LeaseJudge(lease_timeout_s=10.0, started_at=500.0)
    j.observe("agent:n2", 1, 1, "n2", 400.0)
    assert not j.expired("agent:n2", 509.0)
    assert j.expired("agent:n2", 510.0)


def test_released_lease_is_free_at_once() -> None:
    j = LeaseJudge(lease_timeout_s=10.0, started_at=0.0)
    j.observe("manager", 4, 9, None, 1.0)
    assert j.expired("manager", 1.0)
    assert j.holder("manager") is None


def test_holder_lease_valid_from_send_time_not_ack_time() -> None:
    h = HolderLease(lease_local_s=5.0)
    assert not h.valid(0.0)
    h.acknowledged(t_sent=10.0, epoch=2)  # acked later, at say 12.0
    assert h.valid(14.9) and not h.valid(15.0)
    h.acknowledged(t_sent=9.0, epoch=2)  # an older renewal acked late never shortens/extends wrongly
    assert h.valid(14.9) and not h.valid(15.0)
    h.acknowledged(t_sent=20.0, epoch=3)  # new epoch: validity restarts from that renewal only
    assert h.epoch == 3 and h.valid(24.9) and not h.valid(25.0)
    h.lost()
    assert not h.valid(21.0)
