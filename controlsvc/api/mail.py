"""The app's mailer and outbox: ``app.extensions["jaxmba.mailer"]`` and its ``MailOutbox``.

Requests never wait for SMTP: ``send_after_commit`` hands a mail to the outbox once the
request's transaction has committed, so a rolled-back request sends nothing.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from controlsvc.config.settings import Settings
from controlsvc.domain.mail import Mail
from controlsvc.mailer.delivery import MailOutbox, make_mailer

log = logging.getLogger(__name__)


MAILER_KEY = "jaxmba.mailer"
OUTBOX_KEY = "jaxmba.mail_outbox"


def init_app(app: Flask, settings: Settings) -> None:
    """Put the mailer and its outbox in `app.extensions` (idempotent; tests may preset them)."""
    mailer = app.extensions.setdefault(MAILER_KEY, make_mailer(settings.mail))
    app.extensions.setdefault(OUTBOX_KEY, MailOutbox(mailer))


def send_after_commit(session: Session, mail: Mail) -> None:
    """Queue `mail` once `session` commits; nothing is sent if it rolls back."""
    outbox: MailOutbox = current_app.extensions[OUTBOX_KEY]

    def _queue(_session: Session) -> None:
        outbox.put(mail)

    event.listen(session, "after_commit", _queue, once=True)
