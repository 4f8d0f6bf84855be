"""Peak resident memory of a block of code, for the benchmarks (Linux ``/proc``)."""

from __future__ import annotations

import os
import threading
import time


class PeakRSS:
    """Peak resident set size above the level at ``start()``, sampled by a thread (Linux)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.base = self.peak = 0

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def start(self) -> PeakRSS:
        self.base = self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Peak minus start level, MB."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        return (self.peak - self.base) / 2**20
