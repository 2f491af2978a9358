"""--check: layout, filesystem, probes of every import pair, permissions, audit, --json."""

import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import SCRIPT, cms, dirs_on_disk, expected_dirs, loop_mounted, needs_root, snapshot

PAIRS = 18  # 3 sources x 6 categories (books, movies, music, tv, anime/movies, anime/tv)
IMPORT_FOLDERS = 3 + PAIRS + 6  # incomplete/ of each source, complete/<cat>, media/<cat>


def probe_files(base):
    found = []
    for _, dirnames, filenames in os.walk(str(base)):
        found += [name for name in dirnames + filenames if name.startswith(cms.PROBE_PREFIX)]
    return found


def check_json(run, base, *extra):
    code, out, err = run("--path", str(base), "--check", "--json", *extra)
    return code, json.loads(out)


def kinds(document, section=None):
    return sorted(
        (f["kind"], f["path"])
        for f in document["findings"]
        if section is None or f["section"] == section
    )


def severities(document, section):
    return {f["severity"] for f in document["findings"] if f["section"] == section}


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
        subprocess.run(["umount", "-l", target], check=False)


def test_healthy_tree(tree, run):
    before = snapshot(tree)
    code, out, err = run("--path", str(tree), "--check")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[:5] == [
        "check of %s" % (tree / "data"),
        "layout       ok: all 52 folders are there",
        "filesystem   ok: every folder is on data/'s filesystem and mount",
        "probes       ok: %d import pair(s): a hardlink and a move each work" % PAIRS,
        "permissions  not checked: give --owner PUID:PGID to check as the containers' user",
    ]
    assert "note: the probes ran as you (uid %d, gid %d)" % (os.getuid(), os.getgid()) in out
    assert lines[-1] == "result: healthy"
    assert "  torrents: 0 file(s), 0 B" in lines
    assert snapshot(tree) == before  # probe files gone, folder times put back
    assert probe_files(tree) == []
    code, document = check_json(run, tree)
    assert document["sections"] == {
        "layout": "ok",
        "filesystem": "ok",
        "probes": "ok",
        "permissions": lines[4].split("  ", 1)[1].strip(),
    }
    assert document["healthy"] is True
    assert document["probed_as"] == "%d:%d" % (os.getuid(), os.getgid())


def test_check_never_creates_a_folder(tmp_path, run):
    code, out, _ = run("--path", str(tmp_path), "--check")
    assert code == 1
    assert list(tmp_path.iterdir()) == []
    assert (
        "layout       1 problem: %s: missing (and the 51 folders below it)" % (tmp_path / "data")
        in out
    )
    # The fix is the command itself, to paste.
    assert "  fix: python3 create_media_structure.py --path %s\n" % tmp_path in out
    assert "probes       not checked: data/ is not there" in out
    assert "ok" not in out.replace("look", "")  # nothing said ok that wasn't checked
    assert out.splitlines()[-1] == "result: 1 problem, see above"


def test_missing_and_conflicting_folders(tree, run):
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
    assert document["sections"]["probes"] == "ok"  # the 8 pairs that are there work
    code, out, _ = run("--path", str(tree), "--check")
    assert "probes       ok: %d import pair(s)" % PAIRS not in out


def test_no_pair_to_probe_is_not_checked(tree, run):
    shutil.rmtree(str(tree / "data" / "media"))
    code, document = check_json(run, tree)
    assert code == 1
    assert document["sections"]["probes"] == (
        "not checked: no category has both complete/ and media/ folders"
    )


def test_missing_path_fails_cleanly(tmp_path, run):
    code, out, err = run("--path", str(tmp_path / "nope"), "--check")
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: %s: no such folder; is the array / volume mounted?" % (tmp_path / "nope")
    )


# -- boundaries, for real where we can mount ------------------------------------------------


@needs_root
def test_tmpfs_over_media_is_a_second_filesystem(tree, run, mount):
    media = tree / "data" / "media"
    mount("-t", "tmpfs", "tmpfs", str(media))
    run("--path", str(tree), "-q")  # the tree inside the new filesystem
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document, "filesystem") == [("mount-point", str(media))]
    boundary = next(f for f in document["findings"] if f["section"] == "filesystem")
    assert boundary["detail"] == (
        "a mount point (tmpfs tmpfs): links and moves across it fail with EXDEV; the probes' "
        "hardlink and move of %d import pair(s) across it failed so" % PAIRS
    )
    assert boundary["severity"] == "problem"
    # One cause, one finding: the probes' EXDEV across it is in its paths, not counted again.
    assert [f for f in document["findings"] if f["section"] == "probes"] == []
    assert document["sections"]["probes"] == (
        "%d of %d import pair(s) fail across a boundary (see filesystem)" % (PAIRS, PAIRS)
    )
    assert str(tree / "data/torrents/complete/books") in boundary["paths"]
    assert len(boundary["paths"]) == 1 + PAIRS
    assert probe_files(tree) == []
    code, out, _ = run("--path", str(tree), "--check")
    assert "filesystem   1 problem: a mount point (tmpfs tmpfs)" in out
    assert "  where: %s, " % media in out  # the tmpfs root is sticky: a warning besides
    assert out.splitlines()[-1].startswith("result: 1 problem, ")


@needs_root
@pytest.mark.parametrize("where", ["torrents/incomplete", "media/personal"])
def test_a_boundary_no_import_crosses_is_a_warning(tree, run, mount, where):
    folder = tree / "data" / where
    mount("-t", "tmpfs", "tmpfs", str(folder))
    run("--path", str(tree), "-q")
    code, document = check_json(run, tree)
    assert code == 0, document["findings"]
    assert document["healthy"] is True
    assert kinds(document, "filesystem") == [("mount-point", str(folder))]
    assert severities(document, "filesystem") == {"warning"}
    if where == "torrents/incomplete":  # the client copies finished downloads
        finish = [f for f in document["findings"] if f["kind"] == "finish-failed"]
        assert len(finish) == 6 and {f["severity"] for f in finish} == {"warning"}
        assert "copied, not moved" in document["findings"][0]["detail"]
    code, out, _ = run("--path", str(tree), "--check")
    assert out.splitlines()[-1].startswith("result: healthy, ")


@needs_root
def test_a_category_on_another_disk_fails_its_pair_only(tree, run, mount):
    tv = tree / "data" / "media" / "tv"
    mount("-t", "tmpfs", "tmpfs", str(tv))
    code, document = check_json(run, tree)
    assert code == 1
    (boundary,) = [f for f in document["findings"] if f["section"] == "filesystem"]
    assert boundary["paths"] == [str(tv)] + [
        str(tree / "data" / source / "complete/tv") for source in ("ddl", "torrents", "usenet")
    ]
    assert document["sections"]["probes"].startswith("3 of ")


def test_categories_made_on_disk_are_probed_too(tree, run):
    # Made by hand, or by --add-category on the first run and not on this one: a check
    # that skipped complete/movies-4k -> media/movies-4k said healthy of a path it
    # never tried.  A folder of one name in a client's complete/ and in media/ is one.
    data = tree / "data"
    for parts in (
        "torrents/complete/movies-4k",
        "media/movies-4k",
        "usenet/complete/movies-4k",
        "torrents/complete/Some.Download.2160p",
        "media/#recycle",
        "torrents/complete/#recycle",
        "media/.hidden",
        "ddl/complete/.hidden",
    ):
        (data / parts).mkdir()
    code, out, _ = run("--path", str(tree), "--check")
    assert code == 0
    assert "probes       ok: 20 import pair(s): a hardlink and a move each work" in out
    assert (
        "note: also checked, found on disk in complete/ and media/: movies-4k "
        "(--add-category movies-4k makes it in every client)"
    ) in out
    code, out, _ = run("--path", str(tree), "--check", "--add-category", "movies-4k")
    assert "also checked" not in out and "ddl/complete/movies-4k: missing" in out


@needs_root
def test_a_category_made_on_disk_on_another_disk(tree, run, mount):
    data = tree / "data"
    (data / "torrents/complete/movies-4k").mkdir()
    (data / "media/movies-4k").mkdir()
    mount("-t", "tmpfs", "tmpfs", str(data / "media/movies-4k"))
    code, document = check_json(run, tree)
    assert code == 1
    (boundary,) = [f for f in document["findings"] if f["section"] == "filesystem"]
    assert boundary["paths"] == [str(data / "media/movies-4k"),
                                 str(data / "torrents/complete/movies-4k")]  # fmt: skip


