"""Hypothesis strategies derived from the API model: valid and near-valid operation input.

Everything is read from `cmhost.api.model.SERVICE`: each operation's input shape, its members,
which are required, and each shape's type, length limits, pattern and enum. For every shape
there is a `valid` strategy (values the model accepts, edges included) and a `near` one
(values one step off: a string one character too long or breaking its pattern, an integer out
of range or outside 32 bits, the wrong JSON type, null, a list too long or with a bad or null
member, nested lists, a structure missing a required member or carrying an unknown one).

`Hints` adds real values of the account under test (its server names, backup IDs, ARNs, node
tokens, engine attribute sets) to the valid choices of the members they fit, so valid requests
reach the service and not only its validator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from cmhost.api.model import SERVICE, Operation, Shape
from cmhost.api.validate import compile_java_pattern, validate_input

# Shapes whose pattern accepts every string: any text is valid, surrogates and NUL included.
ANY_TEXT = frozenset({r"(?s).*"})
# Longest generated free text in the valid branch (edges add one string of the maximum length).
SHORT = 24
# An unescaped `.` in a pattern: the pattern may take (almost) any character there.
_DOT = re.compile(r"(?<!\\)\.")
# Concrete characters for the Unicode classes of the model's patterns, to draw valid strings
# with `from_regex`; every draw is still checked against the real (translated) pattern.
_CLASS_SAMPLES = {
    r"\p{Alnum}": "a-zA-Z0-9",
    r"\p{L}": "a-zA-Z\u00e9\u00df\u0436\u3042",
    r"\p{Z}": " \u00a0\u3000",
    r"\p{N}": "0-9\u0663\u00bd",
}
# Strings that break most patterns in a different way each (and are harmless as text).
PATTERN_BREAKERS = (
    "", " ", "-", "0", "1abc", "-abc", "a b", "a\tb", "a\nb", "a\r\n", "a\u0000b", "\u0000",
    "\ud800", "a\udfff", "\u00e9", "a\u2028b", "a\u0085", "\u202eabc", "a/b", "../../etc/passwd",
    "%00", "a;b", "' OR 1=1 --", "${jndi:ldap://x/a}", "<script>x</script>", "a*", "\\",
    "\U0001f600",
)
# Any JSON value, small: used for unknown members and wrong types.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
_WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                        st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                        st.just({"S": "x"})),
    "integer": st.one_of(st.sampled_from(["5", "1", "", "1e3", "0x10"]),
                         st.sampled_from([1.5, 1.0, -0.0, 1e300]), st.booleans(),
                         st.just([1]), st.just({"N": 1})),
    "boolean": st.one_of(st.sampled_from(["true", "false", "TRUE", ""]), st.sampled_from([0, 1]),
                         st.just([True]), st.just({})),
    "list": st.one_of(st.text(max_size=5), st.integers(), st.booleans(),
                      st.just({"member": ["x"]})),
    "structure": st.one_of(st.text(max_size=5), st.integers(), st.booleans(),
                           st.just([{"Key": "k", "Value": "v"}])),
    "timestamp": st.one_of(st.text(max_size=5), st.booleans(), st.just([])),
}
# Characters JSON can carry that a database, a log line or a shell script may not: a lone
# surrogate (\ud800 in JSON), NUL, other controls, noncharacters, the last code point.
ODD_CHARS = ("\ud800", "\udfff", "\u0000", "\u0007", "\u001b", "\u007f", "\u2028",
             "\ufeff", "\ufffe", "\U0010ffff", "\u202e")
# Characters of free text: mostly printable ASCII, sometimes odd, sometimes anything.
_ANY_CHAR = st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                      st.sampled_from(ODD_CHARS), st.characters(exclude_categories=[]))


@dataclass(frozen=True)
class Hints:
    """Real values to mix into valid choices, looked up by `<Operation>.<Member>`,
    `<Structure>.<Member>`, then `<Member>`. For the members `only` names (identifiers of
    resources, say), valid values are the hints alone: a random valid name finds nothing,
    and the near-valid values still range over everything the model refuses."""

    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    only: frozenset[str] = frozenset()

    def lookup(self, *keys: str) -> tuple[Sequence[Any], bool]:
        """(hints, whether they are the only valid values) for the first key known."""
        for key in keys:
            if key in self.values:
                return self.values[key], key in self.only or keys[-1] in self.only
        return (), False


@dataclass(frozen=True)
class Example:
    """One request body: the JSON input and how its text is encoded."""

    params: Any
    encoding: str  # "ascii" (non-ASCII as \\u escapes) or "utf-8" (raw, may be invalid UTF-8)

    def body(self) -> bytes:
        if self.encoding == "ascii":
            return json.dumps(self.params).encode()
        # Lone surrogates become bytes no UTF-8 decoder accepts: the server must say so.
        return json.dumps(self.params, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- strings -------------------------------------------------------------------------------


def _fits(shape: Shape, text: str) -> bool:
    return (shape.min is None or len(text) >= shape.min) and (
        shape.max is None or len(text) <= shape.max)


def _generation_pattern(pattern: str) -> str | None:
    """A Python pattern to draw candidates from, or None when `from_regex` cannot draw them
    (multi-line anchors)."""
    if "(?m" in pattern:
        return None
    pattern = pattern.removeprefix("^")
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1]
    for java, sample in _CLASS_SAMPLES.items():
        pattern = pattern.replace(java, sample)
    return pattern


def _free_text(shape: Shape) -> st.SearchStrategy[str]:
    limit = SHORT if shape.max is None else min(shape.max, SHORT)
    return st.text(_ANY_CHAR, min_size=shape.min or 0, max_size=max(limit, shape.min or 0))


def valid_string(shape: Shape) -> st.SearchStrategy[str]:
    """Strings the model accepts for `shape` (empty strategy if none can be drawn)."""
    if shape.enum:
        return st.sampled_from(shape.enum)
    if shape.pattern is None or shape.pattern in ANY_TEXT:
        edges = [st.just("x" * shape.max)] if shape.max is not None and shape.max <= 10_000 \
            else []
        return st.one_of(_free_text(shape), *edges)
    generation = _generation_pattern(shape.pattern)
    if generation is None:
        return st.nothing()
    matcher = compile_java_pattern(shape.pattern)
    drawn = st.from_regex(re.compile(generation), fullmatch=True)
    accepted = drawn.filter(lambda s: _fits(shape, s) and matcher.fullmatch(s) is not None)
    options = [accepted]
    if _DOT.search(shape.pattern):
        # A valid value with an odd character in it, where the pattern's `.` allows one.
        options.append(st.tuples(accepted, st.sampled_from(ODD_CHARS), st.integers(0, 40)).map(
            lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:]).filter(
            lambda s: _fits(shape, s) and matcher.fullmatch(s) is not None))
    if shape.max is not None and shape.max <= 10_000:
        # The longest value of the shape: a valid one repeated, cut at the maximum.
        options.append(accepted.filter(bool).map(
            lambda s: (s * (shape.max // len(s) + 1))[: shape.max]).filter(  # type: ignore[operator]
            lambda s: matcher.fullmatch(s) is not None))
    return st.one_of(options)


def near_string(shape: Shape) -> st.SearchStrategy[Any]:
    """A value one step outside `shape`: too long, too short, off-pattern, off-enum, wrong type."""
    options: list[st.SearchStrategy[Any]] = [_WRONG_TYPES["string"]]
    if shape.max is not None:
        options.append(st.just("a" * (shape.max + 1)))
        options.append(st.sampled_from(["é", "\ud800", "\u0000", " "]).map(
            lambda c: "a" * shape.max + c))  # type: ignore[operator]
    if shape.min:
        options.append(st.just("a" * (shape.min - 1)))
    if shape.enum:
        options.append(st.sampled_from([e.lower() for e in shape.enum]
                                       + [e + " " for e in shape.enum] + ["NOPE", ""]))
    if shape.pattern is not None and shape.pattern not in ANY_TEXT:
        matcher = compile_java_pattern(shape.pattern)
        off = [s for s in PATTERN_BREAKERS if matcher.fullmatch(s) is None]
        inserts = [s for s in off if s]
        options.append(st.sampled_from(off))
        options.append(st.text(_ANY_CHAR, max_size=12).filter(
            lambda s: matcher.fullmatch(s) is None))
        valid = valid_string(shape)
        options.append(st.tuples(valid, st.sampled_from(inserts), st.booleans())
                       .map(lambda t: t[1] + t[0] if t[2] else t[0] + t[1])
                       .filter(lambda s: matcher.fullmatch(s) is None))
    return st.one_of(options)


# --- any shape -----------------------------------------------------------------------------


def valid(shape: Shape, hints: Hints, *, keys: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """Values the model accepts for `shape`, with the hints for `keys` mixed in."""
    hinted, only = hints.lookup(*keys)
    if only:
        return st.sampled_from(hinted)
    generic = _valid_generic(shape, hints)
    return st.one_of(st.sampled_from(hinted), generic) if hinted else generic


def _valid_generic(shape: Shape, hints: Hints) -> st.SearchStrategy[Any]:
    kind = shape.type
    if kind == "string":
        return valid_string(shape)
    if kind == "integer":
        low = shape.min if shape.min is not None else -(2**31)
        edges = [low, 2**31 - 1] + ([low + 1] if low < 2**31 - 1 else [])
        return st.one_of(st.integers(low, max(low, 100)), st.sampled_from(edges))
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.integers(0, 2**32)
    if kind == "list":
        assert shape.member is not None
        element = valid(shape.member, hints, keys=(shape.member.name,))
        most = min(shape.max if shape.max is not None else 3, 3)
        return st.lists(element, min_size=shape.min or 0, max_size=max(most, shape.min or 0))
    return _valid_structure(shape, hints, owner=shape.name)


def _member_keys(owner: str, member: str) -> tuple[str, ...]:
    return (f"{owner}.{member}", member)


def _valid_structure(shape: Shape, hints: Hints, *, owner: str) -> st.SearchStrategy[dict]:
    required = {m.name: valid(m.shape, hints, keys=_member_keys(owner, m.name))
                for m in shape.members if m.required}
    optional = {m.name: valid(m.shape, hints, keys=_member_keys(owner, m.name))
                for m in shape.members if not m.required}
    # A member no valid value can be drawn for (and no hint given) is left out.
    optional = {name: strategy for name, strategy in optional.items() if not strategy.is_empty}
    return st.fixed_dictionaries(required, optional=optional)


def near(shape: Shape, hints: Hints, *, owner: str | None = None,
         benign: bool = True) -> st.SearchStrategy[Any]:
    """A value one step outside `shape` (and, if `benign`, sometimes a valid value in a form
    the model still allows, such as an unknown member)."""
    kind = shape.type
    null = st.none()
    if kind == "string":
        return st.one_of(near_string(shape), null)
    if kind == "integer":
        off = [2**31, -(2**31) - 1, 10**20, -(10**20), 10**400]
        if shape.min is not None:
            off += [shape.min - 1, shape.min - 2**31]
        if shape.max is not None:
            off.append(shape.max + 1)
        return st.one_of(st.sampled_from(off), _WRONG_TYPES["integer"], null)
    if kind == "boolean":
        return st.one_of(_WRONG_TYPES["boolean"], null)
    if kind == "timestamp":
        return _WRONG_TYPES["timestamp"]
    if kind == "list":
        return _near_list(shape, hints)
    return _near_structure(shape, hints, owner=owner or shape.name, benign=benign)


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _near_list(shape: Shape, hints: Hints) -> st.SearchStrategy[Any]:
    assert shape.member is not None
    element = valid(shape.member, hints, keys=(shape.member.name,))
    bad = near(shape.member, hints, benign=False)
    fine = st.lists(element, max_size=2)
    options = [
        _WRONG_TYPES["list"],
        st.tuples(fine, bad, st.integers(0, 2)).map(lambda t: t[0][: t[2]] + [t[1]] + t[0][t[2]:]),
        fine.map(lambda items: [*items, None]),
        st.tuples(element, st.integers(2, 40)).map(lambda t: _nest(t[0], t[1])),
        st.tuples(fine, st.integers(1, 40)).map(lambda t: [_nest(t[0], t[1])]),
    ]
    if shape.max is not None:
        # One more member than allowed, all of them valid.
        options.append(st.lists(element, min_size=shape.max + 1, max_size=shape.max + 1))
    if shape.min:
        options.append(st.lists(element, min_size=shape.min - 1, max_size=shape.min - 1))
    return st.one_of(options)


def _near_structure(shape: Shape, hints: Hints, *, owner: str,
                    benign: bool) -> st.SearchStrategy[Any]:
    base = _valid_structure(shape, hints, owner=owner)
    options: list[st.SearchStrategy[Any]] = [_WRONG_TYPES["structure"]]
    required = [m.name for m in shape.members if m.required]
    if required:
        options.append(st.tuples(base, st.sampled_from(required)).map(
            lambda t: {k: v for k, v in t[0].items() if k != t[1]}))
        options.append(st.tuples(base, st.sampled_from(required)).map(
            lambda t: {**t[0], t[1]: None}))
    if shape.members:
        member_near = {m.name: near(m.shape, hints, benign=benign) for m in shape.members}
        options.append(st.tuples(base, st.sampled_from(sorted(member_near))).flatmap(
            lambda t: member_near[t[1]].map(lambda bad: {**t[0], t[1]: bad})))
    if benign:
        # Unknown members: AWS ignores them (a different case of a known name included).
        unknown = st.one_of(st.text(max_size=12), st.sampled_from(
            [m.name.lower() for m in shape.members] + ["__type", "Action", "X-Amz-Target"]))
        known = {m.name for m in shape.members}
        options.append(st.tuples(base, unknown.filter(lambda k: k not in known), JSON_VALUES)
                       .map(lambda t: {**t[0], t[1]: t[2]}))
    return st.one_of(options)


# --- operations ----------------------------------------------------------------------------


def operation_input(operation: Operation, hints: Hints, *,
                    mode: str = "mixed") -> st.SearchStrategy[Example]:
    """Request bodies for `operation`: "valid", "near" (invalid by the model), or "mixed"."""
    shape = operation.input
    owner = operation.name
    valid_body = _valid_structure(shape, hints, owner=owner)
    near_body = near(shape, hints, owner=owner, benign=mode != "near")
    if mode == "valid":
        params = valid_body
    elif mode == "near":
        params = near_body.filter(lambda p: bool(validate_input(operation, p)))
    else:
        # Two valid for one near-valid: the service behind the validator needs the traffic.
        params = st.one_of(valid_body, valid_body, near_body)
    # One body in eight sends its text as raw UTF-8 (invalid where it holds a surrogate).
    return st.builds(Example, params, st.sampled_from(["ascii"] * 7 + ["utf-8"]))


def operations() -> list[Operation]:
    return list(SERVICE.operations.values())
