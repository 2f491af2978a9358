#!/usr/bin/env python3
"""Create the data/ folder tree that makes hardlinks and atomic moves work.

Torrent, usenet and direct-download clients, the *arr managers (Sonarr,
Radarr, Lidarr, Readarr) and Plex, Jellyfin or Emby all see one tree,
<path>/data, on ONE filesystem.  An import is then a hardlink (torrents keep
seeding, no second copy) or an instant move (usenet), never a slow copy.

Usage:
    python3 create_media_structure.py [--path DIR] [options]
    cat create_media_structure.py | python3 - --path /mnt/user

Examples:
    python3 create_media_structure.py --path /mnt/user --owner nobody:users
    python3 create_media_structure.py --path /volume1 --owner 1026:100 --dry-run
    python3 create_media_structure.py --path /srv --add-category movies-4k
    python3 create_media_structure.py --path /mnt/user --check
    python3 create_media_structure.py --path /mnt/user --compose

It only ever creates folders that are missing, and with --owner / --mode
changes the owner or mode of the tree's own folders; it never deletes,
moves or touches anything else.  Exit codes: 0 done, 1 conflict or OS
failure (or a --check finding), 2 usage error, 130 interrupted.

Stdlib only; runs on CPython 3.6 to 3.13.  The source is pure ASCII so that
it can be piped through any locale.
"""

import argparse
import errno
import os
import stat
import sys
from typing import IO, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

__version__ = "1.0.0"

TreeDict = Dict[str, "TreeDict"]  # folder name -> its sub-folders

# The layout, and the single source of truth for everything printed or drawn.
# Every name is a folder; every value holds its sub-folders, in display order.
TREE: TreeDict = {
    "data": {
        "torrents": {
            "incomplete": {},
            "complete": {
                "books": {},
                "movies": {},
                "music": {},
                "tv": {},
                "anime": {"movies": {}, "tv": {}},
            },
        },
        "usenet": {
            "incomplete": {},
            "complete": {
                "books": {},
                "movies": {},
                "music": {},
                "tv": {},
                "anime": {"movies": {}, "tv": {}},
            },
        },
        "ddl": {
            "incomplete": {},
            "complete": {
                "books": {},
                "movies": {},
                "music": {},
                "tv": {},
                "anime": {"movies": {}, "tv": {}},
            },
        },
        "media": {
            "books": {},
            "movies": {},
            "music": {},
            "tv": {},
            "anime": {"movies": {}, "tv": {}},
            "personal": {
                "rip": {"movies": {}, "tv": {}, "anime": {"movies": {}, "tv": {}}},
                "remux": {"movies": {}, "tv": {}, "anime": {"movies": {}, "tv": {}}},
            },
        },
    },
}

DATA = "data"
MEDIA = "media"
COMPLETE = "complete"
# Every child of data/ other than media/ is a download source.
SOURCES = tuple(name for name in TREE[DATA] if name != MEDIA)

DEFAULT_MODE = 0o775  # group-writable: the guides' UMASK 002

# What a run does with each folder.
CREATE, KEEP, CHANGE, CONFLICT = "create", "keep", "change", "conflict"

# Hints printed under an OS error, by errno.
HINTS = {
    errno.EACCES: "no permission to write there: run as a user who may "
    "(e.g. with sudo) or fix the parent folder's permissions",
    errno.EPERM: "operation not permitted: changing the owner needs root",
    errno.ENOSPC: "the disk is full (or out of inodes): free some space",
    errno.EROFS: "the filesystem is mounted read-only: remount it read-write",
    errno.EIO: "the disk reported an I/O error: check it (dmesg, SMART)",
    errno.EDQUOT: "your disk quota is used up: free some space or raise it",
}  # type: Dict[int, str]


