"""Deterministic correlated noise for the plant models.

numpy is not a dependency, so everything runs on `random.Random(seed)`: the same seed gives
the same sequence on every machine and Python version (Mersenne Twister + `gauss` are stable).
Analyser signals are not white noise: consecutive 5-s readings are strongly correlated, so an
AR(1) process `x[t] = phi * x[t-1] + e[t]` is used, scaled so its stationary standard deviation
is `sigma` whatever `phi` is.
"""

from __future__ import annotations

import math
import random


class AR1:
    """Zero-mean AR(1) process with stationary standard deviation `sigma`."""

    __slots__ = ("_innovation", "_rng", "phi", "sigma", "value")

    def __init__(self, rng: random.Random, *, phi: float, sigma: float) -> None:
        if not 0.0 <= phi < 1.0:
            raise ValueError(f"AR(1) phi must be in [0, 1), got {phi}")
        if sigma < 0:
            raise ValueError(f"AR(1) sigma must be >= 0, got {sigma}")
        self._rng = rng
        self.phi = phi
        self.sigma = sigma
        # Innovation sd so that Var(x) = sigma²: sigma² = s²/(1 - phi²).
        self._innovation = sigma * math.sqrt(1.0 - phi * phi)
        self.value = rng.gauss(0.0, sigma) if sigma > 0 else 0.0

    def step(self) -> float:
        """Advance one sample and return the new value."""
        self.value = self.phi * self.value + self._rng.gauss(0.0, self._innovation)
        return self.value


def bounded(x: float, low: float, high: float) -> float:
    """Clamp `x` into [low, high] (keeps normal operation inside the plausible envelope)."""
    return low if x < low else high if x > high else x
