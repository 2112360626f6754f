"""The rc.conf(5) reader: the subset of sh(1) that rc.conf files use, and nothing more.

``NAME=value`` (several per line), ``export NAME[=value]``, single and double quotes,
backslash escapes, line continuations, comments, ``$var`` and ``${var}`` of variables set
earlier. Anything else (command substitution, ``. file``, functions, other commands) is a
``ConfigError("file:line: ...")``: a value that would need a shell to know is refused, never
guessed. What the values mean is :mod:`vimaged.config`'s business.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import msgspec

from vimaged.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class Assignment(msgspec.Struct, frozen=True):
    name: str
    value: str
    where: str
    """``file:line`` of the assignment."""


_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_BLANKS = " \t"
_OPERATORS = "|&<>()"
_SPECIAL_PARAMETERS = "@*#?$!-0123456789"


class _ShReader:
    """A cursor over one file's text; every method leaves ``pos`` after what it consumed."""

    def __init__(self, text: str, filename: str, env: dict[str, str]) -> None:
        self.text = text
        self.filename = filename
        self.env = env
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(f"{self.filename}:{self.line if line is None else line}: {message}")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count

    def assignments(self) -> list[Assignment]:
        found: list[Assignment] = []
        while self.pos < len(self.text):
            self.skip_separators()
            if self.pos >= len(self.text):
                break
            found.extend(self.simple_command())
        return found

    def skip_separators(self) -> None:
        """Blanks, newlines, ``;``, comments and line continuations between commands."""
        while True:
            self.skip_blanks()
            char = self.peek()
            if char and char in "\n;":
                self.advance()
            elif char == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.advance((len(self.text) if end < 0 else end) - self.pos)

    def skip_blanks(self) -> None:
        while True:
            char = self.peek()
            if char and char in _BLANKS:
                self.advance()
            elif char == "\\" and self.peek(1) == "\n":
                self.advance(2)
            else:
                return

    def at_command_end(self) -> bool:
        char = self.peek()
        return char in ("", "\n", ";", "#")

    def simple_command(self) -> list[Assignment]:
        """``NAME=value ...`` or ``export NAME[=value] ...``; anything else is an error."""
        found: list[Assignment] = []
        exporting = False
        first = True
        while not self.at_command_end():
            match = _ASSIGNMENT_START.match(self.text, self.pos)
            if match is not None:
                found.append(self.assignment(match))
            elif first and self.word_is("export"):
                self.advance(len("export"))
                exporting = True
            elif exporting and (exported := _NAME.match(self.text, self.pos)) is not None:
                self.advance(exported.end() - self.pos)
                if not (self.at_command_end() or self.peek() in _BLANKS):
                    raise self.error("export takes variable names: only NAME or NAME=value")
            else:
                raise self.unsupported_command(after_assignment=bool(found))
            first = False
            self.skip_blanks()
        return found

    def word_is(self, word: str) -> bool:
        end = self.pos + len(word)
        return self.text.startswith(word, self.pos) and (
            end >= len(self.text) or self.text[end] in _BLANKS + "\n;"
        )

    def unsupported_command(self, *, after_assignment: bool) -> ConfigError:
        end = self.pos
        while end < len(self.text) and self.text[end] not in _BLANKS + "\n;" + _OPERATORS:
            end += 1
        word = self.text[self.pos : end]
        if word in (".", "source"):
            return self.error(f"'{word}' (reading another file) is not supported")
        if end < len(self.text) and self.text[end] == "(" and _NAME.fullmatch(word):
            return self.error(f"function definition '{word}()' is not supported")
        if not word:
            return self.error(f"'{self.peek()}' is not supported: only NAME=value assignments")
        if after_assignment:
            return self.error(f"command '{word}' is not supported: only NAME=value assignments")
        return self.error(f"'{word}' is not supported: only NAME=value assignments")

    def assignment(self, match: re.Match[str]) -> Assignment:
        name = match.group(1)
        line = self.line
        self.advance(match.end() - self.pos)
        value = self.word()
        self.env[name] = value
        return Assignment(name, value, f"{self.filename}:{line}")

    def word(self) -> str:
        """The value of one word: quotes removed, escapes and ``$var`` expanded."""
        parts: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char in _BLANKS or char in "\n;":
                break
            if char in _OPERATORS:
                raise self.error(f"unquoted '{char}' is not supported (quote the value)")
            if char == "\\":
                following = self.peek(1)
                if following == "":
                    raise self.error("backslash at end of file")
                self.advance(2)
                if following != "\n":  # backslash-newline is a line continuation
                    parts.append(following)
            elif char == "'":
                parts.append(self.single_quoted())
            elif char == '"':
                parts.append(self.double_quoted())
            else:
                parts.append(self.unquoted(char))
        return "".join(parts)

    def single_quoted(self) -> str:
        start_line = self.line
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise self.error("unterminated single quote", start_line)
        value = self.text[self.pos + 1 : end]
        self.advance(end + 1 - self.pos)
        return value

    def double_quoted(self) -> str:
        start_line = self.line
        self.advance()
        parts: list[str] = []
        while True:
            char = self.peek()
            if char == "":
                raise self.error("unterminated double quote", start_line)
            if char == '"':
                self.advance()
                return "".join(parts)
            if char == "\\":
                following = self.peek(1)
                if following in ("$", "`", '"', "\\"):
                    parts.append(following)
                elif following != "\n":  # other escapes keep their backslash, as in sh
                    parts.append("\\")
                    self.advance()
                    continue
                self.advance(2)
            else:
                parts.append(self.unquoted(char))

    def unquoted(self, char: str) -> str:
        """What ``char`` at ``pos`` (neither a quote nor a backslash) stands for: ``$``
        expands, a backquote is refused, anything else is itself."""
        if char == "$":
            return self.expansion()
        if char == "`":
            raise self.error("command substitution is not supported")
        self.advance()
        return char

    def expansion(self) -> str:
        """``$NAME`` or ``${NAME}``; a lone ``$`` is literal, as in sh."""
        following = self.peek(1)
        if following == "(":
            if self.peek(2) == "(":
                raise self.error("arithmetic expansion $((...)) is not supported")
            raise self.error("command substitution is not supported")
        if following == "{":
            close = self.text.find("}", self.pos + 2)
            inner = self.text[self.pos + 2 : close] if close >= 0 else ""
            if close < 0 or "\n" in inner:
                raise self.error("unterminated ${")
            if not _NAME.fullmatch(inner):
                raise self.error(
                    f"${{{inner}}} is not supported: only ${{NAME}} and $NAME expansions"
                )
            self.advance(close + 1 - self.pos)
            return self.env.get(inner, "")
        if following and _NAME_START.match(following):
            match = _NAME.match(self.text, self.pos + 1)
            assert match is not None  # the first character matched _NAME_START
            self.advance(match.end() - self.pos)
            return self.env.get(match.group(), "")
        if following and following in _SPECIAL_PARAMETERS:
            raise self.error(f"${following} is not supported: only ${{NAME}} and $NAME")
        self.advance()
        return "$"


