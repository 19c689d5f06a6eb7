"""The expression language of query-builder questions: `days_past_due > 30 and risk_band = "delinquent"`.

Filters, custom columns, summaries and join conditions are written as short expressions, close to
Metabase's own custom-expression editor, and become MBQL clauses. Columns are bare names
(`risk_band`), qualified by a join alias (`Customers.name`), followed through a foreign key
(`customer_id -> name`), or quoted when they are not identifiers (`` `Risk band` ``). Strings are quoted
("delinquent" or 'delinquent'); numbers, `true`, `false` and `null` are literals.

Operators, from loosest to tightest: `or`; `and`; `not`; comparisons `= != < <= > >=`, `in (...)`,
`not in (...)`, `between a and b`, `is [not] null`, `is [not] empty`; `+ -`; `* /`; unary `-`.
Anything else is a function call named like the MBQL clause with `_` for `-`: `sum(amount)`,
`count_where(days_past_due > 0)`, `coalesce(a, b)`, `contains(name, "acme", case_sensitive: false)`
(trailing `name: value` arguments are the clause's options), `case(cond, value, ..., default)`.

`parse` gives a clause tree in the MBQL 5 shape, `[tag, options, *args]`, with column references as
`["ref", {}, qualifier, name, fk]` for the question compiler to resolve. `render` prints a tree back,
with the fewest parentheses that keep its meaning, or returns None when a part has no readable form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from provisioner.mbql.normal import copy_plain

Expr = Any  # a literal (str, int, float, bool, None) or a clause list [tag, {options}, *args]

REF = "ref"

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "empty", "true", "false"})
_COMPARISONS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# Clauses written as operators, and their binding strength when printed (higher binds tighter).
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "compare": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}
_PREDICATES = {
    "is-null": "is null",
    "not-null": "is not null",
    "is-empty": "is empty",
    "not-empty": "is not empty",
}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`|\[[^\[\]]+\])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>->|!=|<>|<=|>=|=|<|>|\+|-|\*|/|\(|\)|,|\.|:)
    """,
    re.VERBOSE,
)


