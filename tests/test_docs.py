"""
The documentation cannot drift: every description string shown in docs/*.md
and README.md is extracted, parsed, and (where it names only test material)
built into a real endpoint; the error tables must fail with the error they
show; the troubleshooting page quotes real messages; and the site builds
with warnings as errors.

How strings are found (the rules docs/index.md states):
  - in fenced code blocks, every token that starts with one of securesock's
    prefixes (tls:, ssl:, securesock:, starttls:, tlsv1.0: .. tlsv1.3:,
    sslv2:, sslv3:, or the URL form tls://...); outside them, the same in
    inline code;
  - a bare prefix (`tls:`) names the prefix and is not a description;
  - a template (with `...` or a placeholder word such as FILE, PORT, HEX) is
    not a description either;
  - between <!-- doctest: errors --> and <!-- doctest: end --> every string
    must be refused, and in a table row with a second column, with the error
    text shown there (`...` stands for any text);
  - rows between <!-- doctest: handshakes --> and its end are a server, a
    client and the client's error: both run on loopback (8443 becomes a free
    port) and the error must be the one shown;
  - rows between <!-- doctest: commands --> and its end are a command
    (twistd -n securesock ..., securesock ...) and its usage error;
  - the first cells of <!-- doctest: twisted-server --> / twisted-client
    tables are Twisted's own strings, which Twisted's parser must read.
File names are replaced by the test certificates per FILES below, and only
those: a description naming any other file, a store name or a thumbprint is
parsed, not built.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import endpoints as twistedEndpoints
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage

import securesock
from securesock import _cli as cli
from securesock._arguments import fromArguments
from securesock._description import TLS_PREFIXES, clientOptions, parseClient, parseServer, serverOptions
from securesock._errors import DescriptionError
from securesock._options import ClientOptions, ServerOptions
from securesock._optiontable import CLIENT, SERVER
from securesock._tap import Options as TapOptions

from .conftest import PASSPHRASE, PKI, REQUIRE_INTEROP
from .peers import Shout, freePort

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

# The file names the examples use -> the test PKI file each stands for
# (docs/index.md, "How the examples are kept true", shows the same table).
FILES = {
    "site.pem": "server.pem",
    "server.pem": "server.pem",
    "cert+key.pem": "server.pem",
    "site.crt": "server.crt",
    "cert.pem": "server.crt",
    "crt.pem": "server.crt",
    "site.key": "server.key",
    "key.pem": "server.key",
    "site.p12": "server.p12",
    "encrypted.key": "encrypted.key",
    "chain.pem": "intermediate.pem",
    "ca.pem": "ca.pem",
    "clients-ca.pem": "ca.pem",
    "private-ca.pem": "ca.pem",
    "ca-directory": "cadir",  # a directory holding the CA certificate
    "client.pem": "client.pem",
    # for the error examples
    "expired.pem": "expired.pem",
    "other-ca.pem": "other-ca.pem",
    "other.key": "other.key",
    "not-a-certificate.pem": "empty.pem",
    "other-site.pem": "stranger.pem",  # a certificate for localhost from another CA
}
# Environment variables the examples read passphrases from.
PASSPHRASE_VARIABLES = {"KEYPASS": PASSPHRASE.decode(), "WRONG_KEYPASS": "not the passphrase"}

# Strings that look like descriptions but are not meant to be used as written.
NOT_DESCRIPTIONS = {
    # twistd securesock's default --listen, which adds a development certificate
    ("docs/twistd.md", "tls:8443"),
}

_PREFIX = "|".join(re.escape(p) for p in sorted(TLS_PREFIXES, key=len, reverse=True))
# A space belongs to a description only between pairs of hex digits (thumbprints
# as Windows shows them: certificateHash=9d a4 84 ...).
_DESCRIPTION = re.compile(
    rf"(?<![\w./\-])(?:{_PREFIX})(?::|://)(?:[^\s\"'`<>|]|(?<=[0-9A-Fa-f]{{2}}) (?=[0-9A-Fa-f]{{2}}\b))*",
    re.IGNORECASE,
)
_PLACEHOLDERS = {
    "FILE",
    "PATH",
    "PORT",
    "HOST",
    "NAME",
    "DIRECTORY",
    "HEX",
    "KEY",
    "VARIABLE",
    "VAR",
    "SOURCE",
    "CERT",
    "FILE-OR-DIRECTORY",
    "OPTION",
    "VALUE",
}


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    text: str
    refused: bool  # inside an errors region
    expected: str | None  # the error text shown beside it, if any
    twistedTokenized: bool  # shown where Twisted splits it first (twistd, the plugin prefixes)

    def where(self) -> str:
        return f"{self.page}:{self.line}: {self.text!r}"


def _candidates(text: str) -> Iterator[str]:
    for match in _DESCRIPTION.finditer(text):
        found = match.group(0)
        if text[match.end() : match.end() + 4].lstrip().startswith(("...", "\u2026")):
            continue  # a template cut short: "certificateHash=9d a4 ..."
        if not _isTemplate(found):
            found = found.rstrip(".,;)")
        if re.fullmatch(rf"(?:{_PREFIX})(?::|://)", found, re.IGNORECASE):
            continue  # a prefix named in prose
        yield found


def _isTemplate(text: str) -> bool:
    if "..." in text or "\u2026" in text:
        return True
    return any(word in _PLACEHOLDERS for word in re.split(r"[^A-Za-z0-9_\-]+", text))


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _tableRow(line: str) -> tuple[list[str], str | None]:
    """In an error table: the descriptions of the first cell that has any, and the next cell's text."""
    cells = _cells(line)
    for index, cell in enumerate(cells):
        spans = re.findall(r"`([^`]+)`", cell)
        if any(True for span in spans for _ in _candidates(span)):
            following = cells[index + 1] if index + 1 < len(cells) else ""
            quoted = re.findall(r"`([^`]+)`", following)
            return spans, (" ... ".join(quoted) if quoted else following) or None
    return [], None


