import json

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio.mulaw import SILENCE_CODE
from wavegen.config import DataConfig
from wavegen.data.prepare import prepare
from wavegen.data.prepared import PreparedData
from wavegen.data.windows import IGNORE, WindowSampler
from wavegen.errors import DataError

from helpers import tone


@pytest.fixture
def mixed_dataset(tmp_path):
    """Stereo 24-bit 44.1 kHz WAV, 8 kHz FLAC, OGG in a subfolder, a fake WAV and a silent file."""
    root = tmp_path / "mixed"
    (root / "sub" / "deeper").mkdir(parents=True)
    stereo = np.stack([tone(440, 1.0, 44100), tone(660, 1.0, 44100)], axis=1)
    sf.write(root / "stereo.wav", stereo, 44100, subtype="PCM_24")
    sf.write(root / "sub" / "low.flac", tone(300, 2.0, 8000), 8000)
    sf.write(root / "sub" / "deeper" / "clip.ogg", tone(500, 0.5, 22050), 22050)
    (root / "fake.wav").write_text("this is not audio")
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (root / "notes.txt").write_text("not audio: named as ignored")
    return root


def test_prepare_reads_formats_skips_bad_files_and_writes_consistent_output(mixed_dataset, tmp_path, said):
    messages = said
    out = tmp_path / "prepared"
    manifest = prepare(mixed_dataset, out, DataConfig(val_fraction=0.1), progress=False)
    sources = [f["source"] for f in manifest["files"]]
    assert sources == ["stereo.wav", "sub/deeper/clip.ogg", "sub/low.flac"]
    skipped = {s["source"]: s["reason"] for s in manifest["skipped"] if not s.get("ignored")}
    assert set(skipped) == {"fake.wav", "empty.wav", "silent.wav"}
    # not audio by name nor content: named, and listed as ignored
    assert [s for s in manifest["skipped"] if s.get("ignored")] == [
        {"source": "notes.txt", "reason": "not audio (looks like text)", "ignored": True}
    ]
    assert "0 bytes" in skipped["empty.wav"]
    assert skipped["silent.wav"].startswith("silent throughout")  # trimming or not
    assert sum("skipped" in m and "fake.wav" in m for m in messages) == 1
    assert "skipped 3 files" in messages[-1]
    durations = {f["source"]: f["duration_s"] for f in manifest["files"]}
    assert durations["stereo.wav"] == pytest.approx(1.0, abs=1e-3)  # resampled 44.1k -> 16k
    assert durations["sub/low.flac"] == pytest.approx(2.0, abs=1e-3)

    data = PreparedData(out)
    assert data.sample_rate == 16000
    assert data.train.samples + data.val.samples == sum(round(d * 16000) for d in durations.values())
    for entry in manifest["files"]:  # spans tile the flat files in order
        total = entry["train"][1] + entry["val"][1]
        assert entry["val"][1] == int(total * 0.1)


def test_trimming_reports_what_it_removed_and_names_files_it_empties(mixed_dataset, tmp_path, said):
    messages = said
    padded = np.concatenate([np.zeros(8000), tone(440, 1.0), np.zeros(4000)]).astype(np.float32)
    sf.write(mixed_dataset / "padded.wav", padded, 16000)
    manifest = prepare(mixed_dataset, tmp_path / "p", DataConfig(trim_silence=True), progress=False)
    trimmed = {f["source"]: f["trimmed_s"] for f in manifest["files"]}
    assert 0.5 < trimmed["padded.wav"] <= 0.75  # librosa trims whole frames: a margin stays
    assert "silent.wav" not in trimmed
    assert any("silent.wav" in m and "silent throughout" in m for m in messages)
    assert "trimmed" in messages[-1] and "s of silence" in messages[-1]


