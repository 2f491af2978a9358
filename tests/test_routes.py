"""--check's routes: each download from the client's folder to the importer's root
folders, read from the apps' own settings (real files: SQLite dbs, INI, JSON)."""

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import cms

TREE_OPTIONS = ["--owner", "1000:1000"] if os.getuid() == 0 else []
LSIO = ["PUID=1000", "PGID=1000", "UMASK=002"]


def inspect(name, image, mounts, network="bridge", ports=(), hostname="", aliases=(), env=LSIO):
    """One container as `docker inspect` prints it (the fields we read, in their shape)."""
    return {
        "Id": name.encode().hex().ljust(64, "0"),
        "Name": "/" + name,
        "Config": {
            "Image": image,
            "Env": list(env),
            "User": "",
            "Labels": {},
            "Hostname": hostname or name.encode().hex()[:12],
        },
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {
            "Ports": {"%d/tcp" % p: [{"HostIp": "0.0.0.0", "HostPort": str(p)}] for p in ports},
            "Networks": {"media": {"Aliases": list(aliases), "DNSNames": [name]}},
        },
        "Mounts": [
            {"Type": "bind", "Source": source, "Destination": target, "RW": True}
            for source, target in mounts
        ],
    }


def arr_db(path, roots=(), rows=(), mappings=(), config=None, keep_open=False):
    """An *arr's database, with the tables and columns the apps have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for end in ("", "-wal", "-shm"):  # a new db in place of the guides' one
        if os.path.lexists(str(path) + end):
            os.unlink(str(path) + end)
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=wal")
    db.executescript("""
        CREATE TABLE RootFolders (Id INTEGER PRIMARY KEY, Path TEXT NOT NULL);
        CREATE TABLE RemotePathMappings (Id INTEGER PRIMARY KEY, Host TEXT NOT NULL,
            RemotePath TEXT NOT NULL, LocalPath TEXT NOT NULL);
        CREATE TABLE DownloadClients (Id INTEGER PRIMARY KEY, Enable INTEGER NOT NULL,
            Name TEXT NOT NULL, Implementation TEXT NOT NULL, Settings TEXT NOT NULL,
            ConfigContract TEXT NOT NULL, Priority INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE Config (Id INTEGER PRIMARY KEY, Key TEXT NOT NULL, Value TEXT NOT NULL);
    """)
    db.executemany("INSERT INTO RootFolders (Path) VALUES (?)", [(r,) for r in roots])
    db.executemany(
        "INSERT INTO RemotePathMappings (Host, RemotePath, LocalPath) VALUES (?, ?, ?)", mappings
    )
    for enable, name, implementation, settings in rows:
        db.execute(
            "INSERT INTO DownloadClients (Enable, Name, Implementation, Settings, "
            "ConfigContract) VALUES (?, ?, ?, ?, ?)",
            (enable, name, implementation, json.dumps(settings), implementation + "Settings"),
        )
    for key, value in (config or {}).items():
        db.execute("INSERT INTO Config (Key, Value) VALUES (?, ?)", (key, value))
    db.commit()
    if keep_open:
        return db
    db.close()
    return None


def qb_row(host="qbittorrent", port=8080, category="tv-sonarr", enable=1, name="qBittorrent"):
    return (enable, name, "QBittorrent", {"host": host, "port": port, "tvCategory": category})


def sab_row(host="sabnzbd", port=8080, category="tv"):
    return (1, "SABnzbd", "Sabnzbd", {"host": host, "port": port, "tvCategory": category})


QB_LAYOUTS = {
    "linuxserver": "qBittorrent/qBittorrent.conf",
    "hotio": "config/qBittorrent.conf",
    "official": "qBittorrent/config/qBittorrent.conf",
}


def qbittorrent(
    config,
    save="/data/torrents/complete",
    layout="linuxserver",
    legacy=False,
    automatic=True,
    categories=None,
    temp=None,
):
    conf = config / QB_LAYOUTS[layout]
    conf.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[BitTorrent]"]
    if not legacy:
        lines.append("Session\\DefaultSavePath=%s" % save)
    if automatic:
        lines.append("Session\\DisableAutoTMMByDefault=false")
    if temp:
        lines += ["Session\\TempPathEnabled=true", "Session\\TempPath=%s" % temp]
    # linuxserver's default file starts with the legacy key; upgrades leave it behind
    lines += [
        "",
        "[Preferences]",
        "Downloads\\SavePath=%s" % (save if legacy else "/downloads/"),
        "WebUI\\Port=8080",
    ]
    conf.write_text("\n".join(lines) + "\n")
    cats = {"tv-sonarr": {"save_path": ""}} if categories is None else categories
    (conf.parent / "categories.json").write_text(json.dumps(cats))


class Stack:
    """A docker stack on the tree: containers, their config folders, and the check."""

    def __init__(self, tree, run):
        self.tree, self.run = tree, run
        self.data = str(tree / "data")
        self.containers = []

    def config(self, name):
        folder = self.tree / "appdata" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, name, image, mounts, **more):
        mounts = list(mounts) + [(str(self.config(name)), "/config")]
        st = os.stat(self.data)  # the apps write as the tree's owner (1000:1000 as root)
        env = ["PUID=%d" % st.st_uid, "PGID=%d" % st.st_gid, "UMASK=002"]
        self.containers.append(inspect(name, image, mounts, env=env, **more))
        return self.config(name)

    def guides(self, rows=None, roots=("/data/media/tv",)):
        """The guides' layout done right: qBittorrent, SABnzbd, Sonarr, Plex."""
        d = self.data
        qb = self.add(
            "qbittorrent", "lscr.io/linuxserver/qbittorrent", [(d + "/torrents", "/data/torrents")]
        )
        qbittorrent(qb, categories={"tv-sonarr": {"save_path": ""}})
        sab = self.add("sabnzbd", "lscr.io/linuxserver/sabnzbd", [(d + "/usenet", "/data/usenet")])
        (sab / "sabnzbd.ini").write_text(
            "__version__ = 19\n[misc]\ncomplete_dir = /data/usenet/complete\n"
            "download_dir = /data/usenet/incomplete\n[categories]\n[[*]]\ndir = \n"
            "[[tv]]\nname = tv\ndir = tv\n"
        )
        sonarr = self.add("sonarr", "lscr.io/linuxserver/sonarr", [(d, "/data")])
        arr_db(sonarr / "sonarr.db", roots, [qb_row(), sab_row()] if rows is None else rows)
        plex = self.add("plex", "plexinc/pms-docker", [(d + "/media", "/data/media")])
        plex_db(plex, ["/data/media/tv", "/data/media/movies"])
        return sonarr

    def sonarr(self, rows):
        """A Sonarr that sees the whole tree, root folder /data/media/tv, with these rows."""
        config = self.add("sonarr", "lscr.io/linuxserver/sonarr", [(self.data, "/data")])
        arr_db(config / "sonarr.db", ["/data/media/tv"], rows)

    def check(self, *extra):
        path = self.tree / "containers.json"
        path.write_text(json.dumps(self.containers))
        code, out, err = self.run(
            "--path", str(self.tree), "--check", "--json", "--docker", str(path), *extra
        )
        assert out, err
        return code, json.loads(out)

    def text(self, *extra):
        path = self.tree / "containers.json"
        path.write_text(json.dumps(self.containers))
        return self.run("--path", str(self.tree), "--check", "--docker", str(path), *extra)


def plex_db(config, roots, layout="Library/Application Support/Plex Media Server"):
    folder = config / layout / "Plug-in Support" / "Databases"
    folder.mkdir(parents=True)
    db = sqlite3.connect(str(folder / "com.plexapp.plugins.library.db"))
    db.executescript("""
        CREATE TABLE library_sections (id INTEGER PRIMARY KEY, name TEXT, section_type INTEGER);
        CREATE TABLE section_locations (id INTEGER PRIMARY KEY, library_section_id INTEGER,
            root_path TEXT);
    """)
    db.executemany(
        "INSERT INTO section_locations (library_section_id, root_path) VALUES (1, ?)",
        [(r,) for r in roots],
    )
    db.commit()
    db.close()


def routes_findings(document):
    return sorted(
        (f["kind"], f.get("container", ""), f.get("other", ""), f["severity"])
        for f in document["findings"]
        if f["section"] == "routes"
    )


def results(document):
    return [
        (r["client"], r["category"], r["importer"], r["result"], r["cause"])
        for r in document["routes"]
    ]


@pytest.fixture
def stack(tree, run):
    return Stack(tree, run)


def test_the_guides_layout_every_route_a_hardlink_or_move(stack):
    stack.guides()
    code, document = stack.check()
    assert code == 0, document["findings"]
    assert routes_findings(document) == []
    assert document["sections"]["routes"] == "ok"
    assert results(document) == [
        ("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None),
        ("sabnzbd", "tv", "sonarr", "move", None),
    ]
    first = document["routes"][0]
    assert first["download"] == stack.data + "/torrents/complete/tv-sonarr"
    assert first["seen_as"] == "/data/torrents/complete/tv-sonarr"
    assert first["root"] == stack.data + "/media/tv"


def test_the_text_one_line_per_route(stack):
    stack.guides()
    code, out, _ = stack.text()
    assert code == 0
    d = stack.data
    assert "routes       ok\n" in out
    assert (
        "  qbittorrent [tv-sonarr] -> sonarr: %s/torrents/complete/tv-sonarr -> "
        "%s/media/tv: hardlink\n" % (d, d)
    ) in out
    assert "  sabnzbd [tv] -> sonarr: %s/usenet/complete/tv -> %s/media/tv: move\n" % (d, d) in out


def test_split_volumes_cite_the_containers_finding(stack):
    # Sonarr given ./data/tv and ./data/downloads: every import a copy, Sonarr says nothing.
    d = stack.data
    stack.guides()
    stack.containers[2]["Mounts"][:1] = [
        {"Type": "bind", "Source": d + "/torrents", "Destination": "/data/torrents", "RW": True},
        {"Type": "bind", "Source": d + "/usenet", "Destination": "/data/usenet", "RW": True},
        {"Type": "bind", "Source": d + "/media/tv", "Destination": "/data/media/tv", "RW": True},
    ]
    code, document = stack.check()
    assert code == 1
    assert [(r["result"], r["cause"]) for r in document["routes"]] == [
        ("copy", "split-mounts"),
        ("copy", "split-mounts"),
    ]
    assert routes_findings(document) == []  # the containers section said it


def test_import_copies_where_the_mounts_alone_dont_say(stack, tmp_path):
    # Two binds of the tree's own folders at separate points the containers section
    # accepts (one covers media/ and a source) but the root folder is on the other.
    d = stack.data
    stack.guides(roots=("/library/tv",))
    stack.containers[2]["Mounts"].append(
        {"Type": "bind", "Source": d + "/media", "Destination": "/library", "RW": True}
    )
    code, document = stack.check()
    assert code == 1
    assert ("import-copies", "sonarr", "qbittorrent", "problem") in routes_findings(document)
    assert document["routes"][0]["result"] == "copy"


def test_root_folder_inside_the_downloads(stack):
    stack.guides(roots=("/data/torrents/complete",))
    code, document = stack.check()
    assert code == 1
    kinds = routes_findings(document)
    assert ("root-in-downloads", "sonarr", "qbittorrent", "problem") in kinds
    assert ("root-outside-media", "sonarr", "", "warning") in kinds
    assert ("library-unseen", "plex", "sonarr", "warning") in kinds


def test_a_save_folder_on_no_mount(stack):
    stack.guides()
    qbittorrent(stack.config("qbittorrent"), save="/downloads")
    code, document = stack.check()
    assert code == 1
    assert ("save-unmounted", "qbittorrent", "", "problem") in routes_findings(document)
    assert document["routes"][0]["result"] == "unseen"
    assert document["routes"][0]["cause"] == "save-unmounted"


def test_sabnzbd_relative_defaults_land_in_config(stack):
    stack.guides()
    (stack.config("sabnzbd") / "sabnzbd.ini").write_text("__version__ = 19\n[misc]\nport = 8080\n")
    code, document = stack.check()
    kinds = routes_findings(document)
    assert ("save-unmounted", "sabnzbd", "", "problem") in kinds
    unmounted = [f["path"] for f in document["findings"] if f["kind"] == "save-unmounted"]
    assert unmounted == ["/config/Downloads/complete", "/config/Downloads/incomplete"]


def test_a_mapping_to_the_wrong_folder(stack):
    stack.guides()
    arr_db(
        stack.config("sonarr") / "sonarr.db",
        ["/data/media/tv"],
        [qb_row()],
        mappings=[("qbittorrent", "/data/torrents/", "/data/usenet/")],
    )
    code, document = stack.check()
    assert code == 1
    assert ("mapping-wrong", "sonarr", "qbittorrent", "problem") in routes_findings(document)
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "unseen", "mapping-wrong")]


