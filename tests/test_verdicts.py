"""Verdicts that real stacks got wrong (issue 28's list): each test failed before its fix."""

import json
import os
import sqlite3
import subprocess

import pytest
import test_routes
from test_routes import (
    QB_LAYOUTS,
    Stack,
    arr_db,
    inspect,
    qb_row,
    qbittorrent,
    sab_row,
)

from conftest import cms, needs_root

TREE_OPTIONS = test_routes.TREE_OPTIONS  # the tree fixture: the apps' owner, as root


@pytest.fixture
def stack(tree, run):
    return Stack(tree, run)


def kinds(document, section="routes"):
    return sorted(
        (f["kind"], f.get("container", ""), f["severity"])
        for f in document["findings"]
        if f["section"] == section
    )


# -- remote path mappings: the first that holds the download, in Id order ---------------------


def test_the_first_mapping_in_id_order_wins_not_the_longest():
    mappings = [
        ("QBittorrent", "/downloads", "/data/torrents/complete"),
        ("qbittorrent", "/downloads/tv", "/elsewhere/tv"),  # longer: Sonarr never gets here
    ]
    path, used = cms.through_mappings(mappings, "qBitTorrent", "/downloads/tv/Show.S01")
    assert (path, used) == ("/data/torrents/complete/tv/Show.S01", mappings[0])


def test_paths_are_compared_as_the_kernel_reads_them():
    mappings = [("sabnzbd", "//downloads/./complete/", "/data/usenet/complete/")]
    path, used = cms.through_mappings(mappings, "sabnzbd", "//downloads/complete//tv/")
    assert (path, used) == ("/data/usenet/complete/tv", mappings[0])
    sonarr = cms._from_inspect(
        {
            "Name": "/sonarr",
            "Config": {"Image": "lscr.io/linuxserver/sonarr"},
            "Mounts": [{"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": True}],
        }
    )
    app = cms.App("sonarr", "sonarr", sonarr, "", cms.NOTHING_SET)
    assert cms.to_host(app, "//data/usenet/complete/")[0] == "/srv/data/usenet/complete"


# -- --app, and what makes a container an app ---------------------------------------------------


def test_app_with_an_empty_folder_is_a_usage_error(tree, run, monkeypatch):
    monkeypatch.chdir(tree)  # KIND= was taken for the current folder
    code, out, err = run("--path", str(tree), "--check", "--app", "sonarr=")
    assert (code, out) == (2, "")
    assert "'sonarr=': DIR is empty; give KIND=DIR" in err


@pytest.mark.parametrize(
    "image, label, role",
    [
        ("debian:bookworm", "init-sabnzbd", "unknown"),  # a one-shot copy job: no client
        ("alpine", "sonarr-init", "unknown"),
        ("python:3.12-slim", "radarr-helper", "unknown"),
        ("registry.local/custom-build:1", "sonarr", "importer"),  # unknown image: a hint
        ("", "qbittorrent", "download client"),
        ("lscr.io/linuxserver/sonarr", "anything", "importer"),
    ],
)
def test_only_an_image_makes_a_container_an_app(image, label, role):
    assert cms._role(image, label)[0] == role


# -- PostgreSQL: a name in PostgresHost, or the environment ---------------------------------------


@pytest.mark.parametrize(
    "element",
    ["<PostgresHost />", "<PostgresHost></PostgresHost>", "<PostgresHost>  </PostgresHost>"],
)
def test_an_empty_postgres_host_is_sqlite(stack, element):
    stack.guides()
    (stack.config("sonarr") / "config.xml").write_text("<Config>%s</Config>" % element)
    code, document = stack.check()
    assert kinds(document) == [] and code == 0  # read: the db's rows are routes
    assert [r["importer"] for r in document["routes"]].count("sonarr") == 2