def test_rerunning_prepare_replaces_the_output_consistently(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    first = prepare(tone_dataset, out, DataConfig(), progress=False)
    second = prepare(tone_dataset, out, DataConfig(), progress=False)
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.u8", "val.u8"]


def test_missing_empty_or_unusable_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        prepare(tmp_path / "nope", tmp_path / "out", DataConfig(), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files found"):
        prepare(tmp_path / "empty", tmp_path / "out", DataConfig(), progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_text("nope")
    with pytest.raises(DataError, match="none of the 1 audio files could be used"):
        prepare(tmp_path / "bad", tmp_path / "out", DataConfig(), progress=False)
    with pytest.raises(DataError, match="no prepared data here"):
        PreparedData(tmp_path / "out")


def test_truncated_code_file_is_detected(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    prepare(tone_dataset, out, DataConfig(), progress=False)
    with open(out / "train.u8", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(DataError, match="expected .* bytes"):
        PreparedData(out)


def test_windows_pad_the_start_with_silence_and_mask_past_the_end(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    prepare(tone_dataset, out, DataConfig(), progress=False)
    split = PreparedData(out).train
    offset, length = split.spans[0]
    sampler = WindowSampler(split, context=50, segment=100, seed=0)
    inputs, targets = sampler.window(0, target_start=20)
    assert (inputs[:30] == SILENCE_CODE).all()
    assert np.array_equal(inputs[30:], split.codes[offset : offset + 120])
    assert np.array_equal(targets, inputs[50:])
    inputs, targets = sampler.window(0, target_start=length - 40)
    assert (targets[40:] == IGNORE).all() and (targets[:40] != IGNORE).all()


def test_start_fraction_draws_windows_from_the_start_of_files(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    prepare(tone_dataset, out, DataConfig(), progress=False)
    split = PreparedData(out).train
    padded = lambda inputs: (inputs[:, 0] == SILENCE_CODE).mean()  # noqa: E731
    never = WindowSampler(split, context=100, segment=200, seed=0, start_fraction=0.0)
    always = WindowSampler(split, context=100, segment=200, seed=0, start_fraction=1.0)
    assert padded(never.batch(400)[0]) < 0.05
    assert padded(always.batch(400)[0]) > 0.95


def test_sampler_state_restores_the_same_windows(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    prepare(tone_dataset, out, DataConfig(), progress=False)
    sampler = WindowSampler(PreparedData(out).train, 10, 20, seed=3, start_fraction=0.5)
    state = json.loads(json.dumps(sampler.state()))
    first = sampler.batch(4)
    sampler.set_state(state)
    assert all(np.array_equal(a, b) for a, b in zip(first, sampler.batch(4)))


def test_labels_from_folders_and_mels_aligned_with_the_codes(tmp_path, said):
    from wavegen.audio.features import SILENCE, MelSettings, log_mel
    from wavegen.audio.io import load_audio
    from wavegen.model.conditioning import mel_window

    root = tmp_path / "labelled"
    for label, freqs in {"low": [200, 250], "high": [800]}.items():
        (root / label).mkdir(parents=True)
        for f in freqs:
            sf.write(root / label / f"{f}.wav", tone(f, 1.0), 16000)
    sf.write(root / "loose.wav", tone(300, 1.0), 16000)  # not in a label folder
    said.clear()
    messages = said
    config = DataConfig(label_source="folders", mel_bands=16, mel_hop=100, mel_n_fft=400, val_fraction=0.25)
    manifest = prepare(root, tmp_path / "prepared", config, progress=False)
    assert manifest["labels"] == ["high", "low"]
    assert "labels: high (1 file), low (2 files)" in messages
    assert any("loose.wav" in m and "not inside a label folder" in m for m in messages)
    data = PreparedData(tmp_path / "prepared")
    assert data.labels == ["high", "low"] and data.train.labels == [0, 1, 1]
    settings = MelSettings.from_data(config)
    assert data.mel == settings.as_dict()
    # Each part's frames are the features of that part's audio: 12000 training samples -> 120 frames.
    audio = load_audio(root / "low" / "200.wav", 16000)  # as written: 16-bit
    offset, count = data.train.mel_spans[1]
    assert count == 120 and data.val.mel_spans[1][1] == 40
    assert np.allclose(data.train.mels[offset : offset + count], log_mel(audio[:12000], settings), atol=1e-5)
    # A window's frames: silence before the file, the file's frames, silence after it.
    sampler = WindowSampler(data.train, context=50, segment=300, seed=0)
    mels, start_offset = sampler.window_mels(1, start=-250, length=350)
    first, n = mel_window(-250, 350, 100)
    assert mels.shape == (16, n) and start_offset == -250 % 100
    frames = np.arange(first, first + n)
    assert np.all(mels[:, frames < 0] == np.float32(SILENCE))
    assert np.array_equal(mels[:, frames >= 0], data.train.mels[offset : offset + (frames >= 0).sum()].T)
    batch = sampler.batch(5)
    assert batch.labels.shape == (5,) and set(batch.labels) <= {0, 1}
    assert batch.mels.shape == (5, 16, n) and batch.offsets.shape == (5,)


def test_windows_without_context_from_a_file_start_lead_with_silence_that_is_not_a_target(tone_dataset, tmp_path):
    out = tmp_path / "prepared"
    prepare(tone_dataset, out, DataConfig(), progress=False)
    split = PreparedData(out).train
    offset, _ = split.spans[0]
    always = WindowSampler(split, context=0, segment=300, seed=0, start_fraction=1.0, start_silence=129)
    inputs, targets = always.batch(5)[:2]
    assert inputs.shape == targets.shape == (5, 300)
    assert (inputs[:, :129] == SILENCE_CODE).all() and (targets[:, :129] == IGNORE).all()
    assert (inputs[:, 129:] == split.codes[offset : offset + 171]).all() and (targets[:, 129:] == inputs[:, 129:]).all()
    # At most half a window of silence; none in windows drawn elsewhere, nor with context.
    short = WindowSampler(split, context=0, segment=100, seed=0, start_fraction=1.0, start_silence=129)
    assert (short.batch(3).targets[:, :50] == IGNORE).all() and (short.batch(3).targets[:, 50:] != IGNORE).all()
    never = WindowSampler(split, context=0, segment=300, seed=0, start_fraction=0.0, start_silence=129)
    assert (never.batch(50).targets != IGNORE).all()
    with_context = WindowSampler(split, context=129, segment=300, seed=0, start_fraction=1.0, start_silence=129)
    assert (with_context.batch(50).targets != IGNORE).all()
