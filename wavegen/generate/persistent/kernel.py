"""The persistent sampling kernel (Triton): every layer, the head and the sampling of many samples
in one launch, the weights held on chip for the whole launch.

One stream's next sample needs every layer in turn, so the work of a sample is a chain, and a
GPU runs it fast only if no launch and no trip to the host sits between two links. The kernel
spreads the network over programs (one per streaming multiprocessor), each holding its slice of
the weights in registers from the first sample of a launch to the last:

    program              holds                                  reads                    writes
    layer l, slice q     conv rows of gate channels q·GQ..+GQ,   layer l-1's block        block l: h_l (q = 0) and
      (l·Q + q)          residual and skip columns of them       (layer 0: the logits),   its residual part; its
                                                                 skip sum (l-1, q)        skip sum (l, q)
    head 1, slice h      W1 columns of skip channels h·SQ..+SQ   skip sums (L-2, ·),      its part of W1·relu(skip)
                                                                 skip outputs (L-1, ·)
    head 2, slice j      W2 rows of classes j·CQ..+CQ            every head-1 part        logits j·CQ..+CQ

    block l (Q+1 rows):  [ h_l | part(l, 0) | ... | part(l, Q-1) ],  h_{l+1} = the sum of its rows
    skip sum (l, q):     skip sum (l-1, q) + layer l's skip output of gate slice q (off the chain:
                         layer l-1's is long written when layer l asks for it); the last layer
                         leaves its own out, and head 1 adds both

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
def _sum_words(ptrs, stride, COUNT: tl.constexpr, want):
    """Σ_i (in order) of the values at ``ptrs + i·stride``, i < COUNT, and whether every tag is
    ``want``: one part in registers at a time, not all of them."""
    total = tl.zeros(ptrs.shape, tl.float32)
    ready = 1
    for i in tl.static_range(COUNT):
        words = tl.load(ptrs + i * stride, volatile=True)
        ready = ready & tl.min(((words >> 32) == want).to(tl.int32))
        total += (words & 0xFFFFFFFF).to(tl.int32).to(tl.float32, bitcast=True)
    return total, ready


@triton.jit
def _poll(ptrs, stride, COUNT: tl.constexpr, tag, limit, error):
    """``_sum_words`` once every word carries ``tag`` (read again until then, at most ``limit``
    times more; then ``error`` is set)."""
    want = tag.to(tl.int64)
    total, ready = _sum_words(ptrs, stride, COUNT, want)
    tries = 0
    while (ready == 0) & (tries < limit):
        total, ready = _sum_words(ptrs, stride, COUNT, want)
        tries += 1
    if ready == 0:
        tl.store(error, 1)
    return total


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _matvec(x, w, BB: tl.constexpr):
    """x (BB, K) · w (N, K)ᵀ → (BB, N), a stream at a time: a (BB, N, K) product of several
    streams would not fit in registers (ptxas spills it to local memory from 4 streams on)."""
    if BB == 1:
        return tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    streams = tl.arange(0, BB)[:, None]
    out = tl.zeros((BB, w.shape[0]), tl.float32)
    for i in tl.static_range(BB):
        row = tl.sum(tl.where(streams == i, x, 0.0), axis=0)  # (K,): stream i's row, exactly
        out = tl.where(streams == i, tl.sum(row[None, :] * w, axis=1)[None, :], out)
    return out


@triton.jit
def _draw(logits_w, tag, temps, uniforms, n, n_classes, limit, error, BB: tl.constexpr, CP: tl.constexpr):
    """The code of each stream from the logits of the step tagged ``tag``: (BB,) int32."""
    b, c = tl.arange(0, BB), tl.arange(0, CP)
    lg = _poll(logits_w + b[:, None] * CP + c[None, :], 0, 1, tag, limit, error).to(tl.float64)
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
           blocks, skips, logits_w, n_layers, limit, error, kernel_taps,
           Q: tl.constexpr, BB: tl.constexpr, RP: tl.constexpr, GQ: tl.constexpr, PP: tl.constexpr,
           SP: tl.constexpr, CP: tl.constexpr, KP: tl.constexpr, HAS_TERMS: tl.constexpr):  # fmt: skip
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
    k = tl.arange(0, KP)
    for n in range(steps + tail):
        t, tag = t0 + n, tag0 + n
        tl.debug_barrier()  # the ring write of the step before is done
        # The x(t-d) taps first: they are known before the step's input is (off the chain).
        slot = (t - (kernel_taps - 1 - tap) * dilation) % ring_len
        past = tl.load(
            my_ring + (slot[None, :] * BB + b[:, None]) * RP + channel[None, :], mask=in_past[None, :], other=0.0
        )
        a_t = bt[None, :] + _matvec(past, wt_past, BB)  # (BB, GQ)
        a_s = bs[None, :] + _matvec(past, ws_past, BB)
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
                block = blocks + ((layer - 1) * (Q + 1) * BB + b[:, None]) * RP + r[None, :]
                h = _poll(block, BB * RP, Q + 1, tag, limit, error)
            if q == 0:
                tl.store(blocks + (layer * (Q + 1) * BB + b[:, None]) * RP + r[None, :], _words(h, tag))
            z = tl.sigmoid(a_s + _matvec(h, ws_now, BB)) * _tanh(a_t + _matvec(h, wt_now, BB))  # (BB, GQ)
            part = b_res[None, :] + _matvec(z, w_res, BB)  # (BB, RP)
            tl.store(blocks + ((layer * (Q + 1) + 1 + q) * BB + b[:, None]) * RP + r[None, :], _words(part, tag))
            skip = b_skip[None, :] + _matvec(z, w_skip, BB)  # (BB, SP)
            my_skip = skips + (pid * BB + b[:, None]) * SP + s[None, :]
            if (layer > 0) & (layer < n_layers - 1):  # the last layer's goes to the head as it is
                skip += _poll(my_skip - Q * BB * SP, 0, 1, tag, limit, error)  # the skip sum of (l-1, q)
            tl.store(my_skip, _words(skip, tag))
            tl.debug_barrier()  # every ring read of this step is done before the write below
            tl.store(my_ring + ((t % ring_len) * BB + b[:, None]) * RP + r[None, :], h)


@triton.jit
def _head1(h, steps, tag0, skips, w1, y1, last, limit, error,
           Q: tl.constexpr, BB: tl.constexpr, SP: tl.constexpr, SQ: tl.constexpr, AP: tl.constexpr):  # fmt: skip
    """relu(skip) of skip channels h·SQ..+SQ, from the last layer's skip outputs and the skip sums
    of the layer before it → its part of W1·relu(skip) (no bias)."""
    b, s, a = tl.arange(0, BB), tl.arange(0, SQ), tl.arange(0, AP)
    w = tl.load(w1 + (h * AP + a[:, None]) * SQ + s[None, :])  # (AP, SQ)
    ptrs = skips + ((last * Q * BB + b[:, None]) * SP + h * SQ + s[None, :])  # (BB, SQ) of (L-1, 0)
    for n in range(steps):
        tag = tag0 + n
        skip = _poll(ptrs, BB * SP, Q, tag, limit, error)  # (BB, SQ): the last layer's outputs
        if last > 0:
            skip += _poll(ptrs - Q * BB * SP, BB * SP, Q, tag, limit, error)  # and the sums before it
        y = _matvec(tl.maximum(skip, 0.0), w, BB)  # (BB, AP)
        tl.store(y1 + (h * BB + b[:, None]) * AP + a[None, :], _words(y, tag))


@triton.jit
def _head2(j, steps, tag0, y1, b1, w2, b2, logits_w, limit, error,
           H1: tl.constexpr, BB: tl.constexpr, AP: tl.constexpr, CQ: tl.constexpr, CP: tl.constexpr):  # fmt: skip
    """relu(b1 + Σ head-1 parts) → logits of classes j·CQ..+CQ."""
    b, a, c = tl.arange(0, BB), tl.arange(0, AP), tl.arange(0, CQ)
    w = tl.load(w2 + (j * CQ + c[:, None]) * AP + a[None, :])  # (CQ, AP)
    bias1, bias2 = tl.load(b1 + a), tl.load(b2 + j * CQ + c)
    ptrs = y1 + (b[:, None] * AP + a[None, :])  # (BB, AP) of part 0
    for n in range(steps):
        tag = tag0 + n
        y = tl.maximum(bias1[None, :] + _poll(ptrs, BB * AP, H1, tag, limit, error), 0.0)
        logits = bias2[None, :] + _matvec(y, w, BB)  # (BB, CQ)
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
                     CQ: tl.constexpr, KP: tl.constexpr, HAS_TERMS: tl.constexpr):  # fmt: skip
    """``steps`` steps of every stream from time ``t0`` (tags ``tag0``..), plus with ``tail`` the
    draw of the last logits; ``first_step``: the generation step of step 0 (no draw before step 0
    of a generation). Grid: n_layers·Q + H1 + CP/CQ programs."""
    pid = tl.program_id(0)
    n_parts = n_layers * Q
    if pid < n_parts:
        _layer(pid, steps, tail, t0, tag0, first_step, forced, n_forced, temps, uniforms, codes_out, out_stride,
               conv_past, conv_now, conv_bias, res_w, skip_w, res_bias, skip_bias, dilations, ring, ring_offsets,
               code_ring, in_tables, in_bias, in_offsets, k_in, terms, term_step, n_streams, n_gate, n_classes,
               blocks, skips, logits_w, n_layers, limit, error, kernel_taps,
               Q, BB, RP, GQ, PP, SP, CP, KP, HAS_TERMS)  # fmt: skip
    elif pid < n_parts + H1:
        _head1(pid - n_parts, steps, tag0, skips, w1, y1, n_layers - 1, limit, error, Q, BB, SP, SQ, AP)
    else:
        _head2(pid - n_parts - H1, steps, tag0, y1, b1, w2, b2, logits_w, limit, error, H1, BB, AP, CQ, CP)
