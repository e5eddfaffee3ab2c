"""Extensions, created unbound here and bound to the app in create_app()."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints, so that Alembic migrations can drop and alter them on
    # both SQLite and MariaDB.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


db = SQLAlchemy(model_class=Base)
socketio = SocketIO()
login_manager = LoginManager()
# CSRF tokens for the HTML forms; the JSON API blueprint is exempt (see create_app).
csrf = CSRFProtect()
# Per-account and per-IP limits on REST calls; booking.ratelimits binds them and
# counts socket events on the same counters.
limiter = Limiter(key_func=get_remote_address)