@needs_root
def test_bind_mount_same_device_still_fails(tree, run, mount):
    elsewhere = tree / "elsewhere"
    elsewhere.mkdir()
    media = tree / "data" / "media"
    mount("--bind", str(elsewhere), str(media))
    run("--path", str(tree), "-q")
    assert os.stat(str(media)).st_dev == os.stat(str(tree / "data")).st_dev
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document, "filesystem") == [("mount-point", str(media))]
    boundary = next(f for f in document["findings"] if f["section"] == "filesystem")
    assert "a bind mount of" in boundary["detail"]
    assert "import pair(s) across it failed so" in boundary["detail"]
    assert document["sections"]["probes"].endswith("fail across a boundary (see filesystem)")
    assert probe_files(tree) == [] and probe_files(elsewhere) == []


@needs_root
def test_tree_on_tmpfs_is_a_warning(tmp_path, run, mount):
    base = tmp_path / "ram"
    base.mkdir()
    mount("-t", "tmpfs", "tmpfs", str(base))
    assert run("--path", str(base), "-q")[0] == 0
    code, document = check_json(run, base)
    assert code == 0
    assert kinds(document, "filesystem") == [("ram", str(base / "data"))]
    assert severities(document, "filesystem") == {"warning"}
    assert "gone at the next reboot" in document["findings"][0]["detail"]


def test_tree_on_unraids_root_in_ram_is_a_warning(tree, run, monkeypatch):
    # Unraid runs from RAM: with the array stopped, /mnt/user is a folder of rootfs.
    tree_mounted_as(tree, monkeypatch, "rootfs")
    code, document = check_json(run, tree)
    assert code == 0
    assert kinds(document, "filesystem") == [("ram", str(tree / "data"))]
    assert "data/ is on rootfs, in memory" in document["findings"][0]["detail"]


def test_symlink_to_another_filesystem(tree, run):
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
        assert kinds(document, "filesystem") == [("symlink-elsewhere", str(movies))]
        (boundary,) = [f for f in document["findings"] if f["section"] == "filesystem"]
        assert boundary["detail"].startswith("a symlink to %s, on another" % target)
        assert boundary["severity"] == "problem"
    finally:
        os.rmdir(target)


@needs_root
def test_symlink_to_a_bind_mount_on_the_same_device(tree, run, mount):
    # Same st_dev, another mount: only the mount table shows the boundary.
    source, point = tree / "disk", tree / "bound"
    source.mkdir()
    point.mkdir()
    mount("--bind", str(source), str(point))
    movies = tree / "data" / "media" / "movies"
    movies.rmdir()
    movies.symlink_to(point)
    assert os.stat(str(movies)).st_dev == os.stat(str(tree / "data")).st_dev
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document, "filesystem") == [("symlink-elsewhere", str(movies))]
    assert "a bind mount of" in document["findings"][0]["detail"]


def test_symlink_leaving_data_on_the_same_filesystem_is_a_warning(tree, run):
    outside = tree / "disk2-movies"
    outside.mkdir()
    movies = tree / "data" / "media" / "movies"
    movies.rmdir()
    movies.symlink_to(outside)
    code, document = check_json(run, tree)
    assert code == 0  # imports on the host work
    assert kinds(document) == [("symlink-outside", str(movies))]
    assert document["findings"][0]["severity"] == "warning"
    assert "container" in document["findings"][0]["detail"]
    assert document["sections"]["filesystem"] == "warning"


def test_other_device_without_a_mount_table(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "MOUNTINFO", str(tree / "no-such-file"))
    real_fstat, real_stat = os.fstat, os.stat
    media = str(tree / "data" / "media")

    def shifted(st):
        values = list(st)
        values[2] = st.st_dev + 1  # st_dev
        extra = {name: getattr(st, name) for name in ("st_atime_ns", "st_mtime_ns")}
        return os.stat_result(values, extra)

    def fstat(fd):
        st = real_fstat(fd)
        if fd > 2 and os.readlink("/proc/self/fd/%d" % fd).startswith(media):
            return shifted(st)
        return st

    def stat(path, *args, dir_fd=None, **kwargs):
        st = real_stat(path, *args, dir_fd=dir_fd, **kwargs)
        if dir_fd is not None and os.readlink("/proc/self/fd/%d" % dir_fd).startswith(media):
            return shifted(st)
        return st

    monkeypatch.setattr(os, "fstat", fstat)
    monkeypatch.setattr(os, "stat", stat)
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document, "filesystem") == [("other-filesystem", media)]
    assert document["notes"][0] == (
        "%s can't be read (No such file or directory): bind mounts inside the tree were "
        "not checked, devices were" % (tree / "no-such-file")
    )


def tree_mounted_as(tree, monkeypatch, fstype):
    """Point the script at a mount table where the tree's folder is a mount of fstype."""
    table = tree / "mountinfo"
    table.write_bytes(
        b"21 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"22 21 0:50 / %s rw - %s src\\040one rw\n"
        % (os.path.realpath(str(tree)).encode(), fstype.encode())
    )
    monkeypatch.setattr(cms, "MOUNTINFO", str(table))


@pytest.mark.parametrize("fstype", ["vfat", "exfat"])
def test_filesystem_without_hardlinks(tree, run, monkeypatch, fstype):
    tree_mounted_as(tree, monkeypatch, fstype)
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document) == [("no-hardlinks", str(tree / "data"))]
    assert document["notes"][0] == "data/ is on %s src one, mounted at %s" % (
        fstype,
        os.path.realpath(str(tree)),
    )


@pytest.mark.parametrize("fstype", ["cifs", "smb3", "9p"])
def test_a_network_share_is_judged_by_its_probes(tree, run, monkeypatch, fstype):
    # Over SMB or 9p hardlinks depend on the server (Samba and Windows allow them).
    tree_mounted_as(tree, monkeypatch, fstype)
    code, document = check_json(run, tree)
    assert code == 0, document["findings"]  # the probes' hardlinks worked
    assert kinds(document) == [("server-hardlinks", str(tree / "data"))]
    assert severities(document, "filesystem") == {"warning"}
    real = os.link

    def refuse(*args, **kwargs):
        if cms.PROBE_PREFIX in os.fsdecode(args[0]):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "link", refuse)  # a server without them
    code, document = check_json(run, tree)
    assert code == 1
    assert {f["kind"] for f in document["findings"] if f["severity"] == "problem"} == {
        "hardlink-failed"
    }


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
    assert cms.mount_of("/mnt/my disk/x", mounts).device == "over"  # the last mount wins
    assert cms.mount_of("/mnt/my/x", mounts).fstype == "tmpfs"
    assert cms.mount_of("/mnt/mydisk", mounts).point == "/"
    assert cms.mount_of("/srv", []) is None


def test_which_boundaries_an_import_crosses():
    pairs = cms.import_pairs(cms.list_folders(cms.TREE))
    assert len(pairs) == PAIRS
    assert ("torrents", ("data", "torrents", "complete", "anime", "tv"),
            ("data", "media", "anime", "tv")) in pairs  # fmt: skip
    crossed = cms.crossed_by_import
    assert crossed(("data", "media"), pairs)
    assert crossed(("data", "torrents"), pairs)
    assert crossed(("data", "media", "tv", "Show"), pairs)  # inside an import folder
    assert not crossed(("data", "torrents", "incomplete"), pairs)
    assert not crossed(("data", "media", "personal"), pairs)
    assert not crossed(("data",), pairs)


# -- probes, with faults injected ---------------------------------------------------------


