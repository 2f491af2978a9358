"""--relink: proven copies in media/ become hardlinks of the download, nothing lost at any time."""

import errno
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

import pytest

from conftest import SCRIPT, cms, loop_mounted, needs_root, snapshot

MIB = 1024 * 1024
OLD = time.time() - 3600  # older than --min-age's 15 minutes


def write(path, data, when=OLD):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(str(path), (when, when))
    return path


def payload(seed, size=2 * MIB):
    import random

    return random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")


def changed_at(data, where):
    index = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def relink(run, tree, *extra):
    code, out, err = run("--path", str(tree), "--relink", "--json", *extra)
    return code, json.loads(out) if out else None, err


def inode(path):
    return os.lstat(str(path)).st_ino


def temp_names(base):
    found = []
    for _, _, files in os.walk(str(base)):
        found += [name for name in files if name.startswith(cms.RELINK_PREFIX)]
    return found


@pytest.fixture
def library(tree):
    """Downloads and their copies, near-duplicates, links and symlinks, as after a broken past."""
    data = tree / "data"
    film = payload(1)
    show = payload(2, 3 * MIB)
    files = {
        "film": write(data / "torrents/complete/movies/Film.2020/film.mkv", film),
        "film-copy": write(data / "media/movies/Film (2020)/Film (2020).mkv", film),
        "film-4k-copy": write(data / "media/movies-4k/Film (2020)/Film (2020).mkv", film),
        "show": write(data / "usenet/complete/tv/Show.S01E01/e1.mkv", show),
        "show-copy": write(data / "media/tv/Show/Season 1/Show - S01E01.mkv", show),
        "near-start": write(data / "media/movies/Near1/n.mkv", changed_at(film, "start")),
        "near-middle": write(data / "media/movies/Near2/n.mkv", changed_at(film, "middle")),
        "near-end": write(data / "media/movies/Near3/n.mkv", changed_at(film, "end")),
        "small": write(data / "torrents/complete/music/a.flac", b"s" * 1000),
        "small-copy": write(data / "media/music/a.flac", b"s" * 1000),
        "other-size": write(data / "media/movies/Other/o.mkv", film + b"!"),
    }
    linked = write(data / "torrents/complete/tv/Linked/l.mkv", payload(3))
    os.link(str(linked), str(data / "media/tv/Linked.mkv"))
    files["linked"] = linked
    (data / "media/movies/link.mkv").symlink_to(files["film"])
    return files


def test_dry_run_lists_exactly_what_a_run_does_and_changes_nothing(tree, run, library):
    before = snapshot(tree)
    code, document, _ = relink(run, tree, "--dry-run")
    assert code == 0
    assert snapshot(tree) == before
    planned = [(p["keep"], p["replace"], p["bytes"]) for p in document["pairs"]]
    assert planned == [
        (str(library["film"]), str(library["film-copy"]), 2 * MIB),
        (str(library["film"]), str(library["film-4k-copy"]), 2 * MIB),
        (str(library["show"]), str(library["show-copy"]), 3 * MIB),
    ]
    assert document["dry_run"] is True and document["bytes_reclaimed"] == 7 * MIB
    code, done, _ = relink(run, tree)
    assert code == 0
    assert [(p["keep"], p["replace"], p["bytes"]) for p in done["pairs"]] == planned


def test_a_run_links_the_copies_and_nothing_else(tree, run, library):
    before = snapshot(tree)
    code, document, _ = relink(run, tree)
    assert code == 0 and document["skipped"] == []
    after = snapshot(tree)
    film, show = inode(library["film"]), inode(library["show"])
    assert inode(library["film-copy"]) == inode(library["film-4k-copy"]) == film
    assert inode(library["show-copy"]) == show
    assert os.stat(str(library["film"])).st_nlink == 3
    replaced = {
        os.path.relpath(str(library[name]), str(tree))
        for name in ("film-copy", "film-4k-copy", "show-copy")
    }
    for path, state in before.items():
        if path in replaced:
            assert after[path][-1] == state[-1]  # the same bytes, now the download's inode
        elif not os.path.isdir(str(tree / path)):
            assert after[path] == state, path  # bytes, inode, mtime, mode unchanged
    assert set(after) == set(before)
    assert temp_names(tree) == []
    code, again, _ = relink(run, tree)
    assert (code, again["pairs"], again["skipped"]) == (0, [], [])


def test_text_report(tree, run, library):
    code, out, _ = run("--path", str(tree), "--relink", "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "relink of %s (dry run: nothing is changed)" % (tree / "data")
    assert "  would relink: media/tv/Show/Season 1/Show - S01E01.mkv" in out
    assert "      = usenet/complete/tv/Show.S01E01/e1.mkv (3.0 MiB; takes on owner " in out
    assert out.splitlines()[-1] == "result: would relink 3 copies, 7.0 MiB to release; 0 skipped"
    code, out, _ = run("--path", str(tree), "--relink")
    assert out.splitlines()[-1].startswith("result: 3 copies relinked, 7.0 MiB released (once")


def test_names_can_not_break_a_line_or_drive_the_terminal(tree, run):
    # A download's name is chosen by whoever made the torrent, and the tree is the
    # containers' to write: a newline or an escape sequence in a name must come out as
    # text, one line per item, never as a new line or as a command to root's terminal.
    data = tree / "data"
    film = payload(23)
    write(data / "torrents/complete/movies/F/a\nb.mkv", film)
    write(data / "media/movies/F/c\rd\x1b[31m\x9b\x7f.mkv", film)
    code, out, _ = run("--path", str(tree), "--relink", "--dry-run")
    assert code == 0
    assert "  would relink: media/movies/F/c\\x0dd\\x1b[31m\\x9b\\x7f.mkv" in out
    assert "      = torrents/complete/movies/F/a\\x0ab.mkv (2.0 MiB; takes on" in out
    assert len(out.splitlines()) == 4 and not set(out) & {"\r", "\x1b", "\x9b", "\x7f"}
    code, document, _ = relink(run, tree, "--dry-run")  # JSON escapes them its own way
    assert document["pairs"][0]["keep"].endswith("/F/a\nb.mkv")
    code, out, _ = run("--path", str(tree), "--check")
    assert "    2.0 MiB in 1 file(s): movies/F" in out and "\x1b" not in out


def test_a_library_wider_than_the_descriptor_limit(tree, run):
    # media/tv holds thousands of shows and 1024 descriptors is a common limit: the walk
    # opened every subfolder of a folder before reading any, and with the limit reached
    # it skipped the rest without a word (665 of 1,500 shows found under ulimit -n 1024).
    resource = pytest.importorskip("resource")
    data = tree / "data"
    for index in range(60):
        film = payload(300 + index, size=MIB + index)
        write(data / ("torrents/complete/tv/S%02d/e.mkv" % index), film)
        write(data / ("media/tv/Show %02d/Season 1/e.mkv" % index), film)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 32
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 50, hard))
    try:
        code, document, _ = relink(run, tree, "--dry-run")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (code, len(document["pairs"]), document["skipped"]) == (0, 60, [])


