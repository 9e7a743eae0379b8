"""certificateHash= values: the forms people copy, and errors that say exactly what is wrong."""

from __future__ import annotations

import pytest

from securesock import DescriptionError
from securesock._description import parseClient, parseServer
from securesock._hashes import CertificateHash, looksLikeHash, parseCertificateHash, spaced

SEED = "9d a4 84 fc f6 62 92 90 9a 62 d4 ca 65 fb 08 7e 06 45 de 24"
DIGEST = bytes.fromhex(SEED.replace(" ", ""))
SHA256 = "5f" * 32


def error(value: str) -> str:
    with pytest.raises(DescriptionError) as caught:
        parseCertificateHash(value)
    assert caught.value.option == "certificateHash"
    return str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        SEED,
        SEED.replace(" ", ""),
        SEED.upper(),
        SEED.replace(" ", ":").upper(),  # openssl x509 -fingerprint
        "  " + SEED + "\t",
        "9da4 84fc f662 9290 9a62 d4ca 65fb 087e 0645 de24",
    ],
)
def test_sha1_forms(value: str) -> None:
    assert parseCertificateHash(value) == CertificateHash("sha1", DIGEST)


def test_sha256() -> None:
    parsed = parseCertificateHash(" ".join(SHA256[i : i + 2] for i in range(0, 64, 2)))
    assert parsed == CertificateHash("sha256", bytes.fromhex(SHA256))


def test_spaced_is_the_windev_form() -> None:
    assert spaced(DIGEST) == SEED
    assert str(CertificateHash("sha1", DIGEST)) == SEED


def test_letter_o_typed_for_zero_is_named_as_a_letter() -> None:
    mistyped = SEED.replace("06 45", "06 4o")
    text = error(mistyped)
    assert "character 53 is the letter 'o', not a hexadecimal digit" in text
    assert "the digit 0 was probably meant" in text
    assert mistyped[52] == "o"  # position 53, counted from 1


def test_seed_typed_with_of_for_0f() -> None:
    """The seed as typed by hand, '45 of 24' for '45 de 24'-style pairs: the 'o' and where it is."""
    mistyped = SEED.replace("45 de 24", "45 of 24")
    assert mistyped.endswith("06 45 of 24")
    text = error(mistyped)
    assert f"certificateHash={mistyped!r}: character 55 is the letter 'o', not a hexadecimal digit" in text
    assert mistyped[54] == "o"
    assert "the digit 0 was probably meant" in text
    assert "40" in text and "64" in text  # says what is accepted
    # the same in a description; without the spaces it is character 37
    with pytest.raises(DescriptionError, match="character 55 is the letter 'o'"):
        parseServer(f"tls:1:certificateHash={mistyped}")
    assert "character 37 is the letter 'o'" in error(mistyped.replace(" ", ""))


def test_capital_o_and_other_characters() -> None:
    assert "character 1 is the letter 'O'" in error("O" + SEED[1:])
    assert "character 3 is the character '-'" in error("9d-a4" + SEED[5:])
    assert "character 2 is the letter 'g'" in error("9g" + SEED[2:])
    assert "probably meant" not in error("9g" + SEED[2:])


def test_invisible_mark_copied_from_windows() -> None:
    text = error("\u200e" + SEED)
    assert "character 1 is the invisible character U+200E (LEFT-TO-RIGHT MARK)" in text
    assert "certificate manager" in text


@pytest.mark.parametrize(
    "digits, shown", [(39, "39 hex digits"), (41, "41 hex digits"), (63, "63 hex digits")]
)
def test_wrong_length_gives_count_and_both_lengths(digits: int, shown: str) -> None:
    text = error("a" * digits)
    assert f"{shown} found" in text
    assert "SHA-1 thumbprint has 40 and a SHA-256 one 64" in text


def test_seed_with_a_pair_missing() -> None:
    assert "38 hex digits found" in error(SEED[:-3])


def test_through_descriptions() -> None:
    server = parseServer(f"tls:1:certificateHash={SEED}")
    assert not isinstance(server, str)
    assert server.policy.identity.certificateHash == (CertificateHash("sha1", DIGEST),)
    client = parseClient(f"tls://h:1?certificateHash={SEED.replace(' ', ':')}")
    assert not isinstance(client, str)
    assert client.policy.identity.certificateHash[0].digest == DIGEST
    with pytest.raises(DescriptionError, match="character 53 is the letter 'o'"):
        parseServer(f"tls:1:certificateHash={SEED.replace('06 45', '06 4o')}")


def test_several_for_sni_positions_count_in_the_whole_value() -> None:
    server = parseServer(f"tls:1:certificateHash={SEED},{SHA256}")
    assert not isinstance(server, str)
    assert [h.algorithm for h in server.policy.identity.certificateHash] == ["sha1", "sha256"]
    with pytest.raises(DescriptionError) as caught:
        parseServer(f"tls:1:certificateHash={SEED},{SHA256[:-1]}x")
    assert f"character {len(SEED) + 1 + 64} (in thumbprint 2) is the letter 'x'" in str(caught.value)
    with pytest.raises(DescriptionError, match="an empty thumbprint"):
        parseServer(f"tls:1:certificateHash={SEED},")


@pytest.mark.parametrize(
    "description, expected",
    [
        (f"tls:1:certificate=web:certificateHash={SEED}", "keep one"),
        (f"tls:1:privateKey=k.pem:certificateHash={SEED}", "remove privateKey="),
    ],
)
def test_conflicting_options(description: str, expected: str) -> None:
    with pytest.raises(DescriptionError, match=expected):
        parseServer(description)


def test_looks_like_hash() -> None:
    assert looksLikeHash(SEED)
    assert looksLikeHash(SEED.replace("06 45", "06 4o"))
    assert not looksLikeHash("web")
    assert not looksLikeHash("www.example.com")
    assert not looksLikeHash("deadbeef")
