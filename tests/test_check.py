"""--check: layout, one filesystem, filesystem type, probes, permissions, audit, --json."""

import errno
import json
import os
import subprocess
import sys

import pytest

from conftest import cms, dirs_on_disk, expected_dirs, snapshot


@pytest.fixture
def tree(tmp_path, run):
    assert run("--path", str(tmp_path), "-q")[0] == 0
    return tmp_path


def probe_files(base):
    found = []
    for _, dirnames, filenames in os.walk(str(base)):
        found += [name for name in dirnames + filenames if name.startswith(cms.PROBE_PREFIX)]
    return found


def check_json(run, base, *extra):
    code, out, err = run("--path", str(base), "--check", "--json", *extra)
    return code, json.loads(out)


def kinds(document):
    return sorted((f["kind"], f["path"]) for f in document["findings"])


@pytest.fixture
def mount():
    """mount(args..., target): a real mount as root, undone after the test; skip elsewhere."""
    done = []

    def call(*args):
        target = args[-1]
        proc = subprocess.run(
            ["mount"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
        )
        if proc.returncode != 0:
            pytest.skip("cannot mount here (needs root): %s" % proc.stdout.decode().strip())
        done.append(target)

    yield call
    for target in reversed(done):
        subprocess.run(["umount", target], check=False)


def test_healthy_tree(tree, run):
    before = snapshot(tree)
    code, out, err = run("--path", str(tree), "--check")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[:4] == [
        "check of %s" % (tree / "data"),
        "layout          ok: all 52 folders are there",
        "one filesystem  ok: every folder is on the same filesystem and mount as data/",
        "probes          ok: a hardlink and a move from each complete/ into media/ both work",
    ]
    assert lines[-1] == "result: healthy"
    assert "  torrents: 0 file(s), 0 B" in lines
    assert snapshot(tree) == before  # probe files gone, folder times put back
    assert probe_files(tree) == []


def test_check_never_creates_a_folder(tmp_path, run):
    code, out, _ = run("--path", str(tmp_path), "--check")
    assert code == 1
    assert list(tmp_path.iterdir()) == []
    assert "  - %s: missing (and the 51 folders below it)" % (tmp_path / "data") in out
    assert "    fix: run without --check to create it" in out
    assert "note: torrents: probes and audit skipped, complete/ or media/ is missing" in out
    assert out.splitlines()[-1] == "result: 1 problem(s), see above"


def test_missing_and_conflicting_folders(tree, run):
    import shutil

    shutil.rmtree(str(tree / "data" / "media" / "anime"))
    shutil.rmtree(str(tree / "data" / "ddl" / "incomplete"))
    shutil.rmtree(str(tree / "data" / "usenet" / "complete"))
    (tree / "data" / "usenet" / "complete").write_text("mine")
    before = snapshot(tree)
    code, document = check_json(run, tree)
    assert code == 1
    assert snapshot(tree) == before
    assert [(f["kind"], f["path"], f["detail"]) for f in document["findings"]] == [
        ("conflict", str(tree / "data/usenet/complete"), "a file is in the way"),
        ("missing", str(tree / "data/ddl/incomplete"), "missing"),
        ("missing", str(tree / "data/media/anime"), "missing (and the 2 folders below it)"),
    ]
    assert [a["source"] for a in document["audit"]] == ["torrents", "ddl"]


def test_missing_path_fails_cleanly(tmp_path, run):
    code, out, err = run("--path", str(tmp_path / "nope"), "--check")
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: %s: no such folder; is the array / volume mounted?" % (tmp_path / "nope")
    )


