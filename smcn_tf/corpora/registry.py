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

import os

from smcn_tf.corpora import csv_corpus, iemocap, meld
# The adapter interface, importable from here too.
from smcn_tf.corpora.adapter import (  # noqa: F401
    REPORT_EXAMPLE_NAMES,
    SKIP_REASON_KINDS,
    CorpusAdapter,
    CorpusDefaults,
    LoadedCorpus,
    count_listed,
    count_reasons,
    count_row,
    reason_kind,
)

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
    """Register the built-in corpora once, on first use."""
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True

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
