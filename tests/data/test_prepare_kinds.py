"""`prepare` accounts for every file, by content where the name does not say, and every reason
it gives for skipping a file is the true cause.

Each test builds a small folder of synthetic tones in the formats, channel counts and levels
it needs (drawn from seeded generators), prepares it in-process through the command line
(click's runner: no interpreter start-up), and reads the lines, the exit status and the
manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import run_in_process, tone

RATE = 16000
HZ = 440.0
# Every container soundfile writes here, with the extension it is usually known by.
FORMATS = {
    "WAV": "wav",
    "AIFF": "aiff",
    "AU": "au",
    "CAF": "caf",
    "W64": "w64",
    "RF64": "rf64",
    "FLAC": "flac",
    "OGG": "ogg",
    "NIST": "sph",
    "IRCAM": "sf",
    "VOC": "voc",
    "PAF": "paf",
    "SVX": "8svx",
    "AVR": "avr",
    "HTK": "htk",
    "SDS": "sds",
    "WVE": "wve",
    "MPC2K": "mpc2k",
    "XI": "xi",
    "PVF": "pvf",
    "MAT5": "mat",
    "MAT4": "mat",
    "WAVEX": "wav",
    "SD2": "sd2",
    "MP3": "mp3",
}


def run(*args: str, cwd: Path):
    """``wavegen ARGS`` in ``cwd``, in this process; (exit status, stderr lines)."""
    status, _, stderr = run_in_process(*args, cwd=cwd)
    return status, stderr.splitlines()


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def write_any(path: Path, audio: np.ndarray, rate: int, fmt: str) -> bool:
    """Write ``audio`` in ``fmt`` (with a subtype it takes); False where this build cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for subtype in (None, "PCM_16", "PCM_S8", "ALAW", "GSM610", "DPCM_16", "FLOAT"):
        try:
            with open(path, "wb") as handle:
                sf.write(handle, audio, rate, format=fmt, subtype=subtype)
            sf.info(path)
            return True
        except Exception:
            continue
    path.unlink(missing_ok=True)
    return False


def test_audio_in_every_format_is_prepared_under_its_own_name_or_any_other(tmp_path):
    """The user's case (a WAV beside copies in .au, .caf and .w64) and its whole kind: every
    container soundfile reads, mono to 3 channels at several rates, named as usual and named
    so that only its content says audio (``take.bak``, no extension at all)."""
    rng = np.random.default_rng(7)
    root, written = tmp_path / "dataset", []
    for i, (fmt, ext) in enumerate(sorted(FORMATS.items())):
        if fmt not in sf.available_formats():
            continue
        rate = int(rng.choice([8000, 16000, 22050, 44100]))
        channels = 1 + i % 3
        audio = np.stack([tone(HZ, 1.0, rate)] * channels, axis=1)
        for name in (f"{fmt.lower()}.{ext}", f"{fmt.lower()}_take.bak", f"{fmt.lower()}_noname"):
            if write_any(root / name, audio, rate, fmt) or write_any(root / name, audio[:, :1], rate, fmt):
                written.append(name)
    assert {"au.au", "caf.caf", "w64.w64", "au_take.bak", "caf_noname"} <= set(written)
    status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=tmp_path)
    prepared = {entry["source"]: entry["duration_s"] for entry in manifest(tmp_path / "prepared")["files"]}
    assert sorted(prepared) == sorted(written), lines
    for name, seconds in prepared.items():  # as long as the file says (some formats have one fixed rate)
        assert seconds == pytest.approx(sf.info(root / name).duration, abs=2e-3), name
    assert status == 0, lines
    assert lines[-1].startswith(f"prepared {len(written)} files") and "skipped" not in lines[-1]


