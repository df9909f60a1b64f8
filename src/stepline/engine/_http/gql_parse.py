"""GraphQL query documents, read strictly: a tokenizer and a recursive-descent parser.

The subset the dev server's ``/v0/gql`` serves (``gql``): query operations (named or the
``{ ... }`` shorthand) with variable definitions, fields with aliases, arguments and
selection sets, and every value literal but block strings. Fragments, directives,
mutations and subscriptions are refused by name. Pure: text in, a tree or
``GqlError`` out (with the line and column of the offending token).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import NoReturn, TypeAlias

#: The longest query text read, and how deep selections and values may nest.
MAX_QUERY_CHARS = 100_000
MAX_DEPTH = 32


class GqlError(Exception):
    """A request ``/v0/gql`` answers with ``{"errors": [{"message": ...}]}``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """``$name`` in a value position."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Enum:
    """An enum value (a bare name that is not ``true``, ``false`` or ``null``)."""

    name: str


#: A value literal: scalars as Python values, lists as tuples, input objects as dicts.
Value: TypeAlias = (
    "str | int | float | bool | Variable | Enum | tuple[Value, ...] | dict[str, Value] | None"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One selected field: ``alias: name(arguments) { selections }``."""

    name: str
    alias: str | None
    arguments: dict[str, Value]
    selections: tuple[Field, ...] | None

    @property
    def key(self) -> str:
        """The name the field answers under."""
        return self.alias or self.name


@dataclasses.dataclass(frozen=True, slots=True)
class VariableDefinition:
    """``$name: Type = default``; ``type`` is its text, e.g. ``String!`` or ``[ID!]``."""

    name: str
    type: str
    default: Value
    has_default: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """A query operation."""

    name: str | None
    variables: tuple[VariableDefinition, ...]
    selections: tuple[Field, ...]


_TOKEN = re.compile(
    r"""
    (?P<ignored>[ \t\n\r,\ufeff]+|\#[^\n\r]*)
    | (?P<block>""\")
    | (?P<string>"(?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?P<frac>\.[0-9]+)?(?P<exp>[eE][+-]?[0-9]+)?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<punct>\.\.\.|[!$&()\:=@\[\]{|}])
    """,
    re.VERBOSE,
)
_NUMBER_TAIL = re.compile(r"[._A-Za-z0-9]")


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "string", "int", "float", "name", "punct" or "end"
    text: str
    at: int


def tokens(source: str) -> list[_Token]:
    """The tokens of ``source``, ending with an ``end`` token.

    Raises:
        GqlError: an unexpected character, an unterminated string or a block string.
    """
    if len(source) > MAX_QUERY_CHARS:
        raise GqlError(f"Syntax Error: query longer than {MAX_QUERY_CHARS} characters.")
    out: list[_Token] = []
    at = 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise GqlError(_syntax(source, at, _unexpected_character(source, at)))
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "block":
            raise GqlError(_syntax(source, at, "block strings are not supported."))
        if kind == "number":
            if _NUMBER_TAIL.match(source, match.end()):
                raise GqlError(_syntax(source, match.end(), "Invalid number."))
            kind = "float" if match.group("frac") or match.group("exp") else "int"
        if kind != "ignored":
            out.append(_Token(kind, text, at))
        at = match.end()
    out.append(_Token("end", "", len(source)))
    return out


def _unexpected_character(source: str, at: int) -> str:
    char = source[at]
    if char == '"':
        return "Unterminated string or invalid escape in string."
    return f"Unexpected character: {json.dumps(char)}."


def _syntax(source: str, at: int, message: str) -> str:
    line = source.count("\n", 0, at) + 1
    column = at - (source.rfind("\n", 0, at) + 1) + 1
    return f"Syntax Error: {message} (line {line}, column {column})"


def parse(source: str) -> list[Operation]:
    """The operations of a query document, in document order.

    Raises:
        GqlError: a syntax error, or something outside the subset (named in the message).
    """
    return _QueryParser(source).document()


def operation(source: str, name: object) -> Operation:
    """The operation of a query document to run: the one named ``name``, or the only one.

    Raises:
        GqlError: a syntax error, no such operation, or several and no name.
    """
    operations = parse(source)
    if name is not None and not isinstance(name, str):
        raise GqlError("operationName must be a string")
    names = [o.name for o in operations]
    for index, found in enumerate(names):
        if found is not None and found in names[:index]:
            raise GqlError(f'There can be only one operation named "{found}".')
    if len(operations) > 1 and None in names:
        raise GqlError("This anonymous operation must be the only defined operation.")
    if name:
        chosen = [o for o in operations if o.name == name]
        if not chosen:
            raise GqlError(f'Unknown operation named "{name}".')
        return chosen[0]
    if len(operations) > 1:
        raise GqlError("Must provide operation name if query contains multiple operations.")
    return operations[0]


