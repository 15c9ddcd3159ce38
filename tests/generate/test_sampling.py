import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wavegen.config import ModelConfig
from wavegen.errors import ConfigError
from wavegen.generate.choice import make_engine
from wavegen.generate.engine import GOLDEN, StreamRandom, sample_codes, stream_uniforms
from wavegen.generate.engines import generate
from wavegen.generate.native import check
from wavegen.generate.reference import ReferenceEngine
from wavegen.model.network import WaveNet

from helpers import native_or_skip, random_model

SHAPES = {  # the native check's shapes (k2, odd), and a three-tap kernel with a three-tap input layer
    **check.SHAPES,
    "k3": ModelConfig(
        cycles=1,
        layers_per_cycle=4,
        kernel_size=3,
        input_kernel_size=3,
        residual_channels=8,
        gate_channels=16,
        skip_channels=16,
    ),
}
FAST_ENGINES = ["torch", "native"]  # each is held to the reference engine


def build_engine(name: str, model: WaveNet, threads: int | None = None):
    if name == "native":
        return native_or_skip().NativeEngine(model, threads=threads)
    return make_engine(name, model)


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_engines_generate_exactly_the_reference_codes(shape, engine):
    model = random_model(SHAPES[shape])
    seeds = [3, 4, 5]
    ref = generate(ReferenceEngine(model), 400, seeds, temperature=0.8)
    fast = generate(build_engine(engine, model), 400, seeds, temperature=0.8)
    assert torch.equal(ref, fast)
    assert len(set(ref[0].tolist())) > 10  # not stuck on one value: the comparison means something


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cached_step_logits_match_the_full_forward(shape, engine):
    """Teacher forcing: feed a fixed code sequence step by step and compare every step's logits
    with one parallel forward pass over the whole sequence (history included)."""
    model = random_model(SHAPES[shape], seed=1)
    rf = model.receptive_field
    history = torch.randint(0, 256, (2, 37))
    future = torch.randint(0, 256, (2, 150))
    fast = build_engine(engine, model)
    fast.reset(2, history)
    steps = []
    for n in range(future.shape[1]):
        steps.append(fast.logits())
        fast.append(future[:, n])
    stepped = torch.stack(steps, dim=2)  # (B, classes, N)
    silence = torch.full((2, rf), 128)
    with torch.no_grad():
        full = model(torch.cat([silence, history, future], dim=1), output_from=rf + history.shape[1])
    assert (stepped - full).abs().max() < 1e-4


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_each_stream_depends_only_on_its_own_seed(engine):
    model = random_model(SHAPES["k2"])
    fast = build_engine(engine, model)
    alone = generate(fast, 200, [7], temperature=1.0)
    together = generate(fast, 200, [6, 7, 8], temperature=1.0)
    many = generate(fast, 200, list(range(16)), temperature=1.0)  # the native engine: other threading
    assert torch.equal(alone[0], together[1]) and torch.equal(alone[0], many[7])
    assert not torch.equal(together[0], together[1])


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_generation_starts_from_a_history_when_given_one(engine):
    model = random_model(SHAPES["k2"])
    history = torch.randint(0, 256, (2, 100))
    a = generate(build_engine(engine, model), 50, [0, 1], history=history)
    b = generate(ReferenceEngine(model), 50, [0, 1], history=history)
    c = generate(build_engine(engine, model), 50, [0, 1])
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The same history for every stream (what synth --prime gives) is computed once.
    shared = history[:1].expand(2, -1)
    assert torch.equal(
        generate(build_engine(engine, model), 50, [0, 1], history=shared),
        generate(ReferenceEngine(model), 50, [0, 1], history=shared),
    )


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_native_codes_do_not_depend_on_the_thread_layout(batch):
    """Threads split a stream's columns or take streams of their own; every output element is
    computed the same way either way, so the codes are identical (and the state carries over
    from call to call when the layout changes in between)."""
    native = native_or_skip()
    model = random_model(SHAPES["k2"])
    seeds = list(range(10, 10 + batch))
    engine = native.NativeEngine(model, threads=1)
    expected = generate(engine, 300, seeds, temperature=0.9)
    for threads, group in [(2, 0), (2, 2), (2, 1), (3, 3)]:
        engine.set_threads(threads, group)
        assert torch.equal(generate(engine, 300, seeds, temperature=0.9), expected), (threads, group)
    # Re-planning between calls in one generation keeps the state.
    engine.set_threads(1)
    engine.reset(batch)
    out = torch.empty(batch, 300, dtype=torch.uint8)
    for start, threads, group in [(0, 1, 0), (100, 2, 2), (200, 2, 1)]:
        engine.set_threads(threads, group)
        engine.sample_steps(out, start, 100, seeds, np.full(batch, 0.9))
    assert torch.equal(out, expected)


