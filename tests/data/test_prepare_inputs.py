"""`wavegen prepare` on a folder that mixes good recordings with every kind of bad input.

One real command-line run over one folder (built here from synthetic tones) answers most of it:
every good file is prepared at the right length and pitch, every bad one is named exactly once
with its reason, the summary counts both, the exit status says something was skipped, and
nothing but those lines reaches the terminal (no traceback, no decoder chatter).
"""

import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio.mulaw import decode
from wavegen.model.network import WaveNet, receptive_field
from wavegen.recipe import load_recipe

from helpers import ENV, one_line_error, spectrum_peak, tone, wavegen

RATE = 16000
TINY_RF = 129  # the tiny recipe's receptive field: the shortest file it prepares
HZ = 440.0


def write(path: Path, audio: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, **kwargs)
    return path


def cut(source: Path, name: str, keep: int) -> None:
    """A copy of ``source`` with only its first ``keep`` bytes (a download that stopped)."""
    (source.parent / name).write_bytes(source.read_bytes()[:keep])


def good_files(root: Path) -> dict[str, float]:
    """Write the files that must be prepared; return name -> expected seconds at 16 kHz."""
    expected = {}
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        write(root / f"depth_{subtype.lower()}.wav", tone(HZ, 1.0), subtype=subtype)
        expected[f"depth_{subtype.lower()}.wav"] = 1.0
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):  # resampled to 16 kHz
        write(root / "rates" / f"rate_{rate}.wav", tone(HZ, 1.0, rate), rate, subtype="PCM_16")
        expected[f"rates/rate_{rate}.wav"] = 1.0
    # Channels are averaged: 440 Hz on the left and silence on the right comes out at half level.
    write(root / "stereo.wav", np.stack([tone(HZ, 1.0), np.zeros(RATE, np.float32)], axis=1))
    write(root / "six_channels.wav", np.stack([tone(HZ, 1.0)] * 6, axis=1), subtype="PCM_24")
    write(root / "formats" / "lossless.flac", tone(HZ, 1.0), subtype="PCM_24")
    write(root / "formats" / "vorbis.ogg", tone(HZ, 1.0))
    expected.update(
        {"stereo.wav": 1.0, "six_channels.wav": 1.0, "formats/lossless.flac": 1.0, "formats/vorbis.ogg": 1.0}
    )
    if "MP3" in sf.available_formats():
        write(root / "formats" / "lossy.mp3", tone(HZ, 1.0))
        expected["formats/lossy.mp3"] = 1.0
    # A name that is not UTF-8 (Latin-1 é), written through the bytes API as another system would.
    with open(os.fsencode(root) + b"/caf\xe9.wav", "wb") as handle:
        sf.write(handle, tone(HZ, 1.0), RATE, format="WAV", subtype="PCM_16")
    expected["caf\\xe9.wav"] = 1.0
    write(root / "long_enough.wav", tone(HZ, 1.0)[:TINY_RF])  # exactly one receptive field
    expected["long_enough.wav"] = TINY_RF / RATE
    write(root / "quiet.wav", 10 ** (-50 / 20) * tone(HZ, 1.0, amplitude=1.0), subtype="FLOAT")  # -50 dBFS
    expected["quiet.wav"] = 1.0
    # A folder outside the dataset, linked into it: followed.
    write(root.parent / "elsewhere" / "linked_tone.wav", tone(HZ, 1.0))
    os.symlink(root.parent / "elsewhere", root / "linked")
    expected["linked/linked_tone.wav"] = 1.0
    return expected


