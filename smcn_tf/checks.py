"""Argument checks shared across the package (one rule, one message)."""

import numbers


def integer_at_least(value, name, minimum=1, allow_none=False):
    """`value` as an int, or a ValueError naming it when it is not an integer >= `minimum`.

    Booleans are refused (True is an int to Python, never a count to a user).

    Args:
        value: the value to check (any `numbers.Integral`, numpy ints included).
        name: how the error names the value, e.g. "manifest.json: `pooling`".
        minimum: the smallest accepted value.
        allow_none: whether None is accepted (and returned as None).

    Returns:
        `int(value)`, or None when `value` is None and `allow_none`.

    Example:

    >>> integer_at_least(3, "steps")
    3
    >>> integer_at_least(0, "steps")
    Traceback (most recent call last):
    ...
    ValueError: steps must be an integer >= 1, got 0.
    >>> integer_at_least(None, "max_frames", allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)
