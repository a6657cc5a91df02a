"""A throwaway CA and a gateway serving certificate for compose and local TLS runs.

``python -m ops.devcerts --out .cache/tls`` writes ``ca.crt`` (give it to clients),
``ca.key``, ``gateway.crt`` and ``gateway.key`` (mount them into the gateway as
``QBRIDGE_TLS_CERT`` / ``QBRIDGE_TLS_KEY``). Existing files are kept unless
``--force``, so re-running is a no-op. Development only: the CA key sits next to
the certificates; production certificates come from cert-manager (deploy/k8s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

#: Names the gateway is reached by: compose service name, localhost.
DEFAULT_NAMES: tuple[str, ...] = ("gateway", "localhost", "127.0.0.1", "::1")
FILES = ("ca.crt", "ca.key", "gateway.crt", "gateway.key")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def generate(out: Path, names: Sequence[str] = DEFAULT_NAMES, days: int = 30) -> dict[str, Path]:
    """Write a new CA and a gateway certificate signed by it.

    Args:
        out: Directory (created) for the four PEM files.
        names: DNS names / IP addresses of the gateway certificate.
        days: Validity of both certificates.

    Returns:
        File name -> path of each written file.
    """
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=days)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qbridge dev CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    contents = {
        "ca.crt": ca.public_bytes(pem),
        "ca.key": _pem_key(ca_key),
        "gateway.crt": cert.public_bytes(pem),
        "gateway.key": _pem_key(key),
    }
    written = {}
    for name, data in contents.items():
        path = out / name
        path.write_bytes(data)
        # Keys: owner-only, except that the gateway container (another uid) must read
        # its key through a bind mount, so the gateway key stays group/world-readable.
        path.chmod(0o600 if name == "ca.key" else 0o644)
        written[name] = path
    logger.info("wrote a dev CA and a gateway certificate for %s to %s", ", ".join(names), out)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m ops.devcerts [--out DIR] [--name NAME ...] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m ops.devcerts", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("QBRIDGE_TLS_DIR", ".cache/tls"))
    )
    parser.add_argument("--name", action="append", help="gateway DNS name/IP (repeatable)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.force and all((args.out / f).is_file() for f in FILES):
        print(f"{args.out}: dev certificates exist (use --force to replace)")
        return 0
    generate(args.out, tuple(args.name) if args.name else DEFAULT_NAMES, args.days)
    print(f"{args.out}: ca.crt, gateway.crt, gateway.key written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