def half_files(root: Path) -> list[str]:
    """Files cut in half: prepared from the prefix that still decodes, or skipped as undecodable,
    as the decoder decides (libsndfile 1.2.2 reads half a WAV and half an MP3, and refuses half a
    FLAC or Ogg file). Either is fine; a traceback, silence or a file named twice is not."""
    names = []
    for ext in ("wav", "flac", "ogg", "mp3"):
        if ext != "wav" and ext.upper() not in sf.available_formats():
            continue
        whole = write(root / "whole" / f"source.{ext}", tone(HZ, 1.0))
        cut(whole, f"../half.{ext}", whole.stat().st_size // 2)
        whole.unlink()
        names.append(f"half.{ext}")
    (root / "whole").rmdir()
    return names


def bad_files(root: Path, locked: bool) -> dict[str, str]:
    """Write the files (and folders, ending in /) that must be skipped; return name -> reason."""
    reasons = {}

    def bad(name: str, reason: str) -> None:
        reasons[name] = reason

    (root / "empty.wav").write_bytes(b"")
    bad("empty.wav", "empty file (0 bytes)")
    (root / "empty.flac").write_bytes(b"")
    bad("empty.flac", "empty file (0 bytes)")
    (root / "notes.wav").write_text("take 3 was the good one\n")
    bad("notes.wav", "not audio (looks like text)")
    (root / "cover.mp3").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    bad("cover.mp3", "not audio (looks like a PNG image)")
    (root / "photo.flac").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
    bad("photo.flac", "not audio (looks like a JPEG image)")
    (root / "garbage.ogg").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    bad("garbage.ogg", "cannot decode")
    with_nan = tone(HZ, 1.0)
    with_nan[1000] = np.nan
    write(root / "nan.wav", with_nan, subtype="FLOAT")
    bad("nan.wav", "contains NaN or infinite samples")
    with_inf = tone(HZ, 1.0)
    with_inf[2000] = -np.inf
    write(root / "inf.wav", with_inf, subtype="DOUBLE")
    bad("inf.wav", "contains NaN or infinite samples")
    write(root / "silence.wav", np.zeros(RATE, np.float32))
    bad("silence.wav", "silent throughout (every sample is 0")
    write(root / "hum.wav", 10 ** (-70 / 20) * tone(HZ, 1.0, amplitude=1.0), subtype="FLOAT")  # -70 dBFS
    bad("hum.wav", "silent throughout (peak -70 dBFS")
    write(root / "blip.wav", tone(HZ, 1.0)[: TINY_RF - 1])
    bad("blip.wav", f"too short: {TINY_RF - 1} samples at 16000 Hz, fewer than the {TINY_RF}")
    write(root / "blip_48k.wav", tone(HZ, 1.0, 48000)[:300], 48000)  # 100 samples at 16 kHz
    bad("blip_48k.wav", "too short: 100 samples")

    # Truncated files. A header alone is nothing; half a file may still hold a valid prefix.
    source = write(root / "whole" / "source.wav", tone(HZ, 1.0), subtype="PCM_16")
    cut(source, "../header_only.wav", 44)  # the whole 44-byte header, no sample data
    bad("header_only.wav", "no audio frames")
    cut(source, "../half_header.wav", 30)
    bad("half_header.wav", "cannot decode")
    for name, kwargs in [("flac", {}), ("ogg", {}), ("mp3", {})]:
        if name.upper() not in sf.available_formats():
            continue
        compressed = write(root / "whole" / f"source.{name}", tone(HZ, 1.0), **kwargs)
        cut(compressed, f"../header_only_{name}.{name}", 20)
        bad(f"header_only_{name}.{name}", "cannot decode")
    for path in (root / "whole").iterdir():
        path.unlink()
    (root / "whole").rmdir()

    # Links: a loop of two, a link to itself, one to nothing, and a folder link back up the tree.
    os.symlink("loop_b.wav", root / "loop_a.wav")
    os.symlink("loop_a.wav", root / "loop_b.wav")
    os.symlink("myself.wav", root / "myself.wav")
    os.symlink("missing.wav", root / "dangling.wav")
    bad("loop_a.wav", "symbolic link loop")
    bad("loop_b.wav", "symbolic link loop")
    bad("myself.wav", "symbolic link loop")
    bad("dangling.wav", "broken symbolic link (to missing.wav, which does not exist)")
    (root / "nested").mkdir()
    os.symlink("..", root / "nested" / "up")
    bad("nested/up/", "link to a folder that contains it (a loop): not followed")
    os.symlink("rates", root / "shortcut")  # its files are prepared once, from rates/
    bad("shortcut/", "link to rates, inside the dataset: not followed (its files are read there)")
    os.symlink(root.parent / "elsewhere", root / "linked_again")  # "linked" reaches it first
    bad("linked_again/", "searched already (through another link): not followed")
    # A bad file whose name is not UTF-8 is named legibly too.
    (Path(os.fsdecode(os.fsencode(root) + b"/r\xe9sum\xe9.wav"))).write_text("curriculum vitae")
    bad("r\\xe9sum\\xe9.wav", "not audio (looks like text)")

    if locked:  # unreadable: a file, and a folder with a good file inside that cannot be listed
        write(root / "locked.wav", tone(HZ, 1.0)).chmod(0)
        write(root / "locked_folder" / "inside.wav", tone(HZ, 1.0))
        (root / "locked_folder").chmod(0)
        bad("locked.wav", "permission denied")
        bad("locked_folder/", "cannot list this folder (permission denied)")
    return reasons


def _drop_root_file_access() -> None:
    """preexec_fn: the command runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, root's
    licence to read and list anything, so file permissions apply to it as to any user. It stays
    uid 0, so it can still run this Python (which another user may not be able to reach)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def permissions_apply(folder: Path):
    """How to run a command on which ``chmod 0`` works: (True, preexec_fn or None), or
    (False, why not)."""
    probe = folder / "probe"
    probe.write_text("x")
    probe.chmod(0)
    preexec = _drop_root_file_access if os.geteuid() == 0 else None
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}).read()"],
            preexec_fn=preexec,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot give up root's file access here ({exc})"
    finally:
        probe.unlink()
    if "PermissionError" not in proc.stderr:
        return False, "file permissions are not enforced for this user here"
    return True, preexec


def unlock(root: Path) -> None:
    for path in (root / "locked.wav", root / "locked_folder"):
        if path.exists() or path.is_symlink():
            path.chmod(0o755)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The mixed folder, prepared once through the real command line with the tiny recipe."""
    base = tmp_path_factory.mktemp("inputs")
    root = base / "dataset"
    root.mkdir()
    locked, preexec = permissions_apply(base)
    good = good_files(root)
    bad = bad_files(root, locked)
    either = half_files(root)
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", "prepare", "dataset", "--recipe", "tiny", "--quiet"],
        cwd=base,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=preexec if locked else None,
    )
    unlock(root)
    assert (base / "prepared" / "manifest.json").is_file(), proc.stderr[-3000:]
    manifest = json.loads((base / "prepared" / "manifest.json").read_text(encoding="utf-8"))
    yield {
        "base": base,
        "good": good,
        "bad": bad,
        "either": either,
        "proc": proc,
        "manifest": manifest,
        "locked": locked,
        "why_not_locked": None if locked else preexec,
    }