def test_folders_it_could_not_read_are_named(tree, run, monkeypatch):
    # A folder the run can't open (another user's 0700 folder, when not run as root)
    # was left out without a word: the report said nothing about the copies in it.
    data = tree / "data"
    film = payload(41)
    write(data / "torrents/complete/movies/F/f.mkv", film)
    write(data / "media/movies/Locked/f.mkv", film)
    real_open = os.open

    def refuse_locked(path, *args, **kwargs):
        if path == "Locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_locked)
    code, document, _ = relink(run, tree, "--dry-run")
    assert (code, document["pairs"]) == (0, [])
    assert document["unreadable_folders"] == [str(data / "media/movies/Locked")]
    code, out, _ = run("--path", str(tree), "--relink", "--dry-run")
    assert "  1 folder(s) could not be read, so nothing in them was looked at:" in out
    assert "      media/movies/Locked" in out
    code, out, err = run("--path", str(tree), "--relink", "--dry-run", "-q")
    assert err == "not looked in: %s: could not be read\n" % (data / "media/movies/Locked")


def test_synology_metadata_is_never_relinked(tree, run):
    data = tree / "data"
    film = payload(21)
    keep = write(data / "torrents/complete/movies/F/f.mkv", film)
    inside = write(data / "media/movies/F/@eaDir/f.mkv/SYNOVIDEO_COPY.mkv", film)
    write(data / "torrents/complete/movies/G/@eaDir/g.mkv", payload(22))
    other = write(data / "media/movies/G/g.mkv", payload(22))
    code, document, _ = relink(run, tree)
    assert (code, document["pairs"], document["skipped"]) == (0, [], [])
    assert os.stat(str(inside)).st_nlink == os.stat(str(other)).st_nlink == 1
    assert os.stat(str(keep)).st_nlink == 1


def test_min_size(tree, run, library):
    code, document, _ = relink(run, tree, "--dry-run", "--min-size", "900")
    assert str(library["small-copy"]) in [p["replace"] for p in document["pairs"]]
    code, document, _ = relink(run, tree, "--dry-run", "--min-size", "3M")
    assert [p["replace"] for p in document["pairs"]] == [str(library["show-copy"])]


@pytest.mark.parametrize("bad", ["", "1T", "-1", "1.5M", "M", "\u0661"])
def test_bad_min_size(tree, run, bad):
    code, _, err = run("--path", str(tree), "--relink", "--min-size", bad)
    assert code == 2 and "argument --min-size" in err


def test_young_files_are_skipped(tree, run, library):
    now = time.time()
    os.utime(str(library["show-copy"]), (now, now))
    code, document, _ = relink(run, tree)
    assert code == 0
    assert [(s["path"], s["errno"]) for s in document["skipped"]] == [
        (str(library["show-copy"]), None)
    ]
    assert "too recently" in document["skipped"][0]["reason"]
    assert os.stat(str(library["show-copy"])).st_nlink == 1
    code, document, _ = relink(run, tree, "--min-age", "0")
    assert [p["replace"] for p in document["pairs"]] == [str(library["show-copy"])]


def test_two_equal_downloads_keep_the_one_with_more_links(tree, run):
    data = tree / "data"
    film = payload(7)
    first = write(data / "torrents/complete/movies/A/f.mkv", film)
    second = write(data / "torrents/complete/movies/B/f.mkv", film)
    os.link(str(second), str(data / "torrents/complete/movies/B/seed.mkv"))
    copy = write(data / "media/movies/F/f.mkv", film)
    code, document, _ = relink(run, tree)
    assert code == 0
    assert inode(copy) == inode(second) != inode(first)


@needs_root
def test_access_rule(tree, run):
    data = tree / "data"
    film = payload(9)
    private = write(data / "torrents/complete/movies/P/p.mkv", film)
    os.chown(str(private), 4242, 4242)
    os.chmod(str(private), 0o600)
    copy = write(data / "media/movies/P/p.mkv", film)
    os.chown(str(copy), 1000, 1000)
    os.chmod(str(copy), 0o644)
    open_file = write(data / "torrents/complete/tv/O/o.mkv", payload(10))
    os.chmod(str(open_file), 0o644)
    narrow = write(data / "media/tv/O/o.mkv", payload(10))
    os.chmod(str(narrow), 0o640)
    code, document, _ = relink(run, tree)
    assert code == 0  # skipped by a rule
    assert [p["replace"] for p in document["pairs"]] == [str(narrow)]
    assert [s["path"] for s in document["skipped"]] == [str(copy)]
    assert document["skipped"][0]["reason"].startswith("its owner (uid 1000) would lose access")
    assert os.stat(str(copy)).st_uid == 1000 and os.stat(str(copy)).st_nlink == 1


