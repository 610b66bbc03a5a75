"""Code deployment with the real r10k and git against local repositories (no puppetserver):
branches become environments with their Puppetfile's modules, only clean deployments are
served, a failure leaves the served code as it was, and a private key reaches git over SSH
only while it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmhost.engines.r10k import (
    CodeDeployer,
    deployed_signature,
    has_deployed_code,
    live_environments,
)
from tests.engines.git_repos import Repos, Sshd, git, have_tools, site_pp

pytestmark = pytest.mark.skipif(bool(have_tools()), reason=have_tools() or "tools present")


@pytest.fixture()
def repos(tmp_path: Path) -> Repos:
    repos = Repos(tmp_path / "git")
    repos.commit("production", {"Puppetfile": repos.puppetfile(),
                                "manifests/site.pp": site_pp("/tmp/x", "v1")})
    repos.commit("feature", {"manifests/site.pp": site_pp("/tmp/x", "feature")})
    return repos


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A server's engine directory, serving the environment puppetserver starts with."""
    root = tmp_path / "server"
    (root / "state" / "code" / "environments" / "production" / "manifests").mkdir(parents=True)
    return root


def served(root: Path, environment: str, path: str = "manifests/site.pp") -> str:
    return (root / "state" / "code" / "environments" / environment / path).read_text()


def head(repos: Repos, branch: str) -> str:
    return git(repos.base, "--git-dir", str(repos.control), "rev-parse", branch)


def test_every_branch_is_deployed_with_its_modules(repos: Repos, root: Path) -> None:
    deployer = CodeDeployer(root, f"file://{repos.control}")
    results = deployer.deploy()
    assert [(r.environment, r.ok) for r in results] == [("feature", True), ("production", True)]
    assert {r.environment: r.signature for r in results} == {
        "feature": head(repos, "feature"), "production": head(repos, "production")}
    assert live_environments(root) == ["feature", "production"]
    assert "'v1'" in served(root, "production") and "'feature'" in served(root, "feature")
    assert "class greeting" in served(root, "production", "modules/greeting/manifests/init.pp")
    assert deployed_signature(root, "production") == head(repos, "production")
    assert has_deployed_code(root)
    # r10k's configuration and work stay in the server's r10k/ directory, not served.
    config = (root / "r10k" / "r10k.yaml").read_text()
    assert str(repos.control) in config and str(root / "r10k" / "staging") in config
    assert (root / "r10k" / "staging").is_dir()


def test_a_new_commit_is_served_after_a_deployment_of_its_environment(
        repos: Repos, root: Path) -> None:
    deployer = CodeDeployer(root, str(repos.control))  # a plain path works as a remote too
    deployer.deploy()
    sha = repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v2")})
    repos.commit("feature", {"manifests/site.pp": site_pp("/tmp/x", "feature 2")})
    [result] = deployer.deploy(["production"])
    assert result.ok and result.signature == sha
    assert "'v2'" in served(root, "production")
    assert "'feature'" in served(root, "feature")  # not asked for: untouched
    # And again, from what the previous deployment left in staging.
    sha = repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v3")})
    [result] = deployer.deploy(["production"])
    assert result.signature == sha and "'v3'" in served(root, "production")


def test_a_broken_puppetfile_fails_that_environment_and_leaves_it_served(
        repos: Repos, root: Path) -> None:
    deployer = CodeDeployer(root, str(repos.control))
    deployer.deploy()
    before = deployed_signature(root, "production")
    repos.commit("production", {"Puppetfile": "mod 'greeting', :git =>\n",
                                "manifests/site.pp": site_pp("/tmp/x", "broken")})
    sha = repos.commit("feature", {"manifests/site.pp": site_pp("/tmp/x", "feature 2")})
    results = {r.environment: r for r in deployer.deploy()}
    failed = results["production"]
    assert not failed.ok and failed.signature is None and failed.error is not None
    assert failed.error.kind == "puppetlabs.code-manager/deploy-failure"
    assert failed.error.details == {"corrected-name": "production"}
    assert "Puppetfile" in failed.error.msg and "syntax error" in failed.error.msg
    assert str(root) not in failed.error.msg  # no local paths for the caller
    assert "'v1'" in served(root, "production")
    assert deployed_signature(root, "production") == before
    assert results["feature"].ok and results["feature"].signature == sha
    assert "'feature 2'" in served(root, "feature")


