"""Small file helpers shared by the stages: atomic JSON writes, JSON-ready values."""

import dataclasses
import json
import os
import tempfile

import numpy as np


def _current_umask():
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere, reading it means setting it for a moment
    os.umask(mask)
    return mask


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
        # mkstemp makes 0600 files; give the JSON the mode any other output
        # gets (0644 under umask 022), so a reader that may read the shards or
        # the model (TF Serving on a shared volume) may read these too.
        os.chmod(temporary, 0o666 & ~_current_umask())
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