@pytest.mark.parametrize(
    "operation, error, kind, count",
    [
        ("link", errno.EXDEV, "hardlink-failed", PAIRS),
        ("link", errno.EPERM, "hardlink-failed", PAIRS),
        ("link", errno.EMLINK, "hardlink-failed", PAIRS),
        ("link", errno.EOPNOTSUPP, "hardlink-failed", PAIRS),  # a share without hardlinks
        ("rename", errno.EROFS, "finish-failed", 3 * 6),
        ("open", errno.ENOSPC, "create-failed", 3 + PAIRS),
    ],
)
def test_probe_failures_name_the_step_and_leave_nothing(
    tree, run, monkeypatch, operation, error, kind, count
):
    real = getattr(os, operation)

    def refuse(*args, **kwargs):
        if cms.PROBE_PREFIX in os.fsdecode(args[0]):
            raise OSError(error, os.strerror(error), args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(os, operation, refuse)
    before = snapshot(tree)
    code, document = check_json(run, tree)
    probes = [f for f in document["findings"] if f["kind"] == kind]
    assert {f["errno"] for f in probes} == {errno.errorcode[error]}
    assert probe_files(tree) == []
    assert snapshot(tree) == before
    if kind == "create-failed":  # not a failed move: the disk is full
        assert (
            probes[0]["detail"] == "the probe could not create a file here: No space left on device"
        )
        assert {f["path"] for f in probes} >= {str(tree / "data/torrents/incomplete")}
        assert code == 1
    elif kind == "finish-failed":  # rename fails for the moves into media too
        assert len(probes) == count and code == 1
        assert {f["severity"] for f in probes} == {"warning"}
    else:
        assert len(probes) == count and code == 1
        assert probes[0]["fix"] == cms.errno_fix("probe", error)


def test_a_pair_the_probe_could_not_write_in_is_not_ok(tree, run, monkeypatch):
    tv = os.stat(str(tree / "data/usenet/complete/tv"))
    real = cms._make_probe_file

    def refuse_in_tv(dir_fd, name):
        if cms.same_file(os.fstat(dir_fd), tv):
            raise PermissionError(errno.EACCES, "Permission denied")
        real(dir_fd, name)

    real_rename = os.rename

    def refuse_into_tv(src, dst, src_dir_fd=None, dst_dir_fd=None):
        if dst_dir_fd is not None and cms.same_file(os.fstat(dst_dir_fd), tv):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(cms, "_make_probe_file", refuse_in_tv)  # as a folder of mode 0555
    monkeypatch.setattr(os, "rename", refuse_into_tv)
    code, document = check_json(run, tree)
    assert code == 1
    # Not a finish that fails (the client copying instead): the user can't write there.
    assert [(f["section"], f["kind"]) for f in document["findings"]] == [
        ("permissions", "create-failed")
    ]
    assert document["sections"]["probes"] == (
        "not checked: 1 of %d import pair(s) could not be probed (see permissions)" % PAIRS
    )
    code, out, _ = run("--path", str(tree), "--check")
    assert "a hardlink and a move each work" not in out
    assert probe_files(tree) == []


def test_a_link_that_arrives_as_a_copy(tree, run, monkeypatch):
    def copy(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        data_fd = os.open(src, os.O_RDONLY, dir_fd=src_dir_fd)
        out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dst_dir_fd)
        os.write(out_fd, os.read(data_fd, 1000))
        os.close(data_fd)
        os.close(out_fd)

    monkeypatch.setattr(os, "link", copy)  # what a copying filesystem amounts to
    code, document = check_json(run, tree)
    assert code == 1
    assert len(document["findings"]) == PAIRS
    assert document["findings"][0]["detail"] == (
        "hardlink from torrents/complete/books to media/books failed: "
        "the hardlink arrived as a copy"
    )
    assert probe_files(tree) == []


def test_fuse_numbers_two_names_apart_and_it_still_counts(tree, run, monkeypatch):
    # mergerfs without use_ino: link count 2 on both names, different inode numbers.
    real_stat = os.stat

    def fuse_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.fsdecode(path).endswith(".l"):
            values = list(st)
            values[1] = st.st_ino + 1000
            return os.stat_result(values, {"st_mtime_ns": st.st_mtime_ns})
        return st

    monkeypatch.setattr(os, "stat", fuse_stat)
    code, document = check_json(run, tree)
    assert code == 1 and len(document["findings"]) == PAIRS  # ext4: the inode must match
    tree_mounted_as(tree, monkeypatch, "fuse.mergerfs")
    code, document = check_json(run, tree)
    assert code == 0, document["findings"]


def test_complete_symlinked_onto_media_is_named(tree, run):
    tv = tree / "data" / "torrents" / "complete" / "tv"
    tv.rmdir()
    tv.symlink_to(tree / "data" / "media" / "tv")
    code, document = check_json(run, tree)
    assert code == 1
    same = [f for f in document["findings"] if f["kind"] == "same-folder"]
    assert [f["detail"] for f in same] == ["torrents/complete/tv and media/tv are the same folder"]
    assert same[0]["fix"].startswith("the two folders are one folder")


def test_a_new_folder_a_killed_check_left_is_removed_only_when_empty(tree, run):
    """The probe's new folder in media/<cat> (made on a union): its probe file goes by the
    file rule, then the folder if that emptied it; a folder holding more stays, and its
    pairs are not probed."""
    tv = tree / "data" / "media" / "tv" / cms.PROBE_FOLDER
    movies = tree / "data" / "media" / "movies" / cms.PROBE_FOLDER
    for folder in (tv, movies):
        folder.mkdir()
        (folder / (cms.PROBE_NAME + ".l")).write_bytes(cms.PROBE_MARKER)
    (movies / "film.mkv").write_bytes(b"someone's")
    code, document = check_json(run, tree)
    assert "removed 2 probe file(s) that an interrupted check had left" in document["notes"]
    assert not tv.exists()
    assert sorted(os.listdir(str(movies))) == ["film.mkv"]
    assert [(f["kind"], f["path"]) for f in document["findings"]] == [
        ("probe-blocked", str(movies))
    ] * 3  # torrents, usenet and ddl into media/movies
    assert code == 0


def test_a_probe_file_moved_aside_is_removed_by_a_strict_rule(tmp_path):
    """mergerfs' rename-exdev leaves a symlink to the file it moved aside: the file is
    removed by the probe file's rule, then the symlink; no other symlink is followed on
    the way, and nothing that isn't a probe file moved aside is touched."""
    folder = tmp_path / "media" / "tv"
    aside = tmp_path / cms.UNION_ASIDE / "torrents"
    folder.mkdir(parents=True)
    aside.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "via").symlink_to(str(elsewhere))
    for where in (aside, elsewhere):
        (where / cms.PROBE_NAME).write_bytes(cms.PROBE_MARKER)
    (aside / (cms.PROBE_NAME + ".l")).write_bytes(b"someone's file")
    (aside / (cms.PROBE_NAME + ".m")).symlink_to(cms.PROBE_NAME)  # a chain: not followed
    (elsewhere / cms.UNION_ASIDE).mkdir()
    (elsewhere / cms.UNION_ASIDE / cms.PROBE_NAME).write_bytes(cms.PROBE_MARKER)
    relative = "../../%s/torrents/" % cms.UNION_ASIDE
    links = {
        "ours": relative + cms.PROBE_NAME,
        "absolute": str(aside / cms.PROBE_NAME),
        "no marker": relative + cms.PROBE_NAME + ".l",
        "chain": relative + cms.PROBE_NAME + ".m",
        "through a symlink": "../../via/%s/%s" % (cms.UNION_ASIDE, cms.PROBE_NAME),
        "not aside": "../../elsewhere/" + cms.PROBE_NAME,
        "gone": relative + "../" + cms.PROBE_NAME,
    }
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        removed = {}
        for what, target in links.items():
            (folder / what).symlink_to(target)
            removed[what] = cms._remove_probe_file(fd, what)
            if what == "ours":  # the absolute one points at the same file: put it back
                (aside / cms.PROBE_NAME).write_bytes(cms.PROBE_MARKER)
    finally:
        os.close(fd)
    assert removed == {**dict.fromkeys(links, False), "ours": True, "absolute": True}
    assert sorted(os.listdir(str(folder))) == sorted(set(links) - {"ours", "absolute"})
    assert sorted(os.listdir(str(aside))) == [cms.PROBE_NAME + ".l", cms.PROBE_NAME + ".m"]
    assert sorted(os.listdir(str(elsewhere))) == [cms.PROBE_NAME, cms.UNION_ASIDE]


