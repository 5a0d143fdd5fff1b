"""The learning-rate schedule of a run ends where the run ends: at its last step, or sooner at
its time budget."""

from __future__ import annotations

import pytest

from medseg.training.schedule import lr_factor, run_lr_factor


def test_without_a_budget_the_schedule_follows_the_steps() -> None:
    for step in (0, 7, 50, 99):
        assert run_lr_factor(step, 100, "poly", None) == lr_factor(step, 100, "poly")


def test_a_budget_further_along_than_the_steps_drives_the_decay() -> None:
    # 10 of 1000 steps done but 75 % of the time budget used: poly at t = 0.75
    assert run_lr_factor(10, 1000, "poly", 0.75) == pytest.approx((1 - 0.75) ** 0.9)
    assert run_lr_factor(10, 1000, "poly", 1.0) == 0.0


def test_a_budget_behind_the_steps_changes_nothing() -> None:
    assert run_lr_factor(900, 1000, "cosine", 0.2) == lr_factor(900, 1000, "cosine")
