"""The creator: the tree, idempotence, --dry-run, --owner, --mode, errors, output."""

import argparse
import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import threading

import pytest

from conftest import (
    SCRIPT,
    cms,
    dirs_on_disk,
    expected_dirs,
    fail_on_call,
    is_ours,
    needs_root,
    pyenv_pythons,
    snapshot,
)


def test_the_constant_is_the_issues_tree():
    folders = cms.list_folders(cms.TREE)
    assert len(folders) == 52
    assert {"/".join(f.parts) for f in folders} == expected_dirs()
    assert cms.SOURCES == ("torrents", "usenet", "ddl")


def test_fresh_run_creates_exactly_the_tree(tmp_path, run):
    code, out, err = run("--path", str(tmp_path))
    assert code == 0
    assert dirs_on_disk(tmp_path) == expected_dirs()
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]
    lines = out.splitlines()
    assert lines[0].startswith(str(tmp_path / "data") + "/")
    assert lines[0].endswith("created")
    assert len(lines) == 53
    assert lines[-1] == "done: 52 created, 0 changed, 0 already there in %s" % (tmp_path / "data")
    assert "\u2502   \u251c\u2500\u2500 incomplete/" in out


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o777])
def test_new_folders_are_0775_whatever_the_umask(tmp_path, run, umask):
    old = os.umask(umask)
    try:
        assert run("--path", str(tmp_path))[0] == 0
        assert os.umask(old) == umask  # restored after the run
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(os.stat(str(tmp_path / d)).st_mode) for d in expected_dirs()}
    assert modes == {0o775}


def test_rerun_changes_nothing(tmp_path, run):
    run("--path", str(tmp_path))
    (tmp_path / "data" / "media" / "movies" / "film.mkv").write_bytes(b"x" * 10)
    before = snapshot(tmp_path)
    code, out, _ = run("--path", str(tmp_path))
    assert code == 0
    assert snapshot(tmp_path) == before
    assert out.splitlines()[-1].startswith("done: 0 created, 0 changed, 52 already there")
    assert out.count("already there") == 53


def test_dry_run_touches_nothing(tmp_path, run):
    before = snapshot(tmp_path)
    code, out, _ = run(
        "--path", str(tmp_path), "--dry-run", "--owner", "4242:4343", "--mode", "2770"
    )
    assert code == 0
    assert snapshot(tmp_path) == before
    assert out.count("would create") == 52
    assert out.splitlines()[-1] == (
        "dry run: 52 to create, 0 to change, 0 already there in %s; nothing was changed"
        % (tmp_path / "data")
    )


def test_dry_run_shows_changes(tmp_path, run):
    run("--path", str(tmp_path))
    shutil.rmtree(str(tmp_path / "data" / "ddl"))
    before = snapshot(tmp_path)
    code, out, _ = run("--path", str(tmp_path), "-n", "--mode", "770")
    assert code == 0
    assert snapshot(tmp_path) == before
    assert "would change (mode 0775 -> 0770)" in out
    assert "dry run: 10 to create, 42 to change, 0 already there" in out


def test_missing_path_creates_nothing(tmp_path, run):
    target = tmp_path / "user"
    code, out, err = run("--path", str(target))
    assert code == 1
    assert out == ""
    assert (
        err
        == "error: %s: no such folder; is the array / volume mounted? Nothing was created.\n"
        % target
    )
    assert list(tmp_path.iterdir()) == []


def test_path_that_is_a_file(tmp_path, run):
    (tmp_path / "f").write_text("x")
    code, _, err = run("--path", str(tmp_path / "f"))
    assert code == 1
    assert err.startswith("error: %s: not a folder" % (tmp_path / "f"))


def test_path_stat_error_is_one_line(tmp_path, run, monkeypatch):
    fail_on_call(monkeypatch, "open", 1, errno.EACCES)
    code, _, err = run("--path", str(tmp_path))
    assert code == 1
    assert err.startswith("error: %s: Permission denied (no permission" % tmp_path)
    assert len(err.splitlines()) == 1


