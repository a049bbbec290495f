"""A small synthetic corpus in the MELD.Raw layout, with MELD's faults on purpose.

`write_demo_meld` writes the three CSVs and the three folders of mp4 clips of
the real release, so `smcn_tf.corpora.meld.parse_meld` and `smcn prepare meld`
read it with no special case:

- `train_sent_emo.csv` is Windows-1252 (as in MELD.Raw.tar.gz),
  `dev_sent_emo.csv` UTF-8, `test_sent_emo.csv` UTF-8 with a byte-order mark;
  all have CRLF line ends, MELD's exact header, quoted fields holding commas
  (`"00:12:24,660"`, `"Well, ..."`) and typographic apostrophes and ellipses
  (`’`, `…`), which the parser turns back into ASCII.
- Each clip is an mp4 with a tiny video stream first (as MELD's clips have)
  and an AAC stereo audio stream at 48 kHz (even dialogues) or 44.1 kHz (odd
  ones), so reading it exercises stream selection, decoding, downmixing and
  resampling to 16 kHz.

The emotion is split across the two modalities as in the IEMOCAP-layout demo
(`smcn_tf.corpora.demo`, whose voice synthesiser and sentence pools are reused):
arousal is in the voice (three levels), valence in the words (three pools).
MELD's seven classes take seven of the nine (arousal, valence) cells, so each
modality alone confuses classes and only both together separate all seven:

=========  =======  ========  ===========================================
class      voice    words     why
=========  =======  ========  ===========================================
neutral    medium   neutral   the baseline
surprise   high     neutral   an excited voice, plain words ("It's at noon?!")
fear       medium   negative  bad news in a tense, held-back voice
sadness    low      negative  bad news, a flat, quiet voice
joy        high     positive  good news, an excited voice
disgust    low      neutral   deadpan: plain words, a flat, quiet voice
anger      high     negative  bad news, a loud voice
=========  =======  ========  ===========================================

Audio alone tells apart only {joy, surprise, anger}, {neutral, fear} and
{sadness, disgust}; text alone only {joy}, {neutral, surprise, disgust} and
{anger, sadness, fear}; both together tell apart all seven.

The faults of the real release are present once each (see `QUIRKS`): a
corrupt clip in train (an mp4 header followed by garbage, like train
`dia125_utt3`), an annotated dev clip that is missing (like dev
`dia110_utt7`), an unannotated extra clip in the test folder, and one clip
that runs for `LONG_CLIP_SECONDS` (MELD has clips of minutes).
"""

import csv
import io
import pathlib

import av
import numpy

from smcn_tf.corpora import demo
from smcn_tf.corpora.meld import CLASS_NAMES, COLUMNS, CSV_FILENAMES, MEDIA_FOLDERS, SPLITS

# class -> (arousal in the voice, valence in the words); see the module docstring.
CLASS_CUES = {
    "neutral": ("medium", "neutral"),
    "surprise": ("high", "neutral"),
    "fear": ("medium", "negative"),
    "sadness": ("low", "negative"),
    "joy": ("high", "positive"),
    "disgust": ("low", "neutral"),
    "anger": ("high", "negative"),
}
CLASS_SENTIMENT = {
    "neutral": "neutral",
    "surprise": "positive",
    "fear": "negative",
    "sadness": "negative",
    "joy": "positive",
    "disgust": "negative",
    "anger": "negative",
}
# Characters and their voices' sex (which sets the base pitch range).
CHARACTERS = (
    ("Chandler", "M"), ("Joey", "M"), ("Monica", "F"),
    ("Phoebe", "F"), ("Rachel", "F"), ("Ross", "M"),
)
CSV_ENCODINGS = {"train": "cp1252", "dev": "utf-8", "test": "utf-8-sig"}
UTTERANCES_PER_DIALOGUE = 4
# Audio sample rate of the clips of even / odd dialogues.
SOURCE_RATES = (48000, 44100)
LONG_CLIP_SECONDS = 8.0
VIDEO_SIZE = 16
VIDEO_RATE = 5

# The release's faults, once each: which utterance (or file) has which.
QUIRKS = {
    "corrupt": "train_dia1_utt1",
    "missing": "dev_dia1_utt0",
    "long": "test_dia0_utt1",
    "unannotated": ("test", "dia999_utt0.mp4"),
}

# MELD-style typography in the CSVs; the parser maps it back.
_TYPOGRAPHY = str.maketrans({"'": "\u2019"})


