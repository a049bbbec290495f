"""`smcn predict --manifest`: batch prediction from a CSV manifest (smcn_tf.serving.batch)."""

import csv
import json
import os
import re
import wave

import numpy as np
import pytest
import soundfile

from smcn_tf.contract.errors import ServingError
from smcn_tf.corpora.utterance import CorpusFormatError
from smcn_tf.serving import batch
from smcn_tf.serving.client import InProcessTransport, SMCNClient, Transport
from smcn_tf.serving.local import commands
from tests.serving_support import CLASS_NAMES

WORDS = ("i am so happy today", "leave me alone", "why do you hate me", "it is fine",
         "we are glad", "that was bad", "hello world", "they were upset")


def _tokenizer(export):
    return os.path.join(export, "1", "assets.extra", "tokenizer")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A folder of clips: 12 good ones (varied lengths, one stereo at 8 kHz) and bad ones."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for index in range(12):
        samples = 4000 + 1500 * index
        soundfile.write(str(folder / f"good_{index:02d}.wav"),
                        (0.1 * rng.standard_normal(samples)).astype("float32"), 16000)
    soundfile.write(str(folder / "stereo_8k.wav"),
                    (0.1 * rng.standard_normal((6000, 2))).astype("float32"), 8000)
    soundfile.write(str(folder / "short.wav"), np.zeros(400, "float32"), 16000)  # 25 ms
    soundfile.write(str(folder / "no_samples.wav"), np.zeros(0, "float32"), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("not a wav file")
    with wave.open(str(folder / "cut.wav"), "wb") as stream:  # the header says 16000 frames
        stream.setnchannels(1), stream.setsampwidth(2), stream.setframerate(16000)
        stream.writeframes(np.zeros(16000, "int16").tobytes())
    data = (folder / "cut.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])
    return folder


def _write_manifest(path, rows, label=True):
    columns = ["id", "path", "transcript", "start", "end"] + (["label"] if label else [])
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(row[: len(columns)])
    return str(path)


def _good_rows(count=12):
    return [
        [f"clip{index:02d}", f"good_{index:02d}.wav", WORDS[index % len(WORDS)], "", "",
         CLASS_NAMES[index % 4]]
        for index in range(count)
    ]


BAD_ROWS = [
    ["missing", "nowhere.wav", "hello", "", "", "sad", "missing: no such file"],
    ["empty", "empty.wav", "hello", "", "", "sad", "empty: "],
    ["no-samples", "no_samples.wav", "hello", "", "", "sad", "empty: "],
    ["undecodable", "notes.wav", "hello", "", "", "sad", "undecodable: "],
    ["truncated", "cut.wav", "hello", "", "", "sad", "truncated: "],
    ["short", "short.wav", "hello", "", "", "sad", "too-short: 0.025 s of audio"],
    ["late-segment", "good_00.wav", "hello", "9", "10", "sad", "too-short: the segment starts"],
    ["nothing", "", "", "", "", "sad", "no-input: "],
]
SPECIAL_ROWS = [
    ["text-only", "", "we are glad", "", "", "happy"],
    ["audio-only", "good_05.wav", "", "", "", "angry"],
    ["stereo", "stereo_8k.wav", "it is fine", "", "", "neutral"],
    ["segment", "good_11.wav", "that was bad", "0.1", "0.9", "exc"],  # label outside classes
]


@pytest.fixture(scope="module")
def manifest(clips):
    """Good rows with bad and special rows mixed in, labelled."""
    rows = _good_rows()
    for position, row in enumerate(BAD_ROWS + SPECIAL_ROWS):
        rows.insert(1 + 2 * position, row)
    return _write_manifest(clips / "manifest.csv", rows)


@pytest.fixture(scope="module")
def client(export):
    with SMCNClient(model_dir=export) as client:
        yield client


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_read_manifest_columns_ids_and_errors(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("Path, transcript ,start,end,group\na.wav,hi there,,,s1\na.wav,x,1,2.5,s1\n"
                    ",only words,,,s2\n")
    manifest = batch.read_manifest(str(path))
    assert [row.id for row in manifest.rows] == ["a.wav", "a.wav@1.000-2.500", "line-4"]
    assert manifest.rows[0].audio_path == str(tmp_path / "a.wav") and not manifest.has_labels
    assert manifest.rows[2].audio_path is None and manifest.rows[2].transcript == "only words"
    for text, message in [
        ("path,transcript,colour\na,b,c\n", "unknown column 'colour'"),
        ("transcript,label\nhi,sad\n", "missing column 'path'"),
        ("id,path,transcript\nx,a.wav,hi\nx,b.wav,ho\n", "duplicate id 'x' (first on line 2"),
        ("path,transcript,start,end\na.wav,hi,2,1\n", "is not after the start"),
        ("path,transcript\n", "no rows after the header"),
    ]:
        path.write_text(text)
        with pytest.raises(CorpusFormatError, match=re.escape(message)):
            batch.read_manifest(str(path))


def test_good_and_bad_rows(client, manifest, tmp_path):
    out = str(tmp_path / "predictions.csv")
    summary = batch.predict_manifest(client, manifest, out, batch_size=3, top_tokens=2)
    rows = _read_csv(out)
    assert list(rows[0]) == ["id", "path", "class"] + [f"p_{name}" for name in CLASS_NAMES] + [
        "modality", "top_tokens", "label", "error"]
    by_id = {row["id"]: row for row in rows}
    assert [row["id"] for row in rows] == [
        row.id for row in batch.read_manifest(manifest).rows]  # manifest order
    for row_id, _, _, _, _, _, error in BAD_ROWS:
        assert by_id[row_id]["error"].startswith(error), by_id[row_id]
        assert by_id[row_id]["class"] == by_id[row_id]["p_sad"] == by_id[row_id]["modality"] == ""
    assert summary.errors == {"empty": 2, "missing": 1, "no-input": 1, "too-short": 2,
                              "truncated": 1, "undecodable": 1}
    assert summary.predicted == 16 and summary.rows == 24 and not os.path.exists(out + ".partial")
    assert (by_id["text-only"]["modality"], by_id["audio-only"]["modality"],
            by_id["clip03"]["modality"]) == ("text", "audio", "both")
    assert by_id["audio-only"]["top_tokens"] == "" and by_id["clip00"]["top_tokens"].count(":") == 2
    # With labels: the scores of `smcn evaluate`'s scoring, over the 15 rows labelled in class.
    assert summary.scores["num_examples"] == 15 and summary.scores["num_unscored"] == 9


def test_outputs_match_the_single_clip_path(manifest, tmp_path_factory, tmp_path):
    """On a real (tiny, untrained) SMCN export, which ignores batch padding as
    served models must: every row within 1e-5 of `SMCNClient.predict` alone."""
    from smcn_tf.export.exporter_test import minilm_export
    from smcn_tf.features.audio import read_waveform

    out = str(tmp_path / "predictions.csv")
    with SMCNClient(model_dir=minilm_export(tmp_path_factory)["export_dir"]) as client:
        batch.predict_manifest(client, manifest, out, batch_size=5)
        by_id = {row["id"]: row for row in _read_csv(out)}
        names = client.class_names
        checked = 0
        for row in batch.read_manifest(manifest).rows:
            if by_id[row.id]["error"]:
                continue
            audio = row.audio_path
            if row.id == "segment":
                audio = read_waveform(row.audio_path)[1600:14400]
            expected = client.predict(audio, row.transcript)
            got = [float(by_id[row.id][f"p_{name}"]) for name in names]
            np.testing.assert_allclose(got, expected.probabilities, atol=1e-5, err_msg=row.id)
            assert (by_id[row.id]["class"], by_id[row.id]["modality"]) == (
                expected.class_name, expected.modality)
            checked += 1
    assert checked == 16


def test_strict_stops_at_the_first_bad_row(client, manifest, tmp_path):
    out = str(tmp_path / "strict.csv")
    with pytest.raises(batch.BadRowError, match=r"line 3 \(id 'missing'\): missing: no such"):
        batch.predict_manifest(client, manifest, out, batch_size=3, strict=True)
    assert not os.path.exists(out)


class _FlakyTransport(Transport):
    """The in-process transport, failing UNAVAILABLE from call `fail_at` on,
    refusing (INVALID_ARGUMENT) any batch holding a waveform of `refuse_samples`,
    and counting the rows it answers."""

    name = "in-process"

    def __init__(self, export, fail_at=None, refuse_samples=None):
        self.inner = InProcessTransport(export)
        self.description = self.inner.description
        self.input_rules = self.inner.input_rules
        self.fail_at, self.refuse_samples = fail_at, refuse_samples
        self.calls = self.rows = 0

    def predict(self, inputs, signature_name="serving_default"):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise ServingError("UNAVAILABLE", "the server went away")
        if self.refuse_samples in inputs["waveform_length"]:
            raise ServingError("INVALID_ARGUMENT", "waveform: refused for the test")
        self.rows += len(inputs["waveform_length"])
        return self.inner.predict(inputs, signature_name)


def _journal_records(path):
    """The records of a journal's whole lines (the last one may be being written)."""
    with open(path, "rb") as stream:
        lines = stream.read().split(b"\n")[1:-1]
    return [record for line in lines for record in json.loads(line)]


def _flaky_client(export, **options):
    return SMCNClient(transport=_FlakyTransport(export, **options),
                      tokenizer_dir=_tokenizer(export))


def test_kill_and_resume_gives_the_uninterrupted_output(export, clips, tmp_path):
    rows = _good_rows() * 3
    rows = [[f"{row[0]}-{index}"] + row[1:] for index, row in enumerate(rows)]
    rows.insert(5, BAD_ROWS[0])
    manifest = _write_manifest(clips / f"{tmp_path.name}.csv", rows)
    whole = str(tmp_path / "whole.csv")
    batch.predict_manifest(_flaky_client(export), manifest, whole, batch_size=2, top_tokens=3)
    out = str(tmp_path / "resumed.csv")
    # Killed while the 7th request is at the model: windows of 8 rows, 2 in flight.
    with pytest.raises(ServingError, match="UNAVAILABLE"):
        batch.predict_manifest(_flaky_client(export, fail_at=7), manifest, out, batch_size=2,
                               top_tokens=3)
    assert not os.path.exists(out)
    journal = out + ".partial"
    done = _journal_records(journal)
    assert 0 < len(done) < len(rows)
    with open(journal, "ab") as stream:
        stream.write(b'[{"index": 30, "id"')  # a line cut off by the kill: dropped
    with pytest.raises(ValueError, match="add --resume to continue it"):
        batch.predict_manifest(_flaky_client(export), manifest, out, batch_size=2, top_tokens=3)
    with pytest.raises(ValueError, match="batch_size, window differ"):
        batch.predict_manifest(_flaky_client(export), manifest, out, batch_size=4, top_tokens=3,
                               resume=True)
    client = _flaky_client(export)
    summary = batch.predict_manifest(client, manifest, out, batch_size=2, top_tokens=3,
                                     resume=True)
    assert summary.resumed == len(done)
    # Only the rows not in the journal went to the model (the missing file never does).
    answered = sum(1 for record in done if record["error"] is None)
    assert client.backend.rows == len(rows) - 1 - answered
    with open(whole, "rb") as first, open(out, "rb") as second:
        assert first.read() == second.read()
    assert not os.path.exists(journal)


def test_resume_scores_no_row_twice(export, clips, tmp_path):
    rows = [[f"{row[0]}-{index}"] + row[1:] for index, row in enumerate(_good_rows() * 2)]
    manifest = _write_manifest(clips / f"{tmp_path.name}.csv", rows)
    out = str(tmp_path / "out.jsonl")
    first = _flaky_client(export, fail_at=5)
    with pytest.raises(ServingError):
        batch.predict_manifest(first, manifest, out, batch_size=2, in_flight=1)
    done = len(_journal_records(out + ".partial"))
    second = _flaky_client(export)
    batch.predict_manifest(second, manifest, out, batch_size=2, in_flight=1, resume=True)
    assert done > 0 and second.backend.rows == len(rows) - done
    lines = [json.loads(line) for line in open(out)]
    assert [line["id"] for line in lines] == [row[0] for row in rows]
    assert set(lines[0]["probabilities"]) == set(CLASS_NAMES) and lines[0]["label"] == "angry"


def test_a_refused_batch_is_sent_again_row_by_row(export, clips, tmp_path):
    manifest = _write_manifest(clips / "refused.csv", _good_rows(6))
    client = _flaky_client(export, refuse_samples=4000 + 1500 * 2)  # good_02.wav
    out = str(tmp_path / "out.csv")
    summary = batch.predict_manifest(client, manifest, out, batch_size=3)
    rows = _read_csv(out)
    assert rows[2]["error"] == "refused: waveform: refused for the test"
    assert summary.errors == {"refused": 1} and all(row["class"] for row in rows if row is not
                                                     rows[2])
    with pytest.raises(batch.BadRowError, match="refused: waveform"):
        batch.predict_manifest(client, manifest, str(tmp_path / "strict.csv"), batch_size=3,
                               strict=True)


def test_in_process_grpc_and_rest_write_the_same_csv(export, manifest, tmp_path, capsys):
    from smcn_tf.serving.local.server import ModelServer

    common = ["predict", "--manifest", manifest, "--batch-size", "4", "--top-tokens", "2"]
    remote = ["--class-names", ",".join(CLASS_NAMES), "--tokenizer-dir", _tokenizer(export)]
    outputs = {}
    with ModelServer(os.path.join(export), grpc_port=0, rest_port=0, poll_seconds=0) as server:
        for name, where in [
            ("in-process", ["--model-dir", export]),
            ("grpc", ["--grpc", server.grpc_target, *remote]),
            ("rest", ["--rest", server.rest_url, *remote]),
            ("rest-inputs", ["--rest", server.rest_url, "--rest-format", "inputs", *remote]),
        ]:
            out = str(tmp_path / f"{name}.csv")
            assert commands.main(common + ["--out", out] + where) == 0, capsys.readouterr().err
            printed = capsys.readouterr().out
            assert printed.startswith("Wrote 24 rows to ") and "16 predicted, 8 with an error" in printed
            with open(out, "rb") as stream:
                outputs[name] = stream.read()
    assert len(set(outputs.values())) == 1


def test_labels_print_the_evaluate_scores(client, export, clips, tmp_path, capsys):
    from smcn_tf.evaluate import score_predictions

    manifest = _write_manifest(clips / "labelled.csv", _good_rows())
    out = str(tmp_path / "labelled.csv.out.csv")
    assert commands.main(["predict", "--manifest", manifest, "--out", out,
                          "--model-dir", export]) == 0
    printed = capsys.readouterr().out
    rows = _read_csv(out)
    labels = [CLASS_NAMES.index(row["label"]) for row in rows]
    predictions = [CLASS_NAMES.index(row["class"]) for row in rows]
    report = score_predictions(np.array(labels), np.array(predictions), list(CLASS_NAMES))
    assert (f"UA {100 * report['unweighted_accuracy']:.2f}  WA "
            f"{100 * report['weighted_accuracy']:.2f}  W-F1 {100 * report['weighted_f1']:.2f}"
            ) in printed
    assert "Scored 12 labelled rows:" in printed
    matrix_lines = printed.split("Confusion matrix (rows: true, columns: predicted):\n")[1]
    assert matrix_lines.splitlines()[1].split()[1:] == [
        str(value) for value in report["confusion_matrix"][0]]
    # Without labels: no label column, no scores.
    unlabelled = _write_manifest(clips / "plain.csv", _good_rows(), label=False)
    assert commands.main(["predict", "--manifest", unlabelled, "--out", out,
                          "--model-dir", export]) == 0
    assert "UA " not in capsys.readouterr().out and "label" not in _read_csv(out)[0]


def test_manifest_option_errors(export, manifest, tmp_path, capsys):
    out = str(tmp_path / "o.csv")
    for extra, message in [
        (["--manifest", manifest, "--out", out, "--audio", "a.wav"],
         "give --manifest or --audio / --text, not both"),
        (["--manifest", manifest], "--manifest needs --out"),
        (["--manifest", manifest, "--out", str(tmp_path / "o.txt")], "must end with .csv or .jsonl"),
        (["--manifest", manifest, "--out", out, "--batch-size", "0"], "batch_size must be"),
        (["--audio", "a.wav", "--out", out], "--out goes with --manifest"),
    ]:
        assert commands.main(["predict", "--model-dir", export, *extra]) == 2
        assert message in capsys.readouterr().err


def test_decode_row_limits(clips):
    row = batch.ManifestRow(0, 2, "a", "good_11.wav", str(clips / "good_11.wav"), "hi")
    # Longer than the model reads: cut to what it reads (the answer cannot change).
    long = batch.decode_row(row, batch.AudioLimits(16000, 1600, max_samples=16000))
    assert long.error is None and long.samples == 16000
    assert batch.decode_row(row, batch.AudioLimits(16000, 1600)).samples == 20500
    short = batch.decode_row(row, batch.AudioLimits(16000, 32000))
    assert short.error.startswith("too-short: 1.281 s of audio in good_11.wav")


def test_a_killed_command_resumes_to_the_uninterrupted_output(export, client, clips, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    rows = [[f"{row[0]}-{index}"] + row[1:] for index, row in enumerate(_good_rows() * 50)]
    manifest = _write_manifest(clips / f"{tmp_path.name}.csv", rows)
    options = ["--batch-size", "1", "--in-flight", "1", "--top-tokens", "2"]
    out = str(tmp_path / "killed.csv")
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    process = subprocess.Popen(
        [sys.executable, "-m", "smcn_tf.serving.local.commands", "predict", "--manifest",
         manifest, "--out", out, "--model-dir", export, *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=repository),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if os.path.exists(out + ".partial") and len(_journal_records(out + ".partial")) >= 20:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert not os.path.exists(out), "the command finished before it was killed"
    done = len(_journal_records(out + ".partial"))
    assert 20 <= done < len(rows)
    assert commands.main(["predict", "--manifest", manifest, "--out", out, "--model-dir", export,
                          "--resume", *options]) == 0
    whole = str(tmp_path / "whole.csv")
    batch.predict_manifest(client, manifest, whole, batch_size=1, in_flight=1, top_tokens=2)
    with open(whole, "rb") as first, open(out, "rb") as second:
        assert first.read() == second.read()