def test_native_rng_matches_python():
    native = native_or_skip()
    lib = native.load()
    for seed, n in [(0, 0), (3, 17), (2**64 - 1, 5)]:
        assert lib.wg_uniform(seed, n) == stream_uniforms([seed], n, 1)[0, 0]


def _uniform_by_hand(seed: int, n: int) -> float:
    """The RNG spec in plain Python integers, to check the vectorised numpy version against."""
    mask = 2**64 - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = mix((seed + GOLDEN) & mask)
    return (mix((key + (n + 1) * GOLDEN) & mask) >> 11) * 2.0**-53


def test_counter_rng_pins_known_values_and_looks_uniform():
    # Pinned: any change here changes every generated sample of every seed (and the native
    # engine computes the same numbers; its tests compare codes with the reference engine).
    u = stream_uniforms([0, 1, 2**63 + 5], 0, 1000)
    assert u[:, [0, 1, 999]].tolist() == [
        [0.6524484863740322, 0.7012121095215252, 0.5676700093501268],
        [0.36818951565166946, 0.9435642308648544, 0.442282546239115],
        [0.9205017241338264, 0.5590596349129345, 0.48118556869569906],
    ]
    for seed, n in [(0, 0), (7, 12345), (2**64 - 1, 3), (-1, 3)]:  # negative seeds wrap mod 2^64
        assert stream_uniforms([seed], n, 1)[0, 0] == _uniform_by_hand(seed % 2**64, n)
    # A window starting later is the same sequence, shifted.
    assert np.array_equal(stream_uniforms([3], 10, 5)[0], stream_uniforms([3], 0, 15)[0, 10:])
    many = stream_uniforms(list(range(8)), 0, 20000)  # (8, 20000)
    assert ((many >= 0) & (many < 1)).all()
    assert abs(many.mean() - 0.5) < 0.005 and abs(many.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(many[0, :-1], many[0, 1:])[0, 1]) < 0.03  # no lag-1 correlation
    assert abs(np.corrcoef(many[0], many[1])[0, 1]) < 0.03  # neighbouring seeds differ
    # StreamRandom walks the same counter, chunk after chunk.
    draws = StreamRandom([5, 6], chunk=7)
    walked = torch.stack([draws.next() for _ in range(20)], 1).numpy()
    assert np.array_equal(walked, stream_uniforms([5, 6], 0, 20))


def test_inverse_cdf_sampling_follows_the_softmax():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    draws = StreamRandom([0])
    counts = torch.zeros(3)
    for _ in range(4000):
        counts[sample_codes(logits, torch.tensor([1.0]), draws.next())] += 1
    assert torch.allclose(counts / 4000, torch.tensor([0.1, 0.6, 0.3]), atol=0.03)
    # Temperature towards zero concentrates on the argmax.
    cold = [sample_codes(logits, torch.tensor([0.05]), draws.next()).item() for _ in range(200)]
    assert cold.count(1) == 200


def test_make_engine_names():
    model = random_model(SHAPES["k2"])
    from wavegen.generate import native

    try:
        native.load()
        fastest = "native"
    except native.NativeUnavailable:
        fastest = "torch"
    assert make_engine("auto", model).name == fastest
    assert make_engine("torch", model).name == "torch"
    assert make_engine("reference", model).name == "reference"
    with pytest.raises(ConfigError, match="unknown engine"):
        make_engine("warp", model)


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """The native module with an empty build cache and nothing loaded yet in this process."""
    from wavegen.generate import native

    monkeypatch.setattr(native.abi, "_loaded", {})
    monkeypatch.setenv("WAVEGEN_CACHE", str(tmp_path / "cache"))
    return native


def test_without_a_compiler_auto_falls_back_to_torch_with_one_notice(fresh_native, monkeypatch, said):
    monkeypatch.setenv("CXX", "no-such-compiler")
    model = random_model(SHAPES["k2"])
    assert make_engine("auto", model).name == "torch"
    assert make_engine("auto", model).name == "torch"
    assert said == ["native engine unavailable: CXX=no-such-compiler not found; using the 'torch' engine"]
    with pytest.raises(fresh_native.NativeUnavailable, match="CXX=no-such-compiler not found"):
        make_engine("native", model)


def compiler_or_skip(native):
    try:
        native.find_compiler()
    except native.NativeUnavailable as exc:
        pytest.skip(str(exc))


def test_a_compile_error_is_reported_as_unavailable(fresh_native, monkeypatch, tmp_path):
    compiler_or_skip(fresh_native)
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(fresh_native.toolchain, "SOURCE", broken)
    with pytest.raises(fresh_native.NativeUnavailable, match="compiling broken.cpp failed"):
        fresh_native.load()
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built left behind


def test_the_build_is_cached_by_source_compiler_and_cpu(fresh_native, tmp_path, said):
    compiler_or_skip(fresh_native)
    first = fresh_native.build()
    assert first.parent == tmp_path / "cache" and first.is_file() and len(said) == 1
    assert fresh_native.build() == first and len(said) == 1  # no second build
    assert fresh_native.fingerprint(fresh_native.find_compiler()) in first.name


