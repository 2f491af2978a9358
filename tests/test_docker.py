"""--check --docker: the containers' real configuration, judged by role."""

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCRIPT, cms

SAMPLE = REPO / "tests" / "docker-inspect-sample.json"
# The apps don't run as root: as root, the tree is made for the PUID/PGID of the samples.
TREE_OPTIONS = ["--owner", "1000:1000"] if os.getuid() == 0 else []


def ids(tree):
    st = os.stat(str(tree / "data"))
    return st.st_uid, st.st_gid


def inspect(name, image, mounts, env=(), user="", labels=None):
    """One container as `docker inspect` prints it (the fields we read, in their shape)."""
    return {
        "Name": "/" + name,
        "Config": {"Image": image, "Env": list(env) + ["PATH=/usr/bin"], "User": user,
                   "Labels": labels or {}},
        "HostConfig": {"Binds": []},
        "Mounts": [
            {"Type": kind, "Source": source, "Destination": target, "RW": rw,
             "Mode": "" if rw else "ro"}
            for kind, source, target, rw in mounts
        ],
    }  # fmt: skip


def lsio(tree, puid=None, pgid=None, umask="002"):
    uid, gid = ids(tree)
    env = ["PUID=%d" % (uid if puid is None else puid), "PGID=%d" % (gid if pgid is None else pgid)]
    return env + (["UMASK=%s" % umask] if umask is not None else [])


def trash_layout(tree):
    """The guides' layout done right: every app sees the same /data paths."""
    data = str(tree / "data")
    return [
        inspect("qbittorrent", "lscr.io/linuxserver/qbittorrent:latest",
                [("bind", "/srv/appdata/qb", "/config", True),
                 ("bind", data + "/torrents", "/data/torrents", True)], lsio(tree)),
        inspect("sabnzbd", "lscr.io/linuxserver/sabnzbd", [("bind", data + "/usenet",
                "/data/usenet", True)], lsio(tree)),
        inspect("sonarr", "lscr.io/linuxserver/sonarr:4", [("bind", data, "/data", True),
                ("bind", "/srv/appdata/sonarr", "/config", True)], lsio(tree)),
        inspect("radarr", "ghcr.io/hotio/radarr:release", [("bind", data, "/data", True),
                ("volume", "/var/lib/docker/volumes/radarr-config/_data", "/config", True)],
                lsio(tree)),
        inspect("plex", "plexinc/pms-docker", [("bind", data + "/media", "/data/media", False),
                ("bind", "/srv/transcode", "/transcode", True)],
                ["PLEX_UID=%d" % ids(tree)[0], "PLEX_GID=%d" % ids(tree)[1]]),
        inspect("bazarr", "lscr.io/linuxserver/bazarr", [("bind", data + "/media",
                "/data/media", True)], lsio(tree)),
        inspect("prowlarr", "lscr.io/linuxserver/prowlarr", [("bind", "/srv/p", "/config",
                True)], lsio(tree)),
        inspect("thing", "example/unknown-app", [("bind", data, "/data", True)]),
    ]  # fmt: skip


def check(run, tree, containers, *extra):
    path = tree / "containers.json"
    path.write_text(json.dumps(containers))
    code, out, err = run("--path", str(tree), "--check", "--json", "--docker", str(path), *extra)
    return code, (json.loads(out) if out else None), err


def found(document):
    return sorted(
        (f["kind"], f.get("container", ""), f.get("other", ""), f["severity"])
        for f in document["findings"]
        if f["section"] == "containers"
    )


def test_the_guides_layout_is_healthy(tree, run):
    code, document, _ = check(run, tree, trash_layout(tree))
    assert code == 0, document["findings"]
    assert found(document) == []
    assert document["sections"]["containers"] == "ok"
    verdicts = {c["name"]: (c["role"], c["verdict"]) for c in document["containers"]}
    assert verdicts == {
        "qbittorrent": ("download client", "ok"),
        "sabnzbd": ("download client", "ok"),
        "sonarr": ("importer", "ok"),
        "radarr": ("importer", "ok"),
        "plex": ("media server", "ok"),
        "bazarr": ("library reader", "ok"),
        "prowlarr": ("other", "ignored: no media paths"),
        "thing": ("unknown", "not judged: unknown image"),
    }
    sonarr = next(c for c in document["containers"] if c["name"] == "sonarr")
    assert sonarr["mounts"] == [
        {"type": "bind", "host": str(tree / "data"), "container": "/data", "rw": True}
    ]  # /config is the app's own state, not a data mount


def test_the_real_sample(tree, run):
    """The sample: containers created on a real daemon, with the tree at /srv/data."""
    text = SAMPLE.read_text().replace("/srv/data", str(tree / "data"))
    code, document, _ = check(run, tree, json.loads(text))
    assert code == 1
    kinds = found(document)
    assert ("split-mounts", "sonarr", "", "problem") in kinds
    assert ("path-mismatch", "qbittorrent", "radarr", "problem") in kinds
    assert ("path-mismatch", "qbittorrent", "sonarr", "problem") in kinds
    plex = next(c for c in document["containers"] if c["name"] == "plex")
    assert plex["mounts"][0]["rw"] is False and plex["verdict"] == "ok"  # read-only is fine


