"""Git repositories and an SSH server for the tests of code deployment: a control repository
(bare, with branches) whose Puppetfile installs a module from a second bare repository, and a
local sshd that serves them to the holder of a key pair made here."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
           "GIT_CONFIG_NOSYSTEM": "1"}
SSHD = Path("/usr/sbin/sshd")

# The module: a class that writes a file whose path and content the control repository gives.
GREETING_PP = """class greeting (String $path, String $message) {
  file { $path:
    ensure  => file,
    content => "${message}\\n",
  }
}
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, **GIT_ENV, "HOME": str(cwd)}, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def site_pp(path: Path | str, message: str) -> str:
    return f"node default {{\n  class {{ 'greeting': path => '{path}', message => '{message}' }}\n}}\n"


class Repos:
    """A bare control repository and a bare module repository under `base`, each with a work
    tree to commit from. `module_url` is how the control repository's Puppetfile names the
    module (default: its file:// URL)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.control = base / "control.git"
        self.module = base / "greeting.git"
        self.work = base / "control-work"
        module_work = base / "greeting-work"
        for bare in (self.control, self.module):
            git(base, "init", "-q", "--bare", "-b", "production", str(bare))
        git(base, "init", "-q", "-b", "main", str(module_work))
        (module_work / "manifests").mkdir()
        (module_work / "manifests" / "init.pp").write_text(GREETING_PP)
        git(module_work, "add", "-A")
        git(module_work, "commit", "-q", "-m", "greeting")
        git(module_work, "push", "-q", str(self.module), "main")
        git(base, "init", "-q", "-b", "production", str(self.work))
        git(self.work, "remote", "add", "origin", str(self.control))

    @property
    def module_file_url(self) -> str:
        return f"file://{self.module}"

    def puppetfile(self, module_url: str | None = None) -> str:
        return (f"mod 'greeting',\n  git: '{module_url or self.module_file_url}',\n"
                "  branch: 'main'\n")

    def commit(self, branch: str, files: dict[str, str], message: str = "change") -> str:
        """Commit `files` (path -> text) on `branch` (made from production if new) and push
        it; returns the commit."""
        branches = git(self.work, "branch", "--list", "--format=%(refname:short)").split()
        if branch in branches:
            git(self.work, "checkout", "-q", branch)
        elif branches:
            git(self.work, "checkout", "-q", "-b", branch, "production")
        for name, text in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        git(self.work, "push", "-q", "origin", branch)
        return git(self.work, "rev-parse", "HEAD")

    def delete_branch(self, branch: str) -> None:
        git(self.work, "checkout", "-q", "production")
        git(self.work, "push", "-q", "origin", "--delete", branch)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sshd:
    """A local sshd (its own host key and config) that lets in the holder of `private_key`,
    as the user running the tests; `url(path)` is an ssh:// URL of a repository on it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            str(base / name)], check=True, timeout=30)
        self.private_key = (base / "user_key").read_text()
        (base / "authorized_keys").write_text((base / "user_key.pub").read_text())
        self.port = free_port()
        self.user = getpass.getuser()
        (base / "sshd_config").write_text("\n".join([
            f"HostKey {base / 'host_key'}", "ListenAddress 127.0.0.1",
            f"AuthorizedKeysFile {base / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
            f"PidFile {base / 'sshd.pid'}", ""]))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def start(self) -> Sshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(self.base / "sshd_config"), "-p", str(self.port),
             "-E", str(self.base / "sshd.log")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"sshd did not listen: {self.log()}")

    def log(self) -> str:
        path = self.base / "sshd.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def have_tools() -> str:
    """What is missing for these tests ("" when nothing is)."""
    for tool in ("git", "r10k", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install git r10k openssh-client)"
    return "" if SSHD.exists() else "sshd is not installed (apt-get install openssh-server)"
