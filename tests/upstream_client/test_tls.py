"""The hot path's upstream client over TLS, against a real ssl server on loopback with
a self-signed certificate: verified against the context it is given (the system's by
default, where this one is unknown), with SNI, and its connection kept alive."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from relaygate.upstream_client import LeanClient
from tests.upstream_client.raw import Raw, keep_alive


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsRaw(Raw):
    """:class:`Raw` behind TLS, noting the names clients asked for (SNI)."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(keep_alive)
        self.names: list[str | None] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)

    async def __aenter__(self) -> TlsRaw:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    @property
    def url(self) -> URL:
        return super().url.with_scheme("https").with_host("localhost")


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
async def trusting(cert: tuple[Path, Path]) -> AsyncIterator[LeanClient]:
    context = ssl.create_default_context(cafile=str(cert[0]))
    client = LeanClient(tls=context)
    yield client
    await client.close()


async def fetch(client: LeanClient, url: URL) -> tuple[int, bytes]:
    async with client.request("POST", url, data=b"hi", headers=[], connect_timeout=2) as response:
        return response.status, b"".join([c async for c in response.content.iter_any()])


async def test_tls_verified_with_sni_and_kept_alive(
    cert: tuple[Path, Path], trusting: LeanClient
) -> None:
    async with TlsRaw(*cert) as server:
        assert await fetch(trusting, server.url) == (200, b"echo:hi")
        assert await fetch(trusting, server.url) == (200, b"echo:hi")
        assert server.connections == 1
        assert server.names == ["localhost"]
        assert server.requests[0][0].split(b"\r\n")[1].startswith(b"Host: localhost:")


async def test_unknown_certificate_is_refused_as_a_connect_error(
    cert: tuple[Path, Path],
) -> None:
    """With the system's trust (the default), a self-signed upstream fails to connect,
    as aiohttp's client failed (a connector error): nothing is sent."""
    client = LeanClient()
    try:
        async with TlsRaw(*cert) as server:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await fetch(client, server.url)
            assert isinstance(caught.value.os_error, ssl.SSLCertVerificationError)
            assert server.requests == []
    finally:
        await client.close()


async def test_silent_tls_server_times_out_as_a_connect_timeout() -> None:
    """A server that accepts but never finishes the handshake is given up after the
    connect timeout, with aiohttp's ConnectionTimeoutError."""

    async def silent(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    client = LeanClient()
    try:
        async with Raw(silent) as server:
            url = server.url.with_scheme("https")
            with pytest.raises(aiohttp.ConnectionTimeoutError):
                async with client.request("POST", url, data=b"", headers=[], connect_timeout=0.3):
                    pass
    finally:
        await client.close()