def test_split_mounts(tree, run):
    data = str(tree / "data")
    layout = trash_layout(tree)
    layout[2] = inspect("sonarr", "lscr.io/linuxserver/sonarr",
                        [("bind", data + "/torrents", "/data/torrents", True),
                         ("bind", data + "/media/tv", "/tv", True)], lsio(tree))  # fmt: skip
    code, document, _ = check(run, tree, layout)
    assert code == 1
    assert found(document) == [("split-mounts", "sonarr", "", "problem")]
    item = next(f for f in document["findings"] if f["kind"] == "split-mounts")
    assert "through 2 mounts (/data/torrents, /tv)" in item["detail"]
    assert item["fix"].endswith("- %s:/data" % data)


def test_host_path_equal_to_container_path_is_consistent(tree, run):
    data = str(tree / "data")
    same = [
        inspect("qbittorrent", "linuxserver/qbittorrent", [("bind", data + "/torrents",
                data + "/torrents", True)], lsio(tree)),
        inspect("sonarr", "linuxserver/sonarr", [("bind", data, data, True)], lsio(tree)),
    ]  # fmt: skip
    code, document, _ = check(run, tree, same)
    assert (code, found(document)) == (0, [])


@pytest.mark.parametrize("how", ["other-path", "other-folder", "nobody"])
def test_path_mismatch(tree, run, how):
    data = str(tree / "data")
    layout = trash_layout(tree)[:4]
    if how == "other-path":  # the classic: /downloads in the client, /data/torrents in Sonarr
        layout[0]["Mounts"][1]["Destination"] = "/downloads"
    elif how == "other-folder":  # the same container path, another host folder
        layout[0]["Mounts"][1]["Source"] = data + "/usenet"
    else:
        layout[0]["Mounts"][1]["Source"] = str(tree / "elsewhere")
        (tree / "elsewhere").mkdir()
    code, document, _ = check(run, tree, layout)
    assert code == 1
    mismatches = [f for f in document["findings"] if f["kind"] == "path-mismatch"]
    if how == "nobody":
        assert [(f["container"], f.get("other")) for f in mismatches] == [("qbittorrent", None)]
        assert ("outside-tree", "qbittorrent", "", "problem") in found(document)
    else:
        assert sorted((f["container"], f["other"]) for f in mismatches) == [
            ("qbittorrent", "radarr"),
            ("qbittorrent", "sonarr"),
        ]
    if how == "other-path":
        assert mismatches[0]["detail"] == (
            "qbittorrent saves to /downloads, but %s sees that folder at /data/torrents"
            % mismatches[0]["other"]
        )
        assert mismatches[0]["path"] == data + "/torrents"


def test_a_mismatch_outside_the_tree_is_fixed_inside_it(tree, run):
    """The example in the fix binds the tree's folder, never the outside one the importer's
    /data can't hold (that one is an outside-tree problem of its own)."""
    data, outside = str(tree / "data"), str(tree / "elsewhere")
    (tree / "elsewhere").mkdir()
    layout = [
        inspect("qbittorrent", "linuxserver/qbittorrent", [("bind", outside, "/downloads",
                True)], lsio(tree)),
        inspect("sonarr", "linuxserver/sonarr", [("bind", data, "/data", True),
                ("bind", outside, "/dl", True)], lsio(tree)),
    ]  # fmt: skip
    code, document, _ = check(run, tree, layout)
    assert code == 1
    mismatch = next(f for f in document["findings"] if f["kind"] == "path-mismatch")
    assert (
        mismatch["detail"] == "qbittorrent saves to /downloads, but sonarr sees that folder at /dl"
    )
    assert mismatch["fix"] == (
        "mount %s/torrents at the same container path in both (e.g. - %s:/data in the importer "
        "and - %s/torrents:/data/torrents in the client), or, second best, a remote path mapping "
        "in sonarr" % (data, data, data)
    )


def test_an_unrelated_client_is_no_pair(tree, run):
    data = str(tree / "data")
    layout = trash_layout(tree)[:4]
    mounts = [
        ("bind", data + "/torrents", "/data/torrents", True),
        ("bind", data + "/media", "/data/media", True),
    ]
    layout.append(inspect("lidarr", "lscr.io/linuxserver/lidarr", mounts, lsio(tree)))
    code, document, _ = check(run, tree, layout)
    assert [f for f in document["findings"] if f["kind"] == "path-mismatch"] == []


def test_read_only_named_volume_outside_tree(tree, run):
    data = str(tree / "data")
    (tree / "downloads").mkdir()
    containers = [
        inspect("transmission", "linuxserver/transmission",
                [("bind", str(tree / "downloads"), "/downloads", True)], lsio(tree)),
        inspect("sonarr", "linuxserver/sonarr", [("bind", data, "/data", False),
                ("volume", "/var/lib/docker/volumes/dl/_data", "/downloads", True)], lsio(tree)),
        inspect("jellyfin", "jellyfin/jellyfin", [("bind", "/mnt/other/media", "/media", False)],
                lsio(tree)),
    ]  # fmt: skip
    code, document, _ = check(run, tree, containers)
    assert code == 1
    kinds = found(document)
    assert ("read-only", "sonarr", "", "problem") in kinds
    assert ("named-volume", "sonarr", "", "problem") in kinds
    assert ("outside-tree", "transmission", "", "problem") in kinds
    assert ("outside-tree", "jellyfin", "", "warning") in kinds
    assert not any(k[0] == "read-only" and k[1] == "jellyfin" for k in kinds)


