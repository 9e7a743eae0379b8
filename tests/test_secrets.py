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
import tempfile
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


@pytest.mark.parametrize("select", ["certificate=localhost", "certificateHash={sha1}"])
def test_readable_key_files_in_a_store_are_named_too(
    pki: PKI, tmp_path: Path, logLines: LogLines, select: str
) -> None:
    """A certificate chosen from a store by name or hash: the same warning, naming the store's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    store = tmp_path / "store"
    store.mkdir()
    path = _copy(pki.server_pem, store / "site.pem", 0o644)
    sha1 = x509.load_pem_x509_certificate(path.read_bytes()).fingerprint(hashes.SHA1()).hex()
    securesock.serverFromString(reactor, f"tls:0:{select.format(sha1=sha1)}:store={store}")
    assert logLines.matching("can be read by group or others") == [
        f"private key file {path} can be read by group or others (mode 0o644); chmod 600 it"
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
    assert scanner.find("A" * 64 + "0" * 64) == []  # zero padding of a number is no key's
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


def test_the_session_check_is_collecting(tmp_path: Path) -> None:
    marker = "secrets-check-marker-" + os.urandom(4).hex()
    Logger().info("twisted {marker}", marker=marker)
    logging.getLogger("some.library").debug("python %s", marker)
    with pytest.raises(DescriptionError):
        securesock.serverFromString(reactor, f"tls:{marker}")
    subprocess.run(
        [sys.executable, "-c", f"import sys; print('out {marker}'); print('err {marker}', file=sys.stderr)"],
        capture_output=True,
        timeout=60,
    )
    origins = {origin for origin, text in secrets_check.COLLECTED.texts if marker in text}
    assert origins == {
        "Twisted log",
        "Python log some.library",
        "DescriptionError",
        f"{Path(sys.executable).name} stdout",
        f"{Path(sys.executable).name} stderr",
    }
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "twistd.out").write_text(f"a child's log {marker}\n")
    (tmp_path / "server.pem.txt").write_text(f"not a log {marker}\n")
    files = dict(secrets_check.logFiles(tmp_path))
    assert files == {f"log file {Path('nested', 'twistd.out')}": f"a child's log {marker}\n"}


_LEAKING_TEST = """
import logging
import subprocess
import sys
import warnings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.logger import Logger

def key(tmp_path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / name).write_bytes(pem)
    return pem.decode()

def test_leaks(tmp_path):
    Logger().info("loaded {pem}", pem=key(tmp_path, "leaked.key"))
    logging.getLogger("app").warning("passphrase was %s", "correct horse battery staple")
    # A child process that logs a key to stderr, another whose log file holds one.
    pem = key(tmp_path, "child.key")
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write(sys.argv[1])", pem],
                   capture_output=True, timeout=60)
    pem = key(tmp_path, "logged.key")
    subprocess.run([sys.executable, "-c", "import sys; print('key: ' + ''.join(sys.argv[1].splitlines()[1:-1]))", pem],
                   stdout=open(tmp_path / "twistd.log", "w"), timeout=60)
    warnings.warn("careful: " + key(tmp_path, "warned.key")[28:150])

def test_exports(tmp_path):
    # A whole PEM key on a child's stdout is an export, not a leak.
    pem = key(tmp_path, "exported.key")
    done = subprocess.run([sys.executable, "-c", "import sys; print(sys.argv[1])", pem],
                          capture_output=True, timeout=60)
    assert done.stdout.decode().strip() == pem.strip()
"""


def test_a_session_that_logs_a_key_fails() -> None:
    # Outside this session's temporary directory, its output in a file: the
    # leaks of the inner session are on purpose and must not fail this one.
    with tempfile.TemporaryDirectory(prefix="securesock-leaking-") as directory:
        where = Path(directory)
        (where / "test_leaking.py").write_text(_LEAKING_TEST)
        with open(where / "report.txt", "wb") as report:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "tests.secrets_check", "-p", "no:cacheprovider"]
                + [
                    "--rootdir",
                    str(where),
                    "--basetemp",
                    str(where / "base"),
                    str(where / "test_leaking.py"),
                ],
                stdout=report,
                stderr=subprocess.STDOUT,
                cwd=where,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                timeout=120,
            )
        output = (where / "report.txt").read_text(errors="replace")
    assert "2 passed" in output, output
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "secrets check: FAILED" in output
    python = Path(sys.executable).name
    leaks = {line for line in output.splitlines() if " appears in a text starting " in line}
    sources = {line.split(" appears in ")[0] for line in leaks}
    assert sources == {
        "Twisted log: the private key in leaked.key",
        "Python log app: the test passphrase",
        f"{python} stderr: the private key in child.key",
        f"log file {Path('test_leaks0', 'twistd.log')}: the private key in logged.key",
        "warning: the private key in warned.key",
    }, output
