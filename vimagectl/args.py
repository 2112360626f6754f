"""vimagectl's command line grammar: getopt(3)-style options and each verb's operands.

Hand-written rather than argparse: argparse with its gettext and locale lookups costs
vimagectl about 6 ms of start-up, a fifth of its budget (docs/performance.md). The verbs
themselves, with their operand rule, live in the one table :data:`vimagectl.cli.VERBS`; this
module reads any mapping of verb to something with ``operands`` and ``help``.
"""

from __future__ import annotations

from vimagectl.client import DEFAULT_SOCKET, SCHEMA

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Protocol

    class VerbGrammar(Protocol):
        operands: str
        help: str


NO_OPERANDS = ""
SOME_NAMES = "name ..."
ANY_NAMES = "[name ...]"
NAMES_OR_ALL = "name ... | --all"
NAMES_OR_CONTAINERS = "[name | container-id ...]"
"""A verb's operand rule, spelt as its usage line shows it: none; at least one vimage name;
any number (none means all); names or ``--all`` (only these verbs take ``--all``); any number
of vimage names or container IDs, none meaning all vimages (``status``: a vimaged-cni
attachment's container)."""

LONG_OPTIONS = (
    "--socket", "--json", "--timeout", "--all", "--help", "--version", "--with-dependents",
)  # fmt: skip
"""Every long option, for the suggestion an unknown one gets."""
DEFAULT_TIMEOUT = 60.0
OPTIONS = "[-s socket] [--json] [--timeout seconds]"
USAGE = f"usage: vimagectl {OPTIONS} command [argument ...]"

# The protocol's own rule for names, so that a bad one is a usage error, not a refusal.
NAME_PATTERN = SCHEMA.pattern("Status", "names")
CONTAINER_PATTERN = SCHEMA.pattern("Status", "containers")


def _matches(pattern: str, text: str) -> bool:
    import re  # only here: re costs ~8 ms of start-up, and most commands name no vimage

    return re.search(pattern, text) is not None


class UsageError(Exception):
    """A command line that does not parse; ``verb`` is the verb it named, if any."""

    def __init__(self, message: str, verb: str) -> None:
        super().__init__(message)
        self.verb = verb


class Arguments:
    """The parsed command line."""

    __slots__ = (
        "all", "containers", "help", "json", "names", "socket", "timeout", "verb", "version",
        "with_dependents",
    )  # fmt: skip

    def __init__(self) -> None:
        self.verb = ""
        self.names: list[str] = []
        self.containers: list[str] = []
        """Operands that can only be container IDs (not vimage names); ``status`` alone."""
        self.all = False
        self.json = False
        self.socket: str | None = None
        self.timeout = DEFAULT_TIMEOUT
        self.help = False
        self.version = False
        self.with_dependents = False
        """``stop --with-dependents``: stop the running vimages that depend on the named too."""


def help_text(verbs: Mapping[str, VerbGrammar]) -> str:
    listing = "\n".join(f"  {verb:<9} {spec.help}" for verb, spec in verbs.items())
    return (
        f"{USAGE}\n\n"
        "Control vimaged, the supervisor of FreeBSD vimages (VNET jails).\n\n"
        "options (before or after the command):\n"
        "  -s, --socket socket  the control socket\n"
        "  --json               JSON output\n"
        f"  --timeout seconds    wait for each answer (default {DEFAULT_TIMEOUT:g})\n"
        "  -h, --help           this help\n"
        "  --version            vimagectl's version; the command version adds the daemon's\n\n"
        f"commands:\n{listing}\n\n"
        f"socket: -s, else $VIMAGED_SOCKET, else {DEFAULT_SOCKET}.\n"
        "exit status: sysexits(3); health exits 0-3 like a Nagios plugin."
    )


def verb_usage(verb: str, spec: VerbGrammar) -> str:
    operands = spec.operands
    return f"usage: vimagectl {OPTIONS} {verb}{' ' + operands if operands else ''}"


