"""The persistent kernel compiled for a Hopper GPU (sm_90, H100/H200) on any machine: Triton's
compiler and the ptxas it ships need no GPU. What this catches without one: a kernel that does
not compile for the GPU (the interpreter runs code no GPU would take), and weights that do not
stay in registers (ptxas spills them to local memory, read again at every step)."""

import json
import re
import subprocess
import sys

import pytest

from helpers import ENV

triton = pytest.importorskip("triton", reason="the persistent engine needs Triton")

# The ref shape (residual 64, gate 128, skip 256, 256 classes) as the engine launches it: four
# programs per layer, eight for the head's first 1×1, four for its second.
COMPILE = r"""
import json, pathlib, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from wavegen.generate.persistent import kernel

streams, conditioned = int(sys.argv[1]), sys.argv[2] == "1"
fn = kernel.persistent_steps
const = dict(Q=4, H1=8, BB=streams, RP=64, GQ=32, PP=64, SP=256, SQ=32, AP=256, CP=256, CQ=64, KP=2,
             HAS_TERMS=conditioned)
kinds = {"*i32": "forced codes_out dilations code_ring in_offsets error", "*i64": "ring_offsets blocks skips y1 logits_w",
         "*fp64": "temps uniforms", "*fp32": "conv_past conv_now conv_bias res_w skip_w res_bias skip_bias ring "
         "in_tables in_bias w1 b1 w2 b2 terms"}
kind_of = {name: kind for kind, names in kinds.items() for name in names.split()}
signature = {a: "constexpr" if a in const else kind_of.get(a, "i32") for a in fn.arg_names}
constexprs = {(fn.arg_names.index(k),): v for k, v in const.items()}
compiled = triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": 8})
cubin = pathlib.Path(tempfile.mkdtemp()) / "kernel.cubin"
cubin.write_bytes(compiled.asm["cubin"])
tool = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
usage = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True).stdout
print(json.dumps({"usage": usage, "ptx": compiled.asm["ptx"].count("ld.volatile.global.b64")}))
"""


def compiled(streams: int, conditioned: bool) -> dict:
    env = {**ENV, "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE, str(streams), str(int(conditioned))],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "cuobjdump" in done.stderr and "No such file" in done.stderr:
        pytest.skip("this Triton ships no NVIDIA tools")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    found = re.search(r"REG:(\d+) STACK:(\d+)", result["usage"])
    return {"registers": int(found[1]), "stack": int(found[2]), "polls": result["ptx"]}


def test_the_kernel_compiles_for_hopper_with_one_streams_weights_in_registers():
    one = compiled(1, conditioned=False)
    assert one["stack"] == 0 and one["registers"] <= 255  # nothing spilled to local memory
    assert one["polls"] > 0  # the hand-offs are volatile 64-bit loads (value and tag in one word)


def test_the_kernel_compiles_for_hopper_for_eight_conditioned_streams():
    eight = compiled(8, conditioned=True)
    assert eight["stack"] <= 256  # a few spilled registers at most, not the weights
