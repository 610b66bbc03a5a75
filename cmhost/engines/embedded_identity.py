"""The embedded engine's identity: its CA, server certificate, credentials and starter kits.

Everything here works on EngineMaterial in memory and writes nothing to disk.
"""

from __future__ import annotations

import base64
import datetime as dt

from cmhost.engines import pki
from cmhost.engines.attributes import (
    CHEF_DELIVERY_ADMIN_PASSWORD,
    CHEF_PIVOTAL_KEY,
    PUPPET_ADMIN_PASSWORD,
    PUPPET_R10K_PRIVATE_KEY,
    PUPPET_R10K_REMOTE,
    check_update_attribute,
    generate_chef_password,
    generate_puppet_password,
)
from cmhost.engines.base import EngineMaterial, Prepared, ServerSpec
from cmhost.engines.code_manager.token import TOKEN_DIGEST, new_token
from cmhost.engines.starter_kits import chef_starter_kit, puppet_starter_kit
from cmhost.engines.userdata import render_userdata

# The common name of the client certificate a Puppet starter kit carries.
PUPPET_KIT_CLIENT = "admin"
# Maintenance and a restore re-issue a server certificate this close to its end.
RENEW_BEFORE = dt.timedelta(days=30)


def _endpoint_host(endpoint: str) -> str:
    if endpoint.startswith("["):
        return endpoint[1:].split("]", 1)[0]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def copy_material(material: EngineMaterial) -> EngineMaterial:
    """A copy whose dictionaries can be changed without touching the original."""
    return EngineMaterial(public=dict(material.public), secrets=dict(material.secrets))


def server_names(spec: ServerSpec) -> list[str]:
    """The names the server certificate must carry: the endpoint host, the custom domain."""
    host = _endpoint_host(spec.endpoint)
    return [host] + ([spec.custom_domain] if spec.custom_domain else [])


def chef_kit(spec: ServerSpec, material: EngineMaterial, private_pem: str | None) -> str:
    """The Chef starter kit, base64, with the pivotal private key when one is given."""
    ca_cert = material.public["ca_cert"]
    kit = chef_starter_kit(
        spec,
        ca_cert_pem=ca_cert,
        pivotal_private_key_pem=private_pem,
        userdata=render_userdata(spec, ca_cert_pem=ca_cert),
    )
    return _b64(kit)


def current_server_cert(spec: ServerSpec, material: EngineMaterial) -> EngineMaterial:
    """The material, or a copy with a new server certificate and key when the present one will
    not do for long: it expires within RENEW_BEFORE, does not chain to the CA, or does not name
    the server's endpoint and custom domain."""
    cert, ca_cert = material.public["server_cert"], material.public["ca_cert"]
    names = server_names(spec)
    at = dt.datetime.now(dt.UTC) + RENEW_BEFORE
    try:
        good = pki.verify_chain(cert, ca_cert, at=at) and set(names) <= set(
            pki.certificate_names(cert)
        )
    except ValueError:
        good = False
    if good:
        return material
    new_cert, new_key = pki.issue_certificate(ca_cert, material.secrets["ca_key"], names[0], names,
                                              client_auth=spec.family == "Puppet")
    renewed = copy_material(material)
    renewed.public["server_cert"] = new_cert
    renewed.secrets["server_key"] = new_key
    return renewed


def prepare_identity(spec: ServerSpec, attributes: dict[str, str], *,
                     code_manager_url: str | None = None,
                     puppetdb_url: str | None = None) -> Prepared:
    """A new CA, server certificate and credentials; the starter kit (see EngineDriver.prepare).

    `code_manager_url`: where the server's Code Manager will answer (a Puppet server with an
    r10k remote on a driver that runs one). Its token is made here: the kit carries it, the
    material only its digest. `puppetdb_url`: where the server's PuppetDB will answer (the kit
    names it, for its `admin` certificate). A Puppet server's certificate is also a client
    certificate: puppetserver presents it to its PuppetDB, as Puppet's own CA allows."""
    ca_cert, ca_key = pki.generate_ca(f"{spec.name} CA")
    names = server_names(spec)
    server_cert, server_key = pki.issue_certificate(ca_cert, ca_key, names[0], names,
                                                    client_auth=spec.family == "Puppet")
    material = EngineMaterial(
        public={"ca_cert": ca_cert, "server_cert": server_cert},
        secrets={"ca_key": ca_key, "server_key": server_key},
    )
    if spec.family == "Chef":
        one_time = _prepare_chef(spec, attributes, material)
    else:
        one_time = _prepare_puppet(spec, attributes, material, code_manager_url, puppetdb_url)
    return Prepared(material=material, one_time_attributes=one_time)


_PASSWORD_GENERATORS = {"chef": generate_chef_password, "puppet": generate_puppet_password}