def test_postgres_from_the_environment_is_not_the_leftover_db(stack):
    stack.guides()
    for container in stack.containers:
        if container["Name"] == "/sonarr":
            container["Config"]["Env"].append("SONARR__POSTGRES__HOST=postgres")
    code, document = stack.check()
    (item,) = [f for f in document["findings"] if f["kind"] == "settings-unread"]
    assert item["detail"].startswith("SONARR__POSTGRES__HOST=postgres: the app keeps its settings")
    assert not [r for r in document["routes"] if r["importer"] == "sonarr"]


# -- hardlinks-off is a torrent client's problem ---------------------------------------------------


def test_hardlinks_off_without_a_torrent_client_is_a_warning(stack):
    sab = stack.add(
        "sabnzbd", "lscr.io/linuxserver/sabnzbd", [(stack.data + "/usenet", "/data/usenet")]
    )
    (sab / "sabnzbd.ini").write_text(
        "[misc]\ncomplete_dir = /data/usenet/complete\ndownload_dir = /data/usenet/incomplete\n"
    )
    sonarr = stack.add("sonarr", "lscr.io/linuxserver/sonarr", [(stack.data, "/data")])
    arr_db(
        sonarr / "sonarr.db",
        ["/data/media/tv"],
        [sab_row()],
        config={"copyusinghardlinks": "False"},
    )
    code, document = stack.check()
    assert ("hardlinks-off", "sonarr", "warning") in kinds(document)
    assert code == 0, document["findings"]  # usenet imports move either way


@pytest.mark.parametrize(
    "implementation, severity", [("NzbVortex", "warning"), ("UTorrent", "problem")]
)
def test_a_client_the_registry_has_no_record_of_is_a_torrent_client_by_its_name(
    stack, implementation, severity
):
    """One answer to "is it a torrent client?" for the routes and the imports: a usenet
    client the registry doesn't know is none (it was taken for one)."""
    sonarr = stack.add("sonarr", "lscr.io/linuxserver/sonarr", [(stack.data, "/data")])
    row = (1, implementation, implementation, {"host": "x", "port": 1, "tvCategory": "tv"})
    arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [row],
           config={"copyusinghardlinks": "False"})  # fmt: skip
    _, document = stack.check()
    assert ("hardlinks-off", "sonarr", severity) in kinds(document)
    assert cms.torrent_client(implementation) == (severity == "problem")


# -- cannot-link: a torrent's folder stays the client's --------------------------------------------


def access(links, moves):
    return (links, "/d/f" if links else "", moves, "/d/g" if moves else "", 0, "")


@pytest.mark.parametrize(
    "source, links, moves, severity",
    [("torrents", 0, 3, "warning"), ("torrents", 2, 3, "problem"), ("usenet", 0, 3, "problem")],
)
def test_a_torrent_folder_the_importer_cannot_move_is_a_warning(source, links, moves, severity):
    audit = cms.Audit(source, "/d", 1, 1, [], 0, access(links, moves))
    (item,) = cms.cannot_link_findings([audit], "sonarr (1000:1000)")
    assert item.severity == severity


# -- what is printed from outside is escaped -------------------------------------------------------


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u2069", "\u2028", "\u2029", "\x1b"])
def test_a_name_cannot_reorder_or_break_a_line(char):
    shown = cms.printable("Show%s.mkv" % char)
    assert char not in shown and shown.startswith("Show\\") and shown.endswith(".mkv")


def test_a_settings_value_with_a_bidi_override_is_escaped(stack):
    stack.guides(roots=("/data/media/tv\u202e",))
    code, out, err = stack.text()
    assert "\u202e" not in out + err and "\\u202e" in out
    code, document = stack.check()  # JSON escapes it its own way: the value itself
    assert "\u202e" in json.dumps(document["findings"] + document["routes"], ensure_ascii=False)


# -- hostile config folders: nothing through a symlink, nothing changed, bounded ----------------


