"""Harrell's concordance index (C-index) of risk scores against survival times.

Of all *comparable* pairs of patients, the share the risk scores order correctly: a pair is
comparable when the one with the shorter time had the event (``t_i < t_j``, ``d_i = 1``), or
when both times are equal and only ``i`` had the event (a patient censored at ``t`` outlived
an event at ``t``). The pair is concordant when ``risk_i > risk_j`` (higher risk, earlier
event); a tie in risk counts 1/2. Pairs of two events at the same time are not comparable.
This is ``lifelines.utils.concordance_index(time, -risk, event)`` (lifelines scores predicted
*times*, hence the sign). 0.5: random order; 1: perfect.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from medseg.errors import DatasetError


def concordance_index(time: ArrayLike, risk: ArrayLike, event: ArrayLike | None = None) -> float:
    """Harrell's C of ``risk`` (higher: earlier event) against ``time`` and ``event``.

    Args:
        time: ``(N,)`` event or censoring times.
        risk: ``(N,)`` predicted risks (e.g. a Cox network's log-risks).
        event: ``(N,)`` 1 observed / 0 censored; None: every event observed.

    Returns:
        The C-index in [0, 1].

    Raises:
        DatasetError: lengths differ, a time or risk is NaN (naming the rows), or no pair is
            comparable (e.g. every row censored).

    Example:
        >>> concordance_index([1, 2, 3, 4], [4, 3, 1, 2], [1, 1, 1, 0])  # 5 of 6 pairs
        0.8333333333333334
    """
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    r = np.asarray(risk, dtype=np.float64).reshape(-1)
    d = np.ones_like(t, dtype=bool) if event is None else np.asarray(event).reshape(-1) != 0
    if not (t.size == r.size == d.size):
        raise DatasetError(
            f"time, risk and event need one value per row, got {t.size}, {r.size}, {d.size}"
        )
    for name, values in (("time", t), ("risk", r)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DatasetError(f"concordance index: {name} is NaN or infinite in rows {bad[:10]}")
    concordant, pairs = 0.0, 0
    for i in np.flatnonzero(d):  # O(N) memory: one row's comparisons at a time
        later = (t > t[i]) | ((t == t[i]) & ~d)
        pairs += int(later.sum())
        concordant += float((r[later] < r[i]).sum()) + 0.5 * float((r[later] == r[i]).sum())
    if pairs == 0:
        raise DatasetError("concordance index: no comparable pair (no event before another time)")
    return concordant / pairs
