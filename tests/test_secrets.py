"""
Secrets: readable key files are warned about, by name; reprs and messages
hold no key material; and the session-wide check (tests/secrets_check.py)
really collects, really finds, and really fails a session.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.logger import Logger

import securesock
from securesock import DescriptionError

from . import secrets_check
from .conftest import PASSPHRASE, PKI
from .leaks import LeakScanner
from .logcapture import LogLines

ROOT = Path(__file__).resolve().parent.parent


def _copy(source: str, target: Path, mode: int) -> Path:
    target.write_bytes(Path(source).read_bytes())
    target.chmod(mode)
    return target


@pytest.mark.parametrize(
    "name, mode, options",
    [
        ("group.pem", 0o640, "certificate={path}"),
        ("world.pem", 0o604, "certificate={path}"),
        ("split.key", 0o644, "certificate={crt}:privateKey={path}"),
        ("bundle.p12", 0o644, "certificate={path}:passphrase=env:SECURESOCK_TEST_PASSPHRASE"),
    ],
)
def test_readable_key_files_are_named_in_a_warning(
    pki: PKI,
    tmp_path: Path,
    logLines: LogLines,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    mode: int,
    options: str,
) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_PASSPHRASE", PASSPHRASE.decode())
    source = {"group.pem": pki.server_pem, "world.pem": pki.server_pem, "split.key": pki.server_key}.get(
        name, pki.server_p12
    )
    path = _copy(source, tmp_path / name, mode)
    securesock.serverFromString(reactor, "tls:0:" + options.format(path=path, crt=pki.server_crt))
    warnings = logLines.matching("can be read by group or others")
    assert warnings == [
        f"private key file {path} can be read by group or others (mode {oct(mode)}); chmod 600 it"
    ]


def test_private_key_files_give_no_warning(pki: PKI, tmp_path: Path, logLines: LogLines) -> None:
    path = _copy(pki.server_p12, tmp_path / "bundle.p12", 0o600)
    os.environ["SECURESOCK_TEST_PASSPHRASE"] = PASSPHRASE.decode()
    try:
        securesock.serverFromString(
            reactor, f"tls:0:certificate={path}:passphrase=env:SECURESOCK_TEST_PASSPHRASE"
        )
        securesock.serverFromString(reactor, f"tls:0:certificate={pki.server_pem}")
    finally:
        del os.environ["SECURESOCK_TEST_PASSPHRASE"]
    assert logLines.matching("can be read by group or others") == []


@pytest.fixture(scope="module")
def scanner(pki: PKI) -> LeakScanner:
    found = LeakScanner()
    found.addPassphrase(PASSPHRASE)
    found.addDirectory(Path(pki.root), [PASSPHRASE])
    return found


def test_scanner_finds_each_form_of_a_key(pki: PKI, scanner: LeakScanner) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = Path(pki.server_key).read_bytes()
    body = b"".join(pem.splitlines()[1:-1]).decode()
    key = serialization.load_pem_private_key(pem, None)
    number = key.private_numbers().private_value  # type: ignore[union-attr]
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # server.key, server.pem and server.p12 hold the same key: any of their names will do.
    scalar = der.find(number.to_bytes(32, "big"))
    for leaking in (
        f"oops: {body[50:80]} ...",
        f"value={number}",
        f"0x{number:x}",
        der.hex()[2 * scalar : 2 * scalar + 20],
    ):
        found = scanner.find(leaking)
        assert len(found) == 1 and found[0].startswith("the private key in server."), (leaking, found)
    assert scanner.find(body[-40:]) == []  # the end of an EC key's body is its public key
    assert scanner.find("the passphrase is " + PASSPHRASE.decode()[5:20]) == ["the test passphrase"]
    assert scanner.find(Path(pki.ca_pem).read_text()) == []  # certificates are public
    assert scanner.find("127.0.0.1:4433: TLS handshake failed: no shared cipher") == []


def test_reprs_and_messages_hold_no_secret(
    pki: PKI, scanner: LeakScanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_PASSPHRASE", PASSPHRASE.decode())
    endpoint = securesock.serverFromString(
        reactor,
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=env:SECURESOCK_TEST_PASSPHRASE",
    )
    texts = [repr(endpoint), repr(endpoint.identity), repr(endpoint.options), repr(endpoint.creator)]  # type: ignore[attr-defined]
    for description in (
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=file:{pki.path('server.key')}",
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}",
        f"tls:0:certificate={pki.server_key}",
        f"tls:0:certificate={pki.server_pem}:passphrase={PASSPHRASE.decode()}",
        f"tls://:0?certificate={pki.server_pem}&passphrase={PASSPHRASE.decode()}&bogus",
        f"tls:0:certificate={pki.path('passphrase.txt')}",
        f"tls:0:certificate={pki.server_p12}:passphrase=file:{pki.server_key}",
    ):
        with pytest.raises(DescriptionError) as caught:
            securesock.serverFromString(reactor, description)
        texts += [str(caught.value), repr(caught.value), str(caught.value.value)]
    leaks = {text: scanner.find(text) for text in texts if scanner.find(text)}
    assert leaks == {}


def test_the_session_check_is_collecting() -> None:
    marker = "secrets-check-marker-" + os.urandom(4).hex()
    Logger().info("twisted {marker}", marker=marker)
    logging.getLogger("some.library").debug("python %s", marker)
    with pytest.raises(DescriptionError):
        securesock.serverFromString(reactor, f"tls:{marker}")
    origins = {origin for origin, text in secrets_check.COLLECTED.texts if marker in text}
    assert origins == {"Twisted log", "Python log some.library", "DescriptionError"}


_LEAKING_TEST = """
import logging
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.logger import Logger

def test_leaks(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "leaked.key").write_bytes(pem)
    Logger().info("loaded {pem}", pem=pem.decode())
    logging.getLogger("app").warning("passphrase was %s", "correct horse battery staple")
"""


def test_a_session_that_logs_a_key_fails(tmp_path: Path) -> None:
    (tmp_path / "test_leaking.py").write_text(_LEAKING_TEST)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.secrets_check", "-p", "no:cacheprovider"]
        + [
            "--rootdir",
            str(tmp_path),
            "--basetemp",
            str(tmp_path / "base"),
            str(tmp_path / "test_leaking.py"),
        ],
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    output = done.stdout.decode(errors="replace")
    assert "1 passed" in output, output
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "secrets check: FAILED" in output
    assert "Twisted log: the private key in leaked.key" in output
    assert "Python log app: the test passphrase" in output
