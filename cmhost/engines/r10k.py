"""Code deployment with Debian's r10k: each branch of a control repository becomes a Puppet
environment of the server, with the modules its Puppetfile names.

In a server's engine directory (`root`):

    r10k/r10k.yaml       r10k's configuration: the cache and one source, the control repository
    r10k/cache/          the git mirrors r10k keeps of the control repository and module sources
    r10k/staging/        r10k's basedir: where it deploys; never served
    r10k/known_hosts     SSH host keys of the git servers, learnt on first contact
    r10k/keys/           the deploy key (0600), only while git runs
    state/code/environments/<env>   the environments puppetserver serves

r10k deploys into staging; each environment that deployed cleanly is then exchanged with the
served one in one step (statedir.exchange_dirs), under the server's lock, so puppetserver sees
the old tree or the new one, and a failed deployment (an unreachable remote, a broken
Puppetfile, a module source that cannot be fetched) leaves what was served before as it was.
The previous tree goes back to staging, where the next deployment brings it up to date.

Deployments of one server are serialised by a lock file, across processes. The private key
reaches git through its own environment (GIT_SSH_COMMAND with -i), never through argv.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cmhost.engines.statedir import exchange_dirs, locked
from cmhost.messages import without_paths

R10K = Path("/usr/bin/r10k")
GIT = Path("/usr/bin/git")
PACKAGE_HINT = "install the Debian packages r10k and git (apt-get install r10k git)"
DEPLOY_TIMEOUT = 600.0  # as Code Manager's default deploy timeout
LIST_TIMEOUT = 120.0
DEPLOY_FAILURE = "puppetlabs.code-manager/deploy-failure"
# r10k's own record of a deployment, in each environment it deployed.
DEPLOY_RECORD = ".r10k-deploy.json"
PRODUCTION = "production"
# What r10k makes of a branch name ("invalid_branches: correct"): other characters become '_'.
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_]+")
_LOG_LINE = re.compile(r"^(DEBUG\d?|INFO|NOTICE|WARN|ERROR|FATAL)\s*->\s?(.*)$")
MAX_MESSAGE = 4000
# user:password@ in a URL git or r10k print back (a remote given with its credentials).
_PASSWORD_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/:@\s]+):[^/@\s]+@")


def missing_r10k() -> str:
    """Why code cannot be deployed on this machine ("" when it can)."""
    for path in (R10K, GIT):
        if not os.access(path, os.X_OK):
            return f"Code deployment needs {path}; {PACKAGE_HINT}."
    return ""


def environment_name(branch: str) -> str:
    """The environment r10k deploys a branch as."""
    return re.sub(r"[^A-Za-z0-9_]", "_", branch)


def is_environment_name(name: str) -> bool:
    return bool(_ENVIRONMENT.fullmatch(name)) and len(name) <= 255


@dataclass(frozen=True)
class DeployError:
    """Why an environment was not deployed, as Code Manager reports it."""

    msg: str
    kind: str = DEPLOY_FAILURE
    details: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "msg": self.msg, "details": self.details}


@dataclass(frozen=True)
class Deployed:
    """The outcome of one environment's deployment."""

    environment: str
    signature: str | None = None  # the commit now served (None when it failed)
    error: DeployError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ListingFailed(Exception):
    """The control repository's branches could not be listed."""


@dataclass(frozen=True)
class CodeLayout:
    """The paths code deployment uses in one server's engine directory."""

    root: Path

    @property
    def r10k(self) -> Path:
        return self.root / "r10k"

    @property
    def config(self) -> Path:
        return self.r10k / "r10k.yaml"

    @property
    def cache(self) -> Path:
        return self.r10k / "cache"

    @property
    def staging(self) -> Path:
        return self.r10k / "staging"

    @property
    def known_hosts(self) -> Path:
        return self.r10k / "known_hosts"

    @property
    def keys(self) -> Path:
        return self.r10k / "keys"

    @property
    def home(self) -> Path:
        return self.r10k / "home"

    @property
    def lock(self) -> Path:
        return self.r10k / ".deploy.lock"

    @property
    def live(self) -> Path:
        return self.root / "state" / "code" / "environments"