def test_probe_files_a_killed_check_left_are_removed(tree, run):
    tv = tree / "data" / "media" / "tv"
    movies = tree / "data" / "media" / "movies"
    books = tree / "data" / "torrents" / "complete" / "books"
    (tv / (cms.PROBE_NAME + ".l")).write_bytes(cms.PROBE_MARKER)  # a killed check's
    (books / cms.PROBE_NAME).write_bytes(cms.PROBE_MARKER)
    (tv / (cms.PROBE_NAME + ".m")).write_bytes(b"someone's file")  # our name, not our marker
    (movies / (cms.PROBE_NAME + ".l")).symlink_to("/etc/passwd")  # not a regular file
    code, document = check_json(run, tree)
    assert "removed 2 probe file(s) that an interrupted check had left" in document["notes"]
    assert probe_files(tv) == [cms.PROBE_NAME + ".m"]
    assert probe_files(movies) == [cms.PROBE_NAME + ".l"] and probe_files(books) == []
    assert code == 0  # those names are taken: their pairs can't be probed, and it says so
    blocked = [(f["kind"], f["severity"], f["path"]) for f in document["findings"]]
    assert (
        blocked
        == [
            ("probe-blocked", "warning", str(movies / (cms.PROBE_NAME + ".l"))),
            ("probe-blocked", "warning", str(tv / (cms.PROBE_NAME + ".m"))),
        ]
        * 1
        or blocked
    )


def test_folder_times_that_cannot_be_put_back(tree, run, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "utime", refuse)
    assert run("--path", str(tree), "--check", "-q") == (0, "", "")
    assert probe_files(tree) == []


# -- as whom: the containers' user ------------------------------------------------------


@needs_root
def test_probes_run_as_the_owner_who_cannot_reach_data(public_tmp, run, monkeypatch):
    tmp_path = public_tmp / "base"
    tmp_path.mkdir()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    os.chmod(str(tmp_path), 0o700)  # root's, as mktemp -d makes it
    assert run("--path", str(tmp_path), "--owner", "4242:4242", "-q")[0] == 0
    before = snapshot(tmp_path)
    code, document = check_json(run, tmp_path, "--owner", "4242:4242")
    assert code == 1
    assert document["probed_as"] == "4242:4242"
    assert [(f["section"], f["kind"], f["path"]) for f in document["findings"]] == [
        ("permissions", "reach-failed", str(tmp_path))
    ]
    assert document["sections"]["probes"].startswith("not checked: 18 of 18 import pair(s)")
    assert snapshot(tmp_path) == before
    code, out, _ = run("--path", str(tmp_path), "--check", "--owner", "4242:4242")
    assert "note: the probes ran as uid 4242, gid 4242 (groups 4242), as the containers will" in out
    os.chmod(str(tmp_path), 0o755)
    code, document = check_json(run, tmp_path, "--owner", "4242:4242")
    assert code == 0 and document["sections"]["permissions"] == "ok"
    assert snapshot(tmp_path) == before  # times put back by the parent, as root


@needs_root
def test_probes_as_an_owner_who_may_not_write(public_tmp, run, monkeypatch):
    tree = public_tmp
    assert run("--path", str(tree), "-q")[0] == 0
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert code == 1
    # One owner and mode stop the user everywhere: one cause, one finding, its 52 folders
    # listed; the probes' EACCES in those folders is that cause too (was 21 create-failed
    # and 52 not-writable: "48 problem(s), 25 warning(s)").
    assert [f["kind"] for f in document["findings"]] == ["not-writable"]
    (mode,) = document["findings"]
    assert mode["severity"] == "problem" and len(mode["paths"]) == 52
    assert (
        mode["detail"] == "4242:4242 can't write 52 of the tree's 52 folders (owner 0:0, mode 0775)"
    )
    assert document["sections"]["probes"].startswith("not checked: 18 of 18 import pair(s)")
    code, out, _ = run("--path", str(tree), "--check", "--owner", "4242:4242")
    assert "permissions  1 problem: 4242:4242 can't write 52 of the tree's 52 folders" in out
    assert out.splitlines()[-1] == "result: 1 problem, see above"


@needs_root
def test_supplementary_groups_count(public_tmp, run, monkeypatch):
    tree = public_tmp
    assert run("--path", str(tree), "-q")[0] == 0
    import pwd

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = pwd.getpwuid

    def getpwuid(uid):
        if uid == 4242:
            return pwd.struct_passwd(("u4242", "x", 4242, 4242, "", "/", "/bin/sh"))
        return real(uid)

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(os, "getgrouplist", lambda name, gid: [gid, 0])
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert code == 0, document["findings"]  # group 0 has rwx on every folder (775)
    code, out, _ = run("--path", str(tree), "--check", "--owner", "4242:4242")
    assert "(groups 4242,0)" in out


def test_a_sticky_folder_is_a_warning(tree, run):
    # Usenet imports move the download out of complete/tv: in a sticky folder only the
    # file's owner may, so an *arr running as another user than the client can't.
    tv = tree / "data" / "usenet" / "complete" / "tv"
    os.chmod(str(tv), 0o1775)
    code, document = check_json(run, tree)
    assert code == 0 and document["healthy"] is True
    assert [(f["kind"], f["path"], f["severity"]) for f in document["findings"]] == [
        ("sticky", str(tv), "warning")
    ]
    assert document["sections"]["permissions"] == "warning"
    code, out, _ = run("--path", str(tree), "--check")
    assert code == 0
    assert "  fix: chmod -t %s\n" % tv in out
    assert "note: write access was not checked: give --owner PUID:PGID" in out
    os.chmod(str(tv), 0o775)
    code, document = check_json(run, tree)
    assert document["findings"] == [] and document["sections"]["permissions"].startswith(
        "not checked"
    )


def test_fixes_that_run_the_creator_name_the_categories_it_would_miss(tree, run):
    # The creator reaches only the tree and the --add-category it is given: a fix that
    # ran it without the hand-made "movies 4k" would leave those folders as they were.
    for parts in (("media",), ("torrents", "complete")):
        os.mkdir(str(tree.joinpath("data", *parts, "movies 4k")), 0o755)
    os.chmod(str(tree / "data" / "media" / "movies 4k"), 0o1775)
    code, document = check_json(run, tree, "--owner", "4242:4242")
    fixes = {(f["kind"], f["fix"]) for f in document["findings"]}
    create = "python3 create_media_structure.py --path %s" % tree
    assert fixes == {
        ("not-writable", create + " --owner 4242:4242 --add-category 'movies 4k'"),
        ("sticky", "chmod -t '%s'" % (tree / "data" / "media" / "movies 4k")),
    }
    # Given to the check, a category is named in the fix that creates what is missing.
    code, document = check_json(run, tree, "--add-category", "anime-4k")
    assert {(f["kind"], f["fix"]) for f in document["findings"]} == {
        ("missing", create + " --add-category anime-4k --add-category 'movies 4k'"),
        ("sticky", "chmod -t '%s'" % (tree / "data" / "media" / "movies 4k")),
    }
    code, out, _ = run("--path", str(tree), "--check")
    assert "(--add-category 'movies 4k' makes it in every client)" in out
    # A name that starts with '-' is joined by '=': argparse would take it for an option.
    assert cms.category_option("-4k") == "--add-category=-4k"
    assert run("--path", str(tree), "-q", cms.category_option("-4k"))[0] == 0
    assert (tree / "data" / "media" / "-4k").is_dir()


@needs_root
def test_the_fix_for_a_hand_made_category_works(public_tmp, run, monkeypatch):
    tree = public_tmp
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert run("--path", str(tree), "--owner", "4242:4242", "-q")[0] == 0
    for parts in (("media",), ("usenet", "complete")):
        os.mkdir(str(tree.joinpath("data", *parts, "movies-4k")), 0o755)  # root's
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert code == 1
    fixes = {f["fix"] for f in document["findings"] if f["kind"] == "not-writable"}
    assert fixes == {
        "python3 create_media_structure.py --path %s --owner 4242:4242 --add-category movies-4k"
        % tree
    }
    command = shlex.split(fixes.pop())[2:]
    assert run("-q", *command)[0] == 0
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert (code, document["findings"]) == (0, [])


@needs_root
def test_an_acl_the_mode_bits_dont_show_is_a_warning(public_tmp, run, monkeypatch):
    tree = public_tmp
    assert run("--path", str(tree), "-q")[0] == 0
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl is not installed")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert run("--path", str(tree), "--owner", "4242:4242", "-q")[0] == 0
    tv = tree / "data" / "media" / "tv"
    os.chown(str(tv), 0, 0)
    os.chmod(str(tv), 0o755)
    # The mode bits (0:0, group rwx as the ACL mask, others r-x) say 4242 can't write;
    # the ACL entry says it can.
    proc = subprocess.run(["setfacl", "-m", "u:4242:rwx", str(tv)], check=False)
    if proc.returncode != 0:
        pytest.skip("this filesystem has no ACLs")
    code, document = check_json(run, tree, "--owner", "4242:4242")
    assert code == 0, document["findings"]
    assert [(f["kind"], f["path"], f["severity"]) for f in document["findings"]] == [
        ("not-writable", str(tv), "warning")
    ]
    assert document["findings"][0]["detail"].endswith(
        ", but the probe as that user wrote there (an ACL?)"
    )


