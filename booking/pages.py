"""Pages for people (the buyer's website)."""
from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """The list of events."""
    return render_template("index.html")