def assignments(text: str, filename: str, env: dict[str, str]) -> list[Assignment]:
    """Every assignment of one file's ``text``, in order, values expanded.

    ``env`` holds the variables set so far (earlier files): ``${var}`` and ``$var`` expand
    from it, unset ones to the empty string, as in sh. Every assignment of ``text`` is added
    to ``env``, so the next file sees it.
    """
    return _ShReader(text, filename, env).assignments()


def read_files(
    paths: Sequence[str], *, explicit: bool, keep: Callable[[str], bool]
) -> tuple[dict[str, Assignment], tuple[str, ...]]:
    """The last assignment of each variable ``keep`` accepts, and the files read, in order.

    A directory stands for the files in it, in name order (rc.subr reads
    ``rc.conf.d/vimaged/*`` that way); a missing path is skipped, or a ``ConfigError`` when
    ``explicit``. Later files override earlier ones.
    """
    env: dict[str, str] = {}
    found: dict[str, Assignment] = {}
    sources: list[str] = []
    for path in paths:
        for filename in _files_of(path, explicit=explicit):
            try:
                with open(filename, encoding="utf-8", errors="surrogateescape") as file:
                    text = file.read()
            except OSError as exc:
                raise ConfigError(f"{filename}: cannot read: {exc.strerror}") from None
            sources.append(filename)
            for assignment in assignments(text, filename, env):
                if keep(assignment.name):
                    found[assignment.name] = assignment
    return found, tuple(sources)


def _files_of(path: str, *, explicit: bool) -> list[str]:
    if os.path.isdir(path):
        return sorted(
            entry.path
            for entry in os.scandir(path)
            if entry.is_file() and not entry.name.startswith(".")
        )
    if os.path.exists(path):
        return [path]
    if explicit:
        raise ConfigError(f"{path}: no such file")
    return []
