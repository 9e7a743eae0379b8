"""
The Twisted plugins: found by Twisted's plugin scan, cheap to scan (the
securesock package is imported only when a string is parsed), and working
through Twisted's own serverFromString/clientFromString, whose tokenizer
splits at every colon before securesock sees the string.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Factory
from twisted.plugin import getPlugins

import securesock
from securesock import DescriptionError, TLSClientEndpoint, TLSServerEndpoint

from .conftest import PASSPHRASE, PKI
from .peers import Collect, Shout

PROJECT = str(Path(securesock.__file__).resolve().parents[1])
INTERFACES = (IStreamServerEndpointStringParser, IStreamClientEndpointStringParserWithReactor)


def ours(plugin: object) -> bool:
    return type(plugin).__module__.startswith("twisted.plugins.securesock")


@pytest.mark.parametrize("interface", INTERFACES)
def test_plugin_registered(interface: type) -> None:
    plugins = list(getPlugins(interface))
    prefixes = [p.prefix for p in plugins if ours(p)]  # type: ignore[attr-defined]
    assert "securesock" in prefixes
    # Twisted owns ssl: (built in) and tls: (its own plugin): we never take them over
    assert not {"tls", "ssl"} & set(prefixes)
    assert [p.prefix for p in plugins].count("securesock") == 1  # type: ignore[attr-defined]


SCAN = """
import sys
from twisted.plugin import getPlugins
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor, IStreamServerEndpointStringParser)
from twisted.application.service import IServiceMaker
found = [p.prefix for i in (IStreamServerEndpointStringParser,
                            IStreamClientEndpointStringParserWithReactor)
         for p in getPlugins(i)]
makers = [m.tapname for m in getPlugins(IServiceMaker)]
print(found.count('securesock'), 'securesock' in makers,
      sorted(m for m in sys.modules if m == 'securesock' or m.startswith('securesock.')))
"""


def test_scanning_does_not_import_securesock(tmp_path: Path) -> None:
    # Copies of the plugin files, first on the path, so the first scan has no
    # dropin.cache and must import every plugin module.
    plugins = tmp_path / "path" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    for source in Path(PROJECT, "twisted", "plugins").glob("securesock*.py"):
        shutil.copy(source, plugins)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tmp_path / "path"), PROJECT, env.get("PYTHONPATH")) if p
    )
    for attempt in ("first scan", "with dropin.cache written"):
        result = subprocess.run(
            [sys.executable, "-c", SCAN], capture_output=True, cwd=tmp_path, env=env, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert result.stdout.decode().split() == ["2", "True", "[]"], (attempt, result.stdout)
        assert (plugins / "dropin.cache").exists()


@pytest_twisted.ensureDeferred
async def test_twisted_parsers_build_our_endpoints(pki: PKI) -> None:
    server = endpoints.serverFromString(
        reactor, f"securesock:0:interface=127.0.0.1:certificate={pki.server_pem}:alpn=h2"
    )
    assert isinstance(server, TLSServerEndpoint)
    port = await server.listen(Factory.forProtocol(Shout))
    try:
        client = endpoints.clientFromString(
            reactor, f"securesock:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:alpn=h2"
        )
        assert isinstance(client, TLSClientEndpoint)
        protocol = Collect()
        await client.connect(Factory.forProtocol(lambda: protocol))
        assert await protocol.done == b"HELLO alpn=h2\n"
        # verification happens through Twisted's parser too
        stranger = endpoints.clientFromString(
            reactor, f"securesock:localhost:{port.getHost().port}:trustRoots={pki.path('other-ca.pem')}"
        )
        with pytest.raises(securesock.TLSHandshakeError, match="did not verify"):
            await stranger.connect(Factory.forProtocol(Collect))
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_twisted_parsers_take_urls(pki: PKI) -> None:
    """Twisted cuts a URL at its colons; the plugin puts it back together."""
    server = endpoints.serverFromString(
        reactor, f"securesock://127.0.0.1:0?certificate={pki.server_pem}&protocols=TLS1_2"
    )
    assert isinstance(server, TLSServerEndpoint)
    assert server.options.interface == "127.0.0.1"
    port = await server.listen(Factory.forProtocol(Shout))
    try:
        client = endpoints.clientFromString(
            reactor, f"securesock://localhost:{port.getHost().port}?trustRoots={pki.ca_pem}&alpn=x,y"
        )
        assert isinstance(client, TLSClientEndpoint)
        assert client.options.policy.alpn == (b"x", b"y")
        protocol = Collect()
        await client.connect(Factory.forProtocol(lambda: protocol))
        assert protocol.transport.getHandle().get_protocol_version_name() == "TLSv1.2"
        assert await protocol.done == b"HELLO alpn=none\n"
    finally:
        await port.stopListening()
    ipv6 = endpoints.serverFromString(reactor, f"securesock://[::1]:8443?certificate={pki.server_pem}")
    assert isinstance(ipv6, TLSServerEndpoint)
    assert (ipv6.options.interface, ipv6.options.port) == ("::1", 8443)


def test_colon_in_url_query_explained(pki: PKI) -> None:
    with pytest.raises(DescriptionError, match="%3A"):
        endpoints.clientFromString(
            reactor, f"securesock://localhost:443?trustRoots={pki.ca_pem}&pin=sha256:00"
        )


@pytest.mark.parametrize(
    "url",
    [
        "securesock://127.0.0.1:8443?certificate={crt}&privateKey={key}&passphrase=env:SECURESOCK_TEST_KEYPASS",
        "securesock://[::1]:8443?certificate={crt}&privateKey={key}&passphrase=env:SECURESOCK_TEST_KEYPASS",
        "securesock://127.0.0.1:8443?certificate={crt}&privateKey={key}&passphrase=file:/x:y",
    ],
)
def test_a_url_cut_inside_its_query_says_how_to_write_it(pki: PKI, url: str) -> None:
    """Not 'escape the colon or use the URL form' (this is the URL form), and the cut pieces are not shown."""
    description = url.format(crt=pki.server_crt, key=pki.encrypted_key)
    with pytest.raises(DescriptionError) as caught:
        endpoints.serverFromString(reactor, description)
    message = str(caught.value)
    assert "split this URL at a ':' inside its query; write each ':' in a query value as %3A" in message
    assert "SECURESOCK_TEST_KEYPASS" not in message and "use the URL form" not in message


def test_a_url_without_a_port_says_so_through_twisted(pki: PKI) -> None:
    """Twisted cuts securesock://HOST?a=b at its '=' only: not an unknown option '//127.0.0.1?certificate'."""
    with pytest.raises(DescriptionError, match="has no port") as caught:
        endpoints.serverFromString(reactor, f"securesock://127.0.0.1?certificate={pki.server_pem}")
    assert "//127.0.0.1" not in str(caught.value).partition("has no port")[0]


