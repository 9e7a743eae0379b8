"""
Every protocol version a policy enables, tried in memory before anything
listens or connects.

OpenSSL takes cipher strings and version ranges that can never meet, and
says so only when a peer connects ("no shared cipher"): C{ciphers=ECDHE+AESGCM}
with C{protocols=TLS1} (GCM suites need TLS 1.2), ECDSA suites with an RSA
certificate, DHE suites without C{dhParameters=}, an Ed25519 certificate
under TLS 1.0.  A server context is made to complete one handshake per
enabled version with a client offering every suite OpenSSL has; a client
context to write its ClientHello at each version.  What fails is reported
with the description, as every other mistake is.

Results are kept per combination of policy and key (type and size, and the
certificate's signature algorithm): a store of a thousand certificates of
one kind costs one rehearsal per version, not a thousand.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from ._errors import DescriptionError, opensslReasons
from ._options import TLSPolicy
from ._versions import TLSVersion, formatProtocols

__all__ = ["rehearseServer", "rehearseClient", "usableSuites", "moveAll", "keyText"]

_ROUNDS = 8  # a TLS 1.2 handshake takes two round trips, 1.3 one: ample
_CACHE_LIMIT = 256
_rehearsed: dict[Hashable, tuple[TLSVersion, str] | None] = {}


def _remember(key: Hashable, result: tuple[TLSVersion, str] | None) -> None:
    if len(_rehearsed) >= _CACHE_LIMIT:
        _rehearsed.clear()
    _rehearsed[key] = result


def _reason(error: SSL.Error) -> str:
    return "; ".join(dict.fromkeys(opensslReasons(error))) or "handshake failed"


def _versionOnly(version: TLSVersion, ciphers: bytes) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(int(version))
    context.set_max_proto_version(int(version))
    context.set_cipher_list(ciphers)
    return context


def moveAll(source: SSL.Connection, target: SSL.Connection) -> bool:
    """What C{source} has sent, into C{target}'s receive BIO; whether there was anything."""
    try:
        data = source.bio_read(2**20)
    except SSL.WantReadError:
        return False
    target.bio_write(data)
    return True


_EVERY_SUITE = b"ALL:COMPLEMENTOFALL:@SECLEVEL=0"


def _handshake(server: SSL.Context, version: TLSVersion, suites: bytes = _EVERY_SUITE) -> str | None:
    """None if a client offering C{suites} at C{version} completes a handshake with C{server}."""
    serving = SSL.Connection(server, None)
    serving.set_accept_state()
    client = SSL.Connection(_versionOnly(version, suites), None)
    client.set_connect_state()
    done = {id(serving): False, id(client): False}
    for _ in range(_ROUNDS):
        for connection in (client, serving):
            if done[id(connection)]:
                continue
            try:
                connection.do_handshake()
                done[id(connection)] = True
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                if connection is serving:
                    return _reason(e)
                try:  # the client heard an alert: the server's own reason says more
                    serving.do_handshake()
                except SSL.WantReadError:
                    return _reason(e)  # the server heard nothing: the client could not start
                except SSL.Error as serverError:
                    return _reason(serverError)
                return _reason(e)
        moved = moveAll(client, serving) | moveAll(serving, client)
        if all(done.values()):
            return None
        if not moved:
            break
    return "the handshake did not complete"


def keyText(certificate: x509.Certificate) -> str:
    """A certificate's key in a few words for messages: C{RSA-2048}, C{ECDSA secp256r1}, C{Ed25519}."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


def _failure(policy: TLSPolicy, version: TLSVersion, reason: str, what: str) -> DescriptionError:
    versions = formatProtocols(policy.protocols)
    if policy.ciphers is not None:
        return DescriptionError(
            f"ciphers={policy.ciphers!r} leaves no cipher suite that {version.displayName} can use "
            f"{what} (OpenSSL: {reason}); accepted: suites of that version for that key (list "
            f"them with: openssl ciphers -v -s -{version.name.lower()} {policy.ciphers!r}), or "
            f"protocols= without {version.name} (now {versions})",
            option="ciphers",
            value=policy.ciphers,
        )
    return DescriptionError(
        f"protocols={versions}: {version.displayName} cannot be used {what} (OpenSSL: {reason}); "
        f"remove {version.name} from protocols=, or use a certificate whose key that version supports "
        "(RSA works with every version)",
        option="protocols",
        value=versions,
    )


def rehearseServer(
    policy: TLSPolicy,
    certificate: x509.Certificate,
    rehearsal: Callable[[], SSL.Context],
    dhParameters: str | None,
) -> None:
    """
    Complete a handshake in memory at each version C{policy} enables, with
    a context from C{rehearsal} (the server's, but asking clients for no
    certificate: pyOpenSSL lets no context change once it has made a
    connection, so the server's own cannot be used).  C{dhParameters}: the
    server's option of that name, which its DHE suites depend on.

    @raise DescriptionError: naming the first version no client could use.
    """
    key = (
        "server",
        policy.protocols,
        policy.ciphers,
        dhParameters,
        keyText(certificate),
        certificate.signature_algorithm_oid.dotted_string,
    )
    if key in _rehearsed:
        failed = _rehearsed[key]
    else:
        context = rehearsal()
        failed = None
        for version in sorted(policy.protocols):
            reason = _handshake(context, version)
            if reason is not None:
                failed = (version, reason)
                break
        _remember(key, failed)
    if failed is not None:
        version, reason = failed
        what = f"with the {keyText(certificate)} certificate"
        if dhParameters is None and re.search(r"(?<!EC)(DHE|EDH)", policy.ciphers or "", re.IGNORECASE):
            what += " (DHE suites also need dhParameters=FILE)"
        raise _failure(policy, version, reason, what)


def usableSuites(server: SSL.Context, protocols: frozenset[TLSVersion], names: list[str]) -> list[str]:
    """
    Those of C{names} (OpenSSL's suite names; TLS 1.3's are kept as they are)
    that a client completes a handshake with, at one of C{protocols}: what
    C{securesock check} lists, tried one by one (a suite of the list may
    still need another key type, or dhParameters=).
    """
    older = sorted((v for v in protocols if v is not TLSVersion.TLS1_3), reverse=True)
    usable = []
    for name in names:
        if name.startswith("TLS_"):
            usable.append(name)
            continue
        for version in older:
            try:
                if _handshake(server, version, name.encode("ascii") + b":@SECLEVEL=0") is None:
                    usable.append(name)
                    break
            except SSL.Error:
                continue  # not a suite of this version
    return usable


def rehearseClient(policy: TLSPolicy, ciphers: str) -> None:
    """
    Write a ClientHello at each version C{policy} enables, with C{ciphers}
    (the cipher string the client context is given).

    @raise DescriptionError: naming the first version the client could not offer.
    """
    key = ("client", policy.protocols, ciphers)
    if key in _rehearsed:
        failed = _rehearsed[key]
    else:
        failed = None
        for version in sorted(policy.protocols):
            connection = SSL.Connection(_versionOnly(version, ciphers.encode("ascii")), None)
            connection.set_connect_state()
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                continue  # the ClientHello was written
            except SSL.Error as e:
                failed = (version, _reason(e))
                break
        _remember(key, failed)
    if failed is not None:
        version, reason = failed
        raise _failure(policy, version, reason, "by this client")
