"""The Cox partial likelihood loss: a hand-computed 4-row example with tied event times
(Breslow), invariances, the gradient, and errors naming the bad rows."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.errors import DatasetError
from medseg.losses import build_loss
from medseg.losses.cox import CoxLoss, cox_partial_likelihood_loss


def test_four_rows_with_a_tie_match_the_hand_value() -> None:
    # rows 0 and 1 have events at the same time 2; row 2 is censored at 3; row 3 dies at 5.
    eta = torch.tensor([0.5, -0.2, 1.0, 0.0])
    time = torch.tensor([2.0, 2.0, 3.0, 5.0])
    event = torch.tensor([1, 1, 0, 1])
    # Breslow: both tied events share the risk set {0, 1, 2, 3}; row 3's risk set is {3}
    everyone = math.log(math.exp(0.5) + math.exp(-0.2) + math.exp(1.0) + math.exp(0.0))
    likelihood = (0.5 - everyone) + (-0.2 - everyone) + (0.0 - 0.0)
    expected = -likelihood / 3
    assert float(cox_partial_likelihood_loss(eta, time, event)) == pytest.approx(expected, 1e-6)
    assert float(cox_partial_likelihood_loss(eta[:, None], time, event.bool())) == pytest.approx(
        expected, 1e-6
    )
    # the row order does not matter
    order = torch.tensor([3, 1, 0, 2])
    assert float(cox_partial_likelihood_loss(eta[order], time[order], event[order])) == (
        pytest.approx(expected, 1e-6)
    )


def test_registered_loss_shift_invariance_and_gradient() -> None:
    torch.manual_seed(0)
    eta = torch.randn(12, 1, dtype=torch.float64, requires_grad=True)
    time = torch.randint(0, 5, (12,)).double()
    event = (torch.rand(12) < 0.7).double()
    target = torch.stack([time, event], 1)
    loss = build_loss("cox")
    assert isinstance(loss, CoxLoss)
    value = loss(eta, target)
    shifted = loss(eta.detach() + 3.0, target)
    assert float(shifted) == pytest.approx(float(value.detach()), abs=1e-6)
    value.backward()
    # the gradient of a shift-invariant loss sums to zero
    assert float(eta.grad.sum()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        loss(eta, time)


def test_no_events_gives_zero_with_a_graph() -> None:
    eta = torch.randn(3, requires_grad=True)
    loss = cox_partial_likelihood_loss(eta, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(eta.grad, torch.zeros(3))


def test_bad_rows_are_named() -> None:
    eta = torch.zeros(4)
    with pytest.raises(DatasetError, match=r"rows \[2\] \(1 of them with an observed event\)"):
        cox_partial_likelihood_loss(eta, torch.tensor([1.0, 2.0, math.nan, 4.0]), torch.ones(4))
    with pytest.raises(DatasetError, match=r"rows \[0\] \(all censored\)"):
        cox_partial_likelihood_loss(
            eta, torch.tensor([math.inf, 2.0, 3.0, 4.0]), torch.tensor([0, 1, 1, 1])
        )
    with pytest.raises(DatasetError, match=r"0 or 1; rows \[1\]"):
        cox_partial_likelihood_loss(eta, torch.arange(4.0), torch.tensor([1, 2, 0, 1]))
    with pytest.raises(ValueError, match="one value per row"):
        cox_partial_likelihood_loss(eta, torch.arange(3.0), torch.ones(4))
