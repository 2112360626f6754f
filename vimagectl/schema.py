"""Checks JSON values against the control protocol's JSON Schema (vimagectl layer).

vimagectl decodes the daemon's replies with the standard library's C scanner (jsontext.py)
and checks them here against ``protocol.schema.json``, the schema msgspec derives from
vimaged/protocol.py (the one owner of the wire types; scripts/gen-wire-schema.py writes the
file, a test keeps it current). Importing msgspec itself would cost vimagectl more than half
of its start-up budget (docs/performance.md).

Only the keywords msgspec emits for the protocol's types are understood. Any other keyword is
refused when the schema is compiled, and the tests compile every definition, so a protocol
change can never end up checked loosely.

A checked object comes back as msgspec would decode it: fields in schema order, defaults
filled in, unknown fields dropped (``additionalProperties: false`` makes them an error). An
object that already has exactly the schema's fields in order with allowed types, as every
reply of the daemon does, passes one signature check and is returned as it is; an array of
such objects (a listing's vimages) is checked all at once (bulk.py): 1,000 vimages in about
1.5 ms, where a signature check each took 4 and a field-by-field walk 5-7. ``re`` is
imported only to check a pattern.
"""

from __future__ import annotations

import binascii
import itertools
import os

from vimagectl import bulk
from vimagectl.jsontext import loads, quoted

TYPE_CHECKING = False  # typing itself costs vimagectl ~6 ms of start-up; mypy reads this name
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

    from vimagectl.bulk import Bulk

    Check = Callable[[object], object]

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.schema.json")

_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),  # JSON true is a bool, never an integer: checks compare exact types
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_KIND_TEXT = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}
_NOTES = frozenset({"title", "description", "default", "examples"})
_MAX_SIGNATURES = 4096
"""Beyond this many allowed type combinations an object is checked field by field."""


class SchemaError(Exception):
    """The schema uses something this checker does not understand."""


class WireError(ValueError):
    """A value does not match the schema; ``where`` is its JSON path (``vimages[3].state``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where or 'message'}: {problem}")
        self.where = where
        self.problem = problem

    def under(self, step: str) -> WireError:
        """This error seen from the containing value: ``step`` is a field name or ``[i]``."""
        if not self.where:
            return WireError(step, self.problem)
        joiner = "" if self.where.startswith("[") else "."
        return WireError(f"{step}{joiner}{self.where}", self.problem)


def _under(check: Check, item: object, step: str) -> object:
    """``check(item)``, a failure seen from the value that holds ``item`` at ``step``."""
    try:
        return check(item)
    except WireError as exc:
        raise exc.under(step) from None


def _replace(value: Any, checked: Any, key: Any, result: object) -> Any:
    """``checked`` with ``key`` set to ``result``, copied from ``value`` first (copy on write:
    most values pass unchanged and are returned as they came)."""
    if checked is value:
        checked = value.copy()
    checked[key] = result
    return checked


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    text = quoted(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Pattern:
    """A schema's ``pattern``, compiled on first use: ``re`` costs vimagectl ~8 ms of start-up,
    and no reply has a pattern (only requests that name vimages or containers do)."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def search(self, text: str) -> object:
        if self._compiled is None:
            import re

            self._compiled = re.compile(self.pattern)
        return self._compiled.search(text)


class _Scalar:
    """A string, number, boolean or null schema: allowed types, enum values, a pattern."""

    __slots__ = ("pattern", "text", "types", "value_types", "values")

    def __init__(
        self,
        types: frozenset[type],
        values: frozenset[tuple[type, object]],
        text: str,
        pattern: _Pattern | None = None,
    ) -> None:
        self.types = types
        self.values = values  # (type, value) pairs: 1 must not pass for true
        self.value_types = frozenset(kind for kind, _ in values)
        self.text = text
        self.pattern = pattern

    def signature_types(self) -> frozenset[type]:
        return self.types | self.value_types

    def check(self, value: object) -> object:
        if type(value) in self.types:
            if self.pattern is None or (isinstance(value, str) and self.pattern.search(value)):
                return value
            return self._refuse(value, f"a string matching {self.pattern.pattern}")
        if type(value) in self.value_types and (type(value), value) in self.values:
            return value
        return self._refuse(value, self.text)

    @staticmethod
    def _refuse(value: object, expected: str) -> object:
        raise WireError("", f"expected {expected}, got {_describe(value)}")


