"""Handing a built e-mail to the world: SMTP (SMTP_URL) or .eml files (unset).

SMTP_URL: smtp://user:pass@host:port (plain, port 25 by default),
smtp+starttls://... (STARTTLS, 587 by default), smtps://... (TLS from the
first byte, 465 by default). User and password are URL-decoded. Unset, each
mail is written to MAIL_OUTBOX_DIR (instance/outbox/) as <outbox id>.eml.
"""
import os
import smtplib
import socket
import ssl
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class TransientMailError(Exception):
    """The server refused for now or could not be reached: try again later."""


class PermanentMailError(Exception):
    """The server refused the message for good (a 5xx answer): trying again will not help."""


def parse_smtp_url(url):
    """(scheme, host, port, user, password); raises ValueError for an unusable URL."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError("SMTP_URL must be smtp://, smtp+starttls:// or smtps://host[:port]")
    return (parts.scheme, parts.hostname, parts.port or SCHEMES[parts.scheme],
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None)


class SmtpTransport:
    def __init__(self, url, timeout_s):
        self.scheme, self.host, self.port, self.user, self.password = parse_smtp_url(url)
        self.timeout_s = timeout_s

    def describe(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def send(self, message, name):
        """Deliver one message; raises TransientMailError or PermanentMailError."""
        context = ssl.create_default_context()
        try:
            if self.scheme == "smtps":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                          context=context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with client:
                if self.scheme == "smtp+starttls":
                    client.starttls(context=context)
                if self.user:
                    client.login(self.user, self.password or "")
                refused = client.send_message(message)
                if refused:
                    raise PermanentMailError(f"recipients refused: {sorted(refused)}")
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _msg in err.recipients.values()]
            if all(400 <= c < 500 for c in codes):
                raise TransientMailError(f"recipients deferred: {codes}") from err
            raise PermanentMailError(f"recipients refused: {codes}") from err
        except smtplib.SMTPResponseException as err:
            if 400 <= err.smtp_code < 500:
                raise TransientMailError(f"{err.smtp_code} {err.smtp_error!r}") from err
            if err.smtp_code == 535:  # bad credentials: an operator will fix them
                raise TransientMailError(f"authentication failed ({err.smtp_code})") from err
            raise PermanentMailError(f"{err.smtp_code} {err.smtp_error!r}") from err
        except (smtplib.SMTPException, OSError, socket.timeout) as err:
            raise TransientMailError(f"{type(err).__name__}: {err}") from err


class FileTransport:
    """Writes <name>.eml files (the same name again replaces the file: one file per mail)."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def describe(self):
        return str(self.directory)

    def send(self, message, name):
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(message.as_bytes())
            os.replace(tmp, self.directory / f"{name}.eml")
        except OSError as err:
            raise TransientMailError(f"cannot write {self.directory}: {err}") from err


def make_transport(config):
    if config.get("SMTP_URL"):
        return SmtpTransport(config["SMTP_URL"], config["MAIL_SMTP_TIMEOUT_SECONDS"])
    return FileTransport(config["MAIL_OUTBOX_DIR"])