def test_unraid_cache_path_next_to_the_user_share(tree, run):
    twin = tree / "cache" / "data"
    twin.mkdir(parents=True)
    containers = [inspect("sonarr", "linuxserver/sonarr", [("bind", str(twin), "/data", True)],
                          lsio(tree))]  # fmt: skip
    code, document, _ = check(run, tree, containers)
    item = next(f for f in document["findings"] if f["kind"] == "outside-tree")
    assert "two paths are two filesystems" in item["detail"]


def test_library_path_and_broad_access_are_warnings(tree, run):
    data = str(tree / "data")
    layout = trash_layout(tree)
    layout[0]["Mounts"][1].update(Source=data, Destination="/data")  # qBittorrent sees it all
    layout[4]["Mounts"][0].update(Destination="/media")  # Plex: data/media:/media
    layout[5]["Mounts"][0].update(Source=data, Destination="/data")  # Bazarr sees it all
    code, document, _ = check(run, tree, layout)
    assert code == 0, document["findings"]
    assert found(document) == [
        ("broad-access", "bazarr", "", "warning"),
        ("broad-access", "qbittorrent", "", "warning"),
        ("library-path", "plex", "", "warning"),
    ]
    text = {f["container"]: f for f in document["findings"]}
    assert text["qbittorrent"]["fix"].endswith("- %s/torrents:/data/torrents" % data)
    assert text["plex"]["detail"].startswith("sees the library at /media, the importers at")


def open_up(tree):
    """Every folder of the tree writable by anyone: other ids can write, as through an ACL."""
    for folder in [tree / "data"] + list((tree / "data").rglob("*")):
        os.chmod(str(folder), 0o777)


def test_ids_umask_and_root(tree, run):
    uid, gid = ids(tree)
    open_up(tree)  # differing ids that can still write: warnings
    layout = trash_layout(tree)[:4]
    layout[0]["Config"]["Env"] = lsio(tree, puid=uid + 7, pgid=gid + 7, umask=None)
    layout[1]["Config"]["Env"] = ["PUID=0", "PGID=0"]
    code, document, _ = check(run, tree, layout)
    assert code == 0  # warnings only
    kinds = found(document)
    assert ("ids", "qbittorrent", "", "warning") in kinds
    assert ("ids", "", "", "warning") in kinds  # no shared group
    assert ("umask", "qbittorrent", "", "warning") in kinds
    assert ("root", "sabnzbd", "", "warning") in kinds
    # Config.User where no PUID is set; unknown ids are not judged.
    layout = trash_layout(tree)[2:4]
    layout[0]["Config"]["Env"] = []
    layout[0]["Config"]["User"] = "%d:%d" % ids(tree)
    layout[1]["Config"]["Env"] = []
    code, document, _ = check(run, tree, layout)
    assert found(document) == []


def test_a_writer_the_tree_does_not_let_write_is_a_problem(tree, run):
    uid, gid = ids(tree)
    layout = trash_layout(tree)[:4]  # qbittorrent, sabnzbd, sonarr, radarr
    layout[0]["Config"]["Env"] = lsio(tree, puid=uid + 7, pgid=gid + 7)
    layout[2]["Config"]["Env"] = lsio(tree, puid=uid + 7, pgid=gid + 7)
    for folder in [tree / "data"] + list((tree / "data").rglob("*")):
        os.chmod(str(folder), 0o755)  # only the owner writes, whatever groups they are in
    os.chmod(str(tree / "data" / "media" / "tv"), 0o777)  # one folder lets everyone write
    code, document, _ = check(run, tree, layout)
    assert code == 1
    said = {f["container"]: f for f in document["findings"] if f["kind"] == "cannot-write"}
    assert sorted(said) == ["qbittorrent", "sonarr"]
    ids_text = "%d:%d" % (uid + 7, gid + 7)
    # The client: its own incomplete/ and complete/<cat> (7); the importer: every
    # complete/<cat> and media/<cat> (18 + 6), of which media/tv is open.
    assert said["qbittorrent"]["detail"] == (
        "writes as %s, and can't write 7 of the 7 folders its downloads or imports go into, "
        "e.g. %s (owner %d:%d, mode 0755)" % (ids_text, tree / "data/torrents/incomplete", uid, gid)
    )
    assert said["sonarr"]["detail"].startswith(
        "writes as %s, and can't write 23 of the 24 folders" % ids_text
    )
    assert {f["severity"] for f in said.values()} == {"problem"}
    assert not [f for f in document["findings"] if f["kind"] == "ids" and f.get("container")]
    open_up(tree)
    code, document, _ = check(run, tree, layout)
    assert code == 0 and "cannot-write" not in {f["kind"] for f in document["findings"]}


