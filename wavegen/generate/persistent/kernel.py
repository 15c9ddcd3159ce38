"""The persistent sampling kernel (Triton): every layer, the head and the sampling of many samples
in one launch, the weights held on chip for the whole launch.

One stream's next sample needs every layer in turn, so the work of a sample is a chain, and a
GPU runs it fast only if no launch and no trip to the host sits between two links. The kernel
spreads the network over programs (one per streaming multiprocessor), each holding its slice of
the weights in registers from the first sample of a launch to the last:

    program              holds                                     reads                 writes
    layer l, slice q     conv rows of gate channels q·GQ..+GQ,      layer l-1's block    block l: h_l (q = 0),
      (l·Q + q)          residual and skip columns of them          (or the logits)      its residual part,
                                                                                         its skip part
    head 1, slice h      W1 columns of skip channels h·SQ..+SQ      every skip part      its part of W1·relu(skip)
    head 2, slice j      W2 rows of classes j·CQ..+CQ               every head-1 part    logits j·CQ..+CQ

    block l (Q+1 rows):  [ h_l | part(l, 0) | ... | part(l, Q-1) ],  h_{l+1} = the sum of its rows

Layer 0's programs also draw the sample: the previous step's logits → float64 inverse CDF with
the stream's uniform (``engine.sample_codes``'s definition) → the code → the input embedding.
Every layer-0 program draws the same code from the same numbers, so none waits for another.

Programs pass data through global memory as 64-bit words, the value's float32 bits in the low
half and the step's tag in the high half (NCCL's "LL" protocol): a reader polls the words it needs
until every tag is the step's, so a word is its own ready flag and no fence or counter is needed.
A buffer is written again only after its readers have read it: the chain of one step runs
through every program before the next step's first write. Each layer program keeps its own copy
of the layer's ring of past inputs (the x(t-d) taps), so rings never cross programs.

A launch of ``steps`` steps: step n first draws the code of the step before it (from the logits
it left, which may be the previous launch's), then computes its own logits. The last logits of a
generation are drawn by a launch of 0 steps with ``tail`` 1. Programs run concurrently on a GPU
(the engine launches no more than the GPU has multiprocessors); under Triton's interpreter
(``TRITON_INTERPRET=1``) they run one after another in program order, which is a valid order for
a launch of one step: every program reads only what programs before it wrote. A poll that waits
longer than ``limit`` tries sets ``error`` instead of hanging.
"""

import triton
import triton.language as tl


@triton.jit
def _words(x, tag):
    """float32 values → 64-bit words carrying ``tag``."""
    bits = x.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
    return (tag.to(tl.int64) << 32) | bits


@triton.jit
def _poll(ptrs, mask, tag, limit, error):
    """The float32 values of the words at ``ptrs`` once every tag is ``tag`` (masked: 0.0)."""
    want = tag.to(tl.int64)
    words = tl.load(ptrs, mask=mask, other=want << 32, volatile=True)
    ready = tl.min(((words >> 32) == want).to(tl.int32))
    tries = 0
    while (ready == 0) & (tries < limit):
        words = tl.load(ptrs, mask=mask, other=want << 32, volatile=True)
        ready = tl.min(((words >> 32) == want).to(tl.int32))
        tries += 1
    if ready == 0:
        tl.store(error, 1)
    return (words & 0xFFFFFFFF).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _matvec(x, w):
    """x (BB, K) · w (N, K)ᵀ → (BB, N)."""
    return tl.sum(x[:, None, :] * w[None, :, :], axis=2)


