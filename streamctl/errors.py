"""Typed errors raised by the library; the CLI maps each to its documented exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NoReturn

# Exit codes (README, "Exit codes"). 2 is also what Typer uses for usage errors.
EXIT_FAILED = 1  # the stream gave up: retries exhausted, or it failed to start
EXIT_USAGE = 2  # bad input: a value, a name, an option
EXIT_NOT_FOUND = 3  # no such stream
EXIT_CONFLICT = 4  # already running / live: the operation would disturb a running stream
EXIT_BUDGET_SPENT = 5  # the stream's budget is used up
EXIT_FILES = 6  # a state or config file cannot be read or written
EXIT_ENVIRONMENT = 7  # ffmpeg missing or unusable


ERROR_PREFIX = "streamctl: error: "


def error_line(message: str) -> str:
    """MESSAGE as the one line every command prints on stderr for an error."""
    return ERROR_PREFIX + " ".join(message.split()) + "\n"


class StreamctlError(Exception):
    """Base of every error the CLI reports as one line on stderr."""

    exit_code = EXIT_FAILED


class UsageError(StreamctlError):
    exit_code = EXIT_USAGE


class NotFound(StreamctlError):
    exit_code = EXIT_NOT_FOUND


class Conflict(StreamctlError):
    exit_code = EXIT_CONFLICT


class AlreadyRunning(Conflict):
    pass


class BudgetSpent(StreamctlError):
    exit_code = EXIT_BUDGET_SPENT


class FileError(StreamctlError):
    exit_code = EXIT_FILES


class ConfigRefused(FileError):
    """The config was read but cannot be used as it is (not TOML, writable by others): the read commands
    go by the state files instead; an unreadable file (permissions, a bad path) stays a FileError."""


class Untrusted(ConfigRefused):
    """A config, key file or state folder that another user could have written or replaced (owned by
    someone else, or in a folder others can write): refused, as sshd and sudo refuse theirs. A usage
    mistake of the admin's (exit 2); the read commands go by the state files, as for ConfigRefused."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(StreamctlError):
    exit_code = EXIT_ENVIRONMENT


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'X'?' for the closest of CHOICES, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def exit_with(message: str, code: int) -> NoReturn:
    """End the process the one way every command does: one line on stderr, a documented exit code."""
    sys.stderr.write(error_line(message))
    sys.exit(code)


@contextmanager
def reported() -> Iterator[None]:
    """Turn the library's typed errors, and Ctrl-C, into their exit: for `streamctl` and its supervisor."""
    try:
        yield
    except StreamctlError as e:
        exit_with(str(e), e.exit_code)
    except KeyboardInterrupt:
        exit_with("interrupted", 130)
