"""A real S3-protocol server (moto) on 127.0.0.1 for tests, over HTTP or HTTPS.

Fixtures; re-export them from a conftest.py with one line:

    from tests.s3server import s3_endpoint, s3_https_endpoint  # noqa: F401

    def test_x(s3_endpoint):
        storage = s3_endpoint.storage("frames")  # S3Storage on a fresh bucket
        client = s3_endpoint.client()  # raw boto3, e.g. s3_endpoint.client("kms")

Both servers run in this process and share moto's in-memory backend, so every test
should work in its own bucket (`new_bucket()` / `storage()`). While a fixture is
active the process has fake AWS credentials in its environment; subprocesses and Ray
workers started later inherit them (or pass `endpoint.env` explicitly).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto.server import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    ThreadedMotoServer,
    create_backend_app,
)
from werkzeug.serving import make_server

from motoray.config import S3Settings
from motoray.storage.s3 import S3Storage

REGION = "us-east-1"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance-metadata probe
    # Keep the developer's ~/.aws (profiles, endpoints, ca_bundle) out of the tests.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Removed while fixtures run: each would change which server or CA a client uses.
_UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CA_BUNDLE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_SECURITY_TOKEN",
)


@contextmanager
def fake_aws_env() -> Iterator[dict[str, str]]:
    """Put fake credentials in os.environ; restore the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in (*FAKE_AWS_ENV, *_UNSET_ENV)}
    for name in _UNSET_ENV:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    try:
        yield dict(FAKE_AWS_ENV)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    env: dict[str, str] = field(default_factory=lambda: dict(FAKE_AWS_ENV))
    region: str = REGION
    ca_bundle: str | None = None  # the throwaway CA, for the HTTPS endpoint

    def settings(self, **overrides: Any) -> S3Settings:
        """S3Settings pointing at this server, e.g. `settings(kms_key_id=arn)`."""
        base = {"endpoint_url": self.endpoint_url, "region": self.region}
        if self.ca_bundle:
            base["ca_bundle"] = self.ca_bundle
        return S3Settings(**(base | overrides))

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for any moto service at this endpoint (s3, kms, ...)."""
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            verify=self.ca_bundle or None,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.env["AWS_SESSION_TOKEN"],
        )

    def new_bucket(self, name_prefix: str = "motoray-test") -> str:
        name = f"{name_prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage(self, prefix: str = "", **settings: Any) -> S3Storage:
        """An S3Storage on a fresh bucket; `settings` as for `settings()`."""
        return S3Storage(self.new_bucket(), prefix, self.settings(**settings))


@contextmanager
def moto_http_server() -> Iterator[str]:
    """moto on a free port of 127.0.0.1; yields its http:// endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_https_server(certfile: Path, keyfile: Path) -> Iterator[str]:
    """moto over TLS on a free port of 127.0.0.1; yields its https:// endpoint URL.

    ThreadedMotoServer has no TLS option, so this is the same werkzeug server with
    an SSL context.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    with serve_wsgi(DomainDispatcherApplication(create_backend_app), context) as url:
        yield url


@contextmanager
def serve_wsgi(app, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """A WSGI app (moto's, or a front to it) on a free port of 127.0.0.1, in a thread;
    yields its URL."""
    server = make_server(
        "127.0.0.1",
        0,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=ssl_context,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def write_test_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost.

    Returns (ca.pem, server.pem, server.key); ca.pem is what a client's ca_bundle needs.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "motoray test CA")])
    ca_cert = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert = (
        _certificate(server_name, ca_name, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "server.pem", "server.key"))
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    cert_path.write_bytes(server_cert.public_bytes(pem))
    key_path.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A plain-HTTP moto server for the whole session, with fake credentials in the env."""
    with fake_aws_env() as env, moto_http_server() as url:
        yield S3Endpoint(url, env)


@pytest.fixture(scope="session")
def s3_https_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """moto over HTTPS with a throwaway CA; `ca_bundle` is the CA's PEM file."""
    ca, cert, key = write_test_certificates(tmp_path_factory.mktemp("moto-tls"))
    with fake_aws_env() as env, moto_https_server(cert, key) as url:
        yield S3Endpoint(url, env, ca_bundle=str(ca))