def test_every_good_file_is_prepared_at_its_length_and_pitch(mixed):
    manifest = mixed["manifest"]
    durations = {entry["source"]: entry["duration_s"] for entry in manifest["files"]}
    assert set(mixed["good"]) <= set(durations) <= set(mixed["good"]) | set(mixed["either"])
    for name, seconds in mixed["good"].items():
        lossy = name.endswith((".mp3", ".ogg"))  # encoder padding may differ by a frame
        assert durations[name] == pytest.approx(seconds, abs=0.03 if lossy else 1e-3), name
    # The codes are the tone at 16 kHz: a misread rate or width would move or bury the 440 Hz peak.
    codes = np.fromfile(mixed["base"] / "prepared" / "train.u8", np.uint8)
    for entry in manifest["files"]:
        offset, length = entry["train"]
        audio = decode(codes[offset : offset + length]).numpy()
        if length >= RATE // 2:
            peak_hz, flatness = spectrum_peak(audio, RATE)
            assert abs(peak_hz - HZ) < 3 and flatness < 0.05, (entry["source"], peak_hz, flatness)
        # µ-law steps are ~4 % of the level at 0.5, ~10 % at -50 dBFS
        special = {"stereo.wav": (0.25, 0.06), "quiet.wav": (10 ** (-50 / 20), 0.1)}
        level, within = special.get(entry["source"], (0.5, 0.06))
        assert np.abs(audio).max() == pytest.approx(level, rel=within), entry["source"]


def test_every_bad_file_is_named_once_with_its_reason(mixed):
    stderr, dataset = mixed["proc"].stderr, "dataset/"
    skipped = {entry["source"]: entry["reason"] for entry in mixed["manifest"]["skipped"]}
    assert set(mixed["bad"]) <= set(skipped) <= set(mixed["bad"]) | set(mixed["either"])
    for name, reason in mixed["bad"].items():
        assert skipped[name].startswith(reason), (name, skipped[name])
        shown = name.rstrip("/")
        # Once in the whole output: "/name" so that no other file's name matches by its tail.
        assert stderr.count("/" + shown) == 1, (name, stderr)
        assert f"skipped {dataset}{name}: {skipped[name]}\n" in stderr


def test_half_files_are_either_prepared_from_their_prefix_or_named_as_undecodable(mixed):
    prepared = {entry["source"]: entry["duration_s"] for entry in mixed["manifest"]["files"]}
    skipped = {entry["source"]: entry["reason"] for entry in mixed["manifest"]["skipped"]}
    for name in mixed["either"]:
        assert (name in prepared) != (name in skipped), name
        if name in prepared:
            assert 0.1 < prepared[name] < 0.75, (name, prepared[name])
            assert mixed["proc"].stderr.count("/" + name) == 0
        else:
            assert skipped[name].startswith("cannot decode ("), (name, skipped[name])
            assert mixed["proc"].stderr.count("/" + name) == 1
    assert prepared["half.wav"] == pytest.approx(0.5, abs=0.01)  # a WAV's samples up to the cut


