"""The README shows the script's own tree."""

from conftest import ROOT, cms


def test_readme_tree_is_the_scripts_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```\n" + cms.tree_text(glyphs=cms.UNICODE_GLYPHS) + "```\n" in readme


def test_readme_compose_is_the_scripts():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```yaml\n" + cms.compose_snippet("/mnt/user") + "\n```\n" in readme


def test_readme_names_every_option():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for action in cms.build_parser()._actions:
        for flag in action.option_strings:
            assert "`%s" % flag in readme, flag


def test_readme_names_every_kind_of_finding():
    # Each finding(section, kind, ...) whose kind is written out in the script has a
    # row (or a word) in the README, so a new check can't go undocumented.
    import ast

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = (ROOT / "create_media_structure.py").read_text(encoding="utf-8")
    kinds = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "finding":
            kind = node.args[1]
            value = getattr(kind, "value", getattr(kind, "s", None))  # ast.Str before 3.8
            if isinstance(value, str):
                kinds.add(value)
    assert len(kinds) > 15  # the walk found them
    assert sorted(kind for kind in kinds if "`%s`" % kind not in readme) == []
