"""The standalone check of the native engine's C++ (``python -m wavegen.generate.native.check``),
run here without sanitizers, and the variant builds it uses for ``--sanitize``."""

import sys

import pytest
import torch

from wavegen.generate.native import check

from helpers import native_or_skip


def test_the_native_engine_agrees_with_the_python_references():
    native = native_or_skip()
    assert check.run(native.load()) == []


def test_a_mismatch_is_one_line_naming_the_case_and_fails_the_check(monkeypatch, capsys):
    native_or_skip()
    case = check.Case("k2", False, "fp32", 1)

    def perturbed(model, precision):
        with torch.no_grad():
            model.head[3].bias += 0.01  # the engine packed the weights before: only the reference moves
        return model

    monkeypatch.setattr(check, "cases", lambda: [case])
    monkeypatch.setattr(check, "reference_for", perturbed)
    assert check.main([]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "native check: fp32 k2 unconditioned batch 1: teacher-forced logits differ from the reference by"
    )


def test_wavenet_cpp_names_the_compile_line_build_runs():
    from wavegen.generate import native

    header = native.SOURCE.read_text().split("#include")[0]
    assert f"g++ {' '.join(native.FLAGS)} -o " in header


FAKE_COMPILER = """#!{python}
import sys
args = sys.argv[1:]
if "-o" in args:  # a build: the flags it was given, as the "library"
    with open(args[args.index("-o") + 1], "w") as out:
        out.write(" ".join(args))
else:
    print("fake c++ 1.0")
"""


def test_a_variant_is_built_beside_the_normal_library_never_over_it(monkeypatch, tmp_path):
    compiler = tmp_path / "fake-c++"
    compiler.write_text(FAKE_COMPILER.format(python=sys.executable))
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("WAVEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WAVEGEN_NATIVE_FLAGS", raising=False)
    from wavegen.generate.native import toolchain

    normal = toolchain.build()
    variant = toolchain.build(extra=check.SANITIZE_FLAGS, variant="sanitize")
    assert normal.parent == tmp_path / "cache" and variant.parent == tmp_path / "cache" / "sanitize"
    assert "-fsanitize" not in normal.read_text() and normal.name != variant.name
    assert variant.read_text().startswith(" ".join(toolchain.FLAGS + check.SANITIZE_FLAGS) + " -o ")
    assert toolchain.build() == normal and list((tmp_path / "cache").glob("*.so")) == [normal]
    with pytest.raises(ValueError, match="variant"):
        toolchain.build(extra=["-O1"])
