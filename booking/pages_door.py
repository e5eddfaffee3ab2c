"""The door scanner page (/checkin): a shell; static/js/checkin.js does the work
against the public API (GET /api/v1/door/events, /api/v1/events/<id>/door,
POST /api/v1/checkins)."""
from flask import Blueprint, render_template

from .pages import _page_config, sign_in_required

bp = Blueprint("door", __name__)


@bp.get("/checkin")
@sign_in_required
def checkin():
    """The scanner for door staff (any signed-in user may open it; the API decides)."""
    return render_template("checkin.html", page=_page_config())
