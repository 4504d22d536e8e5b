"""Progress of a long run: one line per step on stderr, with the seconds since it began."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Say each step of a run on stderr (when ``enabled``) and time it.

    Examples
    --------
    >>> say = Progress(False)
    >>> say("reading data"); say("fitting")
    >>> sorted(say.done())
    ['fitting', 'reading data']
    """

    def __init__(self, enabled: bool, prefix: str = "disparity run") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}
        self._last: tuple[str, float] | None = None

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        if self._last is not None:
            name, began = self._last
            self.times[name] = round(now - began, 3)
        self._last = (step, now)
        if self.enabled:
            print(f"[{self.prefix} {now - self.start:7.1f}s] {step}", file=sys.stderr,
                  flush=True)

    def done(self) -> dict[str, float]:
        """Close the last step; the seconds each step took."""
        if self._last is not None:
            name, began = self._last
            self.times[name] = round(time.perf_counter() - began, 3)
            self._last = None
        return dict(self.times)
