"""The figures of the TensorBoard views: plain matplotlib, no TensorFlow.

Each function returns a matplotlib `Figure` drawn on the Agg canvas (no
pyplot, no GUI backend); `figure_to_png` gives the PNG bytes that
`tf.summary.image` logs (`smcn_tf.training.summaries`), and
`scripts/render_tensorboard_figures.py` saves the same figures to files.
"""

import io
import textwrap

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ATTENTION_TITLES = {
    "intra": "intra-modal attention (F)",
    "calibration": "calibration attention (Fc)",
    "interaction": "interaction attention (I1')",
    "final": "attention of the final head",
}



def _new_figure(width, height):
    """A figure on its own Agg canvas (no pyplot state, no GUI backend)."""
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure



def figure_to_png(figure):
    """The figure as PNG bytes (what `tf.summary.image` logs and the script saves)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()



def confusion_matrix_figure(matrix, class_names, title=None):
    """Two annotated panels: counts, and rows normalised to 1 (per-class recall).

    Args:
        matrix: `[classes, classes]` counts; rows are true classes.
        class_names: the class names, in id order.
        title: optional figure title.

    Returns:
        A matplotlib `Figure`.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(
        matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0
    )
    size = len(class_names)
    cell = max(0.45, min(0.9, 6.0 / max(size, 1)))
    side = 1.6 + cell * size
    figure = _new_figure(2 * side + 1.2, side + (0.5 if title else 0.2))
    axes = figure.subplots(1, 2)
    panels = (
        (axes[0], matrix, "counts", lambda v: f"{int(v)}", max(int(matrix.max()), 1)),
        (axes[1], normalised, "row-normalised (recall)", lambda v: f"{v:.2f}", 1.0),
    )
    font = max(5, min(10, int(40 / max(size, 1))))
    for ax, values, name, text, top in panels:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=font + 1)
        ax.set_yticklabels(class_names, fontsize=font + 1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                ax.text(
                    column, row, text(value), ha="center", va="center", fontsize=font,
                    color="white" if value > 0.5 * top else "black",
                )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure



def attention_figure(
    utterance_id,
    spectrogram=None,
    audio_attention=None,
    tokens=None,
    text_attention=None,
    subtitle=None,
    tokens_note=None,
):
    """Log-Mel frames with the audio attention, and the token attention over the tokens.

    Args:
        utterance_id: shown in the title.
        spectrogram: `[frames, mels]` (valid frames only), or None (no audio).
        audio_attention: `{kind: [frames]}` in drawing order, or None.
        tokens: the token labels (one per text attention weight), or None.
        text_attention: `{kind: [tokens]}`, or None.
        subtitle: a second title line (true and predicted class).
        tokens_note: a note under the token axis (e.g. that the labels are
            token positions, not strings).

    Returns:
        A matplotlib `Figure`: a column per modality; the audio column has
        the spectrogram on top, then one panel per attention kind on the
        same frame axis; the text column has one bar chart per kind.
    """
    audio_attention = audio_attention or {}
    text_attention = text_attention or {}
    has_audio = spectrogram is not None and bool(audio_attention)
    has_text = bool(text_attention)
    kinds = max(len(audio_attention), len(text_attention), 1)
    columns = int(has_audio) + int(has_text) or 1
    rows = kinds + (1 if has_audio else 0)
    # Room under each bar chart for its (rotated) token labels.
    longest = max((len(str(token)) for token in tokens or ()), default=2) if has_text else 0
    row_height = 2.0 + min(1.2, 0.06 * longest)
    figure = _new_figure(7.0 * columns, 1.0 + row_height * rows)
    grid = figure.add_gridspec(rows, columns)
    if has_audio:
        _draw_audio_column(figure, grid, 0, spectrogram, audio_attention)
    if has_text:
        _draw_text_column(
            figure, grid, int(has_audio), tokens, text_attention, tokens_note,
            spectrogram_row=has_audio,
        )
    title = f"{utterance_id}" + (f"\n{subtitle}" if subtitle else "")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _draw_audio_column(figure, grid, column, spectrogram, audio_attention):
    """The spectrogram on top, then one step plot per attention on its frame axis."""
    spectrogram = np.asarray(spectrogram)
    frames = spectrogram.shape[0]
    top = figure.add_subplot(grid[0, column])
    top.imshow(
        spectrogram.T, origin="lower", aspect="auto", cmap="magma",
        interpolation="nearest", extent=(-0.5, frames - 0.5, -0.5, spectrogram.shape[1] - 0.5),
    )
    top.set_title(f"log-Mel frames ({frames} frames)", fontsize=9)
    top.set_ylabel("Mel band")
    for index, (kind, weights) in enumerate(audio_attention.items()):
        ax = figure.add_subplot(grid[1 + index, column], sharex=top)
        weights = np.asarray(weights, dtype=np.float64)
        edges = np.arange(len(weights) + 1) - 0.5  # one step a frame
        ax.stairs(weights, edges, fill=True, alpha=0.5, color="tab:blue")
        ax.stairs(weights, edges, linewidth=1, color="tab:blue")
        ax.set_xlim(-0.5, frames - 0.5)
        ax.set_ylim(0, max(float(weights.max()) * 1.1, 1e-6))
        ax.set_title(f"audio: {ATTENTION_TITLES.get(kind, kind)}", fontsize=9)
        ax.set_ylabel("weight")
    ax.set_xlabel("frame")


def _draw_text_column(figure, grid, column, tokens, text_attention, tokens_note,
                      spectrogram_row):
    """One bar chart per attention over the tokens (under a token cell, with audio)."""
    count = len(next(iter(text_attention.values())))
    labels = list(tokens) if tokens is not None else [str(i) for i in range(count)]
    font = max(4, min(9, int(360 / max(count, 1))))
    offset = 1 if spectrogram_row else 0
    if spectrogram_row:  # the cell beside the spectrogram: the tokens, in full
        ax = figure.add_subplot(grid[0, column])
        ax.axis("off")
        words = tokens_note or " ".join(labels)
        ax.text(
            0.0, 1.0, textwrap.fill(f"tokens ({count}): {words}", 110), va="top",
            ha="left", fontsize=8, transform=ax.transAxes,
        )
    for index, (kind, weights) in enumerate(text_attention.items()):
        ax = figure.add_subplot(grid[offset + index, column])
        weights = np.asarray(weights, dtype=np.float64)
        ax.bar(np.arange(len(weights)), weights, color="tab:orange")
        ax.set_xlim(-0.6, len(weights) - 0.4)
        ax.set_xticks(np.arange(len(weights)))
        ax.set_xticklabels(labels, rotation=90, fontsize=font)
        ax.set_title(f"text: {ATTENTION_TITLES.get(kind, kind)}", fontsize=9)
        ax.set_ylabel("weight")
    if tokens_note:
        ax.set_xlabel(tokens_note, fontsize=8)


def calibration_figure(series, title=None):
    """Calibration diagnostics over epochs: a cosine panel and an MSE panel.

    Args:
        series: `{tag: (steps, values)}` as `read_scalars` returns; tags
            `calibration/cosine_*` and `calibration/mse_*` are drawn.
        title: optional figure title.

    Returns:
        A matplotlib `Figure`.
    """
    labels = {
        "Fca_Ft": "$F_c^a$ vs $F^t$",
        "Fct_Fa": "$F_c^t$ vs $F^a$",
        "Fa_Ft": "$F^a$ vs $F^t$ (baseline)",
    }
    figure = _new_figure(11, 3.8 if title else 3.5)
    axes = figure.subplots(1, 2)
    for ax, measure, name in ((axes[0], "cosine", "cosine similarity"), (axes[1], "mse", "MSE")):
        for pair, label in labels.items():
            tag = f"calibration/{measure}_{pair}"
            if tag not in series:
                continue
            steps, values = series[tag]
            style = "--" if pair == "Fa_Ft" else "-"
            ax.plot(np.asarray(steps) + 1, values, style, marker="o", markersize=3, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure

