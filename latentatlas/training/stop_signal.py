"""Ctrl-C or SIGTERM during a training run stops it the way --max-minutes does: the step in
flight finishes, then the state, the portable checkpoint, samples and the model file are saved.

Without this, a run killed by `timeout`, a scheduler, a closing session or a Ctrl-C lost every
step since its last snapshot, and at 50 kimg a snapshot on 2 CPU cores comes once an hour. A
second signal acts as the signal always does (KeyboardInterrupt, or termination), for a run
that must stop at once. SIGKILL cannot be caught: `common.STATE_EVERY_MINUTES` bounds that loss.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

CAUGHT = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked the run to stop (None: none has yet)."""

    def __init__(self) -> None:
        self.name: str | None = None


@contextmanager
def stop_on_signal(announce: bool = True) -> Iterator[StopRequest]:
    """While inside, the first SIGINT/SIGTERM only sets `request.name`; the handlers before are
    put back on leaving. Outside the main thread, where Python cannot set handlers, it does nothing."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in CAUGHT}

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.name is not None:  # the second: as if we had not caught it
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
            return
        request.name = signal.Signals(signum).name
        if announce:
            print(f"{request.name}: saving the training state after this step (send it again to stop at once)",
                  file=sys.stderr, flush=True)

    for s in CAUGHT:
        signal.signal(s, handle)
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