def test_an_acl_of_the_copy_is_not_lost(tree, run):
    """A user given read access by the copy's ACL (setfacl) would lose it: the mode
    bits say nothing of it, so a pair whose ACLs differ is skipped."""
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl is not installed")
    data = tree / "data"
    film = payload(12)
    keep = write(data / "torrents/complete/movies/A/a.mkv", film)
    copy = write(data / "media/movies/A/a.mkv", film)
    same_keep = write(data / "torrents/complete/tv/S/s.mkv", payload(13))
    same_copy = write(data / "media/tv/S/s.mkv", payload(13))
    for path in (keep, copy, same_keep, same_copy):
        os.chmod(str(path), 0o640)
    for path, entry in ((copy, "u:4242:r"), (same_keep, "u:4243:r"), (same_copy, "u:4243:r")):
        if subprocess.run(["setfacl", "-m", entry, str(path)], check=False).returncode:
            pytest.skip("this filesystem has no ACLs")
    ino = inode(copy)
    acl = os.getxattr(str(copy), cms.ACL_XATTRS[0])
    code, document, _ = relink(run, tree)
    assert code == 0  # skipped by a rule
    assert [p["replace"] for p in document["pairs"]] == [str(same_copy)]  # one ACL: linked
    assert [s["path"] for s in document["skipped"]] == [str(copy)]
    assert document["skipped"][0]["reason"] == cms.ACL_DIFFERS
    assert inode(copy) == ino and os.getxattr(str(copy), cms.ACL_XATTRS[0]) == acl


def test_acls_of_zfs_and_nfs_are_read_too(monkeypatch):
    """NFSv4 ACLs (ZFS on TrueNAS SCALE, NFS mounts) can't be set here: read through a
    faked getxattr, each by its own name, none of them an error."""

    def getxattr(fd, name):
        if name == "system.nfs4_acl_xdr":
            return b"zfs acl"
        raise OSError(errno.ENODATA, os.strerror(errno.ENODATA))

    monkeypatch.setattr(os, "getxattr", getxattr, raising=False)
    assert cms.acl_of(0) == [b"", b"zfs acl", b""]


def test_access_lost_cases():
    def st(uid, gid, mode):
        return os.stat_result((0o100000 | mode, 1, 1, 1, uid, gid, 10, 0, 0, 0))

    assert cms.access_lost(st(1, 1, 0o644), st(1, 1, 0o640)) == ""
    assert cms.access_lost(st(1, 1, 0o664), st(2, 1, 0o664)) == ""  # via the group bits
    assert cms.access_lost(st(1, 1, 0o600), st(2, 2, 0o644)).startswith("its owner")
    assert cms.access_lost(st(1, 1, 0o640), st(1, 2, 0o640)).startswith("its group")
    assert cms.access_lost(st(1, 1, 0o640), st(1, 1, 0o644)).startswith("other users")
    # A copy of root's (a cp run as root): root reads and writes whatever the mode, so
    # only its group and the other users can lose anything.
    assert cms.access_lost(st(1000, 1000, 0o644), st(0, 0, 0o600)) == ""
    assert cms.access_lost(st(1000, 1000, 0o600), st(0, 0, 0o644)).startswith("its group (gid 0)")
    assert cms.access_lost(st(1000, 0, 0o640), st(0, 0, 0o644)).startswith("other users")


# -- failures at each step: the library path keeps its bytes ----------------------------------


def one_pair(tree):
    data = tree / "data"
    film = payload(11)
    keep = write(data / "torrents/complete/movies/F/f.mkv", film)
    copy = write(data / "media/movies/F/f.mkv", film)
    return keep, copy, film


@pytest.mark.parametrize("error", [errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES,
                                   errno.ENOSPC])  # fmt: skip
def test_a_failed_link_skips_the_pair(tree, run, monkeypatch, error):
    keep, copy, film = one_pair(tree)
    ino = inode(copy)

    def refuse(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "link", refuse)
    code, document, _ = relink(run, tree)
    assert code == 1
    assert document["pairs"] == []
    assert [(s["path"], s["errno"]) for s in document["skipped"]] == [
        (str(copy), errno.errorcode[error])
    ]
    assert document["skipped"][0]["reason"] == cms.errno_fix("link", error)
    assert inode(copy) == ino and copy.read_bytes() == film
    assert temp_names(tree) == []


def test_the_text_folds_skips_alike(tree, run, monkeypatch):
    """A broken past can skip thousands of copies for one reason: the text shows the
    first few of each reason and a count, --json every one."""
    data = tree / "data"
    for index in range(6):
        film = payload(100 + index)
        write(data / ("torrents/complete/movies/F%d/f.mkv" % index), film)
        write(data / ("media/movies/F%d/f.mkv" % index), film)

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", refuse)
    code, document, _ = relink(run, tree)
    assert code == 1 and len(document["skipped"]) == 6
    code, out, _ = run("--path", str(tree), "--relink")
    assert code == 1
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("  skipped: ")] == [
        "  skipped: media/movies/F%d/f.mkv" % index for index in range(3)
    ]
    assert "  ... and 3 more skipped for the same reason (--json lists each)" in lines
    assert lines[-1].endswith("; 6 skipped")


def test_a_failed_rename_removes_the_temp_name(tree, run, monkeypatch):
    keep, copy, film = one_pair(tree)

    def refuse(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "rename", refuse)
    code, document, _ = relink(run, tree)
    assert code == 1 and document["skipped"][0]["errno"] == "EIO"
    assert copy.read_bytes() == film and os.stat(str(keep)).st_nlink == 1
    assert temp_names(tree) == []


@pytest.mark.parametrize("error", [errno.EPERM, errno.EACCES, errno.EBUSY, errno.EIO])
def test_a_failed_rename_is_named_as_the_replace(tree, run, monkeypatch, error):
    # The link worked; what failed is the rename over the copy: its reason must not
    # blame the link (an immutable copy was told "run as the files' owner or as root").
    keep, copy, film = one_pair(tree)

    def refuse(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "rename", refuse)
    code, document, _ = relink(run, tree)
    reason = document["skipped"][0]["reason"]
    assert code == 1 and reason.startswith("the copy can't be replaced: ")
    assert reason == cms.ERRNO_FIXES.get(
        ("replace", error), "the copy can't be replaced: " + os.strerror(error)
    )
    assert copy.read_bytes() == film and temp_names(tree) == []


def test_a_link_refused_to_root_names_what_root_meets(tree, run, monkeypatch):
    keep, copy, film = one_pair(tree)

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, document, _ = relink(run, tree)
    assert document["skipped"][0]["reason"] == cms.ROOT_LINK_EPERM  # not "run as root"


