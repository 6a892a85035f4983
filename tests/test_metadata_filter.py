from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencustomvision.domain.metadata_filter import (
    MAX_FILTER_LENGTH,
    MAX_NESTING_DEPTH,
    And,
    Comparison,
    MetadataFilterError,
    Or,
    matches,
    parse_metadata_filter,
)

A = Comparison("a", "eq", "1")
B = Comparison("b", "eq", "2")
C = Comparison("c", "eq", "3")


def test_single_comparison() -> None:
    assert parse_metadata_filter("key1 eq 'value1'") == Comparison("key1", "eq", "value1")
    assert parse_metadata_filter("key1 ne 'value1'") == Comparison("key1", "ne", "value1")


def test_documented_example_with_metadata_prefix() -> None:
    assert parse_metadata_filter("metadata=key1 eq 'value1' and key2 ne 'value2'") == And(
        Comparison("key1", "eq", "value1"), Comparison("key2", "ne", "value2")
    )
    assert parse_metadata_filter("  MetaData = a eq '1'") == A


def test_and_binds_tighter_than_or() -> None:
    assert parse_metadata_filter("a eq '1' or b eq '2' and c eq '3'") == Or(A, And(B, C))
    assert parse_metadata_filter("a eq '1' and b eq '2' or c eq '3'") == Or(And(A, B), C)


def test_chains_associate_to_the_left() -> None:
    assert parse_metadata_filter("a eq '1' or b eq '2' or c eq '3'") == Or(Or(A, B), C)
    assert parse_metadata_filter("a eq '1' and b eq '2' and c eq '3'") == And(And(A, B), C)


def test_parentheses_override_precedence() -> None:
    assert parse_metadata_filter("(a eq '1' or b eq '2') and c eq '3'") == And(Or(A, B), C)
    assert parse_metadata_filter("((a eq '1'))") == A


def test_operators_are_case_insensitive_but_keys_and_values_are_not() -> None:
    parsed = parse_metadata_filter("Key EQ 'Value' AND k2 Ne 'x' oR k3 eQ 'y'")
    assert parsed == Or(And(Comparison("Key", "eq", "Value"), Comparison("k2", "ne", "x")), Comparison("k3", "eq", "y"))


def test_whitespace_is_flexible() -> None:
    assert parse_metadata_filter("(a eq'1')and(b eq'2')") == And(A, B)
    assert parse_metadata_filter("\t a \n eq \r\n '1' \t") == A


def test_quoted_keys_and_escaped_quotes() -> None:
    assert parse_metadata_filter("'my key' eq 'it''s'") == Comparison("my key", "eq", "it's")
    assert parse_metadata_filter("'and' eq ''''") == Comparison("and", "eq", "'")
    assert parse_metadata_filter("k eq ''") == Comparison("k", "eq", "")
    assert parse_metadata_filter("k eq 'a''''b'") == Comparison("k", "eq", "a''b")
    assert parse_metadata_filter("k eq ' spaced  (and) or '") == Comparison("k", "eq", " spaced  (and) or ")


def test_bare_keys_allow_letters_digits_underscore_dash_dot() -> None:
    assert parse_metadata_filter("camera.model_v-2 eq 'x'") == Comparison("camera.model_v-2", "eq", "x")
    assert parse_metadata_filter("größe eq 'x'") == Comparison("größe", "eq", "x")


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("metadata=", "empty"),
        ("a gt '1'", "'eq' or 'ne'"),
        ("a == '1'", "unexpected character"),
        ("a eq 1", "single-quoted value"),
        ("a eq value", "single-quoted value"),
        ("a eq 'unterminated", "never closed"),
        ("a eq 'x''", "never closed"),
        ("a eq '1' b eq '2'", "expected 'and', 'or' or the end"),
        ("a eq '1' and", "expected a metadata key"),
        ("a eq '1' or or b eq '2'", "operator 'or'"),
        ("and eq '1'", "quote a key"),
        ("(a eq '1'", "expected ')'"),
        ("a eq '1')", "unexpected ')'"),
        ("()", "expected a metadata key"),
        ("a eq", "single-quoted value"),
        ("a", "'eq' or 'ne'"),
        ("not a eq '1'", "'eq' or 'ne'"),
        ("a eq '1' xor b eq '2'", "expected 'and', 'or' or the end"),
        ("a eq '1';", "unexpected character ';'"),
    ],
)
def test_invalid_filters_are_refused_with_a_helpful_message(text: str, message_part: str) -> None:
    with pytest.raises(MetadataFilterError) as raised:
        parse_metadata_filter(text)
    assert message_part in str(raised.value)


