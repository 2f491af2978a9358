"""--check on a real mergerfs pool: links through FUSE, and a pair split over two disks."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import AS_ROOT, cms


@pytest.fixture
def pool(run):
    """mergerfs over two branches, mounted by root; skipped where that can't be done."""
    yield from mount_pool(run)


@pytest.fixture
def symlinking_pool(run):
    """A pool that turns a hardlink between its disks into a relative symlink."""
    yield from mount_pool(run, "link-exdev=rel-symlink")


@pytest.fixture
def aside_pool(run):
    """A pool that moves a file aside and leaves a symlink where a move would cross its
    disks."""
    yield from mount_pool(run, "rename-exdev=rel-symlink")


@pytest.fixture
def uneven_pool(run):
    """epmfs over two RAM disks: a small one holding the tree, a bigger, emptier one
    where epmfs puts a new folder whose parent is on both."""
    yield from mount_pool(run, "category.create=epmfs", "minfreespace=1M", sizes=("16m", "64m"))


def mount_pool(run, *options, sizes=()):
    if not AS_ROOT:
        pytest.skip("mounting mergerfs needs root")
    if shutil.which("mergerfs") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("mergerfs or /dev/fuse is not here (apt-get install mergerfs fuse3)")
    top = Path(tempfile.mkdtemp(prefix="cms-union-"))
    os.chmod(str(top), 0o755)  # the containers' user may pass
    branches = [top / "disk1", top / "disk2"]
    mounted = top / "pool"
    for folder in branches + [mounted]:
        folder.mkdir()
    for branch, size in zip(branches, sizes):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(branch)],
                          check=False).returncode:  # fmt: skip
            unmount(top, branches)
            pytest.skip("tmpfs would not mount")
    if sizes:  # the tree on the first disk, as if the pool had been one disk then
        assert run("--path", str(branches[0]), "--owner", "1000:1000", "-q")[0] == 0
    proc = subprocess.run(
        [
            "mergerfs",
            "-o",
            ",".join(("allow_other",) + options),
            ":".join(map(str, branches)),
            str(mounted),
        ],
        stderr=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        unmount(top, branches)
        pytest.skip("mergerfs would not mount: %s" % proc.stderr.decode().strip())
    try:
        assert run("--path", str(mounted), "--owner", "1000:1000", "-q")[0] == 0
        yield mounted, branches
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)
        unmount(top, branches)


def unmount(top, branches):
    for branch in branches:
        if os.path.ismount(str(branch)):
            subprocess.run(["umount", "-l", str(branch)], check=False)
    shutil.rmtree(str(top), ignore_errors=True)


def check(run, base, *extra):
    code, out, _ = run("--path", str(base), "--check", "--json", *extra)
    return code, json.loads(out)


def test_links_through_mergerfs_are_healthy(pool, run, monkeypatch):
    mounted, _ = pool
    code, document = check(run, mounted)
    assert code == 0, document["findings"]
    assert document["findings"] == []
    assert any(note.startswith("fuse.mergerfs is a union of disks") for note in document["notes"])
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # probe as the containers' user, for real
    code, document = check(run, mounted, "--owner", "1000:1000")
    assert code == 0, document["findings"]
    assert document["probed_as"] == "1000:1000"


def split(branches, *parts):
    """Move the (empty) folder at parts to the other disk."""
    holding = next(b for b in branches if b.joinpath("data", *parts).is_dir())
    other = next(b for b in branches if b != holding)
    holding.joinpath("data", *parts).rmdir()
    other.joinpath("data", *parts).mkdir(parents=True)


def test_a_pair_split_over_two_disks_is_a_problem(pool, run):
    mounted, branches = pool
    split(branches, "media", "tv")
    code, document = check(run, mounted)
    assert code == 1
    assert sorted({(f["kind"], f["errno"]) for f in document["findings"]}) == [
        ("hardlink-failed", "EXDEV"),
        ("move-failed", "EXDEV"),
    ]
    assert {f["detail"].split(" failed")[0] for f in document["findings"]} == {
        "%s from %s/complete/tv to media/tv" % (op, source)
        for op in ("hardlink", "move")
        for source in ("torrents", "usenet", "ddl")
    }


