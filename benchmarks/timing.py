"""Timing several engines in one process, fairly (shared by the benchmarks).

One thread: the engines take turns call by call, the order rotating every round, so that a noisy
moment on this shared machine hits them alike.

Several threads: engines keep worker threads that spin after a run, and on two cores those steal
the next engine's cores. Measured here (ORT-quantized ResNet-50, 2 threads): Inferon 13.5 ms alone,
20.4 ms when its call follows an ONNX Runtime run by 50-200 ms, 13.9 ms after 500 ms; ONNX Runtime's
own run takes 18.5 ms with its default spinning, 16.0 ms with it off. So each engine runs in blocks:
after `gap_s` of idle, one untimed call (the workers wake up), then `block` timed calls back to back;
blocks rotate over the engines until each has `runs` samples. Every engine is timed in its steady
state with its default settings and without the others' threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

BLOCK = 5
GAP_S = 0.5


def timed_rotating(runners: Sequence[Callable[[], object]], runs: int) -> list[list[int]]:
    """`runs` timings of each runner, one call each per round, the order rotating (two runners: A B,
    B A, A B, ...); ns."""
    out: list[list[int]] = [[] for _ in runners]
    for i in range(runs):
        for j in range(len(runners)):
            k = (i + j) % len(runners)
            start = time.perf_counter_ns()
            runners[k]()
            out[k].append(time.perf_counter_ns() - start)
    return out


def timed_blocks(runners: Sequence[Callable[[], object]], runs: int, gap_s: float = GAP_S,
                 block: int = BLOCK) -> list[list[int]]:  # fmt: skip
    """`runs` timings of each runner in rotating blocks (see the module docstring); ns."""
    out: list[list[int]] = [[] for _ in runners]
    rounds = -(-runs // block)
    for i in range(rounds):
        for j in range(len(runners)):
            k = (i + j) % len(runners)
            time.sleep(gap_s)
            runners[k]()  # wakes the engine's workers: not timed
            for _ in range(min(block, runs - i * block)):
                start = time.perf_counter_ns()
                runners[k]()
                out[k].append(time.perf_counter_ns() - start)
    return out


def timed(runners: Sequence[Callable[[], object]], runs: int, threads: int, gap_s: float = GAP_S) -> list[list[int]]:
    """Rotating call by call at one thread, rotating blocks at several (see the module docstring)."""
    return timed_rotating(runners, runs) if threads <= 1 else timed_blocks(runners, runs, gap_s)
