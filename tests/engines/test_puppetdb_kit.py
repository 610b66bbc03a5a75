"""The starter kit of a Puppet server with a PuppetDB: puppetdb.conf names `https://host:port`
with the kit's CA and admin certificate, and the README shows the curl commands with the host
and port; a server without PuppetDB (or on the embedded engine) says nothing of it."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cmhost.engines.embedded_identity import prepare_identity
from tests.engines.conftest import make_spec

PUPPETDB_URL = "https://127.0.0.1:28152"
CM_URL = "https://127.0.0.1:28151/code-manager"
R10K = {"PUPPET_R10K_REMOTE": "ssh://git@git.example.com/control-repo.git"}
CONF = ".config/puppetlabs/client-tools/puppetdb.conf"


def _kit(one_time: list[tuple[str, str]]) -> dict[str, bytes]:
    data = base64.b64decode(dict(one_time)["PUPPET_STARTER_KIT"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename.split("/", 1)[1]: archive.read(i) for i in archive.infolist()}


def test_a_puppetdb_kit_names_its_url_and_says_how_to_query_it_with_curl() -> None:
    spec = make_spec("Puppet", endpoint="127.0.0.1:28150")
    kit = _kit(prepare_identity(spec, R10K, code_manager_url=CM_URL,
                                puppetdb_url=PUPPETDB_URL).one_time_attributes)
    conf = json.loads(kit[CONF])
    assert conf == {"puppetdb": {"server_urls": PUPPETDB_URL,
                                 "cacert": ".config/ssl/cert/ca.pem",
                                 "cert": ".config/ssl/cert/admin.pem",
                                 "key": ".config/ssl/private_key/admin.pem"}}
    for path in conf["puppetdb"].values():
        if path != PUPPETDB_URL:
            assert path in kit, path
    readme = kit["README.md"].decode()
    assert "## Querying PuppetDB" in readme
    assert f"at `{PUPPETDB_URL}` (host `127.0.0.1`, port 28152)" in readme
    assert (f"curl --cacert .config/ssl/cert/ca.pem --cert .config/ssl/cert/admin.pem \\\n"
            f"      --key .config/ssl/private_key/admin.pem {PUPPETDB_URL}/pdb/query/v4/nodes"
            ) in readme
    assert f"{PUPPETDB_URL}/pdb/query/v4/reports" in readme and "latest_report?" in readme
    # The Code Manager's part is still there, beside it.
    assert "## Deploying code: Code Manager" in readme and "puppet-code.conf" in readme


def test_a_puppet_server_certificate_is_also_a_client_certificate() -> None:
    """puppetserver presents it to its PuppetDB; Chef server certificates stay serverAuth."""
    for family, usages in (("Puppet", [ExtendedKeyUsageOID.SERVER_AUTH,
                                       ExtendedKeyUsageOID.CLIENT_AUTH]),
                           ("Chef", [ExtendedKeyUsageOID.SERVER_AUTH])):
        material = prepare_identity(make_spec(family), {}).material  # type: ignore[arg-type]
        cert = x509.load_pem_x509_certificate(material.public["server_cert"].encode())
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
            usages


def test_kits_without_a_puppetdb_say_nothing_of_it() -> None:
    for spec in (make_spec("Puppet", endpoint="127.0.0.1:28150"), make_spec("Puppet")):
        kit = _kit(prepare_identity(spec, R10K, code_manager_url=CM_URL).one_time_attributes)
        assert CONF not in kit
        assert "puppetdb" not in kit["README.md"].decode().lower()
