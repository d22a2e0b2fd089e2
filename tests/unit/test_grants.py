"""Which grants of the kubelet's device checkpoint hold, and when to ask for a rewrite."""

from __future__ import annotations

from sriovdp.model.grants import (
    STANDIN_BACKOFF,
    RewriteSchedule,
    grants_listed,
    holding,
    standin_reason,
    standin_resource,
)

NET = "intel.com/net"
RECORDED = {NET: {"0000:3b:02.0": "app-pod", "0000:3b:02.1": "init-pod"}}


def test_a_grant_holds_when_no_answer_of_this_kubelet_listed_it() -> None:
    assert holding(RECORDED, {}, set(), settling=False) == {
        NET: frozenset({"0000:3b:02.0", "0000:3b:02.1"})}


def test_a_grant_stops_holding_when_an_answer_listed_it_and_the_last_one_lacks_it() -> None:
    listed = grants_listed(RECORDED, {NET: frozenset({"0000:3b:02.0"})})
    assert listed == {(NET, "0000:3b:02.0", "app-pod")}
    assert holding(RECORDED, {}, listed, settling=False) == {NET: frozenset({"0000:3b:02.1"})}
    assert holding(RECORDED, {NET: frozenset({"0000:3b:02.0"})}, listed, settling=False) == {
        NET: frozenset({"0000:3b:02.0", "0000:3b:02.1"})}


def test_every_grant_holds_while_the_kubelet_settles() -> None:
    listed = grants_listed(RECORDED, {NET: frozenset({"0000:3b:02.0"})})
    assert holding(RECORDED, {}, listed, settling=True) == {
        NET: frozenset({"0000:3b:02.0", "0000:3b:02.1"})}


def test_a_grant_to_another_pod_holds_when_the_same_vf_was_listed_for_an_ended_one() -> None:
    listed = grants_listed(RECORDED, {NET: frozenset({"0000:3b:02.0"})})
    regranted = {NET: {"0000:3b:02.0": "new-init-pod"}}
    assert holding(regranted, {}, listed, settling=False) == {NET: frozenset({"0000:3b:02.0"})}


def test_a_rewrite_is_asked_at_once_per_new_set_then_with_a_doubling_wait() -> None:
    schedule = RewriteSchedule(2.0, 8.0)
    pending = frozenset({(NET, "0000:3b:02.1")})
    assert not schedule.due(frozenset(), 0.0)
    assert schedule.due(pending, 0.0)
    schedule.asked(pending, 0.0)
    assert not schedule.due(pending, 1.9) and schedule.due(pending, 2.0)
    schedule.asked(pending, 2.0)
    assert not schedule.due(pending, 5.9) and schedule.due(pending, 6.0)
    schedule.asked(pending, 6.0)
    schedule.asked(pending, 14.0)
    assert not schedule.due(pending, 21.9) and schedule.due(pending, 22.0)  # at most 8 s
    assert schedule.due(pending | {(NET, "0000:3b:02.2")}, 14.5)  # a new set: at once


# --- a stand-in endpoint: for which resource ------------------------------------------------

DPDK = "intel.com/dpdk"
VF = "0000:3b:02.0"
OURS = frozenset({VF, "0000:3b:02.1"})


def test_a_stand_in_takes_the_resource_of_the_awaiting_grant_when_it_is_a_dra_pool() -> None:
    assert standin_resource({(NET, VF)}, OURS, [DPDK, NET], served=()) == NET


def test_a_stand_in_takes_the_first_dra_pool_when_the_grant_is_of_a_resource_no_pool_has(
) -> None:
    assert standin_resource({("intel.com/old", VF)}, OURS, [NET, DPDK], served=()) == DPDK


def test_no_stand_in_is_opened_when_no_awaiting_grant_is_of_this_hosts_devices() -> None:
    assert standin_resource({("nvidia.com/gpu", "GPU-1"), (NET, "0000:af:00.0")}, OURS,
                            [NET], served=()) is None


def test_no_stand_in_is_opened_for_a_resource_a_device_plugin_pool_serves() -> None:
    assert standin_resource({(NET, VF)}, OURS, [NET, DPDK], served={NET}) == DPDK
    assert standin_resource({(NET, VF)}, OURS, [NET], served={NET}) is None


def test_no_stand_in_is_opened_when_no_pool_is_served_through_dra() -> None:
    assert standin_resource({(NET, VF)}, OURS, [], served={NET, DPDK}) is None


def test_stand_ins_for_the_same_grants_are_spaced_out_to_five_minutes() -> None:
    schedule, pending = RewriteSchedule(*STANDIN_BACKOFF), frozenset({(NET, VF)})
    at = 0.0
    for wait in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0):
        assert schedule.due(pending, at)
        schedule.asked(pending, at)
        assert not schedule.due(pending, at + wait - 0.1)
        at += wait
    assert schedule.due(frozenset({(NET, "0000:3b:02.1")}), at - 299)  # new grants: at once


def test_the_stand_in_log_line_names_the_first_grants_and_counts_the_rest() -> None:
    grants = {(NET, f"0000:3b:02.{i}") for i in range(5)}
    assert standin_reason(grants) == (
        f"its file still grants {NET} 0000:3b:02.0, {NET} 0000:3b:02.1, {NET} 0000:3b:02.2 "
        "and 2 more, which pod resources does not list, and no device plugin endpoint "
        "streams to send a list again")
