"""
TLS policy: typed options + loaded material -> a configured pyOpenSSL
C{Context}.

One context is built per endpoint, when the endpoint is built, so every
mistake surfaces then; connections only wrap it.  Defaults follow Mozilla's
"intermediate" profile: TLS 1.2 and 1.3, forward-secret AEAD suites, no
compression, no renegotiation, the server's cipher order.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.logger import Logger

from ._der import DERError, element
from ._errors import CertificateError, DescriptionError, opensslReasons
from ._material import Identity, checkReadableFile, fingerprint, loadCertificates
from ._options import ClientOptions, ClientVerification, ServerOptions, TLSPolicy
from ._protocols import versionSettings
from ._rehearsal import keyText, rehearseClient, rehearseServer
from ._versions import formatProtocols

__all__ = [
    "INTERMEDIATE_CIPHERS",
    "LEGACY_CIPHERS",
    "serverContext",
    "clientContext",
    "acceptableProtocols",
    "sessionContextID",
    "installServerNameCallback",
]

log = Logger()

# Mozilla's "intermediate" TLS 1.2 suites (server side, v5.7).
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)
# Added only when TLS 1.0 or 1.1 is asked for: those versions have no AEAD
# suites, so without these they could never complete a handshake.
LEGACY_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-SHA",
        "AES256-SHA",
    ]
)

# Key exchange groups a server accepts: Mozilla intermediate's X25519, P-256
# and P-384, after the post-quantum hybrid where OpenSSL has it (3.5+).
# OpenSSL's own default adds X448, P-521 and finite-field groups, which the
# Mozilla profile (and sslyze's check of it) rejects.
SERVER_GROUPS = (b"X25519MLKEM768:X25519:prime256v1:secp384r1", b"X25519:prime256v1:secp384r1")
# With dhParameters= (the DHE suites), RFC 7919's groups too: a client that
# names finite-field groups (OpenSSL 4's does) gets a DHE suite only on one
# of those (RFC 7919, section 4); the file's group serves the other clients.
FINITE_FIELD_GROUPS = b":ffdhe2048:ffdhe3072:ffdhe4096"


_MODE_ENABLE_PARTIAL_WRITE = 0x1  # SSL_MODE_ENABLE_PARTIAL_WRITE, a constant of the TLS API


def _limitGroups(context: SSL.Context, *, finiteField: bool = False) -> None:
    try:
        from OpenSSL.SSL import _lib  # type: ignore[attr-defined]

        setGroups = _lib.SSL_CTX_set1_curves_list
    except (ImportError, AttributeError):  # pragma: no cover - other pyOpenSSL versions
        return  # OpenSSL's defaults: wider, still all forward secret
    for groups in SERVER_GROUPS:
        if finiteField:
            groups += FINITE_FIELD_GROUPS
        if setGroups(context._context, groups) == 1:  # type: ignore[attr-defined]
            return
        _lib.ERR_clear_error()  # pragma: no cover - OpenSSL without the hybrid


def _baseContext(policy: TLSPolicy, *, server: bool, rehearsal: bool = False) -> SSL.Context:
    settings = versionSettings(policy.protocols, policy.protocolsOption, client=not server)
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(settings.minimum)
    context.set_max_proto_version(settings.maximum)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | settings.options
    if server:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    context.set_options(options)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # pyOpenSSL turns partial writes on: SSL_write would then stop after each
    # 16 KiB record; without, one call encrypts a whole application write
    # into the memory BIO (securesock._handshake hands it up to 64 KiB).
    context.clear_mode(_MODE_ENABLE_PARTIAL_WRITE)
    if server:
        _limitGroups(context)
    if policy.ciphers is not None:
        ciphers = policy.ciphers
    elif settings.legacy:
        ciphers = INTERMEDIATE_CIPHERS + ":" + LEGACY_CIPHERS
    else:
        ciphers = INTERMEDIATE_CIPHERS
    if settings.legacy:
        # OpenSSL 3+ refuses TLS 1.0/1.1 handshakes above security level 0.
        if "@SECLEVEL" not in ciphers.upper():
            ciphers += ":@SECLEVEL=0"
    if settings.legacy and not rehearsal:
        log.warn(
            "protocols {protocols}: TLS 1.0 and 1.1 are deprecated (RFC 8996) and "
            "enabled only because they were asked for; security level lowered to 0",
            protocols=formatProtocols(policy.protocols),
        )
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise DescriptionError(
            f"ciphers={policy.ciphers!r}: OpenSSL accepts none of these cipher suites; "
            "accepted: an OpenSSL cipher string such as ECDHE+AESGCM,ECDHE+CHACHA20 "
            "(see 'openssl ciphers -v')",
            option="ciphers",
            value=policy.ciphers,
        ) from None
    if not server:
        rehearseClient(policy, ciphers)
    return context


_DEFAULT_LEVEL = (
    2  # OpenSSL's default security level on current builds (distributions set it in openssl.cnf too)
)
# What each security level asks of keys (SSL_CTX_set_security_level(3)):
# (RSA and finite-field DH bits, EC bits).
_LEVEL_MINIMUM = {0: (0, 0), 1: (1024, 160), 2: (2048, 224), 3: (3072, 256), 4: (7680, 384), 5: (15360, 512)}
_SECLEVEL = re.compile(r"@SECLEVEL=(\d+)", re.IGNORECASE)


def _chosenLevel(ciphers: str | None) -> int | None:
    """The security level a ciphers= string sets (OpenSSL keeps the last @SECLEVEL), if it sets one."""
    levels = _SECLEVEL.findall(ciphers or "")
    return min(int(levels[-1]), 5) if levels else None


def _useIdentity(context: SSL.Context, identity: Identity, ciphers: str | None = None) -> None:
    try:
        context.use_certificate(identity.certificate)
        context.use_privatekey(identity.key)  # type: ignore[arg-type]
        for extra in identity.chain:
            context.add_extra_chain_cert(extra)
    except SSL.Error as e:
        # OpenSSL's own policy, e.g. "ee key too small" for RSA-1024 at the default security level.
        reasons = "; ".join(opensslReasons(e)) or "refused"
        level = _chosenLevel(ciphers)
        if level is not None and level > _DEFAULT_LEVEL:
            # ciphers= raised the bar: the certificate may well be fine at the default level.
            rsaBits, ecBits = _LEVEL_MINIMUM[level]
            raise CertificateError(
                f"OpenSSL refuses the certificate from {identity.source} ({reasons}; it has an "
                f"{keyText(identity.certificate)} key) at security level {level}, which ciphers={ciphers!r} "
                f"sets with @SECLEVEL={level}: level {level} requires at least a {rsaBits}-bit RSA or a "
                f"{ecBits}-bit EC key, signed with SHA-256 or better; use such a certificate, or remove "
                f"@SECLEVEL={level} from ciphers= (OpenSSL's default level {_DEFAULT_LEVEL} takes a "
                "2048-bit RSA or a 256-bit EC key)",
                option="ciphers",
                value=ciphers,
            ) from None
        raise CertificateError(
            f"OpenSSL refuses the certificate from {identity.source} ({reasons}); use a certificate "
            "with at least a 2048-bit RSA or a 256-bit EC key, signed with SHA-256 or better",
            option="certificate",
        ) from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise CertificateError(
            f"the private key from {identity.source} does not match its certificate",
            option="privateKey",
        ) from None


def _addTrust(context: SSL.Context, certificates: Iterable[x509.Certificate]) -> None:
    store = context.get_cert_store()
    assert store is not None
    for certificate in certificates:
        try:
            store.add_cert(crypto.X509.from_cryptography(certificate))
        except crypto.Error:
            pass  # the same certificate twice


def acceptableProtocols(tlsProtocol: Any, configured: Sequence[bytes]) -> list[bytes]:
    """
    ALPN names for one connection: the configured ones, then those the
    application's factory declares (L{IProtocolNegotiationFactory}, as
    C{twisted.web.server.Site} does), looked up through any wrapping factories.
    """
    names = list(configured)
    factory = getattr(getattr(tlsProtocol, "factory", None), "wrappedFactory", None)
    for _ in range(8):  # bounded walk through wrapping factories
        if factory is None:
            break
        negotiation = IProtocolNegotiationFactory(factory, None)
        if negotiation is not None:
            names.extend(p for p in negotiation.acceptableProtocols() if p not in names)
            break
        factory = getattr(factory, "wrappedFactory", None)
    return names


def _selectALPN(configured: Sequence[bytes]) -> Any:
    def select(connection: SSL.Connection, offered: list[bytes]) -> Any:
        # A client whose offer does not overlap gets no ALPN, as with nginx:
        # Twisted 26.4+ fails such handshakes (curl offers h2,http/1.1).
        try:
            for name in acceptableProtocols(connection.get_app_data(), configured):
                if name in offered:
                    return name
        except Exception:
            log.failure("while choosing an ALPN protocol")
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def sessionContextID(identity: Identity) -> bytes:
    """
    The session id context of an endpoint, chosen once from its first
    identity: every context of the endpoint (SNI, renewals) shares it, so a
    session stays resumable when a connection switches context.
    """
    # Deterministic, so that processes serving the same certificate accept
    # each other's TLS 1.2 sessions; at most 32 bytes as OpenSSL requires.
    return fingerprint(identity.certificate)[:16].hex().encode("ascii")


_UNRECOGNIZED_NAME = 112  # TLS alert unrecognized_name (RFC 6066)
_INTERNAL_ERROR = 80


def installServerNameCallback(context: SSL.Context, choose: Callable[[SSL.Connection], bool]) -> None:
    """
    Call C{choose(connection)} for every ClientHello (OpenSSL calls it with
    or without SNI); it may switch the connection's context, and returns
    False to refuse the name with an C{unrecognized_name} alert.

    pyOpenSSL's own callback can refuse only by raising, which it reports
    through C{sys.excepthook} (a traceback per refused client), so its cffi
    binding is used directly when available.
    """
    try:
        from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

        connections = SSL.Connection._reverse_mapping  # type: ignore[attr-defined]
        fatal = _lib.SSL_TLSEXT_ERR_ALERT_FATAL
    except (ImportError, AttributeError):  # pragma: no cover - other pyOpenSSL versions
        _installPublicServerNameCallback(context, choose)
        return

    def callback(ssl: Any, alert: Any, arg: Any) -> int:
        try:
            if choose(connections[ssl]):
                return 0  # SSL_TLSEXT_ERR_OK
            alert[0] = _UNRECOGNIZED_NAME
        except Exception:
            log.failure("while choosing a certificate by SNI")
            alert[0] = _INTERNAL_ERROR
        return fatal  # type: ignore[no-any-return]

    handle = _ffi.callback("int (*)(SSL *, int *, void *)", callback)
    context._securesockServerName = handle  # type: ignore[attr-defined]  # keep it alive
    _lib.SSL_CTX_set_tlsext_servername_callback(context._context, handle)  # type: ignore[attr-defined]


class _UnknownNameError(Exception):
    pass


def _installPublicServerNameCallback(  # pragma: no cover - other pyOpenSSL versions
    context: SSL.Context, choose: Callable[[SSL.Connection], bool]
) -> None:
    def callback(connection: SSL.Connection) -> None:
        if not choose(connection):
            raise _UnknownNameError(connection.get_servername())  # OpenSSL's default alert: unrecognized_name

    context.set_tlsext_servername_callback(callback)


_DH_PEM = re.compile(rb"-----BEGIN (?:X9\.42 )?DH PARAMETERS-----(.+?)-----END", re.DOTALL)


def _dhBits(path: str) -> int | None:
    """The size of the prime of the PEM DH parameters in C{path}; None if it holds none."""
    try:
        with open(path, "rb") as file:
            data = file.read(1 << 20)
    except OSError:
        return None
    found = _DH_PEM.search(data)
    if found is None:
        return None
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    # PKCS #3 DHParameter (and X9.42's DomainParameters) ::= SEQUENCE { p INTEGER, ... }
    try:
        _, sequence, _ = element(der, 0, 0x30)
        _, start, end = element(der, sequence, 0x02)
    except DERError:
        return None
    return int.from_bytes(der[start:end], "big").bit_length()


def _dhError(path: str, ciphers: str | None, reasons: list[str]) -> CertificateError:
    """Why OpenSSL refused the file of dhParameters=: none in it, or too small for the security level."""
    bits = _dhBits(path)
    if bits is None:
        return CertificateError(
            f"dhParameters={path!r} holds no PEM DH parameters "
            "(make some with 'openssl dhparam -out dh.pem 2048')",
            option="dhParameters",
            value=path,
        )
    if not any("too small" in r for r in reasons):
        return CertificateError(
            f"dhParameters={path!r}: OpenSSL refuses its {bits}-bit DH parameters "
            f"({'; '.join(reasons) or 'refused'}); make new ones with 'openssl dhparam -out dh.pem 2048'",
            option="dhParameters",
            value=path,
        )
    chosen = _chosenLevel(ciphers)
    if chosen is None:  # a system policy (openssl.cnf) may set more than the default
        level = max(
            _DEFAULT_LEVEL, min((n for n, (dhBits, _) in _LEVEL_MINIMUM.items() if dhBits > bits), default=5)
        )
    else:
        level = chosen
    needed = max(_LEVEL_MINIMUM[level][0], 2048)
    setBy = "OpenSSL's default" if chosen is None else f"set by ciphers={ciphers!r}"
    accepting = max(n for n, (dhBits, _) in _LEVEL_MINIMUM.items() if dhBits <= bits)
    return CertificateError(
        f"dhParameters={path!r} holds {bits}-bit DH parameters, too small: the security level "
        f"({level}, {setBy}) needs at least {_LEVEL_MINIMUM[level][0]} bits; make new ones with "
        f"'openssl dhparam -out dh.pem {needed}', or, if that is really wanted, lower the level with "
        f"ciphers=...,@SECLEVEL={accepting}",
        option="dhParameters",
        value=path,
    )


def serverContext(
    options: ServerOptions,
    identity: Identity,
    *,
    sessionID: bytes | None = None,
    authorities: Sequence[x509.Certificate] | None = None,
    rehearsal: bool = False,
) -> SSL.Context:
    """
    Build the context a server endpoint's connections share.  C{sessionID}
    (default: from C{identity}) and C{authorities} (default: read from
    C{caCerts=}) are given when an endpoint builds several contexts.
    Unless C{rehearsal} (the context is for that only), a copy of it that
    asks no client certificate first completes a handshake in memory at
    each protocol version (L{securesock._rehearsal}).
    """
    if not rehearsal:
        withoutClientCertificates = replace(options, verifyClient=ClientVerification.NONE, caCerts=None)
        rehearseServer(
            options.policy,
            identity.certificate,
            lambda: serverContext(withoutClientCertificates, identity, rehearsal=True),
            options.dhParameters,
        )
    context = _baseContext(options.policy, server=True, rehearsal=rehearsal)
    _useIdentity(context, identity, options.policy.ciphers)
    context.set_session_id(sessionID or sessionContextID(identity))
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    if options.dhParameters is not None:
        # A regular file of a sane size: OpenSSL would read a FIFO or /dev/zero without end.
        checkReadableFile(options.dhParameters, "dhParameters", "a PEM file of DH parameters")
        try:
            context.load_tmp_dh(options.dhParameters.encode())
            _limitGroups(context, finiteField=True)
        except SSL.Error as e:  # (OpenSSL's own read errors come as SSL.Error too)
            raise _dhError(options.dhParameters, options.policy.ciphers, opensslReasons(e)) from None
    if options.verifyClient is not ClientVerification.NONE:
        if authorities is None:
            assert options.caCerts is not None
            authorities = loadCertificates(options.caCerts, "caCerts")
        _addTrust(context, authorities)
        for authority in authorities:  # the CAs a client is told to choose from
            context.add_client_ca(authority)
        mode = SSL.VERIFY_PEER
        if options.verifyClient is ClientVerification.REQUIRE:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        context.set_verify(mode, lambda connection, cert, errno, depth, ok: bool(ok))
    context.set_alpn_select_callback(_selectALPN(options.policy.alpn))
    return context


def clientContext(
    options: ClientOptions, identity: Identity | None, *, trust: Sequence[x509.Certificate] | None = None
) -> SSL.Context:
    """
    Build the context a client endpoint's connections share.  C{trust}
    (default: read from C{trustRoots=}) is given when already resolved, as
    for C{trustRoots=store}.
    """
    context = _baseContext(options.policy, server=False)
    if identity is not None:
        _useIdentity(context, identity, options.policy.ciphers)
    if options.verify:
        if trust is not None:
            _addTrust(context, trust)
        elif options.trustRoots is None:
            context.set_default_verify_paths()
        else:
            _addTrust(context, loadCertificates(options.trustRoots, "trustRoots"))
    return context