def test_a_url_with_user_information_is_refused_for_it_through_twisted(pki: PKI) -> None:
    """Its ':' is not in the query: the message is about the user information, and hides its password."""
    with pytest.raises(DescriptionError) as caught:
        endpoints.serverFromString(
            reactor, f"securesock://user:hunter2@127.0.0.1:8443?certificate={pki.server_pem}"
        )
    message = str(caught.value)
    assert "user information ('...@') is not meaningful" in message and "inside its query" not in message
    assert "hunter2" not in message


def test_the_passphrase_source_is_read_in_any_case(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_KEYPASS", PASSPHRASE.decode())
    where = f"securesock:0:interface=127.0.0.1:certificate={pki.server_crt}:privateKey={pki.encrypted_key}"
    endpoint = endpoints.serverFromString(reactor, f"{where}:passphrase=ENV\\:SECURESOCK_TEST_KEYPASS")
    assert isinstance(endpoint, TLSServerEndpoint)
    passphrase = endpoint.options.policy.identity.passphrase
    assert passphrase is not None and (passphrase.source, passphrase.reference) == (
        "env",
        "SECURESOCK_TEST_KEYPASS",
    )


def test_a_url_with_percent_encoded_colons_works_through_twisted(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_KEYPASS", PASSPHRASE.decode())
    endpoint = endpoints.serverFromString(
        reactor,
        f"securesock://127.0.0.1:8443?certificate={pki.server_crt}&privateKey={pki.encrypted_key}"
        "&passphrase=env%3ASECURESOCK_TEST_KEYPASS",
    )
    assert isinstance(endpoint, TLSServerEndpoint)
    assert endpoint.options.policy.identity.passphrase is not None


def test_unescaped_passphrase_colon_explained(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_KEYPASS", PASSPHRASE.decode())
    where = f"securesock:0:interface=127.0.0.1:certificate={pki.server_crt}:privateKey={pki.encrypted_key}"
    with pytest.raises(DescriptionError, match=r"escape the colon \(passphrase=env\\:\.\.\.\)") as caught:
        endpoints.serverFromString(reactor, f"{where}:passphrase=env:SECURESOCK_TEST_KEYPASS")
    assert caught.value.option == "passphrase"
    assert PASSPHRASE.decode() not in str(caught.value)
    # escaped, Twisted's tokenizer leaves the colon in the value
    endpoint = endpoints.serverFromString(reactor, f"{where}:passphrase=env\\:SECURESOCK_TEST_KEYPASS")
    assert isinstance(endpoint, TLSServerEndpoint)
    with pytest.raises(DescriptionError, match="escape the colon"):
        endpoints.serverFromString(reactor, f"{where}:passphrase=file:{pki.passphrase_txt}")
    endpoint = endpoints.serverFromString(reactor, f"{where}:passphrase=file\\:{pki.passphrase_txt}")
    assert isinstance(endpoint, TLSServerEndpoint)


@pytest_twisted.ensureDeferred
async def test_unescaped_pin_colon_explained(pki: PKI) -> None:
    digest = (
        x509.load_pem_x509_certificate(Path(pki.server_pem).read_bytes()).fingerprint(hashes.SHA256()).hex()
    )
    port = await securesock.serverFromString(
        reactor, f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}"
    ).listen(Factory.forProtocol(Shout))
    try:
        where = f"securesock:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}"
        with pytest.raises(DescriptionError, match=r"escape the colon \(pin=sha256\\:\.\.\.\)"):
            endpoints.clientFromString(reactor, f"{where}:pin=sha256:{digest}")
        client = endpoints.clientFromString(reactor, f"{where}:pin=sha256\\:{digest}")
        protocol = Collect()
        await client.connect(Factory.forProtocol(lambda: protocol))
        assert await protocol.done == b"HELLO alpn=none\n"
    finally:
        await port.stopListening()
