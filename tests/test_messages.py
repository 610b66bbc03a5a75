"""Caller-safe messages: an exception's text without the local paths it carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmhost.messages import caller_message, without_paths


def test_an_os_error_says_why_not_where(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        (tmp_path / ("x" * 300)).write_text("")
    assert caller_message(info.value) == "[Errno 36] File name too long"
    with pytest.raises(OSError) as info:
        Path(tmp_path / "a").rename(tmp_path / "b")
    assert caller_message(info.value) == "[Errno 2] No such file or directory"


def test_a_message_built_from_an_os_error_loses_its_paths(tmp_path: Path) -> None:
    spaced = tmp_path / "with space" / "file"  # a path the text alone cannot delimit
    with pytest.raises(RuntimeError) as info:
        try:
            spaced.read_text()
        except OSError as exc:
            raise RuntimeError(f"could not read the state: {exc}") from None
    text = caller_message(info.value)
    assert str(tmp_path) not in text and "space" not in text
    assert text == "could not read the state: [Errno 2] No such file or directory: '<path>'"


@pytest.mark.parametrize(("text", "shown"), [
    ("cannot open /tmp/x/y.json: gone", "cannot open <path>: gone"),
    ("at '/etc/passwd'.", "at '<path>'."),
    ("blob store file:///tmp/blobs is full", "blob store file://<path> is full"),
    ("refused:/tmp/x", "refused:<path>"),
    # Not local paths: kept as they are.
    ("see http://127.0.0.1:4580/tmp/x", "see http://127.0.0.1:4580/tmp/x"),
    ("s3://bucket/tmp/key", "s3://bucket/tmp/key"),
    ("GET /clients/web-1 answered 500", "GET /clients/web-1 answered 500"),
    ("nodes/web-1.json and 1/2", "nodes/web-1.json and 1/2"),
])
def test_only_local_paths_are_scrubbed(text: str, shown: str) -> None:
    assert without_paths(text) == shown
