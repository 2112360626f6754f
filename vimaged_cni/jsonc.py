"""JSON through CPython's C accelerator ``_json``, without importing :mod:`json`.

``import json`` costs the plugin ~9 ms a start (``json.decoder`` compiles regular expressions,
which pulls in ``re``), a quarter of an ADD. The scanner below is the one :mod:`json` itself uses
(``json.scanner.c_make_scanner``) with :mod:`json`'s defaults, so ``loads`` accepts what
``json.loads`` accepts; ``dumps`` writes what ``json.dumps`` writes for the plain values the
plugin prints. Without ``_json`` (another Python) both fall back to :mod:`json`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing is ~8 ms
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - every CPython has it
    _json = None  # type: ignore[assignment]

_SPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Defaults:
    """The attributes ``c_make_scanner`` reads: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)


_scan = None if _json is None else _json.make_scanner(_Defaults())  # type: ignore[arg-type]


def loads(data: bytes | str) -> Any:
    """One JSON document (UTF-8 when bytes); :class:`ValueError` when it is none."""
    text = data.decode() if isinstance(data, bytes) else data  # UnicodeDecodeError: ValueError
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"no JSON value at character {exc.value}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except SystemError:
        # _json.c's raise_errmsg looks json.decoder up in sys.modules only (CPython 3.11,
        # _PyImport_GetModuleId) to raise JSONDecodeError; without it loaded (we never import
        # it) a malformed document ends as SystemError, "returned NULL without an exception".
        raise ValueError("malformed JSON") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def dumps(value: object) -> str:
    """``json.dumps(value)`` for dicts (string keys), lists, strings, numbers, bools, None."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value)
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _encode(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            out.append(", " if i else "")
            out.append(_json.encode_basestring_ascii(key))
            out.append(": ")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            out.append(", " if i else "")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