@needs_root
@pytest.mark.skipif(not shutil.which("chattr"), reason="needs chattr (e2fsprogs)")
@pytest.mark.parametrize(
    "which, flag, what",
    [("copy", "i", "immutable"), ("folder", "i", "immutable"), ("folder", "a", "append-only")],
)
def test_an_immutable_or_append_only_copy_or_folder_for_real(
    tree, run, monkeypatch, which, flag, what
):
    # Said before any link, in a dry run too: in an append-only folder a temp name,
    # once linked, could never be removed again (it was left there).
    keep, copy, film = one_pair(tree)
    target = copy if which == "copy" else copy.parent
    if subprocess.run(["chattr", "+" + flag, str(target)], stderr=subprocess.DEVNULL).returncode:
        pytest.skip("this filesystem has no %s flag" % what)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        dry = relink(run, tree, "--dry-run")
        code, document, _ = relink(run, tree)
    finally:
        subprocess.run(["chattr", "-" + flag, str(target)], check=True)
    place = "the copy" if which == "copy" else "its folder"
    expected = "%s is %s (chattr +%s): not even root may replace the copy; chattr -%s lifts it" % (
        place,
        what,
        flag,
        flag,
    )
    assert (code, document["skipped"][0]["reason"]) == (1, expected)
    assert dry[1]["skipped"][0]["reason"] == expected
    assert copy.read_bytes() == film and temp_names(tree) == []


def faked_temp_stat(monkeypatch, field, change):
    """os.stat of the temp name as a FUSE mount may show it: one field of it changed."""
    real_stat = os.stat

    def fuse_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.fsdecode(path).startswith(cms.RELINK_PREFIX):
            values = list(st)
            values[field] += change
            extra = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns",
                     "st_ctime_ns")  # fmt: skip
            return os.stat_result(values, {name: getattr(st, name) for name in extra})
        return st

    monkeypatch.setattr(os, "stat", fuse_stat)


def test_where_two_names_show_two_inodes_the_bytes_prove_the_link(tree, run, monkeypatch):
    """Through FUSE (mergerfs without use_ino) the temp name shows another inode number:
    its bytes, compared with the copy's once more, prove it instead."""
    keep, copy, film = one_pair(tree)
    faked_temp_stat(monkeypatch, 1, 1000)  # st_ino
    reads = []
    real_same = cms.Comparer.same

    def counted(self, one, two, size):
        reads.append(size)
        return real_same(self, one, two, size)

    monkeypatch.setattr(cms.Comparer, "same", counted)
    code, document, _ = relink(run, tree)
    assert code == 0 and document["skipped"] == []
    assert [p["replace"] for p in document["pairs"]] == [str(copy)]
    assert reads == [len(film), len(film)]  # the pair, then the temp name against the copy
    assert inode(copy) == inode(keep) and copy.read_bytes() == film
    assert temp_names(tree) == []


def test_a_stop_during_the_proof_by_bytes_removes_the_temp_name(tree, run, monkeypatch):
    keep, copy, film = one_pair(tree)
    faked_temp_stat(monkeypatch, 1, 1000)  # st_ino: the proof by bytes runs
    real_same = cms.Comparer.same
    calls = []

    def signal_in_the_proof(self, one, two, size):
        calls.append(size)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_same(self, one, two, size)

    monkeypatch.setattr(cms.Comparer, "same", signal_in_the_proof)
    ino = inode(copy)
    code, document, err = relink(run, tree)
    assert (code, document) == (143, None)
    assert err.startswith("interrupted: nothing is half done")
    assert inode(copy) == ino and copy.read_bytes() == film
    assert os.stat(str(keep)).st_nlink == 1 and temp_names(tree) == []


def test_a_download_swapped_before_the_link_is_undone(tree, run, monkeypatch):
    """The download's name now holds other bytes of the same size and mtime: the temp
    name is another inode, its bytes are not the copy's, and the copy stays."""
    keep, copy, film = one_pair(tree)
    real_link = os.link

    def swap_then_link(*args, **kwargs):
        write(keep.parent / "swap", changed_at(film, "middle"))
        os.rename(str(keep.parent / "swap"), str(keep))
        return real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", swap_then_link)
    ino = inode(copy)
    code, document, _ = relink(run, tree)
    assert code == 0 and document["pairs"] == []
    assert document["skipped"][0]["reason"] == (
        "the linked name's bytes are not the copy's (the download or the copy changed "
        "meanwhile): undone"
    )
    assert inode(copy) == ino and copy.read_bytes() == film
    assert temp_names(tree) == []


def test_a_link_that_arrived_as_a_copy_is_undone(tree, run, monkeypatch):
    keep, copy, film = one_pair(tree)
    faked_temp_stat(monkeypatch, 3, -1)  # st_nlink: it did not rise
    code, document, _ = relink(run, tree)
    assert code == 0 and document["pairs"] == []
    assert document["skipped"][0]["reason"].startswith("the link arrived as a copy on ")
    assert document["skipped"][0]["reason"].endswith("(its link count did not rise): undone")
    assert os.stat(str(keep)).st_nlink == 1 and copy.read_bytes() == film
    assert temp_names(tree) == []


def test_a_copy_changed_during_the_compare_is_left_alone(tree, run, monkeypatch):
    keep, copy, film = one_pair(tree)
    real_same = cms.Comparer.same

    def same_then_change(self, one, two, size):
        result = real_same(self, one, two, size)
        os.utime(str(copy), (OLD + 5, OLD + 5))  # someone wrote it meanwhile
        return result

    monkeypatch.setattr(cms.Comparer, "same", same_then_change)
    code, document, _ = relink(run, tree)
    assert code == 0
    assert document["skipped"][0]["reason"] == "changed while it was compared"
    assert os.stat(str(copy)).st_nlink == 1


def written_before_the_link(monkeypatch, path):
    """os.link, after someone writes b"NEW" at the start of path."""
    real_link = os.link

    def write_then_link(*args, **kwargs):
        with open(str(path), "r+b") as handle:
            handle.write(b"NEW")
        return real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", write_then_link)


