"""Engines kept between generations of one loaded model, so that a second ``generate`` or
``stream`` with the same options starts at once: no weights packed or quantised again, no
trial, and the start from silence already computed.

An engine holds one generation's state at a time, so a caller takes it for the length of a
generation (``take``) and gives it back after (``give_back``); a second generation that runs
meanwhile (two streams read side by side) builds an engine of its own. The model's weights
must not change while engines are kept (a loaded ``Model``'s do not).
"""

from __future__ import annotations

from ..model.network import WaveNet
from .choice import Chosen, choose
from .request import GenerationRequest

Key = tuple[str, str, str, int]  # the request's engine, device and precision, and the streams


class EngineCache:
    """The last engine built for each key, while no generation holds it."""

    def __init__(self) -> None:
        self.kept: dict[Key, Chosen] = {}

    def take(self, request: GenerationRequest, streams: int, model: WaveNet) -> Chosen:
        """The kept engine for ``request`` and ``streams``, or one ``choice.choose`` builds."""
        key = _key(request, streams)
        return self.kept.pop(key, None) or choose(request, streams, model)

    def give_back(self, request: GenerationRequest, streams: int, chosen: Chosen) -> None:
        """Keep ``chosen`` for the next generation with the same options."""
        self.kept[_key(request, streams)] = chosen


def _key(request: GenerationRequest, streams: int) -> Key:
    return request.engine, request.device, request.precision, streams