def test_default_path_is_the_current_folder_and_tilde_expands(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    assert (tmp_path / "data" / "media").is_dir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert run("--path", "~")[0] == 0
    assert (home / "data" / "usenet" / "complete").is_dir()
    (tmp_path / "rel").mkdir()
    code, out, _ = run("--path", "rel", "-n")
    assert str(tmp_path / "rel" / "data") in out.splitlines()[0]


@pytest.mark.parametrize("kind", ["file", "dangling", "fifo", "symlink-to-file"])
def test_something_in_the_way_is_a_conflict(tmp_path, run, kind):
    media = tmp_path / "data" / "media"
    media.mkdir(parents=True)
    blocker = media / "movies"
    if kind == "file":
        blocker.write_text("mine")
        what = "a file"
    elif kind == "dangling":
        blocker.symlink_to(tmp_path / "nowhere")
        what = "a dangling symlink -> %s" % (tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(str(blocker))
        what = "a fifo"
    else:
        (tmp_path / "f").write_text("x")
        blocker.symlink_to(tmp_path / "f")
        what = "a symlink to a file -> %s" % (tmp_path / "f")
    (tmp_path / "data" / "usenet").write_text("also mine")
    before = snapshot(tmp_path)
    code, out, err = run("--path", str(tmp_path))
    assert code == 1
    assert snapshot(tmp_path) == before
    assert err.splitlines() == [
        "error: %s: a file is in the way" % (tmp_path / "data" / "usenet"),
        "error: %s: %s is in the way" % (blocker, what),
        "error: 2 thing(s) in the way of the tree; move them away and run again. "
        "Nothing was created.",
    ]
    assert "movies/" in out and "in the way: " + what in out


@needs_root
def test_symlink_to_a_folder_counts_as_present(tmp_path, run):
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    (base / "data" / "media").symlink_to(elsewhere)
    code, out, _ = run("--path", str(base), "--owner", "4242:4343", "--mode", "2770")
    assert code == 0
    assert "media/  " in out and "already there (symlink -> %s)" % elsewhere in out
    # Its sub-folders are made through it; the link and its target keep their owner.
    assert (elsewhere / "personal" / "remux" / "anime" / "tv").is_dir()
    assert os.lstat(str(base / "data" / "media")).st_uid == 0
    assert os.stat(str(elsewhere)).st_uid == 0
    assert os.stat(str(elsewhere / "movies")).st_uid == 4242


@pytest.mark.parametrize(
    "error", [errno.EACCES, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO]
)
def test_os_error_mid_run_stops_and_says_how_far_it_got(tmp_path, run, monkeypatch, error):
    fail_on_call(monkeypatch, "mkdir", 20, error)
    code, out, err = run("--path", str(tmp_path))
    assert code == 1
    assert out == ""
    first, second = err.splitlines()
    twentieth = os.path.join(str(tmp_path), *cms.list_folders(cms.TREE)[19].parts)
    assert first.startswith("error: %s: %s" % (twentieth, os.strerror(error)))
    assert first.endswith(")")  # with a hint
    assert second == "before that: 19 folder(s) created, 0 changed; run again to finish"
    assert len(dirs_on_disk(tmp_path)) == 19
    monkeypatch.undo()
    code, out, _ = run("--path", str(tmp_path))
    assert code == 0
    assert dirs_on_disk(tmp_path) == expected_dirs()
    assert "done: 33 created, 0 changed, 19 already there" in out


def test_look_error_while_planning(tmp_path, run, monkeypatch):
    (tmp_path / "data").mkdir()
    fail_on_call(monkeypatch, "open", 3, errno.EIO)  # --path, data/, then torrents/
    code, _, err = run("--path", str(tmp_path))
    assert code == 1
    assert err.startswith(
        "error: %s: Input/output error (the disk" % (tmp_path / "data" / "torrents")
    )
    assert dirs_on_disk(tmp_path) == {"data"}


def test_ctrl_c_mid_run(tmp_path, run, monkeypatch):
    fail_on_call(monkeypatch, "mkdir", 7, KeyboardInterrupt())
    code, out, err = run("--path", str(tmp_path))
    assert code == 130
    assert err == "interrupted: 6 folder(s) created, 0 changed; run again to finish\n"
    assert "Traceback" not in out + err


def test_a_peer_run_making_a_folder_first_is_fine(tmp_path, run, monkeypatch):
    real = os.mkdir

    def peer_first(path, mode=0o777, *, dir_fd=None):
        real(path, mode, dir_fd=dir_fd)  # the other run wins the race
        raise FileExistsError(errno.EEXIST, "File exists", path)

    monkeypatch.setattr(os, "mkdir", peer_first)
    code, out, _ = run("--path", str(tmp_path))
    assert code == 0
    assert dirs_on_disk(tmp_path) == expected_dirs()
    assert out.count("already there (made by another run)") == 52


@pytest.mark.parametrize("what", ["file", "symlink"])
def test_something_else_appearing_during_the_run_is_an_error(tmp_path, run, monkeypatch, what):
    outside = tmp_path / "outside"
    outside.mkdir()

    def other_first(path, mode=0o777, *, dir_fd=None):
        if what == "file":
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, dir_fd=dir_fd))
        else:
            os.symlink(str(outside), path, dir_fd=dir_fd)
        raise FileExistsError(errno.EEXIST, "File exists", path)

    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.setattr(os, "mkdir", other_first)
    code, out, err = run("--path", str(base), "--owner", "4242:4242")
    assert code == 1
    assert err.splitlines() == [
        "error: %s: something other than a folder appeared there during the run" % (base / "data"),
        "before that: 0 folder(s) created, 0 changed; run again to finish",
    ]
    assert list(outside.iterdir()) == [] and os.stat(str(outside)).st_uid == os.getuid()


