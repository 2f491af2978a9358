"""The creator's trust: it changes only what it says, can't be steered out of the tree,
refuses bad input before touching anything, and never crashes on its own output."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import (
    SCRIPT,
    cms,
    dirs_on_disk,
    expected_dirs,
    fail_on_call,
    needs_root,
    pyenv_pythons,
    snapshot,
)


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


# -- 1. --owner alone never changes a mode ---------------------------------------------------


@needs_root
def test_owner_alone_keeps_every_mode(tmp_path, run):
    assert run("--path", str(tmp_path), "--owner", "0:0", "--mode", "2775", "-q")[0] == 0
    personal = tmp_path / "data" / "media" / "personal"
    os.chmod(str(personal), 0o750)
    assert mode_of(tmp_path / "data") == 0o2775
    code, out, _ = run("--path", str(tmp_path), "--owner", "1000:1000", "--dry-run")
    assert code == 0
    assert "would change (owner 0:0 -> 1000:1000)" in out and "mode" not in out
    code, out, _ = run("--path", str(tmp_path), "--owner", "1000:1000")
    assert code == 0
    assert "changed (owner 0:0 -> 1000:1000)" in out and "mode" not in out
    assert mode_of(tmp_path / "data") == 0o2775  # setgid kept
    assert mode_of(personal) == 0o750  # a private folder stays private
    assert os.stat(str(personal)).st_uid == 1000


def test_mode_changes_are_in_the_plan_and_the_report(tmp_path, run):
    run("--path", str(tmp_path), "-q")
    os.chmod(str(tmp_path / "data" / "media" / "tv"), 0o700)
    code, out, _ = run("--path", str(tmp_path), "--dry-run")
    assert "would change" not in out and mode_of(tmp_path / "data/media/tv") == 0o700
    code, out, _ = run("--path", str(tmp_path), "--mode", "775", "--dry-run")
    assert "tv/" in out and "would change (mode 0700 -> 0775)" in out
    assert "dry run: 0 to create, 1 to change, 51 already there" in out


# -- 2. nothing outside the tree, whatever is swapped in ------------------------------------


@pytest.fixture
def secret(tmp_path):
    """A folder outside the tree that only its owner may enter, with something in it."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "keep").write_text("private")
    os.chmod(str(folder), 0o700)
    return folder


def swap_for_symlink(folder, target):
    """What the tree's owner can do at any moment: move a folder aside, put a symlink there."""
    os.rename(str(folder), str(folder) + ".moved")
    os.symlink(str(target), str(folder))


def swap_before_apply(monkeypatch, folder, target):
    real_apply = cms.apply

    def apply(*args, **kwargs):
        swap_for_symlink(folder, target)
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(cms, "apply", apply)


@pytest.mark.parametrize("which", ["data/media/tv", "data/media/personal"])
def test_chmod_never_follows_a_swapped_in_symlink(tmp_path, run, monkeypatch, secret, which):
    base = tmp_path / "base"
    base.mkdir()
    run("--path", str(base), "-q")
    before = snapshot(secret)
    swap_before_apply(monkeypatch, base / which, secret)
    code, out, err = run("--path", str(base), "--mode", "2770")
    assert mode_of(secret) == 0o700 and snapshot(secret) == before
    if which.endswith("tv"):  # a leaf, opened now with O_NOFOLLOW: refused
        assert code == 1
        assert "error: %s: replaced during the run; run again" % (base / which) in err
    else:  # opened while planning: the change lands on the folder that was looked at
        assert code == 0
        assert mode_of(str(base / which) + ".moved") == 0o2770