def client_at_downloads(stack, mappings=()):
    """qBittorrent sees its folder at /downloads, Sonarr at /data/torrents."""
    stack.guides()
    stack.containers[0]["Mounts"][0]["Destination"] = "/downloads"
    qbittorrent(stack.config("qbittorrent"), save="/downloads/complete")
    arr_db(stack.config("sonarr") / "sonarr.db", ["/data/media/tv"], [qb_row()], mappings)
    return stack.check()


def test_a_needless_mapping_replaces_the_path_mismatch(stack):
    # A remote path mapping makes imports work: the path-mismatch becomes a warning.
    code, document = client_at_downloads(stack, [("qbittorrent", "/downloads/", "/data/torrents/")])
    assert code == 0, document["findings"]
    assert not [f for f in document["findings"] if f["kind"] == "path-mismatch"]
    assert routes_findings(document) == [("mapping-needless", "sonarr", "qbittorrent", "warning")]
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]
    assert document["routes"][0]["seen_as"] == "/data/torrents/complete/tv-sonarr"
    assert document["sections"]["containers"] == "ok"
    verdicts = {c["name"]: c["verdict"] for c in document["containers"]}
    assert verdicts["qbittorrent"] == "ok"
    assert document["routes"][0]["download"] == stack.data + "/torrents/complete/tv-sonarr"


