"""--check's imports: what the importers' own History says each import did, on disk
today (real SQLite dbs with the apps' History columns, real files)."""

import json
import os
import sqlite3

from test_routes import TREE_OPTIONS, Stack, arr_db, qb_row, sab_row  # noqa: F401

from conftest import cms

# The History table as Sonarr creates it (Radarr's has MovieId for EpisodeId and SeriesId,
# Lidarr's AlbumId, ArtistId and TrackId).
SONARR_HISTORY = """
    CREATE TABLE History (Id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        EpisodeId INTEGER NOT NULL, SeriesId INTEGER NOT NULL, SourceTitle TEXT NOT NULL,
        Date DATETIME NOT NULL, Quality TEXT NOT NULL, Data TEXT NOT NULL,
        EventType INTEGER, DownloadId TEXT, Languages TEXT NOT NULL)
"""
RADARR_HISTORY = """
    CREATE TABLE History (Id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        MovieId INTEGER NOT NULL, SourceTitle TEXT NOT NULL, Date DATETIME NOT NULL,
        Quality TEXT NOT NULL, Data TEXT NOT NULL, EventType INTEGER, DownloadId TEXT,
        Languages TEXT NOT NULL)
"""
GRABBED, IMPORTED = 1, 3  # EpisodeHistoryEventType: Grabbed, DownloadFolderImported


def data(dropped, imported, client="QBittorrent", name="qBittorrent"):
    """An import's Data, as Sonarr writes it (its keys camelCase)."""
    return json.dumps({"fileId": "1", "droppedPath": dropped, "importedPath": imported,
                       "downloadClient": client, "downloadClientName": name,
                       "releaseGroup": "GRP", "size": "100"})  # fmt: skip


def history(db_path, rows, table=SONARR_HISTORY):
    """rows: (date, Data text, EventType), oldest first."""
    db = sqlite3.connect(str(db_path))
    db.execute(table)
    columns = "EpisodeId, SeriesId, " if "EpisodeId" in table else "MovieId, "
    values = "1, 1, " if "EpisodeId" in table else "1, "
    db.executemany(
        "INSERT INTO History (%sSourceTitle, Date, Quality, Data, EventType, DownloadId, "
        "Languages) VALUES (%s'Show.S01E01', ?, '{}', ?, ?, 'ABC', '[]')" % (columns, values),
        [(date, text, event) for date, text, event in rows],
    )
    db.commit()
    db.close()


def make(tree, relative, content=b"x" * 1000):
    """A file below data/, as the apps' user (the tree's owner) would have made it."""
    path = tree / "data" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    owner = os.stat(str(tree / "data"))
    folder = path
    while folder != tree / "data":
        os.chown(str(folder), owner.st_uid, owner.st_gid)
        folder = folder.parent
    return path


def episode(tree, name, result):
    """A download and its library file that are, today, what result says; the paths as
    Sonarr (which sees the tree at /data) wrote them."""
    download = "torrents/complete/tv/%s/%s.mkv" % (name, name)
    library = "media/tv/Show/%s.mkv" % name
    if result in ("hardlink", "copy", "import-gone"):
        make(tree, download)
    if result == "hardlink":
        (tree / "data" / library).parent.mkdir(parents=True, exist_ok=True)
        os.link(str(tree / "data" / download), str(tree / "data" / library))
    elif result in ("copy", "download-gone"):
        make(tree, library)
    return "/data/" + download, "/data/" + library


def stack_with_history(tree, run, rows):
    stack = Stack(tree, run)
    sonarr = stack.guides()
    history(sonarr / "sonarr.db", rows)
    return stack


def results(document):
    return [(row["importer"], row["result"]) for row in document["imports"]]


