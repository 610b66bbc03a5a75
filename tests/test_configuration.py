"""Every flag of `cmhost serve` and `cmhost worker` has a CMHOST_* variable that works and
that the README's configuration table names; a variable's bad value is refused in one line."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cmhost.cli import build_parser, settings_from
from cmhost.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("serve", "worker")


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _flags(command: str) -> list[argparse.Action]:
    return [a for a in _subparser(command)._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _variable(flag: str) -> str:
    return "CMHOST_" + flag.removeprefix("--").upper().replace("-", "_")


def _sample(action: argparse.Action) -> str:
    """A value for the flag that is not its default."""
    if action.nargs == 0:
        return ""
    if action.choices:
        defaults = {"--throttle": "on", "--clock": "real", "--log-level": "info",
                    "--log-format": "text", "--puppetdb": "off"}
        default = defaults.get(action.option_strings[0], "embedded")
        return next(str(c) for c in action.choices if c != default)
    if action.type is int:
        return "7"
    if action.type is float:
        return "7.5"
    if action.type is Path:
        return "/tmp/cmhost-configuration-test"
    if action.option_strings[0] == "--engine-ports":
        return "20000-20010"
    return "http://192.0.2.1:4580" if "url" in action.option_strings[0] else "sample"


def _readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `--")]


def _settings(command: str, argv: list[str], env: dict[str, str],
              monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("CMHOST_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_from(build_parser().parse_args([command, *argv]))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_a_variable_that_the_readme_names_and_that_works(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _readme_rows()
    default = _settings(command, [], {}, monkeypatch)
    for action in _flags(command):
        flag = action.option_strings[0]
        variable = _variable(flag)
        row = next((r for r in rows if re.search(rf"`{re.escape(flag)}[` ]", r)), None)
        assert row is not None, f"the README's configuration table has no row for {flag}"
        assert f"`{variable}`" in row, f"the README row of {flag} does not name {variable}"
        value = _sample(action)
        by_flag = _settings(command, [flag, value] if value else [flag], {}, monkeypatch)
        by_variable = _settings(command, [], {variable: value or "1"}, monkeypatch)
        assert by_flag != default, f"{flag} {value} changes nothing"
        assert by_variable == by_flag, f"{variable}={value or '1'} is not {flag} {value}"


def test_the_flag_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings("serve", ["--chef-driver", "embedded", "--port", "5000"],
                         {"CMHOST_CHEF_DRIVER": "goiardi", "CMHOST_PORT": "6000"}, monkeypatch)
    assert (settings.chef_driver, settings.port) == ("embedded", 5000)


def test_the_worker_command_ignores_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings("worker", [], {"CMHOST_NO_WORKER": "1"}, monkeypatch).run_worker
    assert not _settings("serve", [], {"CMHOST_NO_WORKER": "yes"}, monkeypatch).run_worker


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CMHOST_")}
    return subprocess.run(
        [sys.executable, "-m", "cmhost", "serve", "--data-dir", str(tmp_path / "data"),
         "--master-key-file", str(tmp_path / "master.key")],
        capture_output=True, text=True, env={**clean, **env}, cwd=ROOT, timeout=60,
        check=False)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("CMHOST_CHEF_DRIVER", "chef-zero",
     "cmhost: error: CMHOST_CHEF_DRIVER='chef-zero' is not one of: embedded, goiardi"),
    ("CMHOST_PUPPET_DRIVER", "goiardi",
     "cmhost: error: CMHOST_PUPPET_DRIVER='goiardi' is not one of: embedded, puppetserver"),
    ("CMHOST_PORT", "45 80", "cmhost: error: CMHOST_PORT='45 80' is not a whole number"),
    ("CMHOST_THROTTLE", "of",
     ("cmhost: error: CMHOST_THROTTLE='of' is neither on nor off "
      "(use one of: 1, true, yes, on, 0, false, no, off)")),
])
def test_a_bad_value_is_refused_in_one_line_before_anything_starts(
        tmp_path: Path, variable: str, value: str, expected: str) -> None:
    done = _serve(tmp_path, **{variable: value})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_an_empty_admin_token_is_refused(tmp_path: Path) -> None:
    """An empty token would let `Authorization: Bearer ` (no value) through."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CMHOST_")}
    done = subprocess.run(
        [sys.executable, "-m", "cmhost", "serve", "--host", "0.0.0.0", "--port", "0",
         "--public-url", "http://127.0.0.1:9", "--admin-token", "",
         "--data-dir", str(tmp_path / "data"), "--master-key-file", str(tmp_path / "key")],
        capture_output=True, text=True, env=clean, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cmhost: error: --admin-token (CMHOST_ADMIN_TOKEN) must not be empty"]
    assert not (tmp_path / "data").exists()


def test_a_relative_data_directory_is_made_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths under it may reach messages, which hide absolute paths only."""
    monkeypatch.chdir(tmp_path)
    settings = _settings("serve", ["--data-dir", "data", "--master-key-file", "k/master.key"],
                         {}, monkeypatch)
    assert settings.data_dir == tmp_path / "data"
    assert settings.resolved_master_key_file == tmp_path / "k" / "master.key"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'cmhost.db'}"