def test_json_needs_check(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--json")
    assert code == 2
    assert "--json goes with --check" in err


# -- one filesystem, for real where we can mount -----------------------------------------


def test_tmpfs_over_media_is_a_second_filesystem(tree, run, mount):
    media = tree / "data" / "media"
    mount("-t", "tmpfs", "tmpfs", str(media))
    run("--path", str(tree), "-q")  # the tree inside the new filesystem
    code, document = check_json(run, tree)
    assert code == 1
    found = kinds(document)
    assert ("mount-point", str(media)) in found
    assert next(f for f in document["findings"] if f["section"] == "filesystem")["detail"] == (
        "a mount point (tmpfs tmpfs): links and moves across it fail with EXDEV"
    )
    probes = [f for f in document["findings"] if f["section"] == "probe"]
    assert [(f["kind"], f["errno"]) for f in probes] == [
        ("hardlink-failed", "EXDEV"),
        ("move-failed", "EXDEV"),
    ] * 3
    assert probe_files(tree) == []
    code, out, _ = run("--path", str(tree), "--check")
    assert "  - %s: a mount point (tmpfs tmpfs)" % media in out
    assert out.count("fix: complete/ and media/ are not on one filesystem") == 1


def test_bind_mount_same_device_still_fails(tree, run, mount):
    elsewhere = tree / "elsewhere"
    elsewhere.mkdir()
    media = tree / "data" / "media"
    mount("--bind", str(elsewhere), str(media))
    run("--path", str(tree), "-q")
    assert os.stat(str(media)).st_dev == os.stat(str(tree / "data")).st_dev
    code, document = check_json(run, tree)
    assert code == 1
    boundary = [f for f in document["findings"] if f["section"] == "filesystem"]
    assert [(f["kind"], f["path"]) for f in boundary] == [("mount-point", str(media))]
    assert "a bind mount of" in boundary[0]["detail"]
    assert {f["errno"] for f in document["findings"] if f["section"] == "probe"} == {"EXDEV"}
    assert probe_files(tree) == [] and probe_files(elsewhere) == []


def test_symlink_to_another_filesystem(tree, run, tmp_path_factory):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(str(tree)).st_dev:
        pytest.skip("/dev/shm is not a separate filesystem here")
    target = os.path.join(shm, "cms-test-%d" % os.getpid())
    os.mkdir(target)
    try:
        movies = tree / "data" / "media" / "movies"
        movies.rmdir()
        movies.symlink_to(target)
        code, document = check_json(run, tree)
        assert code == 1
        assert kinds(document) == [("symlink-elsewhere", str(movies))]
        assert document["findings"][0]["detail"].startswith("a symlink to %s, on another" % target)
    finally:
        os.rmdir(target)


def test_other_device_without_a_mount_table(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "MOUNTINFO", str(tree / "no-such-file"))
    real_lstat = os.lstat
    media = str(tree / "data" / "media")

    def other_device(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        if os.fsdecode(path).startswith(media):
            values = list(st)
            values[2] = st.st_dev + 1  # st_dev
            extra = {name: getattr(st, name) for name in ("st_atime_ns", "st_mtime_ns")}
            return os.stat_result(values, extra)
        return st

    monkeypatch.setattr(os, "lstat", other_device)
    code, document = check_json(run, tree)
    assert code == 1
    boundary = [
        (f["kind"], f["path"]) for f in document["findings"] if f["section"] == "filesystem"
    ]
    assert boundary == [("other-filesystem", media)]
    assert document["notes"][0].startswith("no mount table here")


def tree_mounted_as(tree, monkeypatch, fstype):
    """Point the script at a mount table where the tree's folder is a mount of fstype."""
    table = tree / "mountinfo"
    table.write_bytes(
        b"21 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"22 21 0:50 / %s rw - %s src\\040one rw\n"
        % (os.path.realpath(str(tree)).encode(), fstype.encode())
    )
    monkeypatch.setattr(cms, "MOUNTINFO", str(table))


@pytest.mark.parametrize("fstype", ["vfat", "exfat", "cifs", "smb3", "9p"])
def test_filesystem_without_hardlinks(tree, run, monkeypatch, fstype):
    tree_mounted_as(tree, monkeypatch, fstype)
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document) == [("no-hardlinks", str(tree / "data"))]
    assert document["notes"][0] == "data/ is on %s src one, mounted at %s" % (
        fstype,
        os.path.realpath(str(tree)),
    )


@pytest.mark.parametrize("fstype", ["fuse.mergerfs", "fuse.shfs"])
def test_union_filesystem_is_a_note(tree, run, monkeypatch, fstype):
    tree_mounted_as(tree, monkeypatch, fstype)
    code, document = check_json(run, tree)
    assert code == 0
    assert document["notes"][1].startswith("%s is a union of disks" % fstype)


def test_read_mountinfo_and_mount_of():
    text = (
        b"22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"
        b"23 22 8:2 /sub /mnt/my\\040disk rw - xfs /dev/sdb1 rw\n"
        b"24 22 0:3 / /mnt/my rw - tmpfs tmpfs rw\n"
        b"garbage line\n"
        b"25 22 0:4 / /mnt/my\\040disk rw - tmpfs over rw\n"
    )
    mounts = cms.read_mountinfo(text)
    assert [m.point for m in mounts] == ["/", "/mnt/my disk", "/mnt/my", "/mnt/my disk"]
    assert mounts[1] == cms.Mount("/mnt/my disk", "/sub", "xfs", "/dev/sdb1")
    assert cms.mount_of("/mnt/my disk/x", mounts).source == "over"  # the last mount wins
    assert cms.mount_of("/mnt/my/x", mounts).fstype == "tmpfs"
    assert cms.mount_of("/mnt/mydisk", mounts).point == "/"
    assert cms.mount_of("/srv", []) is None


# -- probes, with faults injected ---------------------------------------------------------


@pytest.mark.parametrize(
    "operation, error, kind",
    [
        ("link", errno.EXDEV, "hardlink-failed"),
        ("link", errno.EPERM, "hardlink-failed"),
        ("link", errno.EMLINK, "hardlink-failed"),
        ("rename", errno.EACCES, "move-failed"),
        ("rename", errno.EXDEV, "move-failed"),
        ("open", errno.EROFS, "hardlink-failed"),
        ("open", errno.ENOSPC, "hardlink-failed"),
    ],
)
def test_probe_failures_are_classified_and_leave_nothing(
    tree, run, monkeypatch, operation, error, kind
):
    def refuse(*args, **kwargs):
        raise OSError(error, os.strerror(error), args[0])

    real_open = os.open
    if operation == "open":
        monkeypatch.setattr(
            os,
            "open",
            lambda path, *a, **k: (
                refuse(path) if cms.PROBE_PREFIX in os.fsdecode(path) else real_open(path, *a, **k)
            ),
        )
    else:
        monkeypatch.setattr(os, operation, refuse)
    before = snapshot(tree)
    code, document = check_json(run, tree)
    assert code == 1
    probes = [f for f in document["findings"] if f["section"] == "probe"]
    assert len(probes) == (6 if operation == "open" else 3)
    assert {(f["kind"], f["errno"]) for f in probes} >= {(kind, errno.errorcode[error])}
    assert probes[0]["fix"] == cms.PROBE_FIXES.get(error, cms.HINTS.get(error))
    assert probe_files(tree) == []
    assert snapshot(tree) == before


def test_probe_failing_halfway_removes_only_its_own_files(tree, run, monkeypatch):
    real_link = os.link

    def link_then_fail(src, dst):
        real_link(src, dst)
        raise OSError(errno.EIO, "Input/output error", dst)

    monkeypatch.setattr(os, "link", link_then_fail)
    code, document = check_json(run, tree)
    assert code == 1
    assert probe_files(tree) == []

    # A file that is not the probe's own, at the probe's destination, stays.
    def someone_elses(src, dst):
        with open(dst, "w") as handle:
            handle.write("not yours")
        raise OSError(errno.EEXIST, "File exists", dst)

    monkeypatch.setattr(os, "link", someone_elses)
    code, document = check_json(run, tree)
    assert code == 1
    left = probe_files(tree / "data" / "media")
    assert len(left) == 3
    assert all((tree / "data" / "media" / name).read_text() == "not yours" for name in left)
    assert probe_files(tree / "data" / "torrents") == []


def test_a_link_that_arrives_as_another_file(tree, run, monkeypatch):
    import shutil

    monkeypatch.setattr(os, "link", shutil.copyfile)  # what a copying filesystem amounts to
    code, document = check_json(run, tree)
    assert code == 1
    assert {f["detail"] for f in document["findings"]} == {
        "hardlink from %s/complete to media failed: the hardlink arrived as another file" % s
        for s in ("torrents", "usenet", "ddl")
    }
    assert probe_files(tree) == []


# -- permissions with --owner -------------------------------------------------------------


def test_owner_who_cannot_write(tree, run):
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert code == 1
    denied = [f for f in document["findings"] if f["kind"] == "not-writable"]
    assert len(denied) == 52
    assert denied[0]["detail"] == "4242:4242 cannot write here (owner 0:0, mode 0775)"
    assert denied[0]["fix"] == "rerun without --check with --owner 4242:4242"
    assert run("--path", str(tree), "--owner", "4242:4242", "-q")[0] == 0
    code, out, _ = run("--path", str(tree), "--check", "--owner", "4242:4242")
    assert code == 0
    assert "permissions     ok: 4242:4242 can write every folder" in out


def test_group_and_other_bits_count(tree, run):
    assert run("--path", str(tree), "--check", "--owner", "4242:0")[0] == 0  # group 0, 775
    assert run("--path", str(tree), "--check", "--owner", "0")[0] == 0  # root writes anywhere
    os.chmod(str(tree / "data" / "media" / "tv"), 0o777)
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert str(tree / "data" / "media" / "tv") not in {f["path"] for f in document["findings"]}


# -- the audit ------------------------------------------------------------------------------


def make_file(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture(params=[1, 2, 3], ids=["1-worker", "2-workers", "3-workers"])
def workers(request, monkeypatch):
    """The same audit with the download folders shared out over 1, 2 or 3 processes."""
    monkeypatch.setattr(cms, "_audit_workers", lambda: request.param)
    return request.param


def test_audit_counts_lone_files_exactly(tree, run, workers):
    complete = tree / "data" / "torrents" / "complete"
    media = tree / "data" / "media"
    linked = make_file(complete / "movies" / "Linked.2024" / "linked.mkv", 5000)
    os.link(str(linked), str(media / "movies" / "linked.mkv"))
    make_file(complete / "movies" / "Lone.2023" / "lone.mkv", 3000)
    make_file(complete / "movies" / "Lone.2023" / "Subs" / "en.srt", 100)
    make_file(complete / "tv" / "Show.S01" / "e1.mkv", 7000)
    make_file(complete / "anime" / "tv" / "Anime.S02" / "e1.mkv", 900)
    make_file(complete / "music" / "loose.flac", 400)  # loose in a tree folder
    (complete / "books" / "link-to-nothing").symlink_to("/nowhere")  # not a file
    for index in range(6):
        make_file(complete / "books" / ("Book%d" % index) / "b.epub", 10 + index)
    make_file(tree / "data" / "usenet" / "complete" / "tv" / "Left.Over" / "x.mkv", 123)
    before = snapshot(tree)
    code, document = check_json(run, tree)
    assert code == 0  # the audit alone never fails
    assert snapshot(tree) == before
    torrents, usenet, ddl = document["audit"]
    assert (torrents["files"], torrents["bytes"]) == (11, 3000 + 100 + 7000 + 900 + 400 + 75)
    assert [(b["path"], b["files"], b["bytes"]) for b in torrents["biggest"]] == [
        (str(complete / "tv" / "Show.S01"), 1, 7000),
        (str(complete / "movies" / "Lone.2023"), 2, 3100),
        (str(complete / "anime" / "tv" / "Anime.S02"), 1, 900),
        (str(complete / "music"), 1, 400),
        (str(complete / "books" / "Book5"), 1, 15),
    ]
    assert (usenet["files"], usenet["bytes"], ddl["files"]) == (1, 123, 0)
    code, out, _ = run("--path", str(tree), "--check")
    assert (
        "  torrents: 11 file(s), 11.2 KiB - not imported yet, imported as a copy, "
        "or kept only for seeding"
    ) in out
    assert "      6.8 KiB in 1 file(s): tv/Show.S01" in out
    assert "  usenet:   1 file(s), 123 B - leftovers: an import moves the file out" in out


def test_audit_counts_unreadable_folders(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "_audit_workers", lambda: 1)  # measured in this process
    make_file(tree / "data" / "ddl" / "complete" / "movies" / "Locked" / "f.mkv", 10)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fsdecode(path).endswith("Locked"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, document = check_json(run, tree)
    assert document["audit"][2]["unreadable_folders"] == 1
    code, out, _ = run("--path", str(tree), "--check")
    assert "    1 folder(s) could not be read" in out


def test_audit_with_non_utf8_names(tree, run):
    folder = os.fsencode(str(tree / "data" / "torrents" / "complete" / "tv")) + b"/\xff.S01"
    os.mkdir(folder)
    with open(folder + b"/\xfe.mkv", "wb") as handle:
        handle.write(b"12345")
    code, document = check_json(run, tree)
    assert document["audit"][0]["biggest"][0]["path"].endswith("/tv/\udcff.S01")
    code, out, _ = run("--path", str(tree), "--check")
    assert code == 0 and "tv/\\udcff.S01" in out  # escaped on a UTF-8 stream, no crash


def test_progress_on_a_terminal(tree, monkeypatch, capsys):
    import io
    import time

    for index in range(4):  # some for each worker
        make_file(tree / "data" / "torrents" / "complete" / "tv" / ("S%d" % index) / "e.mkv", 1)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cms.main(["--path", str(tree), "--check"]) == 0
    assert "\rchecking: " in terminal.getvalue()
    assert terminal.getvalue().endswith(" " * 40 + "\r")


def test_quiet_check(tree, run):
    assert run("--path", str(tree), "--check", "-q") == (0, "", "")
    (tree / "data" / "ddl" / "incomplete").rmdir()
    code, out, err = run("--path", str(tree), "--check", "-q")
    assert (code, out) == (1, "")
    assert err == "error: %s: missing\n" % (tree / "data" / "ddl" / "incomplete")


def test_json_says_what_the_text_says(tree, run):
    (tree / "data" / "media" / "tv").rmdir()
    code_json, document = check_json(run, tree, "--owner", "4242:4242")
    code_text, out, _ = run("--path", str(tree), "--check", "--owner", "4242:4242")
    assert code_json == code_text == 1
    assert document["healthy"] is False
    for finding in document["findings"]:
        assert "  - %s: %s" % (finding["path"], finding["detail"]) in out
    assert out.splitlines()[-1] == "result: %d problem(s), see above" % len(document["findings"])
    assert dirs_on_disk(tree) == expected_dirs() - {"data/media/tv"}


def test_audit_without_fork(tree, run, monkeypatch):
    make_file(tree / "data" / "ddl" / "complete" / "tv" / "X" / "e.mkv", 10)
    monkeypatch.delattr(os, "fork")
    assert cms._audit_workers() == 1
    code, document = check_json(run, tree)
    assert document["audit"][2]["files"] == 1


def test_a_failed_worker_share_is_done_again(tree, run, monkeypatch):
    for index in range(6):
        make_file(tree / "data" / "usenet" / "complete" / "tv" / ("S%d" % index) / "e", 7)
    monkeypatch.setattr(cms, "_audit_workers", lambda: 2)
    parent = os.getpid()
    real_share = cms._audit_share

    def dies_in_the_child(*args):
        if os.getpid() != parent:
            raise MemoryError("worker died")
        return real_share(*args)

    monkeypatch.setattr(cms, "_audit_share", dies_in_the_child)
    code, document = check_json(run, tree)
    assert code == 0
    assert (document["audit"][1]["files"], document["audit"][1]["bytes"]) == (6, 42)


def test_an_unreadable_tree_folder_is_counted_once(tree, run, monkeypatch, workers):
    real_scandir = os.scandir
    tv = str(tree / "data" / "torrents" / "complete" / "tv")

    def scandir(path="."):
        if os.fsdecode(path) == tv:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, document = check_json(run, tree)
    assert document["audit"][0]["unreadable_folders"] == 1


def test_a_file_gone_while_the_audit_looks(tmp_path):
    class Vanished:
        def is_file(self, follow_symlinks=True):
            return True

        def stat(self, follow_symlinks=True):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    assert cms._lone_file_size(Vanished()) is None


def test_folder_times_that_cannot_be_put_back(tree, run, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "utime", refuse)
    assert run("--path", str(tree), "--check", "-q") == (0, "", "")
    assert probe_files(tree) == []