@needs_root
def test_mkdir_never_goes_through_a_swapped_parent(tmp_path, run, monkeypatch, secret):
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    os.chown(str(base / "data"), 4242, 4242)  # the tree belongs to the containers' user
    real_mkdir = os.mkdir
    made = []

    def mkdir(name, mode=0o777, *, dir_fd=None):
        real_mkdir(name, mode, dir_fd=dir_fd)
        made.append(name)
        if made == ["torrents"]:  # just made: swap it before its sub-folders come
            swap_for_symlink(base / "data" / "torrents", secret)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, _, err = run("--path", str(base), "--owner", "4242:4242")
    assert code == 1  # it noticed, and stopped: nothing went through the symlink
    assert "%s: something other than a folder appeared there" % (base / "data/torrents") in err
    assert sorted(os.listdir(str(secret))) == ["keep"]
    assert os.stat(str(secret)).st_uid == os.getuid() and mode_of(secret) == 0o700


@needs_root
def test_eexist_on_a_symlink_is_not_made_by_another_run(tmp_path, run, monkeypatch, secret):
    base = tmp_path / "base"
    base.mkdir()
    real_mkdir = os.mkdir

    def planted(name, mode=0o777, *, dir_fd=None):
        if name == "media":
            os.symlink(str(secret), name, dir_fd=dir_fd)
            raise FileExistsError(errno.EEXIST, "File exists", name)
        return real_mkdir(name, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", planted)
    code, _, err = run("--path", str(base), "--owner", "4242:4242")
    assert code == 1
    assert "something other than a folder appeared there during the run" in err
    assert sorted(os.listdir(str(secret))) == ["keep"] and os.stat(str(secret)).st_uid == 0


@needs_root
def test_a_real_race_under_strace(tmp_path, secret):
    """strace holds each mkdirat for 0.3 s while this test swaps torrents/ for a symlink."""
    import time

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    proc = subprocess.Popen(
        [strace, "-f", "-qq", "-o", os.devnull,
         "-e", "trace=mkdirat", "-e", "inject=mkdirat:delay_enter=300000",
         sys.executable, str(SCRIPT), "--path", str(base), "--owner", "4242:4242", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    torrents = base / "data" / "torrents"
    deadline = time.monotonic() + 30
    while not torrents.is_dir() and proc.poll() is None and time.monotonic() < deadline:
        pass  # the run is held inside its next mkdirat: swap now
    if torrents.is_dir():
        swap_for_symlink(torrents, secret)
    out, err = proc.communicate()
    if b"ptrace" in err.lower():
        pytest.skip("ptrace is not allowed here")
    assert sorted(os.listdir(str(secret))) == ["keep"]
    assert os.stat(str(secret)).st_uid == 0 and mode_of(secret) == 0o700


@needs_root
def test_a_symlink_of_another_user_is_not_followed(tmp_path, run, secret):
    base = tmp_path / "base"
    (base / "data" / "media").mkdir(parents=True)
    link = base / "data" / "media" / "anime"
    os.symlink(str(secret), str(link))
    os.lchown(str(link), 4242, 4242)
    code, out, err = run("--path", str(base), "--owner", "4242:4242")
    assert code == 1
    assert err.splitlines()[0] == (
        "error: %s: a symlink owned by uid 4242 (neither root nor you), not followed; if you "
        "made it, make it yours: chown -h is in the way" % link
    )
    assert sorted(os.listdir(str(secret))) == ["keep"]
    code, out, _ = run("--path", str(base), "--check", "--json")
    assert ("conflict", str(link)) in [(f["kind"], f["path"]) for f in json.loads(out)["findings"]]
    os.lchown(str(link), 0, 0)  # made by root on purpose: followed
    code, out, err = run("--path", str(base), "-q")
    assert code == 0 and (secret / "tv").is_dir()


# -- 3. bad input is a usage error, before anything is made ---------------------------------


def test_empty_path_is_a_usage_error(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run("--path", "")
    assert code == 2
    assert "argument --path: is empty (an unset variable?)" in err
    assert list(tmp_path.iterdir()) == []


def test_path_ending_in_data_is_refused(tmp_path, run):
    run("--path", str(tmp_path), "-q")
    data = tmp_path / "data"
    before = snapshot(tmp_path)
    code, _, err = run("--path", str(data))
    assert code == 2
    assert err == (
        "error: %s already holds torrents/: --path takes the folder ABOVE data/, i.e. "
        "--path %s\n" % (data, tmp_path)
    )
    assert snapshot(tmp_path) == before
    # An empty data/ is a fine base, with a word: a share named data, given as --path,
    # gets the tree in data/data.
    share = tmp_path / "other" / "data"
    share.mkdir(parents=True)
    code, _, err = run("--path", str(share), "-q")
    assert code == 0
    assert err == (
        "warning: --path %s is itself named data: the tree goes into %s/data; if this "
        "folder is meant to be the tree's data/, give --path %s\n" % (share, share, share.parent)
    )
    assert (share / "data" / "media" / "tv").is_dir()
    assert run("--path", str(share), "-q")[1:] == ("", "")  # said once, not on every run


@pytest.mark.parametrize("limit, name, ok", [(143, "x" * 143, True), (143, "x" * 144, False)])
def test_category_longer_than_the_filesystem_allows(tmp_path, run, monkeypatch, limit, name, ok):
    monkeypatch.setattr(os, "fpathconf", lambda fd, key: limit)  # eCryptfs: 143 bytes
    for extra in (["--dry-run"], []):
        code, _, err = run("--path", str(tmp_path), "--add-category", name, *extra)
        if ok:
            assert code == 0
        else:
            assert code == 2
            assert "144 bytes, but this filesystem allows 143 in a name" in err
            assert list(tmp_path.iterdir()) == []


def test_category_longer_than_ext4_allows(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--add-category", "y" * 256)
    assert code == 2 and "allows" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode, text", [("0775", 0o775), ("2775", 0o2775), ("770", 0o770)])
def test_good_modes(tmp_path, run, mode, text):
    assert run("--path", str(tmp_path), "--mode", mode, "-q")[0] == 0
    assert mode_of(tmp_path / "data" / "media") == text


# The table of options by mode: which cells are usage errors (exit 2).
OPTIONS = {
    "--owner": ["--owner", "%d:%d" % (os.getuid(), os.getgid())],
    "--mode": ["--mode", "775"],
    "--add-category": ["--add-category", "movies-4k"],
    "--dry-run": ["--dry-run"],
    "--json": ["--json"],
    "--docker": ["--docker", "inspect.json"],
    "-q": ["-q"],
}
ALLOWED = {
    "create": {"--owner", "--mode", "--add-category", "--dry-run", "-q"},
    "check": {"--owner", "--add-category", "--json", "--docker", "-q"},
    "compose": {"-q"},
    "relink": {"--dry-run", "--json", "--docker", "-q"},  # --docker: the history's copies
}
MODE_FLAGS = {"create": [], "check": ["--check"], "compose": ["--compose"], "relink": ["--relink"]}


@pytest.mark.parametrize("mode", sorted(MODE_FLAGS))
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_the_option_table_cell_by_cell(tmp_path, run, monkeypatch, mode, option):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inspect.json").write_text("[]")
    code, out, err = run("--path", str(tmp_path), *(MODE_FLAGS[mode] + OPTIONS[option]))
    if option in ALLOWED[mode]:
        assert "does not go with" not in err and code != 2, err
    else:
        assert code == 2
        name = {"create": "creating the tree"}.get(mode, "--" + mode)
        assert "error: %s does not go with %s" % (option, name) in err
        assert sorted(os.listdir(str(tmp_path))) == ["inspect.json"]


@pytest.mark.parametrize("pair", [("--check", "--compose"), ("--compose", "--relink"),
                                  ("--check", "--relink")])  # fmt: skip
def test_modes_exclude_each_other(tmp_path, run, pair):
    code, out, err = run("--path", str(tmp_path), *pair)
    assert code == 2 and out == ""
    assert "not allowed with argument" in err


# -- 4. its own output never crashes it --------------------------------------------------


def run_script(tmp_path, *args, shell_redirect="", stdout=subprocess.PIPE, env=None):
    if not args or args[0] not in ("--check", "--compose"):  # no root warning
        args = ("--owner", "%d:%d" % (os.getuid(), os.getgid())) + args
    command = [sys.executable, str(SCRIPT), "--path", str(tmp_path)] + list(args)
    if shell_redirect:
        command = ["sh", "-c", 'exec "$@" ' + shell_redirect, "sh"] + command
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=env, check=False)


def test_closed_stdout(tmp_path):
    proc = run_script(tmp_path, shell_redirect=">&-")
    assert (proc.returncode, proc.stderr) == (1, b"")
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_closed_stdout_and_stdin_are_not_reused_for_folders(tmp_path):
    proc = run_script(tmp_path, shell_redirect="<&- >&-")
    assert (proc.returncode, proc.stderr) == (1, b"")
    assert dirs_on_disk(tmp_path) == expected_dirs()
    proc = run_script(tmp_path, "-q", shell_redirect="<&- >&-")
    assert (proc.returncode, proc.stderr) == (0, b"")  # nothing to write: nothing failed


@needs_root
def test_closed_stderr_as_root_without_owner(tmp_path):
    command = [sys.executable, str(SCRIPT), "--path", str(tmp_path)]
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh"] + command, stdout=subprocess.PIPE, check=False
    )
    assert proc.returncode == 1  # the warning could not be written
    assert b"done: 52 created" in proc.stdout
    assert dirs_on_disk(tmp_path) == expected_dirs()


@pytest.mark.parametrize(
    "extra", [[], ["--check"], ["--compose"], ["--check", "--json"], ["--version"]]
)
def test_disk_full_on_stdout(tmp_path, extra):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    run_script(tmp_path, "-q")
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    with open("/dev/full", "w") as full:
        proc = run_script(tmp_path, *extra, stdout=full, env=env)
    assert (proc.returncode, proc.stderr) == (1, b"")


def test_reader_gone(tmp_path):
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--path", str(tmp_path), "--owner", str(os.getuid())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # like `| true`: gone before anything is written
    assert proc.wait() == 1
    assert proc.stderr.read() == b""
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_eperm_on_mkdir_is_not_about_owners(tmp_path, run, monkeypatch):
    fail_on_call(monkeypatch, "mkdir", 1, errno.EPERM)
    code, _, err = run("--path", str(tmp_path))
    assert code == 1
    first = err.splitlines()[0]
    assert first == (
        "error: %s: Operation not permitted (operation not permitted: the folder may be "
        "immutable (lsattr) or on a filesystem that refuses it)" % (tmp_path / "data")
    )
    hint = first.rsplit(" (", 2)[-2:]
    assert "owner" not in str(hint) and "root" not in str(hint)


def test_the_error_path_counts_exactly(tmp_path, run, monkeypatch):
    run("--path", str(tmp_path), "-q")
    for name in ("media", "media/tv", "torrents"):
        os.chmod(str(tmp_path / "data" / name), 0o700)
    fail_on_call(monkeypatch, "fchmod", 2, errno.EIO)
    code, _, err = run("--path", str(tmp_path), "--mode", "2775")
    assert code == 1
    assert err.splitlines()[1] == "before that: 0 folder(s) created, 1 changed; run again to finish"
    assert mode_of(tmp_path / "data") == 0o2775  # the first change was made and counted
    assert mode_of(tmp_path / "data" / "torrents") == 0o700  # the second failed


@needs_root
def test_a_chown_done_before_a_failed_chmod_is_counted(tmp_path, run, monkeypatch):
    run("--path", str(tmp_path), "-q")
    os.chmod(str(tmp_path / "data"), 0o700)
    fail_on_call(monkeypatch, "fchmod", 1, errno.EIO)
    code, _, err = run("--path", str(tmp_path), "--owner", "4242:4242", "--mode", "775")
    assert code == 1
    assert err.splitlines()[1] == "before that: 0 folder(s) created, 1 changed; run again to finish"
    assert os.stat(str(tmp_path / "data")).st_uid == 4242


def test_an_interrupt_between_mkdir_and_chown_counts_the_folder(tmp_path, run, monkeypatch):
    fail_on_call(monkeypatch, "fchown", 3, KeyboardInterrupt())
    code, _, err = run("--path", str(tmp_path), "--owner", "%d:%d" % (os.getuid(), os.getgid()))
    assert code == 130
    assert err == "interrupted: 3 folder(s) created, 0 changed; run again to finish\n"
    assert len(dirs_on_disk(tmp_path)) == 3


def test_sigterm_during_apply_stops_between_two_folders(tmp_path, run, monkeypatch):
    import signal

    real_mkdir = os.mkdir
    made = []

    def mkdir(name, mode=0o777, *, dir_fd=None):
        real_mkdir(name, mode, dir_fd=dir_fd)
        made.append(name)
        if len(made) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives right after the 5th mkdir

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, _, err = run("--path", str(tmp_path))
    assert code == 143
    assert err == "interrupted: 5 folder(s) created, 0 changed; run again to finish\n"
    assert len(dirs_on_disk(tmp_path)) == 5


def oldest_python():
    found = pyenv_pythons()
    if not found:
        pytest.skip("pyenv has no CPython 3 here")
    return found[min(found, key=lambda v: tuple(int(p) for p in v.split(".")[:2]))]


@pytest.mark.parametrize("args", [["--compose"], ["--check", "--json"], []])
def test_utf8_paths_stay_utf8_under_c_locale_on_the_oldest_python(tmp_path, args):
    python = oldest_python()
    env = dict(os.environ, LANG="C", LC_ALL="C")
    env.pop("PYTHONIOENCODING", None)
    base = os.fsencode(str(tmp_path)) + b"/M\xc3\xbcnchen"
    os.mkdir(base)
    subprocess.run([sys.executable, str(SCRIPT), "--path", base, "-q"], check=True)
    proc = subprocess.run(
        [python, "-", "--path", base] + args,
        input=SCRIPT.read_bytes(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"\\udc" not in proc.stdout.lower()
    if "--json" in args:
        assert json.loads(proc.stdout.decode("utf-8"))["data_root"] == os.fsdecode(base + b"/data")
    else:
        assert b"M\xc3\xbcnchen/data" in proc.stdout


def test_printable():
    assert cms.printable("caf\u00e9") == "caf\u00e9"
    assert cms.printable(os.fsdecode(b"caf\xc3\xa9")) == "caf\u00e9"
    assert cms.printable(os.fsdecode(b"bad\xff")) == "bad\\xff"
    assert cms.printable("lone\ud800") == "lone\\ud800"
    assert cms.printable("a\nb\tc\x1b[2J\x7f\x9b\xa0") == "a\\x0ab\\x09c\\x1b[2J\\x7f\\x9b\xa0"


# -- 5. --compose produces what docker reads ------------------------------------------------


def test_compose_doubles_dollars(run):
    code, out, _ = run("--path", "/srv/$USERx", "--compose")
    assert code == 0
    assert '  - "/srv/$$USERx/data/torrents:/data/torrents"' in out


@pytest.mark.parametrize("base", ["/srv/$USERx", "/mnt/NAS_media$", "/srv/a b", "/srv/caf\u00e9"])
def test_compose_with_a_real_compose(tmp_path, run, base):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose (Debian's 1.29) is not installed")
    code, out, _ = run("--path", base, "--compose")
    blocks = out.split("\nvolumes:\n")[1:]
    lines = ["version: '3'", "services:"]
    for index, block in enumerate(blocks):
        volume = block.splitlines()[0]
        lines += ["  app%d:" % index, "    image: busybox", "    volumes:", "    " + volume]
    (tmp_path / "docker-compose.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ, LANG="C.UTF-8")
    env.pop("USERx", None)
    proc = subprocess.run(
        [compose, "-f", str(tmp_path / "docker-compose.yml"), "config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")
    assert "%s/data/torrents" % base in text or "%s/data/torrents" % base in text.replace("$$", "$")
    assert "/srv/data/torrents" not in text  # $USERx was not swallowed
