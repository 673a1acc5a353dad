"""Fixtures of the segmentation tests."""

import pytest

from layouts import make_pairs


@pytest.fixture
def tiny_pairs(tmp_path) -> list[tuple[str, str]]:
    return make_pairs(tmp_path)