def project_folder(root: Path, notes: int) -> None:
    """Recordings with what a real dataset folder holds beside them."""
    sf.write(root / "a.wav", tone(HZ, 0.5), RATE)
    (root / "speaker2").mkdir()
    sf.write(root / "speaker2" / "b.flac", tone(HZ, 0.5), RATE)
    (root / "README.txt").write_text("recorded in the kitchen\n")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    (root / "licence.pdf").write_bytes(b"%PDF-1.4" + bytes(200))
    (root / "data.bin").write_bytes(np.random.default_rng(notes).integers(0, 256, 300, np.uint8).tobytes())
    (root / "empty.dat").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(50))
    (root / "speaker2" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "._a.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(80))  # macOS resource fork
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for i in range(notes):
        (root / "speaker2" / f"take{i}.txt").write_text(f"transcript {i}\n")


@pytest.mark.parametrize("notes", [1, 3, 12])
def test_files_that_are_not_audio_are_named_by_reason_and_do_not_count_as_skipped(tmp_path, notes):
    """A README, images, hidden files, a .git folder and transcripts beside the recordings:
    each named (a line per reason, a few names and a count) and listed in the manifest as
    ignored; the exit status stays 0, since nothing that looked like audio was lost."""
    root = tmp_path / "dataset"
    root.mkdir()
    project_folder(root, notes)
    status, lines = run("prepare", ".", "--out", "prepared", "--recipe", "tiny", "--quiet", cwd=root)
    assert status == 0, lines
    ignored = {e["source"]: e["reason"] for e in manifest(root / "prepared")["skipped"] if e.get("ignored")}
    assert len(ignored) == len(manifest(root / "prepared")["skipped"])  # nothing else was skipped
    expected = {
        "README.txt": "not audio (looks like text)",
        "cover.jpg": "not audio (looks like a JPEG image)",
        "licence.pdf": "not audio (looks like a PDF document)",
        "empty.dat": "not audio (empty file)",
        "data.bin": "not audio (no audio format recognised in its content)",
        ".DS_Store": "hidden: not searched",
        "speaker2/.DS_Store": "hidden: not searched",
        "._a.wav": "hidden: not searched",
        ".git/": "hidden: not searched",
    }
    expected.update({f"speaker2/take{i}.txt": "not audio (looks like text)" for i in range(notes)})
    assert ignored == expected
    # One line per reason, naming at most 5 and counting the rest; then the summary.
    reasons = set(expected.values())
    assert len(lines) == len(reasons) + 1, lines
    texts = [line for line in lines if line.endswith(": not audio (looks like text)")]
    assert len(texts) == 1 and texts[0].startswith("ignored README.txt" + (" and" if notes == 1 else ","))
    assert (f"and {1 + notes - 5} more" in texts[0]) == (1 + notes > 5)
    assert lines[-1].startswith("prepared 2 files") and "skipped" not in lines[-1]
    assert lines[-1].endswith(f"; ignored {len(expected) - 1} files and 1 folder (no audio to prepare; named above)")

    # Again, into the same --out inside the dataset: its own output is not read as data.
    status, lines = run("prepare", ".", "--out", "prepared", "--recipe", "tiny", "--quiet", cwd=root)
    again = manifest(root / "prepared")
    assert status == 0 and len(again["files"]) == 2
    assert {
        "source": "prepared/",
        "reason": "the --out folder of this prepare: not searched",
        "ignored": True,
    } in again["skipped"]
    # ... nor is earlier prepared data kept inside it under another name
    (root / "prepared").rename(root / "old_prepared")
    status, lines = run("prepare", ".", "--out", "prepared", "--recipe", "tiny", "--quiet", cwd=root)
    assert status == 0 and len(manifest(root / "prepared")["files"]) == 2
    assert "ignored old_prepared/: prepared data (wavegen): not searched" in lines


def test_a_folder_without_audio_names_every_file_and_writes_nothing(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "readme.txt").write_text("no audio here")
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    status, lines = run("prepare", "notes", "--out", "out/prepared", "--quiet", cwd=tmp_path)
    assert status == 1
    assert lines == [
        "ignored notes/photo.png: not audio (looks like a PNG image)",
        "ignored notes/readme.txt: not audio (looks like text)",
        "Error: notes: no audio files found among its 2 entries (named above)",
    ]
    assert sorted(os.listdir(tmp_path)) == ["notes"]


def test_headerless_samples_are_skipped_with_what_to_do(tmp_path):
    (tmp_path / "dataset").mkdir()
    sf.write(tmp_path / "dataset" / "a.wav", tone(HZ, 0.5), RATE)
    (tmp_path / "dataset" / "take.raw").write_bytes((tone(HZ, 0.5) * 32767).astype(np.int16).tobytes())
    status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=tmp_path)
    assert status == 3
    assert lines[0] == (
        "skipped dataset/take.raw: headerless samples (the file does not say its rate, width or "
        "channels): convert it to WAV with the right settings"
    )


