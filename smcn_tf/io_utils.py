"""Small file helpers shared by the stages: atomic JSON writes."""

import json
import os
import tempfile


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