def test_a_copy_changed_between_compare_and_replace(tree, run, monkeypatch):
    """Where no lease can be had (FUSE, NFS), a write just before the replace is seen by
    the copy's stat.  (With a lease, the writer's open waits for the relink: below.)"""
    keep, copy, film = one_pair(tree)
    monkeypatch.setattr(
        cms.Leases, "take", lambda self, fd: (False, cms.NO_LEASES % "fuse.mergerfs")
    )
    written_before_the_link(monkeypatch, copy)
    code, document, _ = relink(run, tree)
    assert document["skipped"][0]["reason"] == "changed just before the replace: left alone"
    assert copy.read_bytes()[:3] == b"NEW" and os.stat(str(copy)).st_nlink == 1
    assert temp_names(tree) == []


def test_a_download_written_between_compare_and_link_is_undone(tree, run, monkeypatch):
    """The download's own inode is written after the compare (a client's recheck, an
    editor): the link is that inode, but the library must not take bytes it never had."""
    keep, copy, film = one_pair(tree)
    written_before_the_link(monkeypatch, keep)
    ino = inode(copy)
    code, document, _ = relink(run, tree)
    assert code == 0 and document["pairs"] == []
    assert document["skipped"][0]["reason"] == (
        "the download changed after it was compared: left alone"
    )
    assert inode(copy) == ino and copy.read_bytes() == film
    assert os.stat(str(keep)).st_nlink == 1 and temp_names(tree) == []


@needs_root
def test_a_copy_on_another_filesystem(tree, run, monkeypatch):
    movies = tree / "data" / "media" / "movies"
    proc = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(movies)], check=False)
    if proc.returncode != 0:
        pytest.skip("cannot mount here")
    try:
        keep, copy, film = one_pair(tree)
        reads = read_counter(monkeypatch)
        code, document, _ = relink(run, tree)
        assert code == 1
        assert [(s["path"], s["errno"]) for s in document["skipped"]] == [(str(copy), "EXDEV")]
        assert copy.read_bytes() == film
        # No link can cross: the head and tail tell a copy; the rest (a TB, in a broken
        # past of two volumes) is not read.
        assert sum(reads) == 2 * 2 * cms.BLOCK
    finally:
        subprocess.run(["umount", "-l", str(movies)], check=False)


def read_counter(monkeypatch):
    """The sizes of the comparer's reads, as a list that fills during the run."""
    real_read = cms.Comparer._read
    reads = []

    def counted(fd, buffer, want, offset):
        reads.append(want)
        return real_read(fd, buffer, want, offset)

    monkeypatch.setattr(cms.Comparer, "_read", staticmethod(counted))
    return reads


@pytest.fixture
def reflink_tree(tmp_path, run):
    """The tree on a loop-mounted XFS with reflinks, as root."""
    with loop_mounted(tmp_path, "mkfs.xfs", "-m", "reflink=1") as mounted:
        assert run("--path", str(mounted), "-q")[0] == 0
        yield mounted


def test_a_reflinked_copy_frees_nothing(reflink_tree, run):
    """cp on XFS and btrfs makes reflinks: such a copy shares the download's blocks, so
    relinking it frees nothing, and the report says so instead of counting its size."""
    data = reflink_tree / "data"
    film, show = payload(41), payload(42, 3 * MIB)
    keep_film = write(data / "torrents/complete/movies/F/f.mkv", film)
    keep_show = write(data / "torrents/complete/tv/S/s.mkv", show)
    shared, own = data / "media/movies/F/f.mkv", data / "media/tv/S/s.mkv"
    for keep, copy, how in ((keep_film, shared, "always"), (keep_show, own, "never")):
        copy.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(["cp", "--reflink=" + how, str(keep), str(copy)], check=False)
        if made.returncode != 0:
            pytest.skip("cp --reflink=%s failed here" % how)
        os.utime(str(copy), (OLD, OLD))
    code, document, _ = relink(run, reflink_tree, "--dry-run")
    assert code == 0
    assert sorted((p["replace"], p["bytes"], p["frees"]) for p in document["pairs"]) == [
        (str(shared), len(film), 0),
        (str(own), len(show), len(show)),
    ]
    assert document["bytes_reclaimed"] == len(show)
    code, out, _ = run("--path", str(reflink_tree), "--relink")
    assert code == 0
    assert "(2.0 MiB; frees 0 B: a reflink or a snapshot shares the rest; takes on" in out
    assert out.splitlines()[-1].startswith(
        "result: 2 copies relinked, 3.0 MiB released (once no program holds the old files "
        "open and no snapshot keeps them; 2.0 MiB more stays with a reflink or snapshot)"
    )
    assert inode(shared) == inode(keep_film) and inode(own) == inode(keep_show)


def fake_fiemap(extents):
    """An ioctl that answers FIEMAP with these (length, flags) extents, a batch a call."""
    calls = []

    def ioctl(fd, request, buffer):
        assert request == cms.FIEMAP
        start, _, _, _, count, _ = struct.unpack_from("=QQLLLL", buffer, 0)
        calls.append(start)
        offsets, at = [], 0
        for length, flags in extents:
            offsets.append((at, length, flags))
            at += length
        batch = [e for e in offsets if e[0] >= start][:count]
        struct.pack_into("=L", buffer, 20, len(batch))
        for index, (logical, length, flags) in enumerate(batch):
            struct.pack_into("=QQQQQL", buffer, 32 + 56 * index, logical, 0, length, 0, 0, flags)
        return 0

    return ioctl, calls


def test_own_bytes_reads_every_batch_of_extents(monkeypatch, tmp_path):
    import fcntl

    last = cms.FIEMAP_LAST
    extents = [(4096, 0)] * 100 + [(4096, cms.FIEMAP_SHARED)] * 100 + [(8192, last)]
    ioctl, calls = fake_fiemap(extents)
    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    fd = os.open(str(write(tmp_path / "f", b"x")), os.O_RDONLY)
    try:
        assert cms.own_bytes(fd, 10**9) == 100 * 4096 + 8192
        assert calls == [0, 128 * 4096]  # a second batch from where the first ended
        assert cms.own_bytes(fd, 5000) == 5000  # never more than the file's size

        def unsupported(*args):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # tmpfs, ZFS, FUSE

        monkeypatch.setattr(fcntl, "ioctl", unsupported)
        assert cms.own_bytes(fd, 1234) == 1234
    finally:
        os.close(fd)


