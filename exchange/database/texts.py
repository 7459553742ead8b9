"""`column` holds `needle` somewhere, matched exactly, with a statement SQLite keeps prepared.

SQLite re-prepares a statement on every run whose LIKE pattern is a bound parameter: the value
might change the plan, so a new binding marks the statement stale (sqlite3_prepare_v2's
documentation). A partner's page statement carries its audience test at every level of the
reference closure, and re-preparing all of it cost each page about 0.6 ms, more than running it.
`instr` (SQLite) and `strpos` (PostgreSQL) take the needle as a plain value: no re-prepare, no
wildcards (`%` and `_` in the needle are characters, not patterns) and no ASCII case folding,
which SQLite's LIKE does.
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