@pytest.mark.parametrize(
    "image, group, blocked",
    [
        # linuxserver's base images renumber "users" to 1000 (groupmod -g 1000 users) and
        # put abc in it; hotio's keep Alpine's 100.  Any other image: PGID alone.
        ("lscr.io/linuxserver/qbittorrent", 1000, False),
        ("lscr.io/linuxserver/qbittorrent", 100, True),  # was "can write": a wrong verdict
        ("ghcr.io/hotio/qbittorrent", 100, False),
        ("ghcr.io/hotio/qbittorrent", 1000, True),
        ("example/qbittorrent", 100, True),
        ("lscr.io/linuxserver/qbittorrent", 4242, True),
    ],
)
def test_the_images_group_users_counts_where_it_is_known(image, group, blocked):
    st = os.stat_result((0o40775, 1, 1, 2, 99, group, 0, 0, 0, 0))
    steps = [cms.Step(f, "/x/" + "/".join(f.parts), cms.KEEP, "", st, False)
             for f in cms.list_folders(cms.TREE)]  # fmt: skip
    qb = cms._from_inspect(inspect("qbittorrent", image, [], ["PUID=1001", "PGID=1001"]))
    pairs = cms.import_pairs(cms.list_folders(cms.TREE))
    assert bool(cms.blocked_writers([qb], None, steps, pairs)) is blocked


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (ACLs)")
def test_a_writer_an_acl_may_let_write_is_a_warning(tree, run):
    import shutil

    if shutil.which("setfacl") is None:
        pytest.skip("setfacl is not installed")
    subprocess.run(["chown", "-R", "4242:4242", str(tree / "data")], check=True)
    if subprocess.run(["setfacl", "-R", "-m", "u:4243:rwx", str(tree / "data")]).returncode:
        pytest.skip("this filesystem has no ACLs")
    layout = trash_layout(tree)[:1]
    layout[0]["Config"]["Env"] = lsio(tree, puid=4243, pgid=4243)
    code, document, _ = check(run, tree, layout)
    assert code == 0, document["findings"]
    said = [f for f in document["findings"] if f["kind"] == "cannot-write"]
    assert [(f["severity"], f["detail"].endswith("; an ACL there may let it")) for f in said] == [
        ("warning", True)
    ]


def test_a_tree_of_root_is_never_fixed_by_running_the_apps_as_root():
    qb = cms._from_inspect(inspect("qbittorrent", "lscr.io/linuxserver/qbittorrent", [],
                                   ["PUID=1000", "PGID=1000", "UMASK=002"]))  # fmt: skip
    sab = cms._from_inspect(inspect("sabnzbd", "lscr.io/linuxserver/sabnzbd", [],
                                    ["PUID=0", "PGID=0"]))  # fmt: skip
    said = cms._ids_findings([qb, sab], (0, 0), "/srv/data")  # the tree is root's
    text = [(f.kind, f.container, f.detail, f.fix) for f in said]
    assert not [
        t
        for t in text
        if "PUID=0" in t[3] or "(0:0)" in t[3] or "PGID (the tree's group, 0)" in t[3]
    ]
    assert ("ids", "qbittorrent", "writes as 1000:1000, the tree belongs to 0:0",
            "give the tree to the apps' user: python3 create_media_structure.py --owner 1000:1000"
            ) in text  # fmt: skip
    # A category the creator doesn't make by itself is named in the command.
    steps = [cms.Step(cms.Folder(("data",), (True,), False), "/srv/data", cms.KEEP, "", None,
                      False),
             cms.Step(cms.Folder(("data", "media", "movies 4k"), (True,) * 3, True),
                      "/srv/data/media/movies 4k", cms.KEEP, "", None, False)]  # fmt: skip
    said = cms._ids_findings([qb], (0, 0), "/srv/data", None,
                             lambda options: cms.creator_command(steps, options))  # fmt: skip
    assert [f.fix for f in said] == [
        "give the tree to the apps' user: python3 create_media_structure.py --path /srv "
        "--owner 1000:1000 --add-category 'movies 4k'"
    ]
    # A user without a group (Config.User "1000"): the group is the image's, not judged.
    bare = cms._from_inspect(inspect("sonarr", "lscr.io/linuxserver/sonarr", [], user="1000"))
    assert cms._ids_findings([bare], (0, 0), "/srv/data") == []
    # No data/ on disk: no owner to compare with, and no "-1:-1".
    said = cms._ids_findings([qb], None, "/srv/data")
    assert [f for f in said if "-1" in f.detail + f.fix] == [] and said == []


def compose_config(tree):
    """`docker compose config --format json` of the guides' layout (compose v2's shape)."""
    data = str(tree / "data")
    uid, gid = ids(tree)
    env = {"PUID": str(uid), "PGID": str(gid), "UMASK": "002", "TZ": None}
    return {
        "name": "media",
        "services": {
            "qbittorrent": {"image": "lscr.io/linuxserver/qbittorrent", "environment": env,
                            "volumes": [{"type": "bind", "source": data + "/torrents",
                                         "target": "/data/torrents"}]},
            "sonarr": {"image": "lscr.io/linuxserver/sonarr", "environment": env,
                       "volumes": [{"type": "bind", "source": data, "target": "/data"},
                                   {"type": "bind", "source": "/srv/sonarr", "target": "/config"}]},
            "radarr": {"image": "0123456789ab", "environment": env,
                       "volumes": [{"type": "bind", "source": data + "/media",
                                    "target": "/movies", "read_only": True}]},
        },
    }  # fmt: skip