class Error(Exception):
    """A failure the user can cause or fix: printed as one line, no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Owner(NamedTuple):
    uid: int  # -1 leaves it unchanged, as with os.chown
    gid: int
    spec: str  # as the user typed it


class Folder(NamedTuple):
    parts: Tuple[str, ...]  # ("data", "media", "movies")
    lasts: Tuple[bool, ...]  # whether each level is its parent's last child


class Step(NamedTuple):
    folder: Folder
    path: str
    action: str  # CREATE, KEEP, CHANGE or CONFLICT
    detail: str  # what is in the way, where a symlink points, what changes
    st: Optional[os.stat_result]  # the directory's stat (through a symlink)
    symlink: bool


# -- pure functions: the tree and the options into a plan ---------------------


def with_categories(tree: TreeDict, extra: Sequence[str]) -> TreeDict:
    """Return a copy of tree with extra categories under each complete/ and media/."""
    data = dict(tree[DATA])
    for name in list(data):
        if name == MEDIA:
            data[name] = _append(data[name], extra)
        else:
            source = dict(data[name])
            source[COMPLETE] = _append(source[COMPLETE], extra)
            data[name] = source
    return {DATA: data}


def _append(children: TreeDict, extra: Sequence[str]) -> TreeDict:
    merged = dict(children)
    for name in extra:
        merged.setdefault(name, {})
    return merged


def list_folders(tree: TreeDict) -> List[Folder]:
    """Flatten the tree top-down, parents before children."""
    folders: List[Folder] = []

    def visit(node: TreeDict, parts: Tuple[str, ...], lasts: Tuple[bool, ...]) -> None:
        names = list(node)
        for index, name in enumerate(names):
            child_lasts = lasts + (index == len(names) - 1,)
            folders.append(Folder(parts + (name,), child_lasts))
            visit(node[name], parts + (name,), child_lasts)

    visit(tree, (), ())
    return folders


def parse_mode(text: str) -> int:
    """argparse type for --mode: an octal number up to 07777."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an octal mode such as 775 or 2775" % text)
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError("%r is above 7777" % text)
    return mode


def parse_owner(text: str) -> Owner:
    """argparse type for --owner USER[:GROUP], names or numeric ids, like chown."""
    try:
        import grp
        import pwd
    except ImportError:
        raise argparse.ArgumentTypeError("needs POSIX user ids, which this system lacks")
    user, colon, group = text.partition(":")
    if not user and not group:
        raise argparse.ArgumentTypeError("give USER, USER:GROUP or :GROUP")
    uid = gid = -1
    if user:
        if user.isdigit():
            uid = int(user)
        else:
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                raise argparse.ArgumentTypeError("unknown user %r" % user)
        if colon and not group:  # "user:" means the user's login group, as with chown
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                raise argparse.ArgumentTypeError("uid %d has no login group; name one" % uid)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise argparse.ArgumentTypeError("unknown group %r" % group)
    return Owner(uid, gid, text)


def parse_category(text: str) -> str:
    """argparse type for --add-category: one plain folder name."""
    if text in ("", ".", "..") or "/" in text or "\0" in text or (os.sep != "/" and os.sep in text):
        raise argparse.ArgumentTypeError("%r is not a plain folder name" % text)
    return text


def describe(mode: int) -> str:
    """What kind of thing an lstat mode is, for 'X is in the way'."""
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a folder"


def os_error(exc: OSError, path: Optional[str] = None) -> Error:
    """Turn an OSError into our one-line error, with a hint when we have one."""
    message = "%s: %s" % (path or exc.filename, exc.strerror or exc)
    hint = HINTS.get(exc.errno or 0)
    return Error(message + (" (%s)" % hint if hint else ""))


def changes(st: os.stat_result, owner: Optional[Owner], mode: Optional[int]) -> str:
    """What --owner / --mode would change on an existing folder ('' for nothing)."""
    said = []
    if owner is not None:
        uid = st.st_uid if owner.uid == -1 else owner.uid
        gid = st.st_gid if owner.gid == -1 else owner.gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            said.append("owner %d:%d -> %d:%d" % (st.st_uid, st.st_gid, uid, gid))
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        said.append("mode %04o -> %04o" % (stat.S_IMODE(st.st_mode), mode))
    return ", ".join(said)


# -- the few functions that touch the disk ------------------------------------


def resolve_base(path: str) -> str:
    """The absolute --path, which must be an existing directory."""
    base = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(base)
    except FileNotFoundError:
        raise Error(
            "%s: no such folder; is the array / volume mounted? Nothing was created." % base
        )
    except OSError as exc:
        raise os_error(exc, base)
    if not stat.S_ISDIR(st.st_mode):
        raise Error("%s: not a folder; --path takes the folder to hold data/" % base)
    return base


def plan(
    base: str, folders: Sequence[Folder], owner: Optional[Owner], mode: Optional[int]
) -> List[Step]:
    """Look at every folder (one lstat each) and decide what to do with it.

    Nothing below a missing folder is looked at: it cannot exist.
    """
    steps: List[Step] = []
    absent: Set[Tuple[str, ...]] = set()
    for folder in folders:
        path = os.path.join(base, *folder.parts)
        if folder.parts[:-1] in absent:
            absent.add(folder.parts)
            steps.append(Step(folder, path, CREATE, "", None, False))
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            absent.add(folder.parts)
            steps.append(Step(folder, path, CREATE, "", None, False))
            continue
        except OSError as exc:
            raise os_error(exc, path)
        if stat.S_ISDIR(st.st_mode):
            detail = changes(st, owner, mode)
            steps.append(Step(folder, path, CHANGE if detail else KEEP, detail, st, False))
        elif stat.S_ISLNK(st.st_mode):
            steps.append(_plan_symlink(folder, path))
            if steps[-1].action == CONFLICT:
                absent.add(folder.parts)
        else:
            absent.add(folder.parts)
            steps.append(Step(folder, path, CONFLICT, describe(st.st_mode), None, False))
    return steps