def test_four_concurrent_runs_all_succeed(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--path", str(tmp_path), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [proc.communicate() + (proc.returncode,) for proc in procs]
    assert [code for _, _, code in results] == [0, 0, 0, 0]
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_four_concurrent_runs_in_threads(tmp_path):
    # Threads share the umask, so all four ask for the same mode; each must finish.
    codes = []
    threads = [
        threading.Thread(target=lambda: codes.append(cms.main(["--path", str(tmp_path), "-q"])))
        for _ in range(4)
    ]
    umask = os.umask(0o022)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:  # each run sets the shared umask to 0 and back: put ours back ourselves
        os.umask(umask)
    assert codes == [0, 0, 0, 0]
    assert dirs_on_disk(tmp_path) == expected_dirs()


# -- --mode ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["2775", "0750", "1777", "700"])
def test_mode_applies_to_every_new_folder(tmp_path, run, mode):
    assert run("--path", str(tmp_path), "--mode", mode)[0] == 0
    modes = {stat.S_IMODE(os.stat(str(tmp_path / d)).st_mode) for d in expected_dirs()}
    assert modes == {int(mode, 8)}


def test_mode_changes_existing_folders_only_where_they_differ(tmp_path, run):
    run("--path", str(tmp_path))
    os.chmod(str(tmp_path / "data" / "media"), 0o2775)
    os.chmod(str(tmp_path / "data" / "media" / "tv"), 0o700)
    code, out, _ = run("--path", str(tmp_path), "--mode", "2775")
    assert code == 0
    assert "done: 0 created, 51 changed, 1 already there" in out
    assert "tv/" in out and "changed (mode 0700 -> 2775)" in out
    modes = {stat.S_IMODE(os.stat(str(tmp_path / d)).st_mode) for d in expected_dirs()}
    assert modes == {0o2775}
    code, out, _ = run("--path", str(tmp_path), "--mode", "2775")
    assert "done: 0 created, 0 changed, 52 already there" in out


@pytest.mark.parametrize(
    "bad",
    ["abc", "8", "99999", "-1", "0o775x", "", "0", "000", "644", "-0", "+775", "7_7_5",
     " 775 ", "0o775", "\u0667\u0667\u0665", "17775", "75"],
)  # fmt: skip
def test_bad_mode_is_a_usage_error(tmp_path, run, bad):
    code, out, err = run("--path", str(tmp_path), "--mode", bad)
    assert code == 2
    assert "argument --mode:" in err
    assert list(tmp_path.iterdir()) == []


def test_world_writable_mode_warns(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--mode", "777", "--owner", str(os.getuid()))
    assert code == 0
    assert err == "warning: --mode 0777 lets every user on the system write there\n"


def test_sticky_mode_warns(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--mode", "1775", "-q")
    assert code == 0
    assert err == (
        "warning: --mode 1775 sets the sticky bit: only a file's owner can move or delete it "
        "there, so an app running as another user can't move a download out or clean up; "
        "0775 leaves it out\n"
    )
    assert stat.S_IMODE(os.stat(str(tmp_path / "data" / "media")).st_mode) == 0o1775


# -- --owner -----------------------------------------------------------------------


def owners(base, dirs):
    return {(os.lstat(str(base / d)).st_uid, os.lstat(str(base / d)).st_gid) for d in dirs}


@needs_root
def test_owner_with_arbitrary_numeric_ids(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--owner", "4242:4343")
    assert code == 0
    assert err == ""  # no root warning with --owner
    assert owners(tmp_path, expected_dirs()) == {(4242, 4343)}


@needs_root
def test_owner_changes_existing_folders_and_nothing_else(tmp_path, run):
    run("--path", str(tmp_path))
    movie = tmp_path / "data" / "media" / "movies" / "film.mkv"
    movie.write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chown(str(tmp_path / "data" / "ddl"), 99, 100)
    code, out, _ = run("--path", str(tmp_path), "--owner", "99:100")
    assert code == 0
    assert owners(tmp_path, expected_dirs()) == {(99, 100)}
    assert (os.stat(str(movie)).st_uid, os.stat(str(outside)).st_uid) == (0, 0)
    assert os.stat(str(tmp_path)).st_uid == 0
    assert "done: 0 created, 51 changed, 1 already there" in out
    assert "changed (owner 0:0 -> 99:100)" in out


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0:0", (0, 0)),
        ("root", (0, 0)),
        ("root:root", (0, 0)),
        ("root:", (0, 0)),
        (":5000", (0, 5000)),
        ("5000", (5000, 0)),
        ("nobody:", None),
    ],
)
@needs_root
def test_owner_forms(tmp_path, run, spec, expected):
    import pwd

    if expected is None:
        entry = pwd.getpwnam("nobody")
        expected = (entry.pw_uid, entry.pw_gid)
    assert run("--path", str(tmp_path), "--owner", spec)[0] == 0
    assert owners(tmp_path, expected_dirs()) == {expected}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_user_xyz", "unknown user 'no_such_user_xyz'"),
        ("root:no_such_group_xyz", "unknown group 'no_such_group_xyz'"),
        (":", "give USER, USER:GROUP or :GROUP"),
        ("4242:", "uid 4242 has no login group; name one"),
        ("4294967296", "uid 4294967296 is out of range (0 to 4294967294)"),
        ("4294967295", "uid 4294967295 is out of range (0 to 4294967294)"),
        ("1000:4294967295", "gid 4294967295 is out of range (0 to 4294967294)"),
        ("\u0663", "unknown user '\u0663'"),
        ("1000:\u0663", "unknown group '\u0663'"),
        ("1\u0663", "uid '1\u0663' is not a number"),
    ],
)
def test_bad_owner_is_a_usage_error(tmp_path, run, spec, message):
    code, _, err = run("--path", str(tmp_path), "--owner", spec)
    assert code == 2
    assert "argument --owner: " + message in err
    assert list(tmp_path.iterdir()) == []


