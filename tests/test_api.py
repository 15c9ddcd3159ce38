"""The Python API at the package root: light to import, the README's example runs as written,
and it generates what ``synth`` writes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import wavegen
from wavegen.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numpy", "soundfile", "librosa", "matplotlib")


def python(code: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, with this test's import path (the tree under test first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_import_wavegen_loads_no_heavy_library(tmp_path):
    code = (
        "import sys, wavegen; wavegen.__all__; wavegen.Config; wavegen.load_recipe; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = python(code, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert (
        python("import wavegen; wavegen.nothing", tmp_path)
        .stderr.strip()
        .endswith("AttributeError: module 'wavegen' has no attribute 'nothing'")
    )


def test_the_readme_example_runs_as_written(tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 1
    done = python(blocks[0], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "(2, 8000) float32 16000"
    assert done.stderr == ""  # silent unless asked


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    t = np.arange(2 * 16000) / 16000
    (folder / "tones").mkdir()
    sf.write(folder / "tones" / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    config = wavegen.load_recipe("tiny").override("train.val_every=5", "train.checkpoint_every=5")
    manifest = wavegen.prepare(folder / "tones", folder / "prepared", config)
    assert len(manifest["files"]) == 1
    wavegen.fit(folder / "prepared", folder / "run", config, steps=6)
    return folder


def test_generate_returns_what_synth_writes(run):
    from wavegen.synthesis.synth import synthesize

    model = wavegen.load(run / "run")
    assert model.checkpoint == run / "run" / "checkpoints" / "best.pt" and model.sample_rate == 16000
    made = model.generate(seconds=0.05, n=2, seed=3, engine="torch", device="cpu")
    audio, rate = made
    assert audio.shape == (2, 800) and audio.dtype == np.float32 and rate == 16000
    assert np.abs(audio).max() <= 1.0 and made.seeds == [3, 4] and made.labels is None
    again = wavegen.load(run / "run" / "checkpoints" / "best.pt").generate(
        seconds=0.05, n=2, seed=3, engine="reference", device="cpu"
    )
    np.testing.assert_array_equal(again.audio, audio)  # same seeds, same audio, whatever the engine
    files = synthesize(
        model.checkpoint,
        run / "samples",
        seconds=0.05,
        n=2,
        seed=3,
        engine="torch",
        device="cpu",
        progress=False,
    ).files
    for stream, path in zip(audio, files):
        written, _ = sf.read(path, dtype="float32")
        np.testing.assert_allclose(written, stream, atol=1 / 32767)  # 16-bit WAV


def test_generate_from_a_prime_array_and_refusals(run, said):
    model = wavegen.load(run / "run")
    said.clear()
    primed = model.generate(seconds=0.01, prime=np.zeros(1000, np.float32), engine="torch", device="cpu")
    assert primed.audio.shape == (1, 160) and any("continuing the last" in line for line in said)
    with pytest.raises(ConfigError, match="trained without labels"):
        model.generate(seconds=0.01, labels="cat")
    with pytest.raises(ConfigError, match="trained without mel features"):
        model.generate(seconds=0.01, mel=np.zeros((4, 80), np.float32))
    with pytest.raises(CheckpointError, match="no checkpoints"):
        wavegen.load(run / "tones")


def test_fit_resumes_and_refuses_mistakes(run):
    result = wavegen.fit(run / "prepared", run / "run", steps=8)  # the run's own settings: a resume
    assert result.step == 8
    again = wavegen.fit(run / "prepared", run / "run", steps=9)  # (``wavegen.train``, the subpackage, is loaded now)
    assert again.step == 9
    config = wavegen.load_recipe("tiny")
    config.train.lrr = 0.1  # a typo in Python: refused with the nearest key, as --set is
    with pytest.raises(ConfigError, match=r"unknown setting 'train.lrr' \(did you mean train.lr\?\)"):
        wavegen.fit(run / "prepared", run / "other", config)
    config = wavegen.load_recipe("tiny")
    config.train.lr = "fast"
    with pytest.raises(ConfigError, match="'train.lr' must be float"):
        wavegen.prepare(run / "tones", run / "p2", config)
    with pytest.raises(ConfigError, match="config or recipe, not both"):
        wavegen.fit(run / "prepared", run / "other", wavegen.load_recipe("tiny"), recipe="tiny")
    with pytest.raises(ConfigError, match="data settings are prepare's"):
        wavegen.fit(run / "prepared", run / "other", overrides=["data.sample_rate=8000"])
    assert not (run / "other").exists() and not (run / "p2").exists()


def test_stream_gives_generates_samples_in_blocks_as_they_are_made(run):
    model = wavegen.load(run / "run")
    whole = model.generate(seconds=0.3, n=2, seed=3, device="cpu").audio
    stream = model.stream(seconds=0.3, n=2, seed=3, chunk=1000, device="cpu")
    assert stream.engine == "native" and stream.precision == "int8" and stream.sample_rate == 16000
    blocks = list(stream)
    assert [b.shape for b in blocks] == [(2, 1000)] * 4 + [(2, 800)] and blocks[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    with model.stream(seed=5, chunk=700, engine="torch") as endless:  # no length: until the caller stops
        assert endless.samples is None and endless.device == "cpu"  # (no end: the CPU's engines)
        taken = [block for block, _ in zip(endless, range(3))]
    expected = model.generate(seconds=2100 / 16000, seed=5, engine="torch").audio
    np.testing.assert_array_equal(np.concatenate(taken, axis=1), expected)


def test_a_vocoder_streams_from_mel_frames_as_they_arrive(tmp_path):
    from wavegen.bench.startup import as_trained, write_checkpoint

    config = wavegen.load_recipe("vocoder").override("model.cycles=1", "model.residual_channels=16")
    model = wavegen.load(write_checkpoint(as_trained(config), tmp_path / "vocoder.pt"))
    mels = np.random.default_rng(0).normal(-4, 2, (12, 80)).astype(np.float32)
    whole = model.generate(mel=mels, seed=2, device="cpu").audio
    arrived = []

    def frames():  # one at a time, noting how many had come when each block is made
        for frame in mels:
            arrived.append(frame)
            yield frame

    blocks = []
    for block in model.stream(mel=frames(), seed=2, chunk=256):
        blocks.append((len(arrived), block))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks], axis=1), whole)
    assert whole.shape == (1, 12 * 256)
    assert [n for n, _ in blocks][:8] == [4, 5, 6, 7, 8, 9, 10, 11]  # block k waits for frame k + 3 alone
    with pytest.raises(ConfigError, match="runs on the CPU"):
        model.stream(mel=frames(), device="cuda")


def test_a_loaded_model_keeps_its_engine_between_generations_but_never_shares_one(run):
    model = wavegen.load(run / "run")
    first = model.generate(seconds=0.05, seed=1, device="cpu").audio
    (kept,) = model.kept.kept.values()
    again = model.generate(seconds=0.05, seed=1, device="cpu").audio
    assert next(iter(model.kept.kept.values())).engine is kept.engine  # not built again
    np.testing.assert_array_equal(again, first)
    expected = [model.generate(seconds=0.2, seed=s, device="cpu").audio for s in (2, 3)]
    one, two = model.stream(seconds=0.2, seed=2, chunk=800), model.stream(seconds=0.2, seed=3, chunk=800)
    got = [np.concatenate(blocks, axis=1) for blocks in zip(*zip(one, two))]  # read side by side
    for audio, wanted in zip(got, expected):
        np.testing.assert_array_equal(audio, wanted)
