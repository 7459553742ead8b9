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

from sqlalchemy import ColumnElement, Integer, String, bindparam, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class _Position(FunctionElement[int]):
    """Where `needle` first starts in `column` (1-based), 0 where it does not occur."""

    type = Integer()
    inherit_cache = True


def contains_text(column: Any, needle: str) -> ColumnElement[bool]:
    """`column` contains `needle` as it is (see the module's docstring); NULL where the column is NULL."""
    if not needle:
        raise ValueError("contains_text needs a needle: every text contains the empty one")
    position = _Position(column, bindparam(None, needle, type_=String(), unique=True))
    return position > literal_column("0", Integer())


@compiles(_Position, "postgresql")
def _position_postgresql(element: _Position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_Position)
def _position(element: _Position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"
