"""The script reads top-down: each section owns its helpers, and none calls forward.

The sections are the `# -- ` headers of create_media_structure.py.  A name that
starts with `_` is its section's own; any other may be used by the sections after
the one that defines it.  Only the last section (the mode drivers and main) sits
after everything it calls by design, so the rule holds for it as for the rest.
"""

import ast
import sys
from typing import Dict, List, Set, Tuple

import pytest

from conftest import SCRIPT


def sections() -> Tuple[List[str], Dict[str, int], List[Tuple[int, ast.AST]]]:
    """The section titles, each top-level name's section, and each top-level
    statement with its section."""
    text = SCRIPT.read_text(encoding="utf-8")
    heads = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith("# -- ")]
    titles = [line for line in text.splitlines() if line.startswith("# -- ")]
    owner: Dict[str, int] = {}
    statements = []
    for node in ast.parse(text).body:
        section = sum(1 for line in heads if line < node.lineno)
        statements.append((section, node))
        targets: List[ast.AST] = []
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            owner[node.name] = section
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    owner[name.id] = section
    return titles, owner, statements


def used_names(node: ast.AST) -> Set[str]:
    """The names a statement reads that it doesn't bind itself (a local run is no run())."""
    local = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    local |= {
        a.arg
        for n in ast.walk(node)
        if isinstance(n, ast.arguments)
        for a in n.args + n.kwonlyargs + [x for x in (n.vararg, n.kwarg) if x]
    }
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        local.discard(node.name)
    loads = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return loads - local


def test_the_sections_are_the_design_cards():
    titles, _, _ = sections()
    assert len(titles) >= 12
    assert titles[-1].startswith("# -- the modes")
    assert all(len(title) <= 100 for title in titles)


def uses(private: bool) -> list:
    """Each top-level statement's use of a name another section owns: of its private
    names (private), or of any name of a later section."""
    titles, owner, statements = sections()
    return sorted(
        "%s (%s) uses %s of %s" % (getattr(node, "name", "?"), titles[at - 1][5:40], name,
                                   titles[owner[name] - 1][5:40])
        for at, node in statements
        for name in used_names(node)
        if name in owner and (
            (private and name.startswith("_") and not name.startswith("__") and owner[name] != at)
            or (not private and owner[name] > at)
        )
    )  # fmt: skip


def test_no_section_uses_another_sections_private_names():
    assert uses(private=True) == []


def test_nothing_calls_forward_into_a_later_section():
    assert uses(private=False) == []


@pytest.mark.skipif(sys.version_info < (3, 8), reason="ast has end_lineno from Python 3.8")
def test_no_function_of_the_containers_and_routes_is_over_60_lines():
    """Issue 28: each rule of the containers and routes sections reads on one screen."""
    titles, _, statements = sections()
    first = next(at for at, title in enumerate(titles, 1) if "what the containers see" in title)
    last = next(at for at, title in enumerate(titles, 1) if "imports, what the" in title)
    long = [
        (node.name, node.end_lineno - node.lineno + 1)  # type: ignore[attr-defined]
        for section, node in statements
        if first <= section < last and isinstance(node, ast.FunctionDef)
        and node.end_lineno - node.lineno + 1 > 60  # type: ignore[attr-defined]
    ]  # fmt: skip
    assert long == []


def test_the_containers_and_routes_sections_stay_within_their_size():
    """Issue 28: the one record per app made the two sections no longer than the 2,193
    lines they had before it (reading what isn't ours is a section of its own)."""
    lines = SCRIPT.read_text(encoding="utf-8").splitlines()
    first = next(n for n, line in enumerate(lines) if "what the containers see" in line)
    last = next(n for n, line in enumerate(lines) if line.startswith("# -- --check: imports"))
    assert last - first <= 2193