def test_the_output_is_the_skipped_lines_and_one_summary_and_the_status_says_so(mixed):
    proc, manifest = mixed["proc"], mixed["manifest"]
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    # Nothing else: decoders' own warnings (mpg123's "Illegal Audio-MPEG-Header"...) stay quiet.
    assert all(line.startswith("skipped dataset/") for line in lines[:-1]), proc.stderr
    assert len(lines) - 1 == len(manifest["skipped"])
    folders = sum(entry["source"].endswith("/") for entry in manifest["skipped"])
    summary = re.fullmatch(
        r"prepared (\d+) files \(.*\) into prepared; skipped (\d+) files and (\d+) folders? "
        r"\(named above\)",
        lines[-1],
    )
    assert summary, lines[-1]
    assert [int(n) for n in summary.groups()] == [len(manifest["files"]), len(manifest["skipped"]) - folders, folders]
    everything = len(mixed["good"]) + len(mixed["bad"]) + len(mixed["either"])
    assert len(manifest["files"]) + len(manifest["skipped"]) == everything


def test_names_that_are_not_utf8_are_prepared_and_shown_with_escapes(mixed):
    raw = (mixed["base"] / "prepared" / "manifest.json").read_bytes()
    raw.decode("utf-8")  # valid UTF-8 JSON, whatever the names were
    assert b'"source": "caf\\\\xe9.wav"' in raw  # JSON for the text caf\xe9.wav
    assert "skipped dataset/r\\xe9sum\\xe9.wav: not audio (looks like text)" in mixed["proc"].stderr
    assert "\udce9" not in mixed["proc"].stderr


def test_unreadable_files_and_folders_are_skipped_not_fatal(mixed):
    if not mixed["locked"]:
        pytest.skip(mixed["why_not_locked"])
    skipped = {entry["source"]: entry["reason"] for entry in mixed["manifest"]["skipped"]}
    assert skipped["locked.wav"] == "permission denied"
    assert skipped["locked_folder/"] == "cannot list this folder (permission denied)"
    assert not any("inside.wav" in entry["source"] for entry in mixed["manifest"]["files"])


def test_a_clean_folder_exits_0_and_an_unusable_one_exits_1_naming_each_file(tmp_path):
    write(tmp_path / "clean" / "a.wav", tone(HZ, 0.5))
    write(tmp_path / "clean" / "b.flac", tone(HZ, 0.5, 44100), 44100)
    clean = wavegen("prepare", "clean", "--quiet", cwd=tmp_path)
    assert clean.stderr.splitlines()[-1].startswith("prepared 2 files") and "skipped" not in clean.stderr

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "empty.wav").write_bytes(b"")
    (tmp_path / "bad" / "notes.mp3").write_text("not a song")
    write(tmp_path / "bad" / "silence.wav", np.zeros(RATE, np.float32))
    unusable = wavegen("prepare", "bad", "--quiet", cwd=tmp_path, ok=False)
    assert unusable.returncode == 1
    one_line_error(unusable, "none of the 3 audio files could be used")
    for name in ("empty.wav", "notes.mp3", "silence.wav"):
        assert unusable.stderr.count(name) == 1, unusable.stderr


def test_the_minimum_length_is_the_recipes_receptive_field(tmp_path):
    """The default recipe's model needs 3071 samples of context: a 0.1 s file is too short for
    it, though long enough for the tiny recipe's 129."""
    assert receptive_field(load_recipe("tiny").model) == TINY_RF == WaveNet(load_recipe("tiny").model).receptive_field
    default = load_recipe("default").model
    assert receptive_field(default) == 3071 == WaveNet(default).receptive_field
    write(tmp_path / "dataset" / "tenth.wav", tone(HZ, 0.1))
    write(tmp_path / "dataset" / "second.wav", tone(HZ, 1.0))
    proc = wavegen("prepare", "dataset", "--quiet", cwd=tmp_path, ok=False)
    assert proc.returncode == 3
    assert (
        "skipped dataset/tenth.wav: too short: 1600 samples at 16000 Hz, fewer than the 3071 of the "
        "default recipe's receptive field (--recipe tiny needs 129)"
    ) in proc.stderr
    assert "prepared 1 file (" in proc.stderr