def test_owner_without_posix_ids(tmp_path, run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pwd", None)  # import pwd now raises ImportError
    code, _, err = run("--path", str(tmp_path), "--owner", "1000")
    assert code == 2
    assert "argument --owner: needs POSIX user ids, which this system lacks" in err
    monkeypatch.undo()
    assert run("--path", str(tmp_path), "-q")[0] == 0


def test_chown_refused(tmp_path, run, monkeypatch):
    fail_on_call(monkeypatch, "fchown", 1, errno.EPERM)
    code, _, err = run("--path", str(tmp_path), "--owner", "1000:1000")
    assert code == 1
    assert err.splitlines() == [
        "error: %s: Operation not permitted (changing the owner needs root: run it with sudo)"
        % (tmp_path / "data"),
        "before that: 1 folder(s) created, 0 changed; run again to finish",
    ]


def test_root_without_owner_warns_only_when_creating(tmp_path, run, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, _, err = run("--path", str(tmp_path), "-q")
    assert code == 0
    assert err.startswith("warning: running as root without --owner")
    assert "--owner 1000:1000 (Unraid: --owner nobody:users)" in err
    assert run("--path", str(tmp_path), "-q")[2] == ""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run("--path", str(tmp_path / "data" / "media"), "-q")[2] == ""


@pytest.mark.parametrize("fstype", ["tmpfs", "rootfs"])
def test_creating_in_ram_warns(tmp_path, run, monkeypatch, fstype):
    # Unraid runs from RAM: with the array stopped, /mnt/user is a folder of rootfs.
    table = tmp_path / "mountinfo"
    table.write_bytes(
        b"1 1 0:2 / / rw - %s rootfs rw\n22 1 0:50 /x /elsewhere rw - ext4 /dev/sdb1 rw\n"
        % fstype.encode()
    )
    monkeypatch.setattr(cms, "MOUNTINFO", str(table))
    base = tmp_path / "user"
    base.mkdir()
    code, _, err = run("--path", str(base), "-q")
    assert code == 0 and dirs_on_disk(base) == expected_dirs()
    assert err == (
        "warning: %s is on %s, in memory: the tree will be gone at the next reboot "
        "(Unraid: is the array started?)\n" % (base, fstype)
    )
    assert run("--path", str(base), "-q")[2] == ""  # said when creating, not every run
    table.write_bytes(b"1 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    (tmp_path / "disk").mkdir()
    assert run("--path", str(tmp_path / "disk"), "-q") == (0, "", "")


# -- --add-category ---------------------------------------------------------------


def test_add_category(tmp_path, run):
    code, out, _ = run(
        "--path",
        str(tmp_path),
        "--add-category",
        "movies-4k",
        "--add-category",
        "tv-4k",
        "--add-category",
        "movies",
    )
    assert code == 0
    assert dirs_on_disk(tmp_path) == expected_dirs(["movies-4k", "tv-4k"])
    assert "done: 60 created" in out


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "is not a plain folder name"),
        (".", "is not a plain folder name"),
        ("..", "is not a plain folder name"),
        ("a/b", "is not a plain folder name"),
        ("/abs", "is not a plain folder name"),
        ("nul\0l", "holds a control character"),
        ("new\nline", "holds a control character"),
        ("tab\t", "holds a control character"),
        ("   ", "starts or ends with white space"),
        (" tv", "starts or ends with white space"),
        ("tv ", "starts or ends with white space"),
        ("movies:4k", "holds a ':'"),
        # complete/personal/ would lead nowhere: media/personal/ holds rip/ and remux/
        ("personal", "'personal' is media/personal/, a folder of folders (rip, remux)"),
    ],
)
def test_bad_category_is_a_usage_error(tmp_path, run, bad, why):
    code, _, err = run("--path", str(tmp_path), "--add-category", bad)
    assert code == 2
    assert why in err
    assert list(tmp_path.iterdir()) == []


