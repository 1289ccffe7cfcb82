"""Request ids: unique, unguessable in their random part, remembered for exactly the last `capacity`."""

from __future__ import annotations

import re

import pytest

from mlops.monitoring.request_ids import POOL_IDS, RecentRequests


def _new(recent: RecentRequests, project: str, rows: int) -> str:
    """What the gateway and the writer do together: make an id, later remember it."""
    request_id = recent.make_id()
    recent.remember(request_id, project, rows)
    return request_id


def test_ids_are_32_hex_digits_unique_and_remember_project_and_rows():
    recent = RecentRequests(8)
    ids = [_new(recent, "a" if i % 2 else "b", i + 1) for i in range(8)]
    # Exactly 32 lowercase hex digits (int(i, 16) would also take "0x", "_", spaces and upper case).
    assert len(set(ids)) == 8 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids), ids
    assert [recent.get(i) for i in ids] == [("a" if i % 2 else "b", i + 1) for i in range(8)]
    assert [int(i[24:], 16) for i in ids] == list(range(8))  # the sequence part
    assert len({i[:24] for i in ids}) == 8  # the random part


def test_only_the_last_capacity_ids_are_known_and_capacity_is_a_power_of_two():
    recent = RecentRequests(3)
    assert recent.capacity == 4
    ids = [_new(recent, "p", 1) for _ in range(6)]
    assert [recent.get(i) is not None for i in ids] == [False, False, True, True, True, True]
    assert len(recent) == 4 and len(RecentRequests(5)) == 0


@pytest.mark.parametrize(
    "change",
    [lambda i: ("0" if i[0] != "0" else "1") + i[1:], lambda i: i[:-1] + ("0" if i[-1] != "0" else "1"), lambda i: "A" + i[1:], lambda i: i[:-1], lambda i: "z" * 32],
    ids=["random part", "sequence part", "upper case", "too short", "not hex"],
)
def test_an_id_this_gateway_did_not_make_is_unknown(change):
    recent = RecentRequests(4)
    request_id = _new(recent, "p", 2)
    assert recent.get(change(request_id)) is None and recent.get(request_id) == ("p", 2)


def test_the_random_pool_is_refilled_and_never_repeats():
    recent = RecentRequests(2)
    ids = [_new(recent, "p", 1) for _ in range(POOL_IDS + 10)]
    assert len({i[:24] for i in ids}) == len(ids)


def test_a_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        RecentRequests(0)


def test_ids_made_on_many_threads_are_unique():
    from concurrent.futures import ThreadPoolExecutor

    recent = RecentRequests(4)
    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(lambda _: [recent.make_id() for _ in range(2000)], range(8)) for i in chunk]
    assert len(set(ids)) == len(ids) == 16_000


def test_an_id_not_made_here_is_not_remembered():
    recent = RecentRequests(4)
    recent.remember("a caller's own id", "p", 1)
    assert len(recent) == 0 and recent.get("a caller's own id") is None
