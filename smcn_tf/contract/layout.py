"""TF Serving's directory layout: numeric versions under a model's base path.

    <export_base>/<model_name>/<version>/saved_model.pb ...
                              /.tmp-<version>-<pid>-<host>/   a version being written

Defined once here and shared by the exporter (which versions exist, writing
a new one) and by `smcn serve`'s model store (which versions to load):

- `list_versions`: the integer versions under a base path.
- `write_version`: a context manager that hands out a hidden temporary
  directory and renames it into `<base>/<version>` only when the body
  succeeds, so a server watching the base path never sees half a version.
- `remove_stale_temporaries`: the temporary directories of writers that died.

No TensorFlow here: `smcn serve` and the clients import it cheaply.
"""

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
import time

# Its messages are about exports being written: logged under the exporter's name.
logger = logging.getLogger("smcn_tf.export.exporter")

VERSION_DIRECTORY = re.compile(r"^\d+$")
# A temporary export directory of another machine (a shared volume) is only
# removed once nothing in it changed for this long: its pid means nothing here.
STALE_TEMPORARY_SECONDS = 24 * 3600
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-(\d+)(?:-(.+))?$")
# Temporary directories this process is writing right now.
_ACTIVE_TEMPORARIES = set()
_ACTIVE_LOCK = threading.Lock()


def has_saved_model(path):
    """Whether `path` holds a SavedModel (`saved_model.pb` or `.pbtxt`)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(
        os.path.join(path, "saved_model.pbtxt")
    )


def list_versions(base_path, loadable_only=True):
    """The integer versions under a model's base path, ascending.

    Args:
        base_path: `<export_base>/<model_name>`.
        loadable_only: keep only version directories that hold a SavedModel
            (what a server can load). False lists every numeric name, which
            is what a writer must not reuse.

    Returns:
        The versions, ascending; `[]` when the base path does not exist.
        Non-numeric entries (temporary directories) are always left out.

    Example:

    >>> list_versions("no/such/model")
    []
    """
    try:
        names = os.listdir(base_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    versions = []
    for name in names:
        if not VERSION_DIRECTORY.match(name):
            continue
        path = os.path.join(base_path, name)
        if loadable_only and not (os.path.isdir(path) and has_saved_model(path)):
            continue
        versions.append(int(name))
    return sorted(versions)


def resolve_version_dir(path, model_name=None):
    """The SavedModel directory named by a version dir, a base dir or an export base.

    Args:
        path: a version directory (`.../smcn/3`), a model base directory
            (`.../smcn`, newest version wins) or an export base that holds
            `<model_name>/<version>`.
        model_name: the model's name under an export base.

    Returns:
        A tuple `(version_dir, version)`; `version` is `None` when the
        directory name is not a number.

    Raises:
        ValueError: no SavedModel is found there.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory; expected an exported SavedModel.")
    if has_saved_model(path):
        name = os.path.basename(path)
        return path, int(name) if VERSION_DIRECTORY.match(name) else None
    for base in (path, os.path.join(path, model_name) if model_name else None):
        if base and list_versions(base):
            version = list_versions(base)[-1]
            return os.path.join(base, str(version)), version
    raise ValueError(
        f"No SavedModel under {path}: expected saved_model.pb there, numeric version "
        f"directories (<base>/<version>/saved_model.pb)"
        + (f" or {model_name}/<version>/saved_model.pb" if model_name else "")
        + "."
    )


def next_version(base_path, version=None):
    """The version to write: `version`, or one more than the newest.

    Raises:
        ValueError: a version below 1, or one that already exists.
    """
    versions = list_versions(base_path, loadable_only=False)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    version = int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}.")
    if version in versions:
        raise ValueError(
            f"{os.path.join(base_path, str(version))} already exists; versions only grow."
        )
    return version


def host_name():
    """This machine's name, as it goes into temporary directory names."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def temporary_path(base_path, version):
    """The hidden directory a version is written to before its rename."""
    return os.path.join(base_path, f".tmp-{version}-{os.getpid()}-{host_name()}")


@contextlib.contextmanager
def write_version(base_path, version):
    """Writes `<base_path>/<version>` atomically: yields a temporary directory.

    The body writes the version's files into the yielded (not yet existing)
    path; when it returns, the directory is renamed to `<base_path>/<version>`.
    When it raises, the temporary directory is removed. Stale temporaries of
    dead writers are removed first (`remove_stale_temporaries`).

    Example:

    >>> with write_version("models/demo", 1) as temporary:
    ...     os.makedirs(temporary)
    ...     open(os.path.join(temporary, "saved_model.pb"), "wb").close()
    >>> list_versions("models/demo")
    [1]
    """
    final = os.path.join(base_path, str(version))
    temporary = temporary_path(base_path, version)
    os.makedirs(base_path, exist_ok=True)
    remove_stale_temporaries(base_path)
    if os.path.exists(temporary):
        shutil.rmtree(temporary)
    with _ACTIVE_LOCK:
        _ACTIVE_TEMPORARIES.add(os.path.abspath(temporary))
    try:
        yield temporary
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TEMPORARIES.discard(os.path.abspath(temporary))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except OverflowError:
        return False
    return True


def _newest_change(path):
    newest = os.stat(path).st_mtime
    for root, directories, files in os.walk(path):
        for name in directories + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def remove_stale_temporaries(model_dir, stale_seconds=STALE_TEMPORARY_SECONDS):
    """Removes the temporary directories of exports that died before finishing.

    An export writes `.tmp-<version>-<pid>-<host>` and renames it into place;
    a killed export leaves it behind (up to the size of a whole version). One
    is removed when its export cannot be running any more:

    - written on this machine (its host, or no host for older names) by a
      process that no longer exists, or by this process but not by an export
      running in it now;
    - written on another machine (a shared volume): when nothing in it has
      changed for `stale_seconds` (a pid of another machine means nothing
      here).

    A running export's directory is never removed.

    Args:
        model_dir: `<export_base>/<model_name>`.
        stale_seconds: the age after which another machine's directory is stale.

    Returns:
        The removed paths.
    """
    try:
        names = os.listdir(model_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    host, now = host_name(), time.time()
    for name in sorted(names):
        match = _TEMPORARY.match(name)
        path = os.path.join(model_dir, name)
        if not match or not os.path.isdir(path) or os.path.islink(path):
            continue
        pid, writer = int(match.group(2)), match.group(3)
        if writer is None or writer == host:
            if pid == os.getpid():
                with _ACTIVE_LOCK:
                    if os.path.abspath(path) in _ACTIVE_TEMPORARIES:
                        continue
            elif _pid_alive(pid):
                continue
        else:
            try:
                if now - _newest_change(path) < stale_seconds:
                    continue
            except OSError:
                continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            logger.warning("Removed %s, left by an export that did not finish.", path)
            removed.append(path)
    return removed
