"""Parsing descriptions: both spellings, every option's errors, no secrets in messages."""

from __future__ import annotations

import pytest

from securesock import DescriptionError, TLSVersion
from securesock._description import parseClient, parseServer
from securesock._options import ClientOptions, ClientVerification, Passphrase, ServerOptions


def server(text: str) -> ServerOptions:
    result = parseServer(text)
    assert isinstance(result, ServerOptions)
    return result


def client(text: str) -> ClientOptions:
    result = parseClient(text)
    assert isinstance(result, ClientOptions)
    return result


def error(text: str, side: str = "server") -> DescriptionError:
    with pytest.raises(DescriptionError) as caught:
        (parseServer if side == "server" else parseClient)(text)
    return caught.value


def test_server_twisted_form() -> None:
    options = server(
        "tls:8443:interface=127.0.0.1:backlog=10:certificate=site.pem:protocols=TLS1+TLS1_2:alpn=h2,http/1.1"
    )
    assert (options.port, options.interface, options.backlog) == (8443, "127.0.0.1", 10)
    assert options.policy.protocols == {TLSVersion.TLS1, TLSVersion.TLS1_2}
    assert options.policy.alpn == (b"h2", b"http/1.1")
    assert options.policy.identity.certificate == "site.pem"


def test_twisted_ssl_names_and_default_key() -> None:
    options = server(
        "ssl:443:privateKey=key.pem:certKey=cert.pem:extraCertChain=chain.pem:dhParameters=dh.pem"
    )
    identity = options.policy.identity
    assert (identity.privateKey, identity.certificate, identity.extraCertChain) == (
        "key.pem",
        "cert.pem",
        "chain.pem",
    )
    assert options.dhParameters == "dh.pem"
    # Twisted's ssl: server falls back to server.pem; existing strings keep working.
    assert server("ssl:443").policy.identity.privateKey == "server.pem"
    assert server("ssl:443:sslmethod=TLSv1_2_METHOD").policy.protocols == {TLSVersion.TLS1_2}


def test_tls_server_requires_certificate() -> None:
    assert "needs a certificate: add certificate=FILE" in str(error("tls:8443"))


def test_url_forms() -> None:
    options = server("tls://[::1]:8443?certificate=/etc/site.pem&protocols=TLS1_2+TLS1_3")
    assert (options.interface, options.port) == ("::1", 8443)
    assert options.policy.protocols == {TLSVersion.TLS1_2, TLSVersion.TLS1_3}  # '+' is not a space
    assert server("tls://:8443?certificate=a.pem").interface is None
    c = client("tls://example.com:443?hostname=www.example.com&alpn=h2")
    assert (c.host, c.port, c.serverName) == ("example.com", 443, "www.example.com")
    assert client("tls://[fe80::1%25eth0]:443").host == "fe80::1%eth0"
    # nested descriptions need no escaping in a URL
    assert (
        server("tls://?port=0&certificate=a.pem&endpoint=unix:/run/app.sock").endpoint == "unix:/run/app.sock"
    )


