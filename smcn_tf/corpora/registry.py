"""The corpora `smcn prepare` reads, behind one interface, registered by name.

A corpus adapter (`CorpusAdapter`) has a `name`, `defaults` (`CorpusDefaults`:
how many seconds of each clip to keep, and whether the corpus is a real
release with published counts) and a `load(root, strict=..., **options)`
that parses the corpus into a `LoadedCorpus`: the utterances, the class
names, the parser's report (what it dropped and why), the dropped counts by
reason, the counts check against the published counts, and the utterances
listed per group (for `smcn_tf.records.prepare.plan_shards`). `smcn_tf.records.prepare`
takes everything corpus-specific from there.

Built-in corpora (`corpus_names()`):

- `iemocap`: `IEMOCAP_full_release/`, read by `smcn_tf.corpora.iemocap.parse_iemocap`;
  the counts are checked against the published 4-class set.
- `demo`: the demo corpus in IEMOCAP's layout; the same reader, no published counts.
- `meld`: `MELD.Raw/`, read by `smcn_tf.corpora.meld.parse_meld`; the counts are checked
  against the release; clips are cut at 30 s.
- `demo-meld`: the demo corpus in MELD's layout; the same reader, no published counts.
- `csv`: a CSV manifest file, read by `smcn_tf.corpora.csv_corpus.parse_csv_corpus`
  (options `classes`, `label_map`).

Example:

>>> from smcn_tf.corpora import registry
>>> registry.corpus_names()
('iemocap', 'demo', 'meld', 'demo-meld', 'csv')
>>> registry.get_corpus("meld").defaults.max_seconds
30.0

and, on the demo corpus of `smcn demo-data` (not run as a test):

>>> loaded = registry.get_corpus("demo").load("work/demo/corpus")  # doctest: +SKIP
>>> loaded.class_names  # doctest: +SKIP
('angry', 'happy', 'neutral', 'sad')
"""

import dataclasses
import os
import typing

