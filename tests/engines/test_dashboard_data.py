"""What a Puppet server's dashboard reads from a puppetserver-driven server's directory (no JVM
needed: the files are laid out as puppetserver keeps them): signed and revoked certificates
with serials and expiry, the newest stored report, cached facts and deployed environments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cmhost.engines import crl, dashboard_data, pki, puppet_ca
from cmhost.engines.base import DriverContext, EngineMaterial
from cmhost.engines.puppetserver import Layout, PuppetServerDriver
from tests.engines.conftest import csr_for, make_spec

REPORT = """--- !ruby/object:Puppet::Transaction::Report
host: {node}
time: '{time}'
configuration_version: 1767261600
report_format: 12
puppet_version: 7.23.0
status: {status}
transaction_completed: true
"""

FACTS = """--- !ruby/object:Puppet::Node::Facts
name: web-1.example.com
values:
  kernel: Linux
  fqdn: web-1.example.com
  os:
    family: Debian
    name: Debian
  processorcount: 2
  is_virtual: 'true'
timestamp: 2026-01-01 10:00:00.000000000 +00:00
"""


def test_puppetserver_nodes_reports_facts_and_code(tmp_path: Path, ca: tuple[str, str],
                                                   rsa_key: object) -> None:
    driver = PuppetServerDriver(DriverContext(data_dir=tmp_path))
    spec = make_spec("Puppet", endpoint="127.0.0.1:18140")
    paths = Layout(driver.server_dir(spec.server_id))
    signed = paths.ca / "signed"
    signed.mkdir(parents=True)
    certs = {}
    for node in ("web-1.example.com", "db-1.example.com", "gone.example.com"):
        certs[node] = pki.sign_csr(ca[0], ca[1], csr_for(rsa_key, node),  # type: ignore[arg-type]
                                   expected_cn=node)
    own, _ = pki.issue_certificate(ca[0], ca[1], "127.0.0.1", ["127.0.0.1"])
    for node in ("web-1.example.com", "db-1.example.com"):
        (signed / f"{node}.pem").write_text(certs[node])
    (signed / "127.0.0.1.pem").write_text(own)  # the server's own certificate: not a node
    serial = {node: pki.certificate_serial(cert) for node, cert in certs.items()}
    (paths.ca / puppet_ca.INVENTORY).write_text("".join(
        f"0x{serial[n]:04X} 2026-01-01T00:00:00UTC 2031-01-01T00:00:00UTC /CN={n}\n"
        for n in certs))
    revoked_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    (paths.ca / puppet_ca.CA_CRL).write_text(crl.build_crl(
        ca[0], ca[1], [(serial["db-1.example.com"], revoked_at),
                       (serial["gone.example.com"], revoked_at)], number=2))
    reports = paths.var / "reports" / "web-1.example.com"
    reports.mkdir(parents=True)
    (reports / "202601010900.yaml").write_text(REPORT.format(
        node="web-1.example.com", time="2026-01-01T09:00:00.1+00:00", status="failed"))
    (reports / "202601011000.yaml").write_text(REPORT.format(
        node="web-1.example.com", time="2026-01-01T10:00:00.5+00:00", status="changed"))
    facts = paths.var / "yaml" / "facts"
    facts.mkdir(parents=True)
    (facts / "web-1.example.com.yaml").write_text(FACTS)
    for environment in ("production", "staging"):
        (paths.code / "environments" / environment / "manifests").mkdir(parents=True)

    data = dashboard_data.read_puppet(driver, spec, EngineMaterial())
    nodes = {n.name: n for n in data.nodes}
    assert set(nodes) == {"web-1.example.com", "db-1.example.com", "gone.example.com"}
    web = nodes["web-1.example.com"]
    assert web.state == "signed" and web.serial == f"{serial['web-1.example.com']:X}"
    assert web.not_after == pki.certificate_not_after(certs["web-1.example.com"]).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert (web.last_report, web.report_status) == ("2026-01-01T10:00:00.5+00:00", "changed")
    assert web.facts == {"kernel": "Linux", "fqdn": "web-1.example.com",
                         "processorcount": "2", "is_virtual": "true"}
    # Revoked while its certificate is still in signed/, and revoked and cleaned (only the
    # inventory and the CRL still know it).
    for node in ("db-1.example.com", "gone.example.com"):
        assert nodes[node].state == "revoked"
        assert nodes[node].revoked_at == "2026-01-02T03:04:05Z"
    assert [d.environment for d in data.deployments] == ["production", "staging"]