def test_a_db_symlinked_to_one_elsewhere_is_not_read(stack, tmp_path):
    # As root, the check would read a root-only db the link names and print its rows.
    stack.guides(roots=("/data/media/tv",))
    secret = tmp_path / "secret"
    arr_db(secret / "other.db", ["/data/media/SECRET"], [qb_row(host="secret-host")])
    os.chmod(str(secret / "other.db"), 0o600)
    db = stack.config("sonarr") / "sonarr.db"
    for end in ("", "-wal", "-shm"):
        if os.path.lexists(str(db) + end):
            os.unlink(str(db) + end)
    os.symlink(str(secret / "other.db"), str(db))
    code, out, _ = stack.text()
    assert "SECRET" not in out and "secret-host" not in out
    assert "%s: a symlink, not followed" % db in out


@pytest.mark.parametrize("link", ["qBittorrent", "qBittorrent/categories.json"])
def test_a_symlinked_folder_or_file_on_the_way_is_not_followed(stack, tmp_path, link):
    stack.guides()
    config = stack.config("qbittorrent")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = config / link
    os.rename(str(target), str(elsewhere / "moved"))
    os.symlink(str(elsewhere / "moved"), str(target))
    code, document = stack.check()
    (item,) = [f for f in document["findings"] if f["kind"] == "settings-unread"]
    assert item["detail"] == "%s: a symlink, not followed" % target


def test_a_jellyfin_root_that_is_a_symlink_is_not_followed(stack, tmp_path):
    config = stack.add("jellyfin", "jellyfin/jellyfin", [(stack.data + "/media", "/data/media")])
    elsewhere = tmp_path / "default"
    (elsewhere / "Shows").mkdir(parents=True)
    (elsewhere / "Shows" / "tv.mblink").write_text("/data/media/tv")
    (config / "data" / "root").mkdir(parents=True)
    os.symlink(str(elsewhere), str(config / "data" / "root" / "default"))
    code, document = stack.check()
    assert [f["detail"] for f in document["findings"] if f["kind"] == "settings-unread"] == [
        "%s: a symlink, not followed" % (config / "data" / "root" / "default")
    ]


def test_the_shm_of_a_running_app_is_not_touched(stack):
    stack.guides()
    sonarr = stack.config("sonarr")
    running = arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [qb_row()], keep_open=True)
    shm = sonarr / "sonarr.db-shm"
    before = (shm.read_bytes(), shm.stat().st_mtime_ns)
    code, document = stack.check()
    assert document["routes"][0]["result"] == "hardlink"
    assert (shm.read_bytes(), shm.stat().st_mtime_ns) == before  # read marks included
    running.close()


def test_a_torn_copy_is_copied_again_then_unread(stack, monkeypatch):
    stack.guides()
    db = stack.config("sonarr") / "sonarr.db"
    real = cms.AppDatabase._copy_file
    writes = {"left": 1}

    def copy_file(self, relative, copy):
        real(self, relative, copy)
        if relative == "sonarr.db" and writes["left"]:  # the app checkpoints meanwhile
            writes["left"] -= 1
            os.utime(str(db), ns=(0, os.stat(str(db)).st_mtime_ns + 10**9))

    monkeypatch.setattr(cms.AppDatabase, "_copy_file", copy_file)
    code, document = stack.check()  # torn once: copied again, read
    assert [r["importer"] for r in document["routes"]].count("sonarr") == 2
    writes["left"] = 10
    code, document = stack.check()
    (item,) = [f for f in document["findings"] if f["kind"] == "settings-unread"]
    assert item["detail"] == "%s: changed while it was read (the app is writing it); check " \
        "again" % db  # fmt: skip


def test_a_db_over_the_copy_limit_is_read_in_place(stack, monkeypatch):
    stack.guides()
    monkeypatch.setattr(cms, "DB_COPY_LIMIT", 1024)
    sonarr = stack.config("sonarr")
    names = sorted(os.listdir(str(sonarr)))
    code, document = stack.check()
    assert [r["importer"] for r in document["routes"]].count("sonarr") == 2
    assert sorted(os.listdir(str(sonarr))) == names


