"""Security of the ways in and of the logs:

- a DICOM TLS SCP with mutual authentication, spoken to by dcmtk's storescu +tls (a real peer) and
  by pynetdicom, with a test CA and certificates made here with ``cryptography``; a client without a
  certificate or without TLS is refused, and so is a certificate that does not name the calling AE
  title (another site's, say);
- HTTPS from the options `preread serve` gives the Ray Serve proxy (uvicorn's ssl_* options);
- token expiry (revocation: test_worklist_reading);
- logs of a whole ingest + login flow at DEBUG (our code, pynetdicom, SQLAlchemy's SQL with its
  parameters) hold no token, password, signing key or database password, and no patient name or id.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import logging
import ssl
from datetime import timedelta
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from bench.county import UvicornThread, county_config
from tests.serving.conftest import free_port
from tests.serving.dicom_helpers import DCMTK, dcmtk
from tests.serving.reliability.helpers import CStoreSender, local_service
from tests.serving.worklist_fixtures import ecg_json

pytestmark = pytest.mark.reliability


# --- a test PKI -----------------------------------------------------------------------------------
def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject_cn: str,
    key,
    issuer_cert=None,
    issuer_key=None,
    ca: bool = False,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    elif dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("preread test CA", ca_key, ca=True)
    out = {}

    def write(name, cert, key):
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        out[f"{name}_crt"], out[f"{name}_key"] = folder / f"{name}.crt", folder / f"{name}.key"

    write("ca", ca, ca_key)
    server_key, client_key, other_key, named_key = _key(), _key(), _key(), _key()
    write("server", _cert("localhost", server_key, ca, ca_key, server=True), server_key)
    write("client", _cert("DEMOSITE", client_key, ca, ca_key), client_key)
    write("other", _cert("OTHERSITE", other_key, ca, ca_key), other_key)  # the other site's own certificate
    # a site certificate issued to a host name (subjectAltName), mapped to DEMOSITE in the config
    write(
        "named",
        _cert("Demo township health centre", named_key, ca, ca_key, dns_names=("demo-clinic.county.example",)),
        named_key,
    )
    return out


def _ct_file(tmp_path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.dicom_net
def test_dicom_tls_scp_with_mutual_authentication(tmp_path, pki, ecg_registry, ecg_reader):
    from serving.config_access import DicomTlsConfig
    from serving.tls import client_context

    cfg = county_config(tmp_path, ecg_registry)
    tls = DicomTlsConfig(
        port=free_port(),
        certfile=pki["server_crt"],
        keyfile=pki["server_key"],
        ca_file=pki["ca_crt"],
        require_client_cert=True,
        plain_too=False,
        certificate_names={"DEMOSITE": ["demo-clinic.county.example"]},
    )
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(update={"enabled": True, "port": free_port()}),
            "tls": cfg.tls.model_copy(update={"dicom": tls}),
        }
    )
    with local_service(cfg, ecg_reader) as client:
        db = client.services.db
        if DCMTK:  # dcmtk's storescu over TLS, presenting the site's certificate
            path = _ct_file(tmp_path)
            result = dcmtk(
                "storescu",
                "-aet",
                "DEMOSITE",
                "-aec",
                "PREREAD",
                "+tls",
                str(pki["client_key"]),
                str(pki["client_crt"]),
                "+cf",
                str(pki["ca_crt"]),
                "127.0.0.1",
                str(tls.port),
                str(path),
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert db.find_instance(str(pydicom.dcmread(path).SOPInstanceUID)) is not None
            plain = dcmtk(
                "storescu", "-aet", "DEMOSITE", "-aec", "PREREAD", "127.0.0.1", str(tls.port), str(path), timeout=60
            )
            assert plain.returncode != 0, "a plain association was accepted on the TLS port"
            no_cert = dcmtk(
                "storescu",
                "-aet",
                "DEMOSITE",
                "-aec",
                "PREREAD",
                "+tla",
                "+cf",
                str(pki["ca_crt"]),
                "127.0.0.1",
                str(tls.port),
                str(path),
                timeout=60,
            )
            assert no_cert.returncode != 0, "a client without a certificate was accepted"
        # pynetdicom as the site: with its certificate it stores; without one the handshake fails.
        data = _ct_file(tmp_path).read_bytes()
        good = CStoreSender(
            tls.port, [data], ssl_context=client_context(pki["ca_crt"], pki["client_crt"], pki["client_key"])
        )
        try:
            assert int(good.send(data).Status) == 0
        finally:
            good.close()
        anonymous = CStoreSender(tls.port, [data], ssl_context=client_context(pki["ca_crt"]))
        with pytest.raises(AssertionError, match="refused or dropped"):
            anonymous.send(data)
        # The certificate must name the calling AE (or a name mapped to it): another site's
        # certificate, valid as it is, does not let it send as DEMOSITE.
        for cert, calling, accepted in (
            ("other", "DEMOSITE", False),
            ("other", "OTHERSITE", True),
            ("named", "DEMOSITE", True),
            ("named", "OTHERSITE", False),
        ):
            sender = CStoreSender(
                tls.port,
                [data],
                calling=calling,
                ssl_context=client_context(pki["ca_crt"], pki[f"{cert}_crt"], pki[f"{cert}_key"]),
            )
            one = _ct_file(tmp_path)
            try:
                if accepted:
                    assert int(sender.send(one.read_bytes()).Status) == 0, (cert, calling)
                    assert db.find_instance(str(pydicom.dcmread(one).SOPInstanceUID)) is not None
                else:
                    with pytest.raises(AssertionError, match="refused or dropped"):
                        sender.send(one.read_bytes())
                    assert sender.assoc.is_rejected, f"{cert}'s certificate as {calling}: not an A-ASSOCIATE-RJ"
                    assert db.find_instance(str(pydicom.dcmread(one).SOPInstanceUID)) is None
            finally:
                sender.close()
        assert not client.runtime.scp.plain and len(client.runtime.scp._servers) == 1, "plain SCP still listening"


def test_certificate_names_and_their_config():
    from serving.config import ServingConfig
    from serving.tls import certificate_matches_ae

    peer = {
        "subject": ((("countryName", "CN"),), (("commonName", "DEMOSITE"),)),
        "subjectAltName": (("DNS", "clinic-7.county.example"), ("IP Address", "10.0.0.7")),
    }
    assert certificate_matches_ae(peer, "DEMOSITE")
    assert certificate_matches_ae(peer, "demosite  ")  # AE titles are space-padded; case is not identity
    assert not certificate_matches_ae(peer, "OTHERSITE")
    assert certificate_matches_ae(peer, "OTHERSITE", {"OTHERSITE": ["clinic-7.county.example"]})
    assert not certificate_matches_ae(peer, "OTHERSITE", {"OTHERSITE": ["10.0.0.7"]})  # IP SANs are not names
    assert not certificate_matches_ae(None, "DEMOSITE") and not certificate_matches_ae({}, "DEMOSITE")
    tls = {"dicom": {"certfile": "s.pem", "keyfile": "s.key", "certificate_names": {"NOSUCHAE": ["x"]}}}
    with pytest.raises(ValueError, match=r"tls.dicom.certificate_names names unknown AE titles \['NOSUCHAE'\]"):
        ServingConfig.model_validate({"tls": tls})


def test_https_from_the_serve_options(tmp_path, pki, ecg_registry, ecg_reader):
    """`preread serve` hands tls.http_options(cfg) to serve.start(); Ray Serve's proxy passes the ssl_*
    options to uvicorn. Here uvicorn serves the real app with exactly those options."""
    from serving.config_access import HttpTlsConfig
    from serving.tls import http_options

    cfg = county_config(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "tls": cfg.tls.model_copy(
                update={"http": HttpTlsConfig(certfile=pki["server_crt"], keyfile=pki["server_key"])}
            )
        }
    )
    options = http_options(cfg)
    assert options["ssl_certfile"] == str(pki["server_crt"]) and options["port"] == cfg.http.port
    with pytest.raises(FileNotFoundError, match="tls.http.keyfile"):
        http_options(
            cfg.model_copy(
                update={
                    "tls": cfg.tls.model_copy(
                        update={"http": HttpTlsConfig(certfile=pki["server_crt"], keyfile=tmp_path / "missing.key")}
                    )
                }
            )
        )
    with local_service(
        cfg.model_copy(update={"dicom": cfg.dicom.model_copy(update={"enabled": False})}), ecg_reader
    ) as client:
        server = UvicornThread(client.http.app, cfg.http.port)
        server.server.config.ssl_certfile = options["ssl_certfile"]
        server.server.config.ssl_keyfile = options["ssl_keyfile"]
        with server:
            r = httpx.get(
                f"https://127.0.0.1:{cfg.http.port}/healthz",
                verify=ssl.create_default_context(cafile=str(pki["ca_crt"])),
                timeout=60,  # httpx's default is 5 s: a TLS handshake with a thread of the busy test process
            )
            assert r.status_code == 200 and r.json() == {"status": "ok"}
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{cfg.http.port}/healthz", timeout=5)


def test_token_expiry(local_client):
    from serving.auth.tokens import TokenService, load_secret

    # The same user's token before and after its expiry, without a sleep: a 1 s token and a sleep
    # failed on a loaded machine, where the first request alone took over a second.
    tokens = TokenService(load_secret(local_client.cfg.auth.secret_file))
    valid = tokens.issue("dr-short", "reader", ["demo"], ttl=timedelta(minutes=5))
    expired = tokens.issue("dr-short", "reader", ["demo"], ttl=timedelta(seconds=-1))
    assert local_client.http.get("/api/v1/worklist", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
    r = local_client.http.get("/api/v1/worklist", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


NAMES = ("Zhang^Sanfeng", "Zhao^Liuliu")
IDS = ("530102199001011234", "110101198001010011")


def test_logs_carry_no_secrets_and_no_patient_names(tmp_path, ecg_registry, ecg_reader, monkeypatch):
    from serving.auth.users import create_user

    password = "correct-horse-staple-42"
    db_password = "pg-s3cret-pw"
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Capture(level=logging.DEBUG)
    root = logging.getLogger()
    watched = {name: logging.getLogger(name).level for name in ("", "pynetdicom", "preread", "sqlalchemy.engine")}
    root.addHandler(handler)
    for name in watched:
        logging.getLogger(name).setLevel(logging.DEBUG if name != "sqlalchemy.engine" else logging.INFO)
    cfg = county_config(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(update={"enabled": True, "port": free_port()}),
            "auth": cfg.auth.model_copy(update={"users": []}),
        }
    )
    try:
        with local_service(cfg, ecg_reader) as client:
            from serving import logs

            logs.redact.add_secret(db_password)
            create_user(client.services.db, "dr-log", password, "grassroots", ["demo"])
            login = client.http.post("/api/v1/login", json={"username": "dr-log", "password": password})
            token = login.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            body = ecg_json(seed=7)
            body["patient"] = {"id": IDS[0], "name": NAMES[0], "sex": "M", "age": "45"}
            assert (
                client.http.post(
                    "/api/v1/ecg", content=json.dumps(body), headers={"content-type": "application/json", **headers}
                ).status_code
                == 201
            )
            ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
            ct.PatientName, ct.PatientID = NAMES[1], IDS[1]
            ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            buffer = io.BytesIO()
            ct.save_as(buffer, enforce_file_format=True)
            sender = CStoreSender(cfg.dicom.port, [buffer.getvalue()])
            try:
                assert int(sender.send(buffer.getvalue()).Status) == 0
            finally:
                sender.close()
            client.http.get("/api/v1/worklist", headers={"Authorization": "Bearer " + token[:-4] + "abcd"})
            # What libraries and error paths do: secrets and patients inside messages, args and exceptions.
            log = logging.getLogger("preread.test")
            log.warning("connecting to postgresql+psycopg://preread:%s@db:5432/preread", db_password)
            log.info("request headers {'authorization': 'Bearer %s'}", token)
            log.debug(
                "dataset:\n(0010,0010) Patient's Name  PN: '%s'\n(0010,0020) Patient ID  LO: '%s'", *NAMES[:1], IDS[0]
            )
            try:
                raise ValueError(f"could not parse upload of {NAMES[0]} ({IDS[0]}) with token {token}")
            except ValueError:
                log.exception("upload failed")
            secrets = [token, password, db_password, client.services.tokens._secret]
    finally:
        root.removeHandler(handler)
        for name, level in watched.items():
            logging.getLogger(name).setLevel(level)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(r) for r in records)
    assert len(records) > 20 and "preread.test" in text and "upload failed" in text
    for forbidden in (*secrets, *NAMES, "Sanfeng", "Liuliu", *IDS, token.split(".")[1]):
        assert forbidden not in text, f"{forbidden[:12]}… reached the logs"
    assert "Z**** S******" in text, "the masked name should still be there for whoever reads the log"
