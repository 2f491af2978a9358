"""The README shows the script's own tree."""

from conftest import REPO, SCRIPT, cms


def test_readme_tree_is_the_scripts_tree():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```\n" + cms.tree_text(glyphs=cms.UNICODE_GLYPHS) + "```\n" in readme


def test_readme_compose_is_the_scripts():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```yaml\n" + cms.compose_snippet("/mnt/user") + "\n```\n" in readme


def test_readme_names_every_option():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for action in cms.build_parser()._actions:
        for flag in action.option_strings:
            assert "`%s" % flag in readme, flag


def readme_rows():
    """Each table row of the README, as its cells."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in readme.splitlines() if line.startswith("| ")]  # fmt: skip


def test_readme_table_of_findings_is_the_registry():
    # Every kind the script can make (cms.KINDS: finding() takes nothing else) has a row
    # in a table of findings, with the registry's section and grade, so a new check
    # can't go undocumented, nor a grade change unsaid.
    assert len(cms.KINDS) > 30
    for kind, known in cms.KINDS.items():
        rows = [row for row in readme_rows() for at, cell in enumerate(row)
                if cell.split(" (")[0].split(", ").count("`%s`" % kind) and at < 2]  # fmt: skip
        assert rows, kind
        for row in rows:
            at = next(at for at, cell in enumerate(row) if "`%s`" % kind in cell)
            grade, other = row[at + 1], {"problem": "warning", "warning": "problem"}
            assert grade.startswith(known.severity) or grade == "as above", (kind, grade)
            assert known.rule or other[known.severity] not in grade, (kind, grade)
            if at == 1:  # a section column
                assert row[0] == known.section or row[0] in known.rule, (kind, row[0])


def test_findings_take_their_kind_from_the_registry():
    # finding()'s kind is always a literal of the registry or comes from a table of them.
    import ast

    source = SCRIPT.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("finding", "_found"):
            kind = node.args[0 if node.func.id == "finding" else 1]
            if isinstance(kind, ast.Constant):
                assert kind.value in cms.KINDS, kind.value


def test_help_fits_an_80_column_terminal(monkeypatch):
    """--help's example lines were 81 to 99 characters: they wrapped over SSH."""
    monkeypatch.setenv("COLUMNS", "80")
    text = cms.build_parser().format_help()
    assert [line for line in text.splitlines() if len(line) > 80] == []
    assert "curl" not in text  # the one download recipe is the README's


def test_readme_prose_lines_are_short():
    """No prose line over 100 characters (code blocks and table rows aside)."""
    long_lines, code = [], False
    for number, line in enumerate((REPO / "README.md").read_text(encoding="utf-8").splitlines()):
        if line.startswith("```"):
            code = not code
        elif not code and not line.startswith("|") and len(line) > 100:
            long_lines.append(number + 1)
    assert long_lines == []


def test_no_download_address_to_trust_blindly():
    # The file goes over scp and is checked by its sha256 on both ends (--version prints
    # it): no placeholder address or checksum anywhere.
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "raw.githubusercontent.com" not in text and "scp " in text
    assert (REPO / "tests" / "README.md").exists() and "tests/README.md" in text