class ExprError(ValueError):
    """An expression that cannot be read; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, quoted, ident, op, end
    text: str
    position: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.lower() in words


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            if char in "\"'`[":
                raise ExprError("this quote is never closed", position)
            raise ExprError(f"unexpected character `{char}`", position)
        if match.lastgroup != "space":
            out.append(_Token(match.lastgroup or "", match.group(0), position))
        position = match.end()
    out.append(_Token("end", "", len(text)))
    return out


def _unquote(token: _Token) -> str:
    body = token.text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def ref(name: str, qualifier: str | None = None, fk: str | None = None) -> list[Any]:
    """An unresolved column reference, as `parse` gives it."""
    return [REF, {}, qualifier, name, fk]


def is_ref(expr: Expr) -> bool:
    return isinstance(expr, list) and len(expr) == 5 and expr[0] == REF


def clause(tag: str, *args: Any, **options: Any) -> list[Any]:
    """`[tag, options, *args]`; options keys written with `_` become MBQL's `-`."""
    return [tag, {k.replace("_", "-"): v for k, v in options.items()}, *args]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def expect(self, text: str, what: str) -> _Token:
        if self.token.kind == "op" and self.token.text == text:
            return self.advance()
        raise self.error(f"expected `{text}` {what}")

    def expect_word(self, word: str, what: str) -> None:
        if not self.token.is_word(word):
            raise self.error(f"expected `{word}` {what}")
        self.advance()

    def error(self, message: str) -> ExprError:
        found = "the end" if self.token.kind == "end" else f"`{self.token.text}`"
        return ExprError(f"{message}, found {found}", self.token.position)

    def parse(self) -> Expr:
        if self.token.kind == "end":
            raise ExprError("the expression is empty", 0)
        expr = self.or_expr()
        if self.token.kind != "end":
            raise self.error("expected an operator or the end of the expression")
        return expr

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.token.is_word("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else clause("or", *items)

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.token.is_word("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else clause("and", *items)

    def not_expr(self) -> Expr:
        if self.token.is_word("not"):
            self.advance()
            return clause("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        token = self.token
        if token.kind == "op" and token.text in _COMPARISONS:
            self.advance()
            return clause(_COMPARISONS[token.text], left, self.additive())
        negated = False
        if token.is_word("not") and self.tokens[self.index + 1].is_word("in"):
            self.advance()
            negated = True
        if self.token.is_word("in"):
            self.advance()
            self.expect("(", "after `in`")
            values = [self.additive()]
            while self.token.kind == "op" and self.token.text == ",":
                self.advance()
                values.append(self.additive())
            self.expect(")", "to close the `in` list")
            return clause("!=" if negated else "=", left, *values)
        if negated:
            raise self.error("expected `in` after `not`")
        if token.is_word("between"):
            self.advance()
            low = self.additive()
            self.expect_word("and", "between the two bounds of `between`")
            return clause("between", left, low, self.additive())
        if token.is_word("is"):
            self.advance()
            negate = False
            if self.token.is_word("not"):
                self.advance()
                negate = True
            if self.token.is_word("null"):
                self.advance()
                return clause("not-null" if negate else "is-null", left)
            if self.token.is_word("empty"):
                self.advance()
                return clause("not-empty" if negate else "is-empty", left)
            raise self.error("expected `null` or `empty` after `is`")
        return left

    def additive(self) -> Expr:
        return self.chain(("+", "-"), self.multiplicative)

    def multiplicative(self) -> Expr:
        return self.chain(("*", "/"), self.unary)

    def chain(self, ops: tuple[str, str], operand: Callable[[], Expr]) -> Expr:
        """Left-associative operators; a run of `+` (or `*`) is one n-ary clause, as Metabase writes it."""
        left = operand()
        chained = False
        while self.token.kind == "op" and self.token.text in ops:
            op = self.advance().text
            right = operand()
            if chained and op in ("+", "*") and left[0] == op:
                left = [*left, right]
            else:
                left = clause(op, left, right)
            chained = True
        return left

    def unary(self) -> Expr:
        if self.token.kind == "op" and self.token.text == "-":
            self.advance()
            operand = self.unary()
            if isinstance(operand, int | float) and not isinstance(operand, bool):
                return -operand
            return clause("*", -1, operand)
        return self.primary()

    def primary(self) -> Expr:
        token = self.token
        if token.kind == "number":
            self.advance()
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "string":
            self.advance()
            return _unquote(token)
        if token.kind == "op" and token.text == "(":
            self.advance()
            inner = self.or_expr()
            self.expect(")", "to close `(`")
            return inner
        if token.kind == "quoted":
            self.advance()
            quoted = self.reference(None, _unquote(token))
            quoted[1] = {"quoted": True}  # never a keyword such as a bare `count`
            return quoted
        if token.kind == "ident":
            word = token.text.lower()
            if word in ("true", "false"):
                self.advance()
                return word == "true"
            if word == "null":
                self.advance()
                return None
            if word in KEYWORDS:
                raise self.error("expected a value")
            self.advance()
            if self.token.kind == "op" and self.token.text == "(":
                return self.call(token)
            if self.token.kind == "op" and self.token.text == ".":
                self.advance()
                name = self.column_name("after `.`")
                return self.reference(token.text, name)
            return self.reference(None, token.text)
        raise self.error("expected a value")

    def column_name(self, where: str) -> str:
        token = self.token
        if token.kind == "quoted":
            self.advance()
            return _unquote(token)
        if token.kind == "ident" and token.text.lower() not in KEYWORDS:
            self.advance()
            return token.text
        raise self.error(f"expected a column name {where}")

    def reference(self, qualifier: str | None, name: str) -> Expr:
        if self.token.kind == "op" and self.token.text == "->":
            self.advance()
            return ref(self.column_name("after `->`"), qualifier, fk=name)
        return ref(name, qualifier)

    def call(self, name: _Token) -> Expr:
        self.expect("(", "")
        args: list[Expr] = []
        options: dict[str, Any] = {}
        if not (self.token.kind == "op" and self.token.text == ")"):
            while True:
                following = self.tokens[self.index + 1]
                if self.token.kind == "ident" and following.kind == "op" and following.text == ":":
                    key = self.advance().text
                    self.advance()
                    options[key.replace("_", "-")] = self.or_expr()
                elif options:
                    raise self.error("options (`name: value`) must come after the other arguments")
                else:
                    args.append(self.or_expr())
                if self.token.kind == "op" and self.token.text == ",":
                    self.advance()
                    continue
                break
        self.expect(")", f"to close `{name.text}(`")
        tag = name.text.lower().replace("_", "-")
        if tag in ("case", "if"):
            if len(args) < 2:
                raise ExprError(f"`{name.text}` needs a condition and a value", name.position)
            pairs = [[args[i], args[i + 1]] for i in range(0, len(args) - 1, 2)]
            return [tag, options, pairs, *([args[-1]] if len(args) % 2 else [])]
        return [tag, options, *args]


def parse(text: str) -> Expr:
    """The clause tree of `text`; raises ExprError naming the character offset of the problem."""
    # A copy of the tree kept for the text: every question is compiled twice (checked alone, then against
    # the database's metadata), and dashboards repeat their expressions.
    return copy_plain(_parse(text))


@lru_cache(maxsize=4096)
def _parse(text: str) -> Expr:
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Printing.

RefRenderer = Callable[[list[Any]], "str | None"]


def quote_name(name: str) -> str:
    """A column name as written in an expression: bare when it is an identifier, else in backticks."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in KEYWORDS:
        return name
    return f"`{name}`"


def render_ref(expr: list[Any]) -> str:
    """The text of an unresolved reference from `parse`."""
    _, _, qualifier, name, fk = expr
    text = quote_name(name)
    if fk is not None:
        text = f"{quote_name(fk)} -> {text}"
    return f"{quote_name(qualifier)}.{text}" if qualifier else text


def _literal(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None


class _Printer:
    def __init__(self, render_reference: RefRenderer | None) -> None:
        self.render_reference = render_reference

    def render(self, expr: Expr, parent: int = 0) -> str | None:
        if not isinstance(expr, list):
            return _literal(expr)
        if not expr or not isinstance(expr[0], str):
            return None
        tag = expr[0]
        options = expr[1] if len(expr) > 1 and isinstance(expr[1], dict) else {}
        args = expr[2:] if len(expr) > 1 and isinstance(expr[1], dict) else expr[1:]
        if tag == REF:
            return render_ref(expr)
        if tag in ("field", "expression", "aggregation"):
            return self.render_reference(expr) if self.render_reference is not None else None
        if tag in ("and", "or") and not options and len(args) >= 2:
            parts = [self.render(a, _PRECEDENCE[tag] + 1) for a in args]
            if not _ok(parts):
                return None
            return self._wrap(f" {tag} ".join(_all(parts)), _PRECEDENCE[tag], parent)
        if tag == "not" and not options and len(args) == 1:
            inner = self.render(args[0], _PRECEDENCE["not"])
            return self._wrap(f"not {inner}", _PRECEDENCE["not"], parent) if inner is not None else None
        if tag in _COMPARISONS.values() and not options and len(args) >= 2:
            return self._comparison(tag, args, parent)
        if tag == "between" and not options and len(args) == 3:
            parts = [self.render(a, _PRECEDENCE["compare"] + 1) for a in args]
            if not _ok(parts):
                return None
            text = f"{parts[0]} between {parts[1]} and {parts[2]}"
            return self._wrap(text, _PRECEDENCE["compare"], parent)
        if tag in _PREDICATES and not options and len(args) == 1:
            inner = self.render(args[0], _PRECEDENCE["compare"] + 1)
            if inner is None:
                return None
            return self._wrap(f"{inner} {_PREDICATES[tag]}", _PRECEDENCE["compare"], parent)
        if tag in ("+", "-", "*", "/") and not options and len(args) >= 2:
            strength = _PRECEDENCE[tag]
            # The tree must read back identically: a left operand of the same n-ary operator, and every
            # right operand of equal strength, keep their parentheses.
            nested_same = tag in ("+", "*") and isinstance(args[0], list) and args[0][:1] == [tag]
            first = self.render(args[0], strength + 1 if nested_same else strength)
            rest = [self.render(a, strength + 1) for a in args[1:]]
            if first is None or not _ok(rest):
                return None
            return self._wrap(f" {tag} ".join([first, *_all(rest)]), strength, parent)
        return self._call(tag, options, args)

    def _comparison(self, tag: str, args: list[Any], parent: int) -> str | None:
        strength = _PRECEDENCE["compare"]
        parts = [self.render(a, strength + 1) for a in args]
        if not _ok(parts):
            return None
        if len(args) == 2:
            text = f"{parts[0]} {tag} {parts[1]}"
        elif tag in ("=", "!="):
            word = "in" if tag == "=" else "not in"
            text = f"{parts[0]} {word} ({', '.join(_all(parts[1:]))})"
        else:
            return None
        return self._wrap(text, strength, parent)

    def _call(self, tag: str, options: dict[str, Any], args: list[Any]) -> str | None:
        name = tag.replace("-", "_")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in KEYWORDS:
            return None
        if tag in ("case", "if"):
            if not args or not isinstance(args[0], list) or len(args) > 2:
                return None
            flat: list[Any] = []
            for pair in args[0]:
                if not isinstance(pair, list) or len(pair) != 2:
                    return None
                flat += pair
            args = [*flat, *args[1:]]
        parts = [self.render(a) for a in args]
        opts = [f"{k.replace('-', '_')}: {_literal(v)}" for k, v in options.items()]
        if not _ok(parts) or any(
            not re.fullmatch(r"[a-z][a-z0-9-]*", k) or _literal(v) is None for k, v in options.items()
        ):
            return None
        return f"{name}({', '.join([*_all(parts), *opts])})"

    @staticmethod
    def _wrap(text: str, strength: int, parent: int) -> str:
        return f"({text})" if strength < parent else text


def _ok(parts: list[str | None]) -> bool:
    return all(p is not None for p in parts)


def _all(parts: list[str | None]) -> list[str]:
    return [p for p in parts if p is not None]


def render(expr: Expr, render_reference: RefRenderer | None = None) -> str | None:
    """`expr` as text `parse` reads back to the same tree, or None when a part has no readable form.

    `render_reference` prints resolved references (`field`, `expression`, `aggregation` clauses);
    returning None from it makes the whole expression unprintable.
    """
    return _Printer(render_reference).render(expr)
