"""Tests for the csv corpus: manifest parsing, its errors, audio, and `smcn prepare csv`."""

import json
import os
import re

import numpy as np
import pytest
import soundfile

from smcn_tf.corpora import csv_corpus, registry
from smcn_tf.corpora.utterance import CorpusFormatError

SAMPLE_RATE = 16000


class FakeTextEncoder:
    """A deterministic stand-in for `TextEncoder`: one 8-d vector per word + 2."""

    dim = 8
    max_tokens = 150
    checkpoint_dir = None

    def encode(self, texts, progress=False):
        return [np.full((len(text.split()) + 2, self.dim), len(text) / 10.0, np.float32)
                for text in texts]


class WordPieceTextEncoder(FakeTextEncoder):
    """`FakeTextEncoder` with the word pieces of the real MiniLM tokenizer."""

    def __init__(self):
        import transformers

        from smcn_tf.features.text import default_checkpoint_dir

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            default_checkpoint_dir(), local_files_only=True
        )
        self.special_tokens = tuple(self.tokenizer.all_special_tokens)

    def token_strings(self, texts):
        return [self.tokenizer.convert_ids_to_tokens(self.tokenizer(text)["input_ids"])
                for text in texts]


def _tone(seconds, rate, frequency=220.0, amplitude=0.3):
    times = np.arange(int(round(seconds * rate))) / rate
    return amplitude * np.sin(2 * np.pi * frequency * times)


