"""Garbage collection of the long-running processes (web processes, Celery workers).

Two changes from CPython's defaults, measured on a web process under load
(docs/BENCHMARKS.md, #13): collections took ~10% of its CPU, and each full
collection walked every object start-up made (the app, SQLAlchemy's mappers,
marshmallow schemas, modules) for ~0.2 s of CPU, during which every socket of
the process waited.

- gc.freeze() once start-up is over: what exists then lives as long as the
  process, so collections stop walking it (and a prefork worker's children
  share those pages with their parent instead of copying them when the
  collector touches them).
- A young generation of YOUNG_THRESHOLD allocations instead of 700: an event
  makes a few hundred short-lived objects, nearly all freed by reference
  counting; collecting every 700 allocations promoted the survivors of
  in-flight requests and made the older generations fill, and collect, often.
"""
import gc

YOUNG_THRESHOLD = 50_000


def settle():
    """Start-up is over: freeze what exists and raise the young generation's threshold."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
