"""How ``wavegen bench`` shows its results: a table for people, one row per result as soon as it
is measured, or JSON lines for scripts; the columns of each benchmark."""

from __future__ import annotations

import json
from typing import Callable, Iterator


def print_results(results: Iterator[dict], echo: Callable[[str], None] = print) -> list[dict]:
    """One JSON object per line, each as soon as it is measured (``bench --json``)."""
    collected = []
    for result in results:
        echo(json.dumps(result))
        collected.append(result)
    return collected


def _number(spec: str) -> Callable[[object], str]:
    return lambda value: format(value, spec)


# (header, key, width, format): a result without the key shows "-"
SAMPLING_COLUMNS = [
    ("engine", "engine", 10, str),
    ("batch", "batch", 5, str),
    ("device", "device", 6, str),
    ("cond", "cond", 6, str),
    ("precision", "precision", 9, str),
    ("samples/s", "samples_per_s", 11, _number(",.0f")),
    ("× real time", "real_time_factor", 11, _number(".3f")),
    ("reset s", "reset_s", 7, _number(".3f")),
    ("loop samples/s", "loop_samples_per_s", 14, _number(",.0f")),
    ("max |Δlogit| vs fp32", "max_logit_diff_vs_fp32", 20, _number(".1e")),  # (JSON: also vs its precision's)
    ("same codes", "same_codes_as_reference", 10, lambda same: "yes" if same else "NO"),
    ("threads", "threads", 7, str),
    ("GFLOP/s", "arithmetic_gflops", 7, _number(".1f")),
    ("of peak", "sgemm_fraction", 7, _number(".1%")),
]


TRAINING_COLUMNS = [
    ("impl", "impl", 16, str),
    ("device", "device", 6, str),
    ("precision", "precision", 9, str),
    ("allocator", "allocator", 13, str),
    ("batch", "batch", 5, str),
    ("segment", "segment", 7, str),
    ("step s", "step_s", 8, _number(".4f")),
    ("samples/s", "samples_per_s", 11, _number(",.0f")),
    ("peak MB", "peak_memory_mb", 8, _number(",.1f")),
    ("ops/step", "ops_per_step", 8, _number(",.0f")),
    ("host reads", "host_reads_per_step", 10, _number(",.0f")),
    ("× plain", "speedup_vs_plain", 7, _number(".2f")),
    ("× plain same prec.", "speedup_vs_plain_same_precision", 18, _number(".2f")),
    ("× plain default", "speedup_vs_plain_default", 15, _number(".2f")),
]


LEARNING_COLUMNS = [
    ("variant", "variant", 12, str),
    ("budget", "budget", 9, str),
    ("steps", "steps", 6, str),
    ("step s", "step_s", 7, _number(".3f")),
    ("samples/s", "samples_per_s", 10, _number(",.0f")),
    ("train bits", "train_bits", 10, _number(".3f")),
    ("val bits", "val_bits", 8, _number(".3f")),
    ("precision", "precision", 9, str),
    ("settings", "settings", 8, str),
]


STARTUP_COLUMNS = [
    ("start", "start", 5, str),
    ("seconds", "seconds", 7, _number(".2f")),
    ("audio s", "audio_seconds", 7, _number("g")),
    ("engine", "engine", 10, str),
    ("precision", "precision", 9, str),
    ("device", "device", 6, str),
    ("built native", "built_native", 12, lambda built: "yes" if built else "no"),
    ("runs", "runs", 4, _number("d")),
]


STREAMING_COLUMNS = [
    ("measure", "measure", 10, str),
    ("first audio ms", "first_audio_ms", 14, _number(",.1f")),
    ("audio s", "audio_seconds", 7, _number("g")),
    ("× real time", "real_time_factor", 11, _number(".3f")),
    ("worst block ×", "worst_block_rtf", 13, _number(".3f")),
    ("latency ms", "latency_median_ms", 10, _number(",.1f")),
    ("max ms", "latency_max_ms", 7, _number(",.1f")),
    ("hops", "latency_median_hops", 5, _number(".2f")),
    ("max hops", "latency_max_hops", 8, _number(".2f")),
    ("look-ahead ms", "lookahead_ms", 13, _number(",.1f")),
    ("compute ms", "compute_median_ms", 10, _number(",.1f")),
    ("max ms", "compute_max_ms", 7, _number(",.1f")),
    ("engine", "engine", 10, str),
    ("precision", "precision", 9, str),
    ("threads", "threads", 7, str),
    ("chunk", "chunk", 5, str),
]


def print_table(results: Iterator[dict], columns: list[tuple], echo: Callable[[str], None] = print) -> list[dict]:
    """A header, then one aligned row per result as soon as it is measured (``bench``'s
    default output). Text columns are left-aligned, numbers right-aligned; a result with an
    ``error`` (an engine that cannot run here) shows it after the first column."""
    widths = [max(len(header), width) for header, _, width, _ in columns]

    def line(cells: list[str], numeric: list[bool]) -> str:
        return "  ".join(
            cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(cells, widths, numeric)
        ).rstrip()

    numeric = [fmt is not str or key in ("batch", "segment", "threads", "steps", "chunk") for _, key, _, fmt in columns]
    echo(line([header for header, *_ in columns], numeric))
    collected = []
    for result in results:
        if "error" in result:
            first = columns[0][1]
            echo(f"{str(result.get(first, '')).ljust(widths[0])}  error: {result['error']}")
        else:
            echo(line(["-" if result.get(key) is None else fmt(result[key]) for _, key, _, fmt in columns], numeric))
        collected.append(result)
    return collected