@triton.jit
def _draw(logits_w, tag, temps, uniforms, n, n_classes, limit, error, BB: tl.constexpr, CP: tl.constexpr):
    """The code of each stream from the logits of the step tagged ``tag``: (BB,) int32."""
    b, c = tl.arange(0, BB), tl.arange(0, CP)
    lg = _poll(logits_w + b[:, None] * CP + c[None, :], c[None, :] < CP, tag, limit, error).to(tl.float64)
    lg = tl.where(c[None, :] < n_classes, lg, float("-inf"))
    temp = tl.load(temps + b)
    e = tl.exp((lg - tl.max(lg, axis=1)[:, None]) / temp[:, None])  # (BB, CP) float64
    cdf = tl.cumsum(e, axis=1)
    target = tl.load(uniforms + n * BB + b) * tl.max(cdf, axis=1)  # the running sum's last value
    code = tl.sum((cdf < target[:, None]).to(tl.int32), axis=1)
    return tl.minimum(code, n_classes - 1)


@triton.jit
def _layer(pid, steps, tail, t0, tag0, first_step, forced, n_forced, temps, uniforms, codes_out, out_stride,
           conv_past, conv_now, conv_bias, res_w, skip_w, res_bias, skip_bias, dilations, ring, ring_offsets,
           code_ring, in_tables, in_bias, in_offsets, k_in, terms, term_step, n_streams, n_gate, n_classes,
           blocks, skips, logits_w, limit, error, kernel_taps,
           Q: tl.constexpr, BB: tl.constexpr, RP: tl.constexpr, GQ: tl.constexpr, PP: tl.constexpr,
           SP: tl.constexpr, CP: tl.constexpr, KP: tl.constexpr, Q1: tl.constexpr, HAS_TERMS: tl.constexpr):  # fmt: skip
    layer, q = pid // Q, pid % Q
    b, r, g, p = tl.arange(0, BB), tl.arange(0, RP), tl.arange(0, GQ), tl.arange(0, PP)
    # This program's weights, held for the whole launch.
    wt_past = tl.load(conv_past + ((pid * 2 + 0) * GQ + g[:, None]) * PP + p[None, :])  # (GQ, PP) tanh rows
    ws_past = tl.load(conv_past + ((pid * 2 + 1) * GQ + g[:, None]) * PP + p[None, :])  # sigmoid rows
    wt_now = tl.load(conv_now + ((pid * 2 + 0) * GQ + g[:, None]) * RP + r[None, :])  # (GQ, RP)
    ws_now = tl.load(conv_now + ((pid * 2 + 1) * GQ + g[:, None]) * RP + r[None, :])
    bt, bs = tl.load(conv_bias + (pid * 2 + 0) * GQ + g), tl.load(conv_bias + (pid * 2 + 1) * GQ + g)
    w_res = tl.load(res_w + (pid * RP + r[:, None]) * GQ + g[None, :])  # (RP, GQ)
    s = tl.arange(0, SP)
    w_skip = tl.load(skip_w + (pid * SP + s[:, None]) * GQ + g[None, :])  # (SP, GQ)
    b_res, b_skip = tl.load(res_bias + pid * RP + r), tl.load(skip_bias + pid * SP + s)
    dilation = tl.load(dilations + layer)
    ring_len = (kernel_taps - 1) * dilation
    my_ring = ring + tl.load(ring_offsets + pid)
    tap, channel = p // RP, p % RP  # the past vector: [x(t-(k-1)d) | ... | x(t-d)]
    in_past = tap < kernel_taps - 1
    gate = q * GQ + g
    gate_ok = (gate < n_gate)[None, :] & (b < n_streams)[:, None]
    k, rows = tl.arange(0, KP), tl.arange(0, Q1)
    for n in range(steps + tail):
        t, tag = t0 + n, tag0 + n
        tl.debug_barrier()  # the ring write of the step before is done
        # The x(t-d) taps first: they are known before the step's input is (off the chain).
        slot = (t - (kernel_taps - 1 - tap) * dilation) % ring_len
        past = tl.load(
            my_ring + (slot[None, :] * BB + b[:, None]) * RP + channel[None, :], mask=in_past[None, :], other=0.0
        )
        a_t = bt[None, :] + _matvec(past, wt_past)  # (BB, GQ)
        a_s = bs[None, :] + _matvec(past, ws_past)
        if HAS_TERMS:
            if n < steps:
                at_term = terms + n * term_step + (layer * n_streams + b[:, None]) * (2 * n_gate) + gate[None, :]
                a_t += tl.load(at_term, mask=gate_ok, other=0.0)
                a_s += tl.load(at_term + n_gate, mask=gate_ok, other=0.0)
        if layer == 0:
            if first_step + n >= 1:  # draw the code of the step before (time t - 1)
                code = _draw(logits_w, tag - 1, temps, uniforms, n, n_classes, limit, error, BB, CP)
                code = tl.where(n_forced > 0, tl.load(forced + b), code)
                tl.store(code_ring + (q * k_in + (t - 1) % k_in) * BB + b, code)
                if q == 0:
                    tl.store(codes_out + b * out_stride + n, code)
                tl.debug_barrier()
        if n < steps:
            if layer == 0:  # the input layer: a table row per tap (type A: every offset >= 1)
                off = tl.load(in_offsets + k, mask=k < k_in, other=1)
                tap_codes = tl.load(code_ring + (q * k_in + (t - off[:, None]) % k_in) * BB + b[None, :])  # (KP, BB)
                rows_in = in_tables + ((k[:, None, None] * CP + tap_codes[:, :, None]) * RP + r[None, None, :])
                h = tl.load(in_bias + r)[None, :] + tl.sum(
                    tl.load(rows_in, mask=(k < k_in)[:, None, None], other=0.0), 0
                )
            else:  # h_l = h_{l-1} + the residual parts of layer l-1
                block = blocks + ((layer - 1) * Q1 + rows[:, None, None]) * BB * RP + b[None, :, None] * RP
                h = tl.sum(_poll(block + r[None, None, :], (rows < Q + 1)[:, None, None], tag, limit, error), 0)
            tl.debug_barrier()  # every ring read above is done before the write below
            tl.store(my_ring + ((t % ring_len) * BB + b[:, None]) * RP + r[None, :], h)
            if q == 0:
                tl.store(blocks + (layer * Q1 * BB + b[:, None]) * RP + r[None, :], _words(h, tag))
            z = tl.sigmoid(a_s + _matvec(h, ws_now)) * _tanh(a_t + _matvec(h, wt_now))  # (BB, GQ)
            part = b_res[None, :] + _matvec(z, w_res)  # (BB, RP)
            tl.store(blocks + ((layer * Q1 + 1 + q) * BB + b[:, None]) * RP + r[None, :], _words(part, tag))
            skip = b_skip[None, :] + _matvec(z, w_skip)  # (BB, SP)
            tl.store(skips + (pid * BB + b[:, None]) * SP + s[None, :], _words(skip, tag))


