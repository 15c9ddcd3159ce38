"""``wavegen bench stream``: live generation's time to first audio, sustained real-time factor and,
for a model with mel features, the latency from a frame's arrival to its audio. Real small runs;
nothing asserts a speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavegen.bench import streaming

from helpers import run_in_process

MEL_SHAPE = ["--set", "data.mel_bands=20", "--set", "data.mel_hop=256", "--set", "data.mel_n_fft=512"]


def rows_of(stdout: str) -> dict[str, dict]:
    rows = {row["measure"]: row for row in map(json.loads, stdout.splitlines())}
    assert all(set(row) == set(streaming.KEYS) for row in rows.values())
    return rows


def check_common(rows: dict[str, dict], chunk: int) -> None:
    for measure in ("first-cold", "first-warm"):
        assert rows[measure]["first_audio_ms"] > 0 and rows[measure]["real_time_factor"] is None
    sustained = rows["sustained"]
    assert sustained["real_time_factor"] > 0 and 0 < sustained["worst_block_rtf"]
    assert sustained["wall_seconds"] > 0 and sustained["first_audio_ms"] is None
    for row in rows.values():
        assert row["chunk"] == chunk and row["device"] == "cpu" and row["engine"] and row["precision"]


@pytest.mark.slow  # a second of audio from a random tiny model, twice started
def test_an_unconditioned_model_gives_first_audio_and_sustained_rows(tmp_path):
    args = ["bench", "stream", "--recipe", "tiny", "--seconds", "1", "--chunk", "1000", "--json", "-q"]
    status, stdout, stderr = run_in_process(*args, cwd=tmp_path)
    assert status == 0, stderr
    rows = rows_of(stdout)
    assert list(rows) == ["first-cold", "first-warm", "sustained"]  # no mel-live row without mels
    check_common(rows, 1000)
    assert rows["sustained"]["audio_seconds"] == 1.0
    assert rows["sustained"]["worst_block_rtf"] <= rows["sustained"]["real_time_factor"] * 1.5


@pytest.mark.slow  # half a second of audio from a random tiny vocoder, fed in real time
def test_a_mel_model_adds_the_latency_of_frames_arriving_in_real_time(tmp_path):
    args = ["bench", "--stream", "--recipe", "tiny", *MEL_SHAPE, "--seconds", "0.5", "--json"]
    status, stdout, stderr = run_in_process(*args, cwd=tmp_path)
    assert status == 0, stderr
    assert "cpu: " in stderr and stderr.count("synthesising") == 1  # the first stream's line alone
    rows = rows_of(stdout)
    assert list(rows) == ["first-cold", "first-warm", "sustained", "mel-live"]
    check_common({k: v for k, v in rows.items() if k != "mel-live"}, 4096)
    live = rows["mel-live"]
    assert live["chunk"] == 256  # one hop by default
    assert live["audio_seconds"] == pytest.approx(32 * 256 / 16000)  # ceil(0.5 s / hop) frames
    hop_ms = 1000 * 256 / 16000
    assert live["lookahead_hops"] == 3.0 and live["lookahead_ms"] == pytest.approx(3 * hop_ms, abs=0.1)
    assert live["latency_median_ms"] >= live["lookahead_ms"]
    assert live["latency_max_ms"] >= live["latency_median_ms"] > 0
    assert live["compute_max_ms"] >= live["compute_median_ms"] > 0
    assert live["latency_median_hops"] == pytest.approx(live["latency_median_ms"] / hop_ms, abs=0.01)


def test_each_frame_waits_for_the_block_that_holds_its_last_sample_and_its_look_ahead():
    hop, count = 4, 6
    source = streaming.RealTimeSource(np.zeros((count, 1), np.float32), hop=1, rate=1)  # a frame a second
    source.start = 0.0
    # blocks of 8 samples (2 frames): block i ends at 8(i+1), and is output 0.5 s after the
    # arrival of the last frame it needs (its last sample's frame + 3, at most the last frame)
    ends = [8, 16, 24]
    needed = [min((end - 1) // hop + 3, count - 1) for end in ends]  # 4, 5, 5
    times = list(source.arrival(np.array(needed)) + 0.5)
    latency, lookahead = streaming.frame_latencies(ends, times, source, count, hop)
    assert np.allclose(lookahead, [4, 3, 3, 2, 1, 0])  # frame k waits for frame needed[k // 2]
    assert np.allclose(latency - lookahead, 0.5)  # the compute part
    # a block that never came (the stream stopped): its frames have no latency
    latency, _ = streaming.frame_latencies(ends[:2], times[:2], source, count, hop)
    assert len(latency) == 4
