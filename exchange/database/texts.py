"""`column` holds `needle` somewhere, matched exactly.

A partner's audience test (`,slug,` in the version's audience list) used to be `LIKE '%,slug,%'`:
SQLite's LIKE folds ASCII case and reads `%` and `_` as wildcards, where the gate compares slugs
exactly; and SQLite marks a statement whose LIKE pattern is a bound parameter for re-preparing at
each new binding (sqlite3_prepare_v2's documentation), the whole reference closure with it.
`instr` (SQLite) and `strpos` (PostgreSQL) take the needle as a plain value: no wildcards, no case
folding, nothing to re-prepare.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal


class ContainsText(ColumnElement[bool]):
    """True where `column` contains `needle` (NULL where the column is NULL)."""

    __visit_name__ = "contains_text"
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own attribute, read from the class)
        ("column", InternalTraversal.dp_clauseelement),
        ("needle", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], needle: str) -> None:
        if not needle:
            raise ValueError("contains_text needs a needle: every text contains the empty one")
        self.column = column
        self.needle = bindparam(None, needle, type_=String(), unique=True)


def contains_text(column: Any, needle: str) -> ColumnElement[bool]:
    """`column` contains `needle` as it is (see the module's docstring)."""
    return ContainsText(column, needle)


@compiles(ContainsText, "postgresql")
def _contains_postgresql(element: ContainsText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(strpos({compiler.process(element.column, **kw)}, {compiler.process(element.needle, **kw)}) > 0)"


@compiles(ContainsText)
def _contains(element: ContainsText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(instr({compiler.process(element.column, **kw)}, {compiler.process(element.needle, **kw)}) > 0)"