def _plan_symlink(folder: Folder, path: str) -> Step:
    """A symlink to a folder counts as present; anything else is in the way."""
    try:
        target = os.readlink(path)
    except OSError:  # pragma: no cover - it was a symlink a moment ago
        target = "?"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Step(folder, path, CONFLICT, "a dangling symlink -> " + target, None, True)
    except OSError as exc:
        return Step(
            folder,
            path,
            CONFLICT,
            "a broken symlink -> %s (%s)" % (target, exc.strerror),
            None,
            True,
        )
    if not stat.S_ISDIR(st.st_mode):
        return Step(
            folder,
            path,
            CONFLICT,
            "a symlink to %s -> %s" % (describe(st.st_mode)[2:], target),
            None,
            True,
        )
    return Step(folder, path, KEEP, "symlink -> " + target, st, True)


def apply(steps: Sequence[Step], owner: Optional[Owner], mode: int, done: List[Step]) -> None:
    """Carry out a conflict-free plan, appending each finished step to done.

    The umask is set once so that mkdir alone gives the mode; only setuid /
    setgid bits, which mkdir ignores, need a chmod of their own.
    """
    chmod_new = bool(mode & 0o6000)
    old_umask = os.umask(0)
    try:
        for step in steps:
            try:
                done.append(_apply_step(step, owner, mode, chmod_new))
            except OSError as exc:
                raise os_error(exc, step.path)
    finally:
        os.umask(old_umask)


def _apply_step(step: Step, owner: Optional[Owner], mode: int, chmod_new: bool) -> Step:
    """Create or change one folder; return the step as it turned out."""
    if step.action == CREATE:
        step = _create(step, mode & 0o1777)
        if step.action == CREATE:
            if owner is not None:
                os.chown(step.path, owner.uid, owner.gid, follow_symlinks=False)
            if chmod_new:
                os.chmod(step.path, mode)
    elif step.action == CHANGE:
        assert step.st is not None
        if owner is not None:
            os.chown(step.path, owner.uid, owner.gid, follow_symlinks=False)
        if stat.S_IMODE(step.st.st_mode) != mode:
            os.chmod(step.path, mode)
    return step


def _create(step: Step, mode: int) -> Step:
    """mkdir; a folder made by a concurrent run in the meantime is fine too."""
    try:
        os.mkdir(step.path, mode)
    except FileExistsError:
        st = os.stat(step.path)
        if not stat.S_ISDIR(st.st_mode):
            raise Error("%s: %s appeared there during the run" % (step.path, describe(st.st_mode)))
        return step._replace(action=KEEP, detail="made by another run", st=st)
    return step


# -- the report ----------------------------------------------------------------

UNICODE_GLYPHS = ("\u251c\u2500\u2500 ", "\u2514\u2500\u2500 ", "\u2502   ", "    ")
ASCII_GLYPHS = ("|-- ", "`-- ", "|   ", "    ")

LABELS = {CREATE: "created", KEEP: "already there", CHANGE: "changed", CONFLICT: "in the way:"}
DRY_LABELS = {
    CREATE: "would create",
    KEEP: "already there",
    CHANGE: "would change",
    CONFLICT: "in the way:",
}


def glyphs_for(stream: IO[str]) -> Tuple[str, ...]:
    """Box-drawing glyphs if the stream can encode them, else ASCII."""
    try:
        "".join(UNICODE_GLYPHS).encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_GLYPHS
    return UNICODE_GLYPHS


def branch(lasts: Tuple[bool, ...], glyphs: Tuple[str, ...]) -> str:
    """The indentation and branch glyph in front of a folder at depth len(lasts)."""
    if len(lasts) <= 1:
        return ""
    tee, elbow, pipe, blank = glyphs
    guides = "".join(blank if last else pipe for last in lasts[1:-1])
    return guides + (elbow if lasts[-1] else tee)


def tree_text(tree: TreeDict = TREE, glyphs: Tuple[str, ...] = ASCII_GLYPHS) -> str:
    """The plain tree, one folder a line: what the README and the picture show."""
    return "".join(branch(f.lasts, glyphs) + f.parts[-1] + "/\n" for f in list_folders(tree))


def emit(stream: IO[str], text: str) -> None:
    """Write a line; what the stream can't encode comes out escaped, not as a crash."""
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def warn(text: str) -> None:
    emit(sys.stderr, "warning: " + text)


