"""Shared helpers: the script imported in-process, and ways to look at a tree."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "create_media_structure.py"
TMP = tempfile.gettempdir()  # where tmp_path lives: faults are injected only below it
# Running as root for real (the tests themselves see uid 1000: not_root below).
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="needs root (mounts, chown, other users)")
sys.path.insert(0, str(REPO))

import create_media_structure as cms  # noqa: E402


@contextmanager
def loop_mounted(tmp_path: Path, mkfs: str, *options: str) -> Iterator[Path]:
    """A fresh filesystem in a loop-mounted image below tmp_path, unmounted after; the
    test is skipped where that can't be (not root, no mkfs, no loop devices)."""
    if not AS_ROOT:
        pytest.skip("mounting a loop device needs root")
    if shutil.which(mkfs) is None:
        pytest.skip("%s is not here (apt-get install xfsprogs btrfs-progs)" % mkfs)
    image, mounted = tmp_path / "fs.img", tmp_path / "fs"
    mounted.mkdir()
    with open(str(image), "wb") as handle:
        handle.truncate(320 * 1024 * 1024)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    if (
        subprocess.run([mkfs, "-q", *options, str(image)], **quiet).returncode
        or subprocess.run(["mount", "-o", "loop", str(image), str(mounted)], **quiet).returncode
    ):
        pytest.skip("cannot make or mount a %s image here" % mkfs)
    try:
        yield mounted
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def expected_dirs(extra: Iterable[str] = ()) -> Set[str]:
    """The tree's folders as relative paths, worked out here independently of the script."""
    categories = ["books", "movies", "music", "tv", "anime", "anime/movies", "anime/tv"]
    categories += list(extra)
    dirs = {"data", "data/media"}
    for source in ("torrents", "usenet", "ddl"):
        dirs |= {"data/" + source, "data/%s/incomplete" % source, "data/%s/complete" % source}
        dirs |= {"data/%s/complete/%s" % (source, c) for c in categories}
    dirs |= {"data/media/" + c for c in categories}
    dirs.add("data/media/personal")
    for kind in ("rip", "remux"):
        dirs.add("data/media/personal/" + kind)
        for c in ("movies", "tv", "anime", "anime/movies", "anime/tv"):
            dirs.add("data/media/personal/%s/%s" % (kind, c))
    return dirs


def dirs_on_disk(base: Path) -> Set[str]:
    """Every real folder below base (not following symlinks), relative to it."""
    found = set()
    for top, dirnames, _ in os.walk(str(base)):
        for name in dirnames:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                found.add(os.path.relpath(path, str(base)))
    return found


Snapshot = Dict[str, Tuple[object, ...]]


def snapshot(base: Path) -> Snapshot:
    """lstat, contents and link targets of everything below base, for 'nothing changed'."""
    seen = {}  # type: Snapshot
    for top, dirnames, filenames in os.walk(os.fsencode(str(base))):
        for name in dirnames + filenames:
            path = os.path.join(top, name)
            st = os.lstat(path)
            extra = b""  # type: object
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    extra = handle.read()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            key = os.fsdecode(os.path.relpath(path, os.fsencode(str(base))))
            seen[key] = (st.st_mode, st.st_uid, st.st_gid, st.st_ino, st.st_mtime_ns, extra)
    return seen


def is_ours(args, kwargs, under=TMP):
    """Whether an os call is the script's on the tree: through a folder's fd, or a path below."""
    if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None:
        return True
    first = args[0] if args else None
    if isinstance(first, int):
        return first > 2
    return first is not None and os.fsdecode(first).startswith(under)


def fail_on_call(monkeypatch, name, number, error, under=TMP):
    """Make the number-th call of os.<name> on the tree raise (see is_ours).

    error is an errno (raised as OSError) or an exception to raise as it is.
    Returns the list of the calls' first arguments.
    """
    real = getattr(os, name)
    calls = []

    def fake(*args, **kwargs):
        if is_ours(args, kwargs, under):
            calls.append(args[0] if args else None)
            if len(calls) == number:
                if isinstance(error, int):
                    raise OSError(error, os.strerror(error), args[0] if args else None)
                raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fake)
    return calls


@pytest.fixture
def tree(tmp_path, run, request):
    """A fresh tree below tmp_path, which other users may pass through, as on a NAS;
    made with the test module's TREE_OPTIONS where it has them (the apps' owner)."""
    os.chmod(str(tmp_path), 0o755)
    options = getattr(request.module, "TREE_OPTIONS", [])
    assert run("--path", str(tmp_path), "-q", *options)[0] == 0
    return tmp_path


@pytest.fixture
def public_tmp():
    """A folder every user may pass through (pytest's own tmp_path is root's 0700)."""
    path = tempfile.mkdtemp(prefix="cms-test-")
    os.chmod(path, 0o755)
    yield Path(path)
    subprocess.run(["umount", "-R", "-l", path], stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def not_root(monkeypatch):
    """CI runs as root; the tests see a plain user unless they say otherwise."""
    if hasattr(os, "geteuid"):
        monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.fixture
def run(capsys):
    """Call main in-process; return (exit code, stdout, stderr), usage errors included."""

    def call(*argv: str) -> Tuple[int, str, str]:
        try:
            code = cms.main(list(argv))
        except SystemExit as exit:  # argparse's own usage errors and --help
            code = exit.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def pyenv_pythons() -> Dict[str, str]:
    """The CPython 3 interpreters pyenv has here: version -> path."""
    import glob
    import subprocess

    try:
        root = subprocess.run(
            ["pyenv", "root"], stdout=subprocess.PIPE, universal_newlines=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    found = {}
    for path in glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3")):
        found[os.path.basename(os.path.dirname(os.path.dirname(path)))] = path
    return found
