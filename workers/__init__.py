"""Celery's entry point: `celery -A workers worker` and `celery -A workers beat`.

The worker-side app is built on first use (when Celery asks for `workers.app`),
so that the web tier can import `workers.tasks` to enqueue without building one.
"""
from booking import create_app


def __getattr__(name):
    if name in ("app", "celery"):
        app = create_app(role="worker").extensions["celery"]
        globals().update(app=app, celery=app)
        return app
    raise AttributeError(name)
