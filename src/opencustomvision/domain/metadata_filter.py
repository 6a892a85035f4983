"""The ``$filter`` expression of GetImages / GetImageCount, for image metadata.

An OData-style subset: ``key eq 'value'``, ``key ne 'value'``, joined with
``and`` / ``or`` and grouped with parentheses, optionally prefixed with
``metadata=`` as in the API documentation's example::

    metadata=key1 eq 'value1' and (key2 ne 'value2' or 'odd key' eq 'it''s')

Grammar (``and`` binds tighter than ``or``; keywords are case-insensitive)::

    filter     := ["metadata" "="] or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := primary ("and" primary)*
    primary    := "(" or_expr ")" | comparison
    comparison := key ("eq" | "ne") string
    key        := identifier | string
    identifier := (letter | digit | "_" | "-" | ".")+
    string     := "'" (any character, with '' for one quote)* "'"

This module knows nothing about storage; ``matches`` is the reference
meaning that the SQL translation must reproduce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "And",
    "Comparison",
    "Expr",
    "MAX_FILTER_LENGTH",
    "MAX_NESTING_DEPTH",
    "MetadataFilterError",
    "Or",
    "matches",
    "parse_metadata_filter",
]

MAX_FILTER_LENGTH = 2000
MAX_NESTING_DEPTH = 32

ComparisonOperator: TypeAlias = Literal["eq", "ne"]


@dataclass(frozen=True)
class Comparison:
    key: str
    op: ComparisonOperator
    value: str


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


Expr: TypeAlias = Comparison | And | Or


class MetadataFilterError(ValueError):
    """A ``$filter`` text that is not a valid metadata filter expression."""


def parse_metadata_filter(text: str) -> Expr:
    """Parse ``text`` into an expression tree, or raise MetadataFilterError."""
    if not isinstance(text, str):
        raise MetadataFilterError(f"the filter must be text, not {type(text).__name__}")
    if len(text) > MAX_FILTER_LENGTH:
        raise MetadataFilterError(f"the filter is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}")
    tokens = _tokenize(text)
    return _Parser(tokens).parse()


def matches(expr: Expr, metadata: Mapping[str, str]) -> bool:
    """Whether an image with ``metadata`` satisfies ``expr``.

    Keys and values compare exactly (case-sensitive). ``ne`` is true when the
    key is absent: it is the plain negation of ``eq``.
    """
    if isinstance(expr, Comparison):
        is_equal = expr.key in metadata and metadata[expr.key] == expr.value
        return is_equal if expr.op == "eq" else not is_equal
    if isinstance(expr, And):
        return matches(expr.left, metadata) and matches(expr.right, metadata)
    return matches(expr.left, metadata) or matches(expr.right, metadata)


# ---------------------------------------------------------------------------
# Tokens

_TokenKind: TypeAlias = Literal["word", "string", "(", ")", "end"]


@dataclass(frozen=True)
class _Token:
    kind: _TokenKind
    text: str
    position: int  # 0-based offset into the original filter text, for messages


_KEYWORDS = frozenset({"eq", "ne", "and", "or"})

# The documentation's example writes "metadata=key1 eq 'value1' ...".
_METADATA_PREFIX = re.compile(r"\s*metadata\s*=", re.IGNORECASE)


def _is_identifier_character(character: str) -> bool:
    return character.isalnum() or character in "_-."


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    prefix = _METADATA_PREFIX.match(text)
    position = prefix.end() if prefix else 0
    while position < len(text):
        character = text[position]
        if character.isspace():
            position += 1
        elif character in "()":
            tokens.append(_Token("(" if character == "(" else ")", character, position))
            position += 1
        elif character == "'":
            value, end = _read_quoted(text, position)
            tokens.append(_Token("string", value, position))
            position = end
        elif _is_identifier_character(character):
            end = position
            while end < len(text) and _is_identifier_character(text[end]):
                end += 1
            tokens.append(_Token("word", text[position:end], position))
            position = end
        else:
            raise MetadataFilterError(f"unexpected character {character!r} at position {position}")
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_quoted(text: str, opening_quote: int) -> tuple[str, int]:
    """Read an OData string starting at a quote; return its value and the index after it."""
    pieces: list[str] = []
    position = opening_quote + 1
    while True:
        closing_quote = text.find("'", position)
        if closing_quote == -1:
            raise MetadataFilterError(f"the quoted string starting at position {opening_quote} is never closed")
        pieces.append(text[position:closing_quote])
        if text.startswith("''", closing_quote):
            pieces.append("'")
            position = closing_quote + 2
        else:
            return "".join(pieces), closing_quote + 1


# ---------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive descent over the token list; recursion is bounded by MAX_NESTING_DEPTH."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def parse(self) -> Expr:
        if self._peek().kind == "end":
            raise MetadataFilterError("the filter is empty; expected e.g. key eq 'value'")
        expression = self._or_expression(depth=0)
        token = self._peek()
        if token.kind != "end":
            raise MetadataFilterError(
                f"unexpected {_describe(token)} at position {token.position}; expected 'and', 'or' or the end"
            )
        return expression

    def _or_expression(self, *, depth: int) -> Expr:
        expression = self._and_expression(depth=depth)
        while self._is_keyword(self._peek(), "or"):
            self._advance()
            expression = Or(expression, self._and_expression(depth=depth))
        return expression

    def _and_expression(self, *, depth: int) -> Expr:
        expression = self._primary(depth=depth)
        while self._is_keyword(self._peek(), "and"):
            self._advance()
            expression = And(expression, self._primary(depth=depth))
        return expression

    def _primary(self, *, depth: int) -> Expr:
        token = self._peek()
        if token.kind == "(":
            if depth >= MAX_NESTING_DEPTH:
                raise MetadataFilterError(
                    f"parentheses nest deeper than {MAX_NESTING_DEPTH} levels at position {token.position}"
                )
            self._advance()
            expression = self._or_expression(depth=depth + 1)
            closing = self._peek()
            if closing.kind != ")":
                raise MetadataFilterError(
                    f"expected ')' to close the '(' at position {token.position}, "
                    f"found {_describe(closing)} at position {closing.position}"
                )
            self._advance()
            return expression
        return self._comparison()

    def _comparison(self) -> Comparison:
        key_token = self._advance()
        if key_token.kind == "word" and key_token.text.lower() in _KEYWORDS:
            raise MetadataFilterError(
                f"expected a metadata key at position {key_token.position}, found the operator "
                f"'{key_token.text}'; quote a key that is spelled like an operator, e.g. '{key_token.text}' eq 'value'"
            )
        if key_token.kind not in ("word", "string"):
            raise MetadataFilterError(
                f"expected a metadata key at position {key_token.position}, found {_describe(key_token)}"
            )
        operator_token = self._advance()
        operator = operator_token.text.lower() if operator_token.kind == "word" else ""
        if operator not in ("eq", "ne"):
            raise MetadataFilterError(
                f"expected 'eq' or 'ne' after the key {key_token.text!r} at position {operator_token.position}, "
                f"found {_describe(operator_token)}"
            )
        value_token = self._advance()
        if value_token.kind != "string":
            raise MetadataFilterError(
                f"expected a single-quoted value at position {value_token.position}, found {_describe(value_token)}; "
                f"write e.g. {key_token.text} {operator} 'value'"
            )
        return Comparison(key=key_token.text, op="eq" if operator == "eq" else "ne", value=value_token.text)

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":  # "end" stays put so callers can report it
            self._index += 1
        return token

    @staticmethod
    def _is_keyword(token: _Token, keyword: str) -> bool:
        return token.kind == "word" and token.text.lower() == keyword


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "string":
        return f"the string '{token.text}'"
    return f"'{token.text}'"
