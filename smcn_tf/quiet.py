"""Quiet start-up: TensorFlow's C++ chatter and library advice stay off unless asked for.

TensorFlow 2.21 writes lines such as "oneDNN custom operations are on",
"Could not find cuda drivers", "cpu_feature_guard ... rebuild TensorFlow" and
"All log messages before absl::InitializeLog() is called are written to
STDERR" while its shared libraries load, before absl logging is set up: no
environment variable turns those off (TF_CPP_MIN_LOG_LEVEL only reaches the
later ones, such as "failed call to cuInit"). So, unless verbose:

- TF_CPP_MIN_LOG_LEVEL=3 (only fatal C++ messages; errors that matter reach
  Python as exceptions), and TRANSFORMERS_NO_ADVISORY_WARNINGS=1 (no
  "PyTorch was not found": we use transformers' tokenizers only); values
  already in the environment are kept (so TF_CPP_MIN_LOG_LEVEL=2 in the
  environment still shows C++ errors such as "failed call to cuInit");
- the first `import tensorflow` runs with file descriptor 2 pointed at
  /dev/null (an import hook), so the load-time lines go nowhere; a failing
  import still raises, and its traceback is printed once stderr is back;
- the `tensorflow` Python logger shows errors only (no retracing warnings).

Verbose (`smcn --verbose ...`, or SMCN_VERBOSE=1 in the environment, which
`configure(True)` sets so that child processes follow) leaves all of that as
TensorFlow and transformers have it.

Example, as `smcn` starts (the last two lines are not run as a test: they
would change the test process's stderr and environment):

>>> from smcn_tf import quiet
>>> quiet.configure(quiet.verbose_requested(sys.argv[1:]))  # doctest: +SKIP
>>> import tensorflow  # silent  # doctest: +SKIP
"""

import contextlib
import importlib.abc
import logging
import os
import sys

VERBOSE_ENVIRONMENT = "SMCN_VERBOSE"
VERBOSE_FLAG = "--verbose"
_TRUE = ("1", "true", "yes", "on")
# Modules whose first import is silenced: their shared libraries log while loading.
QUIET_IMPORTS = ("tensorflow",)


def verbose_requested(argv=None):
    """Whether start-up logs are wanted: SMCN_VERBOSE=1, or `--verbose` before
    the subcommand (`smcn --verbose train ...`).

    A `--verbose` after the subcommand belongs to it (`smcn train --verbose 2`
    is Keras' progress verbosity) and does not count.

    Args:
        argv: the command line without the program name (default `sys.argv[1:]`).
    """
    if os.environ.get(VERBOSE_ENVIRONMENT, "").strip().lower() in _TRUE:
        return True
    for token in sys.argv[1:] if argv is None else argv:
        if token == VERBOSE_FLAG:
            return True
        if not token.startswith("-"):  # the subcommand: what follows is its own
            return False
    return False


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 (what C++ writes to, past `sys.stderr`) to /dev/null."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader's `exec_module` with stderr silenced, then steps aside."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            with stderr_silenced():
                self._loader.exec_module(module)
        finally:
            # The module keeps its real loader (resources, reloads).
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds `QUIET_IMPORTS` with the other finders and wraps their loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in QUIET_IMPORTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install_quiet_imports():
    """Silence stderr while `QUIET_IMPORTS` are first imported (idempotent)."""
    if not any(isinstance(finder, _QuietImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())


def configure(verbose=False):
    """Set up the process' start-up logging; call it before TensorFlow is imported.

    Args:
        verbose: show TensorFlow's C++ start-up logs and transformers' advice
            (also exported as SMCN_VERBOSE=1 to child processes).
    """
    if verbose:
        os.environ[VERBOSE_ENVIRONMENT] = "1"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    install_quiet_imports()
