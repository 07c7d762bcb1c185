"""The project's error classes and the exit codes every command uses.

A `UserError` is the user's to fix (a bad config, file, argument or checkpoint): the command-line tools
print it as one line. Any other exception is a bug and keeps its traceback.

Exit codes (documented in the README; the sweep tools read them):
    0  finished                 2  user error (one line on stderr)
    1  bug (traceback)          3  diverged (NaN/Inf loss; the last good checkpoint is kept)
   75  preempted: the checkpoint was saved, run the same command to resume (EX_TEMPFAIL)
"""

from __future__ import annotations

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
    """Transitional: UserError, missing files, and ValueErrors raised by cnnjax's own code."""
    if isinstance(error, UserError | FileNotFoundError | NotADirectoryError | PermissionError):
        return True
    if isinstance(error, ValueError):  # only ours: JAX's, Flax's and Orbax's keep their traceback
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return tb is not None and "/cnnjax/" in tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return isinstance(error, TrainingDivergedError)