def test_each_result_from_disk(tree, run):
    rows = []
    for number, result in enumerate(["hardlink", "copy", "download-gone", "import-gone"]):
        dropped, imported = episode(tree, "e%d" % number, result)
        rows.append(("2026-11-0%d 10:00:00Z" % (number + 1), data(dropped, imported), IMPORTED))
    rows.append(("2026-11-05 10:00:00Z", data("/downloads/e5.mkv", "/tv/e5.mkv"), IMPORTED))
    rows.append(("2026-11-06 10:00:00Z", data("/data/x", "/data/y"), GRABBED))  # no import
    stack = stack_with_history(tree, run, rows)
    code, document = stack.check()
    # Newest first; the unseen one is on none of today's mounts (a /downloads volume).
    newest_first = ("unseen", "import-gone", "download-gone", "copy", "hardlink")
    assert results(document) == [("sonarr", result) for result in newest_first]
    copy = document["imports"][3]
    assert copy == {
        "importer": "sonarr", "client": "qBittorrent", "date": "2026-11-02 10:00:00Z",
        "download": "/data/torrents/complete/tv/e1/e1.mkv",
        "imported": "/data/media/tv/Show/e1.mkv",
        "host_download": str(tree / "data/torrents/complete/tv/e1/e1.mkv"),
        "host_imported": str(tree / "data/media/tv/Show/e1.mkv"), "result": "copy", "size": 1000,
    }  # fmt: skip
    unseen = document["imports"][0]
    assert (unseen["host_download"], unseen["host_imported"]) == (None, None)
    # The one copy is not the newest torrent import still on disk? It is: e1 is the
    # newest hardlink-or-copy torrent import (e0 is older): a problem, imports copy now.
    (item,) = [f for f in document["findings"] if f["section"] == "imports"]
    assert (item["kind"], item["severity"], item["container"]) == (
        "imports-copied", "problem", "sonarr")  # fmt: skip
    assert item["paths"] == [str(tree / "data/media/tv/Show/e1.mkv")]
    assert item["detail"].startswith(
        "1 of its last 5 imports are copies, 1000 B held twice (2026-11-02 .. 2026-11-02); its "
        "newest torrent import (2026-11-02) copied: imports copy now; yet its settings route "
        "downloads as hardlinks, so the cause is outside them"
    )
    assert item["fix"] == "python3 create_media_structure.py --path %s --relink --dry-run" % tree
    assert code == 1
    code, out, _ = stack.text()
    assert "imports      1 problem\n" in out
    assert "  sonarr: last 5 imports: 1 hardlink, 1 copy (1000 B, 2026-11-02 .. 2026-11-02), " \
        "2 gone, 1 unseen (on none of today's mounts)\n" in out  # fmt: skip


def test_a_copy_fixed_since_is_a_warning(tree, run):
    rows = []
    for number, result in enumerate(["copy", "copy", "hardlink"]):
        dropped, imported = episode(tree, "e%d" % number, result)
        rows.append(("2026-10-0%d 10:00:00Z" % (number + 1), data(dropped, imported), IMPORTED))
    code, document = stack_with_history(tree, run, rows).check()
    (item,) = [f for f in document["findings"] if f["kind"] == "imports-copied"]
    assert item["severity"] == "warning" and code == 0, document["findings"]
    assert item["detail"] == (
        "2 of its last 3 imports are copies, 2.0 KiB held twice (2026-10-01 .. 2026-10-02); its "
        "newest torrent import is no copy: fixed since, the space still spent"
    )
    assert len(item["paths"]) == 2


def test_a_usenet_copy_is_no_torrent_import(tree, run):
    # Usenet imports move: the grade looks at the newest torrent import only.
    dropped, imported = episode(tree, "u0", "copy")
    rows = [("2026-10-01", data(dropped, imported, "Sabnzbd", "SABnzbd"), IMPORTED)]
    code, document = stack_with_history(tree, run, rows).check()
    assert [f["severity"] for f in document["findings"] if f["kind"] == "imports-copied"] == [
        "warning"
    ]


def test_rows_that_are_not_json_or_hold_a_nul_are_skipped_and_counted(tree, run):
    dropped, imported = episode(tree, "e0", "hardlink")
    rows = [
        ("2026-10-01", data(dropped, imported), IMPORTED),
        ("2026-10-02", "{not json", IMPORTED),
        ("2026-10-03", data("/data/a\u0000b", "/data/media/tv/x"), IMPORTED),
        ("2026-10-04", json.dumps(["a", "list"]), IMPORTED),
        ("2026-10-05", "[" * 100000, IMPORTED),  # deeper than Python's stack
    ]
    stack = stack_with_history(tree, run, rows)
    code, document = stack.check()
    assert code == 0 and results(document) == [("sonarr", "hardlink")]
    code, out, err = stack.text()
    assert "  sonarr: last 5 imports: 1 hardlink, 4 unreadable\n" in out
    assert "Traceback" not in err