class _QueryParser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokens(source)
        self.pos = 0
        self.depth = 0

    # -- tokens -----------------------------------------------------------------------------

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        return self.peek.kind in ("punct", "name") and self.peek.text == text

    def skip(self, text: str) -> bool:
        if self.at(text):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.skip(text):
            self.fail(f'Expected "{text}", found {self.shown(self.peek)}.')

    def name(self) -> str:
        token = self.next()
        if token.kind != "name":
            self.pos -= 1
            self.fail(f"Expected Name, found {self.shown(token)}.")
        return token.text

    def shown(self, token: _Token) -> str:
        if token.kind == "end":
            return "<EOF>"
        return f'"{token.text}"' if token.kind == "punct" else f"{token.kind} {token.text!r}"

    def fail(self, message: str, token: _Token | None = None) -> NoReturn:
        raise GqlError(_syntax(self.source, (token or self.peek).at, message))

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} levels.")

    # -- definitions ------------------------------------------------------------------------

    def document(self) -> list[Operation]:
        operations = [self.operation()]
        while self.peek.kind != "end":
            operations.append(self.operation())
        return operations

    def operation(self) -> Operation:
        token = self.peek
        if self.at("{"):
            return Operation(None, (), self.selection_set())
        if token.kind != "name":
            self.fail(f"Unexpected {self.shown(token)}.")
        if token.text == "fragment":
            self.fail("fragments are not supported.")
        if token.text in ("mutation", "subscription"):
            self.fail(f"only query operations are served, not {token.text}.")
        if token.text != "query":
            self.fail(f"Unexpected {self.shown(token)}.")
        self.pos += 1
        name = self.name() if self.peek.kind == "name" else None
        variables = self.variable_definitions() if self.at("(") else ()
        self.no_directives()
        return Operation(name, variables, self.selection_set())

    def variable_definitions(self) -> tuple[VariableDefinition, ...]:
        self.expect("(")
        found: list[VariableDefinition] = []
        while not self.skip(")"):
            token = self.peek
            self.expect("$")
            name = self.name()
            if any(d.name == name for d in found):
                self.fail(f'There can be only one variable named "${name}".', token)
            self.expect(":")
            type_text = self.type_ref()
            has_default = self.skip("=")
            default = self.value(const=True) if has_default else None
            self.no_directives()
            found.append(VariableDefinition(name, type_text, default, has_default))
        if not found:
            self.fail("Expected a variable definition.", self.tokens[self.pos - 1])
        return tuple(found)

    def type_ref(self) -> str:
        if self.skip("["):
            self.nested()
            text = f"[{self.type_ref()}]"
            self.expect("]")
            self.depth -= 1
        else:
            text = self.name()
        return text + "!" if self.skip("!") else text

    def no_directives(self) -> None:
        if self.at("@"):
            self.fail("directives are not supported.")

    # -- selections -------------------------------------------------------------------------

    def selection_set(self) -> tuple[Field, ...]:
        self.expect("{")
        self.nested()
        fields: list[Field] = []
        while not self.skip("}"):
            if self.at("..."):
                self.fail("fragments are not supported.")
            fields.append(self.field())
        if not fields:
            self.fail('Expected Name, found "}".', self.tokens[self.pos - 1])
        self.depth -= 1
        return tuple(fields)

    def field(self) -> Field:
        alias: str | None = None
        name = self.name()
        if self.skip(":"):
            alias, name = name, self.name()
        arguments = self.arguments() if self.at("(") else {}
        self.no_directives()
        selections = self.selection_set() if self.at("{") else None
        return Field(name, alias, arguments, selections)

    def arguments(self) -> dict[str, Value]:
        self.expect("(")
        found: dict[str, Value] = {}
        while not self.skip(")"):
            token = self.peek
            name = self.name()
            if name in found:
                self.fail(f'There can be only one argument named "{name}".', token)
            self.expect(":")
            found[name] = self.value(const=False)
        if not found:
            self.fail('Expected Name, found ")".', self.tokens[self.pos - 1])
        return found

    # -- values -----------------------------------------------------------------------------

    def value(self, *, const: bool) -> Value:
        token = self.next()
        if token.kind == "string":
            return str(json.loads(token.text, strict=False))
        if token.kind == "int":
            return int(token.text)
        if token.kind == "float":
            return float(token.text)
        if token.kind == "name":
            return {"true": True, "false": False, "null": None}.get(token.text, Enum(token.text))
        if token.text == "$":
            if const:
                self.fail("Unexpected variable in a constant value.", token)
            return Variable(self.name())
        if token.text in ("[", "{"):
            self.nested()
            found = self.list_value(const) if token.text == "[" else self.object_value(const)
            self.depth -= 1
            return found
        self.pos -= 1
        self.fail(f"Unexpected {self.shown(token)}.")

    def list_value(self, const: bool) -> tuple[Value, ...]:
        items: list[Value] = []
        while not self.skip("]"):
            items.append(self.value(const=const))
        return tuple(items)

    def object_value(self, const: bool) -> dict[str, Value]:
        found: dict[str, Value] = {}
        while not self.skip("}"):
            token = self.peek
            name = self.name()
            if name in found:
                self.fail(f'There can be only one input field named "{name}".', token)
            self.expect(":")
            found[name] = self.value(const=const)
        return found
