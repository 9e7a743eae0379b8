"""
Finding secrets in text: the bytes of test private keys and the test
passphrases.

A key leaks when a text holds 16 consecutive characters of one of its
private numbers (hex or decimal), or of the base64 of the DER stretches
made of those numbers, as a PEM body shows them (windows of fewer than five
distinct characters, such as the zero padding of a number, do not count).  Only private parts count:
a key's DER also holds public data (algorithm identifiers, the public key)
that every certificate shows.  A passphrase leaks when 10 consecutive
characters of it appear.  So a partial echo is caught too.

Used by the session-wide check (tests/secrets_check.py), the fuzzed
descriptions (tests/test_fuzz.py) and bench/fuzz_descriptions.py.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import pkcs12

_WINDOW = 16
_PASSPHRASE_WINDOW = 10
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----(.*?)-----END \1PRIVATE KEY-----", re.DOTALL)
_RUN = re.compile(rf"[A-Za-z0-9+/]{{{_WINDOW},}}")  # base64, hex and decimal runs alike
_MAX_FILE = 1 << 20
# A window with fewer distinct characters says nothing about a key: a number
# padded to the key size starts with zero bytes ("AAAA..." in base64), as
# does the address ::1 in a certificate.  Random text of a key has 8 to 14.
_MIN_DISTINCT = 5


def _windows(text: str, size: int) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _secretNumbers(key: object) -> list[int]:
    """The private numbers of a key (not its public ones, which certificates show)."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value]
    if isinstance(key, dsa.DSAPrivateKey):
        return [key.private_numbers().x]
    if isinstance(
        key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey, x25519.X25519PrivateKey, x448.X448PrivateKey)
    ):
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return [int.from_bytes(raw, "big")]
    return []


def _encodings(number: int, key: object) -> list[bytes]:
    """How a private number can sit in DER: minimal big-endian, or padded to the key size."""
    minimal = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    forms = [minimal]
    size = getattr(key, "key_size", None) or getattr(getattr(key, "curve", None), "key_size", None)
    if size:
        padded = number.to_bytes((size + 7) // 8, "big") if number.bit_length() <= size else minimal
        forms.append(padded)
    return forms


def _base64Inside(der: bytes, secrets: list[bytes]) -> list[str]:
    """
    The stretches of base64(der) (a PEM body without line breaks) made only
    of secret bytes: DER also carries public data (algorithm identifiers, the
    public key) that certificates show too, which is no leak.
    """
    encoded = base64.b64encode(der).decode()
    stretches = []
    for secret in secrets:
        start = der.find(secret)
        while start >= 0:
            end = start + len(secret)
            first, last = -(-start // 3) * 4, (end // 3) * 4  # whole base64 groups inside the secret
            if last - first >= _WINDOW:
                stretches.append(encoded[first:last])
            start = der.find(secret, start + 1)
    return stretches


class LeakScanner:
    """Knows the secrets; says which of them a text contains (by name, never by value)."""

    def __init__(self) -> None:
        self._keyWindows: dict[str, str] = {}  # window -> what it belongs to
        self._passphraseWindows: dict[str, str] = {}
        self.keys = 0

    def addPassphrase(self, passphrase: bytes | str, label: str = "the test passphrase") -> None:
        text = passphrase.decode() if isinstance(passphrase, bytes) else passphrase
        for window in _windows(text, min(_PASSPHRASE_WINDOW, len(text))):
            self._passphraseWindows[window] = label

    def addKey(self, key: object, label: str, ders: Iterable[bytes] = ()) -> None:
        """
        A private key object: its private numbers in hex and decimal, and the
        secret stretches of its DER forms (PKCS#8, traditional, and C{ders},
        as a file held it) in base64, as a PEM body shows them.
        """
        numbers = _secretNumbers(key)
        secrets = [form for number in numbers for form in _encodings(number, key)]
        texts = [f"{number:x}" for number in numbers] + [f"{number:X}" for number in numbers]
        texts += [str(number) for number in numbers] + [base64.b64encode(s).decode() for s in secrets]
        allDer = list(ders)
        for format in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
            try:
                allDer.append(
                    key.private_bytes(serialization.Encoding.DER, format, serialization.NoEncryption())  # type: ignore[attr-defined]
                )
            except ValueError:
                pass
        for der in allDer:
            texts += _base64Inside(der, secrets)
        self.keys += 1
        for text in texts:
            for window in _windows(text, _WINDOW):
                if len(set(window)) >= _MIN_DISTINCT:
                    self._keyWindows[window] = label

    def addKeyFile(self, path: Path, passphrases: Iterable[bytes] = ()) -> None:
        """Every private key in a PEM or PKCS#12 file (tried with each passphrase)."""
        try:
            if path.stat().st_size > _MAX_FILE:
                return
            data = path.read_bytes()
        except OSError:
            return
        label = f"the private key in {path.name}"
        if b"PRIVATE KEY-----" in data:
            for match in _PEM_KEY.finditer(data):
                body = match.group(2)
                own = [] if b"ENCRYPTED" in match.group(0) else [base64.b64decode(b"".join(body.split()))]
                for secret in (None, *passphrases):
                    try:
                        self.addKey(serialization.load_pem_private_key(match.group(0), secret), label, own)
                        break
                    except (TypeError, ValueError):
                        continue
        elif path.suffix.lower() in (".p12", ".pfx"):
            for secret in (None, *passphrases):
                try:
                    bundle = pkcs12.load_pkcs12(data, secret)
                except (TypeError, ValueError):
                    continue
                if bundle.key is not None:
                    self.addKey(bundle.key, label)
                break

    def addDirectory(self, root: Path, passphrases: Iterable[bytes] = (), limit: int = 20000) -> None:
        """The key files under a directory (at most C{limit} files looked at)."""
        secrets = list(passphrases)
        for count, path in enumerate(root.rglob("*")):
            if count >= limit:
                break
            if path.is_file() and not path.is_symlink():
                self.addKeyFile(path, secrets)

    def find(self, text: str) -> list[str]:
        """What the text leaks, by label: empty when it is clean."""
        found = set()
        for run in _RUN.findall(text):
            for i in range(len(run) - _WINDOW + 1):
                label = self._keyWindows.get(run[i : i + _WINDOW])
                if label is not None:
                    found.add(label)
                    break
        for window, label in self._passphraseWindows.items():
            if window in text:
                found.add(label)
                break
        return sorted(found)