def live_environments(root: Path) -> list[str]:
    """The environments the server serves, sorted."""
    live = CodeLayout(root).live
    if not live.is_dir():
        return []
    return sorted(p.name for p in live.iterdir() if p.is_dir() and is_environment_name(p.name))


def deployed_signature(root: Path, environment: str) -> str | None:
    """The commit r10k deployed of a served environment, if r10k deployed it."""
    try:
        record = json.loads((CodeLayout(root).live / environment / DEPLOY_RECORD).read_text())
    except (OSError, ValueError):
        return None
    signature = record.get("signature") if isinstance(record, dict) else None
    return signature if isinstance(signature, str) else None


def has_deployed_code(root: Path) -> bool:
    """True when some served environment was deployed by r10k."""
    return any(deployed_signature(root, name) for name in live_environments(root))


def remove_keys(root: Path) -> None:
    """Remove deploy keys a killed deployment left behind."""
    keys = CodeLayout(root).keys
    if keys.is_dir():
        for path in keys.iterdir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def ssh_command(key: Path | None, known_hosts: Path) -> str:
    """The GIT_SSH_COMMAND git uses: this key only (none: no key at all), host keys learnt
    on first contact and kept in the server's own file, never a prompt."""
    parts = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new"]
    if key is not None:
        parts += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    # Without a key, git's ssh has none: HOME is the server's own directory (no ~/.ssh) and
    # no agent socket is passed on.
    return shlex.join(parts)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _yaml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


