"""A recursive-descent parser (shunting-yard for binary operators) from tokens to the AST.

Grammar and precedence follow the CEL spec, lowest first: ``?:`` (right associative; the
middle operand cannot itself be a bare conditional), ``||``, ``&&``, the relations
``== != < <= > >= in``, ``+ -``, ``* / %``, unary ``!``/``-`` (repeats of one operator
only), then member access, indexing and calls. Macros (``has``, ``all``, ``exists``, ...)
are recognised here, and unknown functions are rejected here, so errors surface at
compile time.
"""

from __future__ import annotations

from stepline._cel import ast, errors, functions, values
from stepline._cel.lexer import Kind, Token, tokenize

__all__ = ["KEYWORDS", "MAX_DEPTH", "PRECEDENCE", "parse"]

#: Deepest nesting accepted, for brackets and for the tree: the parser, the folder and the
#: evaluator all recurse, and this keeps them far from Python's recursion limit.
MAX_DEPTH = 100

#: Binding strength of binary operators (higher binds tighter); the renderer shares it.
PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "in": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}
_CONSTANTS = {"true": True, "false": False, "null": None}
#: Words of the grammar itself, refused even as field names unless quoted (x.`in`).
KEYWORDS = frozenset({"in", *_CONSTANTS})
_RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "namespace",
        "package",
        "return",
        "var",
        "void",
        "while",
    }
)


def parse(text: str) -> ast.Node:
    """Parse ``text`` into a tree.

    Raises:
        ExpressionError: the text is empty or not a valid expression.
    """
    if not text.strip():
        raise errors.ExpressionError("empty expression", text, 0)
    return _CelParser(text).parse()


