"""Domain errors of vimaged.

Each class's ``code`` is its wire error code (``protocol.Error.code``) and maps to one
sysexits(3) exit status in vimagectl. Platforms and the netgraph binding raise only
``OSError``; domain code raises these, chained.
"""

from __future__ import annotations

from typing import Any, ClassVar


class VimagedError(Exception):
    """Base of every error that reaches a client as ``Error(code=...)``."""

    code: ClassVar[str] = "internal"

    def __init_subclass__(cls, *, code: str, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.code = code


class ConfigError(VimagedError, code="config"):
    """rc.conf(5) content that cannot be used; the message names file, line or variable."""


class NotFoundError(VimagedError, code="not_found"):
    """A vimage name that is not configured."""


class ConflictError(VimagedError, code="conflict"):
    """A transition not allowed from the current state, or a resource held by another vimage."""


class ShuttingDownError(VimagedError, code="shutting_down"):
    """The daemon is stopping and takes no new mutations."""


class PermissionDeniedError(VimagedError, code="permission_denied"):
    """The peer's credentials do not allow the request."""


class OperationFailedError(VimagedError, code="failed"):
    """A start, stop or restart failed; everything done so far was rolled back."""


class PlatformError(VimagedError, code="platform"):
    """The platform cannot run vimages (missing kernel feature, module, privilege)."""


class InvalidRequestError(VimagedError, code="invalid_request"):
    """A well-formed request that asks for something meaningless (no names, say)."""