@needs_root
def test_a_download_on_the_copys_filesystem_is_tried_first(tree, run):
    """Two equal downloads, the one with more links on another filesystem: the copy is
    linked to the other (it used to be skipped with EXDEV, the other never tried)."""
    elsewhere = tree / "data" / "torrents" / "complete" / "movies"
    proc = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(elsewhere)], check=False)
    if proc.returncode != 0:
        pytest.skip("cannot mount here")
    try:
        data = tree / "data"
        film = payload(31)
        far = write(elsewhere / "F/f.mkv", film)
        os.link(str(far), str(elsewhere / "F/seeded.mkv"))  # more links: tried first before
        near = write(data / "usenet/complete/movies/F/f.mkv", film)
        copy = write(data / "media/movies/F/f.mkv", film)
        code, document, _ = relink(run, tree)
        assert (code, document["skipped"]) == (0, [])
        assert [(p["keep"], p["replace"]) for p in document["pairs"]] == [(str(near), str(copy))]
        assert inode(copy) == inode(near)
    finally:
        subprocess.run(["umount", "-l", str(elsewhere)], check=False)


def test_one_run_at_a_time(tree, run):
    import fcntl

    one_pair(tree)
    fd = os.open(str(tree / "data"), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code, out, err = run("--path", str(tree), "--relink")
        assert code == 1 and "another --relink is running on" in err
    finally:
        os.close(fd)


def test_symlinks_are_never_followed(tree, run):
    data = tree / "data"
    film = payload(12)
    write(data / "torrents/complete/movies/F/f.mkv", film)
    outside = write(tree / "elsewhere" / "f.mkv", film)
    (data / "media" / "movies" / "F").symlink_to(tree / "elsewhere")
    code, document, _ = relink(run, tree)
    assert (code, document["pairs"]) == (0, [])
    assert os.stat(str(outside)).st_nlink == 1


def test_leftover_temp_names_are_removed_by_a_strict_rule(tree, run):
    keep, copy, film = one_pair(tree)
    movies = tree / "data" / "media" / "movies"
    os.link(str(keep), str(movies / (cms.RELINK_PREFIX + "1-dead")))  # ours: another name holds it
    write(movies / (cms.RELINK_PREFIX + "2-lone"), payload(13))  # link count 1: not ours to judge
    code, document, _ = relink(run, tree, "--dry-run")
    assert document["leftovers_removed"] == 1 and len(temp_names(tree)) == 2
    code, document, _ = relink(run, tree)
    assert document["leftovers_removed"] == 1
    assert temp_names(tree) == [cms.RELINK_PREFIX + "2-lone"]


@pytest.mark.parametrize("call, when", [("linkat", 1), ("linkat", 2), ("renameat", 1),
                                        ("renameat", 2), ("renameat", 3)])  # fmt: skip
def test_sigkill_at_any_point_loses_nothing(tree, call, when):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    data = tree / "data"
    copies = {}
    for index in range(3):
        film = payload(20 + index)
        write(data / ("torrents/complete/movies/F%d/f.mkv" % index), film)
        copies[write(data / ("media/movies/F%d/f.mkv" % index), film)] = film
    proc = subprocess.run(
        [strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=%s" % call,
         "-e", "inject=%s:signal=SIGKILL:when=%d" % (call, when),
         sys.executable, str(SCRIPT), "--path", str(tree), "--relink", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    if b"ptrace" in proc.stderr.lower():
        pytest.skip("ptrace is not allowed here")
    assert proc.returncode == -9
    for path, film in copies.items():
        assert path.read_bytes() == film  # every library path is there, whole
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--path", str(tree), "--relink", "--json"],
        stdout=subprocess.PIPE, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert temp_names(tree) == []
    for path, film in copies.items():
        assert path.read_bytes() == film and os.stat(str(path)).st_nlink == 2


def test_check_points_to_relink(tree, run, library):
    code, out, _ = run("--path", str(tree), "--check")
    assert "--relink --dry-run shows which" in out


def test_zero_length_files_are_never_paired(tree, run):
    """--min-size 0 welded a download's empty.txt, a watched.marker and a .plexmatch into
    one inode: editing one then rewrote the others."""
    data = tree / "data"
    empty = write(data / "torrents/complete/tv/Show/empty.txt", b"")
    marker = write(data / "media/tv/Show/watched.marker", b"")
    plexmatch = write(data / "media/tv/Show/.plexmatch", b"")
    keep, copy, film = one_pair(tree)
    code, document, _ = relink(run, tree, "--min-size", "0")
    assert code == 0 and [p["replace"] for p in document["pairs"]] == [str(copy)]
    assert [os.stat(str(p)).st_nlink for p in (empty, marker, plexmatch)] == [1, 1, 1]


@pytest.mark.parametrize("who", ["copy", "download"])
def test_a_user_attribute_that_differs_skips_the_pair(tree, run, who):
    """Samba's user.DOSATTRIB, user.xdg.tags: the library file would lose or change them."""
    keep, copy, film = one_pair(tree)
    try:
        os.setxattr(str(copy if who == "copy" else keep), "user.DOSATTRIB", b"0x20")
    except OSError:
        pytest.skip("no user extended attributes on this filesystem")
    ino = inode(copy)
    code, document, _ = relink(run, tree)
    assert code == 0 and document["pairs"] == []
    (skip,) = document["skipped"]
    assert skip["reason"].startswith("the %s's extended attribute user.DOSATTRIB differs" % who)
    assert inode(copy) == ino
    os.setxattr(str(keep if who == "copy" else copy), "user.DOSATTRIB", b"0x20")
    code, document, _ = relink(run, tree)  # the same attributes: relinked
    assert code == 0 and len(document["pairs"]) == 1 and inode(copy) == inode(keep)


@pytest.mark.parametrize("who", ["copy", "download"])
def test_an_unreadable_file_is_one_skipped_pair(tree, run, monkeypatch, who):
    """Not root, a download it can't read was a PermissionError traceback that stopped
    the whole run: now that pair is skipped with its reason, every other pair done."""
    keep, copy, film = one_pair(tree)
    data = tree / "data"
    other = payload(12)
    other_keep = write(data / "torrents/complete/tv/S/e.mkv", other)
    other_copy = write(data / "media/tv/S/e.mkv", other)
    denied = copy if who == "copy" else keep
    real_open = cms.open_file

    def open_file(name, dir_fd, noatime=False):
        if os.path.join(os.readlink("/proc/self/fd/%d" % dir_fd), name) == str(denied):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        return real_open(name, dir_fd, noatime)

    monkeypatch.setattr(cms, "open_file", open_file)
    code, document, _ = relink(run, tree)
    assert code == 1  # the user is told by the exit code too
    assert [p["replace"] for p in document["pairs"]] == [str(other_copy)]
    (skip,) = document["skipped"]
    assert (skip["path"], skip["errno"]) == (str(copy), "EACCES")
    assert skip["reason"].startswith("the %s can't be read: Permission denied" % who)
    assert inode(other_copy) == inode(other_keep) and copy.read_bytes() == film


@needs_root
def test_an_unreadable_download_as_a_plain_user(public_tmp, run):
    """The same for real: run as a plain user (as root, in a child that becomes one)."""
    tree = public_tmp
    assert run("--path", str(tree), "-q")[0] == 0
    keep, copy, film = one_pair(tree)
    data = tree / "data"
    other = payload(12)
    write(data / "torrents/complete/tv/S/e.mkv", other)
    other_copy = write(data / "media/tv/S/e.mkv", other)
    subprocess.run(["chown", "-R", "4242:4242", str(data)], check=True)
    os.chmod(str(keep), 0o600)
    os.chown(str(keep), 4343, 4343)  # a client's download, not readable by the library's user
    python = "/usr/bin/python3"  # one a plain user may run (pyenv's live in root's home)
    if not os.access(python, os.X_OK) or shutil.which("setpriv") is None:
        pytest.skip("no /usr/bin/python3 or no setpriv here")
    proc = subprocess.run(
        ["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups", python,
         str(SCRIPT), "--path", str(tree), "--relink", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    assert proc.stderr == b""  # no traceback
    document = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert [p["replace"] for p in document["pairs"]] == [str(other_copy)]
    assert [(s["path"], s["errno"]) for s in document["skipped"]] == [(str(copy), "EACCES")]
    assert copy.read_bytes() == film


def test_a_copy_held_open_is_in_use(tree, run):
    """A tagger has the library file open to write: relinked, its writes would land in
    the old copy.  The write lease can't be had, so the pair is left alone."""
    keep, copy, film = one_pair(tree)
    with open(str(copy), "r+b") as tagger:
        code, document, _ = relink(run, tree)
        tagger.write(b"TAG")
    assert code == 0 and document["pairs"] == []
    assert [s["reason"] for s in document["skipped"]] == [cms.IN_USE]
    assert copy.read_bytes()[:3] == b"TAG" and os.stat(str(keep)).st_nlink == 1


def opened_by_a_writer_at(monkeypatch, call, path):
    """At the first os.<call> of the relink, another process opens path to write (its
    open waits on the lease: the lease's signal says when it does) and, once it may,
    writes b"TAG" at its start.  Returns the process, to wait for."""
    import signal

    real = getattr(os, call)
    started = []

    def writer_then_call(*args, **kwargs):
        if not started:
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGIO])
            try:
                started.append(subprocess.Popen([
                    sys.executable, "-c",
                    "import sys; f = open(sys.argv[1], 'r+b'); f.write(b'TAG'); f.close()",
                    str(path)]))  # fmt: skip
                assert signal.sigtimedwait([signal.SIGIO], 60) is not None  # it waits now
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGIO])
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, writer_then_call)
    return started


