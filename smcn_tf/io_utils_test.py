"""Atomic JSON writes: whole files only, with the mode every other output has."""

import json
import os
import stat

import pytest

from smcn_tf.io_utils import read_json, write_json_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_json_outputs_honour_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = tmp_path / "results.json"
        write_json_atomic(path, {"a": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives any other output
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode == stat.S_IMODE(os.stat(plain).st_mode)
    assert read_json(path) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["plain.txt", "results.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"version": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["manifest.json"]
