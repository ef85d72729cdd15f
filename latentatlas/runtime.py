"""Process-wide settings for latentatlas's own processes: the CLI, the web app, the benchmarks.

PyTorch takes CPU tensor memory from malloc. glibc serves large blocks with mmap and hands them
back to the OS when they are freed, so every forward pass of a generator touches fresh pages
again: 111,000 page faults per 10 passes of the earlier faces64 at batch 4, 6,465 per projection step, 100,000
per batch of 16 for the 64 px benchmark config (measured with getrusage; at batch 1 faces64 no
longer frees blocks that large since its weight terms are cached). Keeping freed memory in
the process, as jemalloc or tcmalloc would (PyTorch's CPU performance guide suggests preloading
one), removes them and saves 4 to 8 % of CPU time there. The price is that the process keeps its
peak memory until it exits, which suits a command or a server.

OpenMP threads that wait at the end of a parallel region spin for a while by default (libgomp),
then sleep. Until 2026-11-27 the CLI and the benchmarks asked for passive waiting (sleep at once),
measured then as equal on an idle machine and far better beside a busy core. Measured again on
the 2-core EPYC these figures come from (2026-11-27, batch 1, medians, alternating processes),
passive waiting made every parallel region wait for a sleeping thread to wake: the 2-thread
default against passive took an image of the narrow 2048 x 128 faces64 (the bundled one since
2026-11-27) 8-11 against 18-19 ms, faces64-stylemap's encode + generate 14-18 against 33-37 ms,
a narrow projector step 33-41 against 57-76 ms, an image of the earlier, wider faces64 (8192 x
128, bundled then) 21-26 against 24-25 ms (its wider layers wait less); with passive waiting
2 threads were slower than 1 (16-20 ms for the encode + generate). Beside one busy core the
order turns: default 45-50 ms, passive 22-23, one thread 17-18. So the entry points leave
OpenMP's default alone, which suits the idle machine a user works on; on a shared one, set
OMP_WAIT_POLICY=PASSIVE or OMP_NUM_THREADS=1 yourself (models/ops.py takes NNPACK only under
passive waiting: its own thread pool and spinning OpenMP threads slow each other).

Importing the library changes nothing; only our entry points call these.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_cpu_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse; True when it applied (Linux with glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    except (OSError, AttributeError):  # another C library: leave its defaults
        return False


def pick_device(device: str) -> str:
    """'auto' -> 'cuda' when there is a CUDA device, else 'cpu'; 'cpu' and 'cuda' are checked.
    Every command's and benchmark's --device goes through here (torch is imported only now)."""
    import torch

    from latentatlas.io.errors import UserError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: use auto, cpu or cuda")
    return device


def rank_device(device: str) -> str:
    """This torchrun process's own GPU ('cuda:LOCAL_RANK', made current) when `device` is CUDA.

    Plain 'cuda' is GPU 0 in every process: under torchrun each rank must pick its own, or all of
    them share the first GPU. Alone, or on CPU, `device` as it is."""
    import os

    import torch

    if not device.startswith("cuda") or "LOCAL_RANK" not in os.environ:
        return device
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def set_tf32(on: bool) -> None:
    """TF32 for cuDNN convolutions and CUDA matrix products together (process-wide; no effect on CPU)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matrix products inside the block, the caller's settings after.

    PyTorch lets cuDNN convolutions use TF32 by default (10-bit mantissa, relative error about
    1e-3), which is harmless for images but not for measures built on tiny differences: PPL divides
    the distance between images 1e-4 apart by 1e-8. faces64-narrow's PPL in w came out 766 on an
    H200 with PyTorch's default TF32 convolutions (2,000 pairs) against 54 in fp32 on CPU (10,000
    pairs), the other figures of that evaluation agreeing (2026-11-27). NVIDIA's training loop turns
    TF32 off for accuracy too. No effect on CPU.
    """
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
