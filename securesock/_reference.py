"""
The options reference, rendered from the option table.

docs/reference.md holds this rendering between two markers; a test compares
them, and ``python -m securesock._reference --write`` refreshes the file, so
a new option cannot go undocumented.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._description import TLS_PREFIXES, parseClient, parseServer
from ._errors import DescriptionError
from ._optiontable import CLIENT, OPTIONS, SERVER, Option
from ._versions import formatProtocols

__all__ = ["renderReference", "BEGIN", "END", "BAD_VALUES"]

# One wrong value per option, parsed to show the error it gets.  Every option
# of the table must have one (rendering fails otherwise), so a new option
# cannot go without its error example either.
BAD_VALUES: dict[str, tuple[str, str]] = {
    "port": (SERVER, "tls:99999:certificate=site.pem"),
    "interface": (SERVER, "tls:8443:certificate=site.pem:interface="),
    "backlog": (SERVER, "tls:8443:certificate=site.pem:backlog=0"),
    "host": (CLIENT, "tls:host=:port=443"),
    "timeout": (CLIENT, "tls:example.com:443:timeout=-1"),
    "bindAddress": (CLIENT, "tls:example.com:443:bindAddress="),
    "protocols": (SERVER, "tls:8443:certificate=site.pem:protocols=TLS12"),
    "sslmethod": (SERVER, "ssl:8443:certificate=site.pem:sslmethod=TLSv1_3_METHOD"),
    "ciphers": (SERVER, "tls:8443:certificate=site.pem:ciphers="),
    "alpn": (CLIENT, "tls:example.com:443:alpn=h2,,http/1.1"),
    "certificate": (SERVER, "tls:8443:certificate="),
    "certificateHash": (SERVER, "tls:8443:certificateHash=9da484"),
    "store": (SERVER, "tls:8443:certificate=web:store="),
    "sniStrict": (SERVER, "tls:8443:certificate=site.pem:sniStrict=maybe"),
    "privateKey": (SERVER, "tls:8443:certificate=site.crt:privateKey="),
    "extraCertChain": (SERVER, "tls:8443:certificate=site.pem:extraCertChain="),
    "passphrase": (SERVER, "tls:8443:certificate=site.p12:passphrase=secret"),
    "dhParameters": (SERVER, "tls:8443:certificate=site.pem:dhParameters="),
    "verifyClient": (SERVER, "tls:8443:certificate=site.pem:verifyClient=always:caCerts=ca.pem"),
    "caCerts": (SERVER, "tls:8443:certificate=site.pem:verifyClient=require:caCerts="),
    "trustRoots": (CLIENT, "tls:example.com:443:trustRoots="),
    "hostname": (CLIENT, "tls:10.0.0.5:443:hostname="),
    "verify": (CLIENT, "tls:example.com:443:verify=maybe"),
    "pin": (CLIENT, "tls:example.com:443:pin=sha256:00"),
    "noDelay": (SERVER, "tls:8443:certificate=site.pem:noDelay=maybe"),
    "reusePort": (SERVER, "tls:8443:certificate=site.pem:reusePort=maybe"),
    "exclusive": (SERVER, "tls:8443:certificate=site.pem:exclusive=maybe"),
    "handshakeTimeout": (SERVER, "tls:8443:certificate=site.pem:handshakeTimeout=0"),
    "maxHandshakes": (SERVER, "tls:8443:certificate=site.pem:maxHandshakes=0"),
    "endpoint": (CLIENT, "tls:example.com:443:endpoint="),
    "dialect": (SERVER, "starttls:587:certificate=site.pem:dialect=http"),
}

BEGIN = "<!-- generated from securesock/_optiontable.py: begin -->"
END = "<!-- generated from securesock/_optiontable.py: end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(side: str) -> list[str]:
    rows = [
        "| option | aliases | accepted | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        if side in option.sides:
            rows.append(_row(option))
    return rows


def _row(option: Option) -> str:
    aliases = ", ".join(f"`{a}`" for a in option.aliases) or ""
    return (
        f"| `{option.name}` | {aliases} | {_cell(option.accepted)} | {_cell(option.default)} "
        f"| {_cell(option.help)} |"
    )


def _errorFor(option: Option) -> str:
    if option.name not in BAD_VALUES:
        raise KeyError(f"option {option.name!r} has no example of a bad value in BAD_VALUES")
    side, description = BAD_VALUES[option.name]
    try:
        (parseServer if side == SERVER else parseClient)(description)
    except DescriptionError as e:
        return f"| `{option.name}` | `{description}` | {_cell(str(e))} |"
    raise ValueError(f"BAD_VALUES[{option.name!r}] = {description!r} is accepted; give a value it refuses")


def renderReference() -> str:
    """The generated part of docs/reference.md."""
    lines = [BEGIN, "", "### Prefixes", "", "| prefix | protocol versions |", "|---|---|"]
    for prefix, pinned in TLS_PREFIXES.items():
        versions = formatProtocols(pinned) if pinned else "`protocols=` (default TLS1_2+TLS1_3)"
        lines.append(f"| `{prefix}:` | {versions} |")
    lines += [
        "",
        "### Server options",
        "",
        *_table(SERVER),
        "",
        "### Client options",
        "",
        *_table(CLIENT),
        "",
        "### Errors for bad values",
        "",
        "Values are checked when the description is read; files, store names and",
        "thumbprints when the endpoint is built ([troubleshooting](troubleshooting.md)),",
        "and then whether each protocol version can be spoken with `ciphers=` and",
        "the certificate's key: a server completes one handshake in memory per",
        "version, a client writes one ClientHello per version (`ciphers=ECDHE+AESGCM`",
        "with `protocols=TLS1` is refused there: GCM suites need TLS 1.2).",
        "",
        "<!-- doctest: errors -->",
        "",
        "| option | you wrote | you get (DescriptionError) |",
        "|---|---|---|",
        *(_errorFor(option) for option in OPTIONS),
        "",
        "<!-- doctest: end -->",
        "",
        END,
    ]
    return "\n".join(lines)


def _write(path: Path) -> None:
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + renderReference() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write(Path(__file__).resolve().parent.parent / "docs" / "reference.md")
    else:
        print(renderReference())