@pytest.mark.parametrize("mappings", [[], [("seedbox", "/downloads/", "/data/torrents/")]])
def test_the_mismatch_without_a_mapping_for_its_host_is_cited(stack, mappings):
    # Sonarr applies a remote path mapping only to the rows of its Host.
    code, document = client_at_downloads(stack, mappings)
    assert code == 1
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "unseen", "path-mismatch")]
    assert routes_findings(document) == []


def test_import_unseen(stack, tmp_path):
    # The client's folder is one the importer's mount points at another host folder.
    other = tmp_path / "elsewhere"
    other.mkdir()
    stack.guides()
    stack.containers[2]["Mounts"].append(
        {
            "Type": "bind",
            "Source": str(other),
            "Destination": "/data/torrents/complete/tv-sonarr",
            "RW": True,
        }
    )
    code, document = stack.check()
    assert ("import-unseen", "sonarr", "qbittorrent", "problem") in routes_findings(document)


def test_hardlinks_and_import_off(stack):
    stack.guides()
    arr_db(
        stack.config("sonarr") / "sonarr.db",
        ["/data/media/tv"],
        [qb_row(), sab_row()],
        config={"copyusinghardlinks": "False", "enablecompleteddownloadhandling": "False"},
    )
    code, document = stack.check()
    assert code == 1
    assert routes_findings(document) == [
        ("hardlinks-off", "sonarr", "", "problem"),
        ("import-off", "sonarr", "", "warning"),
    ]
    assert [r["result"] for r in document["routes"]] == ["copy", "move"]


