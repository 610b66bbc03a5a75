"""The Chef and Puppet starter kits: ZIP files handed out once by CreateServer."""

from __future__ import annotations

import io
import json
import re
import zipfile

from cryptography import x509
from cryptography.x509.oid import NameOID

from cmhost.engines.base import ServerSpec

# A fixed timestamp keeps the archive bytes a function of its contents.
_ZIP_DATE = (2016, 11, 1, 0, 0, 0)
_PUBLIC, _PRIVATE, _EXECUTABLE = 0o644, 0o600, 0o755


def _zip(files: dict[str, tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            text, mode = files[path]
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so unzip honours the permission bits below
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, text)
    return buffer.getvalue()


def _host(endpoint: str) -> str:
    """The endpoint without a port."""
    if endpoint.startswith("["):
        return endpoint.split("]", 1)[0] + "]"
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def _ruby(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------------------ Chef

_CHEF_README = """# Starter kit for the Chef server {name}

This kit lets you manage the OpsWorks CM Chef server `{name}` (engine {engine}
{version}) at `https://{endpoint}` from this folder.

| file | what it is |
| --- | --- |
| `.chef/knife.rb` | knife configuration: user `pivotal`, organization `default` |
| `.chef/private.pem` | {key_note} |
| `.chef/ca_certs/opsworks-cm-ca.pem` | the CA that signed the server's certificate |
| `Berksfile` | cookbook dependencies, uploaded with Berkshelf |
| `cookbooks/opsworks-webserver` | an example cookbook that installs a web server |
| `userdata.sh` | user data that makes a new machine a node of this server |

## First steps

Run everything from this folder.

    knife ssl check                  # the server's certificate chains to .chef/ca_certs
    knife client list                # talks to the Chef API as pivotal
    berks install
    SSL_CERT_FILE=.chef/ca_certs/opsworks-cm-ca.pem berks upload
    knife cookbook list

## Adding nodes

Pass `userdata.sh` as user data to a new machine (or run it as root on an existing one).
It installs chef-client, creates the node's key, calls `aws opsworks-cm associate-node`
and then runs chef-client. Edit `RUN_LIST` in it, for example to
`recipe[opsworks-webserver]` once the cookbook is uploaded. The machine needs AWS
credentials allowed to call AssociateNode and DescribeNodeAssociationStatus.

Or bootstrap a machine you can reach over SSH:

    knife bootstrap HOST -N NODE_NAME --run-list 'recipe[opsworks-webserver]'

## Keep the private key safe

The pivotal key is the Chef server's superuser credential. The service does not keep it
and will not show it again; to replace it, call UpdateServerEngineAttributes with a new
CHEF_PIVOTAL_KEY.
"""

_KNIFE_RB = """# knife configuration for the Chef server {name}
base_dir = File.join(File.dirname(File.expand_path(__FILE__)), '..')

log_level :info
log_location STDOUT
node_name 'pivotal'
client_key File.join(base_dir, '.chef', 'private.pem')
syntax_check_cache_path File.join(base_dir, '.chef', 'syntaxcache')
cookbook_path [File.join(base_dir, 'cookbooks')]
chef_server_url {server_url}
trusted_certs_dir File.join(base_dir, '.chef', 'ca_certs')
ssl_verify_mode :verify_peer
"""

_BERKSFILE = """source 'https://supermarket.chef.io'

cookbook 'opsworks-webserver', path: 'cookbooks/opsworks-webserver'
"""

_COOKBOOK_METADATA = """name 'opsworks-webserver'
maintainer 'You'
maintainer_email 'you@example.com'
license 'Apache-2.0'
description 'Installs nginx and serves a page naming the node'
version '0.1.0'
chef_version '>= 12.1'

supports 'ubuntu'
supports 'debian'
supports 'redhat'
supports 'centos'
supports 'amazon'
"""

_COOKBOOK_README = """# opsworks-webserver

An example cookbook: installs nginx and serves a page that names the node.
"""

_COOKBOOK_RECIPE = """#
# Cookbook:: opsworks-webserver
# Recipe:: default
#
# Installs nginx, serves a page naming this node, and keeps the service running.

docroot = platform_family?('debian') ? '/var/www/html' : '/usr/share/nginx/html'

package 'nginx'

directory docroot do
  recursive true
end

file ::File.join(docroot, 'index.html') do
  content "<h1>#{node.name}</h1>\\n<p>Managed by Chef.</p>\\n"
  mode '0644'
end

service 'nginx' do
  action [:enable, :start]
end
"""


def chef_starter_kit(
    spec: ServerSpec,
    *,
    ca_cert_pem: str,
    pivotal_private_key_pem: str | None,
    userdata: str,
) -> bytes:
    """The Chef starter kit: a ZIP with one top-level folder named after the server."""
    root = f"{spec.name}/"
    server_url = _ruby(f"https://{spec.endpoint}/organizations/default")
    key_note = (
        "the pivotal user's private key"
        if pivotal_private_key_pem
        else "not included: you gave the pivotal public key, put its private key here"
    )
    files: dict[str, tuple[str, int]] = {
        "README.md": (
            _CHEF_README.format(
                name=spec.name,
                engine=spec.engine,
                version=spec.engine_version,
                endpoint=spec.endpoint,
                key_note=key_note,
            ),
            _PUBLIC,
        ),
        "Berksfile": (_BERKSFILE, _PUBLIC),
        "cookbooks/opsworks-webserver/metadata.rb": (_COOKBOOK_METADATA, _PUBLIC),
        "cookbooks/opsworks-webserver/recipes/default.rb": (_COOKBOOK_RECIPE, _PUBLIC),
        "cookbooks/opsworks-webserver/README.md": (_COOKBOOK_README, _PUBLIC),
        "userdata.sh": (userdata, _EXECUTABLE),
        ".chef/knife.rb": (_KNIFE_RB.format(name=spec.name, server_url=server_url), _PUBLIC),
        ".chef/ca_certs/opsworks-cm-ca.pem": (ca_cert_pem.strip() + "\n", _PUBLIC),
    }
    if pivotal_private_key_pem:
        files[".chef/private.pem"] = (pivotal_private_key_pem, _PRIVATE)
    return _zip({root + path: entry for path, entry in files.items()})


# ---------------------------------------------------------------------------- Puppet

_PUPPET_README = """# Starter kit for the Puppet server {name}

This kit lets you manage the OpsWorks CM Puppet server `{name}` (engine {engine}
{version}) at `{host}`.

| file | what it is |
| --- | --- |
| `.config/ssl/cert/ca.pem` | the server's CA (also PUPPET_API_CA_CERT in DescribeServers) |
| `.config/ssl/cert/{admin}.pem` | a client certificate for `{admin}`, issued for this kit |
| `.config/ssl/private_key/{admin}.pem` | its private key: keep it safe, it is not stored |
| `.config/puppetlabs/client-tools/puppet-code.conf` | Code Manager at port 8170 |
| `.config/puppetlabs/client-tools/puppetdb.conf` | PuppetDB at port 8081 |
| `control-repo/` | a control repository skeleton (roles, profiles, Hiera data) |
| `userdata.sh` | user data that makes a new machine a node of this server |

## First steps

The client-tool configuration uses paths relative to this folder, so run the tools here:

    puppet-code --config-file .config/puppetlabs/client-tools/puppet-code.conf deploy --all --wait
    puppet-query --config-file .config/puppetlabs/client-tools/puppetdb.conf 'nodes[certname] {{}}'

Push `control-repo/` to the Git repository given as PUPPET_R10K_REMOTE; its `production`
branch becomes the `production` environment.

## Adding nodes

Pass `userdata.sh` as user data to a new machine (or run it as root on an existing one).
It installs the Puppet agent, sends a CSR through `aws opsworks-cm associate-node`,
installs the signed certificate and the CA, and starts the agent. The machine needs AWS
credentials allowed to call AssociateNode and DescribeNodeAssociationStatus.

Each starter kit carries a newly issued client certificate; the service keeps no copy of
its private key.
"""

_ENVIRONMENT_CONF = "modulepath = site:modules:$basemodulepath\nmanifest = manifests/site.pp\n"

_PUPPETFILE = """# Modules r10k installs into modules/ for every environment.
forge 'https://forge.puppet.com'

mod 'puppetlabs-stdlib'
"""

_SITE_PP = """# Classify nodes by role; unclassified nodes get the base role.
node default {
  include role::base
}
"""

_HIERA_YAML = """---
version: 5
defaults:
  datadir: data
  data_hash: yaml_data
hierarchy:
  - name: "Per-node data"
    path: "nodes/%{trusted.certname}.yaml"
  - name: "Common data"
    path: "common.yaml"
"""

_COMMON_YAML = """---
profile::base::motd: "This node is managed by Puppet."
"""

_ROLE_BASE = """# The role every node has unless site.pp says otherwise.
class role::base {
  include profile::base
}
"""

_PROFILE_BASE = """# Settings every node shares.
class profile::base (
  String $motd = 'This node is managed by Puppet.',
) {
  file { '/etc/motd':
    ensure  => file,
    content => "${motd}\\n",
    mode    => '0644',
  }
}
"""


def _common_name(cert_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = str(names[0].value) if names else "admin"
    return value if re.fullmatch(r"[A-Za-z0-9._-]+", value) else "admin"


def puppet_starter_kit(
    spec: ServerSpec,
    *,
    ca_cert_pem: str,
    client_cert_pem: str,
    client_key_pem: str,
    userdata: str,
) -> bytes:
    """The Puppet starter kit: a ZIP with one top-level folder named after the server.

    The client credential files are named after the client certificate's common name.
    """
    root = f"{spec.name}/"
    host = _host(spec.endpoint)
    admin = _common_name(client_cert_pem)
    cacert = ".config/ssl/cert/ca.pem"
    cert = f".config/ssl/cert/{admin}.pem"
    key = f".config/ssl/private_key/{admin}.pem"
    puppet_code = {
        "service-url": f"https://{host}:8170/code-manager",
        "cacert": cacert,
        "cert": cert,
        "key": key,
    }
    puppetdb = {
        "puppetdb": {
            "server_urls": f"https://{host}:8081",
            "cacert": cacert,
            "cert": cert,
            "key": key,
        }
    }
    readme = _PUPPET_README.format(
        name=spec.name, engine=spec.engine, version=spec.engine_version, host=host, admin=admin
    )
    files: dict[str, tuple[str, int]] = {
        "README.md": (readme, _PUBLIC),
        "userdata.sh": (userdata, _EXECUTABLE),
        cacert: (ca_cert_pem.strip() + "\n", _PUBLIC),
        cert: (client_cert_pem.strip() + "\n", _PUBLIC),
        key: (client_key_pem.strip() + "\n", _PRIVATE),
        ".config/puppetlabs/client-tools/puppet-code.conf": (
            json.dumps(puppet_code, indent=2) + "\n",
            _PUBLIC,
        ),
        ".config/puppetlabs/client-tools/puppetdb.conf": (
            json.dumps(puppetdb, indent=2) + "\n",
            _PUBLIC,
        ),
        "control-repo/environment.conf": (_ENVIRONMENT_CONF, _PUBLIC),
        "control-repo/Puppetfile": (_PUPPETFILE, _PUBLIC),
        "control-repo/hiera.yaml": (_HIERA_YAML, _PUBLIC),
        "control-repo/data/common.yaml": (_COMMON_YAML, _PUBLIC),
        "control-repo/manifests/site.pp": (_SITE_PP, _PUBLIC),
        "control-repo/site/role/manifests/base.pp": (_ROLE_BASE, _PUBLIC),
        "control-repo/site/profile/manifests/base.pp": (_PROFILE_BASE, _PUBLIC),
    }
    return _zip({root + path: entry for path, entry in files.items()})
