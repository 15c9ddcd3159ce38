"""The stack's layers: the causal convolution (type A and B), the gated activation, and the
residual block that joins them with its residual and skip 1×1 convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # one block's: see ResidualBlock


class GatedTanh(torch.autograd.Function):
    """``tanh(a) · sigmoid(b)`` of the two halves of (B, 2G, T) as one autograd node.

    Autograd of the plain expression keeps the same two outputs but runs four backward nodes
    and then concatenates the halves' gradients; here the backward writes both halves straight
    into one (B, 2G, T) buffer, with the same kernels (so the gradients are bit-identical).
    """

    @staticmethod
    def forward(ctx, pre: torch.Tensor) -> torch.Tensor:
        filt, gate = pre.chunk(2, dim=1)
        a, s = torch.tanh(filt), torch.sigmoid(gate)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        a, s = ctx.saved_tensors
        out = grad.new_empty(*a.shape[:1], 2 * a.shape[1], *a.shape[2:])
        g = a.shape[1]
        torch.ops.aten.tanh_backward.grad_input(grad * s, a, grad_input=out[:, :g])
        torch.ops.aten.sigmoid_backward.grad_input(grad * a, s, grad_input=out[:, g:])
        return out


def gated(pre: torch.Tensor) -> torch.Tensor:
    """The gated activation, (B, 2G, T) → (B, G, T)."""
    return GatedTanh.apply(pre)


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution that only looks back in time (left padding, nothing on the right).

    ``mask_type="B"`` lets output t see the input at t; ``"A"`` shifts the kernel one dilation
    further back, so output t never sees input t (used by the first layer, on the codes being
    predicted). Example with kernel 2, dilation 2, input x0..x3, pad p = 0:

        type B: pad (k-1)·d = 2     p  p  x0 x1 x2 x3     y[t] = w0·x[t-2] + w1·x[t]
                                    └──┼──┘
                                       y0 ...
        type A: pad k·d = 4, drop the last d outputs
                              p  p  p  p  x0 x1 x2 x3     y[t] = w0·x[t-4] + w1·x[t-2]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        mask_type: str = "B",
    ) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.mask_type = mask_type
        self.left_pad = kernel_size * dilation if mask_type == "A" else (kernel_size - 1) * dilation

    def tap_offsets(self) -> list[int]:
        """How far back in time ``weight[:, :, i]`` reads, for each tap i."""
        k, d = self.kernel_size[0], self.dilation[0]
        shift = 1 if self.mask_type == "A" else 0
        return [(k - 1 - i + shift) * d for i in range(k)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        length = x.shape[-1]
        return super().forward(F.pad(x, (self.left_pad, 0)))[..., :length]


class ResidualBlock(nn.Module):
    """Dilated causal conv → gated tanh·sigmoid → residual and skip 1×1.

    Its forward methods take the block's weights as ``layer_weights`` computes them for the
    whole stack at once (``weights``: conv (2G, R, k), conv bias (2G,), residual and skip 1×1
    one above the other (R + S, G, 1), their biases (R + S,)), or read them from the modules.
    """

    def __init__(self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = CausalConv1d(residual, 2 * gate, kernel_size, dilation, mask_type="B")
        self.residual = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def weights(self) -> Weights:
        """This block's weights, read from its modules (their parametrizations applied)."""
        return (
            self.conv.weight,
            self.conv.bias,
            torch.cat([self.residual.weight, self.skip.weight]),
            torch.cat([self.residual.bias, self.skip.bias]),
        )

    def forward(
        self,
        x: torch.Tensor,
        skip_from: int = 0,
        cond: torch.Tensor | None = None,
        weights: Weights | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (next block's input (B, R, T), skip contribution (B, S, T - skip_from)).

        ``cond`` (B, 2G, T or 1) is added to the conv's output before the gate: the paper's
        V·h term of global and local conditioning.
        """
        conv, conv_bias, out, out_bias = weights or self.weights()
        pre = F.conv1d(F.pad(x, (self.conv.left_pad, 0)), conv, conv_bias, dilation=self.dilation)  # (B, 2G, T)
        if cond is not None:
            pre = pre + cond
        z = gated(pre)  # (B, G, T)
        return self._outputs(x, z, z.shape[-1] - skip_from, out, out_bias)

    def forward_trimmed(
        self,
        x: torch.Tensor,
        keep: int,
        cond: torch.Tensor | None = None,
        last: bool = False,
        weights: Weights | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Unpadded: (next input (B, R, T - reach), skip of the last ``keep`` positions).

        ``x`` starts ``reach = (k-1)·d`` positions before the first output this block gives, so
        no padding is needed; ``cond`` is aligned with the output (its last positions are
        used). The last block's residual output is never read, so it is not computed.
        """
        conv, conv_bias, out, out_bias = weights or self.weights()
        reach = self.conv.left_pad
        pre = F.conv1d(x, conv, conv_bias, dilation=self.dilation)  # (B, 2G, T - reach)
        if cond is not None:
            pre = pre + (cond if cond.shape[-1] == 1 else cond[..., cond.shape[-1] - pre.shape[-1] :])
        z = gated(pre)
        if last:
            r = x.shape[1]
            return None, F.conv1d(z[..., z.shape[-1] - keep :], out[r:], out_bias[r:])
        return self._outputs(x[..., reach:], z, keep, out, out_bias)

    @staticmethod
    def _outputs(
        x: torch.Tensor, z: torch.Tensor, keep: int, out: torch.Tensor, out_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` + residual 1×1 of ``z`` (B, R, T), and the skip 1×1 of its last ``keep``
        positions (B, S, keep): one convolution for both where the skip covers every position."""
        r = x.shape[1]
        if keep == z.shape[-1]:
            residual, skip = F.conv1d(z, out, out_bias).split([r, out.shape[0] - r], dim=1)  # (B, R + S, T)
            return x + residual, skip
        return x + F.conv1d(z, out[:r], out_bias[:r]), F.conv1d(z[..., z.shape[-1] - keep :], out[r:], out_bias[r:])
