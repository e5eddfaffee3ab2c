#!/bin/sh
# The container's entry point: `boxoffice web|worker|after-sale|beat|migrate`, or any command.
set -eu

# prometheus_client's multiprocess folder must start empty: files of an earlier
# run of this container would be counted again.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

role="${1:-web}"
case "$role" in
    web)
        shift || true
        exec python wsgi.py --host 0.0.0.0 --port "${PORT:-8000}" "$@" ;;
    worker)
        shift
        # The sale's queue only. SIGTERM is a warm shutdown: running tasks finish;
        # acks_late puts back the rest.
        exec celery -A workers worker --pool prefork -Q "${CELERY_QUEUE:-booking}" \
            --concurrency "${WORKER_CONCURRENCY:-2}" --loglevel "${LOG_LEVEL:-INFO}" \
            --without-gossip --without-mingle -I workers.metrics "$@" ;;
    after-sale)
        shift
        # Mail (with the ticket PDFs) and refund reconciliation, apart from the sale.
        exec celery -A workers worker --pool prefork \
            -Q "${AFTER_SALE_QUEUE:-${CELERY_QUEUE:-booking}-after-sale}" \
            --concurrency "${AFTER_SALE_CONCURRENCY:-1}" --loglevel "${LOG_LEVEL:-INFO}" \
            --without-gossip --without-mingle -I workers.metrics "$@" ;;
    beat)
        shift
        exec celery -A workers beat --loglevel "${LOG_LEVEL:-INFO}" \
            --schedule /run/boxoffice/celerybeat-schedule "$@" ;;
    migrate)
        shift
        exec flask --app wsgi db upgrade "$@" ;;
    *)
        exec "$@" ;;
esac
