"""Every figure the READMEs publish comes from a committed artefact; every link resolves.

Checked files: README.md, the READMEs of the top-level folders (bench/README.md, test/README.md,
...) and src/*/README.md.

The figure rule, for markdown tables (text outside tables is not checked):

1. A table is a *figure table* when its header row names a measured quantity (a word of
   ``MEASURED_HEADER``: time, figure, median, mean, p90/p95, success, delivered, error, latency,
   plans/s, ...) or when it stands under a heading that names measurements
   (``MEASURED_HEADING``: measured, results, performance, speed, benchmark, figures).
   Parameter, interface, status and fault tables name neither (their headers are parameter /
   default / range / description, topic / type, fault / behaviour, ...), so a default such as
   "0.3 s" or a range such as "4-6 cm" there is not a figure.
2. In a figure table a *figure* is a number with a unit (ms, s, min, Hz, plans/s, %, mm, cm,
   m, dB, or a multiple such as "21x" written with the multiplication sign) in any cell but the
   first, or any number in a column whose header gives the unit in parentheses ("final dist.
   median (m)", "colour median / p95 (ms)"). The first cell names what was measured and may
   state its conditions ("640x480 @ 30 Hz", "60 s").
3. A row with a figure links (a markdown link) to the artefact it comes from: a committed
   ``.json`` file, or a report (``.md``/``.json``) under ``models/`` or ``bench/results/``.
4. A figure whose artefact does not exist yet is not published: the row says "not measured
   yet" and names the file its bench will write as code (`bench/results/<name>.json`), not as
   a link, until that file is committed.

Every relative link, in tables and text, must point to a file or folder of the repository that
is committed or committable (tracked, or untracked and not ignored by git: a link into an
ignored folder such as reports/ would be dead in a fresh clone), and a ``#anchor`` to a
heading of the target markdown file.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
from pathlib import Path
import re
import subprocess

import pytest

ROOT = Path(__file__).resolve().parents[1]

MEASURED_HEADER = re.compile(
    r'\b(time|figures?|median|mean|p\d\d|success|delivered|errors?|latency|accuracy|'
    r'throughput|psnr|plans/s)\b', re.IGNORECASE)
MEASURED_HEADING = re.compile(r'\b(measured|results?|performance|speed|bench\w*|figures?)\b',
                              re.IGNORECASE)
FIGURE = re.compile(
    r'(?<![\w.])\d+(?:\.\d+)?\s?(?:plans/s|ms|min|mm|cm|Hz|dB|%|s|m)(?![\w/])'
    r'|(?<![\w.])\d+(?:\.\d+)?×(?!\s*\d)')
COLUMN_UNIT = re.compile(r'\((?:plans/s|ms|min|mm|cm|Hz|dB|%|s|m)\)')
NUMBER = re.compile(r'(?<![\w.])\d+(?:\.\d+)?(?![\w.])')
LINK = re.compile(r'!?\[([^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
ARTEFACT_FOLDERS = ('models/', 'bench/results/')


def readmes() -> list[Path]:
    """The checked READMEs: those git tracks (or would add), or outside a checkout those not in
    a hidden or build folder."""
    found = [ROOT / 'README.md', *sorted(ROOT.glob('*/README.md')),
             *sorted(ROOT.glob('src/*/README.md'))]
    committed = committed_paths()
    if committed is None:
        return [p for p in found if not p.relative_to(ROOT).parts[0].startswith('.')
                and p.relative_to(ROOT).parts[0] not in ('build', 'install', 'log')]
    return [p for p in found if p.relative_to(ROOT).as_posix() in committed]


@functools.cache
def committed_paths() -> frozenset[str] | None:
    """Files git tracks or would add (not ignored), relative to ROOT; None outside a checkout."""
    try:
        out = subprocess.run(
            ['git', '-C', str(ROOT), 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard'], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return frozenset(p for p in out.decode().split('\0') if p)


def in_repository(rel: str, committed: frozenset[str] | None) -> bool:
    """``rel`` (a path relative to ROOT) is a committed file or a folder holding one."""
    rel = rel.rstrip('/')
    if committed is None:
        return (ROOT / rel).exists()
    if rel in ('', '.'):
        return True
    return rel in committed or any(p.startswith(rel + '/') for p in committed)


# ---- markdown -----------------------------------------------------------------------------------

@dataclass
class Table:
    heading: str
    header: list[str]
    rows: list[tuple[int, list[str]]]      # (line number, cells)


def split_cells(line: str) -> list[str]:
    """The cells of a table line; '|' inside code spans or escaped as '\\|' does not split."""
    cells, cell, code, i = [], '', False, 0
    text = line.strip()
    text = text[1:] if text.startswith('|') else text
    while i < len(text):
        ch = text[i]
        if ch == '\\' and i + 1 < len(text):
            cell += text[i:i + 2]
            i += 2
            continue
        if ch == '`':
            code = not code
        if ch == '|' and not code:
            cells.append(cell.strip())
            cell = ''
        else:
            cell += ch
        i += 1
    if cell.strip():
        cells.append(cell.strip())
    return cells


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith('```'):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def tables(text: str) -> list[Table]:
    found: list[Table] = []
    heading, current, previous = '', None, -1
    for number, line in prose_lines(text):
        if line.startswith('#'):
            heading = line.lstrip('#').strip()
        if not line.lstrip().startswith('|'):
            current = None
            continue
        cells = split_cells(line)
        if current is None or number != previous + 1:
            current = Table(heading, cells, [])
            found.append(current)
        elif not all(re.fullmatch(r':?-+:?', c) for c in cells if c):
            current.rows.append((number, cells))
        previous = number
    return found


def is_figure_table(table: Table) -> bool:
    return bool(MEASURED_HEADER.search(' '.join(table.header))
                or MEASURED_HEADING.search(table.heading))


def figures(cells: list[str], header: list[str]) -> list[str]:
    """The figures in the cells after the first (link targets left out): numbers with units,
    and every number of a column whose header names its unit."""
    found = []
    for column, cell in enumerate(cells[1:], 1):
        text = LINK.sub(lambda m: m.group(1), cell)
        unit = column < len(header) and COLUMN_UNIT.search(header[column])
        found += [m.group(0) for m in (NUMBER if unit else FIGURE).finditer(text)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding='utf-8')):
        if line.startswith('#'):
            base = slug(line.lstrip('#'))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f'{base}-{n}')
    return out


def resolve(doc: Path, target: str) -> tuple[str, str] | None:
    """(path relative to ROOT, anchor) of a relative link; None for external links."""
    if re.match(r'[a-z][a-z0-9+.-]*:', target, re.IGNORECASE):
        return None
    path, _, anchor = target.partition('#')
    full = (doc.parent / path).resolve() if path else doc.resolve()
    try:
        rel = full.relative_to(ROOT).as_posix()
    except ValueError:
        rel = '../' + full.as_posix()       # outside the repository: never committed
    return rel, anchor


def is_artefact(rel: str, committed: frozenset[str] | None) -> bool:
    if not in_repository(rel, committed) or (ROOT / rel).is_dir():
        return False
    return rel.endswith('.json') or (rel.endswith('.md') and rel.startswith(ARTEFACT_FOLDERS))


# ---- the checks -----------------------------------------------------------------------------

def figure_problems(doc: Path, text: str, committed: frozenset[str] | None) -> list[str]:
    problems = []
    for table in tables(text):
        if not is_figure_table(table):
            continue
        for number, cells in table.rows:
            found = figures(cells, table.header)
            if not found:
                continue
            targets = [resolve(doc, m.group(2)) for c in cells[1:] for m in LINK.finditer(c)]
            if not any(t is not None and is_artefact(t[0], committed) for t in targets):
                problems.append(f'{doc.relative_to(ROOT)}:{number}: {cells[0]!r} publishes '
                                f'{", ".join(found)} without a link to a committed artefact '
                                f'(.json, or a report under models/ or bench/results/)')
    return problems


def link_problems(doc: Path, text: str, committed: frozenset[str] | None) -> list[str]:
    problems = []
    for number, line in prose_lines(text):
        for match in LINK.finditer(line):
            target = resolve(doc, match.group(2))
            if target is None:
                continue
            rel, anchor = target
            where = f'{doc.relative_to(ROOT)}:{number}: link {match.group(2)!r}'
            if not in_repository(rel, committed):
                problems.append(f'{where} points to {rel}, which is not in the repository')
            elif anchor and rel.endswith('.md') and anchor not in anchors(ROOT / rel):
                problems.append(f'{where}: {rel} has no heading #{anchor}')
    return problems


@pytest.mark.parametrize('doc', readmes(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_figure_row_links_to_its_artefact(doc: Path) -> None:
    problems = figure_problems(doc, doc.read_text(encoding='utf-8'), committed_paths())
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('doc', readmes(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = link_problems(doc, doc.read_text(encoding='utf-8'), committed_paths())
    assert not problems, '\n'.join(problems)


# ---- the rule itself, on small documents --------------------------------------------------------

DOC = ROOT / 'README.md'
COMMITTED = frozenset({'bench/results/object_state.json', 'models/m/report.md',
                       'src/p/README.md'})


def _figure_problems(text: str) -> list[str]:
    return figure_problems(DOC, text, COMMITTED)


def test_a_measured_row_without_an_artefact_link_fails() -> None:
    text = '## Performance\n\n| what | figure |\n|---|---|\n| latency | p95 7 ms |\n'
    assert len(_figure_problems(text)) == 1
    linked = text.replace('7 ms |', '7 ms ([json](bench/results/object_state.json)) |')
    assert _figure_problems(linked) == []
    report = text.replace('7 ms |', '7 ms ([report](models/m/report.md)) |')
    assert _figure_problems(report) == []


def test_a_link_to_something_that_is_not_an_artefact_does_not_count() -> None:
    base = '| what | time |\n|---|---|\n| setup | 125 s ([x]({})) |\n'
    for target in ('src/p/README.md', 'bench/results/missing.json', 'models/m/'):
        assert len(_figure_problems(base.format(target))) == 1, target


def test_parameter_and_variation_tables_hold_no_figures() -> None:
    text = ('## Parameters\n\n| parameter | default | range | description |\n|---|---|---|---|\n'
            '| `state_timeout` | `0.3` | [0.05, 1] | no state for 0.3 s (s) |\n\n'
            '## Variation\n\n| switch | what varies | range |\n|---|---|---|\n'
            '| cube sizes | edge length | 4–6 cm |\n')
    assert _figure_problems(text) == []


def test_the_first_cell_names_the_conditions_and_pending_rows_carry_no_figure() -> None:
    text = ('| what | figure |\n|---|---|\n'
            '| transport, 640×480 @ 30 Hz, 60 s | not measured yet '
            '(`bench/results/camera.json`) |\n'
            '| CEM 256 × 8 | 11.6 plans/s |\n| fast env | 21× real time |\n')
    problems = _figure_problems(text)
    assert len(problems) == 2
    assert "'CEM 256 × 8' publishes 11.6 plans/s" in problems[0]
    assert "'fast env' publishes 21×" in problems[1]


def test_a_column_header_can_carry_the_unit() -> None:
    text = '| variant | median / p95 (ms) | steps |\n|---|---|---|\n| node | 2.0 / 5.9 | 8.7 |\n'
    problems = _figure_problems(text)
    assert len(problems) == 1 and 'publishes 2.0, 5.9 without' in problems[0]


def test_code_spans_and_escaped_pipes_do_not_split_cells() -> None:
    assert split_cells('| `a\\|b` | \\|x\\| ≤ 1 | c |') == ['`a\\|b`', '\\|x\\| ≤ 1', 'c']
    assert split_cells('| `craik eval --task reach|push` | what |') == [
        '`craik eval --task reach|push`', 'what']


def test_dead_links_and_anchors_are_found() -> None:
    text = ('[ok](src/p/README.md) [gone](docs/missing.md) [web](https://example.org)\n'
            '[anchor](README.md#no-such-heading)\n```\n[in code](nowhere.md)\n```\n')
    problems = link_problems(DOC, text, COMMITTED | {'README.md'})
    assert len(problems) == 2
    assert 'docs/missing.md' in problems[0] and '#no-such-heading' in problems[1]


def test_heading_anchors_follow_github() -> None:
    assert slug('pyrealsense2 and ROS 2 in one process') == 'pyrealsense2-and-ros-2-in-one-process'
    assert slug('Closed-loop results under variation (`models/craik_wm_geo`)') == (
        'closed-loop-results-under-variation-modelscraik_wm_geo')
