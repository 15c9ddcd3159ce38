"""wavegen: a WaveNet-style raw-audio generator (µ-law, causal dilated convolutions, fast sampling).

The package import is kept light; import the modules you need (``wavegen.model``,
``wavegen.sampling``, ``wavegen.train``...) directly.
"""
__version__ = "0.1.0"
