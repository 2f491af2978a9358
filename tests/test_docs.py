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