def test_other_prefixes_go_to_twisted() -> None:
    assert parseServer("tcp:80:interface=127.0.0.1") == "tcp:80:interface=127.0.0.1"
    assert parseServer("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"
    assert parseServer("tcp://[::1]:80") == "tcp:80:interface=\\:\\:1"
    assert parseClient("tcp://[fe80::1]:80") == "tcp:host=fe80\\:\\:1:port=80"
    assert parseServer("unix:///run/a.sock") == "unix:/run/a.sock"
    assert parseClient("unix:///run/a.sock?timeout=3") == "unix:path=/run/a.sock:timeout=3"


def test_escapes() -> None:
    assert server("tls:8443:interface=\\:\\:1:certificate=C\\:/site.pem").interface == "::1"
    assert server("tls:8443:certificate=a\\=b.pem").policy.identity.certificate == "a=b.pem"
    assert "lone backslash" in str(error("tls:8443:certificate=a.pem\\"))


def test_passphrase_sources_and_secrecy() -> None:
    assert server("tls:1:certificate=a.pem:passphrase=env:KEYPASS").policy.identity.passphrase == Passphrase(
        "env", "KEYPASS"
    )
    assert server(
        "tls:1:certificate=a.pem:passphrase=file:/run/pass"
    ).policy.identity.passphrase == Passphrase("file", "/run/pass")
    assert server(
        "tls:1:certificate=a.pem:passphrase=env\\:KEYPASS"
    ).policy.identity.passphrase == Passphrase("env", "KEYPASS")
    e = error("tls:1:certificate=a.pem:passphrase=hunter2-secret")
    assert "hunter2-secret" not in str(e) and e.value is None
    assert "env:VARIABLE or file:PATH" in str(e)
    assert "no certificate= or privateKey=" in str(error("tls:1:passphrase=env:X"))


@pytest.mark.parametrize(
    "description, side",
    [
        ("tls:1:certificate=a.p12:passphrase=hunter2:XYZZY", "server"),  # a ':' cut the passphrase
        ("tls:h:1:certificate=a.p12:passphrase=hunter2:XYZZY", "client"),
        ("tls:1:certificate=a.p12:passphrase=hunter2\\:XYZZY:backlog=5", "server"),
    ],
)
def test_a_passphrase_cut_by_a_colon_is_not_shown_in_part(description: str, side: str) -> None:
    """The passphrase is refused before its stray piece could be named as a positional argument."""
    e = error(description, side)
    assert "hunter2" not in str(e) and "XYZZY" not in str(e) and e.option == "passphrase"


def test_a_passphrase_in_a_url_split_by_twisted_is_not_shown_in_part() -> None:
    """twistd web --listen 'securesock://...&passphrase=a:b': Twisted's tokenizer cut it at the colon."""
    from securesock._arguments import fromArguments

    with pytest.raises(DescriptionError) as caught:
        fromArguments(
            "securesock", ["//", "XYZZY"], {"20527?certificate": "a.p12&passphrase=hunter2"}, "server"
        )
    assert "hunter2" not in str(caught.value) and "XYZZY" not in str(caught.value)
    assert caught.value.option == "passphrase"


@pytest.mark.parametrize(
    "text, shown",
    [
        ("'tls:1:passphrase=hunter2:XYZZY'", "'tls:1:passphrase=(not shown)'"),
        ("'tls:1:passphrase=hunter2:XYZZY:backlog=5'", "'tls:1:passphrase=(not shown):backlog=5'"),
        ("'tls:1:passphrase=hun\\\\:ter2:backlog=5'", "'tls:1:passphrase=(not shown):backlog=5'"),
        ("tls://:1?passphrase=hunter2&backlog=5", "tls://:1?passphrase=(not shown)&backlog=5"),
        ("passphrase=a=b:c", "passphrase=(not shown)"),
        ("tls:1:passphrase=env:KEYPASS:backlog=5", "tls:1:passphrase=env:KEYPASS:backlog=5"),
        ("tls:1:passphrase=file:/run/pass", "tls:1:passphrase=file:/run/pass"),
        # a value ending in a backslash: the message goes on after the quote
        (
            "description 'tls:1:passphrase=hunter2\\\\' ends with a lone backslash; write \\\\",
            "description 'tls:1:passphrase=(not shown)' ends with a lone backslash; write \\\\",
        ),
        # a quote inside the passphrase is part of it
        ('"tls:1:passphrase=hun\'ter2:certificate=x"', '"tls:1:passphrase=(not shown):certificate=x"'),
        # a URL's user information may carry a password
        ("'tls://u:hunter2@127.0.0.1:1?a=b'", "'tls://u:(not shown)@127.0.0.1:1?a=b'"),
        ("'tls://[::1]:8443?certificate=a.pem'", "'tls://[::1]:8443?certificate=a.pem'"),
        # a quoted path in a message about the file is not a typed passphrase
        ("passphrase='/run/pass': no such file", "passphrase='/run/pass': no such file"),
    ],
)
def test_quoted_descriptions_hide_typed_passphrases(text: str, shown: str) -> None:
    from securesock._errors import redactSecrets

    assert redactSecrets(text) == shown


def test_pins() -> None:
    digest = "ab" * 32
    c = client(f"tls:h:1:pin=sha256:{digest},sha1:{'cd' * 20}")
    assert [str(p) for p in c.pins] == [f"sha256:{digest}", f"sha1:{'cd' * 20}"]
    spaced = " ".join("ab" for _ in range(32))
    assert client(f"tls://h:1?pin=sha256:{spaced}").pins[0].digest == bytes.fromhex(digest)
    assert "sha256 needs 64 hex digits, got 2" in str(error("tls:h:1:pin=sha256:00", "client"))
    assert "does not start with sha256: or sha1:" in str(error("tls://h:1?pin=md5:00", "client"))
    assert "is not hexadecimal" in str(error(f"tls:h:1:pin=sha256:{'zz' * 32}", "client"))


def test_client_positional_and_keywords() -> None:
    assert (client("tls:example.com:443").host, client("tls:example.com:443").port) == ("example.com", 443)
    assert client("tls:host=example.com:port=443").port == 443
    assert client("tls:example.com:port=443").host == "example.com"
    assert client("tls:host=example.com:443").port == 443
    c = client(
        "ssl:example.com:443:caCertsDir=/etc/ssl/certs:certKey=c.pem:privateKey=k.pem:timeout=2.5:bindAddress=127.0.0.1"
    )
    assert (c.trustRoots, c.policy.identity.certificate, c.timeout, c.bindAddress) == (
        "/etc/ssl/certs",
        "c.pem",
        2.5,
        "127.0.0.1",
    )
    assert c.verify is True
    assert client("tls:h:1:verify=no").verify is False
    assert "has no port" in str(error("tls:example.com", "client"))
    assert "a client needs the server's port" in str(error("tls:example.com:0", "client"))


@pytest.mark.parametrize(
    "text, side, fragments",
    [
        (
            "tls:8443:certificat=a.pem",
            "server",
            ["unknown server option 'certificat'", "did you mean 'certificate'?"],
        ),
        ("tls:8443:certificate=a.pem:hostname=x", "server", ["'hostname' is a client option"]),
        ("tls:h:1:verifyClient=require", "client", ["'verifyClient' is a server option"]),
        ("tls:99999:certificate=a", "server", ["port='99999'", "out of range 0..65535"]),
        ("tls:eighty:certificate=a", "server", ["port='eighty'", "not a whole number"]),
        ("tls:1:certificate=a:backlog=0", "server", ["backlog='0'", "1..65535"]),
        ("tls:h:1:timeout=soon", "client", ["timeout='soon'", "not a number"]),
        ("tls:h:1:verify=maybe", "client", ["verify='maybe'", "yes, no"]),
        (
            "tls:1:certificate=a:protocols=TLS13",
            "server",
            ["unknown protocol flag 'TLS13'", "did you mean TLS1_3?"],
        ),
        (
            "tls:1:certificate=a:verifyClient=always",
            "server",
            ["verifyClient='always'", "none, optional, require"],
        ),
        ("tls:1:certificate=a:verifyClient=require", "server", ["needs caCerts="]),
        ("tls:1:certificate=a:caCerts=ca.pem", "server", ["verifyClient=none", "add verifyClient=require"]),
        (
            "tlsv1.2:1:certificate=a:protocols=TLS1_3",
            "server",
            ["tlsv1.2: already fixes the protocol to TLS1_2"],
        ),
        ("tls:1:certificate=a:protocols=TLS1_2:sslmethod=TLSv1_2_METHOD", "server", ["keep protocols="]),
        ("tls:1:certificate=a:sslmethod=TLSv9_METHOD", "server", ["not an OpenSSL method name"]),
        ("tls:1:certificate=a:alpn=h2,,http/1.1", "server", ["an empty protocol name"]),
        ("tls:1:certificate=a:alpn=" + "x" * 300, "server", ["longer than 255 bytes"]),
        ("tls:1:certificate=a:certKey=b", "server", ["certificate is given twice"]),
        ("tls:1:certificate=", "server", ["certificate= is empty"]),
        ("tls:1:2:certificate=a", "server", ["unexpected positional argument '2'"]),
        ("tls:1:extraCertChain=chain.pem", "server", ["extraCertChain= needs a certificate"]),
        ("tls://user@host:1", "client", ["user information"]),
        ("tls://h:1/path", "client", ["a path ('/path') is not meaningful"]),
        ("tls://h:1?alpn", "client", ["has no '='"]),
        ("", "server", ["the description is empty"]),
        ("tls:1:certificate=a\0", "server", ["NUL"]),
        ("tls:h:1:pin=md5:00", "client", ["pin='md5:00'", "does not start with sha256: or sha1:"]),
        ("tls:h:1:pin=sha512:00", "client", ["pin='sha512:00'", "sha256:HEX (64 hex digits)"]),
        ("tls:certificate=a", "server", ["has no port"]),
        ("tls:host=h", "client", ["has no port"]),
        # Checked when the description is read, not at the first connection.
        ("tls:h:1:hostname=x y", "client", ["hostname='x y'", "not a DNS name or an IP address"]),
        ("tls:h:1:hostname=bad_name!", "client", ["hostname='bad_name!'", "IPv4/IPv6 literal"]),
        ("tls:host=x y:port=1", "client", ["host='x y'", "not a DNS name"]),
        # Refused by Twisted's IDNA encoding at the first connection (underscore, empty or long labels).
        ("tls:my_host.example:1", "client", ["host='my_host.example'", "not a DNS name"]),
        ("tls:h:1:hostname=a..b", "client", ["hostname='a..b'", "not a DNS name"]),
        ("tls:h:1:hostname=-a.com", "client", ["hostname='-a.com'", "inner '-'"]),
        ("tls:h:1:hostname=" + "x" * 64 + ".com", "client", ["not a DNS name", "up to 63 characters"]),
        ("tls:h:1:bindAddress=notanip", "client", ["bindAddress='notanip'", "an IPv4 or IPv6 literal"]),
        ("tls:127.0.0.1:1:bindAddress=\\:\\:1", "client", ["an IPv6 address cannot reach host 127.0.0.1"]),
        ("tls://[::1]:1?bindAddress=127.0.0.1", "client", ["give an IPv6 local address"]),
        ("tls:h:1:bindAddress=999.1.1.1", "client", ["bindAddress='999.1.1.1'", "not an IP address"]),
        ("tls://:443", "client", ["has no host"]),
        ("tls://h", "client", ["has no port"]),
        ("tls:[::1]:443", "client", ["'1]'", "escape them", "tls://[::1]:443"]),
        ("tls:h:1:pin=sha256:AE:D5:00", "client", ["'D5'", "pin=", "leave the colons out"]),
        ("tls:host=h:port=1:x", "client", ["'x'", "host and port are given as name=value"]),
        ("tls:8443:interface=::1:certificate=a", "server", ["interface= was cut off at a ':'", "\\:\\:1"]),
    ],
)
def test_errors_name_option_value_and_accepted(text: str, side: str, fragments: list[str]) -> None:
    message = str(error(text, side))
    for fragment in fragments:
        assert fragment in message, message


def test_error_is_value_error_with_fields() -> None:
    e = error("tls:1:certificate=a:backlog=x")
    assert isinstance(e, ValueError)
    assert (e.option, e.value) == ("backlog", "x")


def test_verify_client_modes() -> None:
    options = server("tls:1:certificate=a:verifyClient=Require:caCerts=ca.pem")
    assert options.verifyClient is ClientVerification.REQUIRE and options.caCerts == "ca.pem"


def test_options_are_immutable() -> None:
    options = server("tls:1:certificate=a")
    with pytest.raises(AttributeError):
        options.port = 2  # type: ignore[misc]


def test_wrapped_endpoint_needs_no_port() -> None:
    # endpoint= says where to listen or connect; host is still the name verified.
    assert server("tls:endpoint=unix\\:/run/app.sock:certificate=a").endpoint == "unix:/run/app.sock"
    options = client("tls:host=api.internal:endpoint=unix\\:/run/app.sock")
    assert (options.serverName, options.endpoint) == ("api.internal", "unix:/run/app.sock")
    assert str(error("tls:h:0", "client")).startswith("port=0: a client needs the server's port")


@pytest.mark.parametrize(
    "text, side, fragment",
    [
        ("tls:-1:certificate=a.pem", "server", "port='-1': out of range 0..65535"),
        (
            "tls:8443:certificate=a.pem:port=8444",
            "server",
            "port is given twice ('8443' by position and as port=)",
        ),
        (
            "tls:8443:certificate=a.pem:certKey=b.pem",
            "server",
            "given twice (as certificate= and as certKey=)",
        ),
        ("tls:8443:certificate=a.pem:pasword=x", "server", "(did you mean 'passphrase'?)"),
        ("tls:8443:certificate=a.pem:cafile=ca.pem", "server", "(did you mean 'caCerts'?)"),
        ("tls:h:443:cafile=ca.pem", "client", "(did you mean 'trustRoots'?)"),
        ("tls:h:443:servername=x", "client", "(did you mean 'hostname'?)"),
        ("tls:8443:certificate=a.pem:certfile=a.pem", "server", "(did you mean 'certificate'?)"),
        (
            "tls::8443:certificate=a.pem",
            "server",
            "tls::8443: a ':' too many before the port; write tls:8443:...",
        ),
        ("tls:8443:certificate=a.pem:", "server", "the description ends with ':' or holds '::'"),
        # OpenSSL's ':' between cipher strings, cut by the description's own ':'
        (
            "tls:h:443:ciphers=DEFAULT:@SECLEVEL=0",
            "client",
            "unknown client option '@SECLEVEL': ciphers= takes ','",
        ),
        (
            "tls:8443:certificate=a:ciphers=ECDHE+AESGCM:ECDHE+CHACHA20",
            "server",
            "ciphers= takes ',' between",
        ),
        ("tls:8443:certificate=a:ciphers=ECDHE+AESGCM:!aNULL", "server", "ciphers= takes ',' between"),
        (
            "tls:8443:certificate=a:protocols=TLS1_2,TLS1_3",
            "server",
            "flags are joined with '+' (TLS1_2+TLS1_3), not with ','",
        ),
        ("tls:8443:certificateHash=sha1:9da484fcf66292909a62d4ca65fb087e0645de24", "server", "drop 'sha1:'"),
        (
            "tlsv1.3:8443:certificate=a.pem:ciphers=ECDHE+AESGCM",
            "server",
            "has no effect with the prefix tlsv1.3: (only TLS 1.3): ciphers= chooses the cipher suites of "
            "TLS 1.2 and below; TLS 1.3's suites are OpenSSL's",
        ),
        (
            "tls://127.0.0.1:8443?certificateHash=sha256:ab",
            "server",
            "drop 'sha256:' (the digest name goes in pin=",
        ),
    ],
)
def test_mistakes_are_named_in_the_users_words(text: str, side: str, fragment: str) -> None:
    assert fragment in error(text, side).message


def test_a_stray_word_after_ciphers_is_not_blamed_on_ciphers() -> None:
    message = error("tls:8443:certificate=a:ciphers=HIGH:extra", "server").message
    assert "unexpected positional argument 'extra'" in message and "ciphers= takes" not in message


def test_the_option_that_chose_the_versions_is_remembered() -> None:
    assert server("ssl:8443:certificate=a.pem:sslmethod=TLSv1_2_METHOD").policy.protocolsOption == "sslmethod"
    assert server("tls:8443:certificate=a.pem:protocols=TLS1_2").policy.protocolsOption == "protocols"


@pytest.mark.parametrize(
    "text, host, hostname, bind",
    [
        ("tls:bücher.example:443", "bücher.example", None, None),
        ("tls:h:1:hostname=10.0.0.1:bindAddress=127.0.0.1", "h", "10.0.0.1", "127.0.0.1"),
        ("tls://[::1]:443?hostname=localhost&bindAddress=[::1]", "::1", "localhost", "::1"),
        ("tls:localhost.:443", "localhost.", None, None),
    ],
)
def test_names_and_addresses_that_are_accepted(
    text: str, host: str, hostname: str | None, bind: str | None
) -> None:
    options = client(text)
    assert (options.host, options.hostname, options.bindAddress) == (host, hostname, bind)