def examples() -> list[Example]:
    found: list[Example] = []
    for page in PAGES:
        fenced = False
        refused = commandsTable = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fenced = not fenced
                continue
            if stripped == "<!-- doctest: errors -->":
                refused = True
                continue
            if stripped == "<!-- doctest: commands -->":
                commandsTable = True  # checked by test_command_error_is_real
                continue
            if stripped == "<!-- doctest: end -->":
                refused = commandsTable = False
                continue
            if commandsTable:
                continue
            spans = [line] if fenced else re.findall(r"`([^`]+)`", line)
            expected = None
            if refused and not fenced and line.lstrip().startswith("|"):
                spans, expected = _tableRow(line)
            for span in spans:
                for text in _candidates(span):
                    if _isTemplate(text) or (page.relative_to(ROOT).as_posix(), text) in NOT_DESCRIPTIONS:
                        continue
                    tokenized = text.lower().startswith("securesock:") or (
                        text.lower().startswith("starttls:")
                        and "twistd" in line
                        and not re.search(r"twistd (-n )?securesock", line)
                    )
                    found.append(
                        Example(page.relative_to(ROOT).as_posix(), number, text, refused, expected, tokenized)
                    )
    return found


EXAMPLES = examples()


@dataclass(frozen=True)
class Handshake:
    """A row of a <!-- doctest: handshakes --> table: server, client, the client's error."""

    page: str
    line: int
    server: str
    client: str
    expected: str

    def where(self) -> str:
        return f"{self.page}:{self.line}: {self.client!r}"