def test_manual_mode_and_both_key_generations(stack):
    stack.guides()
    qbittorrent(stack.config("qbittorrent"), legacy=True, automatic=False)
    code, document = stack.check()
    assert routes_findings(document) == [("manual-mode", "qbittorrent", "", "warning")]
    assert document["routes"][0]["download"] == stack.data + "/torrents/complete"
    # 4.4+: the new key wins over the legacy /downloads/ left behind
    qbittorrent(stack.config("qbittorrent"))
    code, document = stack.check()
    assert document["routes"][0]["download"] == stack.data + "/torrents/complete/tv-sonarr"


@pytest.mark.parametrize("layout", sorted(QB_LAYOUTS))
def test_all_three_qbittorrent_layouts(stack, layout):
    stack.guides()
    config = stack.config("qbittorrent")
    for child in config.rglob("*"):
        if child.is_file():
            child.unlink()
    qbittorrent(config, layout=layout, categories={"tv-sonarr": {"save_path": "tv"}})
    code, document = stack.check()
    assert code == 0
    assert document["routes"][0]["download"] == stack.data + "/torrents/complete/tv"


def test_incomplete_elsewhere(stack, tmp_path):
    # Unraid's "incomplete on the cache disk": another mount, so every finish is a copy.
    cache = tmp_path / "cache"
    cache.mkdir()
    stack.guides()
    stack.containers[0]["Mounts"].append(
        {"Type": "bind", "Source": str(cache), "Destination": "/incomplete", "RW": True}
    )
    qbittorrent(stack.config("qbittorrent"), temp="/incomplete")
    code, document = stack.check()
    assert ("incomplete-elsewhere", "qbittorrent", "", "warning") in routes_findings(document)
    # under /config instead: on no data mount at all
    qbittorrent(stack.config("qbittorrent"), temp="/config/incomplete")
    code, document = stack.check()
    assert ("save-unmounted", "qbittorrent", "", "problem") in routes_findings(document)


@pytest.mark.parametrize("host", ["gluetun", "localhost"])
def test_a_client_behind_gluetun(stack, host):
    # network_mode: container:<gluetun>; with localhost, Sonarr is in gluetun's namespace too.
    d = stack.data
    stack.guides(rows=[qb_row(host=host)])
    stack.containers.append(inspect("gluetun", "qmcgaw/gluetun", [], ports=(8080,)))
    gluetun = "container:" + stack.containers[-1]["Id"]
    stack.containers[0]["HostConfig"]["NetworkMode"] = gluetun
    if host == "localhost":
        stack.containers[2]["HostConfig"]["NetworkMode"] = gluetun
    code, document = stack.check()
    assert code == 0, document["findings"]
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]
    assert document["routes"][0]["download"] == d + "/torrents/complete/tv-sonarr"


def test_an_ip_host_with_a_published_port(stack, monkeypatch):
    # 192.168.1.10 is this machine (the NAS's own address), here as there.
    monkeypatch.setattr(cms, "own_addresses", lambda: {"192.168.1.10", "localhost"})
    stack.guides(rows=[qb_row(host="192.168.1.10", port=8081)])
    stack.containers[0]["NetworkSettings"]["Ports"] = {
        "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]
    }
    code, document = stack.check()
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]


def test_a_seedbox_and_a_disabled_row(stack, run):
    stack.guides(
        rows=[
            qb_row(host="seedbox.example.net", port=443),
            qb_row(enable=0),
            (1, "rTorrent", "RTorrent", {"host": "rtorrent", "port": 5000}),
            (1, "Blackhole", "TorrentBlackhole", {"watchFolder": "/data/torrents/complete"}),
        ]
    )
    code, document = stack.check()
    assert code == 0
    # rTorrent is read (APPS has it): a row naming no container here is another machine's.
    assert results(document) == [
        ("seedbox.example.net", "tv-sonarr", "sonarr", "unknown", None),
        ("rtorrent", None, "sonarr", "unknown", None),
    ]
    assert routes_findings(document) == []
    assert any("TorrentBlackhole" in note and "not read here" in note for note in document["notes"])
    code, out, _ = stack.text()
    assert "  seedbox.example.net [tv-sonarr] -> sonarr: unknown: client not on this machine" in out


