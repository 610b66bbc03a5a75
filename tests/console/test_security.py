"""The console's security over plain HTTP: sessions, CSRF, isolation between accounts, the
headers and cookie flags of every page, the slowed sign-in, and secrets shown once."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.console.conftest import Browser, issue_key
from tests.support import Cmhost, create_server, database_bytes, error_code

PAGES = ("/console/", "/console/servers/new", "/console/backups", "/console/account")


def _server_pages(name: str) -> list[str]:
    base = f"/console/servers/{name}/"
    return [base] + [base + tab for tab in
                     ("events", "backups", "nodes", "settings", "tags", "actions")]


def _healthy(cm: Cmhost, client: Any, name: str) -> None:
    cm.advance(120)
    deadline = time.monotonic() + 20
    while client.describe_servers(ServerName=name)["Servers"][0]["Status"] != "HEALTHY":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_without_a_session_nothing_is_seen_or_changed(cmhost: Cmhost, client: Any) -> None:
    create_server(client, "sec-hidden")
    anonymous = Browser(cmhost)
    for path in (*PAGES, *_server_pages("sec-hidden")):
        response = anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/signin"
        assert "sec-hidden" not in response.text
    assert anonymous.get("/console/api/servers").status_code == 401
    # Even with a valid sign-in CSRF token (of the pre-sign-in cookie), no action runs.
    anonymous.get("/console/signin")
    for path, data in (("/console/servers/sec-hidden/delete", {"confirm": "sec-hidden"}),
                       ("/console/servers/new", {"ServerName": "sec-made", "Engine": "Chef"}),
                       ("/console/servers/sec-hidden/backups", {})):
        response = anonymous.post(path, data)
        assert response.status_code in (303, 403), path
    assert client.describe_servers(ServerName="sec-hidden")["Servers"][0]["Status"] == "CREATING"
    with pytest.raises(Exception) as made:
        client.describe_servers(ServerName="sec-made")
    assert error_code(made.value) == "ResourceNotFoundException"
    assert client.describe_backups(ServerName="sec-hidden")["Backups"] == []


def test_another_accounts_session_sees_and_changes_nothing(cmhost: Cmhost, client: Any) -> None:
    create_server(client, "sec-theirs")
    key = issue_key(cmhost, "111122223333")
    other = Browser(cmhost)
    assert other.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 303
    listing = other.get("/console/")
    assert listing.status_code == 200 and "sec-theirs" not in listing.text
    assert other.get("/console/api/servers").json() == {"servers": []}
    for path in _server_pages("sec-theirs"):
        assert other.get(path).status_code == 404, path
    for path, data in (("/console/servers/sec-theirs/delete", {"confirm": "sec-theirs"}),
                       ("/console/servers/sec-theirs/settings",
                        {"PreferredBackupWindow": "01:00"}),
                       ("/console/servers/sec-theirs/tags", {"Tags": "owner=mallory"})):
        assert other.post(path, data).status_code == 404, path
    server = client.describe_servers(ServerName="sec-theirs")["Servers"][0]
    assert server["Status"] == "CREATING" and server["PreferredBackupWindow"] != "01:00"
    assert client.list_tags_for_resource(ResourceArn=server["ServerArn"])["Tags"] == []
    # Its own server of the same name is its own.
    assert other.get("/console/account").text.count("111122223333") >= 1


def test_a_post_without_the_csrf_token_is_refused(cmhost: Cmhost, client: Any,
                                                    browser: Browser) -> None:
    create_server(client, "sec-csrf")
    for token in (None, "0" * 64):
        data = {"confirm": "sec-csrf"} if token is None else {"confirm": "sec-csrf",
                                                               "csrf": token}
        refused = browser.post("/console/servers/sec-csrf/delete", data, csrf=False)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    refused = browser.post("/console/servers/new", {"ServerName": "sec-csrf-2", "Engine": "Chef",
                                                    "InstanceType": "m5.large"}, csrf=False)
    assert refused.status_code == 403
    assert client.describe_servers(ServerName="sec-csrf")["Servers"][0]["Status"] == "CREATING"
    # The sign-in form has its token too (bound to a cookie given with the form).
    fresh = Browser(cmhost)
    fresh.get("/console/signin")
    assert fresh.post("/console/signin", {"AccessKeyId": "test", "SecretAccessKey": "test"},
                      csrf=False).status_code == 403
    # A token of another session does not do either.
    other = Browser(cmhost)
    other.sign_in()
    other.get("/console/")
    stolen = browser.post("/console/servers/sec-csrf/delete",
                          {"confirm": "sec-csrf", "csrf": other.csrf}, csrf=False)
    assert stolen.status_code == 403


def _cookie(response: Any, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]
    assert found, response.headers
    return str(found[0])


def test_pages_carry_the_csp_and_the_cookies_their_flags(cmhost: Cmhost, client: Any,
                                                         browser: Browser) -> None:
    create_server(client, "sec-headers")
    for path in (*PAGES, *_server_pages("sec-headers"), "/console/signin"):
        response = browser.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert "<script>" not in response.text and " on" + "click=" not in response.text
    plain = Browser(cmhost)
    plain.get("/console/signin")
    cookie = _cookie(plain.sign_in(), "cmhost_console")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    # Behind a TLS proxy every cookie is Secure (httpx, on plain HTTP, would not send one
    # back: the test carries it by hand, as the proxy's HTTPS client would).
    behind_tls = Browser(cmhost, headers={"X-Forwarded-Proto": "https"})
    presign = _cookie(behind_tls.get("/console/signin"), "cmhost_presign")
    assert "Secure" in presign and "HttpOnly" in presign
    behind_tls.http.cookies.set("cmhost_presign", presign.split(";")[0].split("=", 1)[1])
    cookie = _cookie(behind_tls.post("/console/signin", {
        "AccessKeyId": "test", "SecretAccessKey": "test", "region": "us-east-1"}),
        "cmhost_console")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_sign_out_ends_the_session_and_idle_sessions_expire(cmhost: Cmhost) -> None:
    user = Browser(cmhost)
    user.sign_in()
    session_id = user.http.cookies["cmhost_console"]
    assert user.get("/console/").status_code == 200
    assert user.post("/console/signout", {}).status_code == 303
    thief = Browser(cmhost)
    thief.http.cookies.set("cmhost_console", session_id)
    assert thief.get("/console/").status_code == 303

    idle = Browser(cmhost)
    idle.sign_in()
    assert idle.get("/console/").status_code == 200
    engine = create_engine(cmhost.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE console_sessions SET last_seen = last_seen - 13 * 3600"))
    engine.dispose()
    assert idle.get("/console/").status_code == 303


def test_sessions_end_when_their_key_is_deleted(cmhost: Cmhost) -> None:
    key = issue_key(cmhost, "444455556666")
    user = Browser(cmhost)
    user.sign_in(key["AccessKeyId"], key["SecretAccessKey"])
    assert user.get("/console/").status_code == 200
    cmhost.cli("keys", "delete", key["AccessKeyId"], *cmhost.storage_args())
    deadline = time.monotonic() + 10  # the key directory caches a key for 5 s
    while user.get("/console/").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_failed_sign_ins_are_slowed_down(cmhost: Cmhost) -> None:
    key = issue_key(cmhost, "777788889999")
    guesser = Browser(cmhost)
    for _ in range(5):
        answer = guesser.sign_in(key["AccessKeyId"], "wrong")
        assert answer.status_code == 401
        assert "not right" in answer.text
    # Now even the right secret waits: the key (and this address) must wait.
    assert guesser.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 429
    time.sleep(2.2)
    assert guesser.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 303


def test_secrets_shown_once_are_in_no_later_page_nor_the_database(
        cmhost: Cmhost, client: Any, browser: Browser) -> None:
    created = browser.post("/console/servers/new", {
        "ServerName": "sec-once", "Engine": "Puppet", "InstanceType": "m5.large",
        "InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/p",
        "ServiceRoleArn": "arn:aws:iam::000000000000:role/r"})
    assert created.status_code == 200
    assert "shown once" in created.text.lower()
    password = re.search(r'id="credential-PUPPET_ADMIN_PASSWORD">([^<]+)<', created.text)
    kit = re.search(r'href="data:application/zip;base64,([^"]+)"', created.text)
    assert password and kit
    secrets = [password.group(1), kit.group(1)[1000:1100]]
    _healthy(cmhost, client, "sec-once")
    reset = browser.post("/console/servers/sec-once/credentials",
                         {"AttributeName": "PUPPET_ADMIN_PASSWORD"})
    assert reset.status_code == 200
    new_password = re.search(r'id="credential-PUPPET_ADMIN_PASSWORD">([^<]+)<', reset.text)
    assert new_password and new_password.group(1) != password.group(1)
    secrets.append(new_password.group(1))
    later = [*PAGES, *_server_pages("sec-once"), "/console/api/servers",
             "/console/api/servers/sec-once"]
    for path in later:
        page = browser.get(path).text
        for secret in secrets:
            assert secret not in page, path
    stored = database_bytes(cmhost.database_url)
    for secret in secrets:
        assert secret.encode() not in stored
    # The sessions table holds hashes, not the session ids the browser has.
    assert browser.http.cookies["cmhost_console"].encode() not in stored


def test_dashboard_sessions_are_scoped_to_one_server_and_end_with_a_reset(
        cmhost: Cmhost, client: Any, browser: Browser) -> None:
    first = create_server(client, "sec-dash", "Puppet",
                          EngineAttributes=[{"Name": "PUPPET_ADMIN_PASSWORD",
                                             "Value": "First-pass-1"}])
    create_server(client, "sec-dash-2", "Puppet",
                  EngineAttributes=[{"Name": "PUPPET_ADMIN_PASSWORD", "Value": "Other-pass-2"}])
    assert first["Status"] == "CREATING"
    _healthy(cmhost, client, "sec-dash")
    admin = Browser(cmhost)
    admin.get("/servers/sec-dash/dashboard/")
    wrong = admin.post("/servers/sec-dash/dashboard/signin",
                       {"user": "admin", "password": "Other-pass-2"})
    assert wrong.status_code == 401  # the other server's password opens only the other one
    signed = admin.post("/servers/sec-dash/dashboard/signin",
                        {"user": "admin", "password": "First-pass-1"})
    assert signed.status_code == 303
    cookie = _cookie(signed, "cmhost_dashboard")
    assert "Path=/servers/sec-dash/dashboard" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = admin.get("/servers/sec-dash/dashboard/")
    assert page.status_code == 200 and "Certname" in page.text
    # The dashboard session is no console session, nor another server's dashboard session.
    session_id = admin.http.cookies["cmhost_dashboard"]
    other = Browser(cmhost)
    other.http.cookies.set("cmhost_dashboard", session_id)
    assert "Sign in to sec-dash-2" in other.get("/servers/sec-dash-2/dashboard/").text
    other.http.cookies.set("cmhost_console", session_id)
    assert other.get("/console/").status_code == 303
    # A reset through the API ends the session and the old password at once.
    client.update_server_engine_attributes(ServerName="sec-dash",
                                           AttributeName="PUPPET_ADMIN_PASSWORD",
                                           AttributeValue="Second-pass-2")
    assert "Sign in to sec-dash" in admin.get("/servers/sec-dash/dashboard/").text
    assert admin.post("/servers/sec-dash/dashboard/signin",
                      {"user": "admin", "password": "First-pass-1"}).status_code == 401
    assert admin.post("/servers/sec-dash/dashboard/signin",
                      {"user": "admin", "password": "Second-pass-2"}).status_code == 303
    # A dashboard form without its token is refused too.
    assert admin.post("/servers/sec-dash/dashboard/signout", {},
                      csrf=False).status_code == 403