def test_a_view_of_huge_values_is_unread_not_gigabytes(stack):
    stack.guides()
    db = sqlite3.connect(str(stack.config("sonarr") / "sonarr.db"))
    db.executescript("DROP TABLE RootFolders; CREATE VIEW RootFolders AS SELECT "
                     "printf('%.*c', 100000, 'x') AS Path")  # fmt: skip
    db.commit()
    db.close()
    code, document = stack.check()
    (item,) = [f for f in document["findings"] if f["kind"] == "settings-unread"]
    assert "larger than settings hold" in item["detail"] or "too big" in item["detail"]


# -- which client a row means ------------------------------------------------------------------


def test_an_ip_of_another_machine_is_a_seedbox_not_the_local_client(stack):
    # The local qBittorrent publishes 8081 too; 203.0.113.9 is not this machine.
    stack.guides(rows=[qb_row(host="203.0.113.9", port=8081)])
    stack.containers[0]["NetworkSettings"]["Ports"] = {
        "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]
    }
    code, document = stack.check()
    assert [(r["client"], r["result"]) for r in document["routes"] if r["importer"] == "sonarr"][
        :1
    ] == [("203.0.113.9", "unknown")]


def test_a_container_s_address_on_a_docker_network_is_that_container(stack):
    stack.guides(rows=[qb_row(host="172.20.0.5", port=8080)])
    stack.containers[0]["NetworkSettings"]["Networks"]["media"]["IPAddress"] = "172.20.0.5"
    code, document = stack.check()
    assert document["routes"][0]["client"] == "qbittorrent"
    assert document["routes"][0]["result"] == "hardlink"


def test_two_clients_behind_one_vpn_are_told_apart_by_port(stack):
    stack.guides(rows=[qb_row(host="gluetun", port=8081)])
    second = stack.add("qbittorrent-2", "lscr.io/linuxserver/qbittorrent",
                       [(stack.data + "/torrents", "/data/torrents")])  # fmt: skip
    qbittorrent(second, save="/data/torrents/complete2")
    conf = second / QB_LAYOUTS["linuxserver"]
    conf.write_text(conf.read_text().replace("WebUI\\Port=8080", "WebUI\\Port=8081"))
    os.makedirs(stack.data + "/torrents/complete2", exist_ok=True)
    stack.containers.append(inspect("gluetun", "qmcgaw/gluetun", [], ports=(8080, 8081)))
    for at in (0, -2):
        stack.containers[at]["HostConfig"]["NetworkMode"] = "service:gluetun"
    code, document = stack.check()
    (route,) = [r for r in document["routes"] if r["importer"] == "sonarr"][:1]
    assert (route["client"], route["result"]) == ("qbittorrent-2", "hardlink")


# -- the apps' own settings ------------------------------------------------------------------------


def downloads(document):
    return [(r["client"], r["download"], r["result"]) for r in document["routes"]]


def nzbget_row(category):
    return (1, "NZBGet", "Nzbget", {"host": "nzbget", "port": 6789, "tvCategory": category})


def test_nzbget_relative_folders_are_below_maindir(stack):
    d = stack.data
    nz = stack.add("nzbget", "lscr.io/linuxserver/nzbget", [(d + "/usenet", "/data/usenet")])
    (nz / "nzbget.conf").write_text(
        "MainDir=/data/usenet\nDestDir=complete\nInterDir=incomplete\n"
        "Category1.Name=TV\nCategory1.DestDir=complete/tv\n"
    )
    stack.sonarr([nzbget_row("tv")])  # any case: NZBGet's TV
    code, document = stack.check()
    assert downloads(document) == [("nzbget", d + "/usenet/complete/tv", "move")]
    assert kinds(document) == [] and code == 0


def test_nzbget_appends_the_folder_of_a_category_it_does_not_define(stack):
    d = stack.data
    os.makedirs(d + "/usenet/complete/anime", exist_ok=True)
    nz = stack.add("nzbget", "lscr.io/linuxserver/nzbget", [(d + "/usenet", "/data/usenet")])
    (nz / "nzbget.conf").write_text("MainDir=/data/usenet\nDestDir=${MainDir}/complete\n")
    stack.sonarr([nzbget_row("anime")])
    code, document = stack.check()
    assert downloads(document) == [("nzbget", d + "/usenet/complete/anime", "move")]