@triton.jit
def _head1(h, steps, tag0, skips, w1, y1, n_parts, limit, error,
           BB: tl.constexpr, SP: tl.constexpr, SQ: tl.constexpr, AP: tl.constexpr, LQP: tl.constexpr):  # fmt: skip
    """relu(Σ skip parts) of skip channels h·SQ..+SQ → its part of W1·relu(skip) (no bias)."""
    b, s, a, p = tl.arange(0, BB), tl.arange(0, SQ), tl.arange(0, AP), tl.arange(0, LQP)
    w = tl.load(w1 + (h * AP + a[:, None]) * SQ + s[None, :])  # (AP, SQ)
    ptrs = skips + ((p[:, None, None] * BB + b[None, :, None]) * SP + h * SQ + s[None, None, :])
    for n in range(steps):
        tag = tag0 + n
        skip = tl.sum(_poll(ptrs, (p < n_parts)[:, None, None], tag, limit, error), 0)  # (BB, SQ)
        y = _matvec(tl.maximum(skip, 0.0), w)  # (BB, AP)
        tl.store(y1 + (h * BB + b[:, None]) * AP + a[None, :], _words(y, tag))


@triton.jit
def _head2(j, steps, tag0, y1, b1, w2, b2, logits_w, n_parts, limit, error,
           BB: tl.constexpr, AP: tl.constexpr, CQ: tl.constexpr, CP: tl.constexpr, H1P: tl.constexpr):  # fmt: skip
    """relu(b1 + Σ head-1 parts) → logits of classes j·CQ..+CQ."""
    b, a, c, p = tl.arange(0, BB), tl.arange(0, AP), tl.arange(0, CQ), tl.arange(0, H1P)
    w = tl.load(w2 + (j * CQ + c[:, None]) * AP + a[None, :])  # (CQ, AP)
    bias1, bias2 = tl.load(b1 + a), tl.load(b2 + j * CQ + c)
    ptrs = y1 + ((p[:, None, None] * BB + b[None, :, None]) * AP + a[None, None, :])
    for n in range(steps):
        tag = tag0 + n
        y = tl.maximum(bias1[None, :] + tl.sum(_poll(ptrs, (p < n_parts)[:, None, None], tag, limit, error), 0), 0.0)
        logits = bias2[None, :] + _matvec(y, w)  # (BB, CQ)
        tl.store(logits_w + b[:, None] * CP + j * CQ + c[None, :], _words(logits, tag))