def test_roles_by_image_then_label():
    import create_media_structure as cms

    # A tool named after an app is matched first: the kind of APPS it is, not plex.
    assert cms._role("meisnate12/plex-meta-manager:latest", "") == ("other", "tool")
    assert cms._role("plexinc/pms-docker", "") == ("media server", "plex")
    assert cms._role("ghcr.io/hotio/sonarr:release", "radarr")[0] == "importer"
    assert cms._role("sha256:" + "ab" * 32, "bazarr") == ("library reader", "bazarr")
    assert cms._role("example/my-own-thing", "sabnzbd") == ("download client", "sabnzbd")
    assert cms._role("example/my-own-thing", "web") == ("unknown", "")


def test_compose_json(tree, run):
    document = compose_config(tree)
    code, result, _ = check(run, tree, document)
    assert code == 1
    roles = {c["name"]: c["role"] for c in result["containers"]}
    assert roles["radarr"] == "importer"  # a bare image id: the service label decides
    assert ("read-only", "radarr", "", "problem") in found(result)
    del document["services"]["radarr"]
    code, result, _ = check(run, tree, document)
    assert (code, found(result)) == (0, [])


def test_the_short_volume_syntax_is_read(tree, run):
    # docker-compose 1.x's `config` writes volumes as "source:target[:mode]" strings, and
    # people write them by hand: they were dropped unread, so a read-only library was ok.
    import create_media_structure as cms

    long_form = compose_config(tree)
    document = compose_config(tree)
    for service in document["services"].values():
        service["volumes"] = [
            "%s:%s%s" % (v["source"], v["target"], ":ro" if v.get("read_only") else ":rw")
            for v in service["volumes"]
        ] + ["radarr-config:/config", "/transcode"]
    code, result, _ = check(run, tree, document)
    assert (code, found(result)) == (1, found(check(run, tree, long_form)[1]))
    assert ("read-only", "radarr", "", "problem") in found(result)
    assert cms._short_volume("a:/b:ro,z") == cms.ContainerMount("volume", "a", "/b", False)
    assert cms._short_volume("/b") == cms.ContainerMount("volume", "", "/b", True)


def test_slashes_and_dots_are_the_same_path(tree, run):
    # Compose keeps what was typed: /data/torrents/ is /data/torrents, ./data is data.
    document = compose_config(tree)
    del document["services"]["radarr"]
    qbittorrent = document["services"]["qbittorrent"]["volumes"][0]
    qbittorrent["source"] = str(tree) + "/./data/torrents/"
    qbittorrent["target"] = "/data/torrents/"
    document["services"]["sonarr"]["volumes"][0]["source"] = str(tree / "data") + "//"
    code, result, _ = check(run, tree, document)
    assert (code, found(result)) == (0, [])
    assert result["containers"][0]["mounts"][0]["container"] == "/data/torrents"


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not JSON"),
        # docker-compose 1.x's config (YAML only), or the compose file itself
        ("services:\n  sonarr:\n    image: x\nversion: '3.9'\n", "a compose file in YAML"),
        ('{"no": "services"}', "neither docker inspect output"),
        ("[1, 2]", "neither docker inspect output"),
        # JSON of another shape: each was a traceback (AttributeError, TypeError)
        ('[{"Name": "a", "Mounts": "x"}]', "[0]: Mounts is str, not list"),
        ('[{"Mounts": [null]}]', "[0]: Mounts[0] is not an object"),
        ('[{"Config": []}]', "[0]: Config is list, not dict"),
        ('[{"Config": {"Labels": ["a"]}}]', "[0]: Labels is list, not dict"),
        ('{"services": {"a": null}}', "services.a is not an object"),
        ('{"services": {"a": {"image": ["x"]}}}', "services.a: image is list, not str"),
        ('{"services": {"a": {"environment": 5}}}', "services.a: environment is int, not dict"),
        ('{"services": {"a": {"volumes": [5]}}}', "services.a: volumes[0] is neither"),
        ('{"services": {"a": {"volumes": [{"source": 3}]}}}', "services.a: source is int"),
    ],
)
def test_garbage_input(tree, run, content, message):
    path = tree / "bad.json"
    path.write_text(content)
    code, out, err = run("--path", str(tree), "--check", "--docker", str(path))
    assert (code, out) == (2, "")
    assert err.startswith("error: --docker %s: %s" % (path, message))
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "content",
    [
        '[{"Mounts": [{"Type": "bind", "Source": "/srv/da\\u0000ta", "Destination": "/data"}]}]',
        '{"services": {"a": {"volumes": ["/srv/da\\u0000ta:/data"]}}}',
    ],
)
def test_a_nul_in_a_path(tree, run, content):  # was a traceback (ValueError from os.stat)
    path = tree / "bad.json"
    path.write_text(content)
    code, out, err = run("--path", str(tree), "--check", "--docker", str(path))
    assert (code, out) == (2, "")
    assert (
        err == "error: --docker: '/srv/da\\x00ta' holds a NUL character: not a path docker gives\n"
    )


