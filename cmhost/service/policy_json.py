"""A JSON reader that remembers the line of every value, so that a policy that is valid JSON but
not a valid policy can be refused with the line of what is wrong (as IAM's policy validator
does). Values come back as `Node`s; `plain()` turns a node back into ordinary Python data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class JsonSyntaxError(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


@dataclass(frozen=True)
class Node:
    """A JSON value and the line it starts on. An object is a list of (key, key line, Node)
    pairs (so duplicate keys can be told), an array a list of Nodes."""

    value: Any
    line: int
    kind: str  # "object", "array", "string", "number", "bool", "null"


def parse(text: str) -> Node:
    """The document as a Node tree; JsonSyntaxError (with its line) when it is not JSON."""
    try:
        json.loads(text)  # the standard library's verdict and message first
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(exc.lineno, f"the policy is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise JsonSyntaxError(1, "the policy is nested too deeply") from None
    reader = _Reader(text)
    node = reader.value(reader.skip(0))
    return node


def plain(node: Node) -> Any:
    if node.kind == "object":
        return {key: plain(child) for key, _, child in node.value}
    if node.kind == "array":
        return [plain(child) for child in node.value]
    return node.value


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def skip(self, pos: int) -> int:
        match = _WS.match(self.text, pos)
        self.pos = match.end() if match else pos
        return self.pos

    def value(self, pos: int) -> Node:
        char = self.text[pos]
        line = self.line(pos)
        if char == "{":
            return self._object(pos, line)
        if char == "[":
            return self._array(pos, line)
        if char == '"':
            text, self.pos = scanstring(self.text, pos + 1)
            return Node(text, line, "string")
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, pos):
                self.pos = pos + len(word)
                return Node(literal, line, "null" if literal is None else "bool")
        match = _NUMBER.match(self.text, pos)
        assert match is not None  # json.loads accepted the document
        self.pos = match.end()
        number = match.group()
        return Node(float(number) if any(c in number for c in ".eE") else int(number), line,
                    "number")

    def _object(self, pos: int, line: int) -> Node:
        pairs: list[tuple[str, int, Node]] = []
        pos = self.skip(pos + 1)
        if self.text[pos] == "}":
            self.pos = pos + 1
            return Node(pairs, line, "object")
        while True:
            key_line = self.line(pos)
            key, pos = scanstring(self.text, pos + 1)
            pos = self.skip(self.skip(pos) + 1)  # past the colon
            child = self.value(pos)
            pairs.append((key, key_line, child))
            pos = self.skip(self.pos)
            if self.text[pos] == "}":
                self.pos = pos + 1
                return Node(pairs, line, "object")
            pos = self.skip(pos + 1)  # past the comma

    def _array(self, pos: int, line: int) -> Node:
        items: list[Node] = []
        pos = self.skip(pos + 1)
        if self.text[pos] == "]":
            self.pos = pos + 1
            return Node(items, line, "array")
        while True:
            items.append(self.value(pos))
            pos = self.skip(self.pos)
            if self.text[pos] == "]":
                self.pos = pos + 1
                return Node(items, line, "array")
            pos = self.skip(pos + 1)
