"""The cores mlgate may use, and how many of them other processes are using now."""

from __future__ import annotations

import os
import time

import psutil


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_cores(window_s: float = 0.1) -> int:
    """The usable cores that other processes left free over the last ``window_s`` (at least one): their CPU
    time on these cores, this process's own threads excluded. A refit with more OpenMP threads than free
    cores waits at every barrier for a thread the scheduler has parked: with one busy process on 2 cores, a
    2-thread HistGradientBoosting fit took 3x a 1-thread one, and a 30 s budget's refit 12 s."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(psutil.cpu_count()))
    me = psutil.Process()

    def busy() -> tuple[float, float, float]:
        per_cpu = psutil.cpu_times(percpu=True)
        used = sum(per_cpu[c].user + per_cpu[c].nice + per_cpu[c].system for c in cpus if c < len(per_cpu))
        own = me.cpu_times()
        return time.perf_counter(), used, own.user + own.system

    start, used_before, own_before = busy()
    time.sleep(window_s)
    end, used_after, own_after = busy()
    return left_free(len(cpus), used_after - used_before, own_after - own_before, end - start)


def left_free(cores: int, used_s: float, own_s: float, elapsed_s: float) -> int:
    """Of ``cores``, the ones left free over ``elapsed_s`` in which they ran ``used_s`` CPU seconds, ``own_s``
    of them this process's (at least one)."""
    others = max(0.0, used_s - own_s) / elapsed_s
    return max(1, round(cores - others))