def handshakes() -> list[Handshake]:
    found = []
    for page in PAGES:
        inside = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.strip() == "<!-- doctest: handshakes -->":
                inside = True
            elif line.strip() == "<!-- doctest: end -->":
                inside = False
            elif inside and line.lstrip().startswith("|") and "`" in line:
                server, client, expected = (re.findall(r"`([^`]+)`", c) for c in _cells(line)[:3])
                found.append(
                    Handshake(
                        page.relative_to(ROOT).as_posix(),
                        number,
                        server[0],
                        client[0],
                        " ... ".join(expected),
                    )
                )
    return found


HANDSHAKES = handshakes()


def commands() -> list[tuple[str, int, str, str]]:
    """Rows of <!-- doctest: commands --> tables: (page, line, command, error shown)."""
    found = []
    for page in PAGES:
        inside = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.strip() == "<!-- doctest: commands -->":
                inside = True
            elif line.strip() == "<!-- doctest: end -->":
                inside = False
            elif inside and line.lstrip().startswith("|") and "`" in line:
                command, expected = (re.findall(r"`([^`]+)`", c) for c in _cells(line)[:2])
                found.append((page.relative_to(ROOT).as_posix(), number, command[0], " ... ".join(expected)))
    return found


COMMANDS = commands()


def twistedForms() -> list[tuple[str, int, str, str]]:
    """First cells of <!-- doctest: twisted-server/-client --> tables: what Twisted itself reads."""
    found = []
    for page in PAGES:
        side = None
        for number, line in enumerate(page.read_text().splitlines(), 1):
            marker = re.fullmatch(r"<!-- doctest: twisted-(server|client) -->", line.strip())
            if marker:
                side = marker.group(1)
            elif line.strip() == "<!-- doctest: end -->":
                side = None
            elif side and line.lstrip().startswith("|"):
                for text in re.findall(r"`([^`]+)`", _cells(line)[0]):
                    found.append((page.relative_to(ROOT).as_posix(), number, side, text))
    return found


TWISTED_FORMS = twistedForms()


def _substitute(text: str, pki: PKI) -> str:
    """Replace the example file names (only those in FILES) with the test PKI's."""

    def replace(match: re.Match[str]) -> str:
        return match.group(1) + pki.path(FILES[match.group(2)])

    names = "|".join(re.escape(n) for n in sorted(FILES, key=len, reverse=True))
    text = re.sub(rf"([=,])({names})(?=$|[:&,])", replace, text)
    return re.sub(r"([=:])file:passphrase\.txt(?=$|[:&])", rf"\1file:{pki.path('passphrase.txt')}", text)


def _unsubstitute(message: str, original: str, pki: PKI) -> str:
    """Show the example's own file names in a message about the test PKI's files."""
    for name, target in FILES.items():
        if re.search(rf"[=,]{re.escape(name)}(?=$|[:&,])", original):
            message = message.replace(pki.path(target), name)
    return message.replace(str(pki.root) + "/", "")


def _parse(example: Example, text: str, side: str) -> ServerOptions | ClientOptions | str:
    """Parse as securesock does, or as the plugin does after Twisted's tokenizer."""
    if example.twistedTokenized:
        args, kwargs = twistedEndpoints._parse(text)  # Twisted's own tokenizer, as twistd uses it
        prefix = str(args[0]).lower()
        if prefix in TLS_PREFIXES:
            split = fromArguments(prefix, tuple(args[1:]), kwargs, side)
            return serverOptions(split) if side == SERVER else clientOptions(split)
    return parseServer(text) if side == SERVER else parseClient(text)


def _onlyTestMaterial(options: ServerOptions | ClientOptions, pki: PKI) -> bool:
    root = str(pki.root)
    identity = options.policy.identity
    files = [identity.privateKey, identity.extraCertChain]
    files += (identity.certificate or "").split(",") if identity.certificate else []
    if isinstance(options, ServerOptions):
        files.append(options.caCerts)
        if options.dhParameters is not None or options.endpoint is not None:
            return False
    else:
        files.append(options.trustRoots)
        if options.endpoint is not None:
            return False
    if identity.certificateHash or identity.everyEntry or options.policy.store is not None:
        return False
    passphrase = identity.passphrase
    if passphrase is not None and not (
        (passphrase.source == "env" and passphrase.reference in PASSPHRASE_VARIABLES)
        or passphrase.reference.startswith(root)
    ):
        return False
    return all(f is None or f.startswith(root) for f in files)


