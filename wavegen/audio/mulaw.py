"""µ-law companding between audio in [-1, 1] and integer class codes.

The quantiser is torchaudio's (ITU-T G.711 µ-law with µ = classes - 1); this module only fixes
the dtype conventions used everywhere else: codes are stored as ``uint8`` on disk and handled as
``int64`` tensors in the network.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

CLASSES = 256


SILENCE_CODE = 128  # encode(0.0): what "no sound" looks like to the network


def encode(audio: torch.Tensor | np.ndarray, classes: int = CLASSES) -> torch.Tensor:
    """Quantise audio in [-1, 1] (values outside are clipped) to int64 codes in [0, classes)."""
    x = torch.as_tensor(audio, dtype=torch.float32).clamp(-1.0, 1.0)
    return AF.mu_law_encoding(x, classes)


def decode(codes: torch.Tensor | np.ndarray, classes: int = CLASSES) -> torch.Tensor:
    """Map integer codes back to float32 audio in [-1, 1]."""
    c = torch.as_tensor(np.asarray(codes) if isinstance(codes, np.ndarray) else codes).long()
    return AF.mu_law_decoding(c, classes).float()


def encode_uint8(audio: np.ndarray) -> np.ndarray:
    """Quantise float audio to the uint8 codes that prepared data stores."""
    return encode(audio).to(torch.uint8).numpy()
