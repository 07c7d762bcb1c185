"""Fixtures of the converter tests."""

from __future__ import annotations

import pytest
from helpers.convert import abstract, random_variables

from cnnjax.convert import mapping


@pytest.fixture(scope="session")
def resnet18_state() -> dict:
    """A torch-format resnet18 state dict of random values (made from cnnjax variables)."""
    return mapping.to_torch(random_variables(abstract("resnet18"), seed=1),
                            mapping.spec_for("resnet18"))
