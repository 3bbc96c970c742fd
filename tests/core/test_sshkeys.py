"""OpenSSH public keys: the types a current sshd takes, decoded and loaded, and
refusals that name the key without carrying it."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dynvm.core.sshkeys import BadKey, parse_key, parse_keys


def openssh(public: object, comment: str = "") -> str:
    line = public.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


def ed25519_line(comment: str = "alice@laptop") -> str:
    return openssh(ed25519.Ed25519PrivateKey.generate().public_key(), comment)


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def sk_ed25519_line() -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = _string(b"sk-ssh-ed25519@openssh.com") + _string(raw) + _string(b"ssh:")
    return "sk-ssh-ed25519@openssh.com " + base64.b64encode(blob).decode() + " yubikey"


@pytest.fixture(scope="module")
def rsa_1024() -> str:
    return openssh(rsa.generate_private_key(65537, 1024).public_key(), "old")


def test_current_key_types_are_taken() -> None:
    lines = [ed25519_line(), openssh(ec.generate_private_key(ec.SECP256R1()).public_key()),
             openssh(ec.generate_private_key(ec.SECP384R1()).public_key(), "ci"),
             openssh(rsa.generate_private_key(65537, 2048).public_key(), "rsa"), sk_ed25519_line()]
    keys = [parse_key(line) for line in lines]
    assert [k.line for k in keys] == lines
    assert keys[0].comment == "alice@laptop" and keys[1].comment == ""
    assert keys[0].fingerprint.startswith("SHA256:") and "=" not in keys[0].fingerprint
    assert keys[0].blob not in repr(keys[0])


def test_refusals_name_the_key_but_never_carry_it(rsa_1024: str) -> None:
    good = ed25519_line("bob")
    blob = good.split()[1]
    cases = {
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP": "type 'ssh-dss' is not one of",
        "ssh-ed25519": "no key after the type",
        "ssh-ed25519 not*base64 bob": "not valid base64",
        f"ssh-rsa {blob} bob": "declared ssh-rsa but the key inside is 'ssh-ed25519'",
        rsa_1024: "RSA keys need at least 2048 bits, this one has 1024",
        "ssh-ed25519 " + base64.b64encode(_string(b"ssh-ed25519") + _string(b"short")).decode():
            "not a valid key",
        "": "empty",
        good + "\nssh-ed25519 AAAA": "not one key line",
    }
    for line, why in cases.items():
        with pytest.raises(BadKey) as exc:
            parse_key(line, "ssh_keys[3]")
        text = str(exc.value)
        assert text.startswith("ssh_keys[3]") and why in text, text
        for part in line.split()[1:2]:
            assert part not in text
    with pytest.raises(BadKey, match=r"ssh_keys\[3\] \(ssh-rsa, 'old'\) SHA256:"):
        parse_key(rsa_1024, "ssh_keys[3]")


def test_a_list_is_refused_at_its_first_bad_key_and_deduplicated() -> None:
    a, b = ed25519_line("a"), ed25519_line("b")
    assert [k.comment for k in parse_keys([a, b, a.replace(" a", " again")])] == ["a", "b"]
    with pytest.raises(BadKey, match=r"^ssh_keys\[1\]"):
        parse_keys([a, "ssh-ed25519 AAAA", b])
