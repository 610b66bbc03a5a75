"""The console's forms over HTTP: uploads for a custom domain, a server made from a backup,
errors of engine attributes next to their own field, and the region of the header."""

from __future__ import annotations

import re
from typing import Any

from cmhost.engines import pki
from tests.console.conftest import Browser
from tests.ops.helpers import backup_now, healthy_server, quiet_windows
from tests.support import Cmhost

REQUIRED = {"InstanceType": "m5.large",
            "InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/p",
            "ServiceRoleArn": "arn:aws:iam::000000000000:role/r"}


def _errors(page: str, field: str) -> list[str]:
    block = page.split(f'data-field="{field}"', 1)[1].split('<div class="field"', 1)[0]
    return re.findall(r'class="field-error"[^>]*>([^<]+)<', block)


def test_custom_domain_certificate_and_key_as_uploaded_files(cmhost: Cmhost, client: Any,
                                                             browser: Browser) -> None:
    ca_cert, ca_key = pki.generate_ca("Example CA")
    cert, key = pki.issue_certificate(ca_cert, ca_key, "chef.example.com", ["chef.example.com"])
    _, other_key = pki.issue_certificate(ca_cert, ca_key, "x.example.com", ["x.example.com"])
    form = {"ServerName": "form-domain", "Engine": "Chef", "CustomDomain": "chef.example.com",
            **REQUIRED}
    refused = browser.post("/console/servers/new", form, files={
        "CustomCertificateFile": ("cert.pem", cert.encode(), "application/x-pem-file"),
        "CustomPrivateKeyFile": ("key.pem", other_key.encode(), "application/x-pem-file")})
    assert refused.status_code == 400
    assert _errors(refused.text, "CustomPrivateKey") == [
        "CustomPrivateKey does not match the public key of CustomCertificate."]
    assert other_key.splitlines()[1] not in refused.text  # a key is never sent back
    created = browser.post("/console/servers/new", form, files={
        "CustomCertificateFile": ("cert.pem", cert.encode(), "application/x-pem-file"),
        "CustomPrivateKeyFile": ("key.pem", key.encode(), "application/x-pem-file")})
    assert created.status_code == 200, created.text
    assert client.describe_servers(ServerName="form-domain")["Servers"][0][
        "CustomDomain"] == "chef.example.com"


def test_a_server_from_a_backup(cmhost: Cmhost, client: Any, browser: Browser) -> None:
    healthy_server(cmhost, client, "form-source", "Puppet")
    backup = backup_now(cmhost, client, "form-source")
    form_page = browser.get(f"/console/servers/new?backup={backup['BackupId']}").text
    assert f'value="{backup["BackupId"]}" selected' in form_page
    made = browser.post("/console/servers/new", {
        "ServerName": "form-copy", "Engine": "Puppet", "BackupId": backup["BackupId"],
        **quiet_windows(cmhost), **REQUIRED})
    assert made.status_code == 200
    assert "No credential to hand out" in made.text and "download-kit" not in made.text
    wrong = browser.post("/console/servers/new", {
        "ServerName": "form-wrong", "Engine": "Chef", "BackupId": backup["BackupId"],
        **REQUIRED})
    assert wrong.status_code == 400
    assert "cannot create a Chef server" in " ".join(_errors(wrong.text, "BackupId"))


def test_engine_attribute_errors_sit_next_to_their_field(browser: Browser) -> None:
    secret = "short"
    refused = browser.post("/console/servers/new", {
        "ServerName": "form-attrs", "Engine": "Puppet", **REQUIRED,
        "EngineAttributes.PUPPET_R10K_REMOTE": "https://git.example.com/control.git",
        "EngineAttributes.PUPPET_ADMIN_PASSWORD": secret})
    assert refused.status_code == 400
    errors = _errors(refused.text, "EngineAttributes.PUPPET_ADMIN_PASSWORD")
    assert errors and "8 to 32" in errors[0]
    assert _errors(refused.text, "EngineAttributes.PUPPET_R10K_REMOTE") == []
    assert f'value="{secret}"' not in refused.text  # typed secrets are not sent back
    assert 'value="form-attrs"' in refused.text  # the rest is kept
    # The model's own rules, with AWS's messages, on the field they name.
    bad = browser.post("/console/servers/new", {"ServerName": "9lives", "Engine": "Chef",
                                                "InstanceProfileArn": "nope"})
    assert "failed to satisfy constraint" in _errors(bad.text, "ServerName")[0]
    assert "failed to satisfy constraint" in _errors(bad.text, "InstanceProfileArn")[0]
    assert "must not be null" in _errors(bad.text, "InstanceType")[0]


def test_the_region_in_the_header_is_where_servers_are_made(cmhost: Cmhost,
                                                            browser: Browser) -> None:
    assert browser.post("/console/region", {"region": "eu-west-1"}).status_code == 303
    listing = browser.get("/console/")
    assert "eu-west-1" in listing.text and "form-domain" not in listing.text
    created = browser.post("/console/servers/new", {"ServerName": "form-eu", "Engine": "Chef",
                                                    **REQUIRED})
    assert created.status_code == 200
    europe = cmhost.client(region="eu-west-1")
    assert [s["ServerName"] for s in europe.describe_servers()["Servers"]] == ["form-eu"]
    browser.post("/console/region", {"region": "not-a-region"})
    assert 'value="eu-west-1" selected' in browser.get("/console/").text
