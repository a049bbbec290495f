"""A small synthetic corpus in the IEMOCAP_full_release layout, built in seconds.

`write_demo_corpus` writes five sessions with one female and one male speaker
each, in exactly the directory layout and line formats of the real release, so
`smcn_tf.corpora.iemocap.parse_iemocap` reads it with no special case.

The corpus is built so that a model needs both modalities, as with real
emotion:

- Arousal is in the voice. Every utterance is synthesised voiced speech (a run
  of syllables made of f0 harmonics with vibrato and jitter, shaped by vowel
  formants and a smooth envelope, with pauses, consonant bursts and a little
  noise). Pitch, pitch range, loudness, speaking rate and brightness rise with
  arousal: `sad` is low, `neutral` medium, and `angry` and `happy` are high and
  drawn from the same distribution, so audio alone cannot tell them apart.
- Valence is in the words. Transcripts are short sentences composed from
  template parts: `happy` from a positive pool, `neutral` from a factual pool,
  `angry` and `sad` from one shared negative pool with the same distribution,
  so text alone cannot tell angry from sad.

Audio alone thus tops out near 75% unweighted accuracy, text alone near 75%,
and both together near 100%.
"""

import dataclasses
import pathlib

import numpy
import soundfile

DEMO_SESSIONS = 5

GENDERS = ("F", "M")

# Raw IEMOCAP labels used by the demo: the four classes (with `exc`, which the
# parser merges into happy) and two that the parser drops.
LABEL_AROUSAL = {
    "ang": "high",
    "hap": "high",
    "exc": "high",
    "neu": "medium",
    "sad": "low",
}
LABEL_VALENCE = {
    "ang": "negative",
    "hap": "positive",
    "exc": "positive",
    "neu": "neutral",
    "sad": "negative",
}
DROPPED_LABELS_PER_SPEAKER = ("fru", "xxx")


@dataclasses.dataclass(frozen=True)
class ArousalLevel:
    """The voice settings of one arousal level, before per-utterance variation.

    Args:
        f0_scale: mean pitch as a multiple of the speaker's base f0.
        pitch_range_semitones: spread of the syllable pitch accents.
        rms: loudness, the RMS of the whole utterance (full scale = 1).
        syllables_per_second: speaking rate.
        spectral_tilt: harmonic k has amplitude k ** -tilt; lower is brighter.
    """

    f0_scale: float
    pitch_range_semitones: float
    rms: float
    syllables_per_second: float
    spectral_tilt: float


AROUSAL_LEVELS = {
    "low": ArousalLevel(0.85, 2.0, 0.03, 2.6, 1.7),
    "medium": ArousalLevel(1.0, 4.0, 0.065, 3.8, 1.3),
    "high": ArousalLevel(1.3, 7.0, 0.14, 5.2, 0.9),
}

# Per-utterance log-normal spread (standard deviation of the natural log) of
# each setting; small enough that the three levels stay clearly apart.
UTTERANCE_SPREAD = {
    "f0": 0.05,
    "pitch_range": 0.15,
    "rms": 0.12,
    "rate": 0.08,
}
# Per-speaker base f0 ranges in Hz: male voices sit about an octave lower.
SPEAKER_F0_RANGE = {"F": (190.0, 230.0), "M": (100.0, 125.0)}
UTTERANCE_SECONDS = (1.0, 2.4)

# Vowel formant centres (Hz) and bandwidths used to colour each syllable.
_VOWEL_FORMANTS = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),  # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),  # o
)
_FORMANT_BANDWIDTHS = (160.0, 200.0, 260.0)

# Dialogs per session, mixing improvised and scripted names as the release does;
# `{session}` is the two-digit session number.
_DIALOG_PATTERNS = (
    "Ses{session}F_impro01",
    "Ses{session}M_impro05a",
    "Ses{session}F_script01_1",
    "Ses{session}M_script02_2",
)