def _write_wav(path, seconds=0.5, rate=SAMPLE_RATE, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = _tone(seconds, rate)
    if channels == 2:
        samples = np.stack([samples, 0.5 * samples], axis=1)
    soundfile.write(path, samples, rate, "PCM_16")
    return path


def _write_csv(path, lines, line_end="\n", bom=False):
    text = line_end.join(lines) + line_end
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.fixture
def corpus(tmp_path):
    """A manifest in a folder with its audio: free column order, relative paths."""
    root = tmp_path / "mine"
    for name in ("alice_01", "alice_02", "bob_01", "bob_02", "carol_01"):
        _write_wav(root / "audio" / f"{name}.wav")
    manifest = _write_csv(
        root / "manifest.csv",
        [
            "label,path,group,transcript",
            "neu,audio/alice_01.wav,alice,Hello   there.",
            'exc,audio/alice_02.wav,alice,"Well, that went nicely."',
            "ang,audio/bob_01.wav,bob,I can't believe you did that!",
            "hap,audio/bob_02.wav,bob,What a day.",
            "sad,audio/carol_01.wav,carol,It is over.",
        ],
    )
    return manifest


def test_parses_a_manifest(corpus):
    result = csv_corpus.parse_csv_corpus(corpus)
    assert result.class_names == ("neu", "exc", "ang", "hap", "sad")  # first appearance
    first = result.utterances[0]
    assert first.utterance_id == "audio/alice_01.wav"
    assert first.audio_path == os.fspath(corpus.parent / "audio" / "alice_01.wav")
    assert first.transcript == "Hello there."
    assert (first.speaker, first.group) == ("alice", "alice")
    assert first.start_seconds is None and not first.is_segment
    assert result.utterances[1].transcript == "Well, that went nicely."
    assert result.listed_counts == {"alice": 2, "bob": 2, "carol": 1}
    assert result.lines["audio/bob_01.wav"] == 4
    assert result.skipped == [] and result.dropped_labels == {}


def test_classes_order_and_label_map_merge(corpus):
    result = csv_corpus.parse_csv_corpus(corpus, classes="neu,hap,ang", label_map="exc:hap")
    assert result.class_names == ("neu", "hap", "ang")
    assert [u.label for u in result.utterances] == ["neu", "hap", "ang", "hap"]
    assert result.kept_labels == {"ang": 1, "exc": 1, "hap": 1, "neu": 1}
    # A label outside the classes is dropped and counted, not an error.
    assert result.dropped_labels == {"sad": 1}
    assert result.listed_counts == {"alice": 2, "bob": 2}

    # Without --classes, merged labels take the place of their first appearance.
    merged = csv_corpus.parse_csv_corpus(corpus, label_map={"exc": "hap", "sad": "neu"})
    assert merged.class_names == ("neu", "hap", "ang")

    loaded = registry.get_corpus("csv").load(corpus, classes=["neu", "hap", "ang"],
                                             label_map="exc:hap")
    assert loaded.dropped == {"label sad (not one of the classes)": 1}
    assert loaded.parser_report["label_map"] == {"exc": "hap"}
    assert loaded.parser_report["counts"]["by_label"] == {"neu": 1, "hap": 2, "ang": 1}
    assert loaded.counts_check["warnings"] == [] and loaded.counts_check["reference"] is None


def test_bom_crlf_quoted_newlines_and_extra_columns(tmp_path):
    _write_wav(tmp_path / "a.wav")
    _write_wav(tmp_path / "b.wav")
    manifest = _write_csv(
        tmp_path / "m.csv",
        [
            " Path , TRANSCRIPT,label,group,speaker,id",
            'a.wav,"Two lines,\r\nin one field",hap,s1,Ses01F,first',
            "",
            "b.wav,Plain.,sad,s1,,second",
        ],
        line_end="\r\n",
        bom=True,
    )
    result = csv_corpus.parse_csv_corpus(manifest)
    assert [u.utterance_id for u in result.utterances] == ["first", "second"]
    assert result.utterances[0].transcript == "Two lines, in one field"
    assert result.utterances[0].speaker == "Ses01F"
    assert result.utterances[1].speaker == "s1"  # an empty speaker: the group
    # The multi-line field does not shift the line numbers that follow.
    assert result.lines == {"first": 2, "second": 5}


def test_segments(tmp_path):
    _write_wav(tmp_path / "long.wav", seconds=3.0)
    manifest = _write_csv(
        tmp_path / "m.csv",
        [
            "path,transcript,label,group,start,end",
            "long.wav,One.,hap,s1,0.5,1.25",
            "long.wav,Two.,sad,s1,1.25,",
            "long.wav,Three.,sad,s1,,0.5",
            "long.wav,All of it.,hap,s1,,",
        ],
    )
    utterances = csv_corpus.parse_csv_corpus(manifest).utterances
    assert [(u.utterance_id, u.start_seconds, u.end_seconds) for u in utterances] == [
        ("long.wav@0.500-1.250", 0.5, 1.25),
        ("long.wav@1.250-end", 1.25, None),
        ("long.wav@0.000-0.500", None, 0.5),
        ("long.wav", None, None),
    ]
    assert [u.is_segment for u in utterances] == [True, True, True, False]


HEADER = "path,transcript,label,group,start,end,id"


@pytest.mark.parametrize(
    "lines, line, pattern",
    [
        (["path,transcript,group", "a.wav,Hi.,s1"], 1, r"missing column 'label' in the header"),
        ([HEADER.replace("start", "strat"), "a.wav,Hi.,hap,s1,,,"], 1,
         r"unknown column 'strat' in the header; known columns: path, transcript, label, "
         r"group, speaker, start, end, id"),
        (["path,transcript,label,label,group", "a.wav,Hi.,hap,hap,s1"], 1,
         r"column 'label' appears twice"),
        ([HEADER, "a.wav,Hi.,hap,s1,,,", "a.wav,  ,hap,s1,1,2,"], 3,
         r"column 'transcript' is empty"),
        ([HEADER, "a.wav,Hi.,,s1,,,"], 2, r"column 'label' is empty"),
        ([HEADER, "a.wav,Hi.,hap,s1,abc,,"], 2,
         r"column 'start': expected a number of seconds, got 'abc'"),
        ([HEADER, "a.wav,Hi.,hap,s1,,nan,"], 2, r"column 'end': expected a number"),
        ([HEADER, "a.wav,Hi.,hap,s1,-1,,"], 2, r"column 'start': seconds must be >= 0"),
        ([HEADER, "a.wav,Hi.,hap,s1,2,2,"], 2,
         r"column 'end': 2 s is not after the start \(2 s\)"),
        ([HEADER, "a.wav,Hi.,hap,s1,,0,"], 2, r"column 'end': 0 s is not after the start"),
        ([HEADER, "a.wav,Hi.,hap,s1,,,x", "b.wav,Ho.,hap,s1,,,y", "c.wav,Ha.,sad,s2,,,x"], 4,
         r"column 'id': duplicate id 'x' \(first on line 2, again on line 4\)"),
        ([HEADER, "a.wav,Hi.,hap,s1,1,2,", "a.wav,Ho.,sad,s1,1.0,2.000,"], 3,
         r"column 'path': duplicate id 'a.wav@1.000-2.000' \(first on line 2"),
        ([HEADER, "a.wav,Hi.,hap,s1,,"], 2, r"expected 7 fields as in the header, got 6"),
        (["", "  "], 1, r"the manifest is empty"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, lines, line, pattern):
    manifest = _write_csv(tmp_path / "bad.csv", lines)
    with pytest.raises(CorpusFormatError, match=rf"bad\.csv:{line}: {pattern}") as caught:
        csv_corpus.parse_csv_corpus(manifest)
    assert caught.value.line_number == line


def test_not_utf8_and_not_a_file(tmp_path):
    manifest = tmp_path / "latin.csv"
    manifest.write_bytes(b"path,transcript,label,group\na.wav,caf\xe9,hap,s1\n")
    with pytest.raises(CorpusFormatError, match=r"latin\.csv:2: not UTF-8 text"):
        csv_corpus.parse_csv_corpus(manifest)
    with pytest.raises(CorpusFormatError, match="is a folder"):
        csv_corpus.parse_csv_corpus(tmp_path)
    with pytest.raises(CorpusFormatError, match="does not exist"):
        csv_corpus.parse_csv_corpus(tmp_path / "nope.csv")


def test_bad_options():
    with pytest.raises(ValueError, match="more than once"):
        csv_corpus.parse_classes("a,b,a")
    with pytest.raises(ValueError, match="non-empty"):
        csv_corpus.parse_classes("a,,b")
    with pytest.raises(ValueError, match="label:class"):
        csv_corpus.parse_label_map("exc=hap")
    with pytest.raises(ValueError, match="maps 'exc' twice"):
        csv_corpus.parse_label_map("exc:hap,exc:neu")
    with pytest.raises(ValueError, match="does not take the option"):
        registry.get_corpus("csv").load("m.csv", classs="a")


def test_missing_audio_file_is_skipped_with_its_line(corpus):
    os.remove(corpus.parent / "audio" / "bob_01.wav")
    loaded = registry.get_corpus("csv").load(corpus)
    missing = os.fspath(corpus.parent / "audio" / "bob_01.wav")
    assert loaded.parser_report["skipped"] == [
        ("audio/bob_01.wav", f"missing audio file {missing} (line 4)")
    ]
    assert loaded.dropped == {"missing audio file": 1}
    assert len(loaded.utterances) == 4
    # Still listed: the shard plan does not change when a file goes missing.
    assert loaded.listed_counts == {"alice": 2, "bob": 2, "carol": 1}
    with pytest.raises(
        CorpusFormatError, match=rf"manifest\.csv:4: column 'path': missing audio file {missing}"
    ):
        registry.get_corpus("csv").load(corpus, strict=True)


def test_8_khz_mono_and_44_khz_stereo_become_16_khz_mono(tmp_path):
    from smcn_tf.features import media

    mono = _write_wav(tmp_path / "mono8k.wav", seconds=0.5, rate=8000)
    stereo = _write_wav(tmp_path / "stereo44k.wav", seconds=0.5, rate=44100, channels=2)
    assert soundfile.info(mono).channels == 1 and soundfile.info(stereo).channels == 2
    reference = _tone(0.5, SAMPLE_RATE)
    for path, scale in ((mono, 1.0), (stereo, 0.75)):  # stereo: (1 + 0.5) / 2
        decoded = media.decode_audio(path, SAMPLE_RATE)
        assert decoded.waveform.ndim == 1 and decoded.waveform.dtype == np.float32
        assert decoded.waveform.size == SAMPLE_RATE // 2
        # The tone survives resampling (edges aside): same phase, averaged level.
        middle = slice(400, -400)
        np.testing.assert_allclose(
            decoded.waveform[middle], scale * reference[middle], atol=0.01
        )


def _manifest_for_prepare(root):
    """8 kHz mono, 44.1 kHz stereo, two segments of one file, a missing file,
    an undecodable one and a label outside the classes."""
    _write_wav(root / "audio" / "a_8k.wav", seconds=0.6, rate=8000)
    _write_wav(root / "audio" / "b_44k.wav", seconds=0.7, rate=44100, channels=2)
    _write_wav(root / "audio" / "long.wav", seconds=2.0, rate=22050)
    (root / "audio" / "broken.wav").write_bytes(b"RIFF....not a wav at all")
    return _write_csv(
        root / "manifest.csv",
        [
            "path,transcript,label,group,start,end",
            "audio/a_8k.wav,Hello there.,neu,alice,,",
            "audio/b_44k.wav,What a lovely day.,exc,bob,,",
            "audio/long.wav,First part.,ang,alice,0.25,1.25",
            "audio/long.wav,Second part.,sad,bob,1.25,",
            "audio/gone.wav,Nobody home.,neu,bob,,",
            "audio/broken.wav,Crackle.,sad,alice,,",
            "audio/not_needed.wav,Something else.,fru,alice,,",  # dropped: never read
        ],
        line_end="\r\n",
        bom=True,
    )


def _prepare_csv(manifest, out_dir, **kwargs):
    from smcn_tf.records import prepare

    return prepare.prepare_corpus(
        "csv", manifest, out_dir, pooling=5, max_frames=500, max_tokens=32,
        shard_size=2, progress=False, text_encoder=FakeTextEncoder(),
        corpus_options={"classes": "neu,hap,ang,sad", "label_map": "exc:hap"}, **kwargs,
    )


def test_prepare_csv_end_to_end(tmp_path):
    from smcn_tf.records import pipeline, format as records

    manifest = _manifest_for_prepare(tmp_path / "mine")
    out_dir = tmp_path / "records"
    report = _prepare_csv(manifest, out_dir)

    assert report["corpus"] == "csv" and report["num_examples"] == 4
    assert report["data_dir"] == os.path.abspath(manifest)
    gone = os.fspath(manifest.parent / "audio" / "gone.wav")
    assert report["parser"]["skipped"] == [
        ["audio/gone.wav", f"missing audio file {gone} (line 6)"]
    ]
    # One list: the missing file, then the broken one, each with its manifest line.
    assert report["num_skipped"] == 2
    missing, broken = report["skipped"]
    assert missing == {
        "utterance_id": "audio/gone.wav", "reason": f"missing audio file {gone} (line 6)",
        "stage": "parse", "line": 6,
    }
    assert broken["utterance_id"] == "audio/broken.wav"
    assert broken["reason"].startswith("cannot read audio")
    assert broken["line"] == 7 and broken["stage"] == "read_audio"
    assert report["dropped"]["by_reason"] == {
        "cannot read audio": 1,
        "label fru (not one of the classes)": 1,
        "missing audio file": 1,
    }
    records_manifest = records.read_manifest(out_dir)
    assert records_manifest.class_names == ("neu", "hap", "ang", "sad")
    assert records_manifest.groups == ("alice", "bob")  # what evaluation.folds names
    assert records_manifest.counts == {
        "alice": {"neu": 1, "hap": 0, "ang": 1, "sad": 0},
        "bob": {"neu": 0, "hap": 1, "ang": 0, "sad": 1},
    }

    # Each example is as long as its file or segment: frames of 10 ms pooled by 5.
    lengths = {
        value.decode(): int(inputs["audio_length"][row])
        for inputs, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for row, value in enumerate(metadata["utterance_id"].numpy())
    }

    def pooled(seconds):
        return -(-(1 + (int(round(seconds * SAMPLE_RATE)) - 400) // 160) // 5)

    assert lengths == {
        "audio/a_8k.wav": pooled(0.6),
        "audio/b_44k.wav": pooled(0.7),
        "audio/long.wav@0.250-1.250": pooled(1.0),
        "audio/long.wav@1.250-end": pooled(0.75),
    }
    text = json.loads((out_dir / "report.json").read_text())
    assert text["counts_check"]["note"] == "no published counts (a CSV manifest)"

    # The same shards, resume and report as the other corpora.
    again = _prepare_csv(manifest, out_dir)
    assert again["shards"]["computed"] == 0 and again["shards"]["reused"] > 0
    assert again["num_examples"] == 4

    # --strict stops at the missing file in the manifest, then at the broken one.
    with pytest.raises(CorpusFormatError, match=r"manifest\.csv:6: column 'path'"):
        _prepare_csv(manifest, tmp_path / "strict", strict=True)
    _write_wav(manifest.parent / "audio" / "gone.wav")
    with pytest.raises(ValueError, match=r"'audio/broken\.wav'.*cannot read audio.*strict"):
        _prepare_csv(manifest, tmp_path / "strict", strict=True)
    # Resuming strictly over shards a lenient run finished refuses the broken one too.
    with pytest.raises(ValueError, match=r"'audio/broken\.wav'.*cannot read audio.*strict"):
        _prepare_csv(manifest, out_dir, strict=True)


def test_segment_past_the_end_is_skipped(tmp_path):
    _write_wav(tmp_path / "short.wav", seconds=1.0)
    manifest = _write_csv(
        tmp_path / "m.csv",
        [
            "path,transcript,label,group,start,end",
            "short.wav,Fine.,hap,s1,0.0,0.5",
            "short.wav,Too late.,hap,s1,1.5,2.0",
            "short.wav,Runs over.,sad,s1,0.5,1.4",
        ],
    )
    from smcn_tf.records import prepare

    report = prepare.prepare_corpus(
        "csv", manifest, tmp_path / "records", pooling=5, max_frames=500, max_tokens=32,
        progress=False, text_encoder=FakeTextEncoder(),
    )
    assert report["num_examples"] == 2  # an end past the file keeps what there is
    (late,) = report["skipped"]
    assert late["utterance_id"] == "short.wav@1.500-2.000"
    assert re.search(r"segment starts at 1\.5 s, at or past the end of the audio \(1\.000 s\)",
                     late["reason"])


def _manifest_with_every_fault(root):
    """Three good rows (one of them emoji-only) and one row per fault."""
    for name, seconds in (("good_1", 0.6), ("good_2", 0.7), ("smile", 0.5), ("blip", 0.02)):
        _write_wav(root / "audio" / f"{name}.wav", seconds=seconds)
    (root / "audio" / "noise.wav").write_bytes(b"RIFF....not a wav at all")
    cut = _write_wav(root / "audio" / "cut.wav", seconds=2.008)  # 32128 samples declared
    cut.write_bytes(cut.read_bytes()[: 44 + 10695 * 2])  # 10695 left
    return _write_csv(
        root / "manifest.csv",
        [
            "path,transcript,label,group",
            "audio/good_1.wav,Hello there.,neu,alice",  # line 2
            "audio/gone.wav,Nobody home.,sad,alice",  # 3: missing
            "audio/noise.wav,Crackle.,ang,bob",  # 4: cannot be decoded
            "audio/blip.wav,Hm.,neu,bob",  # 5: 0.02 s, below min_seconds
            "audio/cut.wav,I was saying something long.,hap,alice",  # 6: cut off
            "audio/smile.wav,\U0001f600\U0001f600,hap,bob",  # 7: no known word piece
            "audio/good_2.wav,What a day.,sad,bob",  # 8
        ],
    )


def _cli_prepare(manifest, out_dir, monkeypatch, capsys, encoder):
    from smcn_tf import cli
    from smcn_tf.records import prepare

    monkeypatch.setattr(prepare, "TextEncoder", lambda *args, **kwargs: encoder)
    assert cli.main(["prepare", "csv", "--manifest", str(manifest), "--out", str(out_dir)]) == 0
    captured = capsys.readouterr()
    with open(out_dir / "report.json", encoding="utf-8") as file:
        return json.load(file), captured


def test_cli_prepare_csv_lists_every_skip_once(tmp_path, monkeypatch, capsys):
    manifest = _manifest_with_every_fault(tmp_path / "mine")
    out_dir = tmp_path / "records"
    report, captured = _cli_prepare(
        manifest, out_dir, monkeypatch, capsys, WordPieceTextEncoder()
    )
    audio_dir = manifest.parent / "audio"

    # report.json: one list, the parser's skip first, each with its reason and line.
    assert report["num_examples"] == 3
    assert report["num_skipped"] == len(report["skipped"]) == 4
    assert [(item["utterance_id"], item["stage"], item["line"]) for item in report["skipped"]] == [
        ("audio/gone.wav", "parse", 3),
        ("audio/cut.wav", "read_audio", 6),  # group alice's shard, then bob's
        ("audio/blip.wav", "read_audio", 5),
        ("audio/noise.wav", "read_audio", 4),
    ]
    gone, cut, blip, noise = report["skipped"]
    assert gone["reason"] == f"missing audio file {audio_dir / 'gone.wav'} (line 3)"
    assert cut["reason"] == (
        f"truncated audio file {audio_dir / 'cut.wav'}: its header declares 32128 samples "
        "(2.008 s), the file holds 10695 (0.668 s)"
    )
    assert cut["audio_path"] == os.fspath(audio_dir / "cut.wav")
    assert blip["reason"] == "shorter than 0.1 s: 0.02 s (320 samples)"
    assert noise["reason"].startswith(
        f"cannot read audio: ValueError: {audio_dir / 'noise.wav'}: cannot read audio"
    )
    assert report["dropped"]["by_reason"] == {
        "cannot read audio": 1, "missing audio file": 1, "shorter than 0.1 s": 1,
        "truncated audio file": 1,
    }
    assert report["truncated"] == []

    # The console counts the same list, and names each line.
    report_path = os.path.join(str(out_dir), "report.json")
    lines = captured.out.splitlines()
    start = lines.index(f"Skipped 4 of 7 utterances (report: {report_path}):")
    listed = lines[start + 1 : start + 5]
    assert listed[:3] == [
        f"  audio/gone.wav: missing audio file {audio_dir / 'gone.wav'} (line 3)",
        f"  audio/cut.wav: {cut['reason']} (line 6)",
        f"  audio/blip.wav: {blip['reason']} (line 5)",
    ]
    assert listed[3].startswith("  audio/noise.wav: cannot read audio") and listed[3].endswith(
        "(line 4)"
    )

    # The emoji-only transcript is prepared, with a warning in the report and on stderr.
    assert report["num_warnings"] == 1
    assert report["warnings"] == [
        {
            "utterance_id": "audio/smile.wav",
            "warning": "no known word piece: the transcript '\U0001f600\U0001f600' becomes "
                       "[CLS] [UNK] [SEP]",
            "line": 7,
        }
    ]
    err = captured.err.splitlines()
    head = f"Warning: no known word piece in 1 of 3 prepared transcripts (report: {report_path}):"
    assert err[err.index(head) : err.index(head) + 2] == [
        head,
        "  audio/smile.wav: the transcript '\U0001f600\U0001f600' becomes [CLS] [UNK] [SEP] "
        "(line 7)",
    ]

    # A resumed run reuses every shard and reports the same, from the sidecars.
    again, _ = _cli_prepare(manifest, out_dir, monkeypatch, capsys, WordPieceTextEncoder())
    assert again["shards"]["computed"] == 0
    for key in ("skipped", "num_skipped", "warnings", "num_warnings", "dropped"):
        assert again[key] == report[key]


def test_cli_prepare_csv(tmp_path, monkeypatch, capsys):
    from smcn_tf import cli
    from smcn_tf.records import prepare
    from smcn_tf.records import format as records

    monkeypatch.setattr(prepare, "TextEncoder", lambda *args, **kwargs: FakeTextEncoder())
    manifest = _manifest_for_prepare(tmp_path / "mine")
    out_dir = tmp_path / "records"
    assert cli.main([
        "prepare", "csv", "--manifest", str(manifest), "--out", str(out_dir),
        "--classes", "neu,hap,ang,sad", "--label-map", "exc:hap", "--quiet",
    ]) == 0
    out = capsys.readouterr().out
    assert "counts of 'csv' vs no published counts (a CSV manifest)" in out
    assert "Skipped 2 of 6 utterances" in out
    assert records.read_manifest(out_dir).groups == ("alice", "bob")

    # The corpus from the config's features.corpus.
    config = tmp_path / "mine.yaml"
    config.write_text("features:\n  corpus: csv\n  shard_size: 2\n")
    assert cli.main([
        "prepare", "--manifest", str(manifest), "--out", str(tmp_path / "from_config"),
        "--config", str(config), "--quiet",
    ]) == 0
    assert records.read_manifest(tmp_path / "from_config").class_names == (
        "neu", "exc", "ang", "sad", "fru"
    )
    capsys.readouterr()

    for arguments, message in [
        (["csv", "--data-dir", str(tmp_path)], "give --manifest FILE, not --data-dir"),
        (["csv"], "needs --manifest FILE"),
        (["demo", "--manifest", str(manifest)], "--manifest is for the csv corpus"),
        (["demo", "--data-dir", str(tmp_path), "--classes", "a,b"],
         "--classes is for the csv corpus"),
    ]:
        assert cli.main(["prepare", *arguments, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
