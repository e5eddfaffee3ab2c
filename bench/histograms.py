"""The load generator's own latency histograms and counters: per second, mergeable across processes."""
import time
from collections import Counter, defaultdict


def bucket_ms(ms):
    """Histogram key in ms: 1 ms steps below 100, 5 below 1 s, 50 below 10 s, then 1 s."""
    if ms < 0:
        return 0
    if ms < 100:
        return int(ms)
    if ms < 1000:
        return int(ms // 5 * 5)
    if ms < 10000:
        return int(ms // 50 * 50)
    return int(ms // 1000 * 1000)


def quantiles(hist, qs=(0.5, 0.95, 0.99)):
    """{q: ms} from {bucket ms: count}; None when empty."""
    total = sum(hist.values())
    if not total:
        return {q: None for q in qs}
    keys = sorted(hist)
    out = {}
    for q in qs:
        rank, acc = q * total, 0
        for k in keys:
            acc += hist[k]
            if acc >= rank:
                out[q] = k
                break
    return out


class Stats:
    """Per-second counters and latency histograms of one client process."""

    def __init__(self, t0):
        self.t0 = t0
        self.count = Counter()                  # name -> n
        self.series = defaultdict(Counter)      # second -> name -> n
        self.hist = defaultdict(Counter)        # name -> bucket -> n
        self.hist_series = defaultdict(lambda: defaultdict(Counter))  # name -> sec -> b -> n

    def inc(self, name, n=1, now=None):
        self.count[name] += n
        sec = int((now or time.time()) - self.t0)
        self.series[sec][name] += n

    def observe(self, name, ms, now=None):
        b = bucket_ms(ms)
        self.hist[name][b] += 1
        sec = int((now or time.time()) - self.t0)
        self.hist_series[name][sec][b] += 1

    def to_json(self):
        return {"count": dict(self.count),
                "series": {str(s): dict(c) for s, c in self.series.items()},
                "hist": {n: {str(b): c for b, c in h.items()} for n, h in self.hist.items()},
                "hist_series": {n: {str(s): {str(b): c for b, c in h.items()}
                                    for s, h in per.items()}
                                for n, per in self.hist_series.items()}}


def merge_stats(parts):
    """Merge Stats.to_json() of every client process."""
    count, series = Counter(), defaultdict(Counter)
    hist, hist_series = defaultdict(Counter), defaultdict(lambda: defaultdict(Counter))
    for p in parts:
        count.update(p["count"])
        for s, c in p["series"].items():
            series[int(s)].update(c)
        for n, h in p["hist"].items():
            hist[n].update({int(b): v for b, v in h.items()})
        for n, per in p["hist_series"].items():
            for s, h in per.items():
                hist_series[n][int(s)].update({int(b): v for b, v in h.items()})
    return count, series, hist, hist_series
