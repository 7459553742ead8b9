"""`column IN (texts)` with the texts bound as one parameter, on every backend.

An ordinary `in_()` with a list binds it as an "expanding" parameter: SQLAlchemy renders one
placeholder per element into the SQL on every execution, and the driver adapts each. A partner's
page statement repeats its agreement's type list at every level of the reference closure (seven
lists, 77 parameters for eleven types), which cost every page that rendering. Here the list is a
single value: an array compared with `= ANY` on PostgreSQL, a JSON array read by `json_each`
on SQLite, and the statement text stays the same whatever the list holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import Boolean, ColumnElement, String, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine


class TextList(TypeDecorator[Sequence[str]]):
    """A list of texts as one bound value: a text array on PostgreSQL, a JSON array elsewhere."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return cast(TypeEngine[Any], dialect.type_descriptor(ARRAY(String())))
        return cast(TypeEngine[Any], dialect.type_descriptor(String()))

    def process_bind_param(self, value: Sequence[str] | None, dialect: Any) -> Any:
        if value is None:
            return None
        texts = [str(v) for v in value]
        return texts if dialect.name == "postgresql" else orjson.dumps(texts).decode()


class OneOf(ColumnElement[bool]):
    """True where `column` equals one of `texts` (SQL's IN, NULL where the column is NULL).

    The texts are a bound parameter of the cached statement (its cache key carries them), so two
    statements that differ only in their lists share one compiled form and each runs with its own.
    """

    __visit_name__ = "one_of"
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own attribute, read from the class)
        ("column", InternalTraversal.dp_clauseelement),
        ("texts", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], texts: Iterable[str]) -> None:
        self.column = column
        self.texts = bindparam(None, list(texts), type_=TextList(), unique=True)


def one_of(column: Any, texts: Iterable[str]) -> ColumnElement[bool]:
    """`column IN texts`, the texts bound as one parameter (see the module's docstring)."""
    return OneOf(column, texts)


@compiles(OneOf, "postgresql")
def _one_of_postgresql(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.column, **kw)} = ANY ({compiler.process(element.texts, **kw)}))"


@compiles(OneOf)
def _one_of(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, texts = compiler.process(element.column, **kw), compiler.process(element.texts, **kw)
    return f"({column} IN (SELECT value FROM json_each({texts})))"