def test_length_limit() -> None:
    value = "x" * (MAX_FILTER_LENGTH - len("k eq ''"))
    assert parse_metadata_filter(f"k eq '{value}'") == Comparison("k", "eq", value)
    with pytest.raises(MetadataFilterError, match="limit"):
        parse_metadata_filter(f"k eq '{value}x'")


def test_nesting_limit() -> None:
    def nested(depth: int) -> str:
        return "(" * depth + "a eq '1'" + ")" * depth

    assert parse_metadata_filter(nested(MAX_NESTING_DEPTH)) == A
    with pytest.raises(MetadataFilterError, match="deeper than"):
        parse_metadata_filter(nested(MAX_NESTING_DEPTH + 1))


def test_longest_possible_chain_parses_and_evaluates() -> None:
    text = " or ".join(["a eq ''"] * (MAX_FILTER_LENGTH // len("a eq '' or ")))
    expression = parse_metadata_filter(text)
    assert matches(expression, {"a": ""}) is True
    assert matches(expression, {}) is False


def test_non_text_input_is_refused() -> None:
    with pytest.raises(MetadataFilterError):
        parse_metadata_filter(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# matches


@pytest.mark.parametrize(
    ("metadata", "eq_result", "ne_result"),
    [
        ({"k": "v"}, True, False),
        ({"k": "other"}, False, True),
        ({"k": "V"}, False, True),  # values compare case-sensitively
        ({"K": "v"}, False, True),  # and so do keys
        ({}, False, True),  # ne is true when the key is absent
        ({"other": "v"}, False, True),
    ],
)
def test_matches_comparison(metadata: dict[str, str], eq_result: bool, ne_result: bool) -> None:
    assert matches(Comparison("k", "eq", "v"), metadata) is eq_result
    assert matches(Comparison("k", "ne", "v"), metadata) is ne_result


@pytest.mark.parametrize(("a_holds", "b_holds"), list(itertools.product([False, True], repeat=2)))
def test_matches_and_or_truth_tables(a_holds: bool, b_holds: bool) -> None:
    metadata = {"a": "1" if a_holds else "no", "b": "2" if b_holds else "no"}
    assert matches(And(A, B), metadata) is (a_holds and b_holds)
    assert matches(Or(A, B), metadata) is (a_holds or b_holds)


def test_matches_on_parsed_documented_example() -> None:
    expression = parse_metadata_filter("metadata=key1 eq 'value1' and key2 ne 'value2'")
    assert matches(expression, {"key1": "value1"}) is True
    assert matches(expression, {"key1": "value1", "key2": "other"}) is True
    assert matches(expression, {"key1": "value1", "key2": "value2"}) is False
    assert matches(expression, {"key2": "other"}) is False


def test_matches_respects_precedence() -> None:
    expression = parse_metadata_filter("a eq '1' or b eq '2' and c eq '3'")
    assert matches(expression, {"a": "1"}) is True
    assert matches(expression, {"b": "2"}) is False
    assert matches(expression, {"b": "2", "c": "3"}) is True
    grouped = parse_metadata_filter("(a eq '1' or b eq '2') and c eq '3'")
    assert matches(grouped, {"a": "1"}) is False


# ---------------------------------------------------------------------------
# Properties

_filter_alphabet = st.sampled_from(list("abkK_-.() '=\t\n;\"\\é0") + ["eq", "ne", "and", "or", "metadata=", "''"])


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_only_ever_raises_metadata_filter_error(text: str) -> None:
    try:
        parse_metadata_filter(text)
    except MetadataFilterError:
        pass


@settings(max_examples=1000)
@given(st.lists(_filter_alphabet, max_size=40).map(" ".join))
def test_filter_like_text_only_ever_raises_metadata_filter_error(text: str) -> None:
    try:
        expression = parse_metadata_filter(text)
    except MetadataFilterError:
        return
    matches(expression, {"a": "b"})


_keys = st.text(min_size=1, max_size=8)
_values = st.text(max_size=8)
_comparisons = st.builds(Comparison, key=_keys, op=st.sampled_from(["eq", "ne"]), value=_values)
_expressions = st.recursive(
    _comparisons,
    lambda children: st.one_of(st.builds(And, children, children), st.builds(Or, children, children)),
    max_leaves=12,
)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render(expression: And | Or | Comparison) -> str:
    """Write an expression fully parenthesised, so the parse must give it back exactly."""
    if isinstance(expression, Comparison):
        return f"{_quote(expression.key)} {expression.op} {_quote(expression.value)}"
    operator = "and" if isinstance(expression, And) else "or"
    return f"({_render(expression.left)}) {operator} ({_render(expression.right)})"


@settings(max_examples=300)
@given(_expressions)
def test_rendered_expressions_parse_back_to_themselves(expression: And | Or | Comparison) -> None:
    assert parse_metadata_filter(_render(expression)) == expression