# -- output ------------------------------------------------------------------------


def test_quiet_prints_nothing(tmp_path, run):
    assert run("--path", str(tmp_path), "-q") == (0, "", "")


def test_version(run):
    """The version, and the file's own sha256: the NAS end checks its copy without
    sha256sum (the README's download steps compare it)."""
    import hashlib

    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    assert run("--version") == (
        0,
        "create_media_structure.py %s\nsha256 %s  create_media_structure.py\n"
        % (cms.__version__, digest),
        "",
    )
    # Piped, there is no file to hash: the version alone.
    proc = subprocess.run([sys.executable, "-", "--version"], input=SCRIPT.read_bytes(),
                          stdout=subprocess.PIPE, check=True)  # fmt: skip
    assert proc.stdout == b"create_media_structure.py %s\n" % cms.__version__.encode()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cms.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--owner nobody:users" in out and "exit codes:" in out


@pytest.mark.parametrize("columns", ["50", "120", "", "junk"])
def test_help_is_as_wide_as_argparse_makes_it(capsys, monkeypatch, columns):
    # Our formatter sizes help as argparse does ($COLUMNS, else the terminal, else 80)
    # without importing shutil.
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit):
        cms.main(["--help"])
    ours = capsys.readouterr().out
    theirs = cms.build_parser()
    theirs.formatter_class = argparse.RawDescriptionHelpFormatter
    assert ours == theirs.format_help()
    if columns == "50":  # the options are wrapped to it
        options = ours.split("options:" if "options:" in ours else "optional arguments:")[1]
        assert max(len(line) for line in options.split("examples:")[0].splitlines()) <= 48


