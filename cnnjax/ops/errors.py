"""The error of a bad argument to an op (a shape, padding, stride or implementation it cannot use)."""

from __future__ import annotations

from cnnjax.errors import UserError


class OpError(UserError):
    """An op's argument that cannot work, e.g. a kernel larger than the padded input: one line.

    Within a model this usually means the input is too small for the network (data.image_size)."""
