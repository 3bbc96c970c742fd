"""OpenSSH public keys as owners give them: one `authorized_keys` line each.

A key is accepted when its type is one a current sshd takes (Ed25519, ECDSA,
RSA of 2048 bits or more, and their security-key variants), its blob decodes,
the type written inside the blob is the one declared, and `cryptography` can
load it. A refusal names the key by its place, type, comment and fingerprint:
never the whole line, so an error or a log line never carries a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
MIN_RSA_BITS = 2048
MAX_LINE = 16 * 1024  # an RSA key of 16384 bits is about 2.8 KiB
MAX_COMMENT = 200


class BadKey(ValueError):
    """A key line that is refused; the message says which and why, without the key."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: str  # base64, as written
    comment: str = ""

    @property
    def line(self) -> str:
        return f"{self.type} {self.blob} {self.comment}".rstrip()

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: SHA256 of the blob, base64 without padding."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def __repr__(self) -> str:
        return f"PublicKey({self.type} {self.fingerprint} {self.comment!r})"


def key_id(fingerprint: str) -> str:
    """A key's fingerprint as a URL path segment (base64's `+/` made `-_`, no prefix)."""
    return fingerprint.removeprefix("SHA256:").replace("+", "-").replace("/", "_")


def _embedded_type(blob: bytes) -> str:
    if len(blob) < 4:
        raise ValueError("too short")
    (n,) = struct.unpack(">I", blob[:4])
    if n > len(blob) - 4:
        raise ValueError("truncated")
    return blob[4:4 + n].decode("ascii")


def parse_key(line: str, where: str = "key") -> PublicKey:
    """The key of one `authorized_keys`-style line (`type base64 [comment]`).

    `where` names it in a refusal ("ssh_keys[2]"). Options before the type
    (`from=...`) are refused: dynvm writes the keys, not their restrictions.
    """
    text = line.strip()
    if not text:
        raise BadKey(f"{where}: empty")
    if len(text) > MAX_LINE or "\n" in text or "\r" in text:
        raise BadKey(f"{where}: not one key line")
    parts = text.split(None, 2)
    ktype = parts[0]
    comment = parts[2].strip() if len(parts) > 2 else ""
    name = f"{where} ({ktype}{', ' + repr(comment[:40]) if comment else ''})"
    if ktype not in KEY_TYPES:
        raise BadKey(f"{where}: type {ktype[:40]!r} is not one of {', '.join(sorted(KEY_TYPES))}")
    if len(parts) < 2:
        raise BadKey(f"{name}: no key after the type")
    if len(comment) > MAX_COMMENT or not comment.isprintable():
        raise BadKey(f"{name}: the comment must be printable and at most {MAX_COMMENT} characters")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        inner = _embedded_type(blob)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadKey(f"{name}: the key is not valid base64 of an SSH key") from None
    key = PublicKey(ktype, parts[1], comment)
    name = f"{name} {key.fingerprint}"
    if inner != ktype:
        raise BadKey(f"{name}: declared {ktype} but the key inside is {inner[:40]!r}")
    # Imported when a key is checked, not by every worker at start: `cryptography`
    # alone adds ~11 MB to a process, and most workers never see a key.
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        loaded = load_ssh_public_key(f"{ktype} {parts[1]}".encode())
    except (ValueError, TypeError) as exc:  # cryptography's refusals of a malformed key
        raise BadKey(f"{name}: not a valid key ({exc})") from None
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < MIN_RSA_BITS:
        raise BadKey(f"{name}: RSA keys need at least {MIN_RSA_BITS} bits, "
                     f"this one has {loaded.key_size}")
    return key


def parse_keys(lines: list[str], field: str = "ssh_keys") -> list[PublicKey]:
    """Every key of a list, each checked (the first bad one refuses all), duplicates dropped."""
    out: dict[tuple[str, str], PublicKey] = {}
    for i, line in enumerate(lines):
        key = parse_key(line, f"{field}[{i}]")
        out.setdefault((key.type, key.blob), key)
    return list(out.values())
