"""Recipes: where a name is found (./recipes, then the recipes shipped in the package), and how a
recipe resolves (``extends``, then its own values on top), checked like every config."""

from __future__ import annotations

import importlib.resources
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .config import Config, validate
from .errors import ConfigError

RECIPE_PACKAGE = "wavegen.recipes"  # the repository's recipes/ folder, mapped in by the build


def shipped_recipes() -> Traversable | None:
    """The recipes that come with wavegen. From a source tree (a checkout run with PYTHONPATH, or
    installed editable) that is its recipes/ folder, read directly so that another install's
    mapping of ``wavegen.recipes`` never shadows the tree being run; otherwise the installed
    package ``wavegen.recipes``, through ``importlib.resources``."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "recipes").is_dir():
        return root / "recipes"
    try:
        return importlib.resources.files(RECIPE_PACKAGE)
    except ModuleNotFoundError:  # a partial install: say "none found" rather than crash
        return None


def recipe_dirs() -> list[Traversable]:
    """Where recipe names are looked up, in order: ./recipes, then the shipped recipes."""
    shipped = shipped_recipes()
    return [Path.cwd() / "recipes", *([shipped] if shipped is not None else [])]


def recipe_names() -> list[str]:
    """Every recipe name the lookup knows, sorted."""
    return sorted(
        {
            entry.name[: -len(".toml")]
            for folder in recipe_dirs()
            if folder.is_dir()
            for entry in folder.iterdir()
            if entry.name.endswith(".toml") and entry.is_file()
        }
    )


def _named(recipe: str) -> bool:
    """A bare name (looked up in the recipe folders) rather than a path to a file."""
    return not (recipe.endswith(".toml") or "/" in recipe)


def recipe_path(recipe: str) -> Traversable:
    """Resolve a recipe given as a path or as a name in ``recipes/``."""
    if not _named(recipe):
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"{recipe}: recipe file not found")
        return path
    for folder in recipe_dirs():
        candidate = folder.joinpath(f"{recipe}.toml")
        if candidate.is_file():
            return candidate
    raise ConfigError(f"unknown recipe '{recipe}' (known: {', '.join(recipe_names()) or 'none found'})")


def _base_path(base: Any, path: Traversable) -> Traversable:
    """The recipe that ``extends = base`` in ``path`` names: a file path is relative to the
    extending recipe's folder; a name is looked up first beside it (so a shipped recipe always
    extends a shipped one, whatever ./recipes holds), then as ``--recipe`` would look it up."""
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: 'extends' must be a recipe name or file, got {base!r}")
    folder = getattr(path, "parent", None)
    beside = folder.joinpath(base if not _named(base) else f"{base}.toml") if folder is not None else None
    if beside is not None and beside.is_file():
        return beside
    if not _named(base):
        raise ConfigError(f"{path}: extends '{base}', which is not a file")
    try:
        return recipe_path(base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: extends {exc}") from None


def _read_recipe(path: Traversable) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc})") from None


def _resolve(path: Traversable, chain: tuple[str, ...] = ()) -> Config:
    """The config a recipe file says: the recipe it extends (or the dataclass defaults) with the
    values it sets. ``chain`` holds the files already being resolved, to refuse a cycle."""
    name = str(path.resolve() if isinstance(path, Path) else path)  # one name per file, however reached
    if name in chain:
        raise ConfigError(f"{chain[0]}: 'extends' makes a cycle ({' → '.join((*chain, name))})")
    raw = _read_recipe(path)
    base = _resolve(_base_path(raw.pop("extends"), path), (*chain, name)) if "extends" in raw else None
    return Config.from_dict(raw, source=str(path), base=base)


def load_recipe(recipe: str) -> Config:
    """Read a recipe (name or path) on top of the recipe it extends, else the dataclass defaults.
    Raises ``ConfigError`` for an unknown or broken recipe."""
    if not isinstance(recipe, (str, Path)):
        raise ConfigError(f"recipe must be a name or a path, got {type(recipe).__name__} {recipe!r}")
    config = _resolve(recipe_path(str(recipe)))
    validate(config)
    return config
