"""The corpus adapter interface: what every corpus returns, and report helpers.

`CorpusAdapter.load(root, **options)` returns a `LoadedCorpus`: the
utterances, the class names, what was dropped and why, the counts check
against a release's published counts, and the listed counts per group that
`smcn_tf.records.prepare.plan_shards` needs. The registry
(`smcn_tf.corpora.registry`) holds the adapters by name.
"""

import dataclasses
import typing

from smcn_tf.corpora.utterance import Utterance

# How many unannotated media file names the MELD parser report quotes per split.
REPORT_EXAMPLE_NAMES = 10

# Leading phrases of skip reasons, from the parsers and from the feature stage
# of `smcn_tf.records.prepare`; reports count drops by these.
SKIP_REASON_KINDS = (
    "missing media file",
    "empty media file",
    "annotated twice",
    "missing audio file",
    "no transcription line",
    "cannot read audio",
    "truncated audio file",
    "expected a non-empty mono waveform",
    "audio too short",
)


def reason_kind(reason):
    """The kind of a skip reason, for counting.

    Args:
        reason: a skip reason, e.g. `"missing audio file /data/a.wav (line 3)"`.

    Returns:
        Its leading phrase from `SKIP_REASON_KINDS` (e.g. `"missing audio
        file"`), `"shorter than 0.1 s"` for a too-short clip, or the reason
        itself.
    """
    if reason.startswith("shorter than "):  # "shorter than 0.1 s: 0.0001 s (1 sample)"
        return reason.split(":", 1)[0]
    for kind in SKIP_REASON_KINDS:
        if reason.startswith(kind):
            return kind
    return reason


def count_reasons(skipped):
    """Count `(utterance_id, reason)` pairs by the kind of their reason.

    Returns:
        `{kind: count}`; see `reason_kind`.
    """
    kinds = {}
    for _, reason in skipped:
        kind = reason_kind(reason)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def count_listed(utterances, skipped, group_of):
    """`{group: n}` of the distinct utterance ids a parser kept or skipped.

    Args:
        utterances: the parser's kept utterances.
        skipped: its `(utterance_id, reason)` skips (missing media, ...).
        group_of: `utterance_id -> group` for a skipped id (None: unknown,
            not counted).

    Returns:
        The counts, sorted by group.
    """
    ids = {utterance.utterance_id: utterance.group for utterance in utterances}
    for utterance_id, _ in skipped:
        if utterance_id not in ids:
            ids[utterance_id] = group_of(utterance_id)
    counts = {}
    for group in ids.values():
        if group is not None:
            counts[group] = counts.get(group, 0) + 1
    return dict(sorted(counts.items()))


def count_row(name, section, key, parsed, expected):
    """One row of a counts check: parsed beside expected (None: no reference)."""
    return {"name": name, "section": section, "key": key, "parsed": parsed,
            "expected": expected}


@dataclasses.dataclass(frozen=True)
class CorpusDefaults:
    """What `smcn_tf.records.prepare.prepare_corpus` assumes for a corpus unless told.

    Args:
        max_seconds: seconds of audio kept per clip when the caller gives no
            limit; None keeps whole clips.
        real_release: the corpus is a published release with known counts;
            `load` then compares the parse with them and `prepare_corpus`
            warns loudly when they differ.
    """

    max_seconds: typing.Optional[float] = None
    real_release: bool = False


@dataclasses.dataclass
class LoadedCorpus:
    """A parsed corpus, as `smcn_tf.records.prepare` needs it.

    Args:
        name: the corpus name it was loaded as, e.g. `"iemocap"`.
        root: the root it was loaded from, as given.
        utterances: the kept `Utterance` objects.
        class_names: the class names; a label is stored as its index here.
        parser_report: what the parser found, for `report.json` under
            `parser` (skips, dropped labels, counts, ...).
        dropped: `{reason: count}` of the utterances the parser left out,
            for the report's `dropped`.
        counts_check: the report's `counts_check`: `reference` (None when
            there are no published counts), `headline`, `rows` (see
            `count_row`) and `warnings` (empty when the counts match or
            there is no reference).
        listed_counts: `{group: n}` of the utterances the corpus lists per
            group, kept or skipped by the parser, for `plan_shards`.
        lines: `{utterance_id: line}`, where each utterance is listed in a
            manifest corpus (csv), kept or skipped; the report gives the line
            of every utterance it skips or warns about. Empty for corpora
            without one manifest.
    """

    name: str
    root: str
    utterances: typing.List[Utterance]
    class_names: typing.Tuple[str, ...]
    parser_report: dict
    dropped: typing.Dict[str, int]
    counts_check: dict
    listed_counts: typing.Dict[str, int]
    lines: typing.Dict[str, int] = dataclasses.field(default_factory=dict)


class CorpusAdapter:
    """Reads one kind of corpus; subclasses implement `load`.

    Attributes:
        name: the registry name, e.g. `"iemocap"`.
        description: one line for `--help`.
        defaults: a `CorpusDefaults`.
        option_names: the keyword options `load` takes beyond `strict`
            (e.g. `("classes", "label_map")` for `csv`).
        root_kind: `"directory"` (the corpus root, `--data-dir`) or `"file"`
            (a manifest file, `--manifest`).
    """

    name = None
    description = ""
    defaults = CorpusDefaults()
    option_names = ()
    root_kind = "directory"

    def load(self, root, *, strict=False, **options):
        """Parse the corpus under `root`.

        Args:
            root: the corpus root (a directory, or a file for `root_kind
                "file"`).
            strict: raise on a missing or empty media file (and what else the
                corpus treats as a skip) instead of skipping it.
            **options: the corpus' own options, see `option_names`.

        Returns:
            A `LoadedCorpus`.

        Raises:
            CorpusFormatError: the corpus is malformed; the message names the
                file and line.
            ValueError: an option this corpus does not take.
        """
        raise NotImplementedError

    def check_options(self, options):
        """Raise ValueError naming any option this corpus does not take."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            takes = (
                f"it takes {', '.join(self.option_names)}" if self.option_names
                else "it takes none"
            )
            raise ValueError(
                f"Corpus {self.name!r} does not take the option(s) {', '.join(unknown)}; {takes}."
            )

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"