def test_200000_rows_read_as_100(tree, run):
    dropped, imported = episode(tree, "e0", "hardlink")
    rows = [("2026-01-01", data("/data/old", "/data/media/tv/old"), IMPORTED)] * 199999
    rows.append(("2026-12-01", data(dropped, imported), IMPORTED))
    code, document = stack_with_history(tree, run, rows).check()
    assert len(document["imports"]) == cms.HISTORY_ROWS == 100
    assert document["imports"][0]["result"] == "hardlink"
    assert {row["result"] for row in document["imports"][1:]} == {"import-gone"}
    assert code == 0


def test_a_history_that_predates_today_s_mounts(tree, run):
    # An Unraid template's /downloads and /tv, before the move to one /data.
    rows = [("2025-0%d-01" % n, data("/downloads/tv/e%d.mkv" % n, "/tv/Show/e%d.mkv" % n), IMPORTED)
            for n in range(1, 4)]  # fmt: skip
    code, document = stack_with_history(tree, run, rows).check()
    assert {row["result"] for row in document["imports"]} == {"unseen"}
    assert [f for f in document["findings"] if f["section"] == "imports"] == []
    assert code == 0 and document["sections"]["imports"] == "ok"


def test_a_native_app_uses_its_own_paths(tree, run):
    config = tree / "sonarr-native"
    arr_db(config / "sonarr.db", [str(tree / "data/media/tv")], [])
    download = make(tree, "torrents/complete/tv/e0.mkv")
    library = make(tree, "media/tv/Show/e0.mkv")
    history(config / "sonarr.db", [("2026-11-30", data(str(download), str(library)), IMPORTED)])
    code, out, _ = run("--path", str(tree), "--check", "--json", "--app", "sonarr=%s" % config)
    document = json.loads(out)
    assert results(document) == [("sonarr", "copy")]
    assert document["imports"][0]["host_imported"] == str(library)
    assert code == 1  # a torrent import copied, and it is the newest


def test_radarr_s_history(tree, run):
    stack = Stack(tree, run)
    radarr = stack.add("radarr", "lscr.io/linuxserver/radarr", [(stack.data, "/data")])
    arr_db(radarr / "radarr.db", ["/data/media/movies"], [qb_row()])
    download = make(tree, "torrents/complete/movies/Film/film.mkv")
    os.link(str(download), str(tree / "data/media/movies/film.mkv"))
    history(radarr / "radarr.db", [("2026-11-30", data("/data/torrents/complete/movies/Film/"
            "film.mkv", "/data/media/movies/film.mkv"), IMPORTED)], RADARR_HISTORY)  # fmt: skip
    code, document = stack.check()
    assert results(document) == [("radarr", "hardlink")]


def test_no_importer_no_section(tree, run):
    stack = Stack(tree, run)
    stack.add("qbittorrent", "lscr.io/linuxserver/qbittorrent", [])
    code, document = stack.check()
    assert "imports" not in document and "imports" not in document["sections"]


def test_a_name_that_is_not_utf8_has_its_bytes(tree, run):
    name = os.fsdecode(b"caf\xe9")
    dropped, imported = episode(tree, name, "copy")
    rows = [("2026-10-01", data(dropped, imported), IMPORTED)]
    code, document = stack_with_history(tree, run, rows).check()
    row = document["imports"][0]
    assert row["result"] == "copy" and "host_imported_b64" in row


# -- --relink takes the history's copies first -------------------------------------------------


def test_relink_takes_the_pair_the_history_names(tree, run):
    # Two downloads hold the copy's bytes; the index alone takes the first by path (a/),
    # the history says the import came from b/.
    content = b"y" * (2 << 20)
    make(tree, "torrents/complete/tv/a/e.mkv", content)
    b = make(tree, "torrents/complete/tv/b/e.mkv", content)
    library = make(tree, "media/tv/Show/e.mkv", content)
    old = os.stat(str(library)).st_mtime - 3600
    for path in tree.rglob("*.mkv"):
        os.utime(str(path), (old, old))
    stack = stack_with_history(tree, run, [
        ("2026-11-30", data("/data/torrents/complete/tv/b/e.mkv", "/data/media/tv/Show/e.mkv"),
         IMPORTED)])  # fmt: skip
    path = tree / "containers.json"
    path.write_text(json.dumps(stack.containers))
    code, out, _ = run("--path", str(tree), "--relink", "--json", "--docker", str(path))
    document = json.loads(out)
    assert code == 0
    assert [(p["keep"], p["replace"]) for p in document["pairs"]] == [(str(b), str(library))]
    assert os.stat(str(library)).st_ino == os.stat(str(b)).st_ino