def test_help_is_as_wide_as_the_terminal(monkeypatch):
    import fcntl
    import struct
    import termios

    ours, theirs = os.openpty()
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 70, 0, 0))
    monkeypatch.delenv("COLUMNS", raising=False)
    with open(theirs, "w") as terminal, open(ours, "rb"):
        monkeypatch.setattr(sys, "__stdout__", terminal)
        assert cms.terminal_columns() == 70
        monkeypatch.setattr(sys, "__stdout__", None)  # as under pythonw
        assert cms.terminal_columns() == 80


def test_a_run_without_help_imports_no_shutil(tmp_path):
    # shutil (and the bz2 and lzma it brings) costs every run ~5 ms; argparse imports
    # it only to size help, unless given a width. -S: no site hook loads it first.
    def modules_after(code):
        command = [sys.executable, "-S", "-c", code + "\nprint(sorted(BIG & set(sys.modules)))"]
        env = dict(os.environ, PYTHONPATH="")
        result = subprocess.run(command, stdout=subprocess.PIPE, env=env, check=True)
        return result.stdout.decode().strip()

    prelude = "import sys; BIG = {'shutil', 'bz2', 'lzma'}"
    if modules_after(prelude + "; import argparse") != "[]":
        pytest.skip("this Python's argparse imports shutil itself (3.8)")
    run = "; sys.argv = ['cms', '--path', %r, '-q']; import runpy\n" % str(tmp_path)
    run += "try: runpy.run_path(%r, run_name='__main__')\nexcept SystemExit: pass\n" % str(SCRIPT)
    assert modules_after(prelude + run) == "[]"
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_ascii_fallback_when_stdout_cannot_draw(tmp_path, monkeypatch):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    weird = tmp_path / "caf\u00e9"
    weird.mkdir()
    assert cms.main(["--path", str(weird)]) == 0
    stream.flush()
    text = raw.getvalue().decode("utf-8")
    assert "|   |-- incomplete/" in text and "`-- personal/" in text
    assert "caf\u00e9/data/" in text.splitlines()[0]  # a UTF-8 name stays itself


def test_broken_pipe_is_quiet(tmp_path):
    # The reader is gone before the first write (as `| head -0`), so every write fails
    # whatever the timing: a reader that closes after 10 bytes loses the race to a
    # report that fits in the pipe's buffer.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--path", str(tmp_path), "--owner", "%d" % os.getuid()],
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    err = proc.stderr.read()
    assert proc.wait() == 1  # the work is done; only the output failed
    assert err == b""  # no traceback, no "Exception ignored"
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_tree_text_matches_the_issue():
    lines = cms.tree_text().splitlines()
    assert lines[:5] == [
        "data/",
        "|-- torrents/",
        "|   |-- incomplete/",
        "|   `-- complete/",
        "|       |-- books/",
    ]
    assert lines[-3:] == [
        "            `-- anime/",
        "                |-- movies/",
        "                `-- tv/",
    ]


METADATA_CALLS = (
    "open", "stat", "lstat", "fstat", "mkdir", "chmod", "chown", "fchmod", "fchown",
    "listdir", "scandir", "access", "readlink", "utime",
)  # fmt: skip