def _build(options: ServerOptions | ClientOptions, text: str, example: Example) -> object:
    if example.twistedTokenized:
        build = (
            twistedEndpoints.serverFromString
            if isinstance(options, ServerOptions)
            else twistedEndpoints.clientFromString
        )
    else:
        build = (
            securesock.serverFromString if isinstance(options, ServerOptions) else securesock.clientFromString
        )
    return build(reactor, text)


def _matches(expected: str, message: str) -> bool:
    position = 0
    for piece in (p.strip() for p in expected.split("...")):
        if not piece:
            continue
        found = message.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


@pytest.fixture
def passphrases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PASSPHRASE_VARIABLES.items():
        monkeypatch.setenv(name, value)


def test_examples_are_found() -> None:
    """The extraction itself works: the pages hold many examples, some built, some refused."""
    pages = {e.page for e in EXAMPLES}
    for page in ("README.md", "docs/coming-from-twisted.md", "docs/cookbook.md", "docs/troubleshooting.md"):
        assert page in pages, f"no description found in {page}"
    assert len(EXAMPLES) > 100
    assert sum(e.refused for e in EXAMPLES) > 20
    assert len(HANDSHAKES) >= 5
    assert len(COMMANDS) >= 5
    assert len(TWISTED_FORMS) >= 15


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.refused], ids=Example.where)
def test_example_parses_and_builds(example: Example, pki: PKI, passphrases: None) -> None:
    text = _substitute(example.text, pki)
    problems: list[str] = []
    built = False
    for side in (SERVER, CLIENT):
        try:
            options = _parse(example, text, side)
        except DescriptionError as e:
            problems.append(f"as a {side}: {e}")
            continue
        if isinstance(options, str) or not _onlyTestMaterial(options, pki):
            built = True  # parsed; it names files or names the tests do not have
            continue
        try:
            _build(options, text, example)
        except DescriptionError as e:
            problems.append(f"as a {side}, building it: {e}")
            continue
        built = True
    assert built, f"{example.where()} no longer works:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.refused], ids=Example.where)
def test_error_example_is_refused(example: Example, pki: PKI, passphrases: None) -> None:
    text = _substitute(example.text, pki)
    messages: list[str] = []
    for side in (SERVER, CLIENT):
        try:
            options = _parse(example, text, side)
            if isinstance(options, str):
                pytest.fail(f"{example.where()} is not one of securesock's descriptions")
            _build(options, text, example)
        except DescriptionError as e:
            messages.append(_unsubstitute(str(e), example.text, pki))
            continue
        if _onlyTestMaterial(options, pki):
            pytest.fail(f"{example.where()} is shown as an error but builds as a {side}")
    assert messages, f"{example.where()} is shown as an error but parses"
    if example.expected is not None:
        assert any(_matches(example.expected, m) for m in messages), (
            f"{example.where()}: the page shows {example.expected!r}, the code says:\n  "
            + "\n  ".join(messages)
        )


@pytest.mark.parametrize("row", HANDSHAKES, ids=Handshake.where)
@pytest_twisted.ensureDeferred
async def test_handshake_error_is_real(row: Handshake, pki: PKI) -> None:
    """Run the row's server and client on loopback (port 8443 becomes a free port)."""
    port = str(freePort())
    server = _substitute(row.server, pki).replace(":8443", f":{port}", 1) + ":interface=127.0.0.1"
    client = _substitute(row.client, pki).replace(":8443", f":{port}", 1)
    listening = await securesock.serverFromString(reactor, server).listen(Factory.forProtocol(Shout))
    try:
        endpoint = securesock.clientFromString(reactor, client)
        with pytest.raises(ConnectionError) as raised:
            protocol = await endpoint.connect(Factory.forProtocol(Protocol))
            protocol.transport.loseConnection()
        message = _unsubstitute(str(raised.value), row.client + ":" + row.server, pki)
        assert _matches(row.expected, message), (
            f"{row.where()}: the page shows {row.expected!r}, the code says {message!r}"
        )
    finally:
        await listening.stopListening()


