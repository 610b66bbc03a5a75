"""IAM JSON policies as AWS evaluates them, for this service: reading (a malformed policy is
refused with its line and the reason) and deciding whether a request is allowed.

The language: `Version` (2012-10-17, or 2008-10-17 which has no policy variables), `Id`,
`Statement` (one object or a list) with `Sid`, `Effect` Allow/Deny, `Action` or `NotAction`
(`opsworks-cm:DeleteServer`, `opsworks-cm:Describe*`, `*`: case-insensitive), `Resource` or
`NotResource` (ARNs with `*` and `?` inside each of the six colon-separated parts), and
`Condition` (`{operator: {key: value or [values]}}`; operators below, with `ForAnyValue:` /
`ForAllValues:` and `...IfExists`). Policy variables (`${aws:username}`, `${*}`, `${?}`,
`${$}`) are replaced in Resource and in condition values under Version 2012-10-17.

Evaluation as IAM's: an explicit Deny in any statement wins; else an Allow; else denied.
Within a condition block every operator and every key must hold (AND); the values listed for
one key are alternatives (OR; for negated operators: none may match). A key missing from the
request: false for the positive operators, true for the negated ones and with `IfExists`,
`ForAllValues:` true, `ForAnyValue:` false; `Null` tests presence itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cmhost.service.policy_json import JsonSyntaxError, Node, parse, plain

VERSIONS = ("2012-10-17", "2008-10-17")
MAX_POLICY_BYTES = 6144  # IAM's limit for a user's inline policies (managed: 6,144 too)

ContextValue = str | Sequence[str]


class PolicyError(ValueError):
    """A policy that cannot be used: `line` is where the problem is (1 for the whole)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


# --- matching ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """An ARN pattern against an ARN, part by part (arn:partition:service:region:account:
    resource); `*` alone matches everything. Wildcards do not cross the parts' colons."""
    if pattern == "*":
        return True
    want, have = pattern.split(":", 5), arn.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False
    return all(glob_match(w, h) for w, h in zip(want, have, strict=True))


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(text: str, context: Mapping[str, ContextValue]) -> str | None:
    """`${...}` policy variables replaced from the request; None when one names a key the
    request lacks or that has several values (the statement then does not apply)."""
    if "${" not in text:
        return text
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        found = context.get(context_key(name))
        if not isinstance(found, str):
            missing = True
            return ""
        return found

    out = _VARIABLE.sub(value, text)
    return None if missing else out


def context_key(name: str) -> str:
    """Condition key names are case-insensitive; a tag key after the slash keeps its case."""
    head, slash, tail = name.partition("/")
    return head.lower() + slash + tail


# --- conditions ----------------------------------------------------------------------------


def _date(text: str) -> float:
    text = text.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    parsed = dt.datetime.fromisoformat(text)  # 3.11 reads a trailing Z
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text.strip(), strict=False)


def _in_network(value: str, net: Any) -> bool:
    try:
        return ipaddress.ip_address(value) in net
    except ValueError:
        return False


def _num_cmp(op: Callable[[float, float], bool]) -> Callable[[str, Any], bool]:
    def compare(value: str, want: Any) -> bool:
        try:
            return op(float(value), want)
        except ValueError:
            return False
    return compare


def _date_cmp(op: Callable[[float, float], bool]) -> Callable[[str, Any], bool]:
    def compare(value: str, want: Any) -> bool:
        try:
            return op(_date(value), want)
        except ValueError:
            return False
    return compare


def _lt(a: float, b: float) -> bool:
    return a < b


def _le(a: float, b: float) -> bool:
    return a <= b


def _gt(a: float, b: float) -> bool:
    return a > b


def _ge(a: float, b: float) -> bool:
    return a >= b


def _eq(a: float, b: float) -> bool:
    return a == b


@dataclass(frozen=True)
class _Operator:
    # How a policy value is prepared (may raise ValueError: a malformed policy) and how a
    # request value is compared with a prepared one.
    prepare: Callable[[str], Any]
    compare: Callable[[str, Any], bool]
    negated: bool = False


def _same(text: str) -> str:
    return text


def _bool_text(text: str) -> str:
    word = text.lower()
    if word not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return word


