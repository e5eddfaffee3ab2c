"""Celery wiring: one Celery app per Flask app, every task run inside an app context."""
from celery import Celery, Task
from kombu import Queue

from . import broker


def celery_init_app(app):
    """Create the Celery app for `app` and keep it in app.extensions["celery"]."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    redis_url = app.config["REDIS_URL"]
    celery_app = Celery(app.name, task_cls=FlaskTask, include=["workers.tasks", "workers.after_sale"])
    celery_app.conf.update(
        broker_url=redis_url or "memory://",
        # kombu's Redis transport, with a worker-killing failure made recoverable.
        broker_transport=broker.TRANSPORT if redis_url else None,
        # Without Redis, tasks run in the calling process (the embedded mode).
        task_always_eager=not redis_url,
        task_ignore_result=True,
        # A task is acknowledged only once it finished; a worker killed
        # mid-task leaves its message to be redelivered, and every task is
        # idempotent, so running it again is safe (docs/DESIGN.md, rule 2).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Messages a dead worker held come back after this long. Longer
            # than any task runs (the slowest is a payment: processor timeout).
            "visibility_timeout": app.config["TASK_VISIBILITY_TIMEOUT_SECONDS"],
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        },
        task_default_queue=app.config["CELERY_QUEUE"],
        # Two queues: the sale's (holds, payments, sweeps, admissions) and the work after
        # it (mail, refund reconciliation). A worker started without -Q drains both; the
        # deployments run one group per queue (docs/OPERATIONS.md).
        task_queues=(Queue(app.config["CELERY_QUEUE"]), Queue(app.config["AFTER_SALE_QUEUE"])),
        task_routes={"workers.after_sale.*": {"queue": app.config["AFTER_SALE_QUEUE"]}},
        beat_schedule=_beat_schedule(app.config),
        worker_hijack_root_logger=False,
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def _every(task, seconds, expires):
    """A beat entry: TASK every SECONDS; a run still queued after EXPIRES seconds is
    skipped, not run late (the next one does its work)."""
    return {"task": task, "schedule": seconds, "options": {"expires": expires}}


def _beat_schedule(config):
    sweep, reconcile = config["SWEEP_INTERVAL_SECONDS"], config["RECONCILE_INTERVAL_SECONDS"]
    admit, mail = config["ADMISSION_INTERVAL_SECONDS"], config["MAIL_RETRY_INTERVAL_SECONDS"]
    requeue = config["REQUEUE_AFTER_SECONDS"]
    return {
        "sweep-holds": _every("workers.tasks.sweep_holds", sweep, sweep * 3),
        "reconcile-payments": _every("workers.tasks.reconcile_payments", reconcile, reconcile * 3),
        # Waiting rooms: draw at the on-sale, then admit at each room's rate. Short
        # expiry: a tick that waited behind a backlog is skipped, not run late (the
        # next one admits for the time that passed).
        "admit-waiting-buyers": _every("workers.tasks.admit_waiting_buyers", admit, admit * 3),
        # Outbox rows still due (new, deferred after a refusal, or left by a dead worker).
        "dispatch-due-mail": _every("workers.after_sale.dispatch_due_mail", mail, mail * 2),
        "reconcile-refunds": _every("workers.after_sale.reconcile_refunds", reconcile,
                                    reconcile * 3),
        "requeue-overdue-requests": _every("workers.tasks.requeue_overdue_requests",
                                           max(1.0, requeue / 3), requeue),
    }