@pytest.mark.parametrize(
    "page, line, command, expected", COMMANDS, ids=[f"{p}:{n}" for p, n, _, _ in COMMANDS]
)
def test_command_error_is_real(
    page: str, line: int, command: str, expected: str, pki: PKI, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run the command's option parsing in-process (twistd securesock) or the command itself."""
    words = [_substitute(word, pki) for word in shlex.split(command)]
    if words[:3] == ["twistd", "-n", "securesock"]:
        with pytest.raises(usage.UsageError) as raised:
            TapOptions().parseOptions(words[3:])
        message = str(raised.value)
    else:
        assert words[0] == "securesock", f"{page}:{line}: not a securesock command: {command}"
        assert cli.main(words[1:]) != 0, f"{page}:{line}: {command} succeeded"
        message = capsys.readouterr().err.strip()
    message = _unsubstitute(message, command, pki)
    assert _matches(expected, message), (
        f"{page}:{line}: the page shows {expected!r}, the command says {message!r}"
    )


@pytest.mark.parametrize(
    "page, line, side, text", TWISTED_FORMS, ids=[f"{p}:{n}: {t}" for p, n, _, t in TWISTED_FORMS]
)
@pytest.mark.filterwarnings(
    "ignore:Passing method to twisted.internet.ssl.CertificateOptions:DeprecationWarning"
)
def test_twisted_column_is_twisted(page: str, line: int, side: str, text: str, pki: PKI) -> None:
    """
    The strings shown as Twisted's are Twisted's: Twisted's own parser builds
    each one that names only test material (or an existing directory), and
    tokenizes the rest.
    """
    substituted = _substitute(text, pki)
    args, kwargs = twistedEndpoints._parse(substituted)  # Twisted's tokenizer
    assert str(args[0]).lower() in ("ssl", "tls"), f"{page}:{line}: {text} is not an ssl:/tls: string"
    files = [
        v
        for k, v in kwargs.items()
        if k in ("privateKey", "certKey", "certificate", "trustRoots", "caCertsDir")
    ]
    if side == SERVER and str(args[0]).lower() == "ssl" and "privateKey" not in kwargs:
        files.append("server.pem")  # Twisted's default
    if all(f.startswith(str(pki.root)) or f == "/etc/ssl/certs" and os.path.isdir(f) for f in files) and not (
        side == SERVER and str(args[0]).lower() == "tls"  # tls:DIRECTORY:PORT needs the directory
    ):
        build = twistedEndpoints.serverFromString if side == SERVER else twistedEndpoints.clientFromString
        assert build(reactor, substituted) is not None


def test_substitutions_are_documented() -> None:
    """docs/index.md names every file name the tests substitute."""
    index = (ROOT / "docs" / "index.md").read_text()
    for name in FILES:
        assert f"`{name}`" in index, f"docs/index.md does not say what {name} stands for"


def test_every_page_is_in_the_site() -> None:
    entries = re.findall(r"^([\w-]+)$", (ROOT / "docs" / "index.md").read_text(), re.MULTILINE)
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.stem != "index":
            assert page.stem in entries, f"docs/{page.name} is not in a toctree of docs/index.md"


def test_site_builds_without_warnings(tmp_path: Path) -> None:
    """The Sphinx site (furo, MyST, autodoc) builds with warnings as errors."""
    missing = [m for m in ("sphinx", "furo", "myst_parser") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[docs]')"
        if REQUIRE_INTEROP or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
        ]
        + [str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "coming-from-windev.html").exists()