_BASE64 = _Pattern(r"\A(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
"""What msgspec decodes as ``bytes``: whole quads, ``=`` padding only at the end."""


class _Base64(_Scalar):
    """A base64 string, given back as msgspec would encode its bytes again (the unused low
    bits of a last quad cleared)."""

    __slots__ = ()

    def check(self, value: object) -> object:
        checked = super().check(value)
        assert isinstance(checked, str)
        canonical = binascii.b2a_base64(binascii.a2b_base64(checked), newline=False).decode()
        return checked if canonical == checked else canonical


class Schema:
    """One protocol schema document, compiled definition by definition on first use."""

    def __init__(self, document: dict[str, object]) -> None:
        defs = document.get("$defs")
        if not isinstance(defs, dict):
            raise SchemaError("the schema has no $defs")
        self.document = document
        self._defs: dict[str, object] = defs
        self._compiled: dict[str, Check] = {}
        self._bulks: dict[str, Bulk | None] = {}

    @classmethod
    def load(cls, path: str = SCHEMA_FILE) -> Schema:
        with open(path, "rb") as file:
            return cls(loads(file.read().decode()))

    def checker(self, name: str) -> Check:
        """The check of definition ``name`` (``Reply``, ``Request``, ``VimageInfo``...)."""
        compiled = self._compiled.get(name)
        if compiled is None:
            if name not in self._defs:
                raise SchemaError(f"no definition {name!r}")
            # A forward cell first, so that a definition may refer to itself.
            cell: list[Check] = []
            self._compiled[name] = lambda value: cell[0](value)
            try:
                compiled = self._compile(self._node(self._defs[name], name))
            except SchemaError:
                del self._compiled[name]  # not half-compiled: the next call says why again
                raise
            cell.append(compiled)
            self._compiled[name] = compiled
        return compiled

    def check(self, name: str, value: object) -> object:
        """``value`` checked against definition ``name``; :class:`WireError` if it does not fit."""
        return self.checker(name)(value)

    def integer(self, key: str) -> int:
        """A top-level integer of the document (``x-protocol``, ``x-max-frame``)."""
        value = self.document.get(key)
        if type(value) is not int:
            raise SchemaError(f"the schema's {key} is missing or not an integer")
        return value

    def pattern(self, definition: str, field: str) -> str:
        """The pattern of a string field, or of the strings of an array field.

        Raises:
            SchemaError: the field has no pattern.
        """
        node = self._node(self._defs.get(definition), definition)
        properties = self._node(node.get("properties"), definition)
        schema = self._node(properties.get(field), f"{definition}.{field}")
        if schema.get("type") == "array":
            schema = self._node(schema.get("items"), f"{definition}.{field}")
        pattern = schema.get("pattern")
        if not isinstance(pattern, str):
            raise SchemaError(f"{definition}.{field} has no pattern")
        return pattern

    def unchanged(self, name: str, values: list[Any]) -> int | None:
        """The number of object members in ``values`` (nested ones included) if every one
        would pass the check of definition ``name`` unchanged (all fields present, in order,
        each value allowed: nothing to fill in, drop or refuse) and holds no float; else None,
        and :meth:`check` says what is wrong or what it changes. See vimagectl/bulk.py."""
        check = self._bulk_ref(name)
        return None if check is None else check(values)

    def compile_all(self) -> None:
        """Compile every definition: refuses the whole schema if any part is not understood."""
        for name in self._defs:
            self.checker(name)

    # --- compiling ---------------------------------------------------------------------------

    @staticmethod
    def _node(schema: object, where: str) -> dict[str, object]:
        if not isinstance(schema, dict):
            raise SchemaError(f"{where}: a schema must be an object")
        return schema

    def _compile(self, schema: dict[str, object]) -> Check:
        scalar = self._scalar(schema)
        if scalar is not None:
            return scalar.check
        ref = schema.get("$ref")
        if ref is not None:
            self._only(schema, {"$ref"})
            return self.checker(self._ref_name(ref))
        if "anyOf" in schema:
            return self._compile_union(schema)
        kind = schema.get("type")
        if kind == "array":
            self._only(schema, {"type", "items"})
            return self._compile_array(self._node(schema.get("items"), "items"))
        if kind == "object":
            if "properties" in schema:
                return self._compile_struct(schema)
            self._only(schema, {"type", "additionalProperties"})
            return self._compile_map(self._node(schema.get("additionalProperties"), "values"))
        raise SchemaError(f"unsupported schema: {quoted(schema)[:120]}")

    @staticmethod
    def _only(schema: dict[str, object], allowed: set[str]) -> None:
        unknown = schema.keys() - allowed - _NOTES
        if unknown:
            raise SchemaError(f"unsupported keywords {sorted(unknown)} in {schema.get('title')}")

    @staticmethod
    def _ref_name(ref: object) -> str:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            raise SchemaError(f"unsupported $ref {ref!r}")
        return ref[len("#/$defs/") :]

    def _scalar(self, schema: dict[str, object]) -> _Scalar | None:
        """``schema`` as a scalar; None for an object, an array, a $ref or a tagged union."""
        if "enum" in schema:
            self._only(schema, {"enum"})
            values = schema["enum"]
            if not isinstance(values, list):
                raise SchemaError("enum must be an array")
            pairs = frozenset((type(value), value) for value in values)
            return _Scalar(frozenset(), pairs, "one of " + ", ".join(map(quoted, values)))
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _SCALAR_TYPES:
            if kind == "string" and "contentEncoding" in schema:
                return self._base64(schema)
            self._only(schema, {"type", "pattern"} if kind == "string" else {"type"})
            pattern = schema.get("pattern")
            return _Scalar(
                frozenset(_SCALAR_TYPES[kind]),
                frozenset(),
                _KIND_TEXT[kind],
                _Pattern(pattern) if isinstance(pattern, str) else None,
            )
        branches = schema.get("anyOf")
        if isinstance(branches, list) and "discriminator" not in schema:
            parts = [self._scalar(self._node(branch, "anyOf")) for branch in branches]
            if any(part is None or part.pattern is not None for part in parts):
                return None
            scalars = [part for part in parts if part is not None]
            return _Scalar(
                frozenset().union(*(part.types for part in scalars)),
                frozenset().union(*(part.values for part in scalars)),
                " or ".join(part.text for part in scalars),
            )
        return None

    def _base64(self, schema: dict[str, object]) -> _Scalar:
        """msgspec's ``bytes``: a base64 string. Its ``maxLength`` bounds only cni_exec's
        fields, which vimagectl never sends; what it checks are replies."""
        self._only(schema, {"type", "contentEncoding", "maxLength"})
        if schema["contentEncoding"] != "base64":
            raise SchemaError(f"unsupported contentEncoding {schema['contentEncoding']!r}")
        return _Base64(frozenset({str}), frozenset(), "a base64 string", _BASE64)

    def _compile_union(self, schema: dict[str, object]) -> Check:
        discriminator = schema.get("discriminator")
        if not isinstance(discriminator, dict):
            self._only(schema, {"anyOf"})
            branches = schema["anyOf"]
            if not isinstance(branches, list):
                raise SchemaError("anyOf must be an array")
            checks = [self._compile(self._node(branch, "anyOf")) for branch in branches]
            return _first_match(checks)
        self._only(schema, {"anyOf", "discriminator"})
        field = discriminator.get("propertyName")
        mapping = discriminator.get("mapping")
        if not isinstance(field, str) or not isinstance(mapping, dict):
            raise SchemaError("a discriminator needs propertyName and mapping")
        # Tags are resolved on use: vimagectl compiles only the replies it meets.
        targets = {tag: self._ref_name(ref) for tag, ref in mapping.items()}
        known = ", ".join(map(quoted, targets))

        def check_tagged(value: object) -> object:
            if type(value) is not dict:
                raise WireError("", f"expected an object, got {_describe(value)}")
            tag = value.get(field)
            target = targets.get(tag) if type(tag) is str else None
            if target is None:
                raise WireError(field, f"expected one of {known}, got {_describe(tag)}")
            return self.checker(target)(value)

        return check_tagged

    def _compile_array(self, items: dict[str, object]) -> Check:
        check_item = self._compile(items)
        scalar = self._scalar(items)
        # Items that only need their type checked (addresses: strings) are checked at once.
        plain_types = scalar.types if scalar and not scalar.values and not scalar.pattern else None
        check_all = self._bulk(items)  # a listing's vimages: all at once, if all pass as they are

        def check_array(value: object) -> object:
            if type(value) is not list:
                raise WireError("", f"expected an array, got {_describe(value)}")
            if plain_types is not None and set(map(type, value)) <= plain_types:
                return value
            if check_all is not None and check_all(value) is not None:
                return value
            checked = value
            for index, item in enumerate(value):
                try:  # inline, as in check_struct's fast path
                    result = check_item(item)
                except WireError as exc:
                    raise exc.under(f"[{index}]") from None
                if result is not item:
                    checked = _replace(value, checked, index, result)
            return checked

        return check_array

    def _compile_map(self, values: dict[str, object]) -> Check:
        check_value = self._compile(values)

        def check_map(value: object) -> object:
            if type(value) is not dict:
                raise WireError("", f"expected an object, got {_describe(value)}")
            checked = value
            for key, item in value.items():
                result = _under(check_value, item, key)
                if result is not item:
                    checked = _replace(value, checked, key, result)
            return checked

        return check_map

    def _compile_struct(self, schema: dict[str, object]) -> Check:
        self._only(schema, {"type", "properties", "required", "additionalProperties"})
        properties = self._node(schema["properties"], "properties")
        required = schema.get("required", [])
        if not isinstance(required, list):
            raise SchemaError("required must be an array")
        closed = schema.get("additionalProperties", True)
        if closed not in (True, False):
            raise SchemaError("additionalProperties beside properties must be true or false")
        fields: list[tuple[str, bool, object, Check]] = []
        # Fields whose value needs more than its type checked (enums, patterns, containers).
        # An enum's values are looked up inline: the signature has already checked the type.
        # Arrays and maps are skipped when empty: no keyword this checker takes refuses that.
        deep: list[tuple[str, frozenset[type], frozenset[object] | None, bool, Check]] = []
        signature_parts: list[frozenset[type]] = []
        for name, sub in properties.items():
            node = self._node(sub, name)
            scalar = self._scalar(node)
            check = scalar.check if scalar is not None else self._compile(node)
            fields.append((name, name in required, node.get("default"), check))
            if scalar is not None:
                signature_parts.append(scalar.signature_types())
                if scalar.pattern is not None:
                    deep.append((name, scalar.types, None, False, check))
                elif scalar.values:
                    plain = frozenset(value for _, value in scalar.values)
                    deep.append((name, scalar.types, plain, False, check))
            else:
                signature_parts.append(self._container_types(node))
                deep.append((name, frozenset(), None, self._empty_is_valid(node), check))
        keys = tuple(properties)
        signatures = _signatures(signature_parts)
        field_names = frozenset(keys)
        title = schema.get("title") or "object"

        def check_fields(value: dict[str, object]) -> dict[str, object]:
            if closed is False:
                unknown = value.keys() - field_names
                if unknown:
                    raise WireError(sorted(unknown)[0], f"unknown field of {title}")
            checked: dict[str, object] = {}
            for name, needed, default, check in fields:
                if name in value:
                    checked[name] = _under(check, value[name], name)
                elif needed:
                    raise WireError("", f"{title} lacks its field {name!r}")
                else:  # defaults are JSON values; copy the mutable ones
                    checked[name] = default.copy() if isinstance(default, (list, dict)) else default
            return checked

        def check_struct(value: object) -> object:
            if type(value) is not dict:
                raise WireError("", f"expected an object ({title}), got {_describe(value)}")
            if (
                signatures is None
                or tuple(value) != keys
                or tuple(map(type, value.values())) not in signatures
            ):
                return check_fields(value)
            # The fast path: every field present, in order, with an allowed type.
            checked = value
            for name, types, plain, container, check in deep:
                item = value[name]
                if plain is not None and (type(item) in types or item in plain):
                    continue
                if container and not item:
                    continue
                try:  # inline, not _under: the fast path's own loop (1,000 vimages: 0.5 ms)
                    result = check(item)
                except WireError as exc:
                    raise exc.under(name) from None
                if result is not item:
                    checked = _replace(value, checked, name, result)
            return checked

        return check_struct

    # --- checking many values at once (vimagectl/bulk.py) ------------------------------------

    def _bulk_ref(self, name: str) -> Bulk | None:
        if name not in self._bulks:
            if name not in self._defs:
                raise SchemaError(f"no definition {name!r}")
            self._bulks[name] = None  # meanwhile: a definition that holds itself goes one by one
            self._bulks[name] = self._bulk(self._node(self._defs[name], name))
        return self._bulks[name]

    def _bulk(self, schema: dict[str, object]) -> Bulk | None:
        """The check of a list of values of ``schema`` all at once, or None where it has none
        (maps, tagged unions: checked one by one)."""
        ref = schema.get("$ref")
        if ref is not None:
            return self._bulk_ref(self._ref_name(ref))
        scalar = self._scalar(schema)
        if scalar is not None:
            return bulk.scalars(scalar)
        kind = schema.get("type")
        if kind == "array":
            items = self._bulk(self._node(schema.get("items"), "items"))
            return None if items is None else bulk.arrays(items)
        if kind == "object" and "properties" in schema:
            return self._bulk_struct(self._node(schema["properties"], "properties"))
        branches = schema.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
            other = branches[1] if branches[0] == {"type": "null"} else branches[0]
            inner = self._bulk(self._node(other, "anyOf"))
            return None if inner is None else bulk.optional(inner)
        return None

    def _bulk_struct(self, properties: dict[str, object]) -> Bulk | None:
        parts: list[frozenset[type]] = []
        fields: list[tuple[str, Bulk]] = []  # as check_struct's deep: more than a type to check
        for name, sub in properties.items():
            node = self._node(sub, name)
            scalar = self._scalar(node)
            if scalar is not None:
                parts.append(scalar.signature_types() - {float})
                if scalar.pattern is not None or scalar.values:
                    fields.append((name, bulk.scalars(scalar)))
                continue
            check = self._bulk(node)
            if check is None:
                return None
            parts.append(self._container_types(node))
            fields.append((name, check))
        signatures = _signatures(parts)
        return None if signatures is None else bulk.structs(tuple(properties), signatures, fields)

    def _empty_is_valid(self, schema: dict[str, object]) -> bool:
        """Whether an empty value of this (container) schema always passes: an array or a map
        does, an object with properties need not (it may require some)."""
        ref = schema.get("$ref")
        if ref is not None:
            return self._empty_is_valid(self._node(self._defs.get(self._ref_name(ref)), str(ref)))
        return schema.get("type") == "array" or (
            schema.get("type") == "object" and "properties" not in schema
        )

    def _container_types(self, schema: dict[str, object]) -> frozenset[type]:
        ref = schema.get("$ref")
        if ref is not None:
            target = self._node(self._defs.get(self._ref_name(ref)), str(ref))
            return self._container_types(target)
        kind = schema.get("type")
        if kind == "array":
            return frozenset({list})
        if kind == "object":
            return frozenset({dict})
        branches = schema.get("anyOf")
        if isinstance(branches, list) and "discriminator" not in schema:
            # An optional container (``LinkStats | None``): null or the container's types.
            parts = []
            for branch in branches:
                node = self._node(branch, "anyOf")
                types = (
                    frozenset({type(None)})
                    if node == {"type": "null"}
                    else self._container_types(node)
                )
                if not types:
                    return frozenset()
                parts.append(types)
            return frozenset().union(*parts)
        # A union of containers and scalars: the slow path checks it field by field.
        return frozenset()


def _signatures(parts: list[frozenset[type]]) -> frozenset[tuple[type, ...]] | None:
    """Every allowed combination of field types, or None when there are too many to list."""
    count = 1
    for part in parts:
        count *= len(part)
    if count == 0 or count > _MAX_SIGNATURES:
        return None
    return frozenset(itertools.product(*parts))


def _first_match(checks: list[Check]) -> Check:
    def check_any(value: object) -> object:
        problems = []
        for check in checks:
            try:
                return check(value)
            except WireError as exc:
                problems.append(exc.problem)
        raise WireError("", " / ".join(problems) or "no alternative")

    return check_any
