"""The Chef and Puppet starter kits: ZIP files handed out once by CreateServer."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Literal

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


# The engine that serves a kit's server: cmhost's embedded engine (identity only, no
# service), goiardi (a Chef server) or puppetserver.
KitEngine = Literal["embedded", "goiardi", "puppetserver"]


def kit_engine(spec: ServerSpec) -> KitEngine:
    """The engine serving `spec`'s server, read from its Endpoint as EngineDriver.allocate_endpoint
    promises it: a DNS-like name without a port for the embedded engine, `host:port` for a
    real one. A driver that knows better passes its engine to the kit functions."""
    host = _host(spec.endpoint)
    if host == spec.endpoint:
        return "embedded"
    return "goiardi" if spec.family == "Chef" else "puppetserver"


_EMBEDDED = """## No {family} service answers at this endpoint

This server runs on cmhost's **embedded engine**. It keeps the server's identity (its CA,
{keys}, the nodes you associate; backups, restores and maintenance keep them), so
AssociateNode, DisassociateNode and the user data below work; but it runs no {family}
service: nothing answers at `{endpoint}`, so {clients} cannot reach it (run `userdata.sh`
with `CMHOST_SKIP_AGENT_RUN=1`: it associates the node, and its first agent run would fail).

For a real {family} server, ask whoever runs cmhost to install {package}
(`apt-get install goiardi puppetserver puppet-agent` on Debian) and start it with
`{flag}`; servers created from then on are served by {engine_name}.
"""


def _shell(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _ruby(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------------------ Chef

_CHEF_README = """# Starter kit for the Chef server {name}

This kit lets you manage the OpsWorks CM Chef server `{name}` (engine {engine}
{version}) from this folder. {served}

| file | what it is |
| --- | --- |
| `chef-api.sh` | a signed Chef API request as `pivotal`, made with curl and openssl |
| `.chef/knife.rb` | knife configuration: user `pivotal`, organization `default` |
| `.chef/private.pem` | {key_note} |
| `.chef/ca_certs/opsworks-cm-ca.pem` | the CA that signed the server's certificate |
| `Berksfile` | cookbook dependencies, uploaded with Berkshelf |
| `cookbooks/opsworks-webserver` | an example cookbook that installs a web server |
| `userdata.sh` | user data that makes a new machine a node of this server |

{first_steps}
## Adding nodes

Pass `userdata.sh` as user data to a new machine (or run it as root on an existing one).
It installs chef-client (set `CMHOST_SKIP_INSTALL=1` to use the one installed), creates
the node's key, calls `aws opsworks-cm associate-node` and then runs chef-client
(`CMHOST_SKIP_AGENT_RUN=1` skips that run). Edit `RUN_LIST` in it, for example to
`recipe[opsworks-webserver]` once the cookbook is uploaded. The machine needs AWS
credentials allowed to call AssociateNode and DescribeNodeAssociationStatus.

## Keep the private key safe

The pivotal key is the Chef server's superuser credential. The service does not keep it
and will not show it again; to replace it, call UpdateServerEngineAttributes with a new
CHEF_PIVOTAL_KEY.
"""

_CHEF_SERVED = """The Chef API is served by goiardi at `{url}` (host `{host}`,
port {port}); goiardi serves the one organization at its root, with no
`/organizations/default` in its paths."""

_CHEF_FIRST_STEPS = """## First steps

Run everything from this folder. `chef-api.sh` needs only bash, curl and openssl (Debian
does not ship knife):

    ./chef-api.sh GET /users/pivotal    # the server answers as pivotal's own record
    ./chef-api.sh GET /nodes            # the nodes associated so far
    ./chef-api.sh GET /clients

The same request without the kit's key is refused:

    curl --cacert .chef/ca_certs/opsworks-cm-ca.pem {url}/nodes   # 401

