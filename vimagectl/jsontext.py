"""JSON text for vimagectl through CPython's C accelerator ``_json``, without :mod:`json`.

``import json`` costs vimagectl ~9 ms of its start-up: ``json.decoder`` and ``json.encoder``
compile regular expressions, and ``re`` pulls in enum, functools and collections
(docs/performance.md). The scanner and encoder here are the ones :mod:`json` itself uses
(``json.scanner.c_make_scanner``, ``json.encoder.c_make_encoder``), set up as ``json.loads``
and ``json.dumps`` set them up, so the values and the text are the same. Without ``_json``
(another Python) everything falls back to :mod:`json`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - every CPython has it
    _json = None  # type: ignore[assignment]

WHITESPACE = " \t\n\r"
"""JSON's whitespace: what the scanner skips between tokens, and all it skips."""


def _refuse_constant(name: str) -> object:
    # Python reads NaN and Infinity; JSON (and msgspec, which writes the replies) has none.
    raise ValueError(f"{name} is not JSON")


def _refuse_type(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Decoder:
    """The attributes ``c_make_scanner`` reads: json.JSONDecoder's defaults, strict."""

    strict = True  # no raw control characters in strings
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse_constant)


if _json is not None:
    _scan = _json.make_scanner(_Decoder())  # type: ignore[arg-type]
    # json.JSONEncoder's arguments to c_make_encoder: markers (None: no circularity check,
    # pointless for decoded JSON), default, string encoder, indent, separators, sort_keys,
    # skipkeys, allow_nan.
    _compact = _json.make_encoder(
        None, _refuse_type, _json.encode_basestring, None, ":", ",", False, False, True
    )
    _quoted = _json.make_encoder(
        None, _refuse_type, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )


def loads(text: str) -> Any:
    """``json.loads(text)``, refusing NaN and Infinity; :class:`ValueError` if it is no JSON
    document (nested too deeply included)."""
    if _json is None:  # pragma: no cover
        import json

        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    start = len(text) - len(text.lstrip(WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"no JSON value at character {exc.value}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if text[end:].strip(WHITESPACE):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def compact(value: object) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``: the daemon's own
    spelling (msgspec's), and what ``--json`` prints."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "".join(_compact(value, 0))


def quoted(value: object) -> str:
    """``json.dumps(value)``: a value as error messages quote it."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value)
    return "".join(_quoted(value, 0))