def test_layout_tuner_runs_mostly_on_the_fastest_layout_and_notices_a_change():
    from wavegen.generate.native import LayoutTuner

    tuner = LayoutTuner(threads=2, batch=1)
    assert sorted(tuner.layouts) == [(1, 1), (2, 2)]  # for one stream, (2, 1) is (2, 2)
    speed = {(2, 2): 20000.0, (1, 1): 11000.0}  # steps/s: idle cores
    spent = {layout: 0.0 for layout in speed}
    previous = [None]

    def run(total_steps):
        while total_steps:
            layout, steps = tuner.next(min(total_steps, 4096))
            seconds = steps / speed[layout] + (0.02 if layout != previous[0] else 0.0)  # waking threads
            tuner.record(layout, steps, seconds)
            spent[layout] += seconds
            previous[0] = layout
            total_steps -= steps

    run(400_000)
    assert tuner.best == (2, 2) and spent[(1, 1)] < 0.03 * spent[(2, 2)]
    for remaining in (1, 2, 3):  # never more steps than asked for, probing or not
        tuner.timed.clear()
        assert tuner.next(remaining)[1] == remaining
    speed[(2, 2)] = 700.0  # another process takes a core: lockstep threads crawl
    spent = {layout: 0.0 for layout in speed}
    run(400_000)
    assert tuner.best == (1, 1) and spent[(2, 2)] < 0.1 * spent[(1, 1)]


@pytest.mark.parametrize(
    "batch, fastest",
    [(1, (4, 4)), (1, (16, 16)), (1, (1, 1)), (8, (8, 8)), (32, (16, 4)), (32, (16, 1))],
)
def test_layout_tuner_on_a_many_core_host_finds_the_fastest_thread_count_and_grouping(batch, fastest):
    """On 16 cores one stream can run fastest on 4 of them (barriers cost more than the columns
    they share), or many streams in groups of 4: whichever layout is fastest is found and run."""
    from wavegen.generate.native import LayoutTuner

    tuner = LayoutTuner(threads=16, batch=batch)
    assert fastest in tuner.layouts and (1, 1) in tuner.layouts and (16, 16) in tuner.layouts
    rng = random.Random(batch)
    speed = {layout: rng.uniform(2000, 9000) for layout in tuner.layouts}
    speed[fastest] = 10_000.0
    spent, steps_left, previous = dict.fromkeys(speed, 0.0), 200_000, None
    while steps_left:
        layout, steps = tuner.next(min(steps_left, 4096))
        seconds = steps * batch / speed[layout] + (0.002 if layout != previous else 0.0)
        tuner.record(layout, steps, seconds)
        spent[layout], previous, steps_left = spent[layout] + seconds, layout, steps_left - steps
    assert tuner.best == fastest and spent[fastest] > 0.8 * sum(spent.values())


def test_the_build_name_does_not_depend_on_the_terminal_width(fresh_native, monkeypatch):
    compiler_or_skip(fresh_native)
    compiler = fresh_native.find_compiler()
    names = set()
    for columns in ("40", "80", "250"):  # GCC wraps its --help output at $COLUMNS
        monkeypatch.setenv("COLUMNS", columns)
        names.add(fresh_native.fingerprint(compiler))
    monkeypatch.delenv("COLUMNS")
    names.add(fresh_native.fingerprint(compiler))
    assert len(names) == 1


FAKE_COMPILER = """#!{python}
import os, sys, time
args = sys.argv[1:]
if "-o" in args:  # a build: logged, slow enough for two processes to overlap
    with open(os.environ["FAKE_CXX_LOG"], "a") as log:
        log.write("build\\n")
    time.sleep(0.5)
    with open(args[args.index("-o") + 1], "wb") as out:
        out.write(b"not really a library")
else:
    print("fake c++ 1.0")
"""


def _build_after(barrier, results) -> None:
    from wavegen.generate import native

    barrier.wait()
    results.put(str(native.build()))


def test_concurrent_first_builds_build_once(fresh_native, monkeypatch, tmp_path):
    """Two processes that need the library at once: one builds it, the other waits for the
    lock and uses it (a fake compiler that only logs, so this takes a second)."""
    import multiprocessing

    compiler = tmp_path / "fake-c++"
    compiler.write_text(FAKE_COMPILER.format(python=sys.executable))
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("FAKE_CXX_LOG", str(tmp_path / "builds.log"))
    context = multiprocessing.get_context("fork")  # the children inherit the patched module and env
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_build_after, args=(barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    built = {results.get(timeout=5), results.get(timeout=5)}
    assert len(built) == 1 and Path(built.pop()).read_bytes() == b"not really a library"
    assert (tmp_path / "builds.log").read_text() == "build\n"  # once, not once per process
    assert (tmp_path / "cache" / "build.lock").is_file() and not list((tmp_path / "cache").glob(".wavenet-*"))
