"""Names in any script (labels, recordings, runs) on the pictures wavegen draws, and a quiet
terminal: no library warning reaches a user's stderr in normal use."""

import re
import warnings

import numpy as np
import pytest

from wavegen.audio import plots
from wavegen.audio.io import write_wav

from helpers import tone, wavegen
from test_artifacts import image

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

# One label folder and file name per script: Chinese, Arabic, Devanagari, an emoji, and Latin
# with an accent (DejaVu Sans, matplotlib's default font, has the last two scripts only).
NAMES = ["你好", "مرحبا", "नमस्ते", "🎵", "café"]
TEST_FAMILY = "Wavegen Test Script"


def noise(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are a warning or a traceback."""
    return [line for line in stderr.splitlines() if re.search(r"warn|traceback", line, re.IGNORECASE)]


@pytest.fixture(scope="module")
def scripts_run(tmp_path_factory):
    """prepare → train (tiny, 2 steps, a training sample) → synth --quiet on a dataset whose
    label folders and file names are in several scripts: (folder, every command's stderr)."""
    folder = tmp_path_factory.mktemp("scripts")
    for i, name in enumerate(NAMES):
        write_wav(folder / "数据" / name / f"{name}.wav", tone(220 + 110 * i, 1.0), 16000)
    fast = [
        "--set",
        "train.val_every=2",
        "--set",
        "train.val_batches=1",
        "--set",
        "train.sample_every=2",
        "--set",
        "train.sample_seconds=0.02",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.segment_length=200",
    ]
    stderr = {
        "prepare": wavegen("prepare", "数据", "--recipe", "tiny", "--labels", "folders", "--quiet", cwd=folder).stderr,
        "train": wavegen("train", "--recipe", "tiny", "--steps", "2", *fast, "--quiet", cwd=folder).stderr,
        "synth": wavegen("synth", "--seconds", "0.02", "--quiet", cwd=folder).stderr,
    }
    return folder, stderr


def test_names_in_any_script_leave_the_terminal_quiet(scripts_run):
    folder, stderr = scripts_run
    for command, text in stderr.items():
        assert noise(text) == [], (command, text)
    assert "synthesising 5 ×" in stderr["synth"]  # what --quiet keeps: what was done


def test_every_sample_has_its_spectrogram(scripts_run):
    folder, _ = scripts_run
    wavs = sorted((folder / "samples").glob("*.wav"))
    assert len(wavs) == len(NAMES)
    for wav in wavs:
        image(wav.with_suffix(".png"))


def test_the_report_draws_a_missing_spectrogram_of_any_name_quietly(scripts_run):
    folder, _ = scripts_run
    chinese = next((folder / "samples").glob("*你好*.png"))
    chinese.unlink()  # the report draws it into its own folder
    proc = wavegen("report", "--samples", "samples", "--out", "page", cwd=folder)
    assert noise(proc.stderr) == [], proc.stderr
    image(folder / "page" / chinese.name)


def test_a_latin_title_is_drawn_as_it_is_with_the_default_font():
    title = "tiny-step20-café-seed0.wav"
    assert plots.drawable(title, plots._has, plots._fallback_families()) == (title, [])


def test_characters_go_to_the_first_font_that_has_them_else_become_escapes():
    fonts = {None: set("abc-é "), "Serif": set("abcé"), "CJK": set("你好a"), "Devanagari": set("नमसत\u094d\u0947")}

    def has(family, char):
        return char in fonts[family]

    fallbacks = ["Serif", "CJK", "Devanagari"]
    assert plots.drawable("a-你好 नमस्ते", has, fallbacks) == ("a-你好 नमस्ते", ["CJK", "Devanagari"])
    # No font has these: readable escapes, one space apart; a mark on an escape is escaped too,
    # an invisible joiner is left out, a line break is never drawn.
    assert plots.drawable("a🎵\u0301b\u200d\n", has, fallbacks) == ("aU+1F3B5 U+0301bU+000A", [])
    assert plots.drawable("é", has, fallbacks) == ("é", [])  # the default font's own: no fallback


@pytest.fixture
def test_font(tmp_path):
    """An installed font (for matplotlib) of the family TEST_FAMILY whose only glyphs are 你 and 好
    (squares): a CJK font on any machine. Removed again afterwards."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from matplotlib import font_manager

    def square():
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0))
        pen.lineTo((100, 700))
        pen.lineTo((900, 700))
        pen.lineTo((900, 0))
        pen.closePath()
        return pen.glyph()

    glyphs = {f"uni{ord(c):04X}": ord(c) for c in "你好"}
    names = [".notdef", "space", *glyphs]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({32: "space", **{code: name for name, code in glyphs.items()}})
    builder.setupGlyf({".notdef": square(), "space": TTGlyphPen(None).glyph(), **{n: square() for n in glyphs}})
    builder.setupHorizontalMetrics({name: (1000, 0) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": TEST_FAMILY, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    path = tmp_path / "test-script.ttf"
    builder.save(str(path))

    def forget():
        plots._fallback_families.cache_clear()
        plots._charmap.cache_clear()

    font_manager.fontManager.addfont(str(path))
    forget()
    yield path
    font_manager.fontManager.ttflist = [f for f in font_manager.fontManager.ttflist if f.name != TEST_FAMILY]
    forget()


def drawn_title(text: str) -> np.ndarray:
    """The pixels of a small figure titled ``text``, with any warning while drawing an error."""
    import io

    from matplotlib.image import imread

    figure = plots.figure(3, 2)  # the title: the top 24 rows
    plots.set_title(figure.add_subplot(), text)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure.savefig(buffer, format="png")
    buffer.seek(0)
    return imread(buffer)


def test_a_font_that_lacks_a_glyph_falls_back_to_an_installed_one_that_has_it(test_font):
    # The default font (DejaVu Sans) has no 你 or 好; the test font has nothing else.
    assert plots.drawable("run 你好 🎵", plots._has, [TEST_FAMILY]) == ("run 你好 U+1F3B5", [TEST_FAMILY])
    assert TEST_FAMILY in plots._fallback_families()
    pixels = drawn_title("你好")
    ink = pixels[..., :3].mean(axis=2) < 0.5  # the test font's glyphs are solid squares
    assert ink[:24].sum() > 50  # drawn in the title, with no warning


def test_a_title_in_any_script_draws_without_a_warning_on_any_machine():
    # Whatever fonts are installed: drawn with one that has the glyphs, or escaped, never a box
    # (matplotlib warns for every box it draws).
    # A file name's dollars are not mathtext (this one would not parse).
    drawn_title(" ".join(NAMES) + " $\\nosuchcommand$")


# Library warnings with a cause in wavegen: the cause is fixed, nothing is silenced.


def test_mel_settings_with_empty_bands_are_refused_naming_how_many_fit():
    from wavegen.audio.features import MelSettings, check_bands, empty_bands, log_mel
    from wavegen.config import ConfigError

    crowded = MelSettings(16000, 128, 128, 256, 0.0, 8000.0)  # 129 bins for 128 bands
    assert empty_bands(crowded) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchaudio's warning would be one
        with pytest.raises(ConfigError, match=r"use at most (\d+) bands") as refused:
            check_bands(crowded)
        fits = int(re.search(r"at most (\d+) bands", str(refused.value)).group(1))
        assert 0 < fits < 128 and empty_bands(crowded, fits) == 0 and empty_bands(crowded, fits + 1) > 0
        check_bands(MelSettings(16000, fits, 128, 256, 0.0, 8000.0))
        # data prepared before the check still works, without torchaudio's warning each time
        assert log_mel(tone(440, 0.1), crowded).shape == (13, 128)


def test_bench_learn_closes_its_run_and_keeps_its_bar_within_the_total(tmp_path):
    import io

    from tqdm import tqdm

    from wavegen.bench import learning as bench_learn
    from wavegen.config import apply_overrides
    from wavegen.data.prepare import prepare
    from wavegen.recipe import load_recipe

    write_wav(tmp_path / "dataset" / "a.wav", tone(330, 2.0), 16000)
    config = apply_overrides(load_recipe("tiny"), ["train.batch_size=2", "train.segment_length=200"])
    prepare(tmp_path / "dataset", tmp_path / "prepared", config.data, progress=False)
    bar = tqdm(disable=False, file=io.StringIO())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = list(
            bench_learn.run(
                config,
                tmp_path / "prepared",
                [bench_learn.Variant(bench_learn.DEFAULT)],
                minutes=[0.002],
                bar=bar,
                max_eval_seconds=0.1,
            )
        )
        bar.close()
    assert len(results) == 1 and results[0]["train_s"] >= 0.12  # trained past the budget...
    assert bar.n == pytest.approx(bar.total)  # ...counted up to it, not past (tqdm would warn)
    assert [str(w.message) for w in caught] == []  # no ResourceWarning for the temporary run folder
