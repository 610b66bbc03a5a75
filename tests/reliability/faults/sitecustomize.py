"""Fault injection for cmhost test subprocesses: SIGKILL the process, or pause it, at a
chosen call.

Only the crash tests put this directory on a cmhost subprocess's PYTHONPATH. With

    CMHOST_CRASH_AT="module:attribute:when:n[:caller]"

the process kills itself (SIGKILL, as a crash) right `before` or `after` the n-th call of
`module.attribute` (a function, `Class.method`, or e.g. `os:rename`), counting only calls
made from the module `caller` when one is given. With CMHOST_CRASH_GATE=PATH, calls count
only while the file PATH exists (so a test can arm the crash point after start-up). It
writes one line to stderr first, so a test can tell that the crash happened where it wanted.

    CMHOST_DELAY_AT="module:attribute:when:seconds"

sleeps that long before or after every call instead: it widens a window between two steps
so a race lands in it every time.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from importlib.machinery import PathFinder
from typing import Any


def _crash(where: str) -> None:
    sys.stderr.write(f"cmhost-fault: SIGKILL {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _patch(module: Any, attribute: str, when: str, nth: int, caller: str | None,
           gate: str | None) -> None:
    *path, name = attribute.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    lock = threading.Lock()
    calls = [0]
    where = f"{when} call {nth} of {module.__name__}.{attribute}" + (
        f" from {caller}" if caller else "")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = False
        if (caller is None or sys._getframe(1).f_globals.get("__name__") == caller) and (
                gate is None or os.path.exists(gate)):
            with lock:
                calls[0] += 1
                hit = calls[0] == nth
        if hit and when == "before":
            _crash(where)
        result = original(*args, **kwargs)
        if hit and when == "after":
            _crash(where)
        return result

    setattr(owner, name, wrapper)


class _PatchOnImport:
    """Patches the target module as soon as it has been executed."""

    def __init__(self, module: str, patch: Any) -> None:
        self.module = module
        self.patch = patch

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.module:
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            self.patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        sys.meta_path.remove(self)
        return spec


def _delay(module: Any, attribute: str, when: str, seconds: float) -> None:
    *path, name = attribute.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            time.sleep(seconds)
        result = original(*args, **kwargs)
        if when == "after":
            time.sleep(seconds)
        return result

    setattr(owner, name, wrapper)


def _on_import(module: str, patch: Any) -> None:
    if module in sys.modules:
        patch(sys.modules[module])
    else:
        sys.meta_path.insert(0, _PatchOnImport(module, patch))


def _install() -> None:
    delay = os.environ.get("CMHOST_DELAY_AT")
    if delay:
        d_module, d_attribute, d_when, d_seconds = delay.split(":")
        _on_import(d_module, lambda mod: _delay(mod, d_attribute, d_when, float(d_seconds)))
    plan = os.environ.get("CMHOST_CRASH_AT")
    if not plan:
        return
    parts = plan.split(":")
    module, attribute, when, nth = parts[:4]
    caller = parts[4] if len(parts) > 4 else None
    gate = os.environ.get("CMHOST_CRASH_GATE") or None

    def patch(mod: Any) -> None:
        _patch(mod, attribute, when, int(nth), caller, gate)

    _on_import(module, patch)


_install()
