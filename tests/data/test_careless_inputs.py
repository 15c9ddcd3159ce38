"""What ``prepare`` and the prepared-data reader do with careless or hand-edited inputs: a
manifest whose fields were edited, audio beyond full scale, ``--channel N`` on mono files, and
sizes far beyond any real data set (a rate of 1 GHz, 100,000 mel bands)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio import features
from wavegen.audio.features import MelSettings, empty_bands
from wavegen.audio.io import read_recording
from wavegen.config import Config, DataConfig, apply_overrides
from wavegen.data.prepare import prepare
from wavegen.data.prepared import PreparedData
from wavegen.errors import ConfigError, DataError

from helpers import tone

RATE = 16000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Three short labelled tones, with 8-band log-mels: every kind of field a manifest has."""
    root = tmp_path_factory.mktemp("careless")
    for label, hz in (("low", 220), ("high", 660), ("high", 880)):
        (root / "ds" / label).mkdir(parents=True, exist_ok=True)
        sf.write(root / "ds" / label / f"{hz}.wav", tone(hz, 0.05), RATE)
    config = DataConfig(label_source="folders", mel_bands=8, mel_hop=64, mel_n_fft=256, val_fraction=0.25)
    prepare(root / "ds", root / "prepared", config, progress=False)
    return root / "prepared"


def _edited(prepared, tmp_path, edit):
    folder = tmp_path / "edited"
    shutil.copytree(prepared, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


EDITS = {
    "sample_rate": lambda m: m.update(sample_rate="16000"),
    "sample_rate ": lambda m: m.update(sample_rate=10**9),
    "version": lambda m: m.update(version=7),
    "channel": lambda m: m.update(channel=["left"]),
    "val_fraction": lambda m: m.update(val_fraction=2),
    "labels": lambda m: m.update(labels=["high", "high"]),
    "files": lambda m: m.update(files={"a": 1}),
    "files[0].label": lambda m: m["files"][0].update(label="middle"),
    "files[1].train": lambda m: m["files"][1].update(train=[0, m["files"][1]["train"][1]]),
    "files[2].val": lambda m: m["files"][2].update(val=[m["files"][2]["val"][0], "many"]),
    "train_samples": lambda m: m.update(train_samples=m["train_samples"] + 1),
    "val_samples": lambda m: m.update(val_samples=-1),
    "mel": lambda m: m.update(mel={"bands": 8}),
    "mel.bands": lambda m: m["mel"].update(bands=100000),
    "mel.n_fft": lambda m: m["mel"].update(n_fft=16),
    "mel.fmax": lambda m: m["mel"].update(fmax=1e6),
    "files[2].train_frames": lambda m: (  # a frame count that does not fit its samples (totals agreeing)
        m.update(train_frames=m["train_frames"] + 1),
        m["files"][2].update(train_frames=[m["files"][2]["train_frames"][0], m["files"][2]["train_frames"][1] + 1]),
    ),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_a_hand_edited_manifest_field_is_one_line_naming_the_file_and_field(prepared, tmp_path, field):
    folder = _edited(prepared, tmp_path, EDITS[field])
    with pytest.raises(DataError) as caught:
        PreparedData(folder)
    assert str(caught.value).startswith(f"{folder / 'manifest.json'}: '{field.strip()}' must be ")


def test_the_manifest_prepare_writes_passes_and_a_missing_code_file_is_named(prepared, tmp_path):
    data = PreparedData(prepared)
    assert data.labels == ["high", "low"] and data.mel["bands"] == 8 and len(data.train.spans) == 3
    folder = _edited(prepared, tmp_path, lambda m: None)
    (folder / "val.mel").unlink()
    with pytest.raises(DataError, match=r"val.mel: missing \(its manifest names it\)"):
        PreparedData(folder)


@pytest.mark.parametrize("peak", [1.001, 1.5, 2.5, 40.0])
def test_audio_beyond_full_scale_is_scaled_down_and_said_not_clipped(tmp_path, peak, said):
    wave = tone(330, 0.2, amplitude=1.0) * peak
    (tmp_path / "ds").mkdir()
    sf.write(tmp_path / "ds" / "hot.wav", wave.astype(np.float32), RATE, subtype="FLOAT")
    recording = read_recording(tmp_path / "ds" / "hot.wav", RATE)
    assert np.abs(recording.audio).max() == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(recording.audio, wave / peak, atol=1e-4)  # the waveform's shape is kept
    prepare(tmp_path / "ds", tmp_path / "out", DataConfig(), progress=False)
    notes = [line for line in said if line.startswith("note: ")]
    assert len(notes) == 1 and f"{tmp_path / 'ds' / 'hot.wav'}: peaks at {peak:.3g}, beyond full scale" in notes[0]
    assert f"scaled down by {20 * np.log10(peak):.1f} dB" in notes[0]


def test_audio_within_full_scale_gets_no_note(tmp_path, said):
    (tmp_path / "ds").mkdir()
    sf.write(tmp_path / "ds" / "ok.wav", tone(330, 0.2, amplitude=1.0).astype(np.float32), RATE, subtype="FLOAT")
    prepare(tmp_path / "ds", tmp_path / "out", DataConfig(), progress=False)
    assert not [line for line in said if line.startswith("note: ")]


@pytest.mark.parametrize("channel, noted", [("1", True), ("3", True), ("0", False), ("mix", False)])
def test_a_channel_on_mono_files_is_said_in_one_line(tmp_path, channel, noted, said):
    (tmp_path / "ds").mkdir()
    for i in range(7):
        sf.write(tmp_path / "ds" / f"m{i}.wav", tone(220 + 20 * i, 0.1), RATE)
    sf.write(tmp_path / "ds" / "stereo.wav", np.stack([tone(300, 0.1)] * 4, axis=1), RATE)
    prepare(tmp_path / "ds", tmp_path / "out", DataConfig(channel=channel), progress=False)
    lines = [line for line in said if "does not apply" in line]
    assert len(lines) == int(noted)
    if noted:
        assert lines[0].startswith(f"note: --channel {channel} does not apply to 7 mono files (")
        assert "and 2 more): each has one channel, used as it is" in lines[0]


@pytest.mark.parametrize(
    "override",
    ["data.sample_rate=1000000000", "data.sample_rate=200000", "data.mel_bands=100000", "data.mel_hop=100000"],
)
def test_a_rate_or_band_count_beyond_any_data_is_refused_at_once(override):
    with pytest.raises(ConfigError, match=f"'{override.split('=')[0]}' must be in "):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize(
    "rate, n_fft, fmin, fmax, bands",
    [
        (16000, 1024, 0, 8000, 1024),
        (16000, 256, 0, 8000, 300),
        (22050, 1024, 80, 7600, 700),
        (8000, 512, 50, 4000, 400),
    ],
)
def test_the_most_bands_that_fit_is_found_quickly_and_is_the_most(monkeypatch, rate, n_fft, fmin, fmax, bands):
    settings = MelSettings(rate, bands, n_fft // 4, n_fft, fmin, fmax)
    built = []
    real = features.empty_bands
    monkeypatch.setattr(features, "empty_bands", lambda s, n=None: built.append(n) or real(s, n))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"use at most (\d+) bands") as caught:
        features.check_bands(settings)
    fits = int(str(caught.value).split("at most ")[1].split()[0])
    assert time.perf_counter() - started < 5 and len(built) <= 10  # (was one filterbank per count below)
    assert empty_bands(settings, fits) == 0 and empty_bands(settings, fits + 1) > 0
