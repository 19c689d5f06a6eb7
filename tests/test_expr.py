"""The expression language of query-builder questions: what it reads, what it prints, what it refuses."""

from __future__ import annotations

import pytest

from provisioner.spec.expr import ExprError, parse, ref, render


def _ref(name: str, qualifier: str | None = None, fk: str | None = None) -> list[object]:
    return ref(name, qualifier, fk)


def _quoted(name: str) -> list[object]:
    """A name in backticks or brackets: never a keyword (a backticked `count` is a column)."""
    return ["ref", {"quoted": True}, None, name, None]


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("days_past_due > 30", [">", {}, _ref("days_past_due"), 30]),
        ('risk_band = "delinquent"', ["=", {}, _ref("risk_band"), "delinquent"]),
        ("risk_band in ('a', 'b')", ["=", {}, _ref("risk_band"), "a", "b"]),
        ('band not in ("a", "b")', ["!=", {}, _ref("band"), "a", "b"]),
        ("x between 1 and 10", ["between", {}, _ref("x"), 1, 10]),
        ("x is null", ["is-null", {}, _ref("x")]),
        ("x is not empty", ["not-empty", {}, _ref("x")]),
        (
            "a > 1 and b < 2 or c",
            ["or", {}, ["and", {}, [">", {}, _ref("a"), 1], ["<", {}, _ref("b"), 2]], _ref("c")],
        ),
        ("not a", ["not", {}, _ref("a")]),
        ("a + b + c", ["+", {}, _ref("a"), _ref("b"), _ref("c")]),
        ("a - b - c", ["-", {}, ["-", {}, _ref("a"), _ref("b")], _ref("c")]),
        ("-2.5 * x", ["*", {}, -2.5, _ref("x")]),
        ("sum(amount)", ["sum", {}, _ref("amount")]),
        ("count()", ["count", {}]),
        ("count_where(x > 0)", ["count-where", {}, [">", {}, _ref("x"), 0]]),
        (
            'contains(name, "acme", case_sensitive: false)',
            ["contains", {"case-sensitive": False}, _ref("name"), "acme"],
        ),
        ('case(a > 1, "big", "small")', ["case", {}, [[[">", {}, _ref("a"), 1], "big"]], "small"]),
        ("Customers.name", _ref("name", "Customers")),
        ("customer_id -> name", _ref("name", fk="customer_id")),
        ("`Risk band` = true", ["=", {}, _quoted("Risk band"), True]),
        ("[Risk band] = null", ["=", {}, _quoted("Risk band"), None]),
        ('x = "say \\"hi\\""', ["=", {}, _ref("x"), 'say "hi"']),
    ],
)
def test_reads_each_form_as_the_mbql_shaped_tree(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    "text",
    [
        "a - (b - c)",
        "(a + b) + c",
        "(a + b) * c",
        "a * b * c / d",
        "not (a > 1 or b < 2)",
        'x in ("a", "b") and y between 1 and 2',
        'time_interval(d, -30, "day", include_current: true)',
        'case(a > 1, "big", a > 0, "small", "none")',
        "percentile(x, 0.9)",
        "a / -2",
        '`weird name` = "it\\\\s"',
    ],
)
def test_printing_reads_back_to_the_same_tree(text: str) -> None:
    tree = parse(text)
    printed = render(tree)
    assert printed is not None
    assert parse(printed) == tree


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("a >", 3, "expected a value, found the end"),
        ("a > > b", 4, "expected a value, found `>`"),
        ('"abc', 0, "this quote is never closed"),
        ("sum(a", 5, "expected `)` to close `sum(`"),
        ("a in b", 5, "expected `(` after `in`"),
        ("x between 1", 11, "expected `and` between the two bounds"),
        ("a is maybe", 5, "expected `null` or `empty` after `is`"),
        ("", 0, "the expression is empty"),
        ("f(a: 1, 2)", 8, "options (`name: value`) must come after"),
        ("a = b c", 6, "expected an operator or the end"),
        ("a # b", 2, "unexpected character `#`"),
        ("case(a)", 0, "`case` needs a condition and a value"),
    ],
)
def test_an_unreadable_expression_names_the_character(text: str, position: int, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        parse(text)
    assert caught.value.position == position
    assert message in caught.value.message


def test_a_clause_without_words_is_not_printed() -> None:
    assert render(["field", {"temporal-unit": "month"}, 12]) is None
    assert render(["contains", {"weird": object()}, "x", "y"]) is None
    assert render(["some-clause-with-options", {"a-b": 1}, 1]) == "some_clause_with_options(1, a_b: 1)"