def test_an_unreachable_module_source_fails_and_leaves_the_environment_served(
        repos: Repos, root: Path) -> None:
    deployer = CodeDeployer(root, str(repos.control))
    deployer.deploy(["production"])
    repos.commit("production", {
        "Puppetfile": repos.puppetfile() + "mod 'gone', git: 'file:///nonexistent/gone.git'\n",
        "manifests/site.pp": site_pp("/tmp/x", "v2")})
    [result] = deployer.deploy(["production"])
    assert not result.ok and result.error is not None
    assert "git clone" in result.error.msg
    assert "'v1'" in served(root, "production")


def test_a_bad_remote_fails_every_environment_and_changes_nothing(
        repos: Repos, root: Path) -> None:
    CodeDeployer(root, str(repos.control)).deploy()
    results = CodeDeployer(root, f"file://{repos.base}/missing.git").deploy()
    assert [r.environment for r in results] == ["feature", "production"]  # those served
    assert all(not r.ok for r in results)
    assert all(r.error and "Unable to list the branches" in r.error.msg for r in results)
    assert "'v1'" in served(root, "production") and "'feature'" in served(root, "feature")


def test_unknown_and_invalid_environment_names_are_refused(repos: Repos, root: Path) -> None:
    results = CodeDeployer(root, str(repos.control)).deploy(["nope", "../etc", "production"])
    assert [(r.environment, r.ok) for r in results] == [
        ("nope", False), ("../etc", False), ("production", True)]
    assert results[0].error and "no branch" in results[0].error.msg
    assert results[1].error and "not an environment name" in results[1].error.msg
    assert not (root / "state" / "etc").exists()


def test_branch_names_are_corrected_and_gone_branches_stop_being_served(
        repos: Repos, root: Path) -> None:
    repos.commit("feature-x", {"manifests/site.pp": site_pp("/tmp/x", "dash")})
    deployer = CodeDeployer(root, str(repos.control))
    assert "feature_x" in {r.environment for r in deployer.deploy() if r.ok}
    repos.delete_branch("feature-x")
    repos.delete_branch("feature")
    results = deployer.deploy()
    assert [r.environment for r in results] == ["production"]
    assert live_environments(root) == ["production"]
    assert not (root / "r10k" / "staging" / "feature").exists()


def test_an_ssh_remote_with_a_private_key(repos: Repos, root: Path, tmp_path: Path) -> None:
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        # The module comes over SSH too, with the same key.
        repos.commit("production", {"Puppetfile": repos.puppetfile(sshd.url(repos.module))})
        keyless = CodeDeployer(root, sshd.url(repos.control)).deploy(["production"])
        assert not keyless[0].ok and keyless[0].error
        assert "Permission denied" in keyless[0].error.msg
        deployer = CodeDeployer(root, sshd.url(repos.control), sshd.private_key)
        assert "private" not in repr(deployer).lower()
        [result] = deployer.deploy(["production"])
        assert result.ok, result.error
        assert result.signature == head(repos, "production")
        assert "class greeting" in served(root, "production", "modules/greeting/manifests/init.pp")
        # The key was on disk only while git ran; the host key was learnt on first contact.
        keys = root / "r10k" / "keys"
        assert list(keys.iterdir()) == [] and (keys.stat().st_mode & 0o777) == 0o700
        assert "127.0.0.1" in (root / "r10k" / "known_hosts").read_text()
        assert sshd.private_key.strip() not in (root / "r10k" / "r10k.yaml").read_text()
    finally:
        sshd.stop()


def test_the_tree_served_before_goes_back_to_staging(repos: Repos, root: Path) -> None:
    deployer = CodeDeployer(root, str(repos.control))
    deployer.deploy(["production"])
    record = json.loads(served(root, "production", ".r10k-deploy.json"))
    assert record["deploy_success"] is True
    live = root / "state" / "code" / "environments" / "production"
    staged = root / "r10k" / "staging" / "production"
    assert not staged.exists()  # what was served before was no r10k tree: removed
    first = live.stat().st_ino
    repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v2")})
    deployer.deploy(["production"])
    # Exchanged: the tree served before is now staged (for the next deployment to update).
    assert staged.stat().st_ino == first and (staged / ".git").is_dir()
    assert live.stat().st_ino != first and "'v2'" in served(root, "production")


def test_a_password_in_the_remote_never_reaches_the_error(root: Path) -> None:
    [result] = CodeDeployer(root, "https://bob:s3cret@127.0.0.1:9/control.git").deploy(
        ["production"])
    assert result.error is not None and "Unable to list the branches" in result.error.msg
    assert "s3cret" not in result.error.msg
