"""Accounts and tokens for API tests: the `auth` fixture's helper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from controlsvc.api import tokens
from controlsvc.api.mail import MAILER_KEY, OUTBOX_KEY
from controlsvc.api.web import database
from controlsvc.domain.mail import Mail
from controlsvc.mailer.delivery import ConsoleMailer
from controlsvc.store import users
from controlsvc.store.models.users import User

PASSWORD = "bumpy-lantern-42"  # passes the policy


@dataclass
class Account:
    id: int
    email: str
    password: str
    role: str


class Auth:
    """Creates users straight in the database, logs in over HTTP, issues tokens directly."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def create(self, email: str, *, role: str = "viewer", password: str = PASSWORD) -> Account:
        with self.app.app_context(), database().session() as session:
            user = users.create_user(session, email=email, password=password, role=role)
            return Account(id=user.id, email=user.email, password=password, role=role)

    def admin(self, email: str = "admin@example.com") -> Account:
        return self.create(email, role="admin")

    def login(self, account: Account) -> dict[str, Any]:
        response = self.client.post(
            "/api/auth/login", json={"email": account.email, "password": account.password}
        )
        assert response.status_code == 200, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    def token(self, account: Account) -> str:
        """An access token without going through login (and its rate limit)."""
        with self.app.test_request_context(), database().session() as session:
            user = session.get(User, account.id)
            assert user is not None
            return tokens.issue_tokens(user).access_token

    def headers(self, account_or_token: Account | str) -> dict[str, str]:
        token = (
            self.token(account_or_token)
            if isinstance(account_or_token, Account)
            else account_or_token
        )
        return {"Authorization": f"Bearer {token}"}

    def user(self, user_id: int) -> User:
        with self.app.app_context(), database().session() as session:
            user = session.get(User, user_id)
            assert user is not None
            session.expunge(user)
            return user

    def mails(self) -> list[Mail]:
        """Every mail sent so far (waits for the outbox to deliver)."""
        assert self.app.extensions[OUTBOX_KEY].flush(timeout=10)
        mailer = self.app.extensions[MAILER_KEY]
        assert isinstance(mailer, ConsoleMailer)
        return list(mailer.sent)

    def link_token(self, mail: Mail, kind: str) -> str:
        """The token of the /invite/ or /reset-password/ link in `mail`."""
        marker = f"/{kind}/"
        line = next(line for line in mail.text.splitlines() if marker in line)
        return line.strip().rsplit(marker, 1)[1]