With Chef Workstation (not in Debian) installed, `.chef/knife.rb` serves knife and
Berkshelf from this folder: `knife node list`, `berks install && berks upload`.
"""

# A Chef API request signed as pivotal (Mixlib::Authentication 1.3, SHA-256) with curl and
# openssl, the tools a Debian machine has.
_CHEF_API_SH = r"""#!/bin/bash
# chef-api.sh METHOD PATH [JSON BODY]: one Chef API request to {name}, signed as pivotal.
# e.g. ./chef-api.sh GET /nodes
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SERVER_URL={server_url}
KEY="$HERE/.chef/private.pem"
CA="$HERE/.chef/ca_certs/opsworks-cm-ca.pem"
USER_ID="${{CHEF_USER:-pivotal}}"
[ -r "$KEY" ] || {{ echo "chef-api.sh: $KEY is missing: put pivotal's private key there" >&2; exit 1; }}
METHOD="${{1:-GET}}"
REQUEST_PATH="${{2:-/users/pivotal}}"
BODY="${{3:-}}"
# The signed path: the server URL's path plus the request's, without query or final slash.
BASE_PATH="/${{SERVER_URL#https://*/}}"
[ "$BASE_PATH" = "/$SERVER_URL" ] && BASE_PATH=""
SIGNED_PATH="$BASE_PATH${{REQUEST_PATH%%\?*}}"
SIGNED_PATH="${{SIGNED_PATH%/}}"
STAMP="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
HASH="$(printf '%s' "$BODY" | openssl dgst -sha256 -binary | openssl base64 -A)"
CANONICAL="Method:$METHOD
Path:$SIGNED_PATH
X-Ops-Content-Hash:$HASH
X-Ops-Sign:version=1.3
X-Ops-Timestamp:$STAMP
X-Ops-UserId:$USER_ID
X-Ops-Server-API-Version:1"
SIGNATURE="$(printf '%s' "$CANONICAL" | openssl dgst -sha256 -sign "$KEY" | openssl base64 -A)"
HEADERS=(-H "Accept: application/json" -H "X-Chef-Version: 12.0.0"
  -H "X-Ops-Sign: algorithm=sha256;version=1.3;" -H "X-Ops-Userid: $USER_ID"
  -H "X-Ops-Timestamp: $STAMP" -H "X-Ops-Content-Hash: $HASH"
  -H "X-Ops-Server-API-Version: 1")
N=1
while read -r LINE; do
  HEADERS+=(-H "X-Ops-Authorization-$N: $LINE")
  N=$((N + 1))
done < <(fold -w 60 <<<"$SIGNATURE")
if [ -n "$BODY" ]; then HEADERS+=(-H "Content-Type: application/json" --data-binary "$BODY"); fi
curl -sS --fail-with-body --cacert "$CA" -X "$METHOD" "${{HEADERS[@]}}" \
  "$SERVER_URL$REQUEST_PATH"
echo
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


def _port(endpoint: str) -> str:
    return endpoint[len(_host(endpoint)) + 1:]


