"""Request validation against the model's input shapes, answering with AWS's messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import regex

from cmhost.api.model import SERVICE, Operation, Shape

# AWS lists every violation it found; a cap keeps a hostile body from producing megabytes.
MAX_LISTED_VIOLATIONS = 100
# How deep a wrongly typed value is rendered into a message before it is abbreviated.
_MAX_RENDER_DEPTH = 8
# Smithy integers are 32-bit; anything larger cannot be an `integer` member.
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# Patterns that accept every string: no need to run them.
_ALWAYS_MATCHES = frozenset({r"(?s).*"})

NOT_AN_OBJECT = "The request body must be a JSON object"

# ---------------------------------------------------------------------------------------------
# Java regular expressions -> Python patterns
# ---------------------------------------------------------------------------------------------

# Java's line terminators (without UNIX_LINES): \n, \r, \r\n, NEL, LS, PS.
_TERMINATORS = r"\n\r\u0085\u2028\u2029"
_DOT = rf"[^{_TERMINATORS}]"
_DOT_ALL = r"(?s:.)"
_CARET = r"\A"
# In MULTILINE, ^ matches after any terminator except at the end of input, never inside \r\n
# (the cheapest test first: this runs at every position of a lazy `.*?`).
_CARET_MULTILINE = rf"(?<![^{_TERMINATORS}])(?!(?<=\r)\n)(?!\Z)"
# $ matches at the end, or before a final terminator; never inside \r\n.
_DOLLAR = rf"(?:\Z|(?=\r\n\Z)|(?=[{_TERMINATORS}]\Z)(?!(?<=\r)\n))"
_DOLLAR_MULTILINE = r"(?:(?=[\r\u0085\u2028\u2029])|(?<!\r)(?=\n)|\Z)"

# POSIX classes of java.util.regex (US-ASCII only), as class contents.
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": r"\x00-\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": r"!-/:-@\[-`{-~",
    "Graph": r"!-~",
    "Print": r"\x20-~",
    "Blank": r" \t",
    "Cntrl": r"\x00-\x1f\x7f",
    "XDigit": "0-9a-fA-F",
    "Space": r" \t\n\x0b\f\r",
}
# Java's predefined classes are ASCII unless UNICODE_CHARACTER_CLASS is on.
_PREDEFINED = {"s": r" \t\n\x0b\f\r", "d": "0-9", "w": "a-zA-Z_0-9"}
_UNICODE_CATEGORIES = frozenset({
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
    "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
    "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cs", "Cn",
})
_HEX = frozenset("0123456789abcdefABCDEF")
_PLAIN_ESCAPES = {"t": r"\t", "n": r"\n", "r": r"\r", "f": r"\f", "a": r"\x07", "e": r"\x1b"}


class UnsupportedPattern(ValueError):
    """A Java pattern uses a construct the translator does not handle."""


def translate_java_pattern(pattern: str) -> str:
    """Rewrite a java.util.regex pattern so that Python matches exactly the same strings.

    The result uses only syntax `re` and `regex` share, plus `\\p{..}` categories (`regex` only).
    """
    out: list[str] = []
    dotall = multiline = False
    stack: list[tuple[bool, bool]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
            continue
        if c == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
            continue
        if c == "(":
            if pattern.startswith("(?", i):
                j = i + 2
                while j < n and (pattern[j].isalpha() or pattern[j] == "-"):
                    j += 1
                flags = pattern[i + 2 : j]
                if flags and j < n and pattern[j] in "):":
                    if pattern[j] == ":":  # (?flags:X) scopes the flags to X
                        stack.append((dotall, multiline))
                        out.append("(?:")
                    dotall, multiline = _apply_flags(flags, dotall, multiline, pattern)
                    i = j + 1
                    continue
                if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
                    stack.append((dotall, multiline))
                    out.append("(?P<")  # a named group: Python spells it (?P<name>...)
                    i += 3
                    continue
                if not pattern.startswith(("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>"), i):
                    raise UnsupportedPattern(f"group construct at {i} in {pattern!r}")
            stack.append((dotall, multiline))
            out.append("(")
            i += 1
            continue
        if c == ")":
            if not stack:
                raise UnsupportedPattern(f"unbalanced ) in {pattern!r}")
            dotall, multiline = stack.pop()
            out.append(")")
        elif c == ".":
            out.append(_DOT_ALL if dotall else _DOT)
        elif c == "^":
            out.append(_CARET_MULTILINE if multiline else _CARET)
        elif c == "$":
            out.append(_DOLLAR_MULTILINE if multiline else _DOLLAR)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _apply_flags(flags: str, dotall: bool, multiline: bool, pattern: str) -> tuple[bool, bool]:
    on, _, off = flags.partition("-")
    for letter in on + off:
        if letter not in "sm":
            raise UnsupportedPattern(f"inline flag {letter!r} in {pattern!r}")
    if "s" in on:
        dotall = True
    if "m" in on:
        multiline = True
    if "s" in off:
        dotall = False
    if "m" in off:
        multiline = False
    return dotall, multiline


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting at pattern[i] (a backslash); return it and the next index."""
    if i + 1 >= len(pattern):
        raise UnsupportedPattern(f"trailing backslash in {pattern!r}")
    c = pattern[i + 1]
    if c in "pP":
        close = pattern.find("}", i)
        if not pattern.startswith("{", i + 2) or close < 0:
            raise UnsupportedPattern(f"\\{c} without {{name}} in {pattern!r}")
        name = pattern[i + 3 : close]
        name = name[2:] if name.startswith("Is") and name[2:] in _UNICODE_CATEGORIES else name
        if name in _POSIX:
            body = _POSIX[name]
            if c == "P":
                if in_class:
                    raise UnsupportedPattern(f"negated class \\P{{{name}}} inside [] in {pattern!r}")
                return f"[^{body}]", close + 1
            return (body if in_class else f"[{body}]"), close + 1
        if name in _UNICODE_CATEGORIES:
            return f"\\{c}{{{name}}}", close + 1
        raise UnsupportedPattern(f"property \\{c}{{{name}}} in {pattern!r}")
    if c.lower() in _PREDEFINED:
        body = _PREDEFINED[c.lower()]
        if c.islower():
            return (body if in_class else f"[{body}]"), i + 2
        if in_class:
            raise UnsupportedPattern(f"negated class \\{c} inside [] in {pattern!r}")
        return f"[^{body}]", i + 2
    if c in _PLAIN_ESCAPES:
        return _PLAIN_ESCAPES[c], i + 2
    if c == "x" and all(h in _HEX for h in pattern[i + 2 : i + 4]) and i + 4 <= len(pattern):
        return pattern[i : i + 4], i + 4
    if c == "u":
        return pattern[i : i + 6], i + 6
    if not in_class and c == "A":
        return r"\A", i + 2
    if not in_class and c == "z":
        return r"\Z", i + 2
    if not in_class and c == "Z":
        return rf"(?=(?:\r\n|[{_TERMINATORS}])?\Z)", i + 2
    if not in_class and c.isdigit() and c != "0":
        return pattern[i : i + 2], i + 2
    if c.isalnum() or c == "_":
        raise UnsupportedPattern(f"escape \\{c} in {pattern!r}")
    return "\\" + c, i + 2


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the character class starting at pattern[i] (a `[`); return it and the next index."""
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    if pattern.startswith("]", j):
        raise UnsupportedPattern(f"class starting with ] in {pattern!r}")
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            text, j = _escape(pattern, j, in_class=True)
            out.append(text)
            continue
        if c == "]":
            out.append("]")
            return "".join(out), j + 1
        if c == "[" or pattern.startswith("&&", j):
            raise UnsupportedPattern(f"nested class or intersection in {pattern!r}")
        out.append(c)
        j += 1
    raise UnsupportedPattern(f"unclosed [ in {pattern!r}")


class Matcher(Protocol):
    """A compiled pattern (`re` or `regex`)."""

    def fullmatch(self, string: str) -> object | None: ...


def compile_java_pattern(pattern: str) -> Matcher:
    """Compile a Java pattern; match it with `.fullmatch` as Java's `Matcher.matches` would.

    `re` is about twice as fast, so only patterns with Unicode properties use `regex`.
    """
    translated = translate_java_pattern(pattern)
    if "\\p{" in translated or "\\P{" in translated:
        return regex.compile(translated, regex.V0)
    return re.compile(translated)


# ---------------------------------------------------------------------------------------------
# Compiled rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    path: str
    rule: _Rule
    required: bool


@dataclass(frozen=True, slots=True)
class _Rule:
    """What to check for one shape, prepared once."""

    shape: Shape
    kind: str
    min: int | None
    max: int | None
    lo: int  # min, or a bound nothing violates: one comparison on the fast path
    hi: int
    matcher: Matcher | None
    enum: frozenset[str] | None
    enum_text: str
    redact: bool  # the value is, or may contain, a secret: never print it
    fields: tuple[_Field, ...]
    element: _Rule | None


def _compile(shape: Shape, patterns: dict[str, Matcher], seen: tuple[str, ...]) -> _Rule:
    if shape.name in seen:
        raise ValueError(f"recursive shape {shape.name} cannot be validated")
    seen = (*seen, shape.name)
    fields = tuple(
        _Field(m.name, m.name[:1].lower() + m.name[1:], _compile(m.shape, patterns, seen), m.required)
        for m in shape.members
    )
    element = _compile(shape.member, patterns, seen) if shape.member is not None else None
    matcher = None
    if shape.pattern is not None and shape.pattern not in _ALWAYS_MATCHES:
        matcher = patterns.get(shape.pattern)
        if matcher is None:
            matcher = patterns[shape.pattern] = compile_java_pattern(shape.pattern)
    redact = (
        shape.sensitive
        or any(f.rule.redact for f in fields)
        or (element is not None and element.redact)
    )
    return _Rule(
        shape=shape,
        kind=shape.type,
        min=shape.min,
        max=shape.max,
        lo=shape.min if shape.min is not None else -(2**63),
        hi=shape.max if shape.max is not None else 2**63,
        matcher=matcher,
        enum=frozenset(shape.enum) if shape.enum else None,
        enum_text="[" + ", ".join(shape.enum) + "]",
        redact=redact,
        fields=fields,
        element=element,
    )


def _compile_service() -> dict[str, _Rule]:
    patterns: dict[str, Matcher] = {}
    return {name: _compile(op.input, patterns, ()) for name, op in SERVICE.operations.items()}


_RULES = _compile_service()

# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def validate_input(operation: Operation, params: object) -> list[str]:
    """The AWS-format violations of `params` (a decoded JSON body) against the operation input."""
    rule = _RULES.get(operation.name)
    if rule is None or rule.shape is not operation.input:
        rule = _compile(operation.input, {}, ())
    if not isinstance(params, dict):
        return [NOT_AN_OBJECT]
    out: list[str] = []
    _check_structure(rule, params, "", out)
    return out


def format_violations(messages: list[str]) -> str:
    """The ValidationException message for `messages`, as AWS words it."""
    count = len(messages)
    noun = "error" if count == 1 else "errors"
    listed = "; ".join(messages[:MAX_LISTED_VIOLATIONS])
    return f"{count} validation {noun} detected: {listed}"


def _violation(rule: _Rule, value: object, path: str, constraint: str) -> str:
    if rule.redact:
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    return f"Value '{_render(value, 0)}' at '{path}' failed to satisfy constraint: {constraint}"


def _null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _check(rule: _Rule, value: object, path: str, out: list[str]) -> None:
    kind = rule.kind
    if kind == "string":
        if type(value) is not str:
            out.append(_violation(rule, value, path, "Member must be of type string"))
            return
        if not rule.lo <= len(value) <= rule.hi:
            _check_length(rule, value, len(value), path, out)
        if rule.matcher is not None and rule.matcher.fullmatch(value) is None:
            pattern = rule.shape.pattern
            out.append(_violation(
                rule, value, path, f"Member must satisfy regular expression pattern: {pattern}"
            ))
        if rule.enum is not None and value not in rule.enum:
            out.append(_violation(
                rule, value, path, f"Member must satisfy enum value set: {rule.enum_text}"
            ))
    elif kind == "structure":
        if type(value) is not dict:
            out.append(_violation(rule, value, path, "Member must be of type structure"))
            return
        _check_structure(rule, value, path + ".", out)
    elif kind == "list":
        if type(value) is not list:
            out.append(_violation(rule, value, path, "Member must be of type list"))
            return
        if not rule.lo <= len(value) <= rule.hi:
            _check_length(rule, value, len(value), path, out)
        element = rule.element
        assert element is not None  # a list shape always has a member shape
        for index, item in enumerate(value, 1):
            item_path = f"{path}.{index}.member"
            if item is None:
                out.append(_null(item_path))
            else:
                _check(element, item, item_path, out)
    elif kind == "integer":
        if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
            out.append(_violation(rule, value, path, "Member must be of type integer"))
            return
        if rule.lo <= value <= rule.hi:
            return
        if rule.min is not None and value < rule.min:
            out.append(_violation(
                rule, value, path, f"Member must have value greater than or equal to {rule.min}"
            ))
        if rule.max is not None and value > rule.max:
            out.append(_violation(
                rule, value, path, f"Member must have value less than or equal to {rule.max}"
            ))
    elif kind == "boolean":
        if type(value) is not bool:
            out.append(_violation(rule, value, path, "Member must be of type boolean"))
    elif kind == "timestamp" and type(value) not in (int, float):
        out.append(_violation(rule, value, path, "Member must be of type timestamp"))


def _check_structure(rule: _Rule, value: dict[str, object], prefix: str, out: list[str]) -> None:
    for field in rule.fields:
        item = value.get(field.name)
        if item is None:  # absent and JSON null are the same to AWS
            if field.required:
                out.append(_null(prefix + field.path))
            continue
        _check(field.rule, item, prefix + field.path, out)


def _check_length(rule: _Rule, value: object, length: int, path: str, out: list[str]) -> None:
    if rule.min is not None and length < rule.min:
        out.append(_violation(
            rule, value, path, f"Member must have length greater than or equal to {rule.min}"
        ))
    if rule.max is not None and length > rule.max:
        out.append(_violation(
            rule, value, path, f"Member must have length less than or equal to {rule.max}"
        ))


def _render(value: object, depth: int) -> str:
    """Print a JSON value the way AWS's (Java) messages do: lists as [a, b], maps as {k=v}."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if depth >= _MAX_RENDER_DEPTH:
            return "[...]"
        return "[" + ", ".join(_render(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        if depth >= _MAX_RENDER_DEPTH:
            return "{...}"
        return "{" + ", ".join(f"{k}={_render(v, depth + 1)}" for k, v in value.items()) + "}"
    return str(value)