def test_a_postgresql_app_and_a_broken_db(stack):
    stack.guides()
    sonarr = stack.config("sonarr")
    (sonarr / "config.xml").write_text("<Config><PostgresHost>db</PostgresHost></Config>")
    code, document = stack.check()
    assert routes_findings(document) == [("settings-unread", "sonarr", "", "warning")]
    assert "PostgreSQL" in next(
        f["detail"] for f in document["findings"] if f["kind"] == "settings-unread"
    )
    (sonarr / "config.xml").unlink()
    (sonarr / "sonarr.db").write_bytes(b"not a database at all" * 100)
    code, document = stack.check()
    assert code == 0
    assert routes_findings(document) == [("settings-unread", "sonarr", "", "warning")]


@pytest.mark.parametrize("bad", ["[BitTorrent\nnot ini", "\x00\x01", "a=b\n"])
def test_a_conf_that_isnt_ini_is_unread_not_a_crash(stack, bad):
    stack.guides()
    (stack.config("qbittorrent") / QB_LAYOUTS["linuxserver"]).write_text(bad)
    code, document = stack.check()
    assert ("settings-unread", "qbittorrent", "", "warning") in routes_findings(document)
    assert document["routes"][0]["result"] == "unknown"


def test_a_fifo_in_place_of_a_settings_file_doesnt_hang(stack):
    stack.guides()
    conf = stack.config("qbittorrent") / QB_LAYOUTS["linuxserver"]
    conf.unlink()
    os.mkfifo(str(conf))
    code, document = stack.check()
    assert ("settings-unread", "qbittorrent", "", "warning") in routes_findings(document)


def test_reading_changes_nothing_in_the_config_folders(stack):
    stack.guides()
    sonarr = stack.config("sonarr")
    running = arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [qb_row()], keep_open=True)
    assert (sonarr / "sonarr.db-wal").exists() and (sonarr / "sonarr.db-shm").exists()

    def listing():
        root = stack.tree / "appdata"
        return sorted(
            (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")
        )

    before = listing()
    code, document = stack.check()
    assert code == 0 and document["routes"][0]["result"] == "hardlink"
    assert listing() == before
    running.close()
    before = listing()  # no -wal now: read as an immutable file
    code, document = stack.check()
    assert listing() == before and document["routes"][0]["result"] == "hardlink"


def test_a_wal_without_its_shm_is_read_from_a_private_copy(stack, tmp_path):
    stack.guides()
    sonarr = stack.config("sonarr")
    source = tmp_path / "live"
    running = arr_db(source / "sonarr.db", ["/data/media/tv"], [qb_row()], keep_open=True)
    for end in ("", "-wal"):
        (sonarr / ("sonarr.db" + end)).write_bytes((source / ("sonarr.db" + end)).read_bytes())
    running.close()
    names = sorted(os.listdir(str(sonarr)))
    code, document = stack.check()
    assert document["routes"][0]["result"] == "hardlink"  # the rows were only in the -wal
    assert sorted(os.listdir(str(sonarr))) == names


def test_nothing_configured_gives_no_finding(stack):
    stack.guides()
    arr_db(stack.config("radarr") / "radarr.db")
    stack.add("radarr", "lscr.io/linuxserver/radarr", [(stack.data, "/data")])
    stack.add("jellyfin", "jellyfin/jellyfin", [(stack.data + "/media", "/data/media")])
    code, out, _ = stack.text()
    assert code == 0
    assert "  radarr: nothing configured\n" in out
    assert "  jellyfin: nothing configured\n" in out


def test_jellyfin_libraries_both_layouts(stack):
    stack.guides()
    for name, layout in (("jellyfin", "data/root/default"), ("emby", "root/default")):
        config = stack.add(
            name, "lscr.io/linuxserver/" + name, [(stack.data + "/media", "/data/media")]
        )
        library = config / layout / "Movies"
        library.mkdir(parents=True)
        (library / "movies.mblink").write_text("/data/media/movies")
    code, document = stack.check()
    kinds = routes_findings(document)
    assert ("library-unseen", "jellyfin", "sonarr", "warning") in kinds
    assert ("library-unseen", "emby", "sonarr", "warning") in kinds
    assert ("library-unseen", "plex", "sonarr", "warning") not in kinds


def test_binhex_images_and_a_compose_named_config_volume(stack):
    d = stack.data
    qb = stack.add(
        "qbittorrentvpn", "binhex/arch-qbittorrentvpn", [(d + "/torrents", "/data/torrents")]
    )
    qbittorrent(qb, layout="official")
    sonarr = stack.add("sonarr", "binhex/arch-sonarr", [(d, "/data")])
    arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [qb_row(host="qbittorrentvpn")])
    code, document = stack.check()
    assert results(document) == [("qbittorrentvpn", "tv-sonarr", "sonarr", "hardlink", None)]
    compose = {
        "services": {
            "sonarr": {
                "image": "lscr.io/linuxserver/sonarr",
                "volumes": ["sonarr-config:/config", d + ":/data"],
            }
        }
    }
    path = stack.tree / "compose.json"
    path.write_text(json.dumps(compose))
    code, out, _ = stack.run("--path", str(stack.tree), "--check", "--json", "--docker", str(path))
    document = json.loads(out)
    assert routes_findings(document) == [("settings-unread", "sonarr", "", "warning")]


