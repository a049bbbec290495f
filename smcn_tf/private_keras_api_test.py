"""The private Keras symbols smcn_tf uses, named one by one.

An upgrade of Keras that moves or changes one of them fails here (and at
import, see `smcn_tf.private_keras_api`) instead of changing training.
"""

import importlib
import inspect
import os
import re

import keras
import pytest

from smcn_tf import private_keras_api
from smcn_tf import train
from smcn_tf.model import recurrent  # noqa: F401 (fetches its private symbols)
from smcn_tf.training import resume  # noqa: F401 (likewise)

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every private Keras symbol the package uses, and where.
PRIVATE_SYMBOLS = {
    "keras.src.backend.tensorflow.rnn.gru": "smcn_tf/model/recurrent.py",
    "keras.src.backend.common.global_state.get_global_attribute":
        "smcn_tf/training/resume.py",
    "keras.src.random.seed_generator.GLOBAL_SEED_GENERATOR": "smcn_tf/training/resume.py",
    "keras.src.random.seed_generator.global_seed_generator": "smcn_tf/training/resume.py",
}
# The private methods of `keras.Model`, named after the Keras class that defines them.
PRIVATE_METHODS = {
    "keras.src.trainers.trainer.Trainer._symbolic_build": "smcn_tf/train.py",
    "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build":
        "smcn_tf/train.py",
}


def _version(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def test_the_installed_keras_is_the_tested_one():
    lower, upper = re.fullmatch(r">=([\d.]+),<([\d.]+)", private_keras_api.TESTED_KERAS).groups()
    assert _version(lower) <= _version(keras.__version__) < _version(upper), (
        f"Keras {keras.__version__} is outside the tested range "
        f"{private_keras_api.TESTED_KERAS}: check every symbol of this file, then move the "
        "range here and in setup.py."
    )
    with open(os.path.join(REPOSITORY, "setup.py"), encoding="utf-8") as stream:
        setup = stream.read()
    assert f'"keras{private_keras_api.TESTED_KERAS}"' in setup


def test_the_modules_fetch_exactly_these_symbols():
    assert set(private_keras_api.USED) == set(PRIVATE_SYMBOLS) | set(PRIVATE_METHODS)
    for symbol, path in {**PRIVATE_SYMBOLS, **PRIVATE_METHODS}.items():
        module_name, name = symbol.rsplit(".", 1)
        with open(os.path.join(REPOSITORY, path), encoding="utf-8") as stream:
            source = stream.read()
        assert f'"{name}"' in source, (symbol, path)
        if symbol in PRIVATE_SYMBOLS:
            assert f'"{module_name}"' in source, (symbol, path)
        else:
            assert "private_method(keras.Model, " in source, (symbol, path)
    # No other module imports keras.src.
    for directory, _, files in os.walk(os.path.join(REPOSITORY, "smcn_tf")):
        for file_name in files:
            if file_name.endswith(".py") and not file_name.endswith("_test.py"):
                with open(os.path.join(directory, file_name), encoding="utf-8") as stream:
                    source = stream.read()
                assert "from keras.src" not in source, file_name
                assert "import keras.src" not in source, file_name


def test_keras_cudnn_gru():
    # The module, not the `rnn` function that its package exports as well.
    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    assert private_keras_api.USED["keras.src.backend.tensorflow.rnn.gru"] is rnn.gru
    parameters = list(inspect.signature(rnn.gru).parameters)
    # FusedBidirectionalGRU passes the first six by position.
    assert parameters[:6] == [
        "inputs", "initial_state", "mask", "kernel", "recurrent_kernel", "bias"
    ]
    assert {"activation", "recurrent_activation", "return_sequences"} <= set(parameters)


def test_keras_global_seed_generator():
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    assert seed_generator.GLOBAL_SEED_GENERATOR == "global_seed_generator"
    get = global_state.get_global_attribute
    assert list(inspect.signature(get).parameters)[0] == "name"
    # set_random_seed drops the global generator; the getter reads it without
    # making one; the first unseeded keras.random call makes it.
    keras.utils.set_random_seed(0)
    assert get(seed_generator.GLOBAL_SEED_GENERATOR) is None
    keras.random.uniform((2,))
    generator = get(seed_generator.GLOBAL_SEED_GENERATOR)
    assert isinstance(generator, keras.random.SeedGenerator)
    assert seed_generator.global_seed_generator() is generator
    # Its whole state is one variable, which resume saves and assigns.
    before = keras.ops.convert_to_numpy(generator.state.value).tolist()
    keras.random.uniform((2,))
    assert keras.ops.convert_to_numpy(generator.state.value).tolist() != before
    generator.state.assign(before)
    assert keras.ops.convert_to_numpy(generator.state.value).tolist() == before


def test_keras_symbolic_build():
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer
    from keras.src.trainers import trainer

    used = private_keras_api.USED
    symbolic_build = used["keras.src.trainers.trainer.Trainer._symbolic_build"]
    assert symbolic_build is trainer.Trainer._symbolic_build is keras.Model._symbolic_build
    # _build_for_fit passes data_batch (the input's spec) by keyword.
    assert "data_batch" in inspect.signature(symbolic_build).parameters
    maybe_build = used[
        "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build"
    ]
    assert maybe_build is tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build
    assert keras.Model._maybe_symbolic_build is maybe_build
    # The override takes what Keras passes, and fit and evaluate still call it.
    override = train.DistributedSMCNModel._maybe_symbolic_build
    assert inspect.signature(override) == inspect.signature(maybe_build)
    for method in (tensorflow_trainer.TensorFlowTrainer.fit,
                   tensorflow_trainer.TensorFlowTrainer.evaluate):
        assert "self._maybe_symbolic_build(" in inspect.getsource(method), method


def test_a_missing_symbol_names_itself_and_the_tested_range():
    with pytest.raises(ImportError, match=r"keras\.src\.random\.seed_generator\.no_such.*"
                       r"keras>=3\.15,<3\.16"):
        private_keras_api.private_function("keras.src.random.seed_generator", "no_such")
    with pytest.raises(ImportError, match="no module keras.src.no_such_module"):
        private_keras_api.private_function("keras.src.no_such_module", "gru")
    with pytest.raises(ImportError, match="has no parameter go_sideways"):
        private_keras_api.private_function(
            "keras.src.backend.tensorflow.rnn", "gru", parameters=("inputs", "go_sideways")
        )
    with pytest.raises(ImportError, match="is not of type int"):
        private_keras_api.private_constant(
            "keras.src.random.seed_generator", "GLOBAL_SEED_GENERATOR", int
        )
    with pytest.raises(ImportError, match=r"keras\.src\.models\.model\.Model\._no_such.*"
                       r"keras>=3\.15,<3\.16"):
        private_keras_api.private_method(keras.Model, "_no_such")
    with pytest.raises(ImportError, match=r"Trainer\._symbolic_build.*has no parameter go_sideways"):
        private_keras_api.private_method(
            keras.Model, "_symbolic_build", parameters=("data_batch", "go_sideways")
        )
    with pytest.raises(ImportError, match=r"Trainer\.metrics, which is not a method"):
        private_keras_api.private_method(keras.Model, "metrics")
    assert not {"keras.src.random.seed_generator.no_such"} & set(private_keras_api.USED)
    assert not [
        symbol for symbol in private_keras_api.USED if symbol.endswith((".metrics", "._no_such"))
    ]
