"""`gel certs`, `gel sign`, `gel verify` as an operator runs them: files where documented, coded errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.test_signatures import FONVIVIENDA, REGISTRADURIA, unsigned_message


def gel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "broker.cli", *args], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    assert "Traceback" not in result.stderr + result.stdout
    return result


@pytest.fixture(scope="module")
def pki_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli-pki")
    env = {"GEL_CERTS_DIR": str(folder)}
    result = gel("certs", "init", env=env)
    assert result.returncode == 0, result.stderr
    return env


def test_init_writes_the_documented_files_with_private_keys_0600(pki_env: dict[str, str]) -> None:
    folder = Path(pki_env["GEL_CERTS_DIR"])
    for name in ("root-ca.pem", "tsa-cert.pem", "crl.pem"):
        assert (folder / name).is_file(), name
    keys = list(folder.rglob("*.key"))
    assert len(keys) >= 3
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)


def test_list_shows_one_live_certificate_per_entity(pki_env: dict[str, str]) -> None:
    result = gel("certs", "list", "--json", env=pki_env)
    rows = json.loads(result.stdout)
    live = {r["entity"] for r in rows if r["revoked_at"] is None}
    assert {FONVIVIENDA, REGISTRADURIA} <= live
    assert len(live) == len(rows)


def test_sign_then_verify_then_revoke(tmp_path: Path) -> None:
    env = {"GEL_CERTS_DIR": str(tmp_path / "pki")}
    assert gel("certs", "init", "--algoritmo", "rsa", env=env).returncode == 0
    source = tmp_path / "mensaje.xml"
    source.write_bytes(unsigned_message())
    signed = tmp_path / "firmado.xml"
    result = gel("sign", "--entity", FONVIVIENDA, str(source), "-o", str(signed), env=env)
    assert result.returncode == 0, result.stderr
    ok = gel("verify", str(signed), env=env)
    assert ok.returncode == 0 and f"firma válida de {FONVIVIENDA}" in ok.stdout
    assert "sin sello de tiempo" in ok.stdout
    stamped = tmp_path / "sellado.xml"
    assert gel("stamp", str(signed), "-o", str(stamped), env=env).returncode == 0
    with_stamp = gel("verify", str(stamped), "--json", env=env)
    assert with_stamp.returncode == 0, with_stamp.stdout
    assert json.loads(with_stamp.stdout)[0]["selloTiempo"]

    tampered = tmp_path / "alterado.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"<codFalla>GEL-VALID-NIT_CHECK_DIGIT<",
                                                     b"<codFalla>GEL-VALID-SCHEMA<"))
    bad = gel("verify", str(tampered), "--json", env=env)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)[0]["fallas"][0]["codigo"] == "GEL-AUTH-BAD_SIGNATURE"

    assert gel("certs", "revoke", FONVIVIENDA, env=env).returncode == 0
    revoked = gel("verify", str(signed), env=env)
    assert revoked.returncode == 1 and "GEL-AUTH-REVOKED" in revoked.stdout


def test_sign_refuses_to_sign_in_another_entitys_name(pki_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "mensaje.xml"
    source.write_bytes(unsigned_message())
    result = gel("sign", "--entity", REGISTRADURIA, str(source), env=pki_env)
    assert result.returncode != 0
    assert "GEL-AUTH-SENDER_MISMATCH" in result.stderr


def test_verify_without_a_pki_says_how_to_create_one(tmp_path: Path) -> None:
    source = tmp_path / "mensaje.xml"
    source.write_bytes(unsigned_message())
    result = gel("verify", str(source), env={"GEL_CERTS_DIR": str(tmp_path / "nada")})
    assert result.returncode == 2
    assert "GEL-PKI-NOT_INITIALISED" in result.stderr and "gel certs init" in result.stderr