@needs_root
def test_an_acl_counts_where_the_finish_failed(public_tmp, run, monkeypatch, mount):
    tree = public_tmp
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl is not installed")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert run("--path", str(tree), "--owner", "4242:4242", "-q")[0] == 0
    mount("-t", "tmpfs", "-o", "mode=0777", "scratch", str(tree / "data/usenet/incomplete"))
    tv = tree / "data" / "usenet" / "complete" / "tv"
    os.chown(str(tv), 0, 0)
    os.chmod(str(tv), 0o755)
    if subprocess.run(["setfacl", "-m", "u:4242:rwx", str(tv)], check=False).returncode != 0:
        pytest.skip("this filesystem has no ACLs")
    code, document = check_json(run, tree, "--owner", "4242:4242")
    # The finish from the scratch disk fails (a warning); the probe still wrote into tv.
    assert code == 0, document["findings"]
    assert [(f["kind"], f["severity"]) for f in document["findings"] if f["path"] == str(tv)] == [
        ("not-writable", "warning")
    ]


def test_without_root_the_probes_run_as_the_caller(tree, run):
    code, out, _ = run("--path", str(tree), "--check", "--owner", "%d:%d" % (os.getuid(), 0))
    assert (
        "note: the probes ran as you (uid %d, gid %d), not as %d:0: that needs root"
        % (
            os.getuid(),
            os.getgid(),
            os.getuid(),
        )
        in out
    )