def test_a_qbittorrent_category_s_download_path_is_its_incomplete_folder(stack):
    stack.guides()
    qb = stack.config("qbittorrent")
    qbittorrent(qb, categories={"tv-sonarr": {"save_path": "", "download_path": "/config/grow"}})
    code, document = stack.check()
    assert ("save-unmounted", "qbittorrent", "problem") in kinds(document)
    (item,) = [f for f in document["findings"] if f["kind"] == "save-unmounted"]
    assert item["path"] == "/config/grow"


def test_qt5_escapes_are_read_as_qsettings_does():
    assert cms.qt_unescaped("/data/torrents/S\\x00e9ries") == "/data/torrents/S\u00e9ries"
    assert cms.qt_unescaped("/data/\\u4e2d\\x6587") == "/data/\u4e2d\u6587"
    assert cms.qt_unescaped("C:\\\\downloads") == "C:\\downloads"


def test_a_qt5_escaped_save_path_is_the_folder_it_names(stack):
    d = stack.data
    os.makedirs(d + "/torrents/compl\u00e9t")
    stack.guides()
    qbittorrent(stack.config("qbittorrent"), save="/data/torrents/compl\\xe9t")
    code, document = stack.check()
    assert downloads(document)[0][:2] == ("qbittorrent", d + "/torrents/compl\u00e9t/tv-sonarr")


@pytest.mark.parametrize("moves, where", [(True, "/complete/tv"), (False, "/incomplete")])
def test_a_deluge_label_that_applies_its_own_move(stack, moves, where):
    d = stack.data
    os.makedirs(d + "/torrents/complete/tv", exist_ok=True)
    config = stack.add(
        "deluge", "lscr.io/linuxserver/deluge", [(d + "/torrents", "/data/torrents")]
    )
    (config / "core.conf").write_text(
        '{"file": 1}\n{"download_location": "/data/torrents/incomplete", "move_completed": true,'
        ' "move_completed_path": "/data/torrents/complete"}'
    )
    (config / "label.conf").write_text(
        '{"file": 1}{"labels": {"tv": {"apply_move_completed": true, "move_completed": %s,'
        ' "move_completed_path": "/data/torrents/complete/tv"}}}' % json.dumps(moves)
    )
    stack.sonarr([(1, "Deluge", "Deluge", {"host": "deluge", "port": 8112, "tvCategory": "tv"})])
    code, document = stack.check()
    assert downloads(document)[0][1] == d + "/torrents" + where


def test_the_arr_row_s_directory_overrides_deluge_s_default(stack):
    d = stack.data
    os.makedirs(d + "/torrents/complete/sonarr")
    config = stack.add(
        "deluge", "lscr.io/linuxserver/deluge", [(d + "/torrents", "/data/torrents")]
    )
    (config / "core.conf").write_text('{"file": 1}\n{"download_location": "/downloads"}')
    row = {"host": "deluge", "port": 8112, "tvCategory": "tv",
           "downloadDirectory": "/data/torrents/complete/sonarr"}  # fmt: skip
    stack.sonarr([(1, "Deluge", "Deluge", row)])
    code, document = stack.check()
    assert downloads(document) == [("deluge", d + "/torrents/complete/sonarr", "hardlink")]


def test_manual_mode_category_folders_are_not_graded(stack):
    stack.guides()
    qbittorrent(stack.config("qbittorrent"), automatic=False,
                categories={"tv-sonarr": {"save_path": "/nowhere/tv"}})  # fmt: skip
    code, document = stack.check()
    assert ("manual-mode", "qbittorrent", "warning") in kinds(document)
    assert "save-unmounted" not in {kind for kind, _, _ in kinds(document)}


# -- what the check covers -------------------------------------------------------------------------


