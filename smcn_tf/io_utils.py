"""Small file helpers shared by the stages: atomic JSON writes, JSON-ready values."""

import dataclasses
import json
import os
import tempfile

import numpy as np


def write_json_atomic(path, value):
    """Write `value` as JSON to `path` so that readers never see a partial file.

    Args:
        path: the destination file.
        value: a JSON-serializable object.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=os.path.basename(path) + ".tmp-"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(value, stream, indent=2, sort_keys=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_json(path):
    """Read a JSON file, with an error that names it when it is broken."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error


def jsonable(value):
    """`value` as JSON-ready data: dataclasses, tuples, sets, paths, numpy scalars.

    >>> jsonable({"a": (1, 2), "b": {3, 1}, "c": np.float32(0.5)})
    {'a': [1, 2], 'b': [1, 3], 'c': 0.5}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def remove_quietly(path):
    """Delete a file; one that is already gone is fine."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