def test_a_failed_switch_of_user_falls_back_to_the_caller(tree, run, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def no_fork():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    code, document = check_json(run, tree, "--owner", "0:0")
    assert code == 0
    assert document["notes"][-1].startswith(
        "could not start a process to run as uid 0 (Resource temporarily unavailable): "
        "the probes ran as you"
    )


# -- permissions from the mode bits -------------------------------------------------------


def test_owner_who_cannot_write(tree, run):
    # Two modes, two causes: 0775 (51 folders) and personal/'s 0755, each one finding.
    os.chmod(str(tree / "data" / "media" / "personal"), 0o755)
    other = "%d:4242" % (os.getuid() + 1)
    code, document = check_json(run, tree, "--owner", other)
    assert code == 1
    denied = [f for f in document["findings"] if f["kind"] == "not-writable"]
    assert [(len(f["paths"]), f["severity"]) for f in denied] == [(51, "problem"), (1, "warning")]
    assert str(tree / "data/media/tv") in denied[0]["paths"]
    owner = "%d:%d" % ids(tree)
    detail = "%s can't write 51 of the tree's 52 folders (owner %s, mode 0775)"
    assert denied[0]["detail"] == detail % (other, owner)
    assert denied[1]["detail"] == "%s can't write here (owner %s, mode 0755); no import writes " \
        "there" % (other, owner)  # fmt: skip
    assert denied[0]["fix"] == "python3 create_media_structure.py --path %s --owner %s" % (
        tree, other)  # fmt: skip
    code, out, _ = run("--path", str(tree), "--check", "--owner", other)
    assert "permissions  1 problem, 1 warning\n" in out
    assert "  - problem: %s (and 50 more): %s" % (tree / "data", denied[0]["detail"]) in out


def test_a_folder_no_import_writes_is_a_warning(tree, run):
    # The apps' user can't write data/, torrents/ or media/ themselves: no import needs to.
    other = "%d:4242" % (os.getuid() + 1)
    for folder in [tree / "data"] + list((tree / "data").rglob("*")):
        os.chmod(str(folder), 0o777)
    closed = [
        tree.joinpath("data", *p) for p in ((), ("torrents",), ("media",), ("media", "personal"))
    ]
    for folder in closed:
        os.chmod(str(folder), 0o755)
    code, document = check_json(run, tree, "--owner", other)
    assert code == 0, document["findings"]
    (denied,) = document["findings"]  # one mode, one cause
    assert denied["paths"] == [str(folder) for folder in closed]
    detail = "%s can't write 4 of the tree's 52 folders (owner %d:%d, mode 0755); no import " \
        "writes there"  # fmt: skip
    assert (denied["severity"], denied["detail"]) == ("warning", detail % ((other,) + ids(tree)))
    # Where an import writes, it is still a problem.
    os.chmod(str(tree / "data" / "media" / "tv"), 0o755)
    code, document = check_json(run, tree, "--owner", other)
    assert code == 1
    assert [f["severity"] for f in document["findings"]] == ["problem"]
    assert str(tree / "data" / "media" / "tv") in document["findings"][0]["paths"]


def ids(tree):
    st = os.stat(str(tree / "data"))
    return st.st_uid, st.st_gid


def test_group_and_other_bits_count(tree, run):
    gid = os.stat(str(tree / "data")).st_gid
    other = os.getuid() + 1
    assert run("--path", str(tree), "--check", "--owner", "%d:%d" % (other, gid))[0] == 0
    assert run("--path", str(tree), "--check", "--owner", "0")[0] == 0  # root writes anywhere
    os.chmod(str(tree / "data" / "media" / "tv"), 0o777)
    code, document = check_json(run, tree, "--owner", "%d:4242" % other)
    assert str(tree / "data" / "media" / "tv") not in {f["path"] for f in document["findings"]}


def test_writable_findings_use_the_groups_given():
    folder = cms.Folder(("data",), (True,), False)
    st = os.stat_result((0o40775, 1, 1, 2, 5, 77, 0, 0, 0, 0))
    step = cms.Step(folder, "/x/data", cms.KEEP, "", st, False)
    owner = cms.Owner(9, 9, "9:9")
    none = frozenset()
    assert cms.writable_findings([step], owner, {9}, none) != []
    assert cms.writable_findings([step], owner, {9, 77}, none) == []
    assert cms.writable_findings([step], cms.Owner(5, 9, "5:9"), {9}, none) == []
    assert cms.writable_findings([step], cms.Owner(0, 0, "0:0"), {0}, none) == []


# -- the audit ------------------------------------------------------------------------------


def make_file(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture(params=[1, 2, 3], ids=["1-worker", "2-workers", "3-workers"])
def workers(request, monkeypatch):
    """The same audit with the download folders shared out over 1, 2 or 3 processes."""
    monkeypatch.setattr(cms, "_audit_workers", lambda: request.param)
    monkeypatch.setattr(cms, "AUDIT_ITEMS_PER_WORKER", 1)  # fork even for a few
    return request.param


def test_audit_counts_lone_files_exactly(tree, run, workers):
    complete = tree / "data" / "torrents" / "complete"
    media = tree / "data" / "media"
    linked = make_file(complete / "movies" / "Linked.2024" / "linked.mkv", 5000)
    os.link(str(linked), str(media / "movies" / "linked.mkv"))
    make_file(complete / "movies" / "Lone.2023" / "lone.mkv", 3000)
    make_file(complete / "movies" / "Lone.2023" / "Subs" / "en.srt", 100)
    # A symlink to a file inside a download is not a file: never counted, never followed.
    (complete / "movies" / "Lone.2023" / "film.lnk").symlink_to(str(linked))
    make_file(complete / "tv" / "Show.S01" / "e1.mkv", 7000)
    make_file(complete / "anime" / "tv" / "Anime.S02" / "e1.mkv", 900)
    make_file(complete / "music" / "loose.flac", 400)  # loose in a tree folder
    (complete / "books" / "link-to-nothing").symlink_to("/nowhere")  # not a file
    (complete / "books" / "link-to-a-file").symlink_to(str(complete / "music" / "loose.flac"))
    for index in range(6):
        make_file(complete / "books" / ("Book%d" % index) / "b.epub", 10 + index)
    make_file(tree / "data" / "usenet" / "complete" / "tv" / "Left.Over" / "x.mkv", 123)
    # Synology's indexer: an @eaDir beside the files of a tree folder and of a download.
    make_file(complete / "tv" / "@eaDir" / "SYNOINDEX_MEDIA_INFO", 50)
    make_file(complete / "tv" / "Show.S01" / "@eaDir" / "e1.mkv" / "SYNOVIDEO_THUMB.jpg", 60)
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
    assert "        400 B in 1 file(s) directly in music/" in out  # single-file downloads
    assert "  usenet:   1 file(s), 123 B - leftovers: an import moves the file out" in out
    assert "  copies of these in media/ can become hardlinks again: --relink --dry-run" in out


def test_audit_says_where_loose_files_lie(tree, run):
    """A file right in complete/ is no folder named '.': the text says where it lies."""
    make_file(tree / "data" / "usenet" / "complete" / "Single.File.mkv", 2048)
    code, out, _ = run("--path", str(tree), "--check")
    assert code == 0
    assert "      2.0 KiB in 1 file(s) directly in complete/\n" in out
    code, document = check_json(run, tree)
    assert document["audit"][1]["biggest"] == [
        {"path": str(tree / "data" / "usenet" / "complete"), "files": 1, "bytes": 2048}
    ]


def fail_listing(monkeypatch, ends_with):
    """Make listing a folder whose real path ends so fail, whichever way it is listed."""
    for name in ("scandir", "listdir"):
        real = getattr(os, name)

        def listing(path=".", real=real):
            where = os.readlink("/proc/self/fd/%d" % path) if isinstance(path, int) else path
            if os.fsdecode(where).endswith(ends_with):
                raise PermissionError(errno.EACCES, "Permission denied", where)
            return real(path)

        monkeypatch.setattr(os, name, listing)


def test_audit_counts_unreadable_folders(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "_audit_workers", lambda: 1)  # measured in this process
    make_file(tree / "data" / "ddl" / "complete" / "movies" / "Locked" / "f.mkv", 10)
    fail_listing(monkeypatch, "Locked")
    code, document = check_json(run, tree)
    assert document["audit"][2]["unreadable_folders"] == 1
    code, out, _ = run("--path", str(tree), "--check")
    assert "    1 folder(s) could not be read" in out


def test_an_unreadable_tree_folder_is_counted_once(tree, run, monkeypatch, workers):
    fail_listing(monkeypatch, "torrents/complete/tv")
    code, document = check_json(run, tree)
    assert document["audit"][0]["unreadable_folders"] == 1


def test_audit_with_non_utf8_names(tree, run):
    folder = os.fsencode(str(tree / "data" / "torrents" / "complete" / "tv")) + b"/\xff.S01"
    os.mkdir(folder)
    with open(folder + b"/\xfe.mkv", "wb") as handle:
        handle.write(b"12345")
    code, document = check_json(run, tree)
    assert document["audit"][0]["biggest"][0]["path"].endswith("/tv/\\xff.S01")
    code, out, _ = run("--path", str(tree), "--check")
    assert code == 0 and "tv/\\xff.S01" in out  # escaped, never a lone surrogate


def test_progress_on_a_terminal_is_throttled(tree, monkeypatch):
    import io
    import time

    for index in range(40):
        make_file(tree / "data" / "torrents" / "complete" / "tv" / ("S%d" % index) / "e.mkv", 1)
    monkeypatch.setattr(cms, "_audit_workers", lambda: 1)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    now = [0.0]

    def clock():
        now[0] += 0.1  # each look at the clock is a tenth of a second later
        return now[0]

    monkeypatch.setattr(time, "monotonic", clock)
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cms.main(["--path", str(tree), "--check", "-q"]) == 0
    redraws = terminal.getvalue().count("\rchecking: ")
    assert 0 < redraws < 40  # not once per folder
    assert terminal.getvalue().endswith(" " * 60 + "\r")


def test_quiet_check(tree, run):
    assert run("--path", str(tree), "--check", "-q") == (0, "", "")
    (tree / "data" / "ddl" / "incomplete").rmdir()
    code, out, err = run("--path", str(tree), "--check", "-q")
    assert (code, out) == (1, "")
    assert err == "problem: %s: missing\n" % (tree / "data" / "ddl" / "incomplete")


def test_json_says_what_the_text_says(tree, run):
    (tree / "data" / "media" / "tv").rmdir()
    other = "%d:4242" % (os.getuid() + 1)
    code_json, document = check_json(run, tree, "--owner", other)
    code_text, out, _ = run("--path", str(tree), "--check", "--owner", other)
    assert code_json == code_text == 1
    assert document["healthy"] is False
    # Each section has one cause here: it is said on the section's line.
    said = {line.split()[0]: line for line in out.splitlines() if " 1 problem: " in line}
    assert said == {
        "layout": "layout       1 problem: %s: missing" % (tree / "data/media/tv"),
        "permissions": "permissions  1 problem: %s" % document["findings"][1]["detail"],
    }
    for item in document["findings"]:
        assert "container" not in item and "other" not in item
        assert item["paths"][0] == item["path"]
    problems = sum(f["severity"] == "problem" for f in document["findings"])
    assert out.splitlines()[-1] == "result: %d problems, see above" % problems
    assert dirs_on_disk(tree) == expected_dirs() - {"data/media/tv"}


@pytest.mark.parametrize("alike, lines", [(3, 3), (4, 4), (5, 4), (52, 4)])
def test_alike_findings_are_counted_not_listed(alike, lines):
    import io

    same = [cms.finding("not-writable", "/d/%d" % n, "x", "fix it") for n in range(alike)]
    other = cms.finding("not-writable", "/d/other", "y", "fix it")
    stream = io.StringIO()
    cms._report_findings(same + [other], cms.Output(stream))
    said = stream.getvalue().splitlines()
    assert said[1] == "    fix: fix it" and said.count("    fix: fix it") == 1
    assert len(said) == 1 + lines + 1  # the fix once; the other finding
    if alike > 4:
        assert said[-2] == "  - ... and %d more like these (--json lists each)" % (alike - 3)
    assert said[-1] == "  - problem: /d/other: y"


def test_a_btrfs_subvolume_in_the_tree_is_named(tmp_path, run):
    """A subvolume is its own filesystem to links and moves, and no mount: the fix says
    how to make it a plain folder, not to remove a mount that isn't there."""
    with loop_mounted(tmp_path, "mkfs.btrfs") as mounted:
        (mounted / "data").mkdir()
        made = subprocess.run(["btrfs", "subvolume", "create", str(mounted / "data" / "media")],
                              stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        if made.returncode != 0:
            pytest.skip("btrfs subvolume create failed here")
        assert run("--path", str(mounted), "-q")[0] == 0
        code, document = check_json(run, mounted)
    assert code == 1
    (boundary,) = [f for f in document["findings"] if f["section"] == "filesystem"]
    assert (boundary["kind"], boundary["path"]) == ("other-filesystem", str(mounted / "data/media"))
    assert boundary["detail"].startswith(
        "a btrfs subvolume: another filesystem to links and moves, no mount; the probes' "
    )
    assert boundary["fix"].startswith("make it a plain folder: make one beside it, mv the ")
    assert document["sections"]["probes"].endswith("fail across a boundary (see filesystem)")


def test_a_subvolume_below_a_category_is_named(tmp_path, run):
    """A show's folder in media/tv, or a download's in complete/tv, made a btrfs subvolume:
    ln fails with EXDEV there, and the check, which compared only the tree's own folders,
    said healthy."""
    with loop_mounted(tmp_path, "mkfs.btrfs") as mounted:
        assert run("--path", str(mounted), "-q")[0] == 0
        data = mounted / "data"
        show = data / "media" / "tv" / "Some Show"
        download = data / "torrents" / "complete" / "tv" / "Sub.Download"
        for path in (show, download):
            made = subprocess.run(["btrfs", "subvolume", "create", str(path)],
                                  stdout=subprocess.DEVNULL, check=False)  # fmt: skip
            if made.returncode != 0:
                pytest.skip("btrfs subvolume create failed here")
        (download / "Season 1").mkdir()  # below the subvolume: not said again
        (download / "Season 1" / "e1.mkv").write_bytes(b"x" * 10)
        (data / "media" / "tv" / "Plain Show").mkdir()
        code, document = check_json(run, mounted)
    assert code == 1
    found = sorted((f["kind"], f["path"], f["severity"]) for f in document["findings"]
                   if f["section"] == "filesystem")  # fmt: skip
    assert found == [
        ("other-filesystem", str(show), "problem"),
        ("other-filesystem", str(download), "problem"),
    ]
    assert all(f["detail"].startswith("a btrfs subvolume") for f in document["findings"]
               if f["section"] == "filesystem")  # fmt: skip


def test_probes_across_one_boundary_are_counted_not_listed():
    """media/ on another disk fails every pair twice, a hardlink and a move, each named in
    its detail: the first three of each step show, and a count."""
    import io

    fix = "keep all of data/ on one disk"
    found = []
    for category in ("books", "movies", "music", "tv", "anime/movies", "anime/tv"):
        for kind, step in (("hardlink-failed", "hardlink"), ("move-failed", "move")):
            detail = "%s from torrents/complete/%s to media/%s failed: Invalid cross-device " \
                "link" % (step, category, category)  # fmt: skip
            found.append(cms.finding(kind, "/c/" + category, detail, fix,
                                    errno_name="EXDEV"))  # fmt: skip
    stream = io.StringIO()
    cms._report_findings(found, cms.Output(stream))
    said = stream.getvalue().splitlines()
    assert [line.split(" from ")[0] for line in said if " from " in line] == [
        "  - problem: /c/books: hardlink",
        "  - problem: /c/movies: hardlink",
        "  - problem: /c/music: hardlink",
        "  - problem: /c/books: move",
        "  - problem: /c/movies: move",
        "  - problem: /c/music: move",
    ]
    assert said.count("  - ... and 3 more like these (--json lists each)") == 2
    assert said.count("    fix: " + fix) == 1 and len(said) == 9


def test_audit_without_fork(tree, run, monkeypatch):
    make_file(tree / "data" / "ddl" / "complete" / "tv" / "X" / "e.mkv", 10)
    monkeypatch.delattr(os, "fork")
    assert cms._audit_workers() == 1
    code, document = check_json(run, tree)
    assert document["audit"][2]["files"] == 1


def six_usenet_downloads(tree, monkeypatch, workers):
    """Six downloads of 7 bytes in usenet/complete/tv, audited by that many processes."""
    for index in range(6):
        make_file(tree / "data" / "usenet" / "complete" / "tv" / ("S%d" % index) / "e", 7)
    monkeypatch.setattr(cms, "_audit_workers", lambda: workers)
    monkeypatch.setattr(cms, "AUDIT_ITEMS_PER_WORKER", 1)


def usenet_audit(run, tree):
    """--check's exit code, and the files and bytes its audit counted in usenet."""
    code, document = check_json(run, tree)
    return code, document["audit"][1]["files"], document["audit"][1]["bytes"]


def test_audit_when_fork_fails(tree, run, monkeypatch):
    six_usenet_downloads(tree, monkeypatch, workers=3)

    def no_fork():
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert usenet_audit(run, tree) == (0, 6, 42)


def test_a_failed_worker_share_is_done_again(tree, run, monkeypatch):
    six_usenet_downloads(tree, monkeypatch, workers=2)
    parent = os.getpid()
    real_share = cms._audit_share

    def dies_in_the_child(*args):
        if os.getpid() != parent:
            raise MemoryError("worker died")
        return real_share(*args)

    monkeypatch.setattr(cms, "_audit_share", dies_in_the_child)
    assert usenet_audit(run, tree) == (0, 6, 42)


def test_the_runs_a_dead_worker_took_are_done_again(tree, run, monkeypatch):
    six_usenet_downloads(tree, monkeypatch, workers=2)
    parent = os.getpid()
    taken, tell = os.pipe()
    real_sum, real_share = cms._sum_lone_files, cms._audit_share
    shares = []

    def dies_holding_a_run(*args):
        if os.getpid() != parent:
            os.write(tell, b"x")  # it has taken a run, and never reports it
            raise MemoryError("worker died")
        return real_sum(*args)

    def after_the_death(walk, items, tickets, runs, progress, poll, *who):
        if os.getpid() == parent and not shares:
            os.read(taken, 1)  # the child holds a run before this process takes any
        shares.append(runs)
        return real_share(walk, items, tickets, runs, progress, poll, *who)

    monkeypatch.setattr(cms, "_sum_lone_files", dies_holding_a_run)
    monkeypatch.setattr(cms, "_audit_share", after_the_death)
    try:
        assert usenet_audit(run, tree) == (0, 6, 42)
    finally:
        os.close(taken)
        os.close(tell)
    assert len(shares) == 2  # its tickets, then the run the dead worker had taken


# -- signals: nothing left behind -----------------------------------------------------------


def test_a_signal_mid_audit_stops_the_workers_too(tree, run, monkeypatch):
    """SIGTERM while the audit walks: it stops at the next download folder (it used to
    walk on to the end), and a worker still walking is ended and reaped."""
    six_usenet_downloads(tree, monkeypatch, workers=2)
    parent = os.getpid()
    taken, tell = os.pipe()  # the worker says it holds a run
    hold, release = os.pipe()  # and waits here: ended by the stop, or let go by a walk on
    real_sum = cms._sum_lone_files
    calls = []

    def summing(*args):
        if os.getpid() != parent:
            os.write(tell, b"x")
            os.read(hold, 1)
            return real_sum(*args)
        calls.append(args[1])
        if len(calls) == 1:
            os.read(taken, 1)
            os.kill(parent, signal.SIGTERM)
        else:
            os.write(release, b"x" * 64)  # only a parent that did not stop gets here
        return real_sum(*args)

    monkeypatch.setattr(cms, "_sum_lone_files", summing)
    try:
        code, _, err = run("--path", str(tree), "--check")
    finally:
        for fd in (taken, tell, hold, release):
            os.close(fd)
    assert code == 143
    assert err.startswith("interrupted: the check was stopped")
    assert len(calls) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no worker left, not even a zombie


@pytest.mark.parametrize("signal_name, code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_signal_mid_probe_leaves_nothing(tree, signal_name, code):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    before = snapshot(tree)
    # strace sends the signal as the process enters its 5th linkat: mid-probe.
    proc = subprocess.run(
        [strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=linkat",
         "-e", "inject=linkat:signal=%s:when=5" % signal_name,
         sys.executable, str(SCRIPT), "--path", str(tree), "--check"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    if b"PTRACE" in proc.stderr or b"ptrace" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "interrupted: the check was stopped; the probe files it made were removed"
    ]
    assert probe_files(tree) == []
    assert snapshot(tree) == before


def test_symlink_inside_data_by_absolute_path_is_a_warning(tree, run):
    # media/tv -> <host path>/data/media/series works on the host; a container that
    # mounts data/ at /data has no such path, and sees the folder dangling.
    media = tree / "data" / "media"
    (media / "series").mkdir()
    (media / "tv").rmdir()
    (media / "tv").symlink_to(media / "series")
    code, document = check_json(run, tree)
    assert code == 0
    assert kinds(document) == [("symlink-absolute", str(media / "tv"))]
    item = document["findings"][0]
    assert item["severity"] == "warning"
    assert item["fix"] == "make it relative: ln -sfn series %s" % (media / "tv")
    assert document["sections"]["filesystem"] == "warning"
    # The fix, done, leaves no finding.
    os.unlink(str(media / "tv"))
    os.symlink("series", str(media / "tv"))
    code, document = check_json(run, tree)
    assert (code, kinds(document)) == (0, [])


def set_inode_flags(path, flags):
    """chattr without e2fsprogs: FS_IOC_SETFLAGS on the folder; False where refused."""
    import fcntl
    import struct

    long_size = struct.calcsize("l")
    fd = os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, 0x40006602 | (long_size << 16), struct.pack("i", flags) + bytes(4))
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.fixture
def chattr():
    """Set a folder's inode flags for a test; cleared again after it (else no cleanup)."""
    changed = []

    def setter(path, flags):
        if not set_inode_flags(path, flags):
            pytest.skip("this filesystem refuses inode flags (chattr)")
        changed.append(path)

    yield setter
    for path in changed:
        set_inode_flags(path, 0)


@needs_root
def test_append_only_and_immutable_folders_are_named_and_left_clean(tree, run, chattr):
    # media/tv append-only (chattr +a): a hardlink into it works, but nothing made there
    # can be removed again, not even by root; usenet/incomplete immutable (chattr +i).
    # The probes leave both alone instead of crashing on the clean-up.
    data = tree / "data"
    chattr(data / "media" / "tv", cms.FS_APPEND_FL)
    chattr(data / "usenet" / "incomplete", cms.FS_IMMUTABLE_FL)
    before = snapshot(tree)
    code, document = check_json(run, tree)
    assert code == 1
    assert kinds(document, "probes") == [
        ("locked", str(data / "media" / "tv")),
        ("locked", str(data / "usenet" / "incomplete")),
    ]
    tv, incomplete = sorted(
        (f for f in document["findings"] if f["kind"] == "locked"), key=lambda f: f["path"]
    )
    assert tv["severity"] == "problem"
    assert tv["detail"].startswith("append-only (chattr +a): not even root may rename")
    assert tv["fix"] == "if you didn't mean it: chattr -a %s (lsattr -d shows it)" % tv["path"]
    assert incomplete["severity"] == "warning"  # no import crosses it
    assert "immutable (chattr +i)" in incomplete["detail"]
    # The other pairs of usenet were still probed, from complete/.
    assert document["sections"]["probes"] == "problem"
    assert probe_files(tree) == []
    assert snapshot(tree) == before


def test_a_probe_link_that_cannot_be_removed_is_reported(tree, run, monkeypatch):
    real_unlink = os.unlink
    failed = []

    def unlink(path, *args, **kwargs):
        if path.endswith(".l") and not failed:
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    code, document = check_json(run, tree)
    assert code == 1
    (item,) = [f for f in document["findings"] if f["kind"] == "remove-failed"]
    media = tree / "data" / "media"
    assert item["path"].startswith(str(media))
    link = os.path.join(item["path"], cms.PROBE_NAME + ".l")
    assert "removing the probe's hardlink %s failed: Input/output error" % link in item["detail"]
    assert item["errno"] == "EIO"
    assert probe_files(tree) == []  # the clean-up's second try took it


def test_a_probe_file_taken_away_halfway_is_a_warning_not_a_traceback(tree, run, monkeypatch):
    # The tree is writable by the apps' user: an app may remove a probe's file between
    # two of its steps.  That pair is "not probed", with a warning; the rest go on.
    real_rename = os.rename
    taken = []

    def rename_then_lose(src, dst, src_dir_fd=None, dst_dir_fd=None):
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if not taken:  # the first: from incomplete/ into complete/<cat>
            taken.append(dst)
            os.unlink(dst, dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "rename", rename_then_lose)
    code, document = check_json(run, tree)
    assert code == 0
    (item,) = document["findings"]
    assert (item["kind"], item["severity"], item["errno"]) == (
        "probe-disturbed",
        "warning",
        "ENOENT",
    )
    assert "failed halfway: No such file or directory" in item["detail"]
    assert document["sections"]["probes"] == "warning"
    assert probe_files(tree) == []


@pytest.mark.parametrize("machine", ["ppc64le", "mips", "sparc64", "parisc", "alpha"])
def test_inode_flags_are_not_asked_where_the_number_would_write_them(monkeypatch, machine):
    # On these machines FS_IOC_GETFLAGS has another number, and x86's means SETFLAGS.
    faked = os.uname_result(tuple(os.uname())[:4] + (machine,))
    monkeypatch.setattr(os, "uname", lambda: faked)

    def no_ioctl(*args):
        raise AssertionError("an ioctl was sent")

    import fcntl

    monkeypatch.setattr(fcntl, "ioctl", no_ioctl)
    fd = os.open(os.curdir, os.O_RDONLY)
    try:
        assert cms.chattr_flag(fd) == ""
    finally:
        os.close(fd)


def test_a_tree_on_overlayfs_is_a_warning(tree, run, monkeypatch):
    """overlayfs: a link of a lower layer's file copies it up, a folder rename is EXDEV;
    the check called it healthy."""
    tree_mounted_as(tree, monkeypatch, "overlay")
    code, document = check_json(run, tree)
    assert code == 0
    assert [(f["kind"], f["severity"]) for f in document["findings"]] == [("overlay", "warning")]


@needs_root
def test_a_real_overlay(public_tmp, run):
    """A real overlayfs over two folders: the warning, and the probes still pass (the
    tree is made in the upper layer)."""
    for name in ("lower", "upper", "work", "merged"):
        (public_tmp / name).mkdir()
    options = "lowerdir=%s,upperdir=%s,workdir=%s" % tuple(
        public_tmp / name for name in ("lower", "upper", "work"))  # fmt: skip
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options,
                       str(public_tmp / "merged")], check=False).returncode:  # fmt: skip
        pytest.skip("cannot mount overlayfs here")
    merged = public_tmp / "merged"
    assert run("--path", str(merged), "-q")[0] == 0
    code, document = check_json(run, merged)
    assert ("overlay", str(merged / "data")) in kinds(document, "filesystem")


def client_wrote_as_another_user(tree, umask_mode=0o644, folder_mode=0o755):
    """A download and a single-file download as a client running as uid 1001 with UMASK
    022 leaves them: 0644 files in a 0755 folder, and a loose file in the category."""
    data = tree / "data" / "torrents" / "complete" / "tv"
    show = data / "Show.S01"
    (show / "Sub").mkdir(parents=True)
    for path in (show / "e1.mkv", show / "Sub" / "e2.mkv", data / "single.mkv"):
        path.write_bytes(b"x" * 100)
        os.chmod(str(path), umask_mode)
    for path in (show, show / "Sub", show / "e1.mkv", show / "Sub" / "e2.mkv", data / "single.mkv"):
        os.chown(str(path), 1001, 1001)
    for path in (show, show / "Sub"):
        os.chmod(str(path), folder_mode)
    return data, show


@needs_root
def test_downloads_the_importer_cannot_hardlink(tree, run, monkeypatch, workers):
    """fs.protected_hardlinks: Sonarr as 1000:1000 can't link a 0644 file of 1001's (it
    copies), nor move a 0755 folder of 1001's: the check said healthy."""
    monkeypatch.setattr(cms, "protected_hardlinks", lambda: True)
    subprocess.run(["chown", "-R", "1000:1000", str(tree / "data")], check=True)
    data, show = client_wrote_as_another_user(tree)
    code, document = check_json(run, tree, "--owner", "1000:1000")
    assert code == 1
    (item,) = [f for f in document["findings"] if f["kind"] == "cannot-link"]
    assert (item["section"], item["severity"], item["path"]) == (
        "permissions",
        "problem",
        str(tree / "data/torrents/complete"),
    )
    assert item["detail"].startswith("1000:1000 can't hardlink 3 download file(s) here")
    assert "can't move 2 download folder(s)" in item["detail"]
    assert "(owner 1001:1001, mode 0644)" in item["detail"]
    assert "UMASK=002" in item["fix"]
    # Without the kernel's rule, links work; the folders still can't be moved.
    monkeypatch.setattr(cms, "protected_hardlinks", lambda: False)
    code, document = check_json(run, tree, "--owner", "1000:1000")
    (item,) = [f for f in document["findings"] if f["kind"] == "cannot-link"]
    assert item["detail"].startswith("1000:1000 can't move 2 download folder(s)")


@needs_root
def test_a_client_with_umask_002_and_one_group_is_fine(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "protected_hardlinks", lambda: True)
    subprocess.run(["chown", "-R", "1000:1000", str(tree / "data")], check=True)
    data, show = client_wrote_as_another_user(tree, 0o664, 0o775)
    for path in (show, show / "Sub", show / "e1.mkv", show / "Sub" / "e2.mkv", data / "single.mkv"):
        os.chown(str(path), 1001, 1000)  # another user, the importers' group
    code, document = check_json(run, tree, "--owner", "1000:1000")
    assert [f for f in document["findings"] if f["kind"] == "cannot-link"] == []
    code, document = check_json(run, tree)  # without --owner: not checked, never said
    assert [f for f in document["findings"] if f["kind"] == "cannot-link"] == []


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_check_waiting_for_another_one_stops_on_a_signal(tree, signal_name, code):
    """A check waits while another one probes (their probe names are fixed): Python
    retried the wait after each signal, so Ctrl-C, SIGTERM and SIGHUP never stopped it."""
    import fcntl
    import time

    held = os.open(str(tree / "data" / "media"), os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # the other check
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--path", str(tree), "--check"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 60  # until it waits for the lock (/proc/locks says)
        while "-> FLOCK" not in open("/proc/locks").read() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(getattr(signal, signal_name))
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(held)
    assert proc.returncode == code
    assert b"Traceback" not in err
