"""Shared benchmark plumbing: machine description, median timing, atomic JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch


def machine() -> Dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_time(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5, sync: bool = False) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def round_robin(fns: Sequence[Callable[[], Any]], repeats: int, seed: int, warmup: int = 1,
                sync: bool = False) -> List[List[float]]:
    """Seconds of every timed call of each function, compared in one run: ``warmup`` untimed calls of
    each, then ``repeats`` rounds that call every function once in a seeded shuffled order, so every
    function sees the same machine load and none always runs right after the same neighbour."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: List[List[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for j in order:
            times[j].append(median_time(fns[j], warmup=0, repeats=1, sync=sync))
    return times


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run in seconds")
    p.add_argument("--json", type=Path, default=None, help="write the result rows to this JSON file")
    return p


def write_json(path: Optional[Path], rows: List[Dict[str, Any]], **extra: Any) -> None:
    """Writes ``{"machine": ..., "rows": rows, **extra}`` atomically (tmp file + rename)."""
    if path is None:
        return
    from torchrec_side.io import write_json as _write

    _write(path, {"machine": machine(), **extra, "rows": rows})
    print(f"wrote {path}")


def print_table(rows: List[Dict[str, Any]], columns: List[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def load_average() -> Optional[List[float]]:
    """The machine's 1, 5 and 15 minute load averages (``None`` where the OS has none): a shared
    machine's numbers are read next to its load."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None