_OPERATORS: dict[str, _Operator] = {
    "stringequals": _Operator(_same, lambda v, w: v == w),
    "stringnotequals": _Operator(_same, lambda v, w: v == w, negated=True),
    "stringequalsignorecase": _Operator(str.casefold, lambda v, w: v.casefold() == w),
    "stringnotequalsignorecase": _Operator(str.casefold, lambda v, w: v.casefold() == w,
                                           negated=True),
    "stringlike": _Operator(_same, lambda v, w: glob_match(w, v)),
    "stringnotlike": _Operator(_same, lambda v, w: glob_match(w, v), negated=True),
    "numericequals": _Operator(float, _num_cmp(_eq)),
    "numericnotequals": _Operator(float, _num_cmp(_eq), negated=True),
    "numericlessthan": _Operator(float, _num_cmp(_lt)),
    "numericlessthanequals": _Operator(float, _num_cmp(_le)),
    "numericgreaterthan": _Operator(float, _num_cmp(_gt)),
    "numericgreaterthanequals": _Operator(float, _num_cmp(_ge)),
    "dateequals": _Operator(_date, _date_cmp(_eq)),
    "datenotequals": _Operator(_date, _date_cmp(_eq), negated=True),
    "datelessthan": _Operator(_date, _date_cmp(_lt)),
    "datelessthanequals": _Operator(_date, _date_cmp(_le)),
    "dategreaterthan": _Operator(_date, _date_cmp(_gt)),
    "dategreaterthanequals": _Operator(_date, _date_cmp(_ge)),
    "bool": _Operator(_bool_text, lambda v, w: v.lower() == w),
    "ipaddress": _Operator(_network, _in_network),
    "notipaddress": _Operator(_network, _in_network, negated=True),
    "arnequals": _Operator(_same, lambda v, w: v == w),
    "arnnotequals": _Operator(_same, lambda v, w: v == w, negated=True),
    "arnlike": _Operator(_same, lambda v, w: arn_match(w, v)),
    "arnnotlike": _Operator(_same, lambda v, w: arn_match(w, v), negated=True),
}


@dataclass(frozen=True)
class _Condition:
    operator: _Operator
    key: str  # as context_key() keeps it
    values: tuple[str, ...]  # as written (variables are replaced at evaluation)
    prepared: tuple[Any, ...] | None  # prepared values when they hold no variable
    set_kind: str  # "", "any" or "all"
    if_exists: bool
    null_test: bool  # the Null operator: values are "true"/"false"

    def holds(self, context: Mapping[str, ContextValue], variables: bool) -> bool:
        found = context.get(self.key)
        if self.null_test:
            absent = found is None or (not isinstance(found, str) and len(found) == 0)
            return any((w == "true") == absent for w in self.values)
        if found is None:
            if self.set_kind == "all":
                return True
            if self.set_kind == "any":
                return False
            return self.if_exists or self.operator.negated
        wants = self.prepared if self.prepared is not None else self._prepare(context, variables)
        if wants is None:
            return False
        items = [found] if isinstance(found, str) else list(found)
        compare = self.operator.compare

        def matches(item: str) -> bool:
            return any(compare(item, want) for want in wants)

        if self.set_kind == "all":
            return all(matches(i) != self.operator.negated for i in items)
        if self.set_kind == "any":
            return any(matches(i) != self.operator.negated for i in items)
        hit = any(matches(i) for i in items)
        return not hit if self.operator.negated else hit

    def _prepare(self, context: Mapping[str, ContextValue], variables: bool
                 ) -> tuple[Any, ...] | None:
        out = []
        for text in self.values:
            value = substitute(text, context) if variables else text
            if value is None:
                continue
            try:
                out.append(self.operator.prepare(value))
            except ValueError:
                continue
        return tuple(out)