def test_a_folder_on_two_disks_whose_new_folders_land_elsewhere_is_a_problem(uneven_pool, run):
    """media/tv on both disks, complete/tv on one: a link into media/tv works (it goes to
    the download's disk), but epmfs puts the folder an import makes there (a show's) on
    the emptier disk, and the import's link into it fails."""
    mounted, branches = uneven_pool
    code, document = check(run, mounted)
    assert (code, [(f["kind"], f["detail"]) for f in document["findings"]]) == (0, [])
    (branches[1] / "data" / "media" / "tv").mkdir(parents=True)
    code, document = check(run, mounted)
    new_folders = [f for f in document["findings"] if f["kind"] == "new-folder-failed"]
    assert code == 1
    assert sorted(f["detail"].split(" failed")[0] for f in new_folders) == [
        "a hardlink from %s/complete/tv into a new folder in media/tv" % source
        for source in ("ddl", "torrents", "usenet")
    ]
    assert new_folders[0]["severity"] == "problem" and new_folders[0]["errno"] == "EXDEV"
    assert [f["kind"] for f in document["findings"] if f not in new_folders] == []
    assert files_in(branches) == []
    assert sorted(os.listdir(str(mounted / "data" / "media" / "tv"))) == []


def test_what_a_killed_probe_child_left_is_removed_before_the_probes_run_again(
    pool, run, monkeypatch
):
    """The child probing as the containers' user dies with its new folder made (a pids
    limit, the OOM killer): the parent removes what it left, through its own
    descriptors, before it probes again as the caller, and nothing is in the way."""
    mounted, branches = pool
    parent = os.getpid()
    real_rmdir = os.rmdir

    def die_in_the_child(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(9)
        return real_rmdir(*args, **kwargs)

    monkeypatch.setattr(os, "rmdir", die_in_the_child)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # probe as the containers' user, for real
    code, document = check(run, mounted, "--owner", "1000:1000")
    assert (code, document["findings"]) == (0, [])
    assert document["probed_as"] == "%d:%d" % (os.getuid(), os.getgid())
    assert (
        "the probe process as uid 1000 failed: the probes ran as you (uid %d) instead"
        % (os.getuid())
        in document["notes"]
    )
    assert files_in(branches) == []
    assert not [d for b in branches for _, dirs, _ in os.walk(str(b)) for d in dirs
                if d.startswith(cms.PROBE_NAME)]  # fmt: skip


def files_in(branches):
    return sorted(
        os.path.relpath(os.path.join(folder, name), str(branch))
        for branch in branches
        for folder, _, names in os.walk(str(branch))
        for name in names
    )


@pytest.mark.parametrize(
    "pool_name, step, option",
    [("symlinking_pool", "hardlink", "link-exdev"), ("aside_pool", "move", "rename-exdev")],
)
def test_a_link_or_move_that_arrives_as_a_symlink_is_a_problem(
    request, run, pool_name, step, option
):
    """mergerfs' link-exdev makes a symlink where a hardlink would cross its disks;
    rename-exdev moves the file into .mergerfs_rename_exdev/ and leaves a symlink. The
    import "works" and the library then depends on a path outside it: a problem, named
    as such, and the check removes whatever its probe left."""
    mounted, branches = request.getfixturevalue(pool_name)
    split(branches, "media", "tv")
    code, document = check(run, mounted)
    assert code == 1
    details = {f["detail"] for f in document["findings"] if f["kind"] == step + "-failed"}
    assert details == {
        "%s from %s/complete/tv to media/tv failed: the %s arrived as a symlink "
        "(a union makes one between its disks: mergerfs %s)" % (step, source, step, option)
        for source in ("torrents", "usenet", "ddl")
    }
    assert files_in(branches) == []


def test_a_finish_that_arrives_as_a_symlink_is_a_warning(aside_pool, run):
    mounted, branches = aside_pool
    split(branches, "torrents", "incomplete")
    code, document = check(run, mounted)
    assert code == 0, document["findings"]
    assert [(f["kind"], f["severity"], f["detail"]) for f in document["findings"]] == [
        ("finish-failed", "warning", "a move from torrents/incomplete to torrents/complete/"
         "%s failed: the move arrived as a symlink (a union makes one between its disks: "
         "mergerfs rename-exdev); the client copies each finished download instead" % cat)
        for cat in ("books", "movies", "music", "tv", "anime/movies", "anime/tv")
    ]  # fmt: skip
    assert files_in(branches) == []


def test_a_probe_file_moved_aside_by_a_killed_check_is_removed(aside_pool, run):
    mounted, branches = aside_pool
    aside = branches[1] / ".mergerfs_rename_exdev" / "data" / "torrents" / "complete" / "tv"
    aside.mkdir(parents=True)
    (aside / cms.PROBE_NAME).write_bytes(cms.PROBE_MARKER)
    link = mounted / "data" / "media" / "tv" / (cms.PROBE_NAME + ".m")
    os.symlink("../../../.mergerfs_rename_exdev/data/torrents/complete/tv/" + cms.PROBE_NAME,
               str(link))  # fmt: skip
    not_ours = mounted / "data" / "media" / "movies" / (cms.PROBE_NAME + ".m")
    os.symlink("../../../.mergerfs_rename_exdev/film.mkv", str(not_ours))
    code, document = check(run, mounted)
    assert "removed 1 probe file(s) that an interrupted check had left" in document["notes"]
    assert [(f["kind"], f["path"]) for f in document["findings"]] == [
        ("probe-blocked", str(not_ours))
    ] * 3  # fmt: skip
    assert files_in(branches) == [os.path.relpath(str(not_ours), str(mounted))]


def test_relink_undoes_a_link_that_arrives_as_a_symlink(symlinking_pool, run):
    mounted, branches = symlinking_pool
    split(branches, "media", "movies")
    data = mounted / "data"
    film = os.urandom(2 * 1024 * 1024)
    keep = data / "torrents" / "complete" / "movies" / "film.mkv"
    copy = data / "media" / "movies" / "film.mkv"
    for path in (keep, copy):
        path.write_bytes(film)
        os.utime(str(path), (1600000000, 1600000000))
    ino = os.lstat(str(copy)).st_ino
    code, out, _ = run("--path", str(mounted), "--relink", "--json")
    document = json.loads(out)
    assert (code, document["pairs"]) == (0, [])
    assert document["skipped"][0]["reason"] == (
        "the link arrived as a symlink on fuse.mergerfs (a union makes one between its "
        "disks: mergerfs link-exdev): undone"
    )
    assert os.lstat(str(copy)).st_ino == ino and copy.read_bytes() == film
    assert sorted(name for _, _, names in os.walk(str(mounted)) for name in names) == [
        "film.mkv", "film.mkv"
    ]  # fmt: skip


def test_relink_through_mergerfs(pool, run):
    """mergerfs shows two names of one file as two inode numbers: --relink proves the link
    by its bytes and links the copy, where it used to undo every pair."""
    mounted, branches = pool
    data = mounted / "data"
    film = os.urandom(2 * 1024 * 1024)
    old = 1600000000  # long before --min-age
    keep = data / "torrents" / "complete" / "movies" / "Film.2020" / "film.mkv"
    copy = data / "media" / "movies" / "Film (2020).mkv"
    for path in (keep, copy):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(film)
        os.utime(str(path), (old, old))
    code, out, _ = run("--path", str(mounted), "--relink", "--json")
    document = json.loads(out)
    assert code == 0, document["skipped"]
    assert [p["replace"] for p in document["pairs"]] == [str(copy)]
    # The lease sees opens through the pool, not a writer on a branch: the report says so.
    assert document["pairs"][0]["unwatched"] == cms.FUSE_LEASE % "fuse.mergerfs"
    on_disk = {
        os.path.relpath(os.path.join(folder, name), str(branch)): os.lstat(
            os.path.join(folder, name)
        )
        for branch in branches
        for folder, _, names in os.walk(str(branch))
        for name in names
    }
    one = on_disk[os.path.relpath(str(keep), str(mounted))]
    two = on_disk[os.path.relpath(str(copy), str(mounted))]
    assert (one.st_dev, one.st_ino, one.st_nlink) == (two.st_dev, two.st_ino, 2)
    assert copy.read_bytes() == film
    assert not [name for name in on_disk if cms.RELINK_PREFIX in name]
    code, out, _ = run("--path", str(mounted), "--relink", "--json")
    assert (code, json.loads(out)["pairs"]) == (0, [])  # nothing left to do
