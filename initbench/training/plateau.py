"""Whether a training curve ended on a plateau, checked rather than assumed.

A budget is *at a plateau* when the curve's drift over the last third of the budget is no
larger than the curve's own step-to-step noise: a least-squares line is fitted to the
last third of the per-step values, its change over that window (slope x steps) is
compared with the standard deviation of the values around the line. A curve still
falling (or rising) by more than its noise over the last third has not converged, and
a longer budget would likely change the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: The share of the budget, at its end, that the check looks at.
WINDOW = 1 / 3
#: Fewer points than this in the window give no verdict.
MIN_POINTS = 5


@dataclass(frozen=True)
class Plateau:
    """The plateau check of one curve."""

    reached: bool | None  # None: too few points to tell
    change: float  # the fitted line's change over the window, in the curve's units
    noise: float  # the standard deviation of the values around that line
    points: int  # values in the window

    def describe(self, curve: str) -> str:
        """One phrase for logs and reports, e.g. ``train loss at a plateau (change -0.002,
        noise 0.01 over the last third)``."""
        if self.reached is None:
            return f"{curve}: too few steps to check for a plateau"
        state = "at a plateau" if self.reached else "NOT at a plateau"
        return (f"{curve} {state} (change {self.change:+.3g}, noise {self.noise:.3g} over "
                "the last third)")  # fmt: skip

    def record(self) -> dict[str, float | int | bool | None]:
        """The check as a result row holds it (floats rounded to 6 digits)."""
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def plateau_check(values: Sequence[float], window: float = WINDOW) -> Plateau:
    """Check the last ``window`` share of a per-step curve (a loss, say) for a plateau.

    Args:
        values: the monitored value after each optimizer step, ``(steps,)``.

    Returns:
        :class:`Plateau`; ``reached`` is ``None`` when the window holds fewer than
        :data:`MIN_POINTS` values.
    """
    y = np.asarray(values, dtype=np.float64)
    y = y[len(y) - max(1, round(len(y) * window)) :] if len(y) else y
    if len(y) < MIN_POINTS:
        return Plateau(None, 0.0, 0.0, len(y))
    x = np.arange(len(y), dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    noise = float(np.std(y - (slope * x + intercept), ddof=2))
    change = float(slope * (len(y) - 1))
    rounding = 1e-9 * float(np.abs(y).max())  # a flat curve's fit is exact to rounding only
    return Plateau(bool(abs(change) <= noise + rounding), change, noise, len(y))


def check_spacing(floor: int) -> int:
    """Steps between two plateau checks of a growing budget: half its floor, at least 1."""
    return max(1, floor // 2)


def plateau_checks(losses: Sequence[float], floor: int, every: int) -> list[dict[str, Any]]:
    """The plateau check of ``losses`` (per-step values, ``(steps,)``) cut at ``floor`` and
    every ``every`` steps after it, as ``{"step", "reached", "change", "noise", "points"}``
    rows."""
    return [{"step": s} | plateau_check(losses[:s]).record()
            for s in range(floor, len(losses) + 1, every)]  # fmt: skip


def plateau_stop(floor: int, every: int) -> Callable[[list[float]], bool]:
    """A budget that grows until its curve is flat: a ``stop`` for
    :func:`initbench.training.loop.optimize` that is true at the first check step
    (``floor + k * every``, ``k >= 1``) whose check and the one before both pass. One
    passing check alone can be a fluke of the noise (a 1% fine-tune of the embedded data
    passed at step 750 and failed from 1,000 to 1,750), so two in a row are asked for.

    With a constant learning rate, and draws (data order, augmentation, dropout) that do
    not depend on the budget, the run it stops at step ``s`` is exactly the first ``s``
    steps of a longer run: growing a budget costs one run, not one a candidate budget.
    """

    def stop(losses: list[float]) -> bool:
        steps = len(losses)
        if steps < floor + every or (steps - floor) % every:
            return False
        return bool(plateau_check(losses).reached and plateau_check(losses[:-every]).reached)

    return stop


def grown_budget(
    floor: int, max_steps: int | None
) -> tuple[int, Callable[[list[float]], bool] | None]:
    """``(steps, stop)`` for :func:`initbench.training.loop.optimize`: ``(floor, None)``
    without ``max_steps`` or when it is not above the floor, else ``max_steps`` and the
    :func:`plateau_stop` that ends the run once its curve is flat."""
    if max_steps is None or max_steps <= floor:
        return floor, None
    return max_steps, plateau_stop(floor, check_spacing(floor))
