"""Requests to supervisor calls, and every error to a wire ``Error``.

This is the one catch-all: ``VimagedError`` becomes ``Error(code=exc.code)``, ``OSError``
becomes ``os_error`` with its errno and the errno's name (``errno_name``), anything else
``internal``, logged once here with its traceback, which never goes on the wire. Each
request ends in one ``request.done`` log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from vimaged import __version__, config
from vimaged.attachments import CNI_REQUESTS, cni_reply, of_container
from vimaged.cni.verbs import cni_exec
from vimaged.errors import (
    InvalidRequestError,
    NotFoundError,
    VimagedError,
    describe_oserror,
    errno_name,
)
from vimaged.metrics import RequestTimes, exposition
from vimaged.protocol import (
    MAX_NAMES,
    PROTOCOL_VERSION,
    CniExec,
    Done,
    Error,
    Health,
    ListVimages,
    Metrics,
    MetricsText,
    Reload,
    Reloaded,
    Restart,
    Start,
    Status,
    Stop,
    Version,
    VersionInfo,
    Vimages,
    VimagesEnd,
    vimages_pages,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator, Sequence
    from contextlib import AbstractAsyncContextManager

    from vimaged.attachments import Attachments
    from vimaged.peercred import Peer
    from vimaged.protocol import AnyRequest, Attachment, Event, Reply, VimageInfo
    from vimaged.supervisor import Supervisor

log = structlog.get_logger()


class Dispatcher:
    def __init__(self, supervisor: Supervisor, config_paths: Sequence[str] | None) -> None:
        self._sup = supervisor
        self._config_paths = config_paths
        self.attachments: Attachments | None = None
        """vimaged-cni's attachments (set by the daemon); CNI requests fail without them."""
        self.request_times = RequestTimes()
        """Filled by the server as it answers (its ``request.done``); read by ``metrics``."""

    def events(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Event]]:
        return self._sup.events.subscribe()

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]:
        """Answer one authorized request; the server logs ``request.done`` around it.

        A streamed listing (``"stream": true``) is refused here as a whole (``not_found``,
        too many names) before its first frame; then it is a stream of page bodies and a
        ``vimages_end``.
        """
        try:
            if isinstance(request, ListVimages | Status | Health) and request.stream:
                return await self._listing(request)
            if isinstance(request, CniExec):  # the plugin's exec, run as the peer (issue 14)
                return await cni_exec(self.attachments, request, peer)
            return await self._dispatch(request)
        except VimagedError as exc:
            return Error(code=exc.code, message=str(exc))
        except OSError as exc:
            return Error(
                code="os_error",
                message=describe_oserror(exc),
                errno=exc.errno,
                errno_name=errno_name(exc),
            )
        except Exception:
            log.exception("request.crashed")
            return Error(code="internal", message="internal error; see the daemon's log")

    async def _dispatch(self, request: AnyRequest) -> Reply:
        sup = self._sup
        if isinstance(request, CNI_REQUESTS):  # vimaged-cni (issue 14): attachments.py owns them
            return await cni_reply(self.attachments, request)
        match request:
            case Start(names=names, all_=everything):
                return Done(outcomes=tuple(await sup.start(self._names(names, everything))))
            case Stop(names=names, all_=everything, with_dependents=with_dependents):
                if everything:
                    _refuse_names_and_all(names)
                    return Done(outcomes=tuple(await sup.stop([], everything=True)))
                return Done(
                    outcomes=tuple(
                        await sup.stop(self._names(names, False), with_dependents=with_dependents)
                    )
                )
            case Restart(names=names, all_=everything):
                return Done(outcomes=tuple(await sup.restart(self._names(names, everything))))
            case ListVimages():
                return Vimages(vimages=tuple(sup.infos()), attachments=tuple(self._attachments()))
            case Status(names=names, containers=containers) if names or containers:
                return await self._status(names, containers)
            case Status(names=names) | Health(names=names):
                if not names:
                    return Vimages(vimages=tuple(sup.infos()))
                names = _unique(names)
                if isinstance(request, Status):
                    await sup.observe_addresses(names)
                return Vimages(vimages=tuple(sup.info(n) for n in names))
            case Reload():
                return await self.reload()
            case Metrics():
                return MetricsText(text=exposition(sup, self.request_times))
            case Version():
                return VersionInfo(
                    daemon=__version__, protocol=PROTOCOL_VERSION, platform=sup.platform.name
                )
        raise InvalidRequestError(f"unhandled request {type(request).__name__}")

    def _attachments(self) -> list[Attachment]:
        return [] if self.attachments is None else self.attachments.list()

    async def _status(self, names: tuple[str, ...], containers: tuple[str, ...]) -> Vimages:
        vimages, found = self._split(names, containers)
        await self._sup.observe_addresses(vimages)
        return Vimages(vimages=tuple(self._sup.info(n) for n in vimages), attachments=found)

    def _split(
        self, names: tuple[str, ...], containers: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[Attachment, ...]]:
        """``status``'s operands as the vimages named, then the attachments of the containers
        named. A name that is no vimage but a container's ID (or its unique prefix) names that
        container; one that is neither is not_found (from ``info``), as before."""
        sup, atts = self._sup, self._attachments()
        vimages: list[str] = []
        found: list[Attachment] = []
        for name in _unique(names):
            matched = of_container(atts, name) if atts and name not in sup.vimages else []
            if matched:
                found.extend(matched)
            else:
                vimages.append(name)
        for container in _unique(containers):
            matched = of_container(atts, container)
            if not matched:
                raise NotFoundError(f"no attachment of container {container!r}")
            found.extend(matched)
        return tuple(vimages), tuple(dict.fromkeys(found))

    async def _listing(
        self, request: ListVimages | Status | Health
    ) -> AsyncGenerator[bytes | Reply, None]:
        sup = self._sup
        if isinstance(request, ListVimages):
            return self._pages(sup.listed_names(), named=False, attachments=True)
        if isinstance(request, Status) and (request.names or request.containers):
            names, found = self._split(request.names, request.containers)
            for name in names:
                sup.info(name)  # not_found before any page, as below
            await sup.observe_addresses(names)
            return self._pages(list(names), named=True, found=found)
        if not request.names:
            return self._pages(sup.listed_names(), named=False)
        names = _unique(request.names)
        for name in names:
            sup.info(name)  # not_found before any page; cheap next to the address look
        if isinstance(request, Status):
            await sup.observe_addresses(names)
        return self._pages(list(names), named=True)

    async def _pages(
        self,
        names: list[str],
        *,
        named: bool,
        attachments: bool = False,
        found: tuple[Attachment, ...] = (),
    ) -> AsyncGenerator[bytes | Reply, None]:
        """Each vimage looked up as its page is built (the server sends a page before the
        next is built), so the daemon never holds the whole listing; one a reload removed
        meanwhile is left out, unless named (then it is ``not_found`` mid-stream). The end
        carries ``found``, or with ``attachments`` all of them as they are by then (``list``)."""
        sup = self._sup
        count = 0

        def infos() -> Iterator[VimageInfo]:
            nonlocal count
            for name in names:
                if named or name in sup.vimages:
                    count += 1
                    yield sup.info(name)

        for page in vimages_pages(infos()):
            yield page
        if attachments:
            found = tuple(self._attachments())
        yield VimagesEnd(count=count, attachments=found)

    def _names(self, names: tuple[str, ...], everything: bool) -> list[str]:
        if everything:
            _refuse_names_and_all(names)
            return [v.name for v in self._sup.cfg.vimages]
        if not names:
            raise InvalidRequestError("name at least one vimage, or use --all")
        return list(_unique(names))

    async def reload(self) -> Reloaded:
        """Re-read rc.conf (``reload`` and SIGHUP); ConfigError leaves the old one in force."""
        paths = self._config_paths
        new = await trio.to_thread.run_sync(lambda: config.load(paths))
        await self._sup.check_reload(new)
        return self._sup.reload(new)


def _refuse_names_and_all(names: tuple[str, ...]) -> None:
    """``all`` with names would act on all and silently pass over the names given."""
    if names:
        shown = " ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise InvalidRequestError(f"names ({shown}) and all: give one or the other")


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` without repeats, in order; more than MAX_NAMES distinct ones is refused.

    150,000 repeats of one name once took 5.6 s and built a 43 MB reply (issue 10).
    """
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_NAMES:
        raise InvalidRequestError(
            f"{len(unique)} names in one request; at most {MAX_NAMES} (MAX_NAMES)"
        )
    return unique