# Numbers that change from launch to launch: one compiled kernel for all of them (Triton would
# otherwise compile another for the values 1 and multiples of 16).
@triton.jit(
    do_not_specialize=["steps", "tail", "t0", "tag0", "first_step", "n_forced", "out_stride", "term_step", "n_streams"]
)
def persistent_steps(steps, tail, t0, tag0, first_step, forced, n_forced, temps, uniforms, codes_out, out_stride,
                     conv_past, conv_now, conv_bias, res_w, skip_w, res_bias, skip_bias, dilations, ring, ring_offsets,
                     code_ring, in_tables, in_bias, in_offsets, k_in, terms, term_step, n_streams, n_gate, n_classes,
                     blocks, skips, y1, w1, b1, w2, b2, logits_w, n_layers, limit, error, kernel_taps,
                     Q: tl.constexpr, H1: tl.constexpr, BB: tl.constexpr, RP: tl.constexpr, GQ: tl.constexpr,
                     PP: tl.constexpr, SP: tl.constexpr, SQ: tl.constexpr, AP: tl.constexpr, CP: tl.constexpr,
                     CQ: tl.constexpr, KP: tl.constexpr, Q1: tl.constexpr, LQP: tl.constexpr, H1P: tl.constexpr,
                     HAS_TERMS: tl.constexpr):  # fmt: skip
    """``steps`` steps of every stream from time ``t0`` (tags ``tag0``..), plus with ``tail`` the
    draw of the last logits; ``first_step``: the generation step of step 0 (no draw before step 0
    of a generation). Grid: n_layers·Q + H1 + CP/CQ programs."""
    pid = tl.program_id(0)
    n_parts = n_layers * Q
    if pid < n_parts:
        _layer(pid, steps, tail, t0, tag0, first_step, forced, n_forced, temps, uniforms, codes_out, out_stride,
               conv_past, conv_now, conv_bias, res_w, skip_w, res_bias, skip_bias, dilations, ring, ring_offsets,
               code_ring, in_tables, in_bias, in_offsets, k_in, terms, term_step, n_streams, n_gate, n_classes,
               blocks, skips, logits_w, limit, error, kernel_taps,
               Q, BB, RP, GQ, PP, SP, CP, KP, Q1, HAS_TERMS)  # fmt: skip
    elif pid < n_parts + H1:
        _head1(pid - n_parts, steps, tag0, skips, w1, y1, n_parts, limit, error, BB, SP, SQ, AP, LQP)
    else:
        _head2(pid - n_parts - H1, steps, tag0, y1, b1, w2, b2, logits_w, H1, limit, error, BB, AP, CQ, CP, H1P)
