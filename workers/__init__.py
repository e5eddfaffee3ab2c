"""Celery's entry point: `celery -A workers worker` and `celery -A workers beat`.

The worker-side app is built on first use (when Celery asks for `workers.app`),
so that the web tier can import `workers.tasks` to enqueue without building one.
"""
from celery import signals

from booking import create_app, gc_tuning


def __getattr__(name):
    if name in ("app", "celery"):
        app = create_app(role="worker").extensions["celery"]
        globals().update(app=app, celery=app)
        return app
    raise AttributeError(name)


@signals.worker_init.connect
def _settle_main(**_):
    """The worker's main process, before its prefork children fork: freeze start-up's
    objects (see booking/gc_tuning.py), which the children then share, unwalked."""
    gc_tuning.settle()


@signals.worker_process_init.connect
def _settle_child(**_):
    """A prefork child, started: freeze what its own start-up made too."""
    gc_tuning.settle()
