"""The Cox proportional hazards loss: negative partial log-likelihood of log-risks.

For log-risks ``eta``, times ``t`` and event flags ``d`` (1: the event was observed at ``t``,
0: censored at ``t``), the Breslow partial log-likelihood is

    ``l = sum_{i: d_i = 1} [eta_i - log sum_{j: t_j >= t_i} exp(eta_j)]``

(tied event times share one risk set: every row still at risk at that time, the tied rows
included). The loss is ``-l / (number of events)`` (a mean, so its size does not depend on
the batch). A batch without events carries no information: the loss is 0 (with a graph).
Only the order of ``t`` matters, and adding a constant to every ``eta`` changes nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.errors import DatasetError


def _survival_columns(log_risk: Tensor, time: Tensor, event: Tensor) -> tuple[Tensor, ...]:
    """Flatten to ``(N,)`` each and check the rows (NaN times, event flags not 0/1)."""
    eta = log_risk.reshape(-1)
    time = torch.as_tensor(time, device=eta.device).reshape(-1).double()
    event = torch.as_tensor(event, device=eta.device).reshape(-1)
    if not (eta.numel() == time.numel() == event.numel()):
        raise ValueError(
            f"log_risk, time and event need one value per row, got {eta.numel()}, "
            f"{time.numel()} and {event.numel()} values"
        )
    bad = torch.isnan(event.double()) | ((event != 0) & (event != 1))
    if bad.any():
        rows = torch.nonzero(bad).flatten().tolist()
        raise DatasetError(f"survival event flags must be 0 or 1; rows {rows[:10]} are not")
    missing = ~torch.isfinite(time)
    if missing.any():
        rows = torch.nonzero(missing).flatten().tolist()
        events = [r for r in rows if event[r] == 1]
        what = f"{len(events)} of them with an observed event" if events else "all censored"
        raise DatasetError(
            f"survival time is missing (NaN or infinite) in rows {rows[:10]}"
            f"{' ...' if len(rows) > 10 else ''} ({what}); every row needs a time "
            "(of the event, or of the last follow-up when censored)"
        )
    return eta, time, event.bool()


def cox_partial_likelihood_loss(log_risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), mean over the observed events.

    Args:
        log_risk: ``(N,)`` or ``(N, 1)`` network outputs ``eta``.
        time: ``(N,)`` event or censoring times.
        event: ``(N,)`` 1 (event observed) or 0 (censored); bool or numbers.

    Returns:
        The scalar loss (0 when no row has an event).

    Raises:
        DatasetError: a NaN or infinite time, or an event flag other than 0/1, naming the rows.
        ValueError: inputs of different lengths.

    Example:
        >>> eta = torch.tensor([0.0, 0.0])
        >>> loss = cox_partial_likelihood_loss(eta, torch.tensor([1.0, 2.0]), torch.tensor([1, 1]))
        >>> round(float(loss), 4)  # (log 2 + log 1) / 2
        0.3466
    """
    eta, time, event = _survival_columns(log_risk, time, event)
    if not event.any():
        return eta.sum() * 0.0
    order = torch.argsort(time, descending=True)
    # running log-sum-exp over the rows sorted by decreasing time: entry k covers the k + 1
    # longest times; a row's risk set is every row with t_j >= t_i, the tied ones included
    running = torch.logcumsumexp(eta[order].float(), dim=0)
    ascending = torch.sort(time).values
    at_risk = time.numel() - torch.searchsorted(ascending, time[event], right=False)
    log_risk_set = running[at_risk - 1]
    return -(eta[event].float() - log_risk_set).mean()


class CoxLoss(nn.Module):
    """:func:`cox_partial_likelihood_loss` as a registered loss, ``loss(log_risk, target)``
    with ``target`` ``(N, 2)``: columns time and event.

    Example:
        >>> target = torch.tensor([[1.0, 1.0], [2.0, 1.0]])
        >>> round(float(CoxLoss()(torch.zeros(2, 1), target)), 4)
        0.3466
    """

    def forward(self, log_risk: Tensor, target: Tensor) -> Tensor:
        if target.dim() != 2 or target.shape[1] != 2:
            raise ValueError(f"cox target must be (N, 2): time, event; got {tuple(target.shape)}")
        return cox_partial_likelihood_loss(log_risk, target[:, 0], target[:, 1])
