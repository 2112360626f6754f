"""Checks of many JSON values at once, at C speed (vimagectl layer).

A listing is a list of alike objects. Checking them one by one costs about 1.5 µs per object
in Python; these checks ask the same questions of the whole list with ``map``, ``set`` and
``tuple`` (every object's keys, every object's field types, the distinct values of each
enum), so 1,000 vimages check in well under a millisecond (docs/performance.md). schema.py
builds them from the schema (``Schema.unchanged``) and uses them as check_array's fast path.

Each check takes a list of values of its schema and returns the number of object members in
them all (nested objects included) if every value would pass the schema's check *unchanged*
and holds no float, else None: then the values are checked one by one, which fills in
defaults, drops unknown fields and names what is wrong. Floats are left to that path so that
a value that passes here is one whose compact JSON text is unique (``1.50`` and ``1.5`` are
one float): client.py relies on it to print a page's text as it came.
"""

from __future__ import annotations

import itertools

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    Bulk = Callable[[list[Any]], int | None]

    class ScalarCheck(Protocol):
        types: frozenset[type]
        values: frozenset[tuple[type, object]]

        @property
        def pattern(self) -> object: ...

        def signature_types(self) -> frozenset[type]: ...

        def check(self, value: object) -> object: ...


def scalars(scalar: ScalarCheck) -> Bulk:
    """Strings, numbers, booleans or nulls: their types, and each distinct value once when an
    enum or a pattern constrains them."""
    allowed = scalar.signature_types() - {float}
    plain = scalar.types - {float} if scalar.pattern is None else frozenset()

    def bulk_scalars(values: list[Any]) -> int | None:
        kinds = set(map(type, values))
        if kinds <= plain:
            return 0
        if not kinds <= allowed:
            return None
        # (type, value): 1 and true are one set element otherwise. All hashable: scalars.
        for _, value in set(zip(map(type, values), values, strict=True)):
            try:
                scalar.check(value)
            except ValueError:  # WireError
                return None
        return 0

    return bulk_scalars


def arrays(items: Bulk) -> Bulk:
    """Arrays: their items, all of them at once."""

    def bulk_arrays(values: list[Any]) -> int | None:
        if not set(map(type, values)) <= {list}:
            return None
        return items(list(itertools.chain.from_iterable(values)))

    return bulk_arrays


def optional(inner: Bulk) -> Bulk:
    """``X | None``: the values that are not null, as ``X``."""

    def bulk_optional(values: list[Any]) -> int | None:
        return inner([value for value in values if value is not None])

    return bulk_optional


def structs(
    keys: tuple[str, ...], signatures: frozenset[tuple[type, ...]], fields: list[tuple[str, Bulk]]
) -> Bulk:
    """Objects with exactly ``keys`` in this order, field types among ``signatures``, and the
    values of each of ``fields`` (enums, patterns, containers) passing its own check."""
    size = len(keys)

    def bulk_structs(values: list[Any]) -> int | None:
        if not values:
            return 0
        if set(map(type, values)) != {dict}:
            return None
        if set(map(tuple, values)) != {keys}:
            return None
        types = map(tuple, map(map, itertools.repeat(type), map(dict.values, values)))
        if not set(types) <= signatures:
            return None
        members = size * len(values)
        for name, check in fields:
            found = check(list(map(dict.__getitem__, values, itertools.repeat(name))))
            if found is None:
                return None
            members += found
        return members

    return bulk_structs
