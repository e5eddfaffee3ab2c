"""The derived admission rate (an event whose admission rate ops left unset)."""


class AutoRate:
    """The derived admission rate: grow while the pipeline keeps up, cut it when it does not.

    Two signals, both shared by every instance through Redis: the work
    accepted and not yet answered (the depth load shedding uses), and the
    shares of hold answers of the last 5 s that came later than
    LATENCY_TARGET_MS ("late") and later than half of it ("slow") after
    their click reached a web process (counted by the workers that answered
    them; they see a slow web tier as well as a slow worker). More than 1%
    late (the p99 misses the target) cuts the rate by a quarter; a backlog
    over half the shedding bound halves it. The rate grows, by a twentieth
    (at least 30 buyers a minute; slowly, because buyers admitted now click
    seconds later), only while at most 1% are slow (the p99 is within
    half the target: the margin that absorbs the admissions already made
    when the signal turns) and the backlog is under a quarter of the bound.
    Between, it holds. So the door lets in what the pipeline answers in time,
    and slows before anything is shed.
    """

    CUT = 0.01
    GROW = 0.01

    @classmethod
    def next(cls, rate, depth, bound, low, high, late=0.0, slow=0.0):
        if depth > bound / 2:
            rate = rate / 2
        elif late > cls.CUT:
            rate = rate * 0.75
        elif depth < bound / 4 and slow <= cls.GROW:
            rate = rate + max(rate * 0.05, 30)
        return max(low, min(high, rate))
