"""What generated audio leaves beside it (spectrogram PNG, metadata JSON), and what training
leaves to look at and listen to (RUN/samples, TensorBoard)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavegen.audio.artifacts import (
    MAX_FRAMES,
    read_samples,
    spectrogram,
    spectrogram_png,
)
from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.train.loop import train

from helpers import tone, wavegen

SMALL = [
    "train.batch_size=2",
    "train.segment_length=200",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.val_every=2",
    "train.val_batches=1",
]
MELS = ["data.mel_bands=16", "data.mel_hop=128", "data.mel_n_fft=512", "data.mel_fmax=4000", "model.cond_channels=16"]
PNG_SHAPE = (300, 800)  # spectrogram_png's figure: 8 × 3 inches at 100 dpi


def image(path):
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.shape[:2] == PNG_SHAPE
    assert pixels[..., :3].std() > 0.05  # a picture, not a blank
    return pixels


def test_the_spectrogram_puts_a_tone_at_its_frequency_and_time():
    rate = 16000
    audio = np.concatenate([np.zeros(rate // 2, np.float32), tone(440, 1.0), tone(3000, 0.5)])
    db, freqs, times = spectrogram(audio, rate)
    assert db.shape == (len(freqs), len(times)) and freqs[-1] == rate / 2
    at = lambda t: int(np.argmin(np.abs(times - t)))  # noqa: E731
    assert abs(freqs[db[:, at(1.0)].argmax()] - 440) <= rate / 1024  # within one bin
    assert abs(freqs[db[:, at(1.75)].argmax()] - 3000) <= rate / 1024
    assert db[:, at(0.2)].max() < db[:, at(1.0)].max() - 60  # silence is silent
    assert abs(times[-1] - len(audio) / rate) < 0.05
    # An hour's worth of frames is capped: long audio takes a longer hop, not a huge array.
    db, _, times = spectrogram(np.tile(tone(440, 1.0), 600), rate)
    assert db.shape[1] <= MAX_FRAMES and abs(times[-1] - 600) < 1
    png = spectrogram_png(tone(440, 0.5), rate)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny_run(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(440, 3.0), 16000)
    wavegen("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=tmp_path)
    fast = [item for key in SMALL for item in ("--set", key)]
    wavegen("train", "--recipe", "tiny", "--steps", "3", *fast, "--quiet", cwd=tmp_path)
    return tmp_path


def test_synth_writes_a_spectrogram_and_metadata_beside_every_wav(tiny_run):
    out = wavegen(
        "synth", "--seconds", "0.25", "--n", "2", "--seed", "5", "--temperature", "0.9", "--quiet", cwd=tiny_run
    )
    folder = tiny_run / "samples"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"tiny-step3-seed{s}.{ext}" for s in (5, 6) for ext in ("json", "png", "wav")
    ]
    for seed in (5, 6):
        stem = folder / f"tiny-step3-seed{seed}"
        meta = json.loads(stem.with_suffix(".json").read_text())
        assert meta["engine"] in ("native", "torch") and f"'{meta['engine']}' engine" in out.stderr
        # --precision auto: int8 where the native engine runs, fp32 in the torch engine
        assert meta["precision"] == {"native": "int8", "torch": "fp32"}[meta["engine"]]
        assert Path(meta.pop("checkpoint")).name in ("best.pt", "latest.pt")
        assert float(meta.pop("took_s")) > 0 and meta.pop("created")
        assert meta == {
            "kind": "synth",
            "run": "tiny",
            "step": 3,
            "weights": "moving average",
            "seed": seed,
            "temperature": 0.9,
            "engine": meta["engine"],
            "precision": meta["precision"],
            "device": "cpu",
            "label": None,
            "prime": None,
            "mel": None,
            "streams": 2,
            "wav": stem.name + ".wav",
            "spectrogram": stem.name + ".png",
            "seconds": 0.25,
            "sample_rate": 16000,
        }
        assert sf.info(stem.with_suffix(".wav")).frames == 4000
        image(stem.with_suffix(".png"))
    assert [r["seed"] for r in read_samples(folder)] == [6, 5]  # (same second: by name, newest first)


@pytest.fixture
def mel_data(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(440, 3.0), 16000)
    config = apply_overrides(load_recipe("tiny"), MELS)
    prepare(tmp_path / "dataset", tmp_path / "prepared", config.data, progress=False)
    return tmp_path / "prepared"


def test_vocode_keeps_the_input_as_heard_beside_the_output(mel_data, tmp_path):
    from wavegen.synthesis.vocode import vocode

    config = apply_overrides(load_recipe("tiny"), MELS + SMALL + ["train.steps=2", "train.sample_every=2"])
    train(config, mel_data, tmp_path / "run", device="cpu", progress=False)
    # A training sample of a mel model: the first validation file's log-mels (0.15 s of a.wav's
    # 3 s: 2400 samples, 19 frames of 128), shorter than train.sample_seconds.
    meta = json.loads((tmp_path / "run" / "samples" / "step2.json").read_text())
    assert meta["mel"] == "a.wav" and meta["kind"] == "train"
    assert sf.info(tmp_path / "run" / "samples" / "step2.wav").frames == 19 * 128

    write_wav(tmp_path / "up.wav", tone(300, 0.5, 22050), 22050)  # resampled to the model's rate
    result = vocode(
        tmp_path / "run" / "checkpoints" / "latest.pt",
        [tmp_path / "up.wav"],
        tmp_path / "out",
        seed=3,
        progress=False,
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "up-vocoded.input.png",
        "up-vocoded.input.wav",
        "up-vocoded.json",
        "up-vocoded.png",
        "up-vocoded.wav",
    ]
    meta = json.loads((out / "up-vocoded.json").read_text())
    assert meta["input"] == {
        "source": str(tmp_path / "up.wav"),
        "wav": "up-vocoded.input.wav",
        "spectrogram": "up-vocoded.input.png",
    }
    assert (meta["kind"], meta["run"], meta["step"], meta["seed"]) == ("vocode", "run", 2, 3)
    assert meta["mel_distance_db"] == pytest.approx(result.distances_db[0], abs=1e-3)
    copy, rate = sf.read(out / "up-vocoded.input.wav", dtype="float32")
    assert rate == 16000 and len(copy) == sf.info(out / "up-vocoded.wav").frames == 8000
    db, freqs, _ = spectrogram(copy, rate)
    assert abs(freqs[db.mean(axis=1).argmax()] - 300) <= rate / 1024  # the recording itself
    image(out / "up-vocoded.input.png")
    assert [r["wav"] for r in read_samples(out)] == ["up-vocoded.wav"]  # the input is no sample of its own


@pytest.fixture
def prepared(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(440, 3.0), 16000)
    prepare(tmp_path / "dataset", tmp_path / "prepared", load_recipe("tiny").data, progress=False)
    return tmp_path / "prepared"


def test_training_writes_samples_and_tensorboard_events_and_sampling_changes_no_weight(prepared, tmp_path, said):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = SMALL + ["train.steps=4", "train.ema=0.5", "train.sample_seconds=0.25"]
    said.clear()
    messages = said
    train(
        apply_overrides(load_recipe("tiny"), overrides + ["train.sample_every=2"]),
        prepared,
        tmp_path / "run",
        device="cpu",
        progress=False,
    )
    assert not any("TensorBoard" in m for m in messages)
    samples = tmp_path / "run" / "samples"
    assert sorted(p.name for p in samples.iterdir()) == [f"step{s}.{e}" for s in (2, 4) for e in ("json", "png", "wav")]
    meta = json.loads((samples / "step4.json").read_text())
    assert {k: meta[k] for k in ("kind", "run", "step", "weights", "seed", "temperature", "checkpoint", "seconds")} == {
        "kind": "train",
        "run": "run",
        "step": 4,
        "weights": "moving average",
        "seed": 0,
        "temperature": 1.0,
        "checkpoint": None,
        "seconds": 0.25,
    }
    image(samples / "step4.png")

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"audio": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {
        "bits/train",
        "bits/validation",
        "lr",
        "grad_norm",
        "samples_per_s",
        "skipped_steps",
    }
    assert [e.step for e in events.Scalars("bits/train")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("bits/validation")] == [0, 2, 4]
    assert all(0 < e.value < 9 for e in events.Scalars("bits/train"))
    assert [e.step for e in events.Audio("sample")] == [2, 4]
    assert events.Audio("sample")[0].sample_rate == 16000
    wav, _ = sf.read(samples / "step4.wav")
    import io

    heard, _ = sf.read(io.BytesIO(events.Audio("sample")[1].encoded_audio_string))
    assert np.allclose(heard, wav, atol=1e-4)

    # Sampling draws nothing from training's random numbers: the same run without it ends identical.
    train(
        apply_overrides(load_recipe("tiny"), overrides),
        prepared,
        tmp_path / "plain",
        device="cpu",
        progress=False,
    )
    a, b = (ckpt.load(tmp_path / r / "checkpoints" / "latest.pt") for r in ("run", "plain"))
    assert all(torch.equal(a[part][k], b[part][k]) for part in ("model", "ema") for k in a[part])


def test_without_tensorboard_training_runs_as_before_and_says_so_once(prepared, tmp_path, monkeypatch, said):
    # As if tensorboard were not installed: torch.utils.tensorboard is imported afresh and fails.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    said.clear()
    messages = said
    config = apply_overrides(
        load_recipe("tiny"), SMALL + ["train.steps=2", "train.sample_every=2", "train.sample_seconds=0.1"]
    )
    result = train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    assert result.step == 2
    notes = [i for i, m in enumerate(messages) if "TensorBoard" in m]
    assert len(notes) == 1 and "`pip install tensorboard` turns it on" in messages[notes[0]]
    assert notes[0] < next(i for i, m in enumerate(messages) if m.startswith("training "))  # among the first lines
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert (tmp_path / "run" / "samples" / "step2.json").is_file() and (tmp_path / "run" / "log.csv").is_file()
