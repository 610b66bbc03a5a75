"""The starter kit of a Puppet server with an r10k remote on a driver that runs a Code
Manager: its token (kept only as a digest), puppet-code.conf, and a README that shows the
curl command with the host and port; other kits say nothing of Code Manager."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from cmhost.engines.code_manager.token import TOKEN_DIGEST, token_digest, token_matches
from cmhost.engines.embedded_identity import prepare_identity
from tests.engines.conftest import make_spec

URL = "https://127.0.0.1:28151/code-manager"
R10K = {"PUPPET_R10K_REMOTE": "ssh://git@git.example.com/control-repo.git"}


def _kit(one_time: list[tuple[str, str]]) -> dict[str, tuple[bytes, int]]:
    data = base64.b64decode(dict(one_time)["PUPPET_STARTER_KIT"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename.split("/", 1)[1]: (archive.read(i), (i.external_attr >> 16) & 0o777)
                for i in archive.infolist()}


def test_a_code_manager_kit_carries_the_token_and_says_how_to_deploy() -> None:
    spec = make_spec("Puppet", endpoint="127.0.0.1:28150")
    prepared = prepare_identity(spec, R10K, code_manager_url=URL)
    kit = _kit(prepared.one_time_attributes)
    token, mode = kit[".puppetlabs/token"]
    assert mode == 0o600
    digest = prepared.material.public[TOKEN_DIGEST]
    assert digest == token_digest(token.decode()) and token_matches(token.decode(), digest)
    assert token.decode().strip() not in json.dumps(prepared.material.public)
    assert token.decode().strip() not in json.dumps(prepared.material.secrets)
    conf = json.loads(kit[".config/puppetlabs/client-tools/puppet-code.conf"][0])
    assert conf == {"service-url": URL, "cacert": ".config/ssl/cert/ca.pem",
                    "token-file": ".puppetlabs/token"}
    readme = kit["README.md"][0].decode()
    assert "## Deploying code: Code Manager" in readme
    assert "host `127.0.0.1`, port 28151" in readme
    assert "curl --cacert .config/ssl/cert/ca.pem -X POST" in readme
    assert 'X-Authentication: $(cat .puppetlabs/token)' in readme
    assert '"wait": true' in readme and f"{URL}/v1/deploys" in readme
    assert f"{URL}/v1/webhook?type=github&token=" in readme


def test_kits_without_a_code_manager_say_nothing_of_it() -> None:
    kits = [
        # an r10k remote on the embedded engine: no Code Manager runs
        prepare_identity(make_spec("Puppet"), R10K),
        # a puppetserver-driven server without a remote
        prepare_identity(make_spec("Puppet", endpoint="127.0.0.1:28150"), {},
                         code_manager_url=URL),
    ]
    for prepared in kits:
        assert TOKEN_DIGEST not in prepared.material.public
        kit = _kit(prepared.one_time_attributes)
        assert ".puppetlabs/token" not in kit
        assert not [name for name in kit if "puppet-code" in name]
        readme = kit["README.md"][0].decode()
        for word in ("Code Manager", "code-manager", "X-Authentication", "28151"):
            assert word not in readme, word
