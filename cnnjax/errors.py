"""The project's error classes and the exit codes every command uses.

A `UserError` is the user's to fix (a bad config, file, argument or checkpoint): the command-line tools
print it as one line. Every error cnnjax raises for bad input is a subclass (ConfigError, ModelError,
DataError, OpError, ConvertError, CheckpointMismatchError, ...). Any other exception is a bug and keeps
its traceback; CNNJAX_TRACEBACK=1 in the environment prints the traceback of user errors too.

Exit codes (documented in the README; the sweep tools read them):
    0  finished                 2  user error (one line on stderr)
    1  bug (traceback)          3  diverged (NaN/Inf loss; the last good checkpoint is kept)
   75  preempted: the checkpoint was saved, run the same command to resume (EX_TEMPFAIL)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

TRACEBACK_ENV = "CNNJAX_TRACEBACK"

EXIT_FINISHED = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75


class UserError(ValueError):
    """Something the user must fix; printed as one line. (A ValueError so that older callers that
    catch ValueError keep working.)"""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept untouched (exit code 3)."""


def is_user_error(error: BaseException) -> bool:
    """True for the errors a command prints as one line: UserError and its subclasses, a missing or
    unreadable file, and a diverged run. Anything else (JAX's, Flax's, Orbax's own ValueErrors
    included) is a bug and keeps its traceback."""
    return isinstance(error, UserError | FileNotFoundError | NotADirectoryError | PermissionError
                      | TrainingDivergedError)


def traceback_requested() -> bool:
    """True when CNNJAX_TRACEBACK is set (to anything but '' or '0'): show user errors' tracebacks."""
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def unknown_name(what: str, name: str, choices: Sequence[str], hint: str = "") -> UserError:
    """The one-line error for a misspelt command, subcommand or name: says the closest of `choices`
    (difflib) when one is close, else lists them all; `hint` is appended (e.g. another way to call)."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return UserError(f"unknown {what} {name!r}; {guess}one of: {', '.join(choices)}{hint}")
