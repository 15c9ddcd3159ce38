"""A run folder's rules: where its checkpoints are, which one generates (``pick_checkpoint``),
``RUN/log.csv``, and what a killed run leaves behind. Wherever a checkpoint is taken, an exported
model folder (``wavegen export``: ``MODEL_WEIGHTS`` and ``MODEL_CONFIG``) is taken too.

``log.csv`` has one row per logged step (``LOG_FIELDS``); it is what ``wavegen report`` reads
and the complete record of a run (TensorBoard is a view of it). A run resumed after a kill
first drops the rows logged after its checkpoint (``resume_log``) and the temporary files of
writes the kill interrupted (``clear_leftovers``), so the resumed run's files read as if it had
never stopped.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .errors import CheckpointError, ConfigError, WriteError
from .files import atomic_write_text, reason
from .pretrained import find as shipped_model
from .pretrained import is_name as is_shipped

MODEL_WEIGHTS, MODEL_CONFIG, MODEL_CARD = "model.safetensors", "config.json", "README.md"  # an exported model
LOG_FIELDS = ["step", "train_bits", "val_bits", "lr", "grad_norm", "samples_per_s", "elapsed_s", "skipped"]


def append_row(path: Path, row: dict) -> None:
    """Append one row to ``log.csv`` (its header first when the file is new)."""
    new = not path.is_file()
    try:
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
    except OSError as exc:  # the error from a write names no file
        raise WriteError(path, reason(exc), "training stopped") from None  # (train says what is kept)


def resume_log(path: Path, step: int) -> int:
    """Drop the log rows after ``step``, the checkpoint a run resumes from: a killed run logged
    them, and the resumed one logs them again. A row cut short by the kill goes too, and an
    older log gains the columns it lacks. Returns the number of rows dropped."""
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):  # the last append did not finish
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    rows = list(reader)
    kept = [row for row in rows if (logged := _logged_step(row)) is not None and logged <= step]
    if len(kept) == len(rows) and len(lines) == len(text.splitlines()) and reader.fieldnames == LOG_FIELDS:
        return 0
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_text(path, table.getvalue())
    return len(rows) - len(kept)


def _logged_step(row: dict) -> int | None:
    try:
        return int(row["step"])
    except (KeyError, TypeError, ValueError):
        return None


def clear_leftovers(run: Path) -> list[Path]:
    """Remove the temporary files of writes a kill interrupted (``atomic_open`` names them
    ``.NAME.XXXXXXXX.tmp``); they are never read, and a checkpoint's can be large."""
    written = {
        run / "checkpoints": ("latest.pt", "best.pt"),
        run: ("config.toml", "log.csv"),
        run / "samples": ("step*",),
    }
    found = sorted(
        stray for folder, names in written.items() for name in names for stray in folder.glob(f".{name}.*.tmp")
    )
    for path in found:
        path.unlink(missing_ok=True)
    return found


def newest_run(runs: Path = Path("runs")) -> Path:
    """The run under ``runs/`` whose latest checkpoint was written most recently."""
    candidates = runs_in(Path(runs))
    if not candidates:
        raise CheckpointError(f"{runs}: no trained runs found (run `wavegen train` first, or pass --run/--checkpoint)")
    return candidates[0]


def runs_in(folder: Path) -> list[Path]:
    """The runs directly under ``folder`` that have a latest checkpoint, newest first."""
    found = [p.parent.parent for p in Path(folder).glob("*/checkpoints/latest.pt")]
    return sorted(found, key=lambda run: checkpoint_paths(run)["latest"].stat().st_mtime, reverse=True)


def checkpoint_paths(run: Path) -> dict[str, Path]:
    """Where a run keeps its checkpoints: ``latest`` (the resume point) and ``best``."""
    return {"latest": run / "checkpoints" / "latest.pt", "best": run / "checkpoints" / "best.pt"}


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is an exported model folder (it holds ``MODEL_WEIGHTS``)."""
    return (Path(path) / MODEL_WEIGHTS).is_file()


def model_name(checkpoint: Path) -> str:
    """What a model is called in output names: an exported folder's own name, else the run's
    (``RUN/checkpoints/best.pt``); "model" when neither has one."""
    where = Path(checkpoint).resolve()
    return (where.name if is_model_folder(where) else where.parent.parent.name) or "model"


def run_folder(run: Path) -> Path:
    """``run`` (a ``--run`` as given) when it is a run folder: one with ``checkpoints/`` or
    ``config.toml``. Otherwise a ``CheckpointError`` in the words every command shares: no such
    run folder, a file (a checkpoint file is pointed to ``--checkpoint``), a folder of runs
    (its runs named, newest first), or a folder that is not a run."""
    run = Path(run)
    if not run.exists():
        raise CheckpointError(f"{run}: no such run folder (train one: wavegen train --run {run})")
    if not run.is_dir():
        raise CheckpointError(
            f"{run}: --run is a file, not a run folder"
            + ("; give a checkpoint file with --checkpoint" if run.suffix == ".pt" else "")
        )
    if (run / "checkpoints").is_dir() or (run / "config.toml").is_file():
        return run
    inside = runs_in(run)
    if inside:
        names = ", ".join(str(r) for r in inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
        raise CheckpointError(f"{run}: a folder of runs, not a run; give one with --run (newest first): {names}")
    raise CheckpointError(
        f"{run}: not a run folder (no checkpoints/ or config.toml; train one: wavegen train --run {run})"
    )


def pick_checkpoint(run: Path | None = None, checkpoint: Path | None = None) -> Path:
    """``--checkpoint`` as given; else the run's best checkpoint (lowest validation loss), or
    its latest when it has no validation data; the run defaults to the newest under ``runs/``.
    An exported model folder, given as either, is returned as it is; a run that is the name of a
    shipped model (``pretrained``) and no path is that model's folder."""
    if checkpoint is not None and run is not None:  # one of them would be ignored
        raise ConfigError(f"--run {run} and --checkpoint {checkpoint}: give one of them")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir() and not is_model_folder(checkpoint):
            raise CheckpointError(
                f"{checkpoint}: --checkpoint is a folder, not a file nor an exported model (no {MODEL_WEIGHTS}); "
                "give a checkpoint file (RUN/checkpoints/best.pt), an exported model folder, or the run folder with --run"
            )
        return checkpoint
    if run is not None and is_shipped(run):  # a model that ships with wavegen
        return shipped_model(str(run))
    if run is not None and is_model_folder(Path(run)):
        return Path(run)
    run = run_folder(run) if run is not None else newest_run()
    paths = checkpoint_paths(run)
    for which in ("best", "latest"):
        if paths[which].is_file():
            return paths[which]
    raise CheckpointError(f"{run}: no checkpoints in {run / 'checkpoints'} (train it first: wavegen train --run {run})")


def given_path(source: object, what: str = "source") -> Path | None:
    """``source`` (a path given from a program: str, Path or None) as a Path; anything else is a
    ``ConfigError`` naming ``what``, not a TypeError from deep inside."""
    if source is not None and not isinstance(source, (str, Path)):
        raise ConfigError(f"{what} must be a path or None, got {type(source).__name__} {source!r}")
    return None if source is None else Path(source)
