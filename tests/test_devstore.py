"""securesock._devstore: the store's development CA, made once, refused when broken."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from securesock._devstore import DEVCA_CERTIFICATE, DEVCA_KEY, storeAuthority
from securesock._errors import CertificateError


def test_made_on_first_use_then_reused(tmp_path: Path) -> None:
    first, certificate, made = storeAuthority(str(tmp_path))
    assert made and certificate == tmp_path / DEVCA_CERTIFICATE
    assert stat.S_IMODE((tmp_path / DEVCA_KEY).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / DEVCA_KEY).parent.stat().st_mode) == 0o700
    again, _, madeAgain = storeAuthority(str(tmp_path))
    assert not madeAgain and again.certificate == first.certificate


def test_an_incomplete_authority_is_refused(tmp_path: Path) -> None:
    storeAuthority(str(tmp_path))
    (tmp_path / DEVCA_KEY).unlink()
    with pytest.raises(CertificateError) as raised:
        storeAuthority(str(tmp_path))
    assert str(raised.value) == (
        f"the development CA of {tmp_path} is incomplete ({tmp_path / DEVCA_CERTIFICATE} and "
        f"{tmp_path / DEVCA_KEY} belong together); restore the missing file or remove both"
    )


def test_a_damaged_authority_is_refused(tmp_path: Path) -> None:
    storeAuthority(str(tmp_path))
    (tmp_path / DEVCA_CERTIFICATE).write_text("not a certificate\n")
    with pytest.raises(CertificateError, match=r"cannot be read \(.* is damaged\); remove both"):
        storeAuthority(str(tmp_path))
