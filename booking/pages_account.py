"""Account recovery pages: verify the e-mail address, forgot password, reset password."""
from flask import Blueprint, flash, redirect, render_template, url_for

from . import account_links
from .errors import InvalidRequest
from .extensions import db
from .forms import ForgotForm, ResetForm
from .pages import _page_config

bp = Blueprint("account", __name__)


def _dispatch(outbox_id):
    if outbox_id:
        from workers.after_sale import dispatch
        dispatch([outbox_id])


@bp.get("/verify-email/<token>")
def verify_email(token):
    """The link of the verification e-mail."""
    try:
        account_links.verify_email(db.session, token)
    except account_links.LinkInvalid:
        db.session.rollback()
        return render_template("account_link.html", ok=False, page=_page_config(),
                               title="This link does not work",
                               text="It has expired or was used already. Sign in and your "
                                    "address can be confirmed with a new link.")
    db.session.commit()
    return render_template("account_link.html", ok=True, page=_page_config(),
                           title="Your e-mail address is confirmed",
                           text="Thank you. Tickets and password resets will reach you there.")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether the address has an account."""
    form = ForgotForm()
    if form.validate_on_submit():
        outbox_id = account_links.queue_password_reset(db.session, form.email.data)
        db.session.commit()
        _dispatch(outbox_id)
        flash("If an account uses that address, a link to reset its password is on its way.",
              "info")
        return redirect(url_for("account.forgot_password"))
    return render_template("forgot_password.html", form=form, page=_page_config())


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token):
    """Choose a new password through the link of the reset e-mail (works once)."""
    form = ResetForm()
    try:
        user = account_links.check_reset_link(db.session, token)
    except account_links.LinkInvalid:
        return render_template("account_link.html", ok=False, page=_page_config(),
                               title="This link does not work",
                               text="It has expired or was used already. Ask for a new one.",
                               again=True)
    if form.validate_on_submit():
        try:
            account_links.reset_password(db.session, token, form.password.data)
        except InvalidRequest as err:
            db.session.rollback()
            form.password.errors = [err.message]
        except account_links.LinkInvalid:
            db.session.rollback()
            return redirect(url_for("account.reset_password", token=token))
        else:
            db.session.commit()
            flash("Your password is changed. Log in with the new one.", "success")
            return redirect(url_for("pages.login"))
    return render_template("reset_password.html", form=form, email=user.email,
                           page=_page_config())