def count_tree_calls(monkeypatch, tmp_path):
    """Every call on a path below tmp_path or on a descriptor (start-up left out)."""
    calls = []

    def counting(name, real):
        def call(*args, **kwargs):
            if is_ours(args, kwargs, str(tmp_path)):
                calls.append((name, args[0] if args else None))
            return real(*args, **kwargs)

        return call

    for name in METADATA_CALLS:
        monkeypatch.setattr(os, name, counting(name, getattr(os, name)))
    return calls


def test_metadata_calls_per_folder(tmp_path, monkeypatch):
    # The budget: 1.6 calls a folder fresh, 1.1 on a re-run (benchmark.py counts with strace).
    calls = count_tree_calls(monkeypatch, tmp_path)
    assert cms.main(["--path", str(tmp_path), "-q"]) == 0
    fresh = len(calls)
    del calls[:]
    assert cms.main(["--path", str(tmp_path), "-q"]) == 0
    # fresh: open --path, open data/ (missing), 52 mkdirat, 17 opens of folders with children
    # re-run: open --path, 17 opens of folders with children, 35 fstatat of the leaves
    assert (fresh, len(calls)) == (1 + 1 + 52 + 17, 1 + 17 + 35)
    assert fresh / 52 <= 1.6 and len(calls) / 52 <= 1.1


# -- the real entry point ------------------------------------------------------------


ROOT_WARNING = (
    b"warning: running as root without --owner: the new folders will belong "
    b"to root, and containers running as PUID/PGID may not write there; add "
    b"--owner 1000:1000 (Unraid: --owner nobody:users)\n"
)


def oldest_python():
    found = pyenv_pythons()
    if not found:
        pytest.skip("pyenv has no CPython 3 here")
    return found[min(found, key=lambda v: tuple(int(p) for p in v.split(".")[:2]))]


def test_piped_under_c_locale_with_the_oldest_python(tmp_path):
    python = oldest_python()
    env = dict(os.environ, LANG="C", LC_ALL="C")
    env.pop("PYTHONIOENCODING", None)
    weird = os.fsencode(str(tmp_path)) + b"/\xff\xfe-not-utf8"
    os.mkdir(weird)
    open(weird + b"/\xe9t\xe9.mkv", "wb").close()  # a non-UTF-8 name lying around
    source = SCRIPT.read_bytes()
    for args in ([], [], ["--dry-run"]):
        proc = subprocess.run(
            [python, "-", "--path", weird] + args,
            input=source,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr in (b"", ROOT_WARNING)
    out = proc.stdout
    assert b"|-- torrents/" in out
    assert b"\\xff\\xfe-not-utf8/data/" in out.splitlines()[0]  # bytes that aren't UTF-8
    assert dirs_on_disk(tmp_path / os.fsdecode(b"\xff\xfe-not-utf8")) == expected_dirs()


def test_socket_device_and_symlink_loop_are_in_the_way(tmp_path, run):
    import socket

    media = tmp_path / "data" / "media"
    media.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(media / "tv"))
        (media / "books").symlink_to(media / "books")  # a loop
        try:
            os.mknod(str(media / "music"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            device = ["error: %s: a device is in the way" % (media / "music")]
        except PermissionError:  # not root: no device then
            device = []
        code, out, err = run("--path", str(tmp_path), "-q")
    finally:
        listener.close()
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].startswith(
        "error: %s: a broken symlink -> %s (" % (media / "books", media / "books")
    )
    assert lines[1:-1] == device + ["error: %s: a socket is in the way" % (media / "tv")]


def test_broken_pipe_in_process(tmp_path, monkeypatch):
    class ClosedPipe:
        encoding = "utf-8"

        def __init__(self, fd):
            self.fd = fd

        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def fileno(self):
            return self.fd

    with open(str(tmp_path / "stdout"), "w") as handle:
        monkeypatch.setattr(sys, "stdout", ClosedPipe(handle.fileno()))
        assert cms.main(["--path", str(tmp_path)]) == 1
    assert dirs_on_disk(tmp_path) == expected_dirs()