from smcn_tf.corpora import iemocap, meld
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
    """

    name: str
    root: str
    utterances: typing.List[Utterance]
    class_names: typing.Tuple[str, ...]
    parser_report: dict
    dropped: typing.Dict[str, int]
    counts_check: dict
    listed_counts: typing.Dict[str, int]


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


def _iemocap_counts_check(counts, compare):
    """The counts table and warnings of an IEMOCAP-layout parse.

    Args:
        counts: `iemocap.ParseResult.counts()`.
        compare: compare with `iemocap.EXPECTED_COUNTS` (the real release only).

    Returns:
        The report's `counts_check` entry.
    """
    expected = iemocap.EXPECTED_COUNTS if compare else None
    rows = []

    def add(name, section, key, parsed, expected_count):
        rows.append(count_row(name, section, key, parsed, expected_count))

    add("total", "total", None, counts["total"], expected and expected["total"])
    sections = (
        ("by_label", "label", "class"),
        ("by_group", "group", ""),
        ("by_raw_label", "raw_label", "raw label"),
        ("dropped_labels", "dropped_label", "dropped label"),
    )
    for source, section, noun in sections:
        keys = list(counts[source])
        if expected:
            keys += [key for key in expected[source] if key not in counts[source]]
        for key in keys:
            add(
                f"{noun} {key}".strip(), section, key, counts[source].get(key, 0),
                expected[source].get(key, 0) if expected else None,
            )
    warnings = iemocap.compare_to_expected(counts) if compare else []
    if counts["total"] != iemocap.EXPECTED_COUNTS["total"]:
        headline = (
            f"parsed {counts['total']} utterances, the standard 4-class set has "
            f"{iemocap.EXPECTED_COUNTS['total']}"
        )
    else:
        headline = (
            f"parsed {counts['total']} utterances as the standard 4-class set has, "
            "but the counts by class, session or label differ"
        )
    return {
        "reference": (
            f"IEMOCAP_full_release, 4-class set ({iemocap.EXPECTED_COUNTS['total']} utterances)"
            if compare else None
        ),
        "headline": headline if warnings else None,
        "rows": rows,
        "warnings": warnings,
    }


def _meld_counts_check(counts, compare):
    """The counts table and warnings of a MELD-layout parse.

    Args:
        counts: `meld.MeldParseResult.counts()`.
        compare: compare with `meld.EXPECTED_ROWS` (the real release only).

    Returns:
        The report's `counts_check` entry.
    """
    splits = list(counts["rows"])
    rows = []

    def add(name, section, key, parsed, expected_count):
        rows.append(count_row(name, section, key, parsed, expected_count if compare else None))

    total_rows = sum(counts["rows"].values())
    expected_total = sum(meld.EXPECTED_ROWS[split] for split in splits)
    add("rows total", "total", None, total_rows, expected_total)
    for split in splits:
        add(f"rows {split}", "group", split, counts["rows"][split], meld.EXPECTED_ROWS[split])
    for label in meld.CLASS_NAMES:
        add(
            f"emotion {label}", "label", label,
            sum(counts["rows_by_label"][split][label] for split in splits),
            sum(meld.EXPECTED_ROWS_BY_LABEL[split][label] for split in splits),
        )
    warnings = meld.compare_to_expected(counts) if compare else []
    by_split = ", ".join(f"{split} {meld.EXPECTED_ROWS[split]}" for split in splits)
    found_by_split = ", ".join(f"{split} {counts['rows'][split]}" for split in splits)
    return {
        "reference": f"the official MELD release ({by_split} rows)" if compare else None,
        "headline": (
            f"read {total_rows} rows ({found_by_split}), the official MELD release has "
            f"{expected_total} ({by_split})"
            if warnings else None
        ),
        "rows": rows,
        "warnings": warnings,
    }


class IemocapCorpus(CorpusAdapter):
    """The IEMOCAP_full_release layout (`iemocap`, and the demo corpus `demo`).

    Args:
        name: the registry name.
        real_release: compare the parse with the published 4-class counts.
        description: one line for `--help`.
    """

    def __init__(self, name, *, real_release, description=""):
        self.name = name
        self.description = description
        self.defaults = CorpusDefaults(max_seconds=None, real_release=real_release)

    def load(self, root, *, strict=False, **options):
        self.check_options(options)
        parsed = iemocap.parse_iemocap(root, strict=strict)
        counts = parsed.counts()
        parser_report = {
            "dropped_labels": parsed.dropped_labels,
            "skipped": parsed.skipped,
            "kept_labels": parsed.kept_labels,
            "counts": counts,
        }
        dropped = count_reasons(parsed.skipped)
        for label, count in parsed.dropped_labels.items():
            dropped[f"label {label} (not one of the classes)"] = count

        def session_of(utterance_id):
            parts = iemocap.parse_utterance_id(utterance_id)
            return None if parts is None else f"Session{parts['session']}"

        return LoadedCorpus(
            name=self.name,
            root=os.fspath(root),
            utterances=parsed.utterances,
            class_names=tuple(iemocap.CLASS_NAMES),
            parser_report=parser_report,
            dropped=dropped,
            counts_check=_iemocap_counts_check(counts, self.defaults.real_release),
            listed_counts=count_listed(parsed.utterances, parsed.skipped, session_of),
        )


class MeldCorpus(CorpusAdapter):
    """The MELD.Raw layout (`meld`, and the demo corpus `demo-meld`).

    Args:
        name: the registry name.
        real_release: compare the parse with the official release's row counts.
        description: one line for `--help`.
    """

    def __init__(self, name, *, real_release, description=""):
        self.name = name
        self.description = description
        # MELD has clips of minutes; 30 s is more than 500 pooled frames of 40 ms need.
        self.defaults = CorpusDefaults(max_seconds=30.0, real_release=real_release)

    def load(self, root, *, strict=False, **options):
        self.check_options(options)
        parsed = meld.parse_meld(root, strict=strict)
        counts = parsed.counts()
        parser_report = {
            "skipped": parsed.skipped,
            "unannotated_media": {
                split: {"count": len(names), "examples": names[:REPORT_EXAMPLE_NAMES]}
                for split, names in parsed.unannotated_media.items()
            },
            "encodings": parsed.encodings,
            "files": parsed.files,
            "counts": counts,
        }
        # MELD ids are "<split>_dia<d>_utt<u>"; the split is the group.
        listed = count_listed(
            parsed.utterances, parsed.skipped, lambda utterance_id: utterance_id.split("_")[0]
        )
        return LoadedCorpus(
            name=self.name,
            root=os.fspath(root),
            utterances=parsed.utterances,
            class_names=tuple(meld.CLASS_NAMES),
            parser_report=parser_report,
            dropped=count_reasons(parsed.skipped),
            counts_check=_meld_counts_check(counts, self.defaults.real_release),
            listed_counts=listed,
        )


_ADAPTERS = {}
_BUILTINS_REGISTERED = False


def _register_builtins():
    """Register the built-in corpora once, on first use.

    Late, because `smcn_tf.corpora.csv_corpus` imports this module for
    `CorpusAdapter`.
    """
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True
    from smcn_tf.corpora import csv_corpus

    for adapter in (
        IemocapCorpus(
            "iemocap", real_release=True,
            description="IEMOCAP_full_release (4 classes; counts checked against the release)",
        ),
        IemocapCorpus("demo", real_release=False, description="the demo corpus, IEMOCAP layout"),
        MeldCorpus(
            "meld", real_release=True,
            description="MELD.Raw (7 classes; counts checked against the release)",
        ),
        MeldCorpus("demo-meld", real_release=False, description="the demo corpus, MELD layout"),
        csv_corpus.CsvCorpus(),
    ):
        _ADAPTERS[adapter.name] = adapter


def register_corpus(adapter, replace=False):
    """Make a corpus adapter available by its name (to `smcn prepare` too).

    Args:
        adapter: a `CorpusAdapter` with a non-empty `name`.
        replace: allow replacing an adapter of the same name.

    Returns:
        The adapter.

    Raises:
        ValueError: no name, or the name is taken and `replace` is False.

    Example:

    >>> class MyCorpus(CorpusAdapter):
    ...     name = "my-corpus"
    ...     def load(self, root, *, strict=False, **options): ...
    >>> adapter = register_corpus(MyCorpus())
    >>> corpus_names()[-1], get_corpus("my-corpus") is adapter
    ('my-corpus', True)
    """
    _register_builtins()
    name = getattr(adapter, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"A corpus adapter needs a non-empty name, got {name!r}.")
    if name in _ADAPTERS and not replace:
        raise ValueError(f"A corpus named {name!r} is already registered.")
    _ADAPTERS[name] = adapter
    return adapter


def corpus_names():
    """The registered corpus names, built-in ones first.

    Returns:
        A tuple, e.g. `('iemocap', 'demo', 'meld', 'demo-meld', 'csv')`.
    """
    _register_builtins()
    return tuple(_ADAPTERS)


def get_corpus(name):
    """The adapter registered under `name`.

    Args:
        name: a corpus name, e.g. `"iemocap"` or `"csv"`.

    Returns:
        A `CorpusAdapter`.

    Raises:
        ValueError: no corpus of that name; the message lists the known ones.

    Example:

    >>> get_corpus("iemocap").defaults.real_release
    True
    """
    _register_builtins()
    adapter = _ADAPTERS.get(name) if isinstance(name, str) else None
    if adapter is None:
        raise ValueError(f"Unknown corpus {name!r}; known corpora: {list(_ADAPTERS)}.")
    return adapter
