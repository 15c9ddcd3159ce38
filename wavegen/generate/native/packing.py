"""Weight packing: the order and layout ``wavenet.cpp``'s Engine constructor reads (column
panels of 16, the conv panels interleaving filter and gate channels by 8), and the
conditioning terms in the conv panels' column order."""

from __future__ import annotations

import numpy as np
import torch

from ...model.network import WaveNet

PANEL = 16  # columns per packed panel (wavenet.cpp: kPanel)


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _panels(matrix: np.ndarray, rows: int | None = None) -> np.ndarray:
    """(K, N) -> (ceil(N/16), K', 16) column panels, zero-padded to K' = rows rows."""
    k, n = matrix.shape
    padded = np.zeros((rows or k, _ceil(n, PANEL)), np.float32)
    padded[:k, :n] = matrix
    return padded.reshape(padded.shape[0], -1, PANEL).transpose(1, 0, 2)


def _pad(vector: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[: len(vector)] = vector
    return out


def pack_terms(bias: torch.Tensor) -> torch.Tensor:
    """Conditioning terms (B, n, L, 2G) (n steps or frames) -> (B, n, L·2·G8) float32, contiguous,
    each layer's channels in the order of the conv panels (see ``pack``): [filter 8p..8p+7 |
    gate 8p..8p+7] for p = 0 .. G8/8 - 1, channels G .. G8 - 1 zero."""
    batch, steps, layers, channels = bias.shape
    gate = channels // 2
    g8 = _ceil(gate, 8)
    halves = bias.float().reshape(batch, steps, layers, 2, gate)
    if g8 != gate:
        halves = torch.nn.functional.pad(halves, (0, g8 - gate))
    panels = halves.reshape(batch, steps, layers, 2, g8 // 8, 8).transpose(3, 4)
    return panels.reshape(batch, steps, layers * 2 * g8).contiguous()


def pack(model: WaveNet) -> tuple[np.ndarray, np.ndarray]:
    """The shape array and the flat float32 weights for ``wg_create``."""
    c = model.config
    R, G, S, C = c.residual_channels, c.gate_channels, c.skip_channels, c.classes
    G8, R16, S16, C16 = _ceil(G, 8), _ceil(R, PANEL), _ceil(S, PANEL), _ceil(C, PANEL)

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    blocks: list[np.ndarray] = []
    w = np32(model.input.weight)  # (R, C, k_in); tap i reads t - (k_in - i)
    blocks += [w.transpose(2, 1, 0), np32(model.input.bias)]  # (k_in, C, R), (R)
    skip_bias = np.zeros(S16, np.float32)
    for block in model.blocks:
        cw = np32(block.conv.weight)  # (2G, R, k); tap i reads t - (k-1-i)·d
        k = cw.shape[2]
        conv = cw.transpose(2, 1, 0).reshape(k * R, 2 * G)  # rows: taps oldest first
        bias = np32(block.conv.bias)
        # Interleave filter and gate channels by 8: panel p = [filter 8p..8p+7 | gate 8p..8p+7].
        both = np.zeros((k * R, 2, G8), np.float32)
        both[:, 0, :G], both[:, 1, :G] = conv[:, :G], conv[:, G:]
        both_bias = np.zeros((2, G8), np.float32)
        both_bias[0, :G], both_bias[1, :G] = bias[:G], bias[G:]
        interleaved = both.reshape(k * R, 2, G8 // 8, 8).transpose(0, 2, 1, 3).reshape(k * R, 2 * G8)
        blocks += [
            _panels(interleaved),
            both_bias.reshape(2, G8 // 8, 8).transpose(1, 0, 2),
            _panels(np32(block.residual.weight[:, :, 0]).T, rows=G8),  # (G8, R16)
            _pad(np32(block.residual.bias), R16),
            _panels(np32(block.skip.weight[:, :, 0]).T, rows=G8),  # (G8, S16)
        ]
        skip_bias[:S] += np32(block.skip.bias)
    h1, h2 = model.head[1], model.head[3]
    blocks += [
        skip_bias,
        _panels(np32(h1.weight[:, :, 0]).T, rows=S16),
        _pad(np32(h1.bias), S16),
        _panels(np32(h2.weight[:, :, 0]).T, rows=S16),
        _pad(np32(h2.bias), C16),
    ]
    flat = [np.ascontiguousarray(b, np.float32).ravel() for b in blocks]
    flat = [np.concatenate([b, np.zeros(_ceil(b.size, PANEL) - b.size, np.float32)]) for b in flat]
    shape = [C, R, G, S, c.kernel_size, c.input_kernel_size, len(model.blocks), *model.dilations]
    return np.array(shape, np.int64), np.concatenate(flat)


def _gate_order(columns: np.ndarray, gate: int) -> np.ndarray:
    """(..., 2G) filter then gate columns → (..., 2·G8) in the conv panels' order: panel p =
    [filter 8p..8p+7 | gate 8p..8p+7], channels G .. G8 - 1 zero."""
    g8 = _ceil(gate, 8)
    both = np.zeros((*columns.shape[:-1], 2, g8), columns.dtype)
    both[..., 0, :gate], both[..., 1, :gate] = columns[..., :gate], columns[..., gate:]
    lead = columns.shape[:-1]
    return both.reshape(*lead, 2, g8 // 8, 8).swapaxes(-3, -2).reshape(*lead, 2 * g8)


def _int8_panels(q: torch.Tensor | np.ndarray, rows: int) -> np.ndarray:
    """Integer values (K, N) → int8 panels of 16 columns, rows in groups of 4 (wavenet.cpp's
    QPanels): (ceil(N/16), rows/4, 16, 4), zero-padded to ``rows`` rows."""
    q = np.asarray(q)
    k, n = q.shape
    padded = np.zeros((rows, _ceil(n, PANEL)), np.int8)
    padded[:k, :n] = q
    return padded.reshape(rows // 4, 4, -1, PANEL).transpose(2, 0, 3, 1)


def pack_int8(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shape array, the flat float32 blocks and the flat int8 blocks for ``wg_create`` at
    int8, from an ``int8.Int8WaveNet``: the input table, biases and scales as floats, each
    matrix as int8 panels (the conv one matrix per tap), in the order wavenet.cpp reads them."""
    plain, c = model.model, model.model.config
    R, G, S, C = c.residual_channels, c.gate_channels, c.skip_channels, c.classes
    G8, R16, S16, C16 = _ceil(G, 8), _ceil(R, PANEL), _ceil(S, PANEL), _ceil(C, PANEL)

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    floats: list[np.ndarray] = [np32(plain.input.weight).transpose(2, 1, 0), np32(plain.input.bias)]
    ints: list[np.ndarray] = []
    for block, (conv, res, skip) in zip(plain.blocks, model.blocks_q):
        floats += [
            _gate_order(np32(block.conv.bias), G),
            _gate_order(np32(conv[1]), G),
            _pad(np32(block.residual.bias), R16),
            _pad(np32(res[1]), R16),
            _pad(np32(skip[1]), S16),
        ]
        ints += [_int8_panels(_gate_order(np32(tap), G), R16) for tap in conv[0]]  # (R, 2G) per tap
        ints += [_int8_panels(np32(res[0]), G8), _int8_panels(np32(skip[0]), G8)]
    (q1, w1), (q2, w2) = model.head_q
    floats += [
        _pad(model.skip_bias.numpy(), S16),
        _pad(np32(plain.head[1].bias), S16),
        _pad(np32(w1), S16),
        _pad(np32(plain.head[3].bias), C16),
        _pad(np32(w2), C16),
    ]
    ints += [_int8_panels(np32(q1), S16), _int8_panels(np32(q2), S16)]
    flat = [np.ascontiguousarray(b, np.float32).ravel() for b in floats]
    flat = [np.concatenate([b, np.zeros(_ceil(b.size, PANEL) - b.size, np.float32)]) for b in flat]
    shape = [C, R, G, S, c.kernel_size, c.input_kernel_size, len(plain.blocks), *plain.dilations]
    return np.array(shape, np.int64), np.concatenate(flat), np.concatenate([b.ravel() for b in ints])


def term_width(model: WaveNet) -> int:
    """Floats per stream and step of packed conditioning terms: L·2·G8 (see ``pack_terms``)."""
    return len(model.blocks) * 2 * _ceil(model.config.gate_channels, 8)