def test_a_root_folder_on_no_data_mount(stack):
    # /tv with no /tv volume: the library stays inside the container; not "two mounts".
    stack.guides(roots=("/tv", "/data/media/tv"))
    code, document = stack.check()
    assert ("root-unmounted", "sonarr", "problem") in kinds(document)
    assert "import-copies" not in {kind for kind, _, _ in kinds(document)}
    qb = [r for r in document["routes"] if r["client"] == "qbittorrent"]
    assert [(r["root"], r["result"], r["cause"]) for r in qb] == [
        (None, "copy", "root-unmounted"),
        (stack.data + "/media/tv", "hardlink", None),
    ]


def test_an_unseen_download_still_has_a_row_per_root_folder(stack):
    stack.guides(roots=("/data/media/tv", "/data/media/anime/tv"))
    qbittorrent(stack.config("qbittorrent"), save="/downloads")  # on no mount
    code, document = stack.check()
    qb = [r for r in document["routes"] if r["client"] == "qbittorrent"]
    assert [(r["root"], r["result"]) for r in qb] == [
        (stack.data + "/media/tv", "unseen"),
        (stack.data + "/media/anime/tv", "unseen"),
    ]


def unraid_sonarr(stack, binds):
    stack.containers.append(inspect("sonarr", "lscr.io/linuxserver/sonarr", binds))


def test_two_disjoint_data_mounts_are_split_whatever_the_clients_mount(stack, tmp_path):
    # Unraid's templates: /downloads and /tv, each bound from its own share folder; no
    # client in this stack mounts either.
    for name in ("downloads", "tv"):
        (tmp_path / "user" / name).mkdir(parents=True)
    unraid_sonarr(stack, [(str(tmp_path / "user/downloads"), "/downloads"),
                          (str(tmp_path / "user/tv"), "/tv")])  # fmt: skip
    code, document = stack.check()
    assert ("split-mounts", "sonarr", "problem") in kinds(document, "containers")


@needs_root
def test_a_bind_mount_inside_the_tree_makes_the_route_a_copy(stack, tmp_path):
    # media/tv bound from a folder of the same filesystem: st_dev is the same, but a link
    # from the downloads into it fails with EXDEV (the probes say so too).
    stack.guides()
    folder = tmp_path / "tv-elsewhere"
    folder.mkdir()
    tv = stack.data + "/media/tv"
    proc = subprocess.run(["mount", "--bind", str(folder), tv], stderr=subprocess.PIPE)
    if proc.returncode:
        pytest.skip("cannot bind-mount here: %s" % proc.stderr.decode().strip())
    try:
        code, document = stack.check()
    finally:
        subprocess.run(["umount", "-l", tv], check=False)
    qb = [r for r in document["routes"] if r["client"] == "qbittorrent"]
    assert [(r["result"], r["cause"]) for r in qb] == [("copy", "mount-point")]
    assert ("mount-point", "", "problem") in kinds(document, "filesystem")
    assert code == 1


# -- the registry: one record per app -------------------------------------------------------------


def test_every_app_has_one_record_read_by_every_section():
    roles = {"download client", "importer", "media server", "library reader", "other"}
    assert {app.role for app in cms.APPS.values()} == roles
    for kind, app in cms.APPS.items():
        assert not app.reader or app.reader in cms.READERS, kind
        assert not app.reader or app.settings, kind
        assert app.source in (("torrents", "usenet", "ddl") if app.role == "download client"
                              else ("",)), kind  # fmt: skip
    assert tuple(k for k, a in cms.APPS.items() if a.reader) == cms.READ_APPS
    assert "rtorrent" in cms.CLIENT_APPS and "prowlarr" not in cms.READ_APPS