# --- statements and policies ---------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sid: str | None
    allow: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]

    def matches_action(self, action: str) -> bool:
        hit = any(glob_match(a, action, ignore_case=True) for a in self.actions)
        return hit != self.not_action

    def applies(self, action: str, resource: str, context: Mapping[str, ContextValue],
                variables: bool) -> bool:
        return self.matches_action(action) and self.applies_to(resource, context, variables)

    def applies_to(self, resource: str, context: Mapping[str, ContextValue],
                   variables: bool) -> bool:
        """Whether the statement applies to `resource` in `context` (its action matched)."""
        patterns = [substitute(r, context) if variables else r for r in self.resources]
        hit = any(p is not None and arn_match(p, resource) for p in patterns)
        if hit == self.not_resource:
            return False
        return all(c.holds(context, variables) for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    statements: tuple[Statement, ...]
    document: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool  # denied by a Deny statement (not merely for want of an Allow)


def evaluate(policies: Sequence[Policy], action: str, resource: str,
             context: Mapping[str, ContextValue]) -> Decision:
    """IAM's verdict for one request. `action` is `opsworks-cm:<Operation>`; `resource` an
    ARN or `*`; `context` the condition keys (names through context_key())."""
    return decide(statements_for(policies, action), resource, context)


def statements_for(policies: Sequence[Policy], action: str
                   ) -> list[tuple[Statement, bool]]:
    """The statements whose Action (or NotAction) covers `action`, each with whether its
    policy's version replaces policy variables: all that can decide a call of `action`."""
    return [(statement, policy.version == "2012-10-17") for policy in policies
            for statement in policy.statements if statement.matches_action(action)]


def decide(entries: Sequence[tuple[Statement, bool]], resource: str,
           context: Mapping[str, ContextValue]) -> Decision:
    """The verdict of the statements that cover the call's action (statements_for)."""
    allowed = False
    for statement, variables in entries:
        if statement.allow and allowed:
            continue  # already allowed: only a Deny can still change the verdict
        if statement.applies_to(resource, context, variables):
            if not statement.allow:
                return Decision(allowed=False, explicit_deny=True)
            allowed = True
    return Decision(allowed=allowed, explicit_deny=False)


def denial_message(principal_arn: str, action: str, resource: str, decision: Decision) -> str:
    why = ("with an explicit deny in an identity-based policy" if decision.explicit_deny
           else f"because no identity-based policy allows the {action} action")
    return (f"User: {principal_arn} is not authorized to perform: {action} on resource: "
            f"{resource} {why}")


# --- reading -------------------------------------------------------------------------------


_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
_KEY = re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9_./*?:-]+(/.+)?")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Condition", "Principal", "NotPrincipal"}


def read_policy(text: str, name: str = "inline") -> Policy:
    """The policy in `text`; PolicyError with the line and the reason when it is not one."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError(1, f"the policy is {len(text.encode())} bytes; the limit is "
                             f"{MAX_POLICY_BYTES}")
    try:
        root = parse(text)
    except JsonSyntaxError as exc:
        raise PolicyError(exc.line, exc.reason) from None
    if root.kind != "object":
        raise PolicyError(root.line, "a policy is a JSON object")
    members = _members(root, {"Version", "Id", "Statement"}, "the policy")
    version_node = members.get("Version")
    version = "2008-10-17"
    if version_node is not None:
        if version_node.kind != "string" or version_node.value not in VERSIONS:
            raise PolicyError(version_node.line, f"Version must be one of {', '.join(VERSIONS)}")
        version = version_node.value
    body = members.get("Statement")
    if body is None:
        raise PolicyError(root.line, "the policy has no Statement")
    items = body.value if body.kind == "array" else [body]
    if not items:
        raise PolicyError(body.line, "Statement is empty")
    statements = tuple(_statement(item) for item in items)
    sids = [s.sid for s in statements if s.sid is not None]
    for sid in sids:
        if sids.count(sid) > 1:
            raise PolicyError(body.line, f"the Sid {sid!r} is used by more than one statement")
    return Policy(name=name, version=version, statements=statements, document=plain(root))


def _members(node: Node, allowed: set[str], what: str) -> dict[str, Node]:
    found: dict[str, Node] = {}
    for key, line, child in node.value:
        if key not in allowed:
            raise PolicyError(line, f"{what} has an unknown element {key!r} (allowed: "
                                    f"{', '.join(sorted(allowed))})")
        if key in found:
            raise PolicyError(line, f"{what} has {key!r} twice")
        found[key] = child
    return found


def _strings(node: Node, what: str) -> tuple[str, ...]:
    items = node.value if node.kind == "array" else [node]
    if not items:
        raise PolicyError(node.line, f"{what} is empty")
    for item in items:
        if item.kind != "string" or not item.value:
            raise PolicyError(item.line, f"{what} must be a string or a list of strings")
    return tuple(item.value for item in items)


def _statement(node: Node) -> Statement:
    if node.kind != "object":
        raise PolicyError(node.line, "a statement is a JSON object")
    m = _members(node, _STATEMENT_KEYS, "a statement")
    for key in ("Principal", "NotPrincipal"):
        if key in m:
            raise PolicyError(m[key].line, f"{key} is not allowed in an identity-based policy "
                                           "(the policy applies to the user it is attached to)")
    sid = m.get("Sid")
    if sid is not None and (sid.kind != "string" or not re.fullmatch(r"[A-Za-z0-9]*",
                                                                      sid.value)):
        raise PolicyError(sid.line, "Sid must be a string of letters and digits")
    effect = m.get("Effect")
    if effect is None:
        raise PolicyError(node.line, "the statement has no Effect")
    if effect.kind != "string" or effect.value not in ("Allow", "Deny"):
        raise PolicyError(effect.line, "Effect must be Allow or Deny")
    action_key = _one_of(m, node, "Action", "NotAction")
    actions = _strings(m[action_key], action_key)
    for action, item in zip(actions, _items(m[action_key]), strict=True):
        if not _ACTION.fullmatch(action):
            raise PolicyError(item.line, f"{action!r} is not an action like "
                                         "opsworks-cm:DeleteServer, opsworks-cm:Describe* or *")
    resource_key = _one_of(m, node, "Resource", "NotResource")
    resources = _strings(m[resource_key], resource_key)
    for resource, item in zip(resources, _items(m[resource_key]), strict=True):
        if resource != "*" and not (resource.startswith("arn:")
                                    and len(resource.split(":", 5)) == 6):
            raise PolicyError(item.line, f"{resource!r} is not * or an ARN "
                                         "(arn:partition:service:region:account:resource)")
    conditions = _conditions(m["Condition"]) if "Condition" in m else ()
    return Statement(sid=sid.value if sid is not None else None,
                     allow=effect.value == "Allow", actions=actions,
                     not_action=action_key == "NotAction", resources=resources,
                     not_resource=resource_key == "NotResource", conditions=conditions)


def _items(node: Node) -> list[Node]:
    return list(node.value) if node.kind == "array" else [node]


def _one_of(m: dict[str, Node], node: Node, a: str, b: str) -> str:
    if (a in m) == (b in m):
        raise PolicyError(node.line, f"a statement needs exactly one of {a} and {b}")
    return a if a in m else b


def _conditions(node: Node) -> tuple[_Condition, ...]:
    if node.kind != "object":
        raise PolicyError(node.line, "Condition must be an object of operators")
    out: list[_Condition] = []
    for op_name, op_line, block in node.value:
        set_kind, base = "", op_name
        for prefix, kind in (("ForAnyValue:", "any"), ("ForAllValues:", "all")):
            if op_name.startswith(prefix):
                set_kind, base = kind, op_name[len(prefix):]
        if_exists = base.endswith("IfExists")
        if if_exists:
            base = base[: -len("IfExists")]
        null_test = base == "Null"
        operator = _OPERATORS.get(base.lower())
        if (operator is None and not null_test) or (null_test and (if_exists or set_kind)):
            raise PolicyError(op_line, f"{op_name!r} is not a condition operator")
        if block.kind != "object" or not block.value:
            raise PolicyError(block.line, f"{op_name} must map condition keys to values")
        for key, key_line, values_node in block.value:
            if not _KEY.fullmatch(key):
                raise PolicyError(key_line, f"{key!r} is not a condition key like "
                                            "aws:SourceIp or aws:ResourceTag/team")
            values = _condition_values(values_node, key)
            if null_test:
                values = tuple(_checked(_bool_text, v, values_node, key) for v in values)
                out.append(_Condition(operator=_OPERATORS["bool"], key=context_key(key),
                                      values=values, prepared=None, set_kind="",
                                      if_exists=False, null_test=True))
                continue
            assert operator is not None
            prepared = None
            if not any("${" in v for v in values):
                prepared = tuple(_checked(operator.prepare, v, values_node, key)
                                 for v in values)
            out.append(_Condition(operator=operator, key=context_key(key), values=values,
                                  prepared=prepared, set_kind=set_kind, if_exists=if_exists,
                                  null_test=False))
    return tuple(out)


def _condition_values(node: Node, key: str) -> tuple[str, ...]:
    items = _items(node)
    if not items:
        raise PolicyError(node.line, f"the condition on {key} has no value")
    out = []
    for item in items:
        if item.kind == "bool":
            out.append("true" if item.value else "false")
        elif item.kind in ("string", "number"):
            out.append(str(item.value))
        else:
            raise PolicyError(item.line, f"the values of {key} must be strings, numbers or "
                                         "booleans")
    return tuple(out)


def _checked(prepare: Callable[[str], Any], value: str, node: Node, key: str) -> Any:
    try:
        return prepare(value)
    except ValueError as exc:
        raise PolicyError(node.line, f"{value!r} is not a valid value for {key}: {exc}"
                          ) from None