# Sentence parts. Slot fillers are shared by every pool, so only the predicate
# words carry valence and a model has to generalise over the fillers.
PEOPLE = (
    "my sister", "my brother", "the manager", "our neighbor", "my friend Sam",
    "the landlord", "my mother", "the new teacher", "my cousin", "our coach",
    "my roommate", "your father",
)
THINGS = (
    "the car", "the apartment", "the project", "the wedding", "the interview",
    "the trip", "the concert", "the contract", "the dinner", "the garden",
    "the report", "the house",
)
TIMES = (
    "today", "this morning", "last night", "yesterday", "this week", "on Friday",
    "after lunch", "an hour ago",
)
CLOCK_TIMES = ("nine", "ten thirty", "noon", "two", "four fifteen", "six")

POSITIVE_CORES = (
    "{person} loved {thing}",
    "{thing} turned out wonderful",
    "we won an award for {thing}",
    "{person} finally said yes",
    "{person} surprised me with flowers {time}",
    "I got the job {time}",
    "everything about {thing} was perfect",
    "{person} is coming home {time}",
    "we are celebrating {thing} tonight",
    "{person} made me laugh all evening",
    "the news about {thing} is fantastic",
    "I passed every single exam",
    "{person} gave me the sweetest gift",
    "we finally bought {thing}",
    "{thing} was a huge success",
    "I feel so lucky about {thing}",
    "{person} and I had the best time {time}",
    "we got the best seats for {thing}",
    "{person} is getting married",
    "I can't stop smiling about {thing}",
    "{person} said my work on {thing} was brilliant",
    "we are going to the beach {time}",
)
NEGATIVE_CORES = (
    "{person} lied to me about {thing}",
    "{thing} is completely ruined",
    "{person} left without saying goodbye",
    "nobody showed up for {thing}",
    "I lost everything I put into {thing}",
    "{person} cancelled {thing} again",
    "they fired me {time}",
    "{person} forgot about me {time}",
    "everything about {thing} went wrong",
    "{person} never called me back",
    "I failed the test {time}",
    "they threw away {thing}",
    "{person} broke {thing}",
    "it was all for nothing",
    "no one listened to me {time}",
    "{person} blamed me for {thing}",
    "we lost {thing}",
    "{person} won't talk to me anymore",
    "I waited all night for {person}",
    "{thing} fell apart {time}",
    "{person} took the money for {thing}",
    "they said {thing} was my fault",
)
NEUTRAL_CORES = (
    "{person} moved {thing} to next week",
    "the meeting about {thing} starts at {clock}",
    "I need to call {person} {time}",
    "{thing} is on the second floor",
    "{person} asked about {thing}",
    "the form for {thing} needs two signatures",
    "we can talk about {thing} {time}",
    "the bus leaves at {clock}",
    "{person} works on Tuesdays",
    "I put the keys next to the door",
    "{thing} has three rooms",
    "{person} will pick up {thing} {time}",
    "the office closes at {clock}",
    "please write down the address for {thing}",
    "the list for {thing} is on the table",
    "{person} read the report {time}",
    "the train to the city takes an hour",
    "{person} parked near {thing}",
    "the papers for {thing} are in the blue folder",
    "I checked the schedule for {thing} {time}",
    "{person} uses the other entrance",
    "the number for {thing} is on the fridge",
)
SHARED_OPENERS = ("So,", "Well,", "You know,", "Listen,", "Okay,")
OPENERS = {
    "positive": ("Oh wow,", "Guess what,", "Oh, good news,"),
    "negative": ("Oh no,", "I can't believe it,", "Unbelievable,"),
    "neutral": ("By the way,", "For the record,", "Just so you know,"),
}
ENDINGS = {
    "positive": ("!", ".", ", isn't that amazing?", ", I'm so happy.", ", it's wonderful!"),
    "negative": (".", "...", ", and nobody cares.", ", it's awful.", ", I just can't anymore."),
    "neutral": (".", ", I think.", ", as far as I know.", ", like last time."),
}
CORES = {"positive": POSITIVE_CORES, "negative": NEGATIVE_CORES, "neutral": NEUTRAL_CORES}

