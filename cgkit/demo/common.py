"""Helpers shared by the demo stages: MD in fixed steps under a safety time limit, plotting."""
from __future__ import annotations

import time

from ..errors import CgkitError

__all__ = ["TimeLimitExceeded", "StageClock", "run_md_steps", "check_training", "plt", "savefig"]


class TimeLimitExceeded(CgkitError):
    """A demo stage reached its wall-clock safety limit (the machine is far slower than the
    2-core machine the demo is sized for). The stage fails: its numbers would otherwise depend
    on the machine's speed and load."""


class StageClock:
    """The wall-clock safety limit of one stage: ``limit_s`` seconds from construction.

    Used only to stop a run that would take far too long; every budget of the demo is a
    number of epochs, steps or iterations, so a run inside its limits does not depend on it.
    """

    def __init__(self, stage: str, limit_s: float, hint: str = ""):
        self.stage = stage
        self.limit_s = float(limit_s)
        self.hint = hint
        self.t0 = time.time()

    def remaining_s(self) -> float:
        return self.limit_s - (time.time() - self.t0)

    def remaining_minutes(self) -> float:
        """What is left, in minutes, never below one second (for a trainer's safety stop)."""
        return max(self.remaining_s(), 1.0) / 60.0

    def check(self, what: str) -> None:
        """Raise :class:`TimeLimitExceeded` when the limit has passed (``what`` names the work)."""
        if self.remaining_s() < 0:
            raise TimeLimitExceeded(
                f"stage '{self.stage}' reached its wall-clock safety limit of {self.limit_s:.0f} s "
                f"during {what}; the demo's budgets are fixed epochs and steps, so the run was "
                f"stopped instead of giving machine-dependent numbers. {self.hint}".rstrip())


def run_md_steps(md, n_steps: int, chunk: int, clock: StageClock, what: str) -> int:
    """Advance ``md`` (a :class:`cgkit.md.MolecularDynamics`) by exactly ``n_steps`` steps, in
    chunks of ``chunk`` steps (stored frames and logs follow the usual intervals), checking the
    stage's safety limit after every chunk. Returns ``n_steps``."""
    done = 0
    chunk = max(1, int(chunk))
    while done < n_steps:
        k = min(chunk, n_steps - done)
        md.run(k)
        done += k
        if done < n_steps:
            clock.check(f"{what} (step {done} of {n_steps})")
    return done


def check_training(summary: dict, clock: StageClock, what: str) -> None:
    """Fail the stage when a :class:`cgkit.train.Trainer` run (its ``results``) stopped on its
    wall-clock safety limit instead of after its fixed number of epochs."""
    if summary.get("stop_reason") == "max_time_minutes":
        raise TimeLimitExceeded(
            f"stage '{clock.stage}' reached its wall-clock safety limit of {clock.limit_s:.0f} s "
            f"while training {what} (after {summary.get('epochs')} epochs); the demo trains for a "
            f"fixed number of epochs, so the run was stopped instead of giving machine-dependent "
            f"numbers. {clock.hint}".rstrip())


from ..plotting import pyplot as plt, savefig  # noqa: E402,F401  (one home: cgkit.plotting)
