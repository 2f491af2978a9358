"""--compose, and folder_structure.png drawn from the script's own tree."""

import struct
import zlib

import pytest

from conftest import REPO, cms

EXPECTED = """\
# docker-compose volumes for /mnt/user/data: paste each block under its service.
# Every container sees the same /data paths; give them all the same PUID/PGID
# (the tree's owner) and UMASK=002 in their environment.

# torrent client: qBittorrent, Transmission, Deluge
volumes:
  - /mnt/user/data/torrents:/data/torrents

# usenet client: SABnzbd, NZBGet
volumes:
  - /mnt/user/data/usenet:/data/usenet

# direct-download client: JDownloader, pyLoad
volumes:
  - /mnt/user/data/ddl:/data/ddl

# Sonarr, Radarr, Lidarr, Readarr: the whole tree, so imports are hardlinks or instant moves
volumes:
  - /mnt/user/data:/data

# Plex, Jellyfin, Emby: the library
volumes:
  - /mnt/user/data/media:/data/media
"""


def test_compose_prints_and_touches_nothing(tmp_path, run):
    assert run("--path", "/mnt/user", "--compose") == (0, EXPECTED, "")
    missing = tmp_path / "not" / "yet"
    code, out, _ = run("--path", str(missing), "--compose")
    assert code == 0
    assert "  - %s/data:/data\n" % missing in out
    assert list(tmp_path.iterdir()) == []


def blocks(text):
    return [block for block in text.split("\n\n")[1:]]


@pytest.mark.parametrize("path", ["/mnt/user", "/volume1/my share", "/srv/d#ta", "/srv/caf\u00e9"])
def test_compose_is_valid_yaml_under_a_service(run, path):
    yaml = pytest.importorskip("yaml")
    out = run("--path", path, "--compose")[1]
    mounts = []
    for block in blocks(out):
        indented = "".join("    " + line + "\n" for line in block.splitlines())
        pasted = "services:\n  app:\n" + indented
        volumes = yaml.safe_load(pasted)["services"]["app"]["volumes"]
        assert len(volumes) == 1
        mounts.append(volumes[0])
    assert mounts == [
        "%s/data/torrents:/data/torrents" % path,
        "%s/data/usenet:/data/usenet" % path,
        "%s/data/ddl:/data/ddl" % path,
        "%s/data:/data" % path,
        "%s/data/media:/data/media" % path,
    ]


def test_compose_refuses_a_colon(run):
    code, out, err = run("--path", "/mnt/a:b", "--compose")
    assert (code, out) == (2, "")
    assert err == (
        "error: /mnt/a:b/data: docker's short volume syntax cannot hold a ':' in the path\n"
    )


def png_text_chunks(path):
    """The tEXt chunks of a PNG file, read with the standard library alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        offset += 12 + length
    return chunks


def test_picture_is_drawn_from_the_current_tree():
    chunks = png_text_chunks(REPO / "folder_structure.png")
    assert chunks.get("create_media_structure tree") == cms.tree_text(), (
        "folder_structure.png is stale: run python3 tests/render_tree.py"
    )
