"""This process's resident-memory high-water mark, one reader for every peak-RSS figure (generation rows, one-shot
pruning records, the LLM benchmarks)."""

from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident set size of this process, MiB. Linux: VmHWM of /proc/self/status, which starts afresh at exec;
    ``ru_maxrss`` would carry the parent's peak over a fork + exec, so a child process would report at least the
    parent's size. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on other systems)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
