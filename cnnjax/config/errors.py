"""The config package's errors: each is a UserError, printed by the command line as one line per
problem, exit status 2 (cnnjax.errors)."""

from __future__ import annotations

from cnnjax.errors import UserError


class ConfigError(UserError):
    """A config file, argument or override that cannot be used (one line, what is accepted)."""


class ConfigValidationError(UserError):
    """One or more config values cannot be used; str() has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ResumeMismatchError(UserError):
    """A resumed run changes what its checkpoints depend on."""
