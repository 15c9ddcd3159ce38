"""The code's layout rules: rooms whose imports point one way, no cycles, commands apart, and
modules and functions small enough to read (a budget that may only shrink for the few over it).

Every import counts, also those inside functions (a cycle hidden in a function is still a
cycle: it only waits for the first call to show)."""

import ast
import itertools
from pathlib import Path

import wavegen

PACKAGE = Path(wavegen.__file__).parent

# Which rooms a room may import from. Foundations (the root modules: config, recipe, errors, files, interrupts,
# runs, devices, cache, outputs, owned, locks, limits, progress, noise, run_config, config_ranges, config_reference,
# messages)
# import foundations only.
FOUNDATIONS = {
    "cache",
    "locks",
    "owned",
    "config",
    "recipe",
    "errors",
    "files",
    "interrupts",
    "runs",
    "devices",
    "outputs",
    "limits",
    "progress",
    "noise",
    "pretrained",
    "run_config",
    "config_ranges",
    "config_reference",
    "messages",
}
MAY_IMPORT = {
    "audio": set(),
    "model": {"audio"},
    "data": {"audio", "model"},  # (mel_window: which frames a window of samples depends on)
    "generate": {"audio", "model"},
    "train": {"audio", "data", "model", "generate"},  # (monitor: samples during training)
    "synthesis": {"audio", "model", "generate"},  # use cases: a model and a request into files
    "report": {"audio", "model"},
    "bench": {"audio", "data", "model", "generate", "train"},
    "commands": {"audio", "data", "model", "generate", "synthesis", "train", "report", "bench"},
    "cli": {"commands"},
    "__main__": {"cli"},
    "api": {
        "audio",
        "data",
        "model",
        "generate",
        "synthesis",
        "train",
    },  # the Python API: what the commands do, for a program
    "wavegen": {"api"},  # the package root: its names, lazily, from the API
}
# Modules over the budgets below, each at most its size today: they may shrink, never grow.
MODULE_LINES, FUNCTION_LINES = 300, 60
OVER_MODULE = {
    "wavegen.train.loop": 416,
    "wavegen.train.trainer": 387,
}
OVER_FUNCTION = {
    "wavegen.generate.persistent.kernel._layer": 72,  # one Triton program's layer, inlined as a whole
    "wavegen.bench.learning._train_and_score": 66,
    "wavegen.report.html.render": 84,
}


# Where an import of wavegen's own modules may sit inside a function, and why; everywhere else
# imports are at the top, where they show what a module depends on.
LAZY_IMPORTERS = {  # entry points: `wavegen --help`, a usage error and `import wavegen` stay fast
    "wavegen": "the package's names load on first use",
    "wavegen.api": "the Python API loads torch on first use",
    "wavegen.cli": "the CLI answers --help before torch is imported",
    "wavegen.commands": "each command loads its work when it runs, after its quick checks",
}
LAZY_TARGETS = {  # optional or heavy back-ends, loaded only where used
    "wavegen.generate.native": "may build a C++ library on first use",
    "wavegen.generate.persistent": "imports Triton",
    "wavegen.generate.cuda_graph": "the GPU engine, loaded only when asked for",
    "wavegen.audio.plots": "imports matplotlib (about half a second)",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path], tree: ast.AST | None = None) -> set[str]:
    """The wavegen modules ``name`` imports, anywhere in it (or in ``tree``, a part of it)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree if tree is not None else ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
                if candidate in known and candidate != name:
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def room(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "wavegen"


def test_the_import_graph_has_no_cycles():
    edges, index, low, stack, on_stack, cycles = graph(), {}, {}, [], set(), []
    counter = itertools.count()

    def visit(node):  # Tarjan: a strongly connected component of more than one module is a cycle
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_imports_point_one_way_between_rooms():
    wrong = []
    for name, targets in graph().items():
        here = room(name)
        for target in targets:
            there = room(target)
            if there == here or there in FOUNDATIONS or there == "wavegen":
                continue
            if here in FOUNDATIONS or there not in MAY_IMPORT.get(here, set()):
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong
    assert MAY_IMPORT["cli"] == {"commands"}  # nothing but the CLI reaches a command


def test_commands_do_not_import_each_other_and_nothing_imports_them():
    for name, targets in graph().items():
        for target in targets:
            if target.startswith("wavegen.commands.") and target != "wavegen.commands.common":
                assert name == "wavegen.cli", f"{name} imports the command {target}"
            if target == "wavegen.cli":
                assert name == "wavegen.__main__", f"{name} imports the CLI"


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_imports_inside_functions_are_only_where_they_say_why():
    known, hidden = modules(), []
    for name, path in known.items():
        if name == "wavegen" or _within(name, set(LAZY_IMPORTERS) - {"wavegen"}):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = ast.Module(body=fn.body, type_ignores=[])
            for target in imports(name, path, known, body):
                if not _within(target, LAZY_TARGETS):
                    hidden.append(f"{name}.{fn.name} imports {target}")
    assert not hidden, sorted(set(hidden))


def test_engines_are_chosen_in_one_module():
    """Which engine runs is decided in ``generate.choice`` alone: no other module builds an
    engine by name (``engines.build_engine``); every caller goes through ``choose`` or
    ``make_engine``."""
    builders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("engines"):
                if "build_engine" in {alias.name for alias in node.names} and name != "wavegen.generate.choice":
                    builders.append(name)
    assert not builders, builders


def test_modules_and_functions_keep_within_their_budget():
    over = []
    for name, path in modules().items():
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > OVER_MODULE.get(name, MODULE_LINES):
            over.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length, qualified = node.end_lineno - node.lineno + 1, f"{name}.{node.name}"
                if length > OVER_FUNCTION.get(qualified, FUNCTION_LINES):
                    over.append(f"{qualified}: {length} lines")
    assert not over, over


def test_the_allowances_are_tight():
    """An allowance is the size of what it allows, no more: a module or function that shrank
    (or went) takes its allowance down with it, so the budget only ever tightens."""
    known = modules()
    for name, allowed in OVER_MODULE.items():
        assert name in known and len(known[name].read_text().splitlines()) == allowed, name
    for qualified, allowed in OVER_FUNCTION.items():
        module, _, function = qualified.rpartition(".")
        lengths = [
            node.end_lineno - node.lineno + 1
            for node in ast.walk(ast.parse(known[module].read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == function
        ]
        assert lengths == [allowed], qualified
