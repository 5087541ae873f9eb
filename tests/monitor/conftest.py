"""Fixtures for the monitoring tests: one writable copy of the shared pipeline
store per test module, and the pushed model versions in it.
"""
import pathlib

import pytest

from tests.conftest import copy_store


@pytest.fixture(scope="module")
def store_copy(pipeline_runs, tmp_path_factory) -> pathlib.Path:
    """The output folder of a copy of the shared store (serving folder and
    metadata); checks written here leave the shared store as it was."""
    _, output_dir = copy_store(pipeline_runs, tmp_path_factory.mktemp("monitor"))
    return output_dir
