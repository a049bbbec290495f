"""Package attributes imported on first use.

`smcn_tf.contract`, `smcn_tf.export` and `smcn_tf.serving` name their public
objects at the package level, but importing the package must stay cheap
(`smcn --help`, the REST client): each name's module is imported only when
the name is first read.
"""

import importlib


def lazy_getattr(package_name, exports):
    """A module-level `__getattr__` that imports each exported name on first use.

    Args:
        package_name: the package's `__name__`, for the error message.
        exports: a dict `{attribute name: module that defines it}`.

    Returns:
        A function to assign to the package's `__getattr__` (PEP 562).

    Example:

    >>> __getattr__ = lazy_getattr("example", {"dedent": "textwrap"})
    >>> __getattr__("dedent")("  indented")
    'indented'
    """

    def __getattr__(name):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package_name!r} has no attribute {name!r}")

    return __getattr__
