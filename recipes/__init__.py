"""The recipes that come with wavegen (``*.toml`` beside this file).

The build maps this folder into the installed package as ``wavegen.recipes`` (pyproject.toml,
``package-dir``), where ``wavegen.config`` reads them with ``importlib.resources``; this file makes
it a regular package, which an editable install needs to find it.
"""
