"""The private Keras API this package uses, checked when it is imported.

Keras 3 has no public API for two things the package needs:

- a cuDNN GRU on given weights: `keras.src.backend.tensorflow.rnn.gru`, what
  `keras.layers.GRU` runs on a GPU, which `FusedBidirectionalGRU`
  (`smcn_tf.model.recurrent`) calls with its own weights;
- Keras's global `SeedGenerator` (the random state of unseeded
  `keras.random` calls): `keras.src.backend.common.global_state` and
  `keras.src.random.seed_generator`, which `smcn_tf.training.resume` reads
  and restores so that a resumed run stays bit-identical
  (`keras.utils.set_random_seed` only drops it).

Private symbols may move or change in any Keras release. So setup.py pins
Keras to the releases this code is tested on (`TESTED_KERAS`), and the
modules that use one fetch it with `private_function` or `private_constant`:
a missing symbol, or a function without the parameters the code passes,
raises an ImportError that names the symbol and the tested range, instead of
letting training change silently. `private_keras_api_test.py` names every
symbol and checks what the code relies on.
"""

import importlib
import inspect

# Also the Keras pin of setup.py (`private_keras_api_test` checks both agree).
TESTED_KERAS = ">=3.15,<3.16"

# Every private symbol fetched so far: "module.attribute" -> the value.
USED = {}


def _fail(symbol, problem):
    raise ImportError(
        f"smcn_tf uses Keras's private {symbol}, which {problem} in the installed "
        f"Keras. smcn_tf is tested with keras{TESTED_KERAS}: install a Keras in that "
        f"range (pip install 'keras{TESTED_KERAS}')."
    )


def _attribute(module_name, name):
    symbol = f"{module_name}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        _fail(symbol, f"cannot be imported (no module {module_name})")
    if not hasattr(module, name):
        _fail(symbol, "is missing")
    return symbol, getattr(module, name)


def private_function(module_name, name, parameters=()):
    """A private Keras function, checked: present, callable, with these parameters.

    Args:
        module_name: e.g. `"keras.src.backend.tensorflow.rnn"`.
        name: the function's name in that module.
        parameters: the parameter names the caller passes (by position or
            keyword); each must be in the function's signature.

    Returns:
        The function.

    Raises:
        ImportError: it is missing, not callable, or lacks a parameter.
    """
    symbol, function = _attribute(module_name, name)
    if not callable(function):
        _fail(symbol, "is not callable")
    signature = inspect.signature(function)
    missing = [parameter for parameter in parameters if parameter not in signature.parameters]
    if missing:
        _fail(symbol, f"has no parameter {', '.join(missing)}")
    USED[symbol] = function
    return function


def private_constant(module_name, name, kind):
    """A private Keras constant, checked: present and an instance of `kind`.

    Args:
        module_name: e.g. `"keras.src.random.seed_generator"`.
        name: the constant's name in that module.
        kind: its expected type, e.g. `str`.

    Returns:
        The value.

    Raises:
        ImportError: it is missing or of another type.
    """
    symbol, value = _attribute(module_name, name)
    if not isinstance(value, kind):
        _fail(symbol, f"is not of type {kind.__name__}")
    USED[symbol] = value
    return value
