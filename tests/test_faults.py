"""One table of bad situations, each run through main.

For every row: the exit code, exactly one `error:` line naming what went wrong,
and every byte of what was there before unchanged (files, links, modes, owners;
folders may only have gained the tree's new folders).
"""

import errno
import os
import stat

import pytest

from conftest import fail_on_call, snapshot

BASE = "base"


def existing_content(base):
    """What the user had: everything but the mtimes of folders that may gain children."""
    kept = {}
    for path, (mode, uid, gid, ino, mtime, extra) in snapshot(base).items():
        kept[path] = (mode, uid, gid, ino, None if stat.S_ISDIR(mode) else mtime, extra)
    return kept


def user_files(base):
    """A user's things beside and inside the tree, some with non-UTF-8 names."""
    (base / "data" / "media" / "movies").mkdir(parents=True)
    (base / "data" / "media" / "movies" / "film.mkv").write_bytes(b"\x00film" * 100)
    (base / "appdata").mkdir()
    (base / "appdata" / "config.xml").write_text("<x/>")
    os.mkdir(os.fsencode(str(base)) + b"/\xff\xfe-old")
    with open(os.fsencode(str(base)) + b"/\xff\xfe-old/\xe9.txt", "wb") as handle:
        handle.write(b"latin-1 name")
    os.symlink("appdata/config.xml", str(base / "link-to-config"))
    os.chmod(str(base / "appdata"), 0o750)


def setup_missing_base(base):
    return base / "not-mounted", "no such folder; is the array / volume mounted?"


def setup_base_is_file(base):
    (base / "a-file").write_text("x")
    return base / "a-file", "not a folder"


def setup_file_in_the_way(base):
    (base / "data" / "usenet").write_text("mine")
    return base / "data" / "usenet", None


def setup_dangling_symlink(base):
    (base / "data" / "torrents").symlink_to(base / "gone")
    return base / "data" / "torrents", None


def setup_fifo(base):
    os.mkfifo(str(base / "data" / "media" / "tv"))
    return base / "data" / "media" / "tv", None


SITUATIONS = [
    # id, set-up, extra arguments, fault (os function, call number, errno), exit code,
    # what the error line says (None: "is in the way")
    ("missing-base", setup_missing_base, [], None, 1),
    ("base-is-a-file", setup_base_is_file, [], None, 1),
    ("file-in-the-way", setup_file_in_the_way, [], None, 1),
    ("dangling-symlink", setup_dangling_symlink, [], None, 1),
    ("fifo-in-the-way", setup_fifo, [], None, 1),
    ("unknown-owner", None, ["--owner", "no_such_user_here"], None, 2),
    ("unknown-group", None, ["--owner", "root:no_such_group_here"], None, 2),
    ("bad-mode", None, ["--mode", "8888"], None, 2),
    ("bad-category", None, ["--add-category", "../escape"], None, 2),
    # The first chown: --owner is asked to change existing tree folders, so a later
    # failure would rightly leave the earlier ones changed.
    ("eperm-on-chown", None, ["--owner", "1000:1000"], ("fchown", 1, errno.EPERM), 1),
    ("ctrl-c-mid-run", None, [], ("mkdir", 20, KeyboardInterrupt()), 130),
]
for _error in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO):
    # user_files() made 3 of the 52 folders, so 49 are created: the last is the 49th.
    for _where, _number in (("first", 1), ("middle", 25), ("last", 49)):
        SITUATIONS.append(
            (
                "%s-at-%s-folder" % (errno.errorcode[_error], _where),
                None,
                [],
                ("mkdir", _number, _error),
                1,
            )
        )


@pytest.mark.parametrize(
    "name, setup, extra, fault, code", SITUATIONS, ids=[row[0] for row in SITUATIONS]
)
def test_fault_matrix(tmp_path, run, monkeypatch, name, setup, extra, fault, code):
    base = tmp_path / BASE
    base.mkdir()
    user_files(base)
    path, said = base, None
    if setup is not None:
        path, said = setup(base)
    before = existing_content(base)
    calls = fail_on_call(monkeypatch, *fault) if fault else []
    got, out, err = run("--path", str(path if "base" in name else base), *extra)
    monkeypatch.undo()
    assert got == code
    after = existing_content(base)
    assert {path: after.get(path) for path in before} == before
    errors = [line for line in err.splitlines() if line.startswith(("error:", "interrupted:"))]
    if code == 2:  # argparse's usage error: usage lines, then one error line
        assert len([line for line in err.splitlines() if "error:" in line]) == 1
        assert extra[1].split(":")[-1] in err
        assert not (base / "data" / "torrents").exists()
        return
    if fault and isinstance(fault[2], BaseException):
        assert errors == ["interrupted: 19 folder(s) created, 0 changed; run again to finish"]
        return
    if fault and isinstance(calls[-1], str):  # a name, relative to its folder's fd
        assert errors[0].startswith("error: %s" % base) and "/%s: " % calls[-1] in errors[0]
    elif fault:  # a call on the folder's own fd
        assert errors[0].startswith("error: %s" % base)
    else:
        assert errors[0].startswith("error: %s: " % path)
    if said:
        assert said in errors[0]
    if fault:
        assert errors[0].endswith(")")  # a hint
        assert len(errors) == 1
        # Fixed, a re-run finishes the tree.
        assert run("--path", str(base), "-q")[0] == 0
        assert (base / "data" / "media" / "personal" / "remux" / "anime" / "tv").is_dir()
    elif setup is not None and said is None:  # conflicts: one line each, then the count
        assert len(errors) == 2
        assert errors[0].endswith(" is in the way")
        assert errors[1].startswith("error: 1 thing(s) in the way")
        assert not (base / "data" / "ddl").exists()