class CodeDeployer:
    """Deploys one server's control repository (see the module docstring)."""

    def __init__(self, root: Path, remote: str, private_key: str | None = None, *,
                 timeout: float = DEPLOY_TIMEOUT) -> None:
        self.paths = CodeLayout(root)
        self.remote = remote
        self._private_key = private_key
        self.timeout = timeout
        self._active: list[subprocess.Popen[str]] = []  # git or r10k, while they run

    def __repr__(self) -> str:  # never the key
        return f"CodeDeployer({str(self.paths.root)!r}, {self.remote!r})"

    # --- public ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Kill what runs now (the process is stopping: its children must not outlive it)."""
        for process in list(self._active):
            _kill_group(process)

    def environments(self) -> list[str]:
        """The environments of the control repository's branches; ListingFailed."""
        self._prepare()
        with self._git_environment() as env:
            return sorted(self._branches(env))

    def deploy(self, environments: Sequence[str] | None = None, *,
               modules: bool = True) -> list[Deployed]:
        """Deploy the named environments (None: every branch, and stop serving environments
        whose branch is gone, but production); one result per environment, in order."""
        with self._locked():
            with self._git_environment() as env:
                try:
                    branches = self._branches(env)
                except ListingFailed as exc:
                    names = (list(environments) if environments is not None
                             else live_environments(self.paths.root) or [PRODUCTION])
                    return [self._failed(n, str(exc)) for n in names]
                wanted = list(dict.fromkeys(environments if environments is not None
                                            else sorted(branches)))
                results = {n: self._check_wanted(n, branches) for n in wanted}
                targets = [n for n, r in results.items() if r is None]
                results.update(self._run(targets, env, modules=modules))
                if environments is None:
                    self._forget_staged(set(branches))
            done = [r for r in results.values() if r is not None]
            self._serve(done, purge=set(branches) if environments is None else None)
        return [results[n] or self._failed(n, "it was not deployed") for n in wanted]

    # --- steps -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare()
        with _flock(self.paths.lock):
            yield

    def _prepare(self) -> None:
        paths = self.paths
        paths.r10k.mkdir(parents=True, exist_ok=True)
        os.chmod(paths.r10k, 0o700)
        for directory in (paths.cache, paths.staging, paths.home, paths.keys):
            directory.mkdir(exist_ok=True)
        os.chmod(paths.keys, 0o700)
        config = "\n".join([
            "# Written by cmhost for this server's code deployments.",
            f"cachedir: {_yaml_string(str(paths.cache))}",
            "sources:",
            "  control:",
            f"    remote: {_yaml_string(self.remote)}",
            f"    basedir: {_yaml_string(str(paths.staging))}",
            "    invalid_branches: correct",
            "deploy:",
            "  generate_types: false",
            "",
        ])
        try:
            current = paths.config.read_text()
        except FileNotFoundError:
            current = ""
        if current != config:
            tmp = paths.config.with_name(".r10k.yaml.tmp")
            tmp.write_text(config)
            os.replace(tmp, paths.config)

    @contextlib.contextmanager
    def _git_environment(self) -> Iterator[dict[str, str]]:
        """The environment of git and r10k; the key file exists only inside the block."""
        paths = self.paths
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": str(paths.home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        key: Path | None = None
        try:
            if self._private_key:
                fd, name = tempfile.mkstemp(dir=paths.keys, prefix="deploy-", suffix=".key")
                key = Path(name)
                with os.fdopen(fd, "w") as handle:  # mkstemp made it 0600
                    handle.write(self._private_key.strip() + "\n")
            env["GIT_SSH_COMMAND"] = ssh_command(key, paths.known_hosts)
            yield env
        finally:
            if key is not None:
                key.unlink(missing_ok=True)

    def _branches(self, env: dict[str, str]) -> dict[str, str]:
        """Environment name -> commit of each branch of the remote."""
        try:
            done = _run([str(GIT), "ls-remote", "--heads", "--", self.remote], env=env,
                        cwd=self.paths.r10k, timeout=LIST_TIMEOUT, active=self._active)
        except subprocess.TimeoutExpired:
            raise ListingFailed(f"Listing the branches of the control repository took longer "
                                f"than {LIST_TIMEOUT:.0f} s.") from None
        if done.returncode != 0:
            raise ListingFailed("Unable to list the branches of the control repository "
                                f"(git exit code {done.returncode}):\n"
                                + self._clean(done.stdout.strip()))
        branches: dict[str, str] = {}
        for line in done.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                branches[environment_name(ref[len("refs/heads/"):])] = sha
        return branches

    def _check_wanted(self, name: str, branches: dict[str, str]) -> Deployed | None:
        if not is_environment_name(name):
            return self._failed(name, f"{name[:100]!r} is not an environment name (letters, "
                                      "digits and '_').")
        if name not in branches:
            return self._failed(name, f"The control repository has no branch for environment "
                                      f"'{name}'.")
        return None

    def _run(self, targets: list[str], env: dict[str, str], *,
             modules: bool) -> dict[str, Deployed | None]:
        """r10k into staging; the outcome of each environment (not served yet). All in one
        run first (r10k starts slowly); a module that fails to deploy stops r10k's whole run,
        so the environments that run did not deploy are then tried one run each, which also
        tells whose error is whose."""
        results: dict[str, Deployed | None] = {}
        # As Code Manager: modules are always deployed the first time an environment is.
        modules = modules or any(not (self.paths.staging / n).is_dir() for n in targets)
        if len(targets) > 1:
            for name in targets:
                (self.paths.staging / name / DEPLOY_RECORD).unlink(missing_ok=True)
            try:
                self._r10k(targets, env, modules=modules)
            except subprocess.TimeoutExpired:
                pass  # each is tried on its own below
            for name in targets:
                signature = _deployed(self.paths.staging / name)
                if signature is not None:
                    results[name] = Deployed(name, signature)
        for name in targets:
            if name not in results:
                results[name] = self._run_one(name, env, modules=modules)
        return results

    def _r10k(self, names: list[str], env: dict[str, str], *,
              modules: bool) -> subprocess.CompletedProcess[str]:
        argv = [str(R10K), "deploy", "environment", *names, "--config", str(self.paths.config),
                "--verbose", "info"]
        if modules:
            argv.append("--modules")
        return _run(argv, env=env, cwd=self.paths.r10k, timeout=self.timeout,
                    active=self._active)

    def _run_one(self, name: str, env: dict[str, str], *, modules: bool) -> Deployed:
        staged = self.paths.staging / name
        (staged / DEPLOY_RECORD).unlink(missing_ok=True)
        try:
            done = self._r10k([name], env, modules=modules)
        except subprocess.TimeoutExpired:
            return self._failed(name, f"r10k did not finish within {self.timeout:.0f} s.")
        signature = _deployed(staged)
        if signature is not None:
            return Deployed(name, signature)
        errors = _errors(done.stdout) or [
            "r10k did not deploy it; its output: " + done.stdout.strip()[-1500:]]
        return self._failed(name, f"Errors while deploying environment '{name}' (exit code: "
                                  f"{done.returncode}):\n" + self._clean("\n".join(errors)))

    def _forget_staged(self, branches: set[str]) -> None:
        """Remove staged environments whose branch is gone."""
        staging = self.paths.staging
        for path in staging.iterdir() if staging.is_dir() else []:
            if path.name not in branches and not path.is_symlink() and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def _serve(self, results: list[Deployed], *, purge: set[str] | None) -> None:
        """Swap each cleanly deployed environment into the served directory (under the
        server's lock, which backups and restores hold too); with `purge`, stop serving the
        environments whose branch is gone."""
        live, staging = self.paths.live, self.paths.staging
        trash: list[Path] = []
        with locked(self.paths.root):
            live.mkdir(parents=True, exist_ok=True)
            for result in results:
                if not result.ok:
                    continue
                staged, served = staging / result.environment, live / result.environment
                if served.is_dir() and not served.is_symlink():
                    exchange_dirs(staged, served)
                    if not (staged / ".git").is_dir():  # not a tree r10k can update
                        trash.append(staged)
                else:
                    if served.is_symlink() or served.exists():
                        served.unlink()
                    os.rename(staged, served)
            if purge is not None:
                for name in live_environments(self.paths.root):
                    if name not in purge and name != PRODUCTION:
                        aside = Path(tempfile.mkdtemp(dir=self.paths.r10k, prefix=".gone-"))
                        os.rename(live / name, aside / name)
                        trash.append(aside)
            _fsync_dir(live)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)

    def _failed(self, name: str, message: str) -> Deployed:
        text = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " [...]"
        return Deployed(name, None, DeployError(text, details={"corrected-name": name}))

    def _clean(self, text: str) -> str:
        """r10k's and git's words without this host's paths: an environment's path in
        staging becomes its name, any other local path <path>."""
        text = text.replace(str(self.paths.staging) + "/", "")
        return without_paths(_PASSWORD_IN_URL.sub(r"\1:<password>@", text))


