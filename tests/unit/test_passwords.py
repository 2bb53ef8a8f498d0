from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from controlsvc.domain import passwords
from controlsvc.domain.errors import InvalidInput


def test_hash_and_verify_round_trip():
    hashed = passwords.hash_password("bumpy-lantern-42")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify_password(hashed, "bumpy-lantern-42")
    assert not passwords.verify_password(hashed, "bumpy-lantern-43")


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$v=19$garbage"])
def test_empty_or_corrupt_hash_never_verifies(stored):
    assert not passwords.verify_password(stored, "anything at all")


def test_hash_with_other_parameters_needs_rehash(monkeypatch):
    old = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash("bumpy-lantern-42")
    assert passwords.needs_rehash(old)
    assert passwords.verify_password(old, "bumpy-lantern-42")  # still verifies meanwhile
    assert not passwords.needs_rehash(passwords.hash_password("bumpy-lantern-42"))
    assert passwords.needs_rehash("garbage")


def test_production_hasher_is_argon2id_with_rfc9106_parameters(monkeypatch):
    monkeypatch.undo()  # the suite swaps in a cheap hasher; look at the real default
    assert passwords.HASHER.type.name == "ID"
    assert passwords.HASHER.memory_cost >= 64 * 1024
    assert passwords.HASHER.time_cost >= 3


def test_waste_time_runs_a_verification():
    passwords.waste_time("whatever")  # must not raise, whatever the input


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8 characters"),
        ("1234567", "at least 8 characters"),
        ("x" * 1025, "at most 1024 characters"),
        ("         ", "white space"),
        ("password", "most common passwords"),
        ("PassWord1", "most common passwords"),
        ("QWERTYUIOP", "most common passwords"),
        ("iloveyou", "most common passwords"),
        ("12345678", "most common passwords"),
        ("football1", "most common passwords"),
        ("welcome2024", "most common passwords"),
    ],
)
def test_policy_refuses(password, reason):
    with pytest.raises(InvalidInput) as caught:
        passwords.check_policy(password, field="new_password")
    assert reason in caught.value.detail
    assert caught.value.field == "new_password"
    assert caught.value.detail.startswith("the new password ")


@pytest.mark.parametrize(
    "password", ["bumpy-lantern-42", "correct horse battery staple", "Ünïcödé-pässwörd", "x" * 1024]
)
def test_policy_accepts(password):
    passwords.check_policy(password)


def test_common_password_list_is_big_and_lower_case():
    common = passwords._common_passwords()
    assert len(common) >= 9000
    assert all(entry == entry.lower() for entry in common)
    assert sum(1 for entry in common if len(entry) >= passwords.MIN_LENGTH) >= 5000
    assert passwords.is_common("Password1")
    assert passwords.is_common(" password1 ")
    assert not passwords.is_common("bumpy-lantern-42")


def test_jabs_hashes_verify_and_need_rehashing() -> None:
    import hashlib

    salt = "6fa459ea-ee8a-11e9-9ad8-0242ac120002"
    stored = passwords.jabs_hash(
        salt, hashlib.sha512(b"jabs-era-pass-77" + salt.encode()).hexdigest()
    )
    assert passwords.verify_password(stored, "jabs-era-pass-77")
    assert not passwords.verify_password(stored, "jabs-era-pass-78")
    assert not passwords.verify_password(passwords.JABS_PREFIX + "no-dollar", "x")
    assert passwords.needs_rehash(stored)
