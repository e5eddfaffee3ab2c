"""Running one short transaction, with bounded retries of transient conflicts."""
import logging
import random
import time

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .errors import Busy
from .extensions import db

log = logging.getLogger(__name__)

# MariaDB: deadlock, lock wait timeout, record changed since the snapshot.
CONFLICT_CODES = {1213, 1205, 1020}
# A unique key another transaction just took (e.g. a redelivered request
# recorded concurrently): deciding again sees that row.
DUPLICATE_KEY = 1062
# MariaDB/PyMySQL: cannot connect, server gone, connection lost, shutting down, killed.
CONNECTION_CODES = {2002, 2003, 2006, 2013, 1053, 1927, 4031}


class DatabaseUnavailable(Exception):
    """The database did not answer; the work can be tried again later."""


def _code(err):
    args = getattr(err.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_conflict(err):
    return _code(err) in CONFLICT_CODES or "database is locked" in str(err.orig)


def is_connection_error(err):
    return err.connection_invalidated or _code(err) in CONNECTION_CODES


def run_transaction(work, attempts=6):
    """Run work(session) and commit; retry deadlocks and lock timeouts, then raise Busy.

    Raises DatabaseUnavailable when the database cannot be reached.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = work(db.session)
            db.session.commit()
            return result
        except DBAPIError as err:
            db.session.rollback()
            retryable = (isinstance(err, OperationalError) and is_conflict(err)) or (
                isinstance(err, IntegrityError) and _code(err) == DUPLICATE_KEY)
            if retryable and attempt < attempts:
                log.info("transaction conflict (%s), retry %d", _code(err), attempt)
                time.sleep(random.uniform(0.002, 0.01 * attempt))
                continue
            if is_conflict(err):
                raise Busy("The seats are in high demand; please retry.", retry_after_s=1) from err
            if is_connection_error(err):
                raise DatabaseUnavailable(str(err.orig)) from err
            raise
        except Exception:
            db.session.rollback()
            raise
