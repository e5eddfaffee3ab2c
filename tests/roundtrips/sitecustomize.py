"""Counts a process's round trips to Redis and MySQL, for tests that measure the hot path.

Put this folder on PYTHONPATH and set BO_COUNT_FILE: every Redis round trip
(one command, or one pipeline or MULTI/EXEC block) is counted under
`redis` and under `redis:<first command>` (`redis:EVALSHA`, `redis:MULTI`, ...),
every MySQL round trip under `mysql` and `mysql:<first word>`, and garbage
collections by generation (`gc<n>`, and their wall time in `gc<n>_us`). On SIGRTMIN+3 the
process writes {"seq": n, "counts": {...}, "gc_threshold": [...], "gc_frozen": n}
to BO_COUNT_FILE (n counts the dumps; `{pid}` in the name is replaced by the
process id, for a worker's children), so a test takes a snapshot whenever it
wants one. Nothing is patched
before redis-py or PyMySQL is imported (eventlet still monkey-patches first),
and nothing at all without BO_COUNT_FILE.
"""
import os

_FILE = os.environ.get("BO_COUNT_FILE")
if _FILE:
    import importlib.abc
    import json
    import signal
    import sys
    from collections import Counter

    _counts = Counter()
    _seq = [0]

    def _dump(*_):
        import gc
        _seq[0] += 1
        path = _FILE.replace("{pid}", str(os.getpid()))
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"seq": _seq[0], "counts": dict(_counts),
                       "gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count()},
                      f)
        os.replace(tmp, path)

    # A real-time signal: Celery takes SIGUSR1 (and SIGUSR2) for itself.
    signal.signal(signal.SIGRTMIN + 3, _dump)

    def _first_command(packed):
        """The first command's name in packed RESP (`*N\\r\\n$len\\r\\nNAME...`)."""
        head = packed if isinstance(packed, (bytes, bytearray)) else b"".join(
            bytes(c) for c in packed[:2])
        try:
            start = head.index(b"\r\n", head.index(b"$")) + 2
            return head[start:head.index(b"\r\n", start)].decode().upper()
        except ValueError:
            return "?"

    def _patch_redis(module):
        cls = module.AbstractConnection
        send = cls.send_packed_command

        def send_packed_command(self, command, check_health=True):
            _counts["redis"] += 1
            _counts["redis:" + _first_command(command)] += 1
            return send(self, command, check_health)
        cls.send_packed_command = send_packed_command

    def _patch_pymysql(module):
        cls = module.Connection
        execute = cls._execute_command

        def _execute_command(self, command, sql):
            _counts["mysql"] += 1
            text = sql if isinstance(sql, str) else bytes(sql).decode(errors="replace")
            _counts["mysql:" + (text.split(None, 1) or ["?"])[0].upper()] += 1
            return execute(self, command, sql)
        cls._execute_command = _execute_command

    _TARGETS = {"redis.connection": _patch_redis, "pymysql.connections": _patch_pymysql}

    class _Loader(importlib.abc.Loader):
        def __init__(self, inner, patch):
            self.inner, self.patch = inner, patch

        def create_module(self, spec):
            return self.inner.create_module(spec)

        def exec_module(self, module):
            self.inner.exec_module(module)
            self.patch(module)

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            patch = _TARGETS.get(name)
            if patch is None:
                return None
            for finder in sys.meta_path:
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(name, path, target)
                    if spec is not None:
                        spec.loader = _Loader(spec.loader, patch)
                        return spec
            return None

    sys.meta_path.insert(0, _Finder())

    import gc
    import time
    _gc_started = [0.0]

    def _on_gc(phase, info):
        if phase == "start":
            _gc_started[0] = time.perf_counter()
            return
        generation = info["generation"]
        _counts[f"gc{generation}"] += 1
        _counts[f"gc{generation}_us"] += int((time.perf_counter() - _gc_started[0]) * 1e6)
    gc.callbacks.append(_on_gc)