# Consensus [V, A, D] and evaluator categories written in the label files.
_LABEL_VAD = {
    "ang": (1.5, 4.0, 4.0),
    "hap": (4.5, 3.5, 3.0),
    "exc": (4.0, 4.0, 3.5),
    "neu": (3.0, 2.5, 2.5),
    "sad": (1.5, 1.5, 2.0),
    "fru": (2.0, 3.5, 3.5),
    "xxx": (2.5, 3.0, 3.0),
}
_LABEL_CATEGORIES = {
    "ang": ("Anger", "Anger"),
    "hap": ("Happiness", "Happiness"),
    "exc": ("Excited", "Excited"),
    "neu": ("Neutral state", "Neutral state"),
    "sad": ("Sadness", "Sadness"),
    "fru": ("Frustration", "Frustration"),
    "xxx": ("Frustration", "Anger"),
}
_HEADER_LINE = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


def compose_transcript(valence, rng):
    """Compose one sentence of the given valence from the template parts.

    Args:
        valence: `"positive"`, `"negative"` or `"neutral"`.
        rng: a `numpy.random.Generator`.

    Returns:
        The sentence, e.g. `"Oh no, my cousin cancelled the trip again."`.
    """
    core = CORES[valence][rng.integers(len(CORES[valence]))]
    core = core.format(
        person=PEOPLE[rng.integers(len(PEOPLE))],
        thing=THINGS[rng.integers(len(THINGS))],
        time=TIMES[rng.integers(len(TIMES))],
        clock=CLOCK_TIMES[rng.integers(len(CLOCK_TIMES))],
    )
    choice = rng.random()
    if choice < 0.4:
        opener = SHARED_OPENERS[rng.integers(len(SHARED_OPENERS))]
    elif choice < 0.65:
        opener = OPENERS[valence][rng.integers(len(OPENERS[valence]))]
    else:
        opener = ""
    ending = ENDINGS[valence][rng.integers(len(ENDINGS[valence]))]
    sentence = f"{opener} {core}" if opener else core[0].upper() + core[1:]
    return sentence + ending


def _speaker_voice(seed, session, gender):
    """Draw one speaker's fixed voice offsets.

    Args:
        seed: the corpus seed.
        session: the session number.
        gender: `"F"` or `"M"`.

    Returns:
        A dict with `base_f0` (Hz) and multiplicative `loudness` and `rate`.
    """
    rng = numpy.random.default_rng([seed, session, GENDERS.index(gender), 0])
    low, high = SPEAKER_F0_RANGE[gender]
    return {
        "base_f0": float(rng.uniform(low, high)),
        "loudness": float(numpy.exp(rng.normal(0.0, 0.08))),
        "rate": float(numpy.exp(rng.normal(0.0, 0.05))),
    }


def _smooth_noise(rng, length, sample_rate, points_per_second=25.0):
    """Make slowly varying Gaussian noise by interpolating sparse points.

    Args:
        rng: a `numpy.random.Generator`.
        length: number of samples.
        sample_rate: samples per second.
        points_per_second: how often the noise takes a new value.

    Returns:
        A float array of `length` values with unit-scale variation.
    """
    count = max(2, int(length / sample_rate * points_per_second) + 2)
    points = rng.normal(0.0, 1.0, count)
    return numpy.interp(
        numpy.arange(length), numpy.linspace(0, length - 1, count), points
    )


def _syllable(rng, f0_contour, amplitude, tilt, sample_rate):
    """Synthesise one voiced syllable.

    Args:
        rng: a `numpy.random.Generator`.
        f0_contour: per-sample f0 in Hz.
        amplitude: peak gain of the envelope.
        tilt: spectral tilt, harmonic k has amplitude k ** -tilt.
        sample_rate: samples per second.

    Returns:
        The syllable's samples, same length as `f0_contour`.
    """
    length = len(f0_contour)
    phase = 2.0 * numpy.pi * numpy.cumsum(f0_contour) / sample_rate
    mean_f0 = float(numpy.mean(f0_contour))
    # Harmonics up to 4.5 kHz (or below Nyquist for low sample rates).
    harmonic_count = max(1, int(min(4500.0, 0.45 * sample_rate) / numpy.max(f0_contour)))
    harmonics = numpy.arange(1, harmonic_count + 1, dtype=numpy.float64)
    formants = numpy.asarray(_VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))])
    frequencies = harmonics * mean_f0
    detuning = (frequencies[:, None] - formants[None, :]) / numpy.asarray(_FORMANT_BANDWIDTHS)
    resonance = numpy.sum(1.0 / (1.0 + detuning**2), axis=1)
    weights = harmonics ** -tilt * (0.2 + resonance)
    offsets = rng.uniform(0.0, 2.0 * numpy.pi, harmonic_count)
    angles = harmonics[:, None] * phase[None, :] + offsets[:, None]
    # float32 sine is about twice as fast and its error is far below PCM16's.
    voiced = weights @ numpy.sin(angles.astype(numpy.float32)).astype(numpy.float64)
    # Raised-cosine attack and a longer release, like a spoken vowel.
    envelope = numpy.ones(length)
    attack = max(1, int(0.25 * length))
    release = max(1, int(0.35 * length))
    envelope[:attack] = numpy.sin(0.5 * numpy.pi * numpy.arange(attack) / attack) ** 2
    envelope[-release:] = numpy.cos(0.5 * numpy.pi * numpy.arange(release) / release) ** 2
    return amplitude * envelope * voiced / max(float(numpy.sum(weights)), 1e-9)


