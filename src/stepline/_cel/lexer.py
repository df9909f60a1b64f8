"""Turns CEL source text into tokens; the only place that looks at characters."""

from __future__ import annotations

import dataclasses
import enum

from stepline._cel import errors

__all__ = ["Kind", "Token", "tokenize"]

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_REST = _IDENT_START | _DIGITS
_WHITESPACE = frozenset(" \t\n\r\f")
_PUNCT2 = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_PUNCT1 = frozenset("<>!+-*/%?:.,[](){}")
_HINTS = {"=": "'=='", "&": "'&&'", "|": "'||'"}
# What a backtick-quoted field name may hold: ``a.`content-type` ``, ``a.`foo.txt` ``.
_QUOTED_NAME = _IDENT_REST | frozenset(".-/ ")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_HEX_ESCAPES = {"x": 2, "X": 2, "u": 4, "U": 8}
_STRING_PREFIXES = frozenset({"r", "R"})
_BYTES_PREFIXES = frozenset(
    {"b", "B", "rb", "rB", "Rb", "RB", "br", "bR", "Br", "BR"},
)


class Kind(enum.Enum):
    """What a token is; keywords such as ``true`` and ``in`` are ``IDENT``s."""

    INT = "int"
    UINT = "uint"
    DOUBLE = "double"
    STRING = "string"
    IDENT = "identifier"
    QUOTED = "quoted field name"
    PUNCT = "operator"
    EOF = "end of input"


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, source text, 0-based offset and decoded literal value."""

    kind: Kind
    text: str
    pos: int
    value: int | float | str | None = None

    def describe(self) -> str:
        """Name the token for an error message: ``token ')'`` or ``end of input``."""
        return self.shown() if self.kind is Kind.EOF else f"token {self.shown()}"

    def shown(self) -> str:
        """Quote the token for an error message: ``')'`` or ``end of input``."""
        if self.kind is Kind.EOF:
            return "end of input"
        return repr(self.text if len(self.text) <= 20 else self.text[:17] + "...")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one ``EOF`` token.

    Raises:
        ExpressionError: an unexpected character, a malformed number or string literal.
    """
    return _Lexer(text).run()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []

    def fail(self, reason: str, pos: int) -> errors.ExpressionError:
        return errors.ExpressionError(reason, self.text, pos)

    def run(self) -> list[Token]:
        text, size, i = self.text, len(self.text), 0
        while i < size:
            char = text[i]
            if char in _WHITESPACE:
                i += 1
            elif text.startswith("//", i):
                end = text.find("\n", i)
                i = size if end < 0 else end
            elif char in _DIGITS or (char == "." and i + 1 < size and text[i + 1] in _DIGITS):
                i = self.number(i)
            elif char in _IDENT_START:
                i = self.word(i)
            elif char in "\"'":
                i = self.string(i, i, raw=False)
            elif text[i : i + 2] in _PUNCT2:
                self.tokens.append(Token(Kind.PUNCT, text[i : i + 2], i))
                i += 2
            elif char in _PUNCT1:
                self.tokens.append(Token(Kind.PUNCT, char, i))
                i += 1
            elif char == "`":
                i = self.quoted(i)
            elif char in _HINTS:
                raise self.fail(f"unexpected character {char!r} (did you mean {_HINTS[char]}?)", i)
            else:
                raise self.fail(f"unexpected character {char!r}", i)
        self.tokens.append(Token(Kind.EOF, "", size))
        return self.tokens

    def word(self, start: int) -> int:
        text, size, i = self.text, len(self.text), start + 1
        while i < size and text[i] in _IDENT_REST:
            i += 1
        word = text[start:i]
        if i < size and text[i] in "\"'":
            if word in _BYTES_PREFIXES:
                raise self.fail("bytes literals are not supported", start)
            if word in _STRING_PREFIXES:
                return self.string(start, i, raw=True)
        self.tokens.append(Token(Kind.IDENT, word, start))
        return i

    def quoted(self, start: int) -> int:
        text, size, i = self.text, len(self.text), start + 1
        while i < size and text[i] in _QUOTED_NAME:
            i += 1
        if i >= size or text[i] != "`":
            if i < size and text[i] not in "\r\n":
                reason = f"unexpected character {text[i]!r} in a quoted field name"
                raise self.fail(reason + " (letters, digits and _ . - / space)", i)
            raise self.fail("unterminated quoted field name", start)
        if i == start + 1:
            raise self.fail("empty quoted field name", start)
        self.tokens.append(Token(Kind.QUOTED, text[start : i + 1], start, text[start + 1 : i]))
        return i + 1

    def number(self, start: int) -> int:
        text, size = self.text, len(self.text)
        if text.startswith(("0x", "0X"), start):
            i = start + 2
            while i < size and text[i] in _HEX:
                i += 1
            if i == start + 2:
                raise self.fail("malformed hex literal: expected hex digits after '0x'", start)
            if i - start > 40:
                raise self.fail("integer literal out of range", start)
            return self.integer(start, i, int(text[start + 2 : i], 16))
        i = self.digits(start)
        is_double = False
        if i + 1 < size and text[i] == "." and text[i + 1] in _DIGITS:
            is_double = True
            i = self.digits(i + 1)
        if i < size and text[i] in "eE":
            j = i + 1
            if j < size and text[j] in "+-":
                j += 1
            if j >= size or text[j] not in _DIGITS:
                raise self.fail("malformed exponent in number literal", i)
            is_double = True
            i = self.digits(j)
        if not is_double:
            if i - start > 40:  # also keeps int() clear of Python's 4300-digit guard
                raise self.fail("integer literal out of range", start)
            return self.integer(start, i, int(text[start:i]))
        value = float(text[start:i])
        if value == float("inf"):
            raise self.fail("double literal out of range", start)
        self.tokens.append(Token(Kind.DOUBLE, text[start:i], start, value))
        return i

    def digits(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in _DIGITS:
            i += 1
        return i

    def integer(self, start: int, end: int, value: int) -> int:
        if end < len(self.text) and self.text[end] in "uU":
            if value > 2**64 - 1:
                raise self.fail("uint literal out of range", start)
            self.tokens.append(Token(Kind.UINT, self.text[start : end + 1], start, value))
            return end + 1
        # The range is checked by the parser, which knows whether a '-' precedes it.
        self.tokens.append(Token(Kind.INT, self.text[start:end], start, value))
        return end

    def string(self, start: int, quote_at: int, *, raw: bool) -> int:
        text, size = self.text, len(self.text)
        quote = text[quote_at]
        delimiter = quote * 3 if text.startswith(quote * 3, quote_at) else quote
        i = quote_at + len(delimiter)
        parts: list[str] = []
        while True:
            if i >= size:
                raise self.fail("unterminated string literal", start)
            if text.startswith(delimiter, i):
                i += len(delimiter)
                break
            char = text[i]
            if char in "\r\n" and len(delimiter) == 1:
                reason = "unterminated string literal (use triple quotes for newlines)"
                raise self.fail(reason, start)
            if char == "\\" and not raw:
                decoded, i = self.escape(i)
                parts.append(decoded)
            else:
                parts.append(char)
                i += 1
        self.tokens.append(Token(Kind.STRING, text[start:i], start, "".join(parts)))
        return i

    def escape(self, at: int) -> tuple[str, int]:
        text = self.text
        if at + 1 >= len(text):
            raise self.fail("unterminated string literal", at)
        code = text[at + 1]
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code], at + 2
        if code in _HEX_ESCAPES:
            width = _HEX_ESCAPES[code]
            digits = text[at + 2 : at + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise self.fail(f"invalid escape '\\{code}': expected {width} hex digits", at)
            point = int(digits, 16)
            if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
                raise self.fail(f"invalid escape '\\{code}{digits}': not a code point", at)
            return chr(point), at + 2 + width
        if code in "0123":
            digits = text[at + 1 : at + 4]
            if len(digits) != 3 or not set(digits) <= _OCTAL:
                raise self.fail("invalid octal escape: expected 3 octal digits", at)
            return chr(int(digits, 8)), at + 4
        shown = repr(code)[1:-1]
        raise self.fail(f"unknown escape sequence '\\{shown}'", at)