class _CelParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0
        self.nesting = 0

    # ------------------------------------------------------------------ helpers

    def fail(self, reason: str, pos: int) -> errors.ExpressionError:
        return errors.ExpressionError(reason, self.text, pos)

    def peek(self) -> Token:
        return self.tokens[self.at]

    def advance(self) -> Token:
        token = self.tokens[self.at]
        if token.kind is not Kind.EOF:
            self.at += 1
        return token

    def accept(self, punct: str) -> Token | None:
        token = self.tokens[self.at]
        if token.kind is Kind.PUNCT and token.text == punct:
            self.at += 1
            return token
        return None

    def where(self, pos: int) -> str:
        line_start = self.text.rfind("\n", 0, pos) + 1
        return f"column {pos - line_start + 1}"

    def checked(self, node: ast.Node, pos: int) -> ast.Node:
        if node.depth > MAX_DEPTH:
            raise self.fail(f"expression is nested too deeply (limit {MAX_DEPTH})", pos)
        return node

    def close(self, opener: Token, closer: str, expected: str) -> None:
        if self.accept(closer):
            return
        token = self.peek()
        opened = f"{opener.text!r} from {self.where(opener.pos)}"
        if token.kind is Kind.EOF:
            raise self.fail(f"unclosed {opened}: expected {expected}, got end of input", token.pos)
        raise self.fail(f"expected {expected} to close {opened}, got {token.shown()}", token.pos)

    def name(self, token: Token, what: str) -> str:
        if token.kind is not Kind.IDENT:
            raise self.fail(f"expected {what}, got {token.shown()}", token.pos)
        if token.text in _RESERVED or token.text in _CONSTANTS:
            raise self.fail(f"{token.text!r} is a reserved word and cannot be {what}", token.pos)
        return token.text

    def field(self, token: Token) -> str:
        # Reserved words are refused only as identifiers: `x.if` is a field. The keywords
        # of the grammar itself (`in`, `true`, ...) need quoting: x.`in`.
        if token.kind is Kind.QUOTED:
            assert isinstance(token.value, str)
            return token.value
        if token.kind is not Kind.IDENT:
            raise self.fail(f"expected a field name, got {token.shown()}", token.pos)
        if token.text in KEYWORDS:
            reason = f"{token.text!r} is a keyword; quote it to use it as a field: `{token.text}`"
            raise self.fail(reason, token.pos)
        return token.text

    # ------------------------------------------------------------------ grammar

    def parse(self) -> ast.Node:
        node = self.expr()
        token = self.peek()
        if token.kind is Kind.EOF:
            return node
        if token.kind is Kind.PUNCT and token.text in ")]}":
            raise self.fail(f"unmatched {token.text!r}", token.pos)
        raise self.fail(f"unexpected {token.describe()} after a complete expression", token.pos)

    def expr(self) -> ast.Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            limit = f"expression is nested too deeply (limit {MAX_DEPTH})"
            raise self.fail(limit, self.peek().pos)
        node = self.binary()
        question = self.accept("?")
        if question is not None:
            then = self.binary()
            colon = self.peek()
            if not self.accept(":"):
                raise self.fail(
                    f"expected ':' for the '?' at {self.where(question.pos)}, got {colon.shown()}",
                    colon.pos,
                )
            otherwise = self.expr()
            node = self.checked(ast.Conditional(node, then, otherwise, pos=node.pos), question.pos)
        self.nesting -= 1
        return node

    def binary(self) -> ast.Node:
        # Shunting-yard: one stack frame for a whole operator chain, however long.
        operands = [self.operand()]
        operators: list[Token] = []
        while (precedence := _precedence(self.peek())) is not None:
            while operators and PRECEDENCE[operators[-1].text] >= precedence:
                self.reduce(operands, operators.pop())
            operators.append(self.advance())
            operands.append(self.operand())
        while operators:
            self.reduce(operands, operators.pop())
        return operands[0]

    def reduce(self, operands: list[ast.Node], operator: Token) -> None:
        right = operands.pop()
        left = operands.pop()
        op = operator.text
        node: ast.Node
        if op in {"&&", "||"}:
            parts: list[ast.Node] = []
            for side in (left, right):
                same = isinstance(side, ast.Logical) and side.op == op
                parts.extend(side.operands if isinstance(side, ast.Logical) and same else [side])
            node = ast.Logical(op, tuple(parts), pos=left.pos)
        else:
            node = ast.Binary(op, left, right, pos=left.pos)
        operands.append(self.checked(node, operator.pos))

    def operand(self) -> ast.Node:
        first = self.peek()
        if first.kind is not Kind.PUNCT or first.text not in {"!", "-"}:
            return self.postfix(self.primary())
        prefix: list[Token] = []
        while self.accept(first.text):
            prefix.append(self.tokens[self.at - 1])
        negative: Token | None = None
        if first.text == "-" and self.peek().kind in {Kind.INT, Kind.DOUBLE}:
            negative = prefix.pop()  # '-1' is one literal, so that -9223372036854775808 fits
        node = self.postfix(self.primary(negative))
        for token in reversed(prefix):
            node = self.checked(ast.Unary(token.text, node, pos=token.pos), token.pos)
        return node

    def postfix(self, node: ast.Node) -> ast.Node:
        while True:
            token = self.peek()
            if self.accept("."):
                name = self.advance()
                field = self.field(name)
                if self.peek().kind is Kind.PUNCT and self.peek().text == "(":
                    if name.kind is Kind.QUOTED:
                        raise self.fail("a quoted field name cannot be called", name.pos)
                    node = self.call(name, node, self.arguments())
                else:
                    node = ast.Select(node, field, pos=node.pos)
            elif self.accept("["):
                index = self.expr()
                self.close(token, "]", "']'")
                node = ast.Index(node, index, pos=node.pos)
            else:
                return node
            self.checked(node, token.pos)

    def primary(self, negative: Token | None = None) -> ast.Node:
        token = self.advance()
        if token.kind is Kind.INT:
            assert isinstance(token.value, int)
            value = -token.value if negative else token.value
            if not values.INT_MIN <= value <= values.INT_MAX:
                raise self.fail("integer literal out of range", (negative or token).pos)
            return ast.Literal(value, pos=(negative or token).pos)
        if token.kind is Kind.DOUBLE:
            assert isinstance(token.value, float)
            number = -token.value if negative else token.value
            return ast.Literal(number, pos=(negative or token).pos)
        if token.kind is Kind.UINT:
            assert isinstance(token.value, int)
            return ast.Literal(values.UInt(token.value), pos=token.pos)
        if token.kind is Kind.STRING:
            return ast.Literal(token.value, pos=token.pos)
        if token.kind is Kind.IDENT:
            return self.identifier(token)
        if token.kind is Kind.PUNCT:
            if token.text == "(":
                node = self.expr()
                self.close(token, ")", "')'")
                return node
            if token.text == "[":
                return ast.ListExpr(tuple(self.items(token, "]")), pos=token.pos)
            if token.text == "{":
                return self.map_literal(token)
            if token.text == "." and self.peek().kind is Kind.IDENT:
                return self.identifier(self.advance())  # '.name' names a root variable
        if token.kind is Kind.QUOTED:
            reason = "a quoted name can only be a field name, after '.' (event.data.`a-b`)"
            raise self.fail(reason, token.pos)
        raise self.fail(f"unexpected {token.describe()}", token.pos)

    def identifier(self, token: Token) -> ast.Node:
        if token.text in _CONSTANTS:
            return ast.Literal(_CONSTANTS[token.text], pos=token.pos)
        name = self.name(token, "an identifier")
        following = self.peek()
        if following.kind is Kind.PUNCT and following.text == "(":
            return self.call(token, None, self.arguments())
        if following.kind is Kind.PUNCT and following.text == "{":
            raise self.fail("message construction is not supported", following.pos)
        if name in functions.TYPE_NAMES:
            return ast.Literal(values.CelType(name), pos=token.pos)
        return ast.Ident(name, pos=token.pos)

    def items(self, opener: Token, closer: str, *, trailing: bool = True) -> list[ast.Node]:
        found: list[ast.Node] = []
        if self.accept(closer):
            return found
        while True:
            found.append(self.expr())
            if not self.accept(","):
                self.close(opener, closer, f"',' or {closer!r}")
                return found
            if trailing and self.accept(closer):
                return found

    def arguments(self) -> list[ast.Node]:
        return self.items(self.advance(), ")", trailing=False)

    def map_literal(self, opener: Token) -> ast.Node:
        entries: list[tuple[ast.Node, ast.Node]] = []
        if not self.accept("}"):
            while True:
                key = self.expr()
                colon = self.peek()
                if not self.accept(":"):
                    reason = f"expected ':' after a map key, got {colon.shown()}"
                    raise self.fail(reason, colon.pos)
                entries.append((key, self.expr()))
                if not self.accept(","):
                    self.close(opener, "}", "',' or '}'")
                    break
                if self.accept("}"):
                    break
        return ast.MapExpr(tuple(entries), pos=opener.pos)

    def call(self, name: Token, target: ast.Node | None, args: list[ast.Node]) -> ast.Node:
        function = name.text
        count = len(args)
        if target is None:
            if function == "has":
                return self.has(name, args)
            if function in functions.MACROS:
                reason = f"{function}() is a macro; call it on a list: items.{function}(x, ...)"
                raise self.fail(reason, name.pos)
            if function not in functions.GLOBAL:
                raise self.fail(f"unknown function '{function}()'", name.pos)
            arity = functions.GLOBAL[function][0]
            label = f"{function}()"
        else:
            if function in functions.MACROS:
                return self.comprehension(name, target, args)
            if function not in functions.MEMBER:
                raise self.fail(f"unknown method '.{function}()'", name.pos)
            arity = functions.MEMBER[function][0]
            label = f"'.{function}()'"
        counts = (arity,) if isinstance(arity, int) else arity
        if count not in counts:
            plural = "argument" if counts == (1,) else "arguments"
            takes = " or ".join(map(str, counts))
            raise self.fail(f"{label} takes {takes} {plural}, got {count}", name.pos)
        last = args[-1] if args else None
        if isinstance(last, ast.Literal) and isinstance(last.value, str):
            problem = functions.validate_literal(function, last.value)
            if problem is not None:
                raise self.fail(problem, last.pos)
        start = name.pos if target is None else target.pos
        return ast.Call(function, tuple(args), target, pos=start)

    def has(self, name: Token, args: list[ast.Node]) -> ast.Node:
        if len(args) != 1:
            raise self.fail(f"has() takes 1 argument, got {len(args)}", name.pos)
        (argument,) = args
        if not isinstance(argument, ast.Select):
            reason = "has() needs a field selection such as has(event.data.field)"
            raise self.fail(reason, argument.pos)
        return ast.Has(argument.operand, argument.field, pos=name.pos)

    def comprehension(self, name: Token, target: ast.Node, args: list[ast.Node]) -> ast.Node:
        macro = name.text
        counts = functions.MACROS[macro]
        if len(args) not in counts:
            wanted = " or ".join(str(count) for count in counts)
            raise self.fail(f"'.{macro}()' takes {wanted} arguments, got {len(args)}", name.pos)
        variable = args[0]
        if not isinstance(variable, ast.Ident):
            reason = f"'.{macro}()' needs a variable name as its first argument"
            raise self.fail(reason, variable.pos)
        transform = args[2] if len(args) == 3 else None
        return ast.Comprehension(macro, target, variable.name, args[1], transform, pos=target.pos)


def _precedence(token: Token) -> int | None:
    if token.kind is Kind.PUNCT or (token.kind is Kind.IDENT and token.text == "in"):
        return PRECEDENCE.get(token.text)
    return None
