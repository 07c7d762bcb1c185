"""Which exceptions are the user's to fix (a bad config, file, argument or checkpoint).

Those are printed as one line by the command-line tools; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def is_user_error(error: BaseException) -> bool:
    """ValueError (our validation), missing files, and the training loop's own stop conditions."""
    if isinstance(error, ValueError | FileNotFoundError | NotADirectoryError | PermissionError):
        return True
    return type(error).__name__ in ("TrainingDivergedError",)