def chef_starter_kit(
    spec: ServerSpec,
    *,
    ca_cert_pem: str,
    pivotal_private_key_pem: str | None,
    userdata: str,
    engine: KitEngine | None = None,
) -> bytes:
    """The Chef starter kit: a ZIP with one top-level folder named after the server.

    Its README says what serves the server (`engine`, else `kit_engine(spec)`): for goiardi,
    the Chef API's URL and how to call it; for the embedded engine, that no Chef service
    answers and how to get one.
    """
    engine = engine or kit_engine(spec)
    root = f"{spec.name}/"
    server_url = _ruby(f"https://{spec.endpoint}/organizations/default")
    key_note = (
        "the pivotal user's private key"
        if pivotal_private_key_pem
        else "not included: you gave the pivotal public key, put its private key here"
    )
    # goiardi serves its one organization at the root of the endpoint.
    api_url = f"https://{spec.endpoint}"
    if engine == "embedded":
        served = ""
        first_steps = _EMBEDDED.format(
            family="Chef", keys="the pivotal key", endpoint=spec.endpoint,
            clients="knife, chef-client and `chef-api.sh`", package="goiardi",
            flag="cmhost serve --chef-driver goiardi", engine_name="goiardi",
        )
    else:
        served = _CHEF_SERVED.format(url=api_url, host=_host(spec.endpoint),
                                     port=_port(spec.endpoint))
        first_steps = _CHEF_FIRST_STEPS.format(url=api_url)
    files: dict[str, tuple[str, int]] = {
        "README.md": (
            _CHEF_README.format(
                name=spec.name,
                engine=spec.engine,
                version=spec.engine_version,
                served=served,
                first_steps=first_steps,
                key_note=key_note,
            ),
            _PUBLIC,
        ),
        "chef-api.sh": (
            _CHEF_API_SH.format(name=spec.name, server_url=_shell(api_url)), _EXECUTABLE
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
{version}) from this folder. {served}

| file | what it is |
| --- | --- |
| `.config/ssl/cert/ca.pem` | the server's CA (also PUPPET_API_CA_CERT in DescribeServers) |
| `.config/ssl/cert/{admin}.pem` | a client certificate for `{admin}`, issued for this kit |
| `.config/ssl/private_key/{admin}.pem` | its private key: keep it safe, it is not stored |
{tool_rows}| `control-repo/` | a control repository skeleton (roles, profiles, Hiera data) |
| `userdata.sh` | user data that makes a new machine a node of this server |

{first_steps}{services}
## Adding nodes

Pass `userdata.sh` as user data to a new machine (or run it as root on an existing one).
It installs the Puppet agent (set `CMHOST_SKIP_INSTALL=1` to use the one installed), sends
a CSR through `aws opsworks-cm associate-node`, installs the signed certificate and the CA,
sets `server`, `ca_server`, the port and `certname` with `puppet config set` and runs the
agent once (`CMHOST_SKIP_AGENT_RUN=1` skips that run). `PUPPET_CONFDIR` and `PUPPET_SSLDIR`
choose other directories than the system's. The machine needs AWS credentials allowed to
call AssociateNode and DescribeNodeAssociationStatus.

Each starter kit carries a newly issued client certificate; the service keeps no copy of
its private key.
"""

_PUPPET_SERVED = """puppetserver serves it at `{endpoint}` (host `{host}`, port
{port})."""

_PUPPET_FIRST_STEPS = """## First steps

Run everything from this folder; curl and `puppet agent` (Debian's `puppet-agent`) are
all it takes.

    curl --cacert .config/ssl/cert/ca.pem https://{endpoint}/status/v1/simple   # running
    curl --cacert .config/ssl/cert/ca.pem --cert .config/ssl/cert/{admin}.pem \\
      --key .config/ssl/private_key/{admin}.pem \\
      https://{endpoint}/puppet-ca/v1/certificate_revocation_list/ca

A node's agent reaches the server with these settings (`userdata.sh` sets them for you):

    puppet agent --test --server {host} --serverport {port} --certname NODE_NAME

The agent's certificate is signed through AssociateNode, not by puppetserver's own
autosigning: run `userdata.sh`, or send the CSR yourself with `aws opsworks-cm
associate-node --engine-attributes Name=PUPPET_NODE_CSR,Value=...`.
{tools}"""

_PUPPET_TOOLS = """
The configuration of Puppet Enterprise's client tools (not in Debian; curl does the same)
uses paths relative to this folder, so run them here:
{lines}"""

_CODE_MANAGER = """
## Deploying code: Code Manager

The server deploys its control repository (PUPPET_R10K_REMOTE) with r10k: each branch is an
environment, with the modules its Puppetfile names. It deploys every branch when it is
created (an event of the server says how that went); after you push, deploy again through
Code Manager at `{url}` (host `{host}`, port {port}). It accepts the token in `.puppetlabs/token`, sent as an `X-Authentication`
header. Keep the token safe: the service keeps only its hash and will not show it again.

    curl --cacert .config/ssl/cert/ca.pem -X POST -H 'Content-Type: application/json' \\
      -H "X-Authentication: $(cat .puppetlabs/token)" \\
      -d '{{"deploy-all": true, "wait": true}}' {url}/v1/deploys

`{{"environments": ["production"], "wait": true}}` deploys one environment. The answer gives
each environment's `status`: `complete`, with the commit now served as `deploy-signature`,
or `failed`, with the `error`; an environment that fails keeps the code it had. Without
`"wait": true` the answer comes at once, and

    curl --cacert .config/ssl/cert/ca.pem -H "X-Authentication: $(cat .puppetlabs/token)" \\
      {url}/v1/deploys/status

lists what is still queued or deploying and what failed lately.

To deploy on every push, give your git host the webhook
`{url}/v1/webhook?type=github&token=<the token>` (or `type=gitlab`), content type
`application/json`: a push to a branch deploys that branch's environment. The git host must
reach `{host}` on port {port} and trust the server's CA (`.config/ssl/cert/ca.pem`).

Each deployment, and why one failed, is also an event of the server
(`aws opsworks-cm describe-events`). Deployed code is part of the server's backups, and
RestoreServer serves the backup's code again.
"""

_PUPPETDB = """
## Querying PuppetDB

The server stores every node's facts, catalog (with the resources it exports, such as
`@@file {{...}}`, which other nodes collect with `File <<| |>>`) and reports in its PuppetDB,
at `{url}` (host `{host}`, port {port}). PuppetDB accepts only the server itself and this
kit's `{admin}` certificate: nodes reach it through the Puppet server, never directly.

    curl --cacert .config/ssl/cert/ca.pem --cert .config/ssl/cert/{admin}.pem \\
      --key .config/ssl/private_key/{admin}.pem {url}/pdb/query/v4/nodes

lists the nodes; `{url}/pdb/query/v4/nodes/NODE_NAME/facts` gives a node's facts and

    curl --cacert .config/ssl/cert/ca.pem --cert .config/ssl/cert/{admin}.pem \\
      --key .config/ssl/private_key/{admin}.pem -G {url}/pdb/query/v4/reports \\
      --data-urlencode 'query=["and",["=","certname","NODE_NAME"],["=","latest_report?",true]]'

its last report. PuppetDB's data is part of the server's backups: RestoreServer brings back
the backup's, and the server is HEALTHY again once PuppetDB holds all of it.
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


_TOKEN_FILE = ".puppetlabs/token"  # where PE's client tools keep a token


def _url_host_port(url: str) -> tuple[str, str]:
    """The host and port of `https://host:port/...`."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    host = _host(netloc)
    return host, netloc[len(host) + 1:]


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
    engine: KitEngine | None = None,
    code_manager_url: str | None = None,
    code_manager_token: str | None = None,
    puppetdb_url: str | None = None,
) -> bytes:
    """The Puppet starter kit: a ZIP with one top-level folder named after the server.

    The client credential files are named after the client certificate's common name. Its
    README says what serves the server (`engine`, else `kit_engine(spec)`); the client-tool
    configurations for Code Manager and PuppetDB are included only when the server serves
    them (their URLs given), so the kit names no service that nothing answers. The Code
    Manager's URL is its service URL (`https://host:port/code-manager`); its token, when
    given, goes to `.puppetlabs/token` (0600) and the README says how to deploy with curl.
    PuppetDB's URL is `https://host:port`; the README says how to query it with curl and the
    kit's client certificate, which PuppetDB allows."""
    engine = engine or kit_engine(spec)
    root = f"{spec.name}/"
    host = _host(spec.endpoint)
    admin = _common_name(client_cert_pem)
    cacert = ".config/ssl/cert/ca.pem"
    cert = f".config/ssl/cert/{admin}.pem"
    key = f".config/ssl/private_key/{admin}.pem"
    tools: dict[str, tuple[str, int]] = {}
    rows, lines = "", ""
    code_manager, puppetdb = "", ""
    if code_manager_url:
        conf = ".config/puppetlabs/client-tools/puppet-code.conf"
        # Code Manager takes a token, not a client certificate (PE's puppet-code.conf keys).
        settings = {"service-url": code_manager_url, "cacert": cacert}
        if code_manager_token:
            settings["token-file"] = _TOKEN_FILE
        tools[conf] = (json.dumps(settings, indent=2) + "\n", _PUBLIC)
        rows += f"| `{conf}` | Code Manager at `{code_manager_url}` |\n"
        lines += f"\n    puppet-code --config-file {conf} deploy --all --wait\n"
        if code_manager_token:
            tools[_TOKEN_FILE] = (code_manager_token.strip() + "\n", _PRIVATE)
            rows += f"| `{_TOKEN_FILE}` | the Code Manager's token: keep it safe |\n"
        cm_host, cm_port = _url_host_port(code_manager_url)
        code_manager = _CODE_MANAGER.format(url=code_manager_url, host=cm_host, port=cm_port)
    if puppetdb_url:
        conf = ".config/puppetlabs/client-tools/puppetdb.conf"
        tools[conf] = (json.dumps({"puppetdb": {"server_urls": puppetdb_url, "cacert": cacert,
                                                "cert": cert, "key": key}}, indent=2) + "\n",
                       _PUBLIC)
        rows += f"| `{conf}` | PuppetDB at `{puppetdb_url}` |\n"
        lines += f"\n    puppet-query --config-file {conf} 'nodes[certname] {{}}'\n"
        pdb_host, pdb_port = _url_host_port(puppetdb_url)
        puppetdb = _PUPPETDB.format(url=puppetdb_url, host=pdb_host, port=pdb_port, admin=admin)
    if engine == "embedded":
        served = ""
        first_steps = _EMBEDDED.format(
            family="Puppet", keys="its certificates", endpoint=spec.endpoint,
            clients="`puppet agent` and curl", package="puppetserver and puppet-agent",
            flag="cmhost serve --puppet-driver puppetserver", engine_name="puppetserver",
        )
    else:
        port = _port(spec.endpoint)
        served = _PUPPET_SERVED.format(endpoint=spec.endpoint, host=host, port=port)
        first_steps = _PUPPET_FIRST_STEPS.format(
            endpoint=spec.endpoint, host=host, port=port, admin=admin,
            tools=_PUPPET_TOOLS.format(lines=lines) if lines else "",
        )
    readme = _PUPPET_README.format(
        name=spec.name, engine=spec.engine, version=spec.engine_version, served=served,
        admin=admin, tool_rows=rows, first_steps=first_steps,
        services=code_manager + puppetdb if engine != "embedded" else "",
    )
    files: dict[str, tuple[str, int]] = {
        "README.md": (readme, _PUBLIC),
        "userdata.sh": (userdata, _EXECUTABLE),
        cacert: (ca_cert_pem.strip() + "\n", _PUBLIC),
        cert: (client_cert_pem.strip() + "\n", _PUBLIC),
        key: (client_key_pem.strip() + "\n", _PRIVATE),
        **tools,
        "control-repo/environment.conf": (_ENVIRONMENT_CONF, _PUBLIC),
        "control-repo/Puppetfile": (_PUPPETFILE, _PUBLIC),
        "control-repo/hiera.yaml": (_HIERA_YAML, _PUBLIC),
        "control-repo/data/common.yaml": (_COMMON_YAML, _PUBLIC),
        "control-repo/manifests/site.pp": (_SITE_PP, _PUBLIC),
        "control-repo/site/role/manifests/base.pp": (_ROLE_BASE, _PUBLIC),
        "control-repo/site/profile/manifests/base.pp": (_PROFILE_BASE, _PUBLIC),
    }
    return _zip({root + path: entry for path, entry in files.items()})
