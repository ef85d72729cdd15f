"""The training loop's "every N kimg" events: sample grids, snapshots, the factor monitor and
the stats log's ticks.

Marks sit at multiples of N counted from image 0, not from where the process started, so a run
resumed between two marks keeps the kimg of its files and log lines. A step that passes more
than one mark (a batch larger than N images) fires once: the work it triggers describes the
present state, and doing it twice in a row would only repeat it.
"""

from __future__ import annotations


class Schedule:
    """Fires at multiples of `kimg` thousand images; kimg <= 0 never fires."""

    def __init__(self, kimg: float, nimg: int) -> None:
        self.period = int(round(kimg * 1000))
        self.active = self.period > 0
        self.next = self._mark_after(nimg)

    def _mark_after(self, nimg: int) -> int:
        return (nimg // self.period + 1) * self.period if self.active else 0

    def due(self, nimg: int) -> bool:
        """Whether the count has reached the next mark; if so, the next mark is the first past it."""
        if not self.active or nimg < self.next:
            return False
        self.next = self._mark_after(nimg)
        return True
