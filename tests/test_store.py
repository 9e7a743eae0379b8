"""The store index: every kind of name, thumbprints, chains, and cheap re-checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from securesock import _store
from securesock._hashes import CertificateHash
from securesock._store import Store, defaultStorePath, openStore

from .storekit import StoreKit


@pytest.fixture
def kit(tmp_path: Path) -> StoreKit:
    kit = StoreKit(tmp_path / "store")
    kit.addCA("root-ca.pem")
    kit.addCA("intermediate.pem", intermediate=True)
    return kit


def fresh(kit: StoreKit) -> Store:
    store = Store(str(kit.root))
    store.refresh()
    return store


def test_names_of_each_kind(kit: StoreKit) -> None:
    web = kit.add("website.pem", ["www.example.com", "example.com"], commonName="Example Site")
    p12 = kit.addP12("bundle.p12", b"friendly web", None, ["p12.example.com"])
    store = fresh(kit)
    for name in ("website", "Example Site", "www.example.com", "WWW.Example.COM", "example.com"):
        assert [e.certificate for e in store.byName(name)] == [web.certificate], name
    for name in ("friendly web", "bundle", "p12.example.com"):
        assert [e.certificate for e in store.byName(name)] == [p12.certificate], name
    assert store.byName("www.example") == []


def test_every_kind_of_name_ignores_case(kit: StoreKit) -> None:
    """Stem, CN and friendlyName as well as DNS names: docs/store.md promises no regard to case."""
    site = kit.add("Site.pem", ["site.example"], commonName="Web Server")
    p12 = kit.addP12("Bundle.p12", b"My Friendly API", None, ["api.example"])
    store = fresh(kit)
    for name in ("Site", "site", "SITE", "Web Server", "web server", "WEB SERVER", "SITE.EXAMPLE"):
        assert [e.certificate for e in store.byName(name)] == [site.certificate], name
    for name in ("My Friendly API", "my friendly api", "bundle", "BUNDLE"):
        assert [e.certificate for e in store.byName(name)] == [p12.certificate], name
    assert store.nearestNames("sitte") == ["Site"]  # the hint keeps the name as written
    assert store.nearestNames("my friendly ap") == ["My Friendly API"]


def test_names_that_differ_only_in_case_are_both_candidates(kit: StoreKit) -> None:
    upper = kit.add("Web.pem", ["upper.example"])
    lower = kit.add("web.pem", ["lower.example"], commonName="WEB")
    store = fresh(kit)
    found = store.byName("wEb")
    assert {e.certificate for e in found} == {upper.certificate, lower.certificate}
    assert len(found) == 2  # lower.pem answers as stem and as CN: listed once
    assert len([n for n in store.names() if n.casefold() == "web"]) == 1  # one spelling of a name


def test_an_encrypted_pkcs12_answers_to_its_stem_before_it_is_opened(kit: StoreKit) -> None:
    kit.addP12("Secret.p12", b"hidden", b"pass phrase", ["hidden.example"])
    store = fresh(kit)
    assert store.byName("secret") == []
    assert store.lockedByStem("SECRET") == [str(kit.root / "Secret.p12")]
    assert store.lockedByStem("hidden") == []
    assert store.unlock(b"pass phrase") and store.lockedByStem("secret") == []


def test_a_p12_file_that_is_not_pkcs12_is_skipped_not_locked(kit: StoreKit) -> None:
    (kit.root / "junk.p12").write_bytes(b"junk\n")
    kit.addP12("real.p12", None, b"pass phrase", ["real.example"])
    store = fresh(kit)
    assert store.locked == (str(kit.root / "real.p12"),)
    assert [(Path(p).name, why) for p, why in store.skipped] == [
        ("junk.p12", "not a PKCS#12 file (damaged, cut short, or another format)")
    ]
    assert not store.unlock(b"junk")  # no passphrase makes it one
    assert [Path(p).name for p, _ in store.skipped] == ["junk.p12"]


def test_a_file_too_large_for_a_certificate_is_skipped(kit: StoreKit) -> None:
    kit.add("small.pem", ["small.example"])
    with open(kit.root / "huge.pem", "wb") as huge:  # sparse: no 10 MiB written
        huge.truncate(_store.MAX_FILE_SIZE + 1)
    store = fresh(kit)
    assert store.byName("small")
    assert [(Path(p).name, why) for p, why in store.skipped] == [
        ("huge.pem", "larger than 10 MiB (not a certificate file)")
    ]


def test_names_listed_most_specific_first(kit: StoreKit) -> None:
    kit.addP12("bundle.p12", b"friendly", None, ["a.example"])
    (entry,) = [e for e in fresh(kit).entries if e.file.endswith("bundle.p12")]
    assert entry.names == ("friendly", "bundle", "a.example")
    assert entry.hasKey and entry.main


def test_thumbprints(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    store = fresh(kit)
    sha1 = CertificateHash("sha1", web.certificate.fingerprint(hashes.SHA1()))
    sha256 = CertificateHash("sha256", web.certificate.fingerprint(hashes.SHA256()))
    assert [e.file for e in store.byHash(sha1)] == [str(kit.root / "web.pem")]
    assert [e.file for e in store.byHash(sha256)] == [str(kit.root / "web.pem")]
    assert store.byHash(CertificateHash("sha1", b"\0" * 20)) == []


def test_split_crt_and_key_pair(kit: StoreKit) -> None:
    kit.add("pair.pem", ["pair.example"], split=True)
    kit.add("alone.pem", ["alone.example"], split=True, key=False)
    store = fresh(kit)
    (pair,) = store.byName("pair")
    assert pair.file.endswith("pair.crt") and pair.keyFile == str(kit.root / "pair.key")
    (alone,) = store.byName("alone")
    assert alone.keyFile is None and not alone.hasKey


def test_encrypted_key_is_recorded_not_opened(kit: StoreKit) -> None:
    kit.add("locked.pem", ["locked.example"], passphrase=b"secret")
    (entry,) = fresh(kit).byName("locked")
    assert entry.hasKey and entry.keyEncrypted


def test_encrypted_pkcs12_is_opened_by_its_passphrase(kit: StoreKit) -> None:
    kit.addP12("secret.p12", b"hidden name", b"pass phrase", ["hidden.example"])
    store = fresh(kit)
    assert store.byName("hidden name") == []
    assert store.locked == (str(kit.root / "secret.p12"),)
    assert not store.unlock(b"wrong")
    assert store.unlock(b"pass phrase")
    (entry,) = store.byName("hidden name")
    assert entry.keyEncrypted and store.locked == ()
    store.refresh()  # unchanged file: stays opened
    assert store.byName("hidden name")


def test_chain_from_store_stops_below_the_root(kit: StoreKit) -> None:
    leaf = kit.add("chained.pem", ["chained.example"], underIntermediate=True)
    direct = kit.add("direct.pem", ["direct.example"])
    store = fresh(kit)
    assert kit.intermediate is not None
    assert store.chainFor(leaf.certificate) == (kit.intermediate.certificate,)
    assert store.chainFor(direct.certificate) == ()
    assert {e.certificate for e in store.authorities()} == {kit.ca.certificate, kit.intermediate.certificate}


def test_chain_inside_a_bundle_names_only_the_main_certificate(kit: StoreKit) -> None:
    assert kit.intermediate is not None
    leaf = kit.leaf(["bundle.example"], underIntermediate=True)
    from securesock._devca import certificatePEM, keyPEM

    (kit.root / "bundle.pem").write_bytes(
        certificatePEM(kit.intermediate.certificate, leaf.certificate) + keyPEM(leaf.key)
    )
    store = fresh(kit)
    (main,) = store.byName("bundle")
    assert main.certificate == leaf.certificate and main.hasKey
    inside = [e for e in store.byName("kit intermediate CA") if e.file.endswith("bundle.pem")]
    assert len(inside) == 1 and not inside[0].main and not inside[0].hasKey


def test_refresh_reads_only_changed_files(kit: StoreKit, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.add("one.pem", ["one.example"])
    kit.add("two.pem", ["two.example"])
    store = fresh(kit)
    parsed: list[str] = []
    original = _store._parseFile

    def counting(path: str, *args: object) -> object:
        parsed.append(os.path.basename(path))
        return original(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_store, "_parseFile", counting)
    assert not store.refresh() and parsed == []
    generation = store.generation
    kit.add("one.pem", ["renamed.example"])  # rewritten in place
    kit.add("three.pem", ["three.example"])
    (kit.root / "two.pem").unlink()
    assert store.refresh()
    assert sorted(parsed) == ["one.pem", "three.pem"]
    assert store.generation == generation + 1
    assert store.byName("renamed.example") and not store.byName("one.example")
    assert store.byName("three") and not store.byName("two")


def test_hidden_files_other_suffixes_and_damaged_files(kit: StoreKit) -> None:
    kit.add("good.pem", ["good.example"])
    kit.add(".hidden.pem", ["hidden.example"])
    (kit.root / "notes.txt").write_text("not a certificate")
    (kit.root / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    sub = kit.root / "sub"
    sub.mkdir()
    kit.write("sub/nested.pem", kit.leaf(["nested.example"]))
    store = fresh(kit)
    assert store.byName("good") and store.byName("nested") and not store.byName("hidden.example")
    assert [Path(p).name for p, _ in store.skipped] == ["broken.pem"]
    assert "cannot be read" in store.skipped[0][1]


def test_nearest_names(kit: StoreKit) -> None:
    kit.add("website.pem", ["www.example.com"])
    store = fresh(kit)
    assert store.nearestNames("webiste") == ["website"]
    assert store.nearestNames("WEBSITE")[0] == "website"
    assert store.nearestNames("zzzzzz") == []


def test_open_store_is_one_per_directory(kit: StoreKit) -> None:
    kit.add("web.pem", ["web.example"])
    first = openStore(str(kit.root))
    again = openStore(str(kit.root) + os.sep)
    assert first is again and first.byName("web")


def test_default_store_path(tmp_path: Path) -> None:
    assert defaultStorePath({"SECURESOCK_STORE": str(tmp_path)}) == str(tmp_path)
    xdg = defaultStorePath({"XDG_DATA_HOME": "/data"})
    assert xdg == os.path.join("/data", "securesock", "store")
    home = os.path.expanduser("~")
    assert defaultStorePath({}) == os.path.join(home, ".local", "share", "securesock", "store")
    assert defaultStorePath({"XDG_DATA_HOME": "relative"}) == defaultStorePath({})