def opposite(signal: np.ndarray, channels: int) -> np.ndarray:
    """``channels`` channels of ``signal`` at levels that sum to exactly zero (+1, -1, +0.5, -0.5...)."""
    levels = [(1 if c % 2 == 0 else -1) * 0.5 ** (c // 2) for c in range(channels)]
    return np.stack([level * signal for level in levels], axis=1)


@pytest.mark.parametrize("channels, seed", [(2, 0), (2, 1), (4, 2), (6, 3)])
def test_channels_that_cancel_are_named_as_such_and_one_can_be_kept(tmp_path, channels, seed):
    """The user's case (a stereo file whose channels are exact opposites) in several channel
    counts and signals: the reason says the channels cancel and how to keep one; with that
    option the file is prepared at the kept channel's level."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(RATE) / RATE)
    root = tmp_path / "dataset"
    root.mkdir()
    sf.write(root / "cancels.wav", opposite(signal.astype(np.float32), channels), RATE, subtype="FLOAT")
    sf.write(root / "mono.wav", tone(HZ, 0.5), RATE)
    status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=tmp_path)
    assert status == 3
    peak = 20 * np.log10(np.abs(signal).max())
    assert lines[0] == (
        f"skipped dataset/cancels.wav: silent when mixed to mono: its {channels} channels cancel "
        f"(channel 0 peaks at {peak:.0f} dBFS, the mix at -inf dBFS); keep one channel with "
        "--channel 0 (or --set data.channel=0)"
    )
    for option in (["--channel", "0"], ["--set", "data.channel=0"], ["--channel", str(channels - 1)]):
        status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", *option, cwd=tmp_path)
        assert status == 0, lines
        kept = manifest(tmp_path / "prepared")
        assert kept["channel"] == option[-1].rpartition("=")[2]
        assert len(kept["files"]) == 2  # the mono file is used as it is
        codes = np.fromfile(tmp_path / "prepared" / "train.u8", np.uint8)
        from wavegen.audio.mulaw import decode

        offset, length = next(e["train"] for e in kept["files"] if e["source"] == "cancels.wav")
        level = np.abs(opposite(signal, channels)[:, int(option[-1][-1])]).max()
        assert np.abs(decode(codes[offset : offset + length]).numpy()).max() == pytest.approx(level, rel=0.06)


def test_a_channel_the_file_lacks_or_a_silent_one_is_named(tmp_path):
    root = tmp_path / "dataset"
    root.mkdir()
    sf.write(root / "left_only.wav", np.stack([tone(HZ, 0.5), np.zeros(RATE // 2, np.float32)], 1), RATE)
    sf.write(root / "mono.wav", tone(HZ, 0.5), RATE)
    status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", "--channel", "1", cwd=tmp_path)
    assert status == 3
    assert lines[0] == (
        "skipped dataset/left_only.wav: channel 1 is silent (peak -inf dBFS); the sound is in "
        "channel 0 (peak -6 dBFS): use --channel 0, or --channel mix"
    )
    status, lines = run("prepare", "dataset", "--recipe", "tiny", "--quiet", "--channel", "2", cwd=tmp_path)
    assert lines[0] == (
        "skipped dataset/left_only.wav: has 2 channels (0-1); data.channel = 2 asks for one it "
        "does not have: choose another --channel, or mix"
    )
    for bad in ("left", "-1", "1.0"):
        status, lines = run("prepare", "dataset", "--channel", bad, cwd=tmp_path)
        assert status == 1 and lines == [
            f"Error: 'data.channel' must be 'mix' or a channel number (0 for the first), got '{bad}'"
        ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_reason_names_its_true_cause(tmp_path, seed):
    """A constant offset is no sound however loud it is; a mix far quieter than its channels is
    noted; a file that only trimming made too short says so and how to keep it whole."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "dataset"
    root.mkdir()
    offset = float(rng.choice([-1, 1]) * rng.uniform(0.01, 0.9))
    hum = 10 ** (-75 / 20) * tone(HZ, 1.0, amplitude=1.0)
    sf.write(root / "offset.wav", offset + hum, RATE, subtype="FLOAT")
    left = tone(rng.uniform(200, 1000), 1.0)
    ratio = rng.uniform(0.9, 0.97)  # the mix 20-30 dB below its channels
    sf.write(root / "partly.wav", np.stack([left, -ratio * left], 1), RATE, subtype="FLOAT")
    burst = np.zeros(RATE, np.float32)
    burst[RATE // 2 : RATE // 2 + 100] = tone(HZ, 1.0)[:100]  # 100 samples of sound in 1 s of silence
    sf.write(root / "burst.wav", burst, RATE, subtype="FLOAT")
    # the default recipe: a receptive field (3071 samples) longer than what trimming leaves of the burst
    status, lines = run("prepare", "dataset", "--quiet", "--trim-silence", cwd=tmp_path)
    assert status == 3, lines
    by_file = {
        name: line
        for line in lines[:-1]
        for name in ("offset.wav", "partly.wav", "burst.wav")
        if f"dataset/{name}:" in line
    }
    assert by_file["offset.wav"] == (
        f"skipped dataset/offset.wav: no sound: a constant offset (DC) of {offset:+.3g} "
        f"({20 * np.log10(abs(offset)):.0f} dBFS) throughout, varying by less than -60 dBFS"
    )
    mix_db = 20 * np.log10((1 - ratio) / (1 + ratio))
    assert by_file["partly.wav"] == (
        f"note: dataset/partly.wav: its 2 channels partly cancel when mixed to mono (the mix is {-mix_db:.0f} dB "
        "quieter than they are); prepared as mixed: --channel 0 would keep one channel"
    )
    assert by_file["burst.wav"].startswith("skipped dataset/burst.wav: too short: ")
    assert by_file["burst.wav"].endswith(
        "after trimming silence (16000 before; the rest is more than 40 dB below its peak), fewer than the 3071 of "
        "the default recipe's receptive field (--recipe tiny needs 129); --no-trim-silence keeps the file whole"
    )
    assert [e["source"] for e in manifest(tmp_path / "prepared")["files"]] == ["partly.wav"]


@pytest.mark.parametrize("ratio, word", [(1.0, "cancel"), (0.9, "partly cancel")])
def test_a_prime_or_vocode_input_whose_channels_cancel_is_noted(tmp_path, ratio, word):
    """synth --prime and vocode mix their input to mono too: a mix that the channels (nearly)
    cancelled is said, or a silent result would puzzle."""
    from wavegen.config import apply_overrides
    from wavegen.model import checkpoint as ckpt
    from wavegen.model.network import WaveNet
    from wavegen.recipe import load_recipe

    config = apply_overrides(load_recipe("tiny"), ["data.mel_bands=8", "model.mel_channels=8", "model.mel_hop=256"])
    ckpt.save(tmp_path / "voc.pt", {"config": config.to_dict(), "model": WaveNet(config.model).state_dict(), "step": 0})
    left = tone(HZ, 0.02)
    sf.write(tmp_path / "input.wav", np.stack([left, -ratio * left], 1), RATE, subtype="FLOAT")
    plain = load_recipe("tiny")
    ckpt.save(tmp_path / "plain.pt", {"config": plain.to_dict(), "model": WaveNet(plain.model).state_dict(), "step": 0})
    for args in (
        ["vocode", "input.wav", "--checkpoint", "voc.pt"],
        ["synth", "--checkpoint", "plain.pt", "--prime", "input.wav", "--seconds", "0.01"],
    ):
        status, lines = run(*args, "--engine", "torch", "--quiet", cwd=tmp_path)
        assert status == 0, lines
        assert f"note: input.wav: its 2 channels {word} when mixed to mono" in "\n".join(lines), lines
