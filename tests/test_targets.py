"""The search's steering score: each stage of a takeover raises it, and nothing else does."""

from __future__ import annotations

from scenarios.targets import takeover_progress
from tests.histories import Scenario


def _takeover(stage: int, wait_before_second_join: bool = False) -> float:
    s = Scenario()
    s.create("T1", "obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    if stage >= 2:
        s.send("T1")
        s.sent("T1", 1)
    s.crash("p0")
    if stage >= 3:
        with s.on("p1"):
            s.attach("c1", "T1", via="obj2")
            if stage >= 4:
                s.enter("T1", "obj2")
    if wait_before_second_join:
        s.call("wait", None, at="harness", seconds=1.0)
    if stage >= 5:
        with s.on("p2"):
            s.attach("c2", "T1", via="obj3")
            s.enter("T1", "obj3")
    if stage >= 6:
        s.call("wait", None, at="harness", seconds=1.0)
    return takeover_progress(s.end("bound"))


def test_each_stage_of_a_takeover_scores_one_more():
    assert [_takeover(stage) for stage in range(1, 7)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_time_passing_before_the_second_join_is_no_sixth_stage():
    assert _takeover(5, wait_before_second_join=True) == 5.0


def test_no_death_no_score():
    s = Scenario()
    s.create("T1", "obj1")
    s.attach("c1", "T1", via="obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.broadcast("T1", to=["c1"])
    assert takeover_progress(s.end("bound")) == 0.0


def test_a_process_that_already_followed_the_task_is_no_fresh_join():
    """p1 had a client before the crash: a join there afterwards relays what p1 knows."""
    s = Scenario()
    s.create("T1", "obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    with s.on("p1"):
        s.attach("c1", "T1", via="obj2")
    s.send("T1")
    s.sent("T1", 1)
    s.crash("p0")
    with s.on("p1"):
        s.attach("c2", "T1", via="obj2")
        s.enter("T1", "obj2")
    assert takeover_progress(s.end("bound")) == 2.0


# -- families name their targets ---------------------------------------------------------------------


def test_a_family_steering_by_an_unknown_target_is_refused_with_the_labels_to_use():
    import dataclasses

    import pytest

    from scenarios.families import FAMILIES
    from scenarios.machine import machine_class

    family = dataclasses.replace(FAMILIES["joins"], name="joins_typo", targets=("takeover",))
    with pytest.raises(ValueError, match=r"unknown targets.*takeover progress"):
        machine_class(family)
