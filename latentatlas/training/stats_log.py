"""A training run's history: one JSON line per tick in run_dir/stats.jsonl, as NVIDIA's stats.jsonl.

The progress bar shows only the last step's losses, which swing by a factor of ten from one step
to the next; whether the discriminator is pulling away from the generator (a cause of samples
that cover too little of the data) shows only in means over many steps. Each line holds the
kimg at the tick's end, seconds per kimg, and the mean of every value the step reported over
the tick (PL and R1 over the steps that computed them). With the D_real / D_fake scores (the
critic's mean logit on reals and fakes) this is what NVIDIA logs as Loss/scores/*.

The log follows the checkpoints: a resumed run first drops the lines past the kimg it resumed
from (they describe steps that are being trained again), and the portable checkpoint carries
the log in its metadata, so a run that travels between machines keeps its history.

Seconds per kimg count training steps only: sample grids, snapshots and the factor monitor are
timed apart and logged as the tick's `maintenance_sec`, as NVIDIA's Timing/maintenance_sec, so
that a run measured every 10 kimg reports the same speed as one that is not.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latentatlas.io.atomic import atomic_path
from latentatlas.training.schedule import Schedule

LOG_FILE = "stats.jsonl"
METRICS_FILE = "metrics.jsonl"  # the factor monitor's lines (training/factor_monitor.py), kept the same way
TICK_KIMG = 4.0  # NVIDIA's kimg_per_tick


def parse(text: str) -> list[dict[str, float]]:
    """The complete lines of a log's text; a line cut short by a killed process is skipped."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_lines(path: Path) -> list[dict[str, float]]:
    return parse(path.read_text()) if path.exists() else []


def write_lines(path: Path, lines: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))


def restore(run_dir: Path, nimg: int, carried: str | None, name: str = LOG_FILE) -> None:
    """Make run_dir's log `name` (any JSON-lines log with a kimg in each line: this one, the
    factor monitor's) match a checkpoint at `nimg`: keep its lines up to there, or take the
    text a portable checkpoint carried when this folder has no log."""
    path = run_dir / name
    if path.exists():
        lines = read_lines(path)
    elif carried:
        lines = parse(carried)
    else:
        return
    write_lines(path, [line for line in lines if line["kimg"] * 1000 <= nimg + 0.5])


def carried_text(run_dir: Path, name: str = LOG_FILE) -> str:
    """The log as text to carry in a portable checkpoint's metadata ('' when there is none)."""
    path = run_dir / name
    return path.read_text() if path.exists() else ""


class TickLog:
    """Means of the step statistics, written as one line every TICK_KIMG (and at flush)."""

    def __init__(self, run_dir: Path, nimg: int, enabled: bool = True) -> None:
        self.path = run_dir / LOG_FILE
        self.enabled = enabled
        self.tick_start_nimg = nimg
        self.ticks = Schedule(TICK_KIMG, nimg)
        self.tick_start_time = time.time()
        self.maintenance_sec = 0.0
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, stats: dict[str, float], nimg: int) -> None:
        for k, v in stats.items():
            self.sums[k] += v
            self.counts[k] += 1
        if self.ticks.due(nimg):
            self.flush(nimg)

    @contextmanager
    def maintenance(self) -> Iterator[None]:
        """Time what runs inside apart from the training steps (samples, snapshots, the monitor)."""
        start = time.time()
        try:
            yield
        finally:
            self.maintenance_sec += time.time() - start

    def flush(self, nimg: int) -> None:
        """Write the tick so far (nothing when no step ran since the last line)."""
        if nimg <= self.tick_start_nimg:
            return
        now = time.time()
        training = max(now - self.tick_start_time - self.maintenance_sec, 0.0)
        line = {"kimg": nimg / 1000, "sec_per_kimg": round(training / ((nimg - self.tick_start_nimg) / 1000), 4),
                "maintenance_sec": round(self.maintenance_sec, 3)}
        line.update({k: self.sums[k] / self.counts[k] for k in sorted(self.sums)})
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(line) + "\n")
        self.tick_start_nimg, self.tick_start_time, self.maintenance_sec = nimg, now, 0.0
        self.sums.clear()
        self.counts.clear()
