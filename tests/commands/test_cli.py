"""The real command line, run as a user runs it (a subprocess in a scratch folder)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from wavegen.audio.io import write_wav

from helpers import ENV, one_line_error, tone, wavegen

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)


@pytest.fixture
def workdir(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(440, 3.0), 16000)
    write_wav(tmp_path / "dataset" / "more" / "b.wav", tone(330, 2.0, 22050), 22050)
    return tmp_path


def test_prepare_train_resume_synth_info_with_a_real_recipe(workdir):
    out = wavegen("prepare", "dataset", "--recipe", "tiny", cwd=workdir)
    assert "prepared 2 files" in out.stderr
    fast = ["--set", "train.val_every=10", "--set", "train.checkpoint_every=10", "--quiet"]
    first = wavegen("train", "--recipe", "tiny", "--steps", "20", *fast, cwd=workdir)
    assert "steps 0..20" in first.stderr and (workdir / "runs" / "tiny" / "config.toml").is_file()
    second = wavegen("train", "--run", "runs/tiny", "--steps", "30", "--quiet", cwd=workdir)
    assert "resuming runs/tiny at step 20" in second.stderr

    synth = wavegen("synth", "--seconds", "0.25", "--n", "2", "--seed", "5", "--quiet", cwd=workdir)
    assert "real time" in synth.stderr
    # The fastest engine for the device, or the fallback with its reason on one line.
    assert (
        "'native' engine" in synth.stderr
        or "'cuda-graph' engine" in synth.stderr
        or ("engine unavailable" in synth.stderr and "'torch' engine" in synth.stderr)
    )
    files = sorted((workdir / "samples").glob("*.wav"))
    assert [f.name for f in files] == ["tiny-step30-seed5.wav", "tiny-step30-seed6.wav"]
    info = sf.info(files[0])
    assert (info.samplerate, info.frames, info.subtype) == (16000, 4000, "PCM_16")

    facts = json.loads(wavegen("info", "--json", cwd=workdir).stdout)
    assert facts["receptive_field_samples"] == 129 and facts["step"] == 30
    assert facts["config"]["train"]["steps"] == 30
    text = wavegen("info", "--run", "runs/tiny", cwd=workdir).stdout
    assert "receptive field  129 samples (8.06 ms at 16000 Hz)" in text


def test_bare_commands_chain_with_defaults(workdir):
    """prepare → train → synth with no options (the default recipe, shrunk to one small step)."""
    wavegen("prepare", "dataset", cwd=workdir)
    wavegen(
        "train",
        "--steps",
        "1",
        "--set",
        "train.batch_size=1",
        "--set",
        "train.segment_length=64",
        "--quiet",
        cwd=workdir,
    )
    assert (workdir / "runs" / "default" / "checkpoints" / "latest.pt").is_file()
    wavegen("synth", "--seconds", "0.005", "--quiet", cwd=workdir)
    assert [f.name for f in (workdir / "samples").glob("*.wav")] == ["default-step1-seed0.wav"]


def test_demo_runs_end_to_end_with_few_steps(tmp_path):
    out = wavegen("demo", "--steps", "20", "--seconds", "0.1", "--n", "1", "--quiet", cwd=tmp_path)
    assert "demo finished" in out.stderr
    assert [p.name for p in (tmp_path / "samples").glob("*.wav")] == ["melodies-step20-seed0.wav"]


def test_mistakes_get_one_line_errors(workdir):
    one_line_error(wavegen("prepare", "nowhere", cwd=workdir, ok=False), "nowhere: no such folder")
    (workdir / "afile").write_text("x")
    one_line_error(wavegen("prepare", "dataset", "--out", "afile", cwd=workdir, ok=False), "is a file, not a folder")
    one_line_error(wavegen("train", cwd=workdir, ok=False), "no prepared data here")
    one_line_error(
        wavegen("train", "--set", "model.colour=red", cwd=workdir, ok=False), "unknown setting 'model.colour'"
    )
    one_line_error(wavegen("train", "--set", "train.lr=fast", cwd=workdir, ok=False), "expected float")
    one_line_error(wavegen("train", "--recipe", "huge", cwd=workdir, ok=False), "unknown recipe 'huge'")
    one_line_error(wavegen("synth", cwd=workdir, ok=False), "no trained runs found")
    (workdir / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(
        wavegen("synth", "--checkpoint", "junk.pt", cwd=workdir, ok=False), "junk.pt: is a text file, not a checkpoint"
    )
    one_line_error(
        wavegen("info", "--checkpoint", "junk.pt", cwd=workdir, ok=False), "junk.pt: is a text file, not a checkpoint"
    )


def test_synth_priming_and_refusals(workdir):
    wavegen("prepare", "dataset", "--recipe", "tiny", cwd=workdir)
    wavegen("train", "--recipe", "tiny", "--steps", "2", "--quiet", cwd=workdir)
    primed = wavegen("synth", "--prime", "dataset/more/b.wav", "--seconds", "0.05", "--out", "primed", cwd=workdir)
    assert "continuing the last 0.008 s of dataset/more/b.wav" in primed.stderr  # one receptive field
    assert len(list((workdir / "primed").glob("*.wav"))) == 1
    one_line_error(wavegen("synth", "--prime", "nothing.wav", cwd=workdir, ok=False), "cannot use as a prime")
    for args, text in [
        (["--seconds", "0"], "--seconds must be in"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--n", "0"], "--n must be at least 1"),
    ]:
        one_line_error(wavegen("synth", *args, cwd=workdir, ok=False), text)
    Path(workdir / "afile").write_text("x")
    one_line_error(wavegen("synth", "--out", "afile", cwd=workdir, ok=False), "not a folder")


def test_synth_engines_and_the_fallback_without_a_compiler(workdir):
    wavegen("prepare", "dataset", "--recipe", "tiny", cwd=workdir)
    wavegen("train", "--recipe", "tiny", "--steps", "2", "--quiet", cwd=workdir)
    short = ["--seconds", "0.02", "--quiet"]
    for engine in ("torch", "reference"):
        assert f"'{engine}' engine" in wavegen("synth", "--engine", engine, *short, cwd=workdir).stderr
    # No compiler (and nothing built yet): auto says why on one line and runs the torch engine;
    # asking for the native engine by name is an error that says why.
    bare = {"CXX": "no-such-compiler", "WAVEGEN_CACHE": str(workdir / "empty-cache")}
    fallback = wavegen("synth", *short, cwd=workdir, env=bare).stderr
    notices = [line for line in fallback.splitlines() if "native engine unavailable" in line]
    assert notices == ["native engine unavailable: CXX=no-such-compiler not found; using the 'torch' engine"]
    assert "'torch' engine" in fallback
    one_line_error(
        wavegen("synth", "--engine", "native", *short, cwd=workdir, ok=False, env=bare),
        "native engine unavailable: CXX=no-such-compiler not found",
    )
    if not torch.cuda.is_available():  # the GPU engines, asked for by name where there is none
        for engine in ("cuda-graph", "persistent"):
            refused = wavegen("synth", "--engine", engine, *short, cwd=workdir, ok=False, env={"TRITON_INTERPRET": "0"})
            one_line_error(refused, f"the {engine} engine needs a CUDA device")


def test_export_a_run_then_synth_info_and_train_from_the_folder(workdir):
    wavegen("prepare", "dataset", "--recipe", "tiny", cwd=workdir)
    wavegen("train", "--recipe", "tiny", "--steps", "4", "--set", "train.val_every=2", "--quiet", cwd=workdir)
    said = wavegen("export", "runs/tiny", "shared/tones", cwd=workdir).stderr
    assert "exported runs/tiny/checkpoints/best.pt (step 4, moving average weights) to shared/tones: " in said
    assert sorted(p.name for p in (workdir / "shared" / "tones").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    short = ["--seconds", "0.05", "--seed", "7", "--engine", "torch", "--quiet"]
    wavegen("synth", "--checkpoint", "shared/tones/", *short, "--out", "from-folder", cwd=workdir)
    wavegen("synth", "--run", "runs/tiny", *short, "--out", "from-run", cwd=workdir)
    (ours,), (theirs,) = ((workdir / d).glob("*.wav") for d in ("from-folder", "from-run"))
    assert ours.name == "tones-step4-seed7.wav" and theirs.name == "tiny-step4-seed7.wav"
    assert sf.read(ours)[0].tolist() == sf.read(theirs)[0].tolist()  # the same model, the same audio
    facts = json.loads(wavegen("info", "--checkpoint", "shared/tones", "--json", cwd=workdir).stdout)
    assert facts["step"] == 4 and facts["receptive_field_samples"] == 129
    started = wavegen("train", "--init-from", "shared/tones", "--run", "runs/again", "--steps", "2", cwd=workdir)
    assert "starting from the weights of shared/tones (trained to step 4)" in started.stderr
    assert "steps 0..2" in started.stderr
    one_line_error(
        wavegen("train", "--init-from", "shared/tones", "--run", "runs/again", cwd=workdir, ok=False),
        "runs/again has a checkpoint and resumes from it",
    )
    one_line_error(
        wavegen("export", "runs/tiny", "dataset", cwd=workdir, ok=False), "dataset: not empty and not an earlier export"
    )


def test_import_and_help_stay_light(tmp_path):
    """Neither ``import wavegen`` nor ``wavegen --help`` loads torch or builds the native engine."""
    code = (
        "import sys, wavegen, wavegen.cli; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'wavegen.generate.native', 'wavegen.generate.engines')))"
    )
    env = {**ENV, "WAVEGEN_CACHE": str(tmp_path / "cache"), "CXX": "no-such-compiler"}
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "wavegen", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "synth" in helped.stdout
    assert not (tmp_path / "cache").exists()


def test_bench_train_prints_one_json_line_per_implementation(tmp_path):
    # bf16 explicitly (emulated where the CPU lacks it), so that every machine runs all three
    proc = wavegen(
        "bench",
        "train",
        "--recipe",
        "tiny",
        "--batch",
        "2",
        "--segment",
        "300",
        "--segment",
        "500",
        "--steps",
        "2",
        "--threads",
        "1",
        "--set",
        "train.precision=bf16",
        "--json",
        cwd=tmp_path,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["allocator"], r["impl"], r["precision"], r["segment"]) for r in results] == [
        (allocator, impl, precision, segment)
        for allocator in ("glibc default", "keep freed")
        for segment in (300, 500)
        for impl, precision in (("wavegen", "bf16"), ("plain", "fp32"), ("plain+bf16", "bf16"))
    ]
    for r in results:
        assert r["device"] == "cpu" and r["batch"] == 2 and r["window"] == 129 + r["segment"]
        assert r["samples_per_s"] == pytest.approx(2 * r["segment"] / r["step_s"], rel=0.01)
        assert r["peak_memory_mb"] > 0
        assert r["max_logit_diff_vs_plain"] < 1e-4  # the baseline computes the same function
    one_line_error(wavegen("bench", "train", "--cond", "mels", cwd=tmp_path, ok=False), "--cond is an option of")
    wg, plain, plain_bf16 = results[0], results[1], results[2]
    assert wg["speedup_vs_plain"] == pytest.approx(plain["step_s"] / wg["step_s"], rel=0.01)
    assert wg["speedup_vs_plain_same_precision"] == pytest.approx(plain_bf16["step_s"] / wg["step_s"], rel=0.01)
    assert plain["speedup_vs_plain_same_precision"] == plain["speedup_vs_plain"]
    assert results[6]["speedup_vs_plain_default"] == pytest.approx(plain["step_s"] / results[6]["step_s"], rel=0.01)
    # float32 asked for: no bf16 contender (spelled as before subcommands: --train is train)
    proc = wavegen(
        "bench",
        "--train",
        "--recipe",
        "tiny",
        "--batch",
        "1",
        "--segment",
        "100",
        "--steps",
        "1",
        "--threads",
        "1",
        "--set",
        "train.precision=fp32",
        "--json",
        cwd=tmp_path,
    )
    assert {json.loads(line)["impl"] for line in proc.stdout.splitlines()} == {"wavegen", "plain"}
