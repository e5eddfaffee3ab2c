"""State shared by every web instance: Redis when REDIS_URL is set, process memory otherwise.

Nothing here is the truth about seats or holds (MySQL is). It holds what
coordinates the web tier, one module each: the two backends (backends), which
requests are in flight or answered (ledger), how much backlog is taken before
new holds are refused (shedding), when each buyer was last connected and which
sockets each account holds (presence). Rate-limit counters: booking.ratelimits.
"""
