"""Delivering outgoing mail (invites, password resets, alerts).

`Mailer` (``controlsvc.domain.mail``) is the protocol; `SmtpMailer` talks SMTP as [MAIL] says
(none / starttls / ssl, login when a username is set), `ConsoleMailer` writes mails to the log
and keeps the last ones (for development and tests). The app's mailer is
`app.extensions["jaxmba.mailer"]` (``controlsvc.api.mail``).

Requests never wait for SMTP: `MailOutbox` hands mails to a background thread once the request's
transaction has committed (`send_after_commit`). So a slow or broken mail server does not slow
or fail a request, a reset request for an unknown address takes as long as one for a known
address, and a rolled-back request sends nothing.
"""

from __future__ import annotations

import collections
import logging
import queue
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from controlsvc.config.sections import MailSettings
from controlsvc.domain.mail import Mail, Mailer

log = logging.getLogger(__name__)


# The console mailer keeps this many recent mails for inspection.
CONSOLE_KEEP = 100
# The outbox thread exits after this long without mail (a new one starts with the next mail).
OUTBOX_IDLE_EXIT_S = 30.0


class ConsoleMailer:
    """Writes mails to the log (development); keeps the last `CONSOLE_KEEP` in `sent`."""

    def __init__(self, sender: str = "jaxmba@localhost") -> None:
        self.sender = sender
        self.sent: collections.deque[Mail] = collections.deque(maxlen=CONSOLE_KEEP)

    def send(self, mail: Mail) -> None:
        self.sent.append(mail)
        log.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.text)


class SmtpMailer:
    """Sends through an SMTP server per [MAIL] (a new connection per mail; mails are rare)."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        domain = self.settings.sender.rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(mail.text)
        return message

    def send(self, mail: Mail) -> None:
        cfg = self.settings
        smtp: smtplib.SMTP
        if cfg.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                cfg.host, cfg.port, timeout=cfg.timeout_s, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password.get_secret_value())
            smtp.send_message(self._message(mail))
        log.info("mail to %s sent via %s:%d: %s", mail.to, cfg.host, cfg.port, mail.subject)


def make_mailer(settings: MailSettings) -> Mailer:
    if settings.backend == "smtp":
        return SmtpMailer(settings)
    return ConsoleMailer(settings.sender)


class MailOutbox:
    """Delivers mails on one background thread; failures are logged, never raised."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self._queue: queue.Queue[Mail] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, mail: Mail) -> None:
        with self._lock:
            self._queue.put(mail)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="jaxmba-mail-outbox", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued mail was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            try:
                mail = self._queue.get(timeout=OUTBOX_IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self.mailer.send(mail)
            except (OSError, smtplib.SMTPException) as exc:
                log.error("mail to %s (%s) could not be sent: %s", mail.to, mail.subject, exc)  # noqa: TRY400
            except Exception:
                log.exception("mail to %s (%s) failed", mail.to, mail.subject)
            finally:
                self._queue.task_done()
