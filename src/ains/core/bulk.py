"""Many new rows of one table in one statement: new tasks, trust records, events and webhook deliveries.

On PostgreSQL the rows travel as one JSON array, which the database turns back into rows
(`jsonb_to_recordset`): the statement's text and its one parameter are the same whatever the number of rows, so
it is prepared once, and a hundred rows cost one pydantic-core serialisation. An executemany (SQLAlchemy sends
it as one multi-row VALUES per batch) binds every value of every row in Python and prepares a new statement for
every new batch size; one array parameter per column costs asyncpg an abstract-class check per value. A
hundred new tasks: 5.1-5.8 ms of CPU as an executemany, 4.2-4.3 ms as arrays, 3.9 ms as JSON (benchmarks/PROFILE.md).
SQLite gets the executemany.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import JSON, Executable, Table, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from ains.core.database import UTCDateTime, dialect_name

_POSTGRESQL = postgresql.asyncpg.dialect()


class BulkInsert:
    """Inserts rows (dicts by column name, every row with the same keys) into `table`, in their order: a serial
    id follows it. `only_if` (PostgreSQL SQL about the row's columns as `v.<name>`) keeps a row only when it
    holds; the SQLite statement `sqlite` must then do the same (default: a plain INSERT)."""

    def __init__(self, table: Table, *, only_if: str | None = None, sqlite: Executable | None = None) -> None:
        if only_if is not None and sqlite is None:
            raise ValueError("a filtered BulkInsert needs its SQLite statement too")
        self.table = table
        self.only_if = only_if
        self.sqlite = sqlite if sqlite is not None else insert(table)
        self._statements: dict[tuple[str, ...], TextClause] = {}
        self._times = [column.name for column in table.columns if isinstance(column.type, UTCDateTime)]

    async def run(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if dialect_name(session) != "postgresql":
            await session.execute(self.sqlite, list(rows))
            return
        await session.execute(self.statement(tuple(rows[0])), {"rows": self.parameter(rows)})

    def statement(self, names: tuple[str, ...]) -> TextClause:
        """PostgreSQL's INSERT of rows with these keys, its rows in the parameter :rows."""
        statement = self._statements.get(names)
        if statement is None:
            statement = self._statements[names] = self._build(names)
        return statement

    def parameter(self, rows: Sequence[dict[str, Any]]) -> str:
        """The rows as PostgreSQL's statement takes them in :rows."""
        return _json_text(self._zoned(rows))

    def _zoned(self, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        """The rows with every naive datetime made UTC (what UTCDateTime does), so no session time zone applies."""
        naive = [name for name in self._times if name in rows[0] and any(_is_naive(row[name]) for row in rows)]
        if not naive:
            return rows
        return [row | {name: _utc(row[name]) for name in naive} for row in rows]

    def _build(self, names: tuple[str, ...]) -> TextClause:
        return text(self.sql(names, rows=":rows", only_if=self.only_if))

    def sql(self, names: tuple[str, ...], *, rows: str, only_if: str | None = None) -> str:
        """PostgreSQL's INSERT of rows with these keys as SQL text, the rows' JSON text in the parameter `rows`
        (`:rows` for SQLAlchemy, `$n` for the driver), keeping a row only when `only_if` holds."""
        quote = _POSTGRESQL.identifier_preparer.quote
        definitions, picks = [], []
        for name in names:
            column = self.table.c[name]
            definitions.append(f"{quote(name)} {column.type.compile(dialect=_POSTGRESQL)}")
            # A JSON column's None is JSON null, as SQLAlchemy's JSON type writes it; the record makes it NULL.
            pick = f"v.{quote(name)}"
            picks.append(f"COALESCE({pick}, 'null'::jsonb)" if isinstance(column.type, JSON) else pick)
        columns = ", ".join(quote(name) for name in names)
        where = f" WHERE {only_if}" if only_if else ""
        return (
            f"INSERT INTO {quote(self.table.name)} ({columns}) SELECT {', '.join(picks)}"
            f" FROM ROWS FROM (jsonb_to_recordset(CAST({rows} AS JSONB)) AS ({', '.join(definitions)}))"
            f" WITH ORDINALITY AS v({columns}, row_number){where} ORDER BY v.row_number"
        )


def _json_text(value: Any) -> str:
    """JSON text of the rows. NaN and infinities stay as json.dumps writes them, so PostgreSQL refuses them as it
    always did."""
    try:
        return to_json(value, inf_nan_mode="constants").decode()
    except PydanticSerializationError:  # a lone surrogate, say: json.dumps writes it and PostgreSQL refuses it, as
        return json.dumps(value)  # before; a value JSON can't hold raises TypeError here, as SQLAlchemy's insert did


def _is_naive(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is None


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if _is_naive(value) else value
