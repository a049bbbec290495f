"""The figures alone: panels, sizes and PNG bytes, without TensorFlow."""

import numpy as np

from smcn_tf.training.figures import (
    attention_figure,
    calibration_figure,
    confusion_matrix_figure,
    figure_to_png,
)


def test_confusion_figure_has_a_counts_and_a_recall_panel():
    figure = confusion_matrix_figure([[3, 1], [0, 2]], ["angry", "sad"], title="held out")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["counts", "row-normalised (recall)"]
    assert figure_to_png(figure).startswith(b"\x89PNG")


def test_attention_figure_draws_a_panel_per_attention_and_modality():
    rng = np.random.default_rng(0)
    audio = {"intra": np.full(6, 1 / 6), "calibration": rng.dirichlet(np.ones(6))}
    text = {"intra": np.full(4, 0.25), "calibration": rng.dirichlet(np.ones(4))}
    figure = attention_figure(
        "utt1", spectrogram=rng.normal(size=(6, 4)), audio_attention=audio,
        tokens=["[CLS]", "a", "b", "[SEP]"], text_attention=text, subtitle="true: sad",
    )
    width, height = figure.get_size_inches() * figure.dpi
    assert (width, height) == (1400, 100 + 3 * round(100 * (2.0 + 0.06 * 5)))
    # Spectrogram + 2 audio panels; the token cell + 2 text panels.
    titles = [ax.get_title() for ax in figure.axes]
    assert titles.count("audio: intra-modal attention (F)") == 1
    assert titles.count("text: calibration attention (Fc)") == 1
    assert len(figure.axes) == 6
    text_only = attention_figure("utt2", tokens=None, text_attention={"final": np.ones(3) / 3})
    assert len(text_only.axes) == 1
    assert text_only.axes[0].get_xlabel() == ""


def test_calibration_figure_draws_the_tags_it_is_given():
    series = {
        "calibration/cosine_Fca_Ft": ([0, 1], [0.1, 0.5]),
        "calibration/cosine_Fa_Ft": ([0, 1], [0.2, 0.2]),
        "calibration/mse_Fca_Ft": ([0, 1], [1.0, 0.4]),
    }
    cosine, mse = calibration_figure(series, title="Session1").axes
    assert len(cosine.lines) == 2 and len(mse.lines) == 1
    np.testing.assert_array_equal(cosine.lines[0].get_xdata(), [1, 2])  # epochs from 1
