"""The README shows the script's own tree."""

from conftest import ROOT, cms


def test_readme_tree_is_the_scripts_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```\n" + cms.tree_text(glyphs=cms.UNICODE_GLYPHS) + "```\n" in readme