def report(steps: Sequence[Step], dry_run: bool, out: IO[str]) -> None:
    """The tree, with each folder's state."""
    labels = DRY_LABELS if dry_run else LABELS
    glyphs = glyphs_for(out)
    names = []
    for step in steps:
        name = step.path if len(step.folder.parts) == 1 else step.folder.parts[-1]
        names.append(branch(step.folder.lasts, glyphs) + name + "/")
    width = max(len(name) for name in names) + 2
    for name, step in zip(names, steps):
        state = labels[step.action]
        if step.detail:
            state += " " + step.detail if step.action == CONFLICT else " (%s)" % step.detail
        emit(out, name.ljust(width) + state)


def summary(steps: Sequence[Step], base: str, dry_run: bool) -> str:
    """One line: how many folders were (or would be) created, changed, left."""
    count = {action: 0 for action in (CREATE, KEEP, CHANGE, CONFLICT)}
    for step in steps:
        count[step.action] += 1
    root = os.path.join(base, DATA)
    if dry_run:
        return (
            "dry run: %d to create, %d to change, %d already there in %s; nothing was changed"
            % (count[CREATE], count[CHANGE], count[KEEP], root)
        )
    return "done: %d created, %d changed, %d already there in %s" % (
        count[CREATE],
        count[CHANGE],
        count[KEEP],
        root,
    )


# -- the command line ----------------------------------------------------------

EPILOG = """\
examples:
  Unraid:                 python3 %(prog)s --path /mnt/user --owner nobody:users
  Synology (id docker):   python3 %(prog)s --path /volume1 --owner 1026:100
  look before you leap:   python3 %(prog)s --path /srv --owner 1000:1000 --dry-run
  a second Radarr:        python3 %(prog)s --path /srv --add-category movies-4k
  no git on the NAS:      curl -fsSL URL | python3 - --path /mnt/user

exit codes: 0 done, 1 conflict or OS failure, 2 usage error, 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="create_media_structure.py",
        description="Create the data/ tree (torrents, usenet, ddl, media) under --path,\n"
        "on one filesystem, so that imports are hardlinks or atomic moves.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--path",
        default=".",
        metavar="DIR",
        help="the existing folder to hold data/ (default: the current folder)",
    )
    parser.add_argument(
        "--owner",
        type=parse_owner,
        metavar="USER[:GROUP]",
        help="owner of every folder of the tree, names or ids (e.g. 1000:1000)",
    )
    parser.add_argument(
        "--mode",
        type=parse_mode,
        metavar="OCTAL",
        help="mode of the folders (default for new ones: 775; e.g. 2775)",
    )
    parser.add_argument(
        "--add-category",
        action="append",
        default=[],
        type=parse_category,
        metavar="NAME",
        help="an extra category under each complete/ and media/, e.g. movies-4k (repeatable)",
    )
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="show what would be done and change nothing"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    done: List[Step] = []
    try:
        base = resolve_base(args.path)
        steps = plan(
            base, list_folders(with_categories(TREE, args.add_category)), args.owner, args.mode
        )
        conflicts = [step for step in steps if step.action == CONFLICT]
        if conflicts:
            if not args.quiet:
                report(steps, True, out)
            for step in conflicts:
                emit(sys.stderr, "error: %s: %s is in the way" % (step.path, step.detail))
            raise Error(
                "%d thing(s) in the way of the tree; move them away and run "
                "again. Nothing was created." % len(conflicts)
            )
        if args.mode is not None and args.mode & 0o002:
            warn("--mode %04o lets every user on the system write there" % args.mode)
        creating = any(step.action == CREATE for step in steps)
        if creating and args.owner is None and hasattr(os, "geteuid") and os.geteuid() == 0:
            warn(
                "running as root without --owner: the new folders will belong to root, "
                "and containers running as PUID/PGID may not write there; add "
                "--owner 1000:1000 (Unraid: --owner nobody:users)"
            )
        if not args.dry_run:
            apply(steps, args.owner, DEFAULT_MODE if args.mode is None else args.mode, done)
            steps = done
        if not args.quiet:
            report(steps, args.dry_run, out)
            emit(out, summary(steps, base, args.dry_run))
        return 0
    except Error as exc:
        emit(sys.stderr, "error: %s" % exc)
        if done:
            emit(
                sys.stderr,
                "%d folder(s) were created before that; fix the cause and "
                "run again to finish" % count_created(done),
            )
        return exc.code
    except KeyboardInterrupt:
        emit(
            sys.stderr,
            "interrupted: %d folder(s) created; run again to finish" % count_created(done),
        )
        return 130
    except BrokenPipeError:
        # The reader (say `| head`) went away: finish quietly, as cat would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def count_created(done: Sequence[Step]) -> int:
    return sum(step.action == CREATE for step in done)


if __name__ == "__main__":
    sys.exit(main())
