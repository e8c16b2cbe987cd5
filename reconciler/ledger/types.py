"""Exact integer storage for uint256-sized amounts on SQLite and PostgreSQL alike.

SQLite has no exact type above 64 bits (an int above 2^63 cannot be bound, and NUMERIC text
comes back as a REAL), so there the value is stored as its decimal text; PostgreSQL gets
NUMERIC(78, 0), which holds every uint256 and its negation. Values are never summed in SQL on
SQLite.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_LIMIT = 10**78 - 1


class ExactInt(TypeDecorator[int]):
    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))
        return dialect.type_descriptor(String(80))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"amounts are ints in base units, got {type(value).__name__}")
        if abs(value) > _LIMIT:
            raise ValueError(f"amount {value} does not fit NUMERIC(78, 0)")
        if dialect.name == "postgresql":
            return Decimal(value)
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                raise ValueError(f"stored amount {value} is not whole")
            return int(value)
        if isinstance(value, str):
            return int(value)
        raise TypeError(f"stored amount has unexpected type {type(value).__name__}: {value!r}")
