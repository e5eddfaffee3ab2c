"""HTML forms of the buyer's website (Flask-WTF: every form carries a CSRF token).

The forms check only presence and length; the account rules (a valid email, a
strong enough password) are the API's own marshmallow schema, applied by the
views, so that the website and the API never disagree on what is acceptable.
"""
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional


def _email():
    return EmailField("Email", validators=[DataRequired("Enter your email address."),
                                           Length(max=254)])


def _new_password(label, repeat_label):
    """A new password and its repetition (sign-up, reset)."""
    return (PasswordField(label, validators=[DataRequired("Choose a password."),
                                             Length(max=1024)]),
            PasswordField(repeat_label, validators=[
                DataRequired("Repeat the password."),
                EqualTo("password", "The two passwords are not the same.")]))


class SignupForm(FlaskForm):
    name = StringField("Name (optional)", validators=[Optional(), Length(max=100)])
    email = _email()
    password, confirm = _new_password("Password", "Repeat the password")


class LoginForm(FlaskForm):
    email = _email()
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=1024)])


class ForgotForm(FlaskForm):
    email = _email()


class ResetForm(FlaskForm):
    password, confirm = _new_password("New password", "Repeat the new password")


class LogoutForm(FlaskForm):
    """Only the CSRF token: logging out is a POST so that no link can do it for you."""
