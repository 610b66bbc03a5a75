"""The console and the dashboards in a real headless Chromium (Debian's, driven by Playwright),
as a user would go: sign in with an issued key, create a Chef and a Puppet server, watch them
become HEALTHY without reloading, take the starter kits, back up and restore, change the
windows, tag, reset a password, use the dashboards and delete. Each main page is saved to
docs/screenshots/ on the way."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.console.conftest import issue_key
from tests.ops.helpers import associate, chef_attributes, puppet_attributes, quiet_windows
from tests.support import ROOT, Cmhost

# The subject is not the database: CI runs it in its SQLite pass only (.ci/run).
pytestmark = pytest.mark.once

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "docs" / "screenshots"
SECONDS = 15_000  # Playwright timeouts, in milliseconds

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
expect = sync_api.expect


@pytest.fixture(scope="module")
def page(cmhost: Cmhost) -> Iterator[Any]:
    """One browser for the module, signed in to the console with a key of `cmhost keys
    create` (account 000000000000: the boto3 client of the tests sees the same servers)."""
    key = issue_key(cmhost, "000000000000")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox"], headless=True)
        context = browser.new_context(accept_downloads=True,
                                      viewport={"width": 1280, "height": 860})
        context.set_default_timeout(SECONDS)
        tab = context.new_page()
        tab.on("dialog", lambda dialog: dialog.accept())
        tab.goto(cmhost.url + "/console/")
        expect(tab).to_have_url(re.compile(r"/console/signin$"))
        tab.fill("input[name=AccessKeyId]", key["AccessKeyId"])
        tab.fill("input[name=SecretAccessKey]", key["SecretAccessKey"])
        shoot(tab, "signin")
        tab.click("button[type=submit]")
        expect(tab).to_have_url(re.compile(r"/console/$"))
        yield tab
        context.close()
        browser.close()


def shoot(tab: Any, name: str) -> None:
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def status_of(tab: Any, name: str) -> Any:
    return tab.locator(f'tr[data-server="{name}"] [data-status] .word')


def credential(tab: Any, name: str) -> str:
    text: str = tab.locator(f"#credential-{name}").inner_text()
    return text.strip()


def download(tab: Any, selector: str) -> bytes:
    with tab.expect_download() as info:
        tab.click(selector)
    path = info.value.path()
    return Path(path).read_bytes()


def create(tab: Any, cmhost: Cmhost, name: str, engine: str, **fields: str) -> None:
    tab.goto(cmhost.url + "/console/servers/new")
    tab.fill("#f-ServerName", name)
    tab.select_option("#f-Engine", engine)
    quiet = quiet_windows(cmhost)
    tab.check("input[name=DisableAutomatedBackup]")
    tab.fill("#f-PreferredMaintenanceWindow", quiet["PreferredMaintenanceWindow"])
    for selector, value in fields.items():
        tab.fill(selector, value)
    tab.click("form.create button[type=submit]")


def test_a_validation_error_shows_next_to_its_field(page: Any, cmhost: Cmhost,
                                                     client: Any) -> None:
    create(page, cmhost, "web-chef", "Chef", **{"#f-BackupRetentionCount": "0",
                                                "#f-PreferredBackupWindow": "25:00"})
    retention = page.locator('[data-field="BackupRetentionCount"] .field-error')
    expect(retention).to_contain_text("greater than or equal to 1")
    window = page.locator('[data-field="PreferredBackupWindow"] .field-error')
    expect(window).to_contain_text("preferredBackupWindow")
    assert page.locator('[data-field="ServerName"] .field-error').count() == 0
    shoot(page, "create-server-error")
    assert client.describe_servers()["Servers"] == []


def test_create_chef_and_puppet_servers_and_take_their_kits(page: Any, cmhost: Cmhost,
                                                            client: Any) -> None:
    page.goto(cmhost.url + "/console/servers/new")
    shoot(page, "create-server")
    create(page, cmhost, "web-chef", "Chef",
           **{"#f-Tags": "team=web", "[id='f-EngineAttributes.CHEF_DELIVERY_ADMIN_PASSWORD']":
              "Chef_admin1!"})
    expect(page.locator(".once")).to_contain_text("Shown once")
    shoot(page, "created-one-time-credentials")
    pivotal = credential(page, "CHEF_PIVOTAL_KEY")
    kit = zipfile.ZipFile(io.BytesIO(download(page, "#download-kit")))
    credentials = download(page, "#download-credentials").decode()
    kit_key = kit.read("web-chef/.chef/private.pem").decode()
    # The kit's key is the pivotal key CreateServer returned (shown, and in the file).
    assert kit_key.strip() == pivotal.strip()
    assert pivotal.strip() in credentials

    create(page, cmhost, "web-puppet", "Puppet")
    expect(page.locator(".once")).to_contain_text("Shown once")
    assert credential(page, "PUPPET_ADMIN_PASSWORD")
    kit = zipfile.ZipFile(io.BytesIO(download(page, "#download-kit")))
    cert = x509.load_pem_x509_certificate(kit.read("web-puppet/.config/ssl/cert/admin.pem"))
    key = serialization.load_pem_private_key(
        kit.read("web-puppet/.config/ssl/private_key/admin.pem"), password=None)
    # The kit's key is the one its certificate certifies, and that certificate is signed
    # by the server's CA as DescribeServers shows it (PUPPET_API_CA_CERT).
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    server = client.describe_servers(ServerName="web-puppet")["Servers"][0]
    ca_pem = next(a["Value"] for a in server["EngineAttributes"]
                  if a["Name"] == "PUPPET_API_CA_CERT")
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,  # type: ignore[union-attr,call-arg]
                           padding.PKCS1v15(), cert.signature_hash_algorithm)  # type: ignore[arg-type]
    assert kit.read("web-puppet/.config/ssl/cert/ca.pem").decode().strip() == ca_pem.strip()


def test_servers_become_healthy_without_a_reload(page: Any, cmhost: Cmhost) -> None:
    page.goto(cmhost.url + "/console/")
    expect(status_of(page, "web-chef")).to_have_text("CREATING")
    expect(status_of(page, "web-puppet")).to_have_text("CREATING")
    page.evaluate("window.__notReloaded = true")
    cmhost.advance(61)
    expect(status_of(page, "web-chef")).to_have_text("HEALTHY")
    expect(status_of(page, "web-puppet")).to_have_text("HEALTHY")
    assert page.evaluate("window.__notReloaded") is True
    shoot(page, "servers")


def test_backup_restore_windows_and_tags(page: Any, cmhost: Cmhost, client: Any) -> None:
    base = cmhost.url + "/console/servers/web-chef/"
    page.goto(base)
    shoot(page, "server-overview")
    page.goto(base + "backups")
    page.fill("#f-Description", "before the upgrade")
    page.click("form.inline button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Backup started.")
    cmhost.advance(1)
    page.reload()
    row = page.locator("tr[data-backup]").first
    expect(row).to_contain_text("OK")
    expect(row).to_contain_text("before the upgrade")
    shoot(page, "server-backups")
    row.locator("text=Restore this server").click()
    expect(page.locator(".notice")).to_have_text("Restore started.")
    expect(page.locator("h1 [data-status] .word")).to_have_text("RESTORING")
    cmhost.advance(61)
    expect(page.locator("h1 [data-status] .word")).to_have_text("HEALTHY")
    assert any("restored" in e["Message"].lower() for e in
               client.describe_events(ServerName="web-chef")["ServerEvents"])

    page.goto(base + "settings")
    page.fill("#f-PreferredMaintenanceWindow", "Tue:03:30")
    page.click("form.settings button[type=submit]")
    expect(page.locator('[data-field="PreferredMaintenanceWindow"] .field-error')) \
        .to_contain_text("on the hour")
    page.fill("#f-PreferredBackupWindow", "Mon:08:00")
    page.fill("#f-PreferredMaintenanceWindow", "Sat:04:00")
    page.click("form.settings button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Settings saved.")
    shoot(page, "server-settings")
    server = client.describe_servers(ServerName="web-chef")["Servers"][0]
    assert (server["PreferredBackupWindow"], server["PreferredMaintenanceWindow"]) == \
        ("Mon:08:00", "Sat:04:00")

    page.goto(base + "tags")
    expect(page.locator('tr[data-tag="team"]')).to_contain_text("web")
    page.fill("#f-Tags", "owner=ops\nstage=test")
    page.click("form.card button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Tags saved.")
    page.locator('tr[data-tag="stage"] button').click()
    expect(page.locator(".notice")).to_have_text("Tag removed.")
    shoot(page, "server-tags")
    tags = client.list_tags_for_resource(ResourceArn=server["ServerArn"])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("owner", "ops"), ("team", "web")]

    page.goto(base + "events")
    expect(page.locator("table.events")).to_contain_text("restored")
    shoot(page, "server-events")


def test_dashboards_show_nodes_and_a_reset_locks_out_the_old_password(
        page: Any, cmhost: Cmhost, client: Any) -> None:
    assert associate(cmhost, client, "web-chef", "app-1.example.com",
                     chef_attributes())["NodeAssociationStatus"] == "SUCCESS"
    assert associate(cmhost, client, "web-puppet", "db-1.example.com",
                     puppet_attributes("db-1.example.com"))["NodeAssociationStatus"] == "SUCCESS"
    page.goto(cmhost.url + "/console/servers/web-puppet/nodes")
    expect(page.locator('tr[data-node="db-1.example.com"]')).to_contain_text("SUCCESS")
    shoot(page, "server-nodes")

    dashboard = cmhost.url + "/servers/web-chef/dashboard/"
    page.goto(dashboard)
    shoot(page, "dashboard-signin")
    page.fill("input[name=password]", "Chef_admin1!")
    page.click("button[type=submit]")
    expect(page.locator('tr[data-node="app-1.example.com"]')).to_be_visible()
    shoot(page, "dashboard-chef")

    # Set the Puppet admin password in the console, then open its dashboard with it.
    page.goto(cmhost.url + "/console/servers/web-puppet/actions")
    shoot(page, "server-actions")
    page.fill("#f-AttributeValue", "Puppet-first-1")
    page.click("text=Reset the password")
    expect(page.locator("h1")).to_contain_text("New credentials")
    old_password = "Puppet-first-1"
    page.goto(cmhost.url + "/servers/web-puppet/dashboard/")
    page.fill("input[name=password]", old_password)
    page.click("button[type=submit]")
    expect(page.locator('tr[data-node="db-1.example.com"]')).to_contain_text("signed")
    shoot(page, "dashboard-puppet")
    cmhost.advance(5)  # the engine takes the new password: HEALTHY again
    page.goto(cmhost.url + "/console/servers/web-puppet/actions")
    page.click("text=Reset the password")  # empty: cmhost generates one, shown once
    new_password = credential(page, "PUPPET_ADMIN_PASSWORD")
    assert new_password != old_password
    page.goto(cmhost.url + "/servers/web-puppet/dashboard/")
    expect(page.locator("h1")).to_contain_text("Sign in")  # the reset ended the session
    page.fill("input[name=password]", old_password)
    page.click("button[type=submit]")
    expect(page.locator(".error-box")).to_contain_text("not right")
    page.fill("input[name=password]", new_password)
    page.click("button[type=submit]")
    expect(page.locator('tr[data-node="db-1.example.com"]')).to_be_visible()


def test_account_pages_and_delete_with_the_typed_name(page: Any, cmhost: Cmhost,
                                                      client: Any) -> None:
    page.goto(cmhost.url + "/console/backups")
    expect(page.locator("tr[data-backup]").first).to_contain_text("web-chef")
    shoot(page, "backups")
    page.goto(cmhost.url + "/console/account")
    expect(page.locator('tr[data-attribute="ServerLimit"]')).to_contain_text("2")
    shoot(page, "account")

    page.goto(cmhost.url + "/console/servers/web-chef/actions")
    page.fill("#f-RunList", "recipe[base],role[web]")
    script = download(page, "button:has-text(\"Download user data\")").decode()
    assert script.startswith("#!") and "recipe[base],role[web]" in script
    assert "associate-node" in script
    delete = page.locator("[data-delete-button]")
    expect(delete).to_be_disabled()
    page.fill("#f-confirm", "web-che")
    expect(delete).to_be_disabled()
    page.fill("#f-confirm", "web-chef")
    expect(delete).to_be_enabled()
    delete.click()
    expect(page.locator(".notice")).to_have_text("The server is being deleted.")
    expect(status_of(page, "web-chef")).to_have_text("DELETING")
    cmhost.advance(11)
    expect(page.locator('tr[data-server="web-chef"]')).to_have_count(0)
    assert [s["ServerName"] for s in client.describe_servers()["Servers"]] == ["web-puppet"]
