#!/usr/bin/env python3
"""Draw folder_structure.png from the script's own TREE (dev only; needs Pillow).

    python3 -m pip install pillow && python3 tests/render_tree.py

The tree's plain text goes into the PNG as a tEXt chunk; test_picture.py
compares it with the script's, so a changed tree with a stale picture fails.
"""

import os
import sys

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import create_media_structure as cms  # noqa: E402

OUTPUT = os.path.join(ROOT, "folder_structure.png")
TEXT_KEY = "create_media_structure tree"

# What a newcomer needs to read next to some folders (drawn in grey).
NOTES = {
    ("data",): "one share / dataset: everything below on ONE filesystem",
    ("data", "torrents"): "torrent client",
    ("data", "usenet"): "usenet client",
    ("data", "ddl"): "direct-download client",
    ("data", "torrents", "incomplete"): "downloading",
    ("data", "torrents", "complete"): "done; Sonarr, Radarr... import from here",
    ("data", "media"): "the library: Plex, Jellyfin, Emby",
    ("data", "media", "personal"): "your own discs",
    ("data", "media", "personal", "rip"): "DVD, Blu-ray, UHD rips",
    ("data", "media", "personal", "remux"): "remuxes of those rips",
}

SCALE = 2  # drawn at twice the size, then halved: smooth edges
ROW, INDENT, PAD, ICON = 26 * SCALE, 26 * SCALE, 22 * SCALE, 16 * SCALE
BACKGROUND, TEXT, GUIDE, NOTE = "#ffffff", "#1f2328", "#afb8c1", "#6e7781"
FOLDER, FOLDER_EDGE, BORDER = "#f2c55c", "#c9962b", "#d0d7de"
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


def font(size):
    for path in FONT_FILES:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def folder_icon(draw, x, y):
    """A folder glyph whose top-left corner is at x, y."""
    tab = ICON * 0.45
    draw.rounded_rectangle(
        (x, y, x + tab, y + ICON * 0.4), radius=2 * SCALE, fill=FOLDER, outline=FOLDER_EDGE
    )
    draw.rounded_rectangle(
        (x, y + ICON * 0.18, x + ICON * 1.25, y + ICON),
        radius=2 * SCALE,
        fill=FOLDER,
        outline=FOLDER_EDGE,
        width=SCALE,
    )


def render(path=OUTPUT):
    folders = cms.list_folders(cms.TREE)
    name_font, note_font = font(15 * SCALE), font(13 * SCALE)
    depth = max(len(f.parts) for f in folders)
    name_width = max(
        (len(f.parts) - 1) * INDENT + ICON * 2 + name_font.getlength(f.parts[-1] + "/")
        for f in folders
    )
    note_x = PAD + max(name_width, depth * INDENT) + 24 * SCALE
    width = int(note_x + max(note_font.getlength(n) for n in NOTES.values()) + PAD)
    height = PAD * 2 + ROW * len(folders)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=BORDER, width=SCALE)
    rows = {}
    for row, folder in enumerate(folders):
        rows[folder.parts] = row
        level = len(folder.parts) - 1
        x = PAD + level * INDENT
        y = PAD + row * ROW
        middle = y + ROW // 2
        if level:
            parent_row = rows[folder.parts[:-1]]
            guide_x = PAD + (level - 1) * INDENT + ICON // 2
            top = PAD + parent_row * ROW + ROW // 2 + ICON // 2
            draw.line((guide_x, top, guide_x, middle), fill=GUIDE, width=SCALE)
            draw.line((guide_x, middle, x - 3 * SCALE, middle), fill=GUIDE, width=SCALE)
        folder_icon(draw, x, middle - ICON // 2)
        draw.text(
            (x + ICON * 1.25 + 7 * SCALE, middle),
            folder.parts[-1] + "/",
            fill=TEXT,
            font=name_font,
            anchor="lm",
        )
        if folder.parts in NOTES:
            draw.text((note_x, middle), NOTES[folder.parts], fill=NOTE, font=note_font, anchor="lm")
    image = image.resize((width // SCALE, height // SCALE), Image.LANCZOS)
    info = PngInfo()
    info.add_text(TEXT_KEY, cms.tree_text())
    image.save(path, pnginfo=info, optimize=True)
    return path


if __name__ == "__main__":
    print(render())