def _deployed(staged: Path) -> str | None:
    """The commit r10k recorded in a staged environment it deployed in full, or None."""
    try:
        record = json.loads((staged / DEPLOY_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("deploy_success") is not True:
        return None
    signature = record.get("signature")
    return signature if isinstance(signature, str) and signature else None


def _errors(output: str) -> list[str]:
    """r10k's ERROR entries (a line and those that continue it), each once: r10k logs a
    module's failure twice, the second time as the tail of the first."""
    entries: list[list[str]] = []
    in_error = False
    for line in output.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            if in_error and line.strip():
                entries[-1].append(line.rstrip())
            continue
        level, text = match.groups()
        in_error = level in ("ERROR", "FATAL")
        if in_error:
            entries.append([text.rstrip()])
    kept: list[str] = []
    for entry in ("\n".join(e) for e in entries):
        if not any(entry in earlier for earlier in kept):
            kept.append(entry)
    return kept


def _run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float,
         active: list[subprocess.Popen[str]] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in a process group of its own, output and errors together; on timeout
    the whole group (git, ssh) is killed. While it runs it is in `active` (see cancel)."""
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", process_group=0)
    if active is not None:
        active.append(process)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise
    finally:
        if active is not None:
            active.remove(process)
    return subprocess.CompletedProcess(argv, process.returncode, out, "")


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
