"""The documentation holds together: every relative link and #anchor in README.md and docs/*.md
leads somewhere (GitHub's anchor rules), every file of the repository a page or a comment names
exists, counts of the sampling engines are the count there is, and what the README says of
the demo's and the tests' times is what docs/measurements.md last measured."""

import re
from pathlib import Path

import pytest

from wavegen.generate.request import ENGINES

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*.md"))]
PAGES = list(dict.fromkeys(PAGES))
SOURCES = [*sorted((ROOT / "wavegen").rglob("*.py")), *sorted((ROOT / "recipes").glob("*.toml"))]


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (a link or heading inside one is an example)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (``-`` and ``_``
    stay), each space a ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in ``page``; a repeated one gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose(page.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def test_slugs_follow_githubs_rules():
    assert slug("Live: `--out -` and `--play`") == "live---out---and---play"
    assert slug("CPU: the `native` engine") == "cpu-the-native-engine"
    assert slug("Tests and the demo") == "tests-and-the-demo"
    assert slug("How fast it learns (2 cycles, batch 4 × 4000)") == "how-fast-it-learns-2-cycles-batch-4--4000"
    assert slug("[model]") == "model" and slug("Set-up: two commands") == "set-up-two-commands"


def links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, broken


def named_files(text: str) -> list[str]:
    """Files of the repository a text names in backticks: a path under one of its folders, or a
    script or module by its bare name."""
    words = re.findall(r"`([^`\s]+)`", text)
    return [
        w for w in words if re.match(r"(tests|wavegen|docs|recipes|samples|\.ci)/", w) or re.search(r"\.(sh|py)$", w)
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_file_a_page_names_exists(page):
    missing = []
    for name in named_files(page.read_text(encoding="utf-8")):
        if "/" in name:
            ok = bool(list(ROOT.glob(name.rstrip("/")))) if "*" in name else (ROOT / name).exists()
        else:  # a bare name: a module or script somewhere in the repository
            ok = any(ROOT.glob(f"wavegen/**/{name}")) or any(ROOT.glob(f"tests/**/{name}"))
        if not ok:
            missing.append(name)
    assert not missing, f"{page.name} names files the repository does not have: {missing}"


def test_readme_sections_named_in_code_and_recipes_exist():
    """A comment that sends the reader to a part of the README ("see README, Training") names a
    heading the README has; a docs page it names (docs/x.md#part) exists, with that heading."""
    headings = {h.strip().lower() for h in re.findall(r"^#+ +(.+)$", prose((ROOT / "README.md").read_text()), re.M)}
    wrong = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for section in re.findall(r'README(?:\.md)?(?:, +| +")([A-Z][^")\n]+)', text):
            if section.strip().rstrip(".").lower().replace("`", "") not in {h.replace("`", "") for h in headings}:
                wrong.append(f"{source.relative_to(ROOT)}: README section '{section}'")
        for page, anchor in re.findall(r"docs/(\w+\.md)(?:#([\w-]+))?", text):
            if not (ROOT / "docs" / page).is_file() or (anchor and anchor not in anchors(ROOT / "docs" / page)):
                wrong.append(f"{source.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not wrong, wrong


NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def test_counts_of_the_sampling_engines_are_the_count_there_is():
    claims = []
    for source in [*PAGES, *SOURCES]:
        text = source.read_text(encoding="utf-8")
        for said in re.findall(r"\b(?:all|has|have|the|[Tt]hese) (\w+) (?:sampling )?engines\b", text, re.I):
            if said.lower() in NUMBERS and NUMBERS[said.lower()] != len(ENGINES):
                claims.append(f"{source.relative_to(ROOT)}: {said} engines")
        for said in re.findall(r"(?:^|[.:] )(\w+) (?:sampling )?engines\b", text, re.M):
            if said.lower() in NUMBERS and NUMBERS[said.lower()] != len(ENGINES):
                claims.append(f"{source.relative_to(ROOT)}: {said} engines")
    assert not claims, f"there are {len(ENGINES)} engines ({', '.join(ENGINES)}): {claims}"


def _minutes(text: str) -> float:
    """A duration as measurements.md writes it ("154 s", "20 m 25 s", "22.1 minutes"), in minutes."""
    m, s = re.fullmatch(r"(?:([\d.]+) m(?:inutes)? ?)?(?:([\d.]+) s)?", text.strip()).groups()
    return float(m or 0) + float(s or 0) / 60


def test_the_readmes_times_are_the_latest_measured():
    """The README's times for ``make demo`` and ``make test`` hold the figures of the first (the
    latest) entry of docs/measurements.md#tests-and-the-demo."""
    measured = (ROOT / "docs" / "measurements.md").read_text(encoding="utf-8")
    latest = " ".join(measured.split("## Tests and the demo", 1)[1].strip().split("\n\n", 1)[0].split())
    demo = _minutes(re.search(r"`make demo` on that clone took ([\d.]+ s)", latest).group(1))
    tests = [_minutes(t) for t in re.findall(r"(\d+ m \d+ s)(?: in a second run| of pytest)", latest)]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    said_demo = re.search(r"on the CPU \(about ([\d.]+) minutes on 2 cores", readme)
    said_tests = re.search(r"whole test suite \(about ([\d.]+) minutes on 2 cores", readme)
    assert said_demo and said_tests, "the README no longer says how long make demo and make test take"
    assert tests and demo
    for said, measured in ((said_demo, [demo]), (said_tests, tests)):
        assert all(abs(m - float(said.group(1))) <= 0.15 * m for m in measured), (said.group(0), measured)


def test_install_lines_name_extras_the_project_has_and_no_package_index_lacks():
    """wavegen is installed from a checkout or a git URL, not from a package index: an extra is
    installed as ``'.[name]'`` (a name pyproject.toml declares), never as ``wavegen[name]``."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    wrong = []
    for source in [*PAGES, *SOURCES, ROOT / "Makefile"]:
        text = source.read_text(encoding="utf-8")
        wrong += [f"{source.name}: wavegen[{name}]" for name in re.findall(r"\bwavegen\[([\w,]+)\]", text)]
        for names in re.findall(r"pip install[^\n`]*?'\.\[([\w,]+)\]'", text):
            wrong += [f"{source.name}: unknown extra '{n}'" for n in names.split(",") if n not in extras]
    assert not wrong, wrong


def command_lines(page: Path) -> list[str]:
    """Every ``wavegen ...`` line of the page's shell blocks, continuations joined, without its
    comment and without what a pipe or redirection adds."""
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s|\s\|\s|\s>\s|\s&&\s|;", line)[0].strip()
            if line.startswith("wavegen "):
                found.append(line)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_line_a_page_shows_parses(page):
    """Each ``wavegen`` line parses as the CLI would take it: its command exists and its options
    and their values are ones the command accepts (nothing runs)."""
    import shlex

    import click

    from wavegen.cli import main

    refused = []
    for line in command_lines(page):
        words = shlex.split(line)[1:]
        command, name = main, "wavegen"
        while isinstance(command, click.Group) and words and words[0] in command.commands:
            name, command = words[0], command.commands[words[0]]
            words = words[1:]
        if isinstance(command, click.Group) and words[:1] in (["--help"], ["-h"], ["--version"]):
            continue  # (the group's own options end the parse)
        try:
            if isinstance(command, click.Group):
                raise click.UsageError(f"no command in {line!r}")
            command.make_context(name, list(words))
        except click.ClickException as exc:
            refused.append(f"{line}: {exc.format_message()}")
    assert not refused, refused


def test_the_wavenet_paper_is_cited_in_the_readme_and_citation_cff():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    for text in (readme, cff):
        assert "WaveNet: A Generative Model for Raw Audio" in text and "1609.03499" in text and "2016" in text
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M) and re.search(r"^preferred-citation:$", cff, re.M)
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"\nversion: {version}\n" in cff and f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()


def test_the_platform_statement_and_install_lines_agree_with_the_project():
    """The README's Python and torch are the ones pyproject.toml and constraints.txt say."""
    import tomllib

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].removeprefix(">=")
    assert f"Python ≥ {floor}" in readme and f"with Python {floor}, on the CPU" in readme
    pins = dict(re.findall(r"^([\w-]+)==([\w.]+)", (ROOT / "constraints.txt").read_text(), re.M))
    assert f"torch {pins['torch']}, torchaudio {pins['torchaudio']}" in readme
    cpu = [line for line in command_lines_of(ROOT / "README.md") if "download.pytorch.org/whl/cpu" in line]
    assert cpu and all("-c constraints.txt" in line for line in cpu)  # the pinned pair, from the CPU index


def command_lines_of(page: Path) -> list[str]:
    """Every line of the page's shell blocks."""
    return [
        line for block in re.findall(r"^```sh\n(.*?)^```", page.read_text(), re.S | re.M) for line in block.splitlines()
    ]


def test_receptive_fields_stated_for_recipes_are_the_models():
    """A recipe's own comment and the commands page's table of recipes give each recipe's receptive
    field: each must be what the recipe's network has (2 cycles of 1..512 and a kernel-2 input
    layer make 2048, not 2047)."""
    from wavegen.model.network import WaveNet
    from wavegen.recipe import load_recipe

    table = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    wrong, checked = [], 0
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        rf = WaveNet(load_recipe(path.stem).model).receptive_field
        stated = re.findall(r"receptive field:? (\d+) samples", path.read_text(encoding="utf-8").replace("\n# ", " "))
        row = re.search(rf"^\| `{path.stem}` \|[^|]*\| (\d+) samples", table, re.M)
        stated += [row.group(1)] if row else []
        wrong += [f"{path.stem}: {n} stated, {rf} built" for n in stated if int(n) != rf]
        checked += len(stated)
    assert not wrong, wrong
    assert checked >= 2 * 4  # (every shipped recipe says it in its comment and in the table)
