"""Verdicts that real stacks got wrong (issue 28's list): each test failed before its fix."""

import json

import pytest
from test_routes import TREE_OPTIONS, Stack, arr_db, qb_row, sab_row  # noqa: F401

from conftest import cms


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
