"""DynamoDB write units of an item: its size by the DynamoDB guide's rules, and what the table
and each index it lands in charge for writing it (one unit per started KB, each).

Sizes follow https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html:
an attribute is its name's UTF-8 bytes plus its value's; a string is its UTF-8 bytes, a number
1 byte plus 1 per two significant digits, a Boolean or NULL 1 byte, a list or map 3 bytes plus
its elements at 1 byte of overhead each. An index entry holds the table's key, the index's key
and the projected attributes the item has; an item without an index's key attributes is not
in that index (a sparse index) and costs it nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

KB = 1024


def value_size(value: Any) -> int:
    """Bytes of one attribute value (without its name)."""
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float | Decimal):
        return _number_size(Decimal(str(value)))
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(1 + value_size(element) for element in value)
    if isinstance(value, Mapping):
        return 3 + sum(1 + len(str(k).encode("utf-8")) + value_size(v) for k, v in value.items())
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


def _number_size(number: Decimal) -> int:
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    return 1 + math.ceil(len(digits) / 2)


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes of an item: every attribute's name and value."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def units(size: int) -> int:
    """Write units for writing this many bytes once: one per started KB, at least one."""
    return max(1, math.ceil(size / KB))


@dataclass(frozen=True)
class Index:
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Layout:
    """A table's key and its global secondary indexes, as CreateTable declares them."""

    keys: tuple[str, ...]
    indexes: dict[str, Index]

    @classmethod
    def of(cls, definition: Mapping[str, Any]) -> Layout:
        """From CreateTable's arguments (``sam_template.table_definition``)."""
        indexes = {}
        for gsi in definition.get("GlobalSecondaryIndexes", []):
            projection = gsi["Projection"]
            indexes[gsi["IndexName"]] = Index(
                tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection["ProjectionType"],
                frozenset(projection.get("NonKeyAttributes", [])),
            )
        return cls(tuple(k["AttributeName"] for k in definition["KeySchema"]), indexes)

    def entry(self, item: Mapping[str, Any], index: str) -> dict[str, Any] | None:
        """What ``index`` stores for ``item``, or None when the item is not in it."""
        spec = self.indexes[index]
        if any(key not in item for key in spec.keys):
            return None
        if spec.projection == "ALL":
            return dict(item)
        kept = set(self.keys) | set(spec.keys)
        if spec.projection == "INCLUDE":
            kept |= spec.included
        return {name: value for name, value in item.items() if name in kept}

    def write_units(self, item: Mapping[str, Any]) -> dict[str, int]:
        """Write units of a new item: ``table`` and every index the item is in, by name."""
        charged = {"table": units(item_size(item))}
        for index in self.indexes:
            entry = self.entry(item, index)
            if entry is not None:
                charged[index] = units(item_size(entry))
        return charged