def _admin_password(material: EngineMaterial, given: str | None, kind: str
                    ) -> tuple[str, bool]:
    """Store the admin password's hash in `material`: of the given password, else of a new
    one (from the credential supply in effect, if any). Returns the password and whether it
    was generated."""
    if given:
        material.public["admin_password_hash"] = pki.hash_password(given)
        return given, False
    password, material.public["admin_password_hash"] = pki.generated_password(
        kind, _PASSWORD_GENERATORS[kind])
    return password, True


def _prepare_chef(
    spec: ServerSpec, attributes: dict[str, str], material: EngineMaterial
) -> list[tuple[str, str]]:
    automate = spec.engine == "ChefAutomate"
    one_time: list[tuple[str, str]] = []
    given_key = attributes.get(CHEF_PIVOTAL_KEY)
    private_pem: str | None = None
    if given_key:
        material.public["pivotal_public_key"] = pki.public_key_pem(pki.load_public_key(given_key))
    else:
        key = pki.generate_rsa_key()
        material.public["pivotal_public_key"] = pki.public_key_pem(key)
        private_pem = pki.private_key_pem(key)
        name = "CHEF_AUTOMATE_PIVOTAL_KEY" if automate else CHEF_PIVOTAL_KEY
        one_time.append((name, private_pem))
    password, generated = _admin_password(
        material, attributes.get(CHEF_DELIVERY_ADMIN_PASSWORD), "chef")
    if generated:
        name = "CHEF_AUTOMATE_ADMIN_PASSWORD" if automate else CHEF_DELIVERY_ADMIN_PASSWORD
        one_time.append((name, password))
    one_time.append(("CHEF_STARTER_KIT", chef_kit(spec, material, private_pem)))
    return one_time


def _prepare_puppet(
    spec: ServerSpec, attributes: dict[str, str], material: EngineMaterial,
    code_manager_url: str | None, puppetdb_url: str | None,
) -> list[tuple[str, str]]:
    password, _ = _admin_password(material, attributes.get(PUPPET_ADMIN_PASSWORD), "puppet")
    if attributes.get(PUPPET_R10K_REMOTE):
        material.public["r10k_remote"] = attributes[PUPPET_R10K_REMOTE]
    if attributes.get(PUPPET_R10K_PRIVATE_KEY):
        material.secrets["r10k_private_key"] = attributes[PUPPET_R10K_PRIVATE_KEY]
    token: str | None = None
    if code_manager_url and attributes.get(PUPPET_R10K_REMOTE):
        token, material.public[TOKEN_DIGEST] = new_token()
    else:
        code_manager_url = None
    ca_cert = material.public["ca_cert"]
    # The kit's client key is handed out once and kept nowhere.
    client_cert, client_key = pki.issue_certificate(
        ca_cert, material.secrets["ca_key"], PUPPET_KIT_CLIENT, [], server=False
    )
    kit = puppet_starter_kit(
        spec,
        ca_cert_pem=ca_cert,
        client_cert_pem=client_cert,
        client_key_pem=client_key,
        userdata=render_userdata(spec, ca_cert_pem=ca_cert),
        code_manager_url=code_manager_url,
        code_manager_token=token,
        puppetdb_url=puppetdb_url,
    )
    return [(PUPPET_ADMIN_PASSWORD, password), ("PUPPET_STARTER_KIT", _b64(kit))]


def update_credential(
    spec: ServerSpec, material: EngineMaterial, name: str, value: str | None
) -> Prepared:
    """UpdateServerEngineAttributes: a new pivotal key (Chef) or admin password (Puppet).

    Returns a new material; `material` itself is never changed.

    Given a value, it is stored (as a public key or a password hash) and nothing is
    returned; without one, a new credential is made and returned once (with a new starter
    kit for Chef).
    """
    canonical, checked = check_update_attribute(spec.engine, name, value)
    new = copy_material(material)
    one_time: list[tuple[str, str]] = []
    if canonical == CHEF_PIVOTAL_KEY:
        if checked:
            new.public["pivotal_public_key"] = checked
        else:
            key = pki.generate_rsa_key()
            new.public["pivotal_public_key"] = pki.public_key_pem(key)
            private_pem = pki.private_key_pem(key)
            automate = spec.engine == "ChefAutomate"
            one_time.append(
                ("CHEF_AUTOMATE_PIVOTAL_KEY" if automate else CHEF_PIVOTAL_KEY, private_pem)
            )
            one_time.append(("CHEF_STARTER_KIT", chef_kit(spec, new, private_pem)))
    else:
        password, generated = _admin_password(new, checked, "puppet")
        if generated:
            one_time.append((PUPPET_ADMIN_PASSWORD, password))
    return Prepared(material=new, one_time_attributes=one_time)