def vimage_name(text: str) -> str:
    if not _matches(NAME_PATTERN, text):
        raise ValueError(
            f"bad vimage name {text!r}: a letter, then letters, digits or _, at most 31"
        )
    return text


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"--timeout: not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"--timeout must be positive and finite, got {text}")
    return seconds


def parse(argv: Sequence[str], verbs: Mapping[str, VerbGrammar]) -> Arguments:
    """Parse the command line, getopt(3) style with long options, like the base system's tools.

    Options may come before or after the command (``vimagectl list --json``); ``--`` ends them.

    Raises:
        UsageError: naming the verb, whose exit mapping chooses the status (64, or 3 for
            ``health``).
    """
    args = Arguments()
    operands: list[str] = []
    words = iter(argv)
    options_done = False
    try:
        for word in words:
            if options_done or word == "-" or not word.startswith("-"):
                if args.verb:
                    operands.append(word)
                elif word in verbs:
                    args.verb = word
                else:
                    raise ValueError(f"unknown command {word!r}{_did_you_mean(word, verbs)}")
                continue
            name, equals, value = word.partition("=")
            if word == "--":
                options_done = True
            elif name in ("--help", "--json", "--all", "--version", "--with-dependents") and equals:
                raise ValueError(f"{name} takes no value")
            elif word in ("-h", "--help"):
                args.help = True
            elif word == "--version":
                args.version = True
            elif name == "--json":
                args.json = True
            elif name == "--all" and args.verb and verbs[args.verb].operands == NAMES_OR_ALL:
                args.all = True
            elif name == "--with-dependents":
                if args.verb != "stop":
                    raise ValueError("--with-dependents: only stop takes it, after the command")
                args.with_dependents = True
            elif name in ("--socket", "--timeout") or word.startswith("-s"):
                if not word.startswith("--"):  # -s socket or -ssocket, as getopt(3) takes it
                    name, value = "-s", word[2:]
                    equals = "=" if value else ""
                if not equals:
                    following = next(words, None)
                    if following is None:
                        raise ValueError(f"{name} needs a value")
                    value = following
                if not value:
                    raise ValueError(f"{name} needs a value")
                if name == "--timeout":
                    args.timeout = positive_seconds(value)
                else:
                    args.socket = value
            elif name == "--all":
                raise ValueError("--all: only start, stop and restart take it")
            else:
                raise ValueError(f"unknown option {name}{_did_you_mean(name, LONG_OPTIONS)}")
        if args.help or args.version:
            return args
        if not args.verb:
            raise ValueError("no command given")
        _take_operands(args, verbs[args.verb].operands, operands)
    except ValueError as exc:
        usage = verb_usage(args.verb, verbs[args.verb]) if args.verb else USAGE
        raise UsageError(f"{exc}\n{usage}", args.verb) from None
    return args


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    """``; did you mean 'start'?`` for ``strat``, or nothing when no word is close."""
    import difflib  # only on this error path: vimagectl's start-up budget

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _take_operands(args: Arguments, rule: str, operands: list[str]) -> None:
    verb = args.verb
    if rule == NO_OPERANDS:
        if operands:
            raise ValueError(f"{verb} takes no arguments, got {' '.join(operands)}")
        return
    if rule == NAMES_OR_CONTAINERS:
        for word in operands:
            if _matches(NAME_PATTERN, word):
                args.names.append(word)  # the daemon tries one that is no vimage as a container
            elif _matches(CONTAINER_PATTERN, word):
                args.containers.append(word)
            else:
                raise ValueError(f"bad vimage name or container ID {word!r}")
        return  # none: every vimage, as ANY_NAMES
    args.names = [vimage_name(name) for name in operands]
    if rule == SOME_NAMES and not args.names:
        raise ValueError(f"{verb}: name at least one vimage")
    if rule == NAMES_OR_ALL and bool(args.names) == args.all:
        raise ValueError(f"{verb}: give vimage names or --all, not both or neither")
    if args.with_dependents and args.all:
        raise ValueError(f"{verb}: --with-dependents names vimages; --all stops every one")
