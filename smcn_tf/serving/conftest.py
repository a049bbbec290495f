"""Fixtures shared by the serving tests."""

import pytest

from tests.serving_support import write_contract_model


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny export with the SMCN signature contract, at `<base>/smcn/1`; the base."""
    base = str(tmp_path_factory.mktemp("export") / "smcn")
    write_contract_model(base, version=1)
    return base