def test_config_folders_of_another_machine_are_said_once(stack):
    stack.guides()
    for item in stack.containers:
        for mount in item["Mounts"]:
            if mount["Destination"] == "/config":
                mount["Source"] = "/nonexistent/appdata/" + item["Name"]
    code, document = stack.check()
    assert (
        document["sections"]["routes"] == "not checked: the config folders aren't on this machine"
    )
    assert routes_findings(document) == []


def test_native_apps_with_app(tree, run):
    # Installed without docker: container paths are host paths.
    d = str(tree / "data")
    qb = tree / "home" / ".config" / "qBittorrent"
    qb.mkdir(parents=True)
    (qb / "qBittorrent.conf").write_text(
        "[BitTorrent]\nSession\\DefaultSavePath=%s/torrents/complete\n"
        "Session\\DisableAutoTMMByDefault=false\n" % d
    )
    (qb / "categories.json").write_text('{"tv-sonarr": {"save_path": ""}}')
    sonarr = tree / "var" / "lib" / "sonarr"
    arr_db(sonarr / "sonarr.db", [d + "/media/tv"], [qb_row(host="localhost")])
    code, out, err = run(
        "--path",
        str(tree),
        "--check",
        "--json",
        "--app",
        "qbittorrent=%s" % qb,
        "--app",
        "SONARR=%s" % sonarr,
    )
    document = json.loads(out)
    assert code == 0, document["findings"]
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]
    assert "containers" not in document


@pytest.mark.parametrize("value", ["sonarr", "couchpotato=/tmp", "sonarr=/no/such/folder"])
def test_bad_app_options_are_usage_errors(tree, run, value):
    code, _, err = run("--path", str(tree), "--check", "--app", value)
    assert code == 2 and "--app" in err


def test_app_goes_with_check_only(tree, run):
    code, _, err = run("--path", str(tree), "--app", "sonarr=%s" % tree)
    assert code == 2 and "--app does not go with" in err


def test_quiet_prints_container_and_other(stack):
    stack.guides(roots=("/data/torrents/complete",))
    code, out, err = stack.text("-q")
    assert code == 1 and out == ""
    assert "problem: sonarr/qbittorrent: %s/torrents/complete: root folder" % stack.data in err


def test_without_sqlite3_the_importers_are_not_checked(stack, monkeypatch):
    import builtins

    stack.guides()
    real = builtins.__import__

    def no_sqlite(name, *args, **kwargs):
        if name == "sqlite3":
            raise ImportError("No module named 'sqlite3'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sqlite)
    code, out, _ = stack.text()
    assert code == 0
    assert "  sonarr: not checked: this Python has no sqlite3\n" in out
    assert "settings-unread" not in out


def test_transmission_deluge_nzbget(stack):
    d = stack.data
    tr = stack.add(
        "transmission", "lscr.io/linuxserver/transmission", [(d + "/torrents", "/data/torrents")]
    )
    (tr / "settings.json").write_text(
        json.dumps({"download_dir": "/data/torrents/complete", "incomplete-dir-enabled": False})
    )
    de = stack.add("deluge", "lscr.io/linuxserver/deluge", [(d + "/torrents", "/data/torrents")])
    (de / "core.conf").write_text(
        '{"file": 1, "format": 1}{"download_location": '
        '"/data/torrents/incomplete", "move_completed": true, '
        '"move_completed_path": "/data/torrents/complete"}'
    )
    nz = stack.add("nzbget", "lscr.io/linuxserver/nzbget", [(d + "/usenet", "/data/usenet")])
    (nz / "nzbget.conf").write_text(
        "MainDir=/data/usenet\nDestDir=${MainDir}/complete\n"
        "InterDir=${MainDir}/incomplete\nCategory1.Name=tv\n"
    )
    rows = [
        (1, name, name, {"host": name.lower(), "port": port, "tvCategory": "tv"})
        for name, port in (("Transmission", 9091), ("Deluge", 8112), ("Nzbget", 6789))
    ]
    stack.sonarr(rows)
    code, document = stack.check()
    assert code == 0, document["findings"]
    assert [(r["client"], r["download"], r["result"]) for r in document["routes"]] == [
        ("transmission", d + "/torrents/complete/tv", "hardlink"),
        ("deluge", d + "/torrents/complete", "hardlink"),
        ("nzbget", d + "/usenet/complete/tv", "move"),
    ]


def test_two_clients_that_cant_be_told_apart(stack):
    stack.guides(rows=[qb_row(host="192.168.1.10", port=9999)])
    stack.add(
        "qbittorrent-2",
        "lscr.io/linuxserver/qbittorrent",
        [(stack.data + "/torrents", "/data/torrents")],
    )
    qbittorrent(stack.config("qbittorrent-2"))
    code, document = stack.check()
    assert document["routes"][0]["result"] == "unknown"


def test_an_address_of_this_machine_means_its_only_client(stack):
    stack.guides(rows=[qb_row(host="host.docker.internal", port=9999)])
    code, document = stack.check()
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]
    assert any("the only QBittorrent on this machine" in n for n in document["notes"])


