"""The live pump: blocks from a stream into a sink, the speed watched (a stand-in clock, stream
and sink: nothing is generated)."""

import logging

import numpy as np
import pytest

from wavegen.generate.live import LiveStream
from wavegen.synthesis import live
from wavegen.synthesis.live import play_stream


class Sink:
    def __init__(self, broken_at=None):
        self.blocks, self.closed, self.broken_at = [], [], broken_at

    def write(self, block):
        if len(self.blocks) == self.broken_at:
            raise BrokenPipeError(32, "Broken pipe")
        self.blocks.append(block)

    def close(self, abort=False):
        self.closed.append(abort)


class Made:
    """A stream of ``count`` blocks of ``size`` samples, each taking ``takes`` s of the clock."""

    def __init__(self, count, takes, size=4096, n=1, precision="fp32", engine="native", fail_at=None):
        self.now, self.stopped, self.made = 0.0, False, 0
        self.count, self.takes, self.size, self.n, self.fail_at = count, takes, size, n, fail_at
        self.stream = LiveStream(self.blocks(), 16000, list(range(n)), None, engine, "cpu", precision, 2, count * size)

    def clock(self):
        return self.now

    def blocks(self):
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise KeyboardInterrupt
                self.now += self.takes
                self.made += 1
                yield np.full((self.n, self.size), i / self.count, np.float32)
        finally:
            self.stopped = True


def test_blocks_reach_the_sink_in_order_and_a_fast_stream_says_nothing(said):
    made, sink = Made(10, takes=0.1), Sink()
    result = play_stream(made.stream, sink, made.clock)
    assert [b[0, 0] for b in sink.blocks] == [i / 10 for i in range(10)] and sink.closed == [False]
    assert not said and made.stopped
    assert result.samples == 40960 and result.gaps == 0 and not result.closed
    assert result.rtf == pytest.approx(0.256 / 0.1)  # audio s per s of generating, after the first block
    assert result.seconds == pytest.approx(1.0)


def test_a_slow_stream_is_named_once_with_what_would_keep_up(said):
    made = Made(20, takes=0.5, n=2)
    result = play_stream(made.stream, Sink(), made.clock)
    assert result.rtf == pytest.approx(0.512)
    assert len(said) == 1, said
    line = said[0]
    assert "0.51× real time" in line and "slower than playback" in line
    assert "'native' engine (fp32, 2 threads) on cpu" in line
    assert "--precision int8" in line and "fewer streams than 2 (-n)" in line and "smaller model" in line
    # said once about 1 s of audio in (after block 4 of 0.256 s), not at the first block
    said_at = []
    made = Made(20, takes=0.5)
    when = logging.Handler()
    when.emit = lambda record: said_at.append(made.made)  # how many blocks were made when it was said
    live.logger.addHandler(when)
    try:
        play_stream(made.stream, Sink(), made.clock)
    finally:
        live.logger.removeHandler(when)
    assert said_at == [4]
    said.clear()
    made = Made(20, takes=0.5, precision="int8")  # int8 already, one stream: a smaller model
    play_stream(made.stream, Sink(), made.clock)
    assert "--precision" not in said[0] and "-n)" not in said[0] and "smaller model" in said[0]


def test_a_closed_pipe_stops_generation_quietly():
    made, sink = Made(100, takes=0.1), Sink(broken_at=3)
    result = play_stream(made.stream, sink, made.clock)
    assert result.closed and result.samples == 3 * 4096
    assert made.stopped and made.made == 4  # no block generated after the one that found the pipe closed
    assert sink.closed == []  # nothing more is written to a pipe nobody reads


def test_ctrl_c_aborts_the_sink_and_is_raised():
    made, sink = Made(100, takes=0.1, fail_at=5), Sink()
    with pytest.raises(KeyboardInterrupt):
        play_stream(made.stream, sink, made.clock)
    assert sink.closed == [True] and len(sink.blocks) == 5 and made.stopped
