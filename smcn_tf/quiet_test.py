"""Quiet start-up: the --verbose switch, and stderr silenced while a noisy module loads."""

import os
import subprocess
import sys

import pytest

from smcn_tf import quiet

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--verbose", "train", "--data", "d"], True),
        (["train", "--verbose", "2"], False),  # train's Keras verbosity, not ours
        (["report", "--run", "r"], False),
        ([], False),
    ],
)
def test_verbose_counts_only_before_the_command(monkeypatch, argv, expected):
    monkeypatch.delenv(quiet.VERBOSE_ENVIRONMENT, raising=False)
    assert quiet.verbose_requested(argv) is expected


def test_verbose_from_the_environment(monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENVIRONMENT, "1")
    assert quiet.verbose_requested(["train", "--verbose", "0"]) is True


def test_stderr_silenced_hides_file_descriptor_writes_and_restores(capfd):
    with quiet.stderr_silenced():
        os.write(2, b"from C++\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_a_noisy_import_is_silent_and_its_errors_still_raise(tmp_path):
    (tmp_path / "noisy.py").write_text(
        "import os, sys\n"
        "os.write(2, b'load-time noise\\n')\n"
        "print('Python noise', file=sys.stderr)\n"
        "VALUE = 42\n"
    )
    (tmp_path / "broken.py").write_text(
        "import os\nos.write(2, b'more noise\\n')\nraise ImportError('broken on purpose')\n"
    )
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(tmp_path)!r}, {REPOSITORY!r}]\n"
        "from smcn_tf import quiet\n"
        "quiet.QUIET_IMPORTS = ('noisy', 'broken')\n"
        "quiet.configure(False)\n"
        "import noisy\n"
        "assert noisy.VALUE == 42 and type(noisy.__loader__).__name__ != '_QuietLoader'\n"
        "print('loaded', file=sys.stderr)\n"
        "import broken\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENVIRONMENT}
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment,
        check=False,
    )
    assert completed.returncode == 1
    assert "noise" not in completed.stderr
    assert "loaded" in completed.stderr and "broken on purpose" in completed.stderr
