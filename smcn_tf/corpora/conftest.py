"""Fixtures shared by the data tests."""

import pathlib

import pytest


def _read_tree(root):
    """Map each file's path relative to root to its bytes."""
    root = pathlib.Path(root)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def read_tree():
    """`read_tree(root)`: every file under root, by relative path, as bytes."""
    return _read_tree