def write_mp4(path, samples, sample_rate, video=True):
    """Write an mp4 with an AAC audio stream (and a tiny video stream first).

    Args:
        path: the file to write.
        samples: float `[channels, samples]` in [-1, 1]; 1 or 2 channels.
        sample_rate: the audio sample rate, e.g. 48000.
        video: add a 16x16, 5 fps grey video stream before the audio stream.

    Returns:
        None.

    Raises:
        ValueError: `samples` is not 1 or 2 channels of samples.

    Example:

    >>> tone = numpy.sin(2 * numpy.pi * 440 * numpy.arange(48000) / 48000)
    >>> write_mp4("tone.mp4", numpy.stack([tone, tone]) * 0.3, 48000)
    """
    samples = numpy.asarray(samples, dtype=numpy.float32)
    if samples.ndim != 2 or samples.shape[0] not in (1, 2) or samples.shape[1] == 0:
        raise ValueError(
            f"samples must be [1 or 2 channels, samples], got shape {samples.shape}"
        )
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    # bitexact: no encoder version strings, so the same input gives the same bytes.
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video_stream = None
        if video:
            video_stream = container.add_stream("mpeg4", rate=VIDEO_RATE)
            video_stream.width = video_stream.height = VIDEO_SIZE
            video_stream.pix_fmt = "yuv420p"
        # The fast coder: FFmpeg's default (twoloop) is several times slower here.
        audio_stream = container.add_stream(
            "aac", rate=sample_rate, layout=layout, options={"aac_coder": "fast", "b": "96k"}
        )
        frame_size = audio_stream.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], frame_size):
            chunk = numpy.ascontiguousarray(samples[:, start : start + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            container.mux(audio_stream.encode(frame))
        container.mux(audio_stream.encode(None))
        if video_stream is not None:
            frames = max(1, int(numpy.ceil(samples.shape[1] / sample_rate * VIDEO_RATE)))
            for index in range(frames):
                image = numpy.full((VIDEO_SIZE, VIDEO_SIZE, 3), 96 + 8 * (index % 8), numpy.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                container.mux(video_stream.encode(frame))
            container.mux(video_stream.encode(None))


def _validate(seed, utterances_per_class):
    """Check the arguments of `write_demo_meld`.

    Raises:
        ValueError: an argument is out of range.
    """
    for name, value in (("seed", seed), ("utterances_per_class", utterances_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if utterances_per_class < 1:
        raise ValueError(f"utterances_per_class must be at least 1, got {utterances_per_class}")


def _character_voice(seed, character_index):
    """Draw one character's fixed voice offsets, as `demo.synthesize_utterance` takes them.

    Returns:
        A dict with `base_f0` (Hz) and multiplicative `loudness` and `rate`.
    """
    rng = numpy.random.default_rng([seed, 1000 + character_index])
    low, high = demo.SPEAKER_F0_RANGE[CHARACTERS[character_index][1]]
    return {
        "base_f0": float(rng.uniform(low, high)),
        "loudness": float(numpy.exp(rng.normal(0.0, 0.08))),
        "rate": float(numpy.exp(rng.normal(0.0, 0.05))),
    }


def _format_time(seconds):
    """Format seconds as MELD's `HH:MM:SS,mmm`."""
    milliseconds = int(round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d},{millis:03d}"


def _long_samples(rng, voice, arousal, sample_rate):
    """Join utterances of one voice, with short pauses, until `LONG_CLIP_SECONDS`."""
    parts = []
    length = 0
    while length < LONG_CLIP_SECONDS * sample_rate:
        part = demo.synthesize_utterance(rng, voice, arousal, sample_rate)
        pause = numpy.zeros(int(rng.uniform(0.2, 0.6) * sample_rate), numpy.int16)
        parts.extend([part, pause])
        length += part.size + pause.size
    return numpy.concatenate(parts)


def _corrupt_bytes(seed):
    """An mp4 `ftyp` box followed by garbage: FFmpeg cannot open it."""
    header = b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00isomiso2mp41"
    rng = numpy.random.default_rng([seed, 2000])
    return header + rng.integers(0, 256, 4096, dtype=numpy.uint8).tobytes()


def _split_rows(seed, split_index, split, utterances_per_class, voices, media_folder, video):
    """Write one split's clips and return its CSV rows (without `Sr No.`).

    Args:
        seed: the corpus seed.
        split_index: the split's position in `SPLITS`.
        split: the split name.
        utterances_per_class: rows per class.
        voices: the characters' voices.
        media_folder: where the clips go, a `pathlib.Path`.
        video: give the clips a video stream.

    Returns:
        Lists of `COLUMNS[1:]` values, in dialogue order.
    """
    rng = numpy.random.default_rng([seed, split_index, 0])
    labels = [name for name in CLASS_NAMES for _ in range(utterances_per_class)]
    labels = [labels[index] for index in rng.permutation(len(labels))]
    rows = []
    for dialogue, start in enumerate(range(0, len(labels), UTTERANCES_PER_DIALOGUE)):
        dialogue_rng = numpy.random.default_rng([seed, split_index, 1, dialogue])
        cast = dialogue_rng.choice(len(CHARACTERS), size=2, replace=False)
        season, episode = int(dialogue_rng.integers(1, 11)), int(dialogue_rng.integers(1, 25))
        clock = dialogue_rng.uniform(30.0, 1200.0)
        sample_rate = SOURCE_RATES[dialogue % 2]
        for turn, label in enumerate(labels[start : start + UTTERANCES_PER_DIALOGUE]):
            utterance_id = f"{split}_dia{dialogue}_utt{turn}"
            rng = numpy.random.default_rng([seed, split_index, 2, dialogue, turn])
            character = int(cast[turn % 2])
            arousal, valence = CLASS_CUES[label]
            # The sentence pools of the IEMOCAP demo; its composer is reused as is.
            transcript = demo.compose_transcript(valence, rng)
            if utterance_id == QUIRKS["long"]:
                samples = _long_samples(rng, voices[character], arousal, sample_rate)
            else:
                samples = demo.synthesize_utterance(rng, voices[character], arousal, sample_rate)
            seconds = samples.size / sample_rate
            path = media_folder / f"dia{dialogue}_utt{turn}.mp4"
            if utterance_id == QUIRKS["corrupt"]:
                path.write_bytes(_corrupt_bytes(seed))
            elif utterance_id == QUIRKS["missing"]:
                path.unlink(missing_ok=True)  # Also when an earlier run wrote it.
            else:
                left = samples.astype(numpy.float32) / 32768.0
                write_mp4(path, numpy.stack([left, 0.9 * left]), sample_rate, video=video)
            rows.append(
                [
                    transcript.translate(_TYPOGRAPHY).replace("...", "\u2026"),
                    CHARACTERS[character][0],
                    label,
                    CLASS_SENTIMENT[label],
                    str(dialogue),
                    str(turn),
                    str(season),
                    str(episode),
                    _format_time(clock),
                    _format_time(clock + seconds),
                ]
            )
            clock += seconds + rng.uniform(0.2, 1.5)
    return rows


def _write_csv(path, rows, encoding):
    """Write MELD's header and rows with CRLF line ends in the given encoding."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for number, row in enumerate(rows, start=1):
        writer.writerow([str(number), *row])
    path.write_bytes(buffer.getvalue().encode(encoding))


def write_demo_meld(out_dir, seed=0, utterances_per_class=4, video=True):
    """Write the demo corpus in the MELD.Raw layout.

    Files already in `out_dir` are overwritten where the corpus has a file of
    the same name and left alone otherwise (so clips of an earlier, larger
    corpus would show up as unannotated media).

    Args:
        out_dir: the corpus root to create; it plays the role of `MELD.Raw`.
        seed: the same seed always gives byte-identical files.
        utterances_per_class: rows per class in each split, so each split
            has `7 * utterances_per_class` rows, in dialogues of
            `UTTERANCES_PER_DIALOGUE`. At least 1.
        video: give every clip a tiny video stream before its audio stream, as
            MELD's clips have.

    Returns:
        The corpus root as a string.

    Raises:
        ValueError: an argument is out of range.

    Example:

    >>> from smcn_tf.corpora.meld import parse_meld
    >>> root = write_demo_meld("demo/MELD.Raw", seed=0, utterances_per_class=1)
    >>> len(parse_meld(root).utterances)  # 3 splits of 7 rows, one clip missing
    20
    """
    _validate(seed, utterances_per_class)
    seed, utterances_per_class = int(seed), int(utterances_per_class)
    root = pathlib.Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    voices = [_character_voice(seed, index) for index in range(len(CHARACTERS))]
    for split_index, split in enumerate(SPLITS):
        media_folder = root / MEDIA_FOLDERS[split]
        media_folder.mkdir(exist_ok=True)
        rows = _split_rows(
            seed, split_index, split, utterances_per_class, voices, media_folder, video
        )
        _write_csv(root / CSV_FILENAMES[split], rows, CSV_ENCODINGS[split])
    # A clip that no row annotates, from a character of the cast.
    extra_split, extra_name = QUIRKS["unannotated"]
    rng = numpy.random.default_rng([seed, 3000])
    samples = demo.synthesize_utterance(rng, voices[0], "medium", SOURCE_RATES[0])
    left = samples.astype(numpy.float32) / 32768.0
    write_mp4(
        root / MEDIA_FOLDERS[extra_split] / extra_name,
        numpy.stack([left, left]),
        SOURCE_RATES[0],
        video=video,
    )
    return str(root)
