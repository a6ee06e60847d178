"""Pieces of the checkpoint hot path: statements compiled once, and handing results back to the
event loop that is waiting for them."""

from __future__ import annotations

import asyncio
import operator
from typing import Any


class Prepared:
    """A Core statement compiled once for the writer's dialect and run straight on the DBAPI
    cursor: the checkpoint path skips per-call statement compilation and result wrapping."""

    __slots__ = ("sql", "names", "_pick")

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positiontup else None
        self._pick = operator.itemgetter(*self.names) if self.names and len(self.names) > 1 else None

    def params(self, values: dict[str, Any]) -> Any:
        if self._pick is not None:
            return self._pick(values)
        return values if self.names is None else (values[self.names[0]],)


def raw_connection(conn: Any) -> Any:
    """The DBAPI connection under a SQLAlchemy connection."""
    return conn.connection.dbapi_connection


def resolve_all(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, result in items:
        if isinstance(result, BaseException):
            resolve(fut, None, result)
        else:
            resolve(fut, result, None)


def resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
