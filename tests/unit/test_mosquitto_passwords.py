"""Mosquitto password hashes and password file edits (controlsvc.broker.password_file)."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

import pytest

from controlsvc.broker import (
    InvalidBrokerSetting,
    PasswordFileError,
    add_or_update_account,
    generate_password,
    hash_password,
    read_password_file,
    remove_account,
    validate_username,
    verify_password,
    write_password_file,
)

# Written by `mosquitto_passwd -c -b pw alice secret` (2.0.11, default sha512-pbkdf2).
MOSQUITTO_PASSWD_PBKDF2 = (
    "$7$101$/OsSbT1vbSA7rXU4$JHp95uXTvCMOmnhhgSwMir/GgWEDSBuZ0uEzYK+U+ZUtbcd41bg9ax9ka5r7ouA7"
    "W32SDigT52Q0XkSJPPRqVw=="
)
# Written by `mosquitto_passwd -H sha512 -c -b pw6 bob hunter2` (the 1.x format).
MOSQUITTO_PASSWD_SHA512 = (
    "$6$e/BUVRvnQX7145N3$Fw9F5eiJQm+b7AJy2lfPAEiXsmGpY2RoVzhqYHXndYrqCombKcqPgdk0IOsZYOBXPnfaeBRv"
    "nqlWYVFvOR9rCQ=="
)
HASH_RE = re.compile(r"\$7\$101\$(?P<salt>[A-Za-z0-9+/=]{16})\$(?P<digest>[A-Za-z0-9+/=]{88})")


def test_hash_has_mosquitto_2_format() -> None:
    match = HASH_RE.fullmatch(hash_password("secret"))
    assert match is not None
    assert len(base64.b64decode(match["salt"])) == 12
    assert len(base64.b64decode(match["digest"])) == 64


def test_hash_reproduces_mosquitto_passwd_output_for_the_same_salt() -> None:
    salt = base64.b64decode(MOSQUITTO_PASSWD_PBKDF2.split("$")[3])
    assert hash_password("secret", salt=salt) == MOSQUITTO_PASSWD_PBKDF2


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize(
    ("password", "password_hash"),
    [("secret", MOSQUITTO_PASSWD_PBKDF2), ("hunter2", MOSQUITTO_PASSWD_SHA512)],
)
def test_verify_password_reads_mosquitto_passwd_hashes(password: str, password_hash: str) -> None:
    assert verify_password(password, password_hash)
    assert not verify_password(password + "x", password_hash)


def test_verify_password_of_own_hash() -> None:
    password = generate_password()
    assert verify_password(password, hash_password(password))
    assert not verify_password("wrong", hash_password(password))


def test_unknown_hash_format_is_refused() -> None:
    with pytest.raises(PasswordFileError, match=r"\$7\$"):
        verify_password("x", "$1$abc$def")


@pytest.mark.parametrize("password", ["", "nul\0inside"])
def test_bad_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidBrokerSetting):
        hash_password(password)


@pytest.mark.parametrize("name", ["enc-a", "jaxmba_service", "op.1@lab", "A9"])
def test_valid_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "a:b", "a b", "a/b", "a+", "a#", "-lead", "x" * 129, "é"])
def test_invalid_usernames(name: str) -> None:
    with pytest.raises(InvalidBrokerSetting, match="user name"):
        validate_username(name)


def test_generated_passwords_are_long_and_distinct() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 32 for p in passwords)


def test_write_password_file_is_private_and_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    write_password_file(path, {"jaxmba_service": "s1", "enc-a": "a1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hashes = read_password_file(path)
    assert list(hashes) == ["jaxmba_service", "enc-a"]
    assert verify_password("s1", hashes["jaxmba_service"])
    assert verify_password("a1", hashes["enc-a"])
    assert not list(tmp_path.glob(".passwd.*.tmp"))  # no temporary file left behind


def test_write_password_file_refuses_bad_accounts(tmp_path: Path) -> None:
    with pytest.raises(InvalidBrokerSetting):
        write_password_file(tmp_path / "passwd", {"bad:name": "x"})
    with pytest.raises(InvalidBrokerSetting):
        write_password_file(tmp_path / "passwd", {"enc-a": ""})
    assert not (tmp_path / "passwd").exists()


def test_add_update_and_remove_accounts(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "passwd"
    assert add_or_update_account(path, "enc-a", "a1") is True
    assert add_or_update_account(path, "enc-b", "b1") is True
    before = read_password_file(path)
    assert add_or_update_account(path, "enc-a", "a2") is False
    after = read_password_file(path)
    assert after["enc-b"] == before["enc-b"]  # others keep their hash
    assert verify_password("a2", after["enc-a"])
    assert remove_account(path, "enc-a") is True
    assert remove_account(path, "enc-a") is False
    assert list(read_password_file(path)) == ["enc-b"]
    assert remove_account(tmp_path / "missing", "enc-b") is False


def test_replacing_keeps_the_mode_of_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    write_password_file(path, {"enc-a": "a"})
    path.chmod(0o640)  # root:mosquitto 0640 in production
    add_or_update_account(path, "enc-b", "b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o644)  # never readable by others, even if it was
    add_or_update_account(path, "enc-c", "c")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_read_password_file_skips_comments_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text(f"# accounts\n\nalice:{MOSQUITTO_PASSWD_PBKDF2}\n")
    assert read_password_file(path) == {"alice": MOSQUITTO_PASSWD_PBKDF2}
    path.write_text(f"alice:{MOSQUITTO_PASSWD_PBKDF2}\nno separator here\n")
    with pytest.raises(PasswordFileError, match=r"passwd:2"):
        read_password_file(path)
    path.write_text(f"alice:{MOSQUITTO_PASSWD_PBKDF2}\nalice:{MOSQUITTO_PASSWD_PBKDF2}\n")
    with pytest.raises(PasswordFileError, match="twice"):
        read_password_file(path)