@pytest.mark.parametrize("call, reason", [("link", "OPENED_MEANWHILE"),
                                          ("rename", "OPENED_WHILE_REPLACED")])  # fmt: skip
def test_a_copy_opened_during_the_relink_keeps_its_writes(tree, run, monkeypatch, call, reason):
    """A tagger opens the copy after the compare (before the link, or just before the
    rename over it): its open waits on the lease, the relink sees the lease break and
    leaves (or puts back) the copy, and the tag lands in the library file."""
    keep, copy, film = one_pair(tree)
    ino = inode(copy)
    writer = opened_by_a_writer_at(monkeypatch, call, copy)
    code, document, _ = relink(run, tree)
    assert writer and writer[0].wait(60) == 0
    assert code == 0 and document["pairs"] == []
    assert [s["reason"] for s in document["skipped"]] == [getattr(cms, reason)]
    assert inode(copy) == ino and copy.read_bytes() == b"TAG" + film[3:]
    assert os.stat(str(keep)).st_nlink == 1 and temp_names(tree) == []


def test_a_fifo_in_a_copys_place_never_hangs_the_run(tree):
    """The container's user swaps a library file for a fifo after the index: the root cron
    job's open used to block for good (deaf to SIGINT, SIGTERM, SIGHUP), and every later
    --relink said another one was running.  In a child process: a hang fails the test."""
    keep, copy, film = one_pair(tree)
    driver = (
        "import os, sys; sys.path.insert(0, %r); import create_media_structure as cms\n"
        "real = cms._try_pair\n"
        "def swap(copy_side, *rest):\n"
        "    path = copy_side.path\n"
        "    os.rename(path, path + '.real'); os.mkfifo(path)\n"
        "    return real(copy_side, *rest)\n"
        "cms._try_pair = swap\n"
        "sys.exit(cms.main(['--path', %r, '--relink', '--json']))\n"
    ) % (str(SCRIPT.parent), str(tree))
    proc = subprocess.run([sys.executable, "-c", driver], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, check=False)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert json.loads(proc.stdout)["pairs"] == []
    assert stat.S_ISFIFO(os.lstat(str(copy)).st_mode) and os.stat(str(keep)).st_nlink == 1