@pytest.mark.parametrize(
    "rc, save, grow",
    [
        ("directory.default.set = /data/torrents/complete\n", "/complete", ""),
        ("directory = /data/torrents/complete\n", "/complete", ""),  # the old key
        (
            "directory.default.set = /data/torrents/incomplete\n"
            'method.set_key = event.download.finished,move_complete,"d.directory.set='
            '/data/torrents/complete/;execute=mv,-u,$d.base_path=,/data/torrents/complete/"\n'
            "network.scgi.open_port = 0.0.0.0:5000\n",
            "/complete",
            "/incomplete",
        ),
    ],
)
def test_rtorrent_is_one_record_and_one_reader(stack, rc, save, grow):
    d = stack.data
    config = stack.add("rutorrent", "crazymax/rtorrent-rutorrent",
                       [(d + "/torrents", "/data/torrents")])  # fmt: skip
    (config / "rtorrent").mkdir()
    (config / "rtorrent" / ".rtorrent.rc").write_text(rc)
    row = (1, "rTorrent", "RTorrent", {"host": "rutorrent", "port": 8080, "tvCategory": "tv"})
    stack.sonarr([row])
    code, document = stack.check()
    assert downloads(document) == [("rutorrent", d + "/torrents" + save, "hardlink")]
    assert code == 0, document["findings"]
    settings = cms.settings_of("rtorrent", str(config), "/config")
    assert settings.incomplete == ("/data/torrents" + grow if grow else "")


def test_overlapping_mounts_copy_and_see_the_client_s_path(stack):
    # Sonarr: /data (the tree) and /data/torrents over it (the same folder again): the
    # download is seen through /data/torrents, the root folder through /data: a copy, and
    # no path-mismatch (it sees the folder at the client's own path).
    d = stack.data
    qb = stack.add("qbittorrent", "lscr.io/linuxserver/qbittorrent",
                   [(d + "/torrents", "/data/torrents")])  # fmt: skip
    qbittorrent(qb, categories={"tv-sonarr": {"save_path": ""}})
    sonarr = stack.add("sonarr", "lscr.io/linuxserver/sonarr",
                       [(d, "/data"), (d + "/torrents", "/data/torrents")])  # fmt: skip
    arr_db(sonarr / "sonarr.db", ["/data/media/tv"], [qb_row()])
    code, document = stack.check()
    assert "path-mismatch" not in {kind for kind, _, _ in kinds(document, "containers")}
    route = document["routes"][0]
    assert (route["result"], route["cause"]) == ("copy", "import-copies")


# -- one judgement per question -----------------------------------------------------------------


@pytest.mark.parametrize("mappings", [[("qbittorrent", "/downloads/", "/data/torrents/")], []])
def test_no_later_section_changes_an_earlier_one_s_findings(stack, monkeypatch, mappings):
    """The containers judge a path-mismatch with the importers' mappings known; the routes
    only add findings (they used to remove the mismatch and regrade the containers)."""
    seen = {}
    real = cms.check_routes

    def check_routes(found, *args):
        result = real(found, *args)
        seen["before"], seen["after"] = list(found.findings), list(result[0].findings)
        seen["sections"] = (dict(found.sections), dict(result[0].sections))
        return result

    monkeypatch.setattr(cms, "check_routes", check_routes)
    stack.guides()
    stack.containers[0]["Mounts"][0]["Destination"] = "/downloads"
    qbittorrent(stack.config("qbittorrent"), save="/downloads/complete")
    arr_db(stack.config("sonarr") / "sonarr.db", ["/data/media/tv"], [qb_row()], mappings)
    code, document = stack.check()
    assert seen["after"][: len(seen["before"])] == seen["before"]
    before, after = seen["sections"]
    assert {k: v for k, v in after.items() if k in before} == before
    mismatch = [f for f in seen["before"] if f.kind == "path-mismatch"]
    assert bool(mismatch) is (not mappings)  # decided once, by the containers section


def test_one_check_reads_the_mount_table_once(stack, monkeypatch):
    """The host sections, the containers' volumes and the routes judge against one mount
    table (it was read three times, and a mount made meanwhile split their answers)."""
    reads = []
    real = cms.load_mounts
    monkeypatch.setattr(cms, "load_mounts", lambda: reads.append(1) or real())
    stack.guides()
    stack.check()
    assert len(reads) == 1
