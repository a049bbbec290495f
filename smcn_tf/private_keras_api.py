"""The private Keras API this package uses, checked when it is imported.

Keras 3 has no public API for three things the package needs:

- a cuDNN GRU on given weights: `keras.src.backend.tensorflow.rnn.gru`, what
  `keras.layers.GRU` runs on a GPU, which `FusedBidirectionalGRU`
  (`smcn_tf.model.recurrent`) calls with its own weights;
- Keras's global `SeedGenerator` (the random state of unseeded
  `keras.random` calls): `keras.src.backend.common.global_state` and
  `keras.src.random.seed_generator`, which `smcn_tf.training.resume` reads
  and restores so that a resumed run stays bit-identical
  (`keras.utils.set_random_seed` only drops it);
- under a tf.distribute strategy, building the compiled metrics and loss
  from the input's spec before `fit` (so that a backup can be loaded first),
  and stopping `fit` from pulling a batch through the replicas to build them
  again: `keras.Model`'s private methods `_symbolic_build`, which
  `smcn_tf.train` calls, and `_maybe_symbolic_build`, which it overrides.

Private symbols may move or change in any Keras release. So setup.py pins
Keras to the releases this code is tested on (`TESTED_KERAS`), and the
modules that use one fetch it with `private_function`, `private_constant` or
`private_method`: a missing symbol, or a function without the parameters the
code passes, raises an ImportError that names the symbol and the tested
range, instead of letting training change silently. `private_keras_api_test.py` names every
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


def _check_parameters(symbol, function, parameters):
    signature = inspect.signature(function)
    missing = [parameter for parameter in parameters if parameter not in signature.parameters]
    if missing:
        _fail(symbol, f"has no parameter {', '.join(missing)}")


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
    _check_parameters(symbol, function, parameters)
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


def private_method(cls, name, parameters=()):
    """A private method of a public Keras class, checked: present, with these parameters.

    For a method the code calls or overrides: an override of a method that
    Keras no longer has (or calls with other arguments) would be dead code,
    so it is checked like a call.

    Args:
        cls: the public class, e.g. `keras.Model`.
        name: the method's name, e.g. `"_symbolic_build"`.
        parameters: the parameter names the caller passes, or the override
            takes (after `self`); each must be in the method's signature.

    Returns:
        The function that defines the method, named in `USED` after the
        Keras class that defines it, e.g.
        `"keras.src.trainers.trainer.Trainer._symbolic_build"`.

    Raises:
        ImportError: it is missing, not a function, or lacks a parameter.
    """
    owners = [owner for owner in cls.__mro__ if name in vars(owner)]
    if not owners:
        _fail(f"{cls.__module__}.{cls.__qualname__}.{name}", "is missing")
    owner = owners[0]
    symbol = f"{owner.__module__}.{owner.__qualname__}.{name}"
    function = vars(owner)[name]
    if not inspect.isfunction(function):
        _fail(symbol, "is not a method")
    _check_parameters(symbol, function, parameters)
    USED[symbol] = function
    return function
