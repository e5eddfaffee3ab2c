"""CPU seconds used by groups of processes (each root and all its descendants), read with psutil."""
import time

from deploy.local.launcher import cpu_seconds, pids_by_name, tree_pids  # noqa: F401 (pids_by_name: for the scripts)


class CpuMeter:
    """CPU seconds used by groups of processes (each root and its descendants)."""

    def __init__(self):
        self.seen = {}    # (group, pid) -> [baseline cpu, latest cpu]
        self.samples = []  # (t, {group: cpu seconds since start})

    def sample(self, groups, t=None):
        totals = {}
        for group, roots in groups.items():
            for p in tree_pids(roots):
                cpu = cpu_seconds(p)
                if cpu is None:
                    continue
                key = (group, p)
                if key not in self.seen:
                    # First sample: the baseline. A process first seen later
                    # started since (a replaced worker, a restarted server).
                    self.seen[key] = [cpu if not self.samples else 0.0, cpu]
                else:
                    self.seen[key][1] = cpu
            totals[group] = sum(last - first for (g, _p), (first, last) in self.seen.items()
                                if g == group)
        self.samples.append((t if t is not None else time.time(), totals))
        return totals