def synthesize_utterance(rng, voice, arousal, sample_rate):
    """Synthesise one utterance of voiced speech at an arousal level.

    Args:
        rng: a `numpy.random.Generator` for this utterance.
        voice: the speaker's offsets from `_speaker_voice`.
        arousal: `"low"`, `"medium"` or `"high"`.
        sample_rate: samples per second.

    Returns:
        int16 samples, 1.0 to 2.4 seconds long.
    """
    level = AROUSAL_LEVELS[arousal]
    f0 = voice["base_f0"] * level.f0_scale * numpy.exp(rng.normal(0.0, UTTERANCE_SPREAD["f0"]))
    pitch_range = level.pitch_range_semitones * numpy.exp(
        rng.normal(0.0, UTTERANCE_SPREAD["pitch_range"])
    )
    rms = level.rms * voice["loudness"] * numpy.exp(rng.normal(0.0, UTTERANCE_SPREAD["rms"]))
    rate = level.syllables_per_second * voice["rate"] * numpy.exp(
        rng.normal(0.0, UTTERANCE_SPREAD["rate"])
    )
    seconds = rng.uniform(*UTTERANCE_SECONDS)
    length = int(round(seconds * sample_rate))
    signal = numpy.zeros(length)

    # Whole-utterance pitch movement: declination, vibrato and jitter (semitones).
    time = numpy.arange(length) / sample_rate
    vibrato_rate = rng.uniform(4.5, 6.5)
    contour = (
        -1.5 * time / seconds
        + 0.2 * numpy.sin(2.0 * numpy.pi * vibrato_rate * time + rng.uniform(0, 2 * numpy.pi))
        + 0.25 * _smooth_noise(rng, length, sample_rate)
    )

    period = 1.0 / rate
    position = rng.uniform(0.04, 0.1)
    end = seconds - rng.uniform(0.05, 0.12)
    first = True
    while position + 0.6 * period < end:
        if not first and rng.random() < 0.12:
            position += rng.uniform(0.12, 0.25)  # a short pause between phrases
            if position + 0.6 * period >= end:
                break
        first = False
        syllable_seconds = min(period * rng.uniform(0.6, 0.85), end - position)
        start = int(position * sample_rate)
        stop = min(length, start + max(2, int(syllable_seconds * sample_rate)))
        accent = rng.uniform(-0.5, 0.5) * pitch_range
        glide = rng.uniform(-0.3, 0.3) * pitch_range * numpy.linspace(0.0, 1.0, stop - start)
        f0_contour = f0 * 2.0 ** ((contour[start:stop] + accent + glide) / 12.0)
        amplitude = rng.uniform(0.6, 1.0)
        signal[start:stop] += _syllable(
            rng, f0_contour, amplitude, level.spectral_tilt, sample_rate
        )
        if rng.random() < 0.6:
            # A consonant: a short high-passed noise burst before the vowel.
            burst = int(rng.uniform(0.015, 0.04) * sample_rate)
            burst_start = max(0, start - burst // 2)
            noise = numpy.diff(rng.normal(0.0, 1.0, burst + 1))
            noise *= numpy.hanning(burst) * 0.08 * amplitude
            signal[burst_start:burst_start + burst] += noise[: length - burst_start]
        position += period * rng.uniform(0.9, 1.1)

    signal *= rms / max(float(numpy.sqrt(numpy.mean(signal**2))), 1e-9)
    signal += rng.normal(0.0, 0.001, length)  # a quiet noise floor
    peak = float(numpy.max(numpy.abs(signal)))
    if peak > 0.95:
        signal *= 0.95 / peak
    return numpy.round(signal * 32767.0).astype(numpy.int16)


def _format_label_block(start, end, utterance_id, raw_label):
    """Write a label line with its per-evaluator lines, as in EmoEvaluation.

    Args:
        start: start time in seconds.
        end: end time in seconds.
        utterance_id: the turn's id.
        raw_label: the consensus label, e.g. `"neu"`.

    Returns:
        The block's lines, ending with a blank line.
    """
    valence, activation, dominance = _LABEL_VAD[raw_label]
    first, second = _LABEL_CATEGORIES[raw_label]
    return [
        f"[{start:.4f} - {end:.4f}]\t{utterance_id}\t{raw_label}\t"
        f"[{valence:.4f}, {activation:.4f}, {dominance:.4f}]",
        f"C-E1:\t{first};\t()",
        f"C-E3:\t{second};\t()",
        f"A-E1:\tval {round(valence)}; act {round(activation)}; dom  {round(dominance)};\t()",
        "",
    ]


def _validate(seed, utterances_per_speaker, sample_rate):
    """Check the arguments of `write_demo_corpus`.

    Args:
        seed: must be a non-negative int.
        utterances_per_speaker: must be a positive multiple of 4.
        sample_rate: must be an int of at least 8000.

    Raises:
        ValueError: an argument is out of range.
    """
    for name, value in (("seed", seed), ("utterances_per_speaker", utterances_per_speaker),
                        ("sample_rate", sample_rate)):
        if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if utterances_per_speaker <= 0 or utterances_per_speaker % 4:
        raise ValueError(
            "utterances_per_speaker must be a positive multiple of 4 (one share per "
            f"class), got {utterances_per_speaker}"
        )
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")


def _speaker_labels(seed, session, gender, utterances_per_speaker):
    """List one speaker's raw labels in a seeded random order.

    Args:
        seed: the corpus seed.
        session: the session number.
        gender: `"F"` or `"M"`.
        utterances_per_speaker: labelled (kept) utterances of this speaker.

    Returns:
        Raw labels: equal shares of ang, happy (hap, a third of them exc), neu
        and sad, plus the dropped labels.
    """
    share = utterances_per_speaker // 4
    excited = share // 3
    labels = (
        ["ang"] * share + ["hap"] * (share - excited) + ["exc"] * excited
        + ["neu"] * share + ["sad"] * share + list(DROPPED_LABELS_PER_SPEAKER)
    )
    rng = numpy.random.default_rng([seed, session, GENDERS.index(gender), 1])
    return [labels[index] for index in rng.permutation(len(labels))]


def _utterance_content(seed, session, gender, index, raw_label, voice, sample_rate):
    """Draw one utterance's audio and transcript from its own generator.

    Args:
        seed: the corpus seed.
        session: the session number.
        gender: `"F"` or `"M"`.
        index: the utterance's position in the speaker's list.
        raw_label: its raw label.
        voice: the speaker's voice offsets.
        sample_rate: samples per second.

    Returns:
        `(samples, transcript)`.
    """
    rng = numpy.random.default_rng([seed, session, GENDERS.index(gender), 2, index])
    if raw_label in LABEL_AROUSAL:
        arousal, valence = LABEL_AROUSAL[raw_label], LABEL_VALENCE[raw_label]
    else:
        # Dropped turns get any voice and words; the parser never keeps them.
        arousal = ("low", "medium", "high")[rng.integers(3)]
        valence = ("positive", "negative", "neutral")[rng.integers(3)]
    transcript = compose_transcript(valence, rng)
    samples = synthesize_utterance(rng, voice, arousal, sample_rate)
    return samples, transcript


def _write_session(root, seed, session, utterances_per_speaker, sample_rate):
    """Write one session's label files, transcriptions and WAVs.

    Args:
        root: the corpus root, a `pathlib.Path`.
        seed: the corpus seed.
        session: the session number.
        utterances_per_speaker: kept utterances per speaker.
        sample_rate: samples per second.
    """
    session_code = f"{session:02d}"
    dialogs = [pattern.format(session=session_code) for pattern in _DIALOG_PATTERNS]
    # turns[dialog][gender] -> list of (utterance_id, raw_label, samples, transcript)
    turns = {dialog: {gender: [] for gender in GENDERS} for dialog in dialogs}
    for gender in GENDERS:
        voice = _speaker_voice(seed, session, gender)
        labels = _speaker_labels(seed, session, gender, utterances_per_speaker)
        for index, raw_label in enumerate(labels):
            dialog = dialogs[index % len(dialogs)]
            utterance_id = f"{dialog}_{gender}{len(turns[dialog][gender]):03d}"
            samples, transcript = _utterance_content(
                seed, session, gender, index, raw_label, voice, sample_rate
            )
            turns[dialog][gender].append((utterance_id, raw_label, samples, transcript))

    session_path = root / f"Session{session}"
    evaluation_path = session_path / "dialog" / "EmoEvaluation"
    transcription_path = session_path / "dialog" / "transcriptions"
    evaluation_path.mkdir(parents=True, exist_ok=True)
    transcription_path.mkdir(parents=True, exist_ok=True)
    for dialog_index, dialog in enumerate(dialogs):
        wav_folder = session_path / "sentences" / "wav" / dialog
        wav_folder.mkdir(parents=True, exist_ok=True)
        timing_rng = numpy.random.default_rng([seed, session, 3, dialog_index])
        # The two speakers take turns, as in a dyadic dialog.
        female, male = turns[dialog]["F"], turns[dialog]["M"]
        ordered = []
        for position in range(max(len(female), len(male))):
            ordered.extend(speaker_turns[position] for speaker_turns in (female, male)
                           if position < len(speaker_turns))
        label_lines = [_HEADER_LINE, ""]
        transcription_lines = []
        clock = timing_rng.uniform(0.5, 3.0)
        for turn_number, (utterance_id, raw_label, samples, transcript) in enumerate(ordered):
            start = clock
            end = start + len(samples) / sample_rate
            label_lines.extend(_format_label_block(start, end, utterance_id, raw_label))
            transcription_lines.append(f"{utterance_id} [{start:08.4f}-{end:08.4f}]: {transcript}")
            soundfile.write(
                wav_folder / f"{utterance_id}.wav", samples, sample_rate, subtype="PCM_16"
            )
            clock = end + timing_rng.uniform(0.2, 1.5)
            if turn_number == 0:
                # An overlapping back-channel with no utterance id, as the
                # release has (e.g. Ses01F_impro01_MXX0); the parser skips it.
                other = "M" if utterance_id[-4] == "F" else "F"
                transcription_lines.append(
                    f"{dialog}_{other}XX0 [{end:08.4f}-{end + 0.4:08.4f}]: [LAUGHTER]"
                )
        (evaluation_path / f"{dialog}.txt").write_text(
            "\n".join(label_lines) + "\n", encoding="utf-8", newline="\n"
        )
        (transcription_path / f"{dialog}.txt").write_text(
            "\n".join(transcription_lines) + "\n", encoding="utf-8", newline="\n"
        )


def write_demo_corpus(out_dir, seed=0, utterances_per_speaker=24, sample_rate=16000):
    """Write the demo corpus in the IEMOCAP_full_release layout.

    Files already in `out_dir` are overwritten where the corpus has a file of
    the same name and left alone otherwise.

    Args:
        out_dir: the corpus root to create (it plays the role of
            `IEMOCAP_full_release`).
        seed: the same seed always gives byte-identical files.
        utterances_per_speaker: kept utterances per speaker, a multiple of 4
            (equal shares per class); each speaker also gets one `fru` and one
            `xxx` turn, which the parser drops.
        sample_rate: sample rate of the mono PCM16 WAVs.

    Returns:
        The corpus root as a string.

    Raises:
        ValueError: an argument is out of range.
    """
    _validate(seed, utterances_per_speaker, sample_rate)
    root = pathlib.Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for session in range(1, DEMO_SESSIONS + 1):
        _write_session(root, int(seed), session, int(utterances_per_speaker), int(sample_rate))
    return str(root)
