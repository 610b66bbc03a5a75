"""The bash user-data script that installs a node's agent and associates it with a server."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from cmhost.engines.base import EngineFamily, InvalidEngineAttribute, ServerSpec

_ORGANIZATION = re.compile(r"[a-z0-9_-]{1,255}")
_CLIENT_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}")
_PLACEHOLDER = re.compile(r"@SERVER@|@AWS@")
_ENDPOINT = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:(?P<port>[0-9]{1,5}))?")

_PRELUDE = r"""
log() { printf '[cmhost user data] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The node name: $NODE_NAME if set, else the EC2 instance id, else the host name.
resolve_node_name() {
  if [ -n "${NODE_NAME:-}" ]; then printf '%s\n' "$NODE_NAME"; return 0; fi
  local token="" id=""
  if command -v curl >/dev/null 2>&1; then
    token="$(curl -fsS -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
      http://169.254.169.254/latest/api/token 2>/dev/null || true)"
    id="$(curl -fsS -m 2 ${token:+-H "X-aws-ec2-metadata-token: $token"} \
      http://169.254.169.254/latest/meta-data/instance-id 2>/dev/null || true)"
  fi
  if [ -n "$id" ]; then printf '%s\n' "$id"; return 0; fi
  hostname -f 2>/dev/null || hostname
}

# Installs are skipped when the tool is already there or CMHOST_SKIP_INSTALL=1.
skip_install() { [ "${CMHOST_SKIP_INSTALL:-0}" = 1 ]; }
# The first agent run is skipped when CMHOST_SKIP_AGENT_RUN=1 (the node is still associated).
skip_agent_run() { [ "${CMHOST_SKIP_AGENT_RUN:-0}" = 1 ]; }

# The service's commands need an AWS CLI that still ships it (awscli 1.42.18 or older),
# or a newer one given the service model through AWS_DATA_PATH (`cmhost model export DIR`).
install_aws_cli() {
  if command -v aws >/dev/null 2>&1; then return 0; fi
  if ! skip_install; then
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q awscli || true
    elif command -v dnf >/dev/null 2>&1; then
      dnf install -y awscli || true
    elif command -v yum >/dev/null 2>&1; then
      yum install -y awscli || true
    fi
  fi
  command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is needed; install it and run again"
}

# The CLI's name for the service: the CLIs that ship it call it `opsworks-cm`; a newer one
# given the model through AWS_DATA_PATH knows only the model's name, `opsworkscm`. A
# skeleton is printed without a request, so asking costs no call to the service.
opsworks_cm_command() {
  local name
  for name in opsworks-cm opsworkscm; do
    if aws "$name" describe-servers --generate-cli-skeleton >/dev/null 2>&1; then
      printf '%s\n' "$name"
      return 0
    fi
  done
  return 1
}

command -v openssl >/dev/null 2>&1 || die "openssl is needed to create this node's key"
install_aws_cli
OPSWORKS_CM="$(opsworks_cm_command)" || die "this AWS CLI knows neither 'aws opsworks-cm' \
nor 'aws opsworkscm': use awscli 1.42.18 or older, or set AWS_DATA_PATH to a folder the \
service model was exported to (cmhost model export DIR)"

umask 077
NODE_NAME="$(resolve_node_name)"
[[ "$NODE_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "node name '$NODE_NAME' may only hold letters, digits, '.', '_' and '-'"
export NODE_NAME
"""

_CHEF_BODY = r"""
CHEF_DIR="${CHEF_DIR:-/etc/chef}"
CHEF_TRUSTED_CERTS_DIR="$CHEF_DIR/trusted_certs"
CHEF_CLIENT="${CHEF_CLIENT:-chef-client}"
CHEF_INSTALL_URL="${CHEF_INSTALL_URL:-https://omnitruck.chef.io/install.sh}"
# An unattended chef-client run needs the Chef license accepted; set CHEF_LICENSE to change.
export CHEF_LICENSE="${CHEF_LICENSE:-accept}"

# Ruby single-quoted string literal of $1.
ruby_quote() {
  local s="${1//\\/\\\\}"
  s="${s//\'/\\\'}"
  printf "'%s'" "$s"
}

install_chef_client() {
  if command -v "$CHEF_CLIENT" >/dev/null 2>&1; then log "chef-client is installed"; return 0; fi
  if skip_install; then log "skipping the chef-client install"; return 0; fi
  local how="install chef-client yourself and run again (set CHEF_CLIENT to its path if it \
is not on PATH), point CHEF_INSTALL_URL at a copy of the installer this machine can reach, \
or set CMHOST_SKIP_INSTALL=1 to skip the install"
  command -v curl >/dev/null 2>&1 || die "curl is needed to download the chef-client \
installer from $CHEF_INSTALL_URL; $how"
  local args=() installer status=0
  if [ -n "$CHEF_CLIENT_VERSION" ]; then args=(-v "$CHEF_CLIENT_VERSION"); fi
  installer="$(mktemp)"
  # Downloaded first, not piped to bash: a failed download must stop here, said plainly.
  curl -fsSL --retry 3 -o "$installer" "$CHEF_INSTALL_URL" || status=$?
  if [ "$status" -ne 0 ]; then
    rm -f "$installer"
    die "could not download the chef-client installer from $CHEF_INSTALL_URL \
(curl exit status $status); $how"
  fi
  bash "$installer" ${args[@]+"${args[@]}"} || status=$?
  rm -f "$installer"
  [ "$status" -eq 0 ] || die "the chef-client installer from $CHEF_INSTALL_URL failed \
(exit status $status); $how"
}

install_chef_client
mkdir -p "$CHEF_DIR" "$CHEF_TRUSTED_CERTS_DIR"
openssl genrsa -out "$CHEF_DIR/client.pem" 2048 2>/dev/null
openssl rsa -in "$CHEF_DIR/client.pem" -pubout -out "$CHEF_DIR/client.pub" 2>/dev/null
PUBKEY="$(cat "$CHEF_DIR/client.pub")"

log "associating node $NODE_NAME with server $SERVER_NAME"
TOKEN="$(aws "$OPSWORKS_CM" associate-node --server-name @SERVER@ --node-name "$NODE_NAME" \
  --engine-attributes "Name=CHEF_ORGANIZATION,Value=$CHEF_ORGANIZATION" \
  "Name=CHEF_NODE_PUBLIC_KEY,Value=$PUBKEY" \
  --query NodeAssociationStatusToken --output text @AWS@)"
[ -n "$TOKEN" ] || die "associate-node returned no NodeAssociationStatusToken"

cat > "$CHEF_DIR/client.rb" <<EOF
chef_server_url $(ruby_quote "https://$CHEF_SERVER_ENDPOINT/organizations/$CHEF_ORGANIZATION")
node_name $(ruby_quote "$NODE_NAME")
client_key $(ruby_quote "$CHEF_DIR/client.pem")
trusted_certs_dir $(ruby_quote "$CHEF_TRUSTED_CERTS_DIR")
ssl_verify_mode :verify_peer
EOF
printf '%s\n' "$CA_CERT" > "$CHEF_TRUSTED_CERTS_DIR/opsworks-cm-ca.pem"

aws "$OPSWORKS_CM" wait node-associated --server-name @SERVER@ \
  --node-association-status-token "$TOKEN" @AWS@
log "node $NODE_NAME is associated"

CHEF_CLIENT_ARGS=(-c "$CHEF_DIR/client.rb")
if [ -n "$RUN_LIST" ]; then CHEF_CLIENT_ARGS+=(-r "$RUN_LIST"); fi
if [ -n "$CHEF_ENVIRONMENT" ]; then CHEF_CLIENT_ARGS+=(-E "$CHEF_ENVIRONMENT"); fi
if skip_agent_run; then
  log "not running chef-client (CMHOST_SKIP_AGENT_RUN=1); run: $CHEF_CLIENT ${CHEF_CLIENT_ARGS[*]}"
  exit 0
fi
command -v "$CHEF_CLIENT" >/dev/null 2>&1 || die "chef-client ($CHEF_CLIENT) is not \
installed; node $NODE_NAME is associated: install chef-client, then run \
$CHEF_CLIENT ${CHEF_CLIENT_ARGS[*]}"
STATUS=0
"$CHEF_CLIENT" "${CHEF_CLIENT_ARGS[@]}" || STATUS=$?
[ "$STATUS" -eq 0 ] || die "the first chef-client run failed (exit status $STATUS) against \
https://$CHEF_SERVER_ENDPOINT; node $NODE_NAME is associated and its key is \
$CHEF_DIR/client.pem: see chef-client's messages above"
log "chef-client ran"
"""

_PUPPET_BODY = r"""
find_puppet() {
  if [ -n "${PUPPET:-}" ]; then printf '%s\n' "$PUPPET"; return 0; fi
  if [ -x /opt/puppetlabs/bin/puppet ]; then printf '%s\n' /opt/puppetlabs/bin/puppet; return 0; fi
  command -v puppet
}

install_puppet_agent() {
  if find_puppet >/dev/null 2>&1; then log "the puppet agent is installed"; return 0; fi
  if skip_install; then log "skipping the puppet agent install"; return 0; fi
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q puppet-agent \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -q puppet
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y puppet-agent || dnf install -y puppet
  elif command -v yum >/dev/null 2>&1; then
    yum install -y puppet-agent || yum install -y puppet
  else
    die "no apt-get, dnf or yum to install the puppet agent with"
  fi
}

# The line of `puppet config print` for setting $1 ("name = value"), its value.
printed() { sed -n "s/^$1 = //p" <<<"$2"; }

# Whether section [$2] of puppet.conf $3 sets $1 (it would override our [main] value).
set_in_section() {
  [ -f "$3" ] && awk -v want="$2" -v key="$1" '
    /^[ \t]*\[/ { gsub(/[][ \t]/, ""); section = $0; next }
    section == want && $0 ~ "^[ \t]*" key "[ \t]*=" { found = 1 }
    END { exit !found }' "$3"
}

install_puppet_agent
PUPPET="$(find_puppet)" || die "the puppet agent is not installed"
# A confdir given in PUPPET_CONFDIR is this node's own: the agent is run with it, and the
# system's puppet service (which reads the system confdir) is left alone.
SYSTEM_CONFDIR="$("$PUPPET" config print confdir 2>/dev/null || true)"
if [ -z "${PUPPET_CONFDIR:-}" ]; then
  PUPPET_CONFDIR="${SYSTEM_CONFDIR:-/etc/puppetlabs/puppet}"
fi
mkdir -p "$PUPPET_CONFDIR"
PUPPET_CONF="$PUPPET_CONFDIR/puppet.conf"
# `puppet config set` edits puppet.conf in place (other settings and comments stay) but
# needs the file to exist.
[ -e "$PUPPET_CONF" ] || : > "$PUPPET_CONF"
PUPPET_FLAGS=(--confdir "$PUPPET_CONFDIR")
OWNED=()
if [ -n "${PUPPET_SSLDIR:-}" ]; then PUPPET_FLAGS+=(--ssldir "$PUPPET_SSLDIR"); OWNED+=(ssldir); fi
if [ -n "${PUPPET_VARDIR:-}" ]; then PUPPET_FLAGS+=(--vardir "$PUPPET_VARDIR"); OWNED+=(vardir); fi
SETTINGS="$("$PUPPET" config print "${PUPPET_FLAGS[@]}" --section agent ssldir serverport \
  2>/dev/null || true)"
if [ -z "${PUPPET_SSLDIR:-}" ]; then
  PUPPET_SSLDIR="$(printed ssldir "$SETTINGS")"
  PUPPET_SSLDIR="${PUPPET_SSLDIR:-$PUPPET_CONFDIR/ssl}"
fi
# Puppet 7 names the port serverport; older agents know only masterport.
PORT_SETTING=masterport
if [ -n "$(printed serverport "$SETTINGS")" ]; then PORT_SETTING=serverport; fi

mkdir -p "$PUPPET_SSLDIR/private_keys" "$PUPPET_SSLDIR/public_keys" \
  "$PUPPET_SSLDIR/certs" "$PUPPET_SSLDIR/certificate_requests"
NODE_KEY="$PUPPET_SSLDIR/private_keys/$NODE_NAME.pem"
NODE_CSR="$PUPPET_SSLDIR/certificate_requests/$NODE_NAME.pem"
openssl genrsa -out "$NODE_KEY" 2048 2>/dev/null
openssl rsa -in "$NODE_KEY" -pubout -out "$PUPPET_SSLDIR/public_keys/$NODE_NAME.pem" 2>/dev/null
openssl req -new -key "$NODE_KEY" -subj "/CN=$NODE_NAME" -out "$NODE_CSR"
CSR="$(cat "$NODE_CSR")"

log "associating node $NODE_NAME with server $SERVER_NAME"
TOKEN="$(aws "$OPSWORKS_CM" associate-node --server-name @SERVER@ --node-name "$NODE_NAME" \
  --engine-attributes "Name=PUPPET_NODE_CSR,Value=$CSR" \
  --query NodeAssociationStatusToken --output text @AWS@)"
[ -n "$TOKEN" ] || die "associate-node returned no NodeAssociationStatusToken"
aws "$OPSWORKS_CM" wait node-associated --server-name @SERVER@ \
  --node-association-status-token "$TOKEN" @AWS@
CERT="$(aws "$OPSWORKS_CM" describe-node-association-status --server-name @SERVER@ \
  --node-association-status-token "$TOKEN" \
  --query "EngineAttributes[?Name=='PUPPET_NODE_CERT'].Value" --output text @AWS@)"
case "$CERT" in
  *"BEGIN CERTIFICATE"*) ;;
  *) die "the server returned no PUPPET_NODE_CERT for node $NODE_NAME" ;;
esac
log "node $NODE_NAME is associated"

printf '%s\n' "$CERT" > "$PUPPET_SSLDIR/certs/$NODE_NAME.pem"
printf '%s\n' "$CA_CERT" > "$PUPPET_SSLDIR/certs/ca.pem"
chmod 644 "$PUPPET_SSLDIR/certs/ca.pem" "$PUPPET_SSLDIR/certs/$NODE_NAME.pem"

# Only the settings this script owns change; the rest of puppet.conf stays as it was.
own_setting() {
  local section
  for section in main agent; do
    if [ "$section" = main ] || set_in_section "$1" agent "$PUPPET_CONF"; then
      "$PUPPET" config set "${PUPPET_FLAGS[@]}" --section "$section" "$1" "$2" \
        || die "could not set $1 in [$section] of $PUPPET_CONF"
    fi
  done
}
own_setting certname "$NODE_NAME"
own_setting server "$PUPPET_SERVER_HOST"
own_setting ca_server "$PUPPET_SERVER_HOST"
if [ -n "$PUPPET_SERVER_PORT" ]; then own_setting "$PORT_SETTING" "$PUPPET_SERVER_PORT"; fi
for name in ${OWNED[@]+"${OWNED[@]}"}; do
  if [ "$name" = ssldir ]; then own_setting ssldir "$PUPPET_SSLDIR"; fi
  if [ "$name" = vardir ]; then own_setting vardir "$PUPPET_VARDIR"; fi
done
chmod 644 "$PUPPET_CONF"

SERVER_AT="$PUPPET_SERVER_HOST${PUPPET_SERVER_PORT:+:$PUPPET_SERVER_PORT}"
AGENT_ARGS=(agent "${PUPPET_FLAGS[@]}" --onetime --no-daemonize --verbose --no-splay
  --no-usecacheonfailure --detailed-exitcodes)
if skip_agent_run; then
  log "not running the puppet agent (CMHOST_SKIP_AGENT_RUN=1); run: $PUPPET ${AGENT_ARGS[*]}"
else
  STATUS=0
  "$PUPPET" "${AGENT_ARGS[@]}" || STATUS=$?
  # --detailed-exitcodes: 0 nothing changed, 2 changes applied; anything else failed.
  if [ "$STATUS" -ne 0 ] && [ "$STATUS" -ne 2 ]; then
    die "the first puppet agent run against $SERVER_AT failed (exit status $STATUS); node \
$NODE_NAME is associated and its certificate is in $PUPPET_SSLDIR: see the agent's messages \
above, then run $PUPPET ${AGENT_ARGS[*]}"
  fi
  log "the puppet agent applied its catalog from $SERVER_AT"
fi

if [ "$PUPPET_CONFDIR" != "${SYSTEM_CONFDIR:-/etc/puppetlabs/puppet}" ]; then
  log "not starting the puppet service: it reads ${SYSTEM_CONFDIR:-the system confdir}, \
not $PUPPET_CONFDIR; run the agent with: $PUPPET ${AGENT_ARGS[*]}"
elif [ "${CMHOST_START_SERVICE:-1}" = 1 ]; then
  "$PUPPET" resource service puppet ensure=running enable=true \
    || die "could not start the puppet service (the agent run succeeded)"
fi
"""


def _assign(name: str, value: str) -> str:
    return f"{name}={shlex.quote(value)}\n"


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    match = _ENDPOINT.fullmatch(endpoint)
    if match is None:
        raise ValueError(f"the server endpoint {endpoint[:100]!r} is not host or host:port")
    return match.group("host"), match.group("port") or ""


def _aws_flags(spec: ServerSpec) -> str:
    """The AWS CLI flags that point it at the cmhost managing this server."""
    flags = f"--region {shlex.quote(spec.region)}"
    if spec.api_endpoint:
        flags += f" --endpoint-url {shlex.quote(spec.api_endpoint)}"
    return flags


def render_userdata(
    spec: ServerSpec,
    *,
    ca_cert_pem: str,
    run_list: str | None = None,
    organization: str = "default",
    environment: str | None = None,
    client_version: str | None = None,
) -> str:
    """The user-data script for a new node of `spec`'s server.

    run_list, organization, environment and client_version apply to Chef only (Puppet
    ignores them, as the original service did). Raises ValueError for an organization or a
    client version that is not well formed.
    """
    host, port = _split_endpoint(spec.endpoint)
    header = (
        "#!/bin/bash\n"
        "# User data generated by cmhost: installs the agent on this machine and associates\n"
        "# it as a node of the OpsWorks CM server named in SERVER_NAME.\n"
        "set -euo pipefail\n\n"
        + _assign("SERVER_NAME", spec.name)
        + _assign("CA_CERT", ca_cert_pem.strip())
    )
    if spec.family == "Chef":
        if not _ORGANIZATION.fullmatch(organization):
            raise ValueError(
                "OrganizationName may only hold lower-case letters, digits, '_' and '-'"
            )
        if client_version and not _CLIENT_VERSION.fullmatch(client_version):
            raise ValueError("NodeClientVersion must be numbers separated by dots, e.g. 18.5.0")
        header += (
            _assign("CHEF_SERVER_ENDPOINT", spec.endpoint)
            + _assign("CHEF_ORGANIZATION", organization)
            + _assign("RUN_LIST", run_list or "")
            + _assign("CHEF_ENVIRONMENT", environment or "")
            + _assign("CHEF_CLIENT_VERSION", client_version or "")
        )
        body = _CHEF_BODY
    else:
        header += _assign("PUPPET_SERVER_HOST", host) + _assign("PUPPET_SERVER_PORT", port)
        body = _PUPPET_BODY
    # One pass, so a value can never be mistaken for a placeholder.
    fills = {"@SERVER@": shlex.quote(spec.name), "@AWS@": _aws_flags(spec)}
    body = _PLACEHOLDER.sub(lambda m: fills[m.group(0)], body)
    return header + _PRELUDE + body


USERDATA_INPUTS = ("RunList", "OrganizationName", "NodeEnvironment", "NodeClientVersion")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RUN_LIST_MAX = 4096


def check_userdata_inputs(family: EngineFamily, inputs: Mapping[str, str]) -> dict[str, str]:
    """Check ExportServerEngineAttribute InputAttributes for Userdata; return the non-empty ones.

    Names other than RunList, OrganizationName, NodeEnvironment and NodeClientVersion are
    refused. Puppet ignores the values, as the original service did; Chef checks them: the
    organization can only be `default` (the one a server has), an environment is a Chef
    environment name, a client version is numbers separated by dots.
    """
    unknown = sorted(set(inputs) - set(USERDATA_INPUTS))
    if unknown:
        raise InvalidEngineAttribute(
            f"Input attribute {unknown[0][:64]!r} is not accepted for Userdata; "
            f"accepted: {', '.join(USERDATA_INPUTS)}"
        )
    given = {name: value for name, value in inputs.items() if value}
    if family != "Chef":
        return given
    run_list = given.get("RunList", "")
    if len(run_list) > _RUN_LIST_MAX or any(not c.isprintable() for c in run_list):
        raise InvalidEngineAttribute(
            f"RunList must be at most {_RUN_LIST_MAX} printable characters, "
            "e.g. recipe[nginx],role[web]"
        )
    organization = given.get("OrganizationName", "default")
    if organization != "default":
        raise InvalidEngineAttribute(
            "OrganizationName must be 'default': a server has one organization, 'default'"
        )
    environment = given.get("NodeEnvironment")
    if environment is not None and not _ENVIRONMENT.fullmatch(environment):
        raise InvalidEngineAttribute(
            "NodeEnvironment must be a Chef environment name: letters, digits, '_' and '-'"
        )
    version = given.get("NodeClientVersion")
    if version is not None and not _CLIENT_VERSION.fullmatch(version):
        raise InvalidEngineAttribute(
            "NodeClientVersion must be numbers separated by dots, e.g. 18.5.0"
        )
    return given


def render_userdata_for_inputs(
    spec: ServerSpec, *, ca_cert_pem: str, inputs: Mapping[str, str]
) -> str:
    """`render_userdata` driven by checked ExportServerEngineAttribute InputAttributes."""
    given = check_userdata_inputs(spec.family, inputs)
    try:
        return render_userdata(
            spec,
            ca_cert_pem=ca_cert_pem,
            run_list=given.get("RunList"),
            organization=given.get("OrganizationName", "default"),
            environment=given.get("NodeEnvironment"),
            client_version=given.get("NodeClientVersion"),
        )
    except ValueError as exc:
        raise InvalidEngineAttribute(str(exc)) from None