def test_where_no_lease_can_be_had_the_report_says_so(tree, run, monkeypatch):
    """NFS, SMB: no leases, so nothing shows a program that has the copy open; the pair is
    done (README: why) and the report says what was not seen."""
    keep, copy, film = one_pair(tree)
    monkeypatch.setattr(cms.Leases, "take", lambda self, fd: (False, cms.NO_LEASES % "nfs4"))
    code, out, _ = run("--path", str(tree), "--relink")
    assert code == 0 and inode(copy) == inode(keep)
    assert (
        "  note: 1 of these: no leases on nfs4: whether another program had the copy "
        "open was not seen (README: --relink on FUSE and network shares)" in out.splitlines()
    )
    os.unlink(str(copy))
    write(copy, film)
    code, document, _ = relink(run, tree)
    assert document["pairs"][0]["unwatched"] == cms.NO_LEASES % "nfs4"


def test_json_gives_the_exact_bytes_of_a_name_that_is_not_utf8(tree, run):
    """A name whose bytes aren't UTF-8 and a name that spells \\xff out came out the same:
    the first now has a *_b64 sibling with its bytes, for every path field."""
    import base64

    data = os.fsencode(str(tree / "data"))
    film, other = payload(31), payload(32)
    names = {b"bad\xff.mkv": film, b"bad\\xff.mkv": other}  # the bytes, and the 4 characters
    for name, body in names.items():
        for folder in (b"/torrents/complete/movies/", b"/media/movies/"):
            path = data + folder + name
            with open(path, "wb") as handle:
                handle.write(body)
            os.utime(path, (OLD, OLD))
    code, document, _ = relink(run, tree, "--dry-run")
    pairs = sorted(document["pairs"], key=lambda p: "replace_b64" in p)
    assert [p["replace"] for p in pairs] == [str(tree / "data/media/movies/bad\\xff.mkv")] * 2
    assert "replace_b64" not in pairs[0] and "keep_b64" not in pairs[0]
    exact = base64.b64decode(pairs[1]["replace_b64"])
    assert exact == data + b"/media/movies/bad\xff.mkv"
    assert base64.b64decode(pairs[1]["keep_b64"]) == data + b"/torrents/complete/movies/bad\xff.mkv"
    folder = data + b"/torrents/complete/tv/Show\xfe"  # a download folder of lone files
    os.mkdir(folder)
    with open(folder + b"/e.mkv", "wb") as handle:
        handle.write(payload(33))
    code, out, _ = run("--path", str(tree), "--check", "--json")
    (torrents,) = [a for a in json.loads(out)["audit"] if a["source"] == "torrents"]
    exact = {base64.b64decode(b["path_b64"]) for b in torrents["biggest"] if "path_b64" in b}
    assert exact == {folder}


def test_on_nfs_a_refused_lease_is_not_in_use(tree, run, monkeypatch):
    """NFSv4 and SMB refuse a write lease (EAGAIN) wherever the server gave no delegation:
    that is no program holding the copy open, and every pair there was 'in use'."""
    keep, copy, film = one_pair(tree)
    monkeypatch.setattr(cms, "fstype_of", lambda fd, path: "nfs4")
    code, document, _ = relink(run, tree)
    assert code == 0 and document["skipped"] == []
    assert document["pairs"][0]["unwatched"] == cms.NO_LEASES % "nfs4"


def test_an_old_copy_a_killed_run_set_aside(tree, run):
    """Killed between its rename and its clean-up, a run leaves the old copy under its
    hidden .was name, one link: it was indexed as a library copy (and relinked, a stray
    hidden name for good).  Now it is removed where the file beside it has its bytes, and
    kept, and named, where none has."""
    keep, copy, film = one_pair(tree)
    folder = copy.parent
    copy.unlink()
    os.link(str(keep), str(copy))  # the rename was done: the library path is the download's
    aside = write(folder / (cms.RELINK_PREFIX + "99-abc" + cms.ASIDE), film)
    stray = write(folder / (cms.RELINK_PREFIX + "98-def" + cms.ASIDE), payload(77))
    code, document, _ = relink(run, tree, "--dry-run")
    assert document["pairs"] == [] and aside.exists()
    assert sorted(document["set_aside"], key=lambda item: item["path"]) == [
        {"path": str(stray), "same_as": None, "removed": False},
        {"path": str(aside), "same_as": str(copy), "removed": True},
    ]
    code, out, _ = run("--path", str(tree), "--relink")
    assert code == 0 and not aside.exists() and stray.exists()
    assert (
        "  removed %s: an old copy a killed run set aside; %s holds its bytes"
        % (
            os.path.relpath(str(aside), str(tree / "data")),
            os.path.relpath(str(copy), str(tree / "data")),
        )
        in out
    )
    assert (
        "  kept %s: set aside by a killed run" % os.path.relpath(str(stray), str(tree / "data"))
        in out
    )
    assert copy.read_bytes() == film and inode(copy) == inode(keep)
    code, document, _ = relink(run, tree)  # a second run: nothing to do but name the stray
    assert (document["pairs"], document["leftovers_removed"]) == ([], 0)
    assert [item["path"] for item in document["set_aside"]] == [str(stray)]


def test_downloads_beside_complete_are_seen_incomplete_ones_never(tree, run):
    """TRaSH's own layout saves to data/torrents/<category>, not torrents/complete/: a
    copied episode there was invisible to the audit and to --relink, and the check said
    healthy.  incomplete/ is left out: what grows there is no download yet."""
    data = tree / "data"
    film = payload(31)
    keep = write(data / "torrents/movies/Film.2020/film.mkv", film)  # beside complete/
    copy = write(data / "media/movies/Film (2020)/film.mkv", film)
    growing = payload(32)
    write(data / "torrents/incomplete/Other/o.mkv", growing)
    write(data / "media/movies/Other/o.mkv", growing)
    code, out, _ = run("--path", str(tree), "--check")
    assert "  torrents: 1 file(s), 2.0 MiB" in out  # the incomplete one is not counted
    assert "       2.0 MiB in 1 file(s): movies/Film.2020\n" in out  # each download, by name
    code, document, _ = relink(run, tree)
    assert [(p["keep"], p["replace"]) for p in document["pairs"]] == [(str(keep), str(copy))]
    assert inode(copy) == inode(keep)
