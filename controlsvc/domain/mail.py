"""Outgoing mail as values: a ``Mail``, the ``Mailer`` protocol that delivers one, and the
mails the service writes (invites, password resets). No I/O here: ``controlsvc.mailer`` delivers
(SMTP or the log, on a background thread) and ``controlsvc.api.mail`` wires that into the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    def send(self, mail: Mail) -> None:
        """Deliver one mail or raise (OSError, smtplib.SMTPException)."""


# --- the mails ----------------------------------------------------------------------------


def invite_mail(*, to: str, link: str, role: str, invited_by: str | None, hours: int) -> Mail:
    who = f"{invited_by} invited you" if invited_by else "You are invited"
    text = (
        f"{who} to the JAX MBA control service as {role}.\n\n"
        f"Choose your password here to activate your account:\n\n    {link}\n\n"
        f"The link works once, within {hours} hours. If you did not expect this mail, "
        "ignore it.\n"
    )
    return Mail(to=to, subject="Your invitation to the JAX MBA control service", text=text)


def reset_mail(*, to: str, link: str, hours: int) -> Mail:
    text = (
        "Someone (hopefully you) asked to reset the password of your JAX MBA control service "
        f"account.\n\nChoose a new password here:\n\n    {link}\n\n"
        f"The link works once, within {hours} hours. If you did not ask for it, ignore this "
        "mail: your password stays as it is.\n"
    )
    return Mail(to=to, subject="Reset your JAX MBA control service password", text=text)