def test_closed_stdin(tree, run, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # what Python makes of a closed fd 0
    code, out, err = run("--path", str(tree), "--check", "--docker", "-")
    assert (code, out, err) == (2, "", "error: --docker -: standard input is closed\n")


def test_missing_file(tree, run):
    code, _, err = run("--path", str(tree), "--check", "--docker", str(tree / "nope.json"))
    assert code == 2 and "No such file or directory" in err


def test_docker_needs_check(tree, run):
    code, _, err = run("--path", str(tree), "--docker")
    assert code == 2 and "--docker does not go with creating the tree" in err


def test_stdin(tree, run, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(trash_layout(tree))))
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker", "-")
    assert code == 0 and len(json.loads(out)["containers"]) == 8


def test_stdin_when_the_script_came_through_stdin(tree, run, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-"])
    code, _, err = run("--path", str(tree), "--check", "--docker", "-")
    assert code == 2 and "<(docker inspect $(docker ps -q))" in err


def test_text_report(tree, run):
    path = tree / "c.json"
    uid, gid = ids(tree)  # the sample's apps run as 1000:1000: as the tree's owner here
    text = SAMPLE.read_text().replace("/srv/data", str(tree / "data"))
    path.write_text(
        text.replace("PUID=1000", "PUID=%d" % uid).replace("PGID=1000", "PGID=%d" % gid)
    )
    code, out, _ = run("--path", str(tree), "--check", "--docker", str(path))
    assert code == 1
    assert "containers   3 problems\n" in out
    assert "  sonarr (importer, lscr.io/linuxserver/sonarr:latest): problem" in out
    assert "      %s -> /data/media (read-only)" % (tree / "data" / "media") in out
    assert "  - problem: sonarr: %s: reaches downloads and library" % (tree / "data") in out


# -- the docker command itself ----------------------------------------------------------------


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A `docker` on PATH: prints ids for ps, the file's JSON for inspect, or fails as told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"

    def make(ps="abc123\n", inspect_file=None, fail="", hang=False):
        lines = ["#!/bin/sh"]
        if hang:
            lines.append("exec sleep 60")
        if fail:
            lines += ["echo '%s' >&2" % fail, "exit 1"]
        lines += ['if [ "$1" = ps ]; then printf "%s"; exit 0; fi' % ps.replace("\n", "\\n")]
        if inspect_file:
            lines += ['cat "%s"' % inspect_file]
        script.write_text("\n".join(lines) + "\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return make


def test_docker_without_a_file_runs_docker(tree, run, fake_docker):
    path = tree / "c.json"
    path.write_text(json.dumps(trash_layout(tree)))
    fake_docker(inspect_file=path)
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker")
    assert code == 0 and len(json.loads(out)["containers"]) == 8


def test_no_containers(tree, run, fake_docker):
    fake_docker(ps="")
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker")
    assert code == 0
    assert json.loads(out)["sections"]["containers"] == "not checked: no containers"


def test_daemon_refuses(tree, run, fake_docker):
    fake_docker(fail="permission denied while trying to connect to the Docker daemon socket")
    code, out, err = run("--path", str(tree), "--check", "--docker")
    assert (code, err) == (1, "")
    assert "containers   not checked: docker ps: permission denied while trying to connect to " \
        "the Docker daemon socket (run it with sudo, or add your user to the docker group)\n" \
        in out  # fmt: skip


def test_daemon_down_keeps_the_host_report(tree, run, fake_docker):
    """Docker not answering lost the whole report ("error: docker ps: Cannot connect"):
    the host sections are printed, containers and routes say why not, and it exits 1
    (the containers were asked for, and weren't checked)."""
    fake_docker(fail="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                "Is the docker daemon running?")  # fmt: skip
    code, out, err = run("--path", str(tree), "--check", "--docker")
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[1:4] == [
        "layout       ok: all 52 folders are there",
        "filesystem   ok: every folder is on data/'s filesystem and mount",
        "probes       ok: 18 import pair(s): a hardlink and a move each work",
    ]
    assert "containers   not checked: docker ps: Cannot connect to the Docker daemon at " \
        "unix:///var/run/docker.sock. Is the docker daemon running?" in lines  # fmt: skip
    assert "routes       not checked: it needs the containers, which were not (see containers)" \
        in lines  # fmt: skip
    assert lines[-1] == "result: 1 problem, see above"
    code, document = run("--path", str(tree), "--check", "--docker", "--json")[:2]
    document = json.loads(document)
    assert code == 1 and document["healthy"] is False
    assert [f["kind"] for f in document["findings"]] == ["docker-unreachable"]
    assert document["sections"]["containers"].startswith("not checked: docker ps: Cannot")
    # With a file, docker isn't asked: nothing changes.
    path = tree / "c.json"
    path.write_text(json.dumps(trash_layout(tree)))
    assert run("--path", str(tree), "--check", "--docker", str(path))[0] == 0


def test_daemon_times_out(tree, run, fake_docker, monkeypatch):
    import create_media_structure as cms

    monkeypatch.setattr(cms, "DOCKER_TIMEOUT", 0.2)
    fake_docker(hang=True)
    code, out, _ = run("--path", str(tree), "--check", "--docker")
    assert code == 1 and "containers   not checked: docker ps: no answer in" in out


def test_no_docker_cli(tree, run, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run("--path", str(tree), "--check", "--docker")
    assert code == 1 and "containers   not checked: docker: no docker command here" in out
    assert "Traceback" not in err + out


def test_remote_docker_host(tree, run, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.7:2376")
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker")
    assert code == 0
    assert json.loads(out)["sections"]["containers"].startswith(
        "not checked: DOCKER_HOST points at tcp://192.0.2.7:2376, another machine"
    )


def test_piped_script_with_a_process_substitution_file(tree):
    path = tree / "c.json"
    path.write_text(json.dumps(trash_layout(tree)))
    proc = subprocess.run(
        [sys.executable, "-", "--path", str(tree), "--check", "--docker", str(path), "-q"],
        input=Path(SCRIPT).read_bytes(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert (proc.returncode, proc.stderr) == (0, b"")


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_json_nested_too_deep_is_one_line(tree, run, monkeypatch, how):
    """100,000 levels of [ were a RecursionError traceback."""
    text = "[" * 100000 + "]" * 100000
    if how == "file":
        path = tree / "deep.json"
        path.write_text(text)
        code, out, err = run("--path", str(tree), "--check", "--docker", str(path))
    else:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        code, out, err = run("--path", str(tree), "--check", "--docker", "-")
    assert code == 2 and out == ""
    assert err.startswith("error: --docker ") and "nested too deep" in err
    assert len(err.splitlines()) == 1


def test_an_image_mount_is_no_data_mount(tree, run):
    """podman's and docker 28's --mount type=image: a read-only image, not a host folder
    (it was judged as a host path outside the tree: a problem)."""
    layout = trash_layout(tree)
    layout[2]["Mounts"].append(
        {"Type": "image", "Source": "sha256:0123456789ab", "Destination": "/models", "RW": False}
    )
    code, document, _ = check(run, tree, layout)
    assert code == 0 and found(document) == []
    sonarr = next(c for c in document["containers"] if c["name"] == "sonarr")
    assert [m["container"] for m in sonarr["mounts"]] == ["/data"]


def unraid_templates(tree):
    """An Unraid user's templates: the downloads share outside the tree, Sonarr's root
    folder a second mount of a folder below it."""
    uid, gid = ids(tree)
    env = ["PUID=%d" % uid, "PGID=%d" % gid, "UMASK=002"]
    return [
        inspect("qbittorrent", "lscr.io/linuxserver/qbittorrent",
                [("bind", "/mnt/user/downloads", "/downloads", True)], env),
        inspect("sonarr", "lscr.io/linuxserver/sonarr",
                [("bind", "/mnt/user/downloads/sonarr/tv", "/tv", True),
                 ("bind", "/mnt/user/downloads", "/downloads", True)], env),
    ]  # fmt: skip


def test_split_mounts_outside_the_tree_are_named(tree, run):
    """Sonarr with /tv and /downloads, both outside the tree: only outside-tree problems
    were said, not the two mounts that make every import a copy."""
    code, document, _ = check(run, tree, unraid_templates(tree))
    assert code == 1
    kinds = found(document)
    assert ("split-mounts", "sonarr", "", "problem") in kinds
    (split,) = [f for f in document["findings"] if f["kind"] == "split-mounts"]
    assert "through 2 mounts (/downloads, /tv)" in split["detail"]


def test_one_cause_is_said_first_and_explains_the_rest(tree, run):
    """The text leads with the cause and counts what it explains; --json keeps each, and
    the counts and exit code are all of them."""
    path = tree / "c.json"
    path.write_text(json.dumps(unraid_templates(tree)))
    code, out, _ = run("--path", str(tree), "--check", "--docker", str(path))
    code_json, document, _ = check(run, tree, unraid_templates(tree))
    assert code == code_json == 1
    problems = [f for f in document["findings"]
                if f["section"] == "containers" and f["severity"] == "problem"]  # fmt: skip
    # The text counts causes: split-mounts once for the findings it explains.
    explains = [f for f in problems if f["container"] == "sonarr" and f["kind"] != "split-mounts"]
    assert "containers   %d problems" % (len(problems) - len(explains)) in out
    sonarr = [line for line in out.splitlines() if line.startswith("  - problem: sonarr: ")]
    assert len(sonarr) == 1 and "reaches downloads and library through 2 mounts" in sonarr[0]
    explained = [f for f in problems if f["container"] == "sonarr" and f["kind"] != "split-mounts"]
    assert explained and sonarr[0].endswith(
        " - and %d more (%s)" % (len(explained), ", ".join(sorted({f["kind"] for f in explained})))
    )


def test_a_signal_stops_the_judging(tree, run, monkeypatch):
    """Ctrl-C while thousands of containers are judged: it stops at the next container
    (it used to judge on to the end, 34 s at 4,000, before exiting 130)."""
    import signal

    data = str(tree / "data")
    clients = [
        inspect(
            "qb%d" % n,
            "lscr.io/linuxserver/qbittorrent",
            [("bind", "/elsewhere/%d" % n, "/downloads", True)],
        )
        for n in range(50)
    ]
    sonarr = inspect("sonarr", "lscr.io/linuxserver/sonarr", [("bind", data, "/data", True)])
    real_own_source, calls = cms.own_source, []

    def own_source(client):
        calls.append(client.name)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_own_source(client)

    monkeypatch.setattr(cms, "own_source", own_source)
    code, document, err = check(run, tree, clients + [sonarr])
    assert code == 130 and document is None
    assert err.startswith("interrupted: the check was stopped")
    assert len(calls) <= 2  # the client it was at, not the other 49


def compose_service(image, volumes, env=()):
    return {"image": image, "volumes": volumes, "environment": list(env)}


def test_a_named_volume_that_binds_the_tree_is_the_tree(tree, run):
    """driver_opts {type: none, o: bind, device: .../data}: a volume that is the tree's
    folder, judged as that folder (it was 'a docker volume, not a folder'); its
    volume.subpath is honoured."""
    data = str(tree / "data")
    env = lsio(tree)
    document = {
        "services": {
            "qbittorrent": compose_service("lscr.io/linuxserver/qbittorrent", [
                {"type": "volume", "source": "media-data", "target": "/data",
                 "volume": {"subpath": "torrents"}}], env),
            "sonarr": compose_service("lscr.io/linuxserver/sonarr", [
                {"type": "volume", "source": "media-data", "target": "/data"}], env),
            "plex": compose_service("plexinc/pms-docker", ["media-data:/data"], env),
        },
        "volumes": {"media-data": {"driver": "local", "driver_opts": {
            "type": "none", "o": "bind", "device": data}}},
    }  # fmt: skip
    code, result, _ = check(run, tree, document)
    assert [k for k in found(result) if k[0] == "named-volume"] == []
    qbittorrent = next(c for c in result["containers"] if c["name"] == "qbittorrent")
    assert qbittorrent["mounts"] == [
        {"type": "bind", "host": data + "/torrents", "container": "/data", "rw": True}
    ]
    assert ("path-mismatch", "qbittorrent", "sonarr", "problem") in found(result)  # /data/torrents


def test_an_inspected_volume_is_the_folder_it_binds(tree, run):
    """docker inspect shows such a volume by its _data folder: a bind of the tree's folder
    has that folder's inode, so it is judged as that folder."""
    data = str(tree / "data")
    layout = trash_layout(tree)
    sonarr = next(c for c in layout if c["Name"] == "/sonarr")
    sonarr["Mounts"] = [{"Type": "volume", "Name": "media-data", "Source": data,
                         "Destination": "/data", "RW": True}]  # fmt: skip
    code, document, _ = check(run, tree, layout)
    assert [k for k in found(document) if k[0] == "named-volume"] == []
    judged = next(c for c in document["containers"] if c["name"] == "sonarr")
    assert judged["mounts"] == [{"type": "bind", "host": data, "container": "/data", "rw": True}]


def test_an_inspected_volume_bound_outside_the_tree(tree, run, public_tmp):
    """A volume's _data that is a bind mount of a folder outside the tree: found through
    the mount table, and judged as that folder (outside the tree)."""
    if os.getuid() != 0:
        pytest.skip("needs root (a bind mount)")
    outside, data_dir = public_tmp / "elsewhere", public_tmp / "volumes" / "dl" / "_data"
    outside.mkdir()
    data_dir.mkdir(parents=True)
    if subprocess.run(["mount", "--bind", str(outside), str(data_dir)], check=False).returncode:
        pytest.skip("cannot bind mount here")
    layout = trash_layout(tree)
    client = next(c for c in layout if c["Name"] == "/qbittorrent")
    client["Mounts"].append({"Type": "volume", "Name": "dl", "Source": str(data_dir),
                             "Destination": "/downloads", "RW": True})  # fmt: skip
    code, document, _ = check(run, tree, layout)
    judged = next(c for c in document["containers"] if c["name"] == "qbittorrent")
    assert {"type": "bind", "host": os.path.realpath(str(outside)), "container": "/downloads",
            "rw": True} in judged["mounts"]  # fmt: skip
    assert ("outside-tree", "qbittorrent", "", "problem") in found(document)


def test_downloads_an_importer_cannot_hardlink(tree, run, monkeypatch):
    """With --docker, each importer's PUID is checked against the downloads as --owner's
    user would be: a client writing as another user with UMASK 022 leaves 0644 files
    that Sonarr (1000:1000) may not hardlink, so it copies them."""
    if os.getuid() != 0:
        pytest.skip("needs root (files of another user)")
    monkeypatch.setattr(cms, "protected_hardlinks", lambda: True)
    download = tree / "data" / "torrents" / "complete" / "tv" / "Show.S01"
    download.mkdir()
    (download / "e1.mkv").write_bytes(b"x" * 100)
    for path in (download, download / "e1.mkv"):
        os.chown(str(path), 1001, 1001)
    os.chmod(str(download / "e1.mkv"), 0o644)
    code, document, _ = check(run, tree, trash_layout(tree))
    (item,) = [f for f in document["findings"] if f["kind"] == "cannot-link"]
    assert item["section"] == "permissions" and item["severity"] == "problem" and code == 1
    # linuxserver's Sonarr and hotio's Radarr: one ids, each image's group "users"
    assert item["detail"].startswith(
        "sonarr (1000:1000), radarr (1000:1000) can't hardlink 1 download "
    )
    assert item["detail"].endswith("for sonarr (1000:1000)")
