"""TLS with client certificates between the online client and `kiosk-backend serve`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.records import DocumentKey, Result
from kiosk.lookup.http import HttpLookup
from tests.backend.helpers import record_line, write_csv
from tests.lookup.conftest import free_port


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(folder: Path, name: str, subject: str, extensions: str) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=kiosk test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)  # fmt: skip
    _issue(
        folder,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _issue(folder, "client", "/CN=KIOSK-1", "extendedKeyUsage=clientAuth\n")
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )


@pytest.fixture(scope="module")
def tls_service(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """`kiosk-backend serve` with TLS and client certificates, once per module."""
    tmp_path = tmp_path_factory.mktemp("tls-service")
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    seed = write_csv(tmp_path / "seed.csv", [record_line("UTO", "L898902C3")])
    cli = [sys.executable, "-m", "backend.cli", "--log-level", "WARNING"]
    subprocess.run([*cli, "import", str(seed), "--store", store, "--quiet"], check=True)
    api_key = subprocess.run(
        [*cli, "keys", "add", "KIOSK-1", "--store", store],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--store", store, "--port", str(port),
         "--audit-log", str(tmp_path / "audit.jsonl"),
         "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
         "--tls-client-ca", str(pki.ca)]
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    probe = HttpLookup(
        url, api_key=api_key, verify=str(pki.ca),
        client_cert=(str(pki.client_cert), str(pki.client_key)), retries=0,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    try:
        while probe.status().data_version is None:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("TLS test service did not start within 20 s")
            time.sleep(0.1)
        probe.close()
        yield url, api_key
    finally:
        server.terminate()
        server.wait(timeout=10)


KEY = DocumentKey.create("UTO", "P", "L898902C3")


def test_tls_with_client_certificate(tls_service: tuple[str, str], pki: Pki) -> None:
    url, api_key = tls_service
    client = HttpLookup(
        url,
        api_key=api_key,
        verify=str(pki.ca),
        client_cert=(str(pki.client_cert), str(pki.client_key)),
    )
    assert client.lookup(KEY).result is Result.HIT
    client.close()


def test_tls_without_client_certificate_is_unknown(
    tls_service: tuple[str, str], pki: Pki
) -> None:
    url, api_key = tls_service
    client = HttpLookup(url, api_key=api_key, verify=str(pki.ca), retries=0)
    answer = client.lookup(KEY)
    client.close()
    assert answer.result is Result.UNKNOWN


def test_tls_untrusted_server_is_unknown(
    tls_service: tuple[str, str], pki: Pki
) -> None:
    url, api_key = tls_service
    client = HttpLookup(
        url,
        api_key=api_key,
        client_cert=(str(pki.client_cert), str(pki.client_key)),
        retries=0,
    )
    answer = client.lookup(KEY)
    client.close()
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "unreachable" in answer.reason