def test_every_kind_of_routes_is_made_by_a_test():
    # The kinds above each come from a real file: none of the registry's is untested.
    source = Path(__file__).read_text() + (Path(__file__).parent / "test_verdicts.py").read_text()
    kinds = [k for k, known in cms.KINDS.items() if known.section == "routes"]
    assert len(kinds) == 14
    assert [k for k in kinds if '"%s"' % k not in source] == []


def test_an_importer_set_up_later_says_nothing_configured(stack):
    # Hardlinks off in a Sonarr with no root folder and no client yet: no finding.
    stack.guides()
    arr_db(stack.config("sonarr") / "sonarr.db", config={"copyusinghardlinks": "False"})
    code, out, _ = stack.text()
    assert code == 0
    assert "  sonarr: nothing configured\n" in out and "hardlinks-off" not in out


@pytest.mark.parametrize(
    ("app", "name", "text"),
    [
        ("deluge", "core.conf", ""),
        ("deluge", "core.conf", '{"file": 1}["not", "an object"]'),
        ("transmission", "settings.json", "[1, 2]"),
        ("transmission", "settings.json", "[" * 100000),
        ("sabnzbd", "sabnzbd.ini", "[misc]\nthis line has no equals sign\n"),
        ("qbittorrent", "qBittorrent/categories.json", '["tv"]'),
    ],
)
def test_settings_of_another_shape_are_unread_not_a_crash(stack, app, name, text):
    d = stack.data
    stack.guides()
    if app in ("deluge", "transmission"):
        stack.add(app, "lscr.io/linuxserver/" + app, [(d + "/torrents", "/data/torrents")])
    (stack.config(app) / name).write_text(text)
    code, document = stack.check()
    assert ("settings-unread", app, "", "warning") in routes_findings(document)


@pytest.mark.skipif(os.getuid() == 0, reason="root reads any folder")
def test_a_library_folder_that_cant_be_listed(stack):
    stack.guides()
    config = stack.add("jellyfin", "jellyfin/jellyfin", [(stack.data + "/media", "/data/media")])
    library = config / "root" / "default" / "Shows"
    library.mkdir(parents=True)
    library.chmod(0)
    try:
        code, document = stack.check()
    finally:
        library.chmod(0o755)
    assert ("settings-unread", "jellyfin", "", "warning") in routes_findings(document)


def test_a_fifo_db_an_oversized_conf_and_an_unknown_layout_are_unread(stack):
    stack.guides()
    sonarr = stack.config("sonarr") / "sonarr.db"
    sonarr.unlink()
    os.mkfifo(str(sonarr))  # sqlite's own open would wait on it for good
    conf = stack.config("qbittorrent") / QB_LAYOUTS["linuxserver"]
    conf.write_text("[BitTorrent]\n" + "; padding\n" * (1 << 19))
    sab = stack.config("sabnzbd")
    (sab / "sabnzbd.ini").rename(sab / "notes.txt")
    code, document = stack.check()
    kinds = routes_findings(document)
    for app in ("sonarr", "qbittorrent", "sabnzbd"):
        assert ("settings-unread", app, "", "warning") in kinds
    details = " ".join(f["detail"] for f in document["findings"])
    assert "not a regular file" in details and "more than a settings file holds" in details


def test_a_deluge_label_moves_its_downloads(stack):
    d = stack.data
    config = stack.add(
        "deluge", "lscr.io/linuxserver/deluge", [(d + "/torrents", "/data/torrents")]
    )
    (config / "core.conf").write_text(
        '{"file": 1}\n{"download_location": "/data/torrents/complete"}'
    )
    (config / "label.conf").write_text(
        '{"file": 1}{"labels": {"tv": {"apply_move_completed": true, "move_completed": true,'
        ' "move_completed_path": "/data/torrents/complete/tv"}}}'
    )
    stack.sonarr([(1, "Deluge", "Deluge", {"host": "deluge", "port": 8112, "tvCategory": "tv"})])
    code, document = stack.check()
    assert [(r["download"], r["result"]) for r in document["routes"]] == [
        (d + "/torrents/complete/tv", "hardlink")
    ]


def test_two_clients_in_one_namespace_cant_be_told_apart(stack):
    stack.guides(rows=[qb_row(host="gluetun")])
    stack.add(
        "qbittorrent-2",
        "lscr.io/linuxserver/qbittorrent",
        [(stack.data + "/torrents", "/data/torrents")],
    )
    qbittorrent(stack.config("qbittorrent-2"))
    stack.containers.append(inspect("gluetun", "qmcgaw/gluetun", [], ports=(8080,)))
    for at in (0, -2):
        stack.containers[at]["HostConfig"]["NetworkMode"] = "service:gluetun"
    code, document = stack.check()
    assert document["routes"][0]["result"] == "unknown"
    code, out, _ = stack.text()
    assert "unknown: 2 QBittorrent clients here answer to gluetun" in out


def test_native_plex_given_the_folder_that_holds_its_files(tree, run):
    # Synology's Plex package: --app plex=".../AppData/Plex Media Server" itself.
    d = str(tree / "data")
    appdata = tree / "PlexMediaServer" / "AppData"
    plex_db(appdata, [d + "/media/movies"], layout="Plex Media Server")
    sonarr = tree / "sonarr"
    arr_db(sonarr / "sonarr.db", [d + "/media/tv"])
    code, out, _ = run(
        "--path",
        str(tree),
        "--check",
        "--json",
        "--app",
        "plex=%s" % (appdata / "Plex Media Server"),
        "--app",
        "sonarr=%s" % sonarr,
    )
    document = json.loads(out)
    assert routes_findings(document) == [("library-unseen", "plex", "sonarr", "warning")]


