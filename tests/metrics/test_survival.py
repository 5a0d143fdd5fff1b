"""Harrell's C-index: lifelines on random data with tied times, tied risks and censoring; a
hand-computed example; the edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import DatasetError
from medseg.metrics.survival import concordance_index

lifelines_utils = pytest.importorskip("lifelines.utils")


@pytest.mark.parametrize("seed", range(5))
def test_equals_lifelines_with_ties_and_censoring(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    time = rng.integers(0, 12, n).astype(float)  # many tied times
    risk = rng.integers(0, 6, n).astype(float)  # many tied risks
    event = rng.random(n) < 0.6
    expected = lifelines_utils.concordance_index(time, -risk, event)
    assert concordance_index(time, risk, event) == pytest.approx(expected, abs=1e-12)
    continuous = rng.normal(size=n)
    assert concordance_index(time, continuous, event) == pytest.approx(
        lifelines_utils.concordance_index(time, -continuous, event), abs=1e-12
    )


def test_hand_computed_example() -> None:
    # comparable pairs: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); row 3 censored after everyone.
    # risks 4, 3, 1, 2: all concordant but (2,3): 5 / 6
    assert concordance_index([1, 2, 3, 4], [4, 3, 1, 2], [1, 1, 1, 0]) == pytest.approx(5 / 6)
    # a tie in risk counts one half; a censored row at a tied time outlives the event
    assert concordance_index([1, 1], [2, 2], [1, 0]) == 0.5
    assert concordance_index([1, 2, 3], [3, 2, 1]) == 1.0
    assert concordance_index([1, 2, 3], [1, 2, 3]) == 0.0


def test_errors() -> None:
    with pytest.raises(DatasetError, match="no comparable pair"):
        concordance_index([1, 2, 3], [1, 2, 3], [0, 0, 0])
    with pytest.raises(DatasetError, match=r"time is NaN or infinite in rows \[1\]"):
        concordance_index([1, np.nan, 3], [1, 2, 3], [1, 1, 1])
    with pytest.raises(DatasetError, match="one value per row"):
        concordance_index([1, 2], [1, 2, 3])