def test_compose_a_client_behind_gluetun_as_a_service(stack):
    # docker compose config: network_mode service:gluetun, the row's host is gluetun.
    d = stack.data
    qb = stack.config("qbittorrent")
    qbittorrent(qb)
    sonarr = stack.config("sonarr")
    arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [qb_row(host="gluetun")])
    services = {
        "gluetun": {"image": "qmcgaw/gluetun", "ports": ["8080:8080"]},
        "qbittorrent": {
            "image": "lscr.io/linuxserver/qbittorrent",
            "network_mode": "service:gluetun",
            "volumes": [str(qb) + ":/config", d + "/torrents:/data/torrents"],
        },
        "sonarr": {
            "image": "lscr.io/linuxserver/sonarr",
            "volumes": [str(sonarr) + ":/config", d + ":/data"],
        },
    }
    path = stack.tree / "compose.json"
    path.write_text(json.dumps({"services": services}))
    code, out, _ = stack.run("--path", str(stack.tree), "--check", "--json", "--docker", str(path))
    document = json.loads(out)
    assert results(document) == [("qbittorrent", "tv-sonarr", "sonarr", "hardlink", None)]


def test_two_native_qbittorrents_told_apart_by_their_web_ui_port(tree, run):
    d = str(tree / "data")
    folders = []
    for number, (port, category) in enumerate(((8080, "tv"), (8081, "tv-4k"))):
        qb = tree / ("qb%d" % number)
        qb.mkdir()
        (qb / "qBittorrent.conf").write_text(
            "[BitTorrent]\nSession\\DefaultSavePath=%s/torrents/complete\n"
            "Session\\DisableAutoTMMByDefault=false\n[Preferences]\nWebUI\\Port=%d\n" % (d, port)
        )
        (qb / "categories.json").write_text(json.dumps({category: {"save_path": ""}}))
        folders += ["--app", "qbittorrent=%s" % qb]
    sonarr = tree / "sonarr"
    arr_db(
        sonarr / "sonarr.db",
        [d + "/media/tv"],
        [qb_row(host="127.0.0.1", port=8081, category="tv-4k")],
    )
    code, out, _ = run(
        "--path", str(tree), "--check", "--json", "--app", "sonarr=%s" % sonarr, *folders
    )
    document = json.loads(out)
    assert results(document) == [("qbittorrent-2", "tv-4k", "sonarr", "hardlink", None)]
    assert document["routes"][0]["download"] == d + "/torrents/complete/tv-4k"


def test_a_native_app_unread_names_its_folder(tree, run):
    folder = tree / "sonarr-config"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a database")
    code, out, _ = run("--path", str(tree), "--check", "--json", "--app", "sonarr=%s" % folder)
    document = json.loads(out)
    unread = [f for f in document["findings"] if f["kind"] == "settings-unread"]
    assert [(f["container"], f["path"]) for f in unread] == [("sonarr", str(folder))]
    assert code == 0 and document["routes"] == []


def test_a_db_whose_table_never_ends_is_stopped(stack):
    # A hostile db: RootFolders is a view of an endless recursion, DownloadClients of
    # more rows than any settings hold.
    stack.guides()
    path = stack.config("sonarr") / "sonarr.db"
    db = sqlite3.connect(str(path))
    db.executescript("""
        DROP TABLE RootFolders;
        CREATE VIEW RootFolders AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1
            FROM n) SELECT 'p' || x AS Path FROM n WHERE x < 0;
    """)
    db.close()
    code, document = stack.check()
    unread = [f["detail"] for f in document["findings"] if f["kind"] == "settings-unread"]
    assert len(unread) == 1 and "takes too long" in unread[0]
    db = sqlite3.connect(str(path))
    db.executescript("""
        DROP VIEW RootFolders;
        CREATE VIEW RootFolders AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1
            FROM n) SELECT 'p' || x AS Path FROM n;
    """)
    db.close()
    code, document = stack.check()
    unread = [f["detail"] for f in document["findings"] if f["kind"] == "settings-unread"]
    assert len(unread) == 1 and "more than settings hold" in unread[0]


def test_docker_host_elsewhere_leaves_the_app_ones_checked(tree, run, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2375")
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker")
    document = json.loads(out)
    assert (
        document["sections"]["routes"] == "not checked: the config folders aren't on this machine"
    )
    sonarr = tree / "sonarr"
    arr_db(sonarr / "sonarr.db", [str(tree / "data" / "media" / "tv")])
    code, out, _ = run(
        "--path", str(tree), "--check", "--json", "--docker", "--app", "sonarr=%s" % sonarr
    )
    document = json.loads(out)
    assert document["sections"]["routes"] == "ok"
    assert any("only the --app ones were" in note for note in document["notes"])
