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
    python3 create_media_structure.py --path /mnt/user --check --owner 99:100
    python3 create_media_structure.py --path /mnt/user --check --docker
    python3 create_media_structure.py --path /mnt/user --relink --dry-run
    python3 create_media_structure.py --path /mnt/user --compose

It only ever creates folders that are missing; existing folders change only
with --owner (their owner) or --mode (their mode), and the report says so.
It never deletes, moves or touches anything else, except --relink, which
turns byte-identical copies in media/ into hardlinks of the download.
Every change goes through an open descriptor of the folder it is made in,
so a symlink planted in the tree can't steer a root run outside it.
Exit codes: 0 done, 1 conflict, OS failure, a --check problem or output
that could not be written, 2 usage error, 128+N stopped by signal N (130
Ctrl-C, 143 SIGTERM, 129 SIGHUP).

Stdlib only; runs on CPython 3.6 to 3.13.  The source is pure ASCII so that
it can be piped through any locale.
"""

import argparse
import errno
import os
import stat
import sys
from typing import (
    IO,
    AbstractSet,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

__version__ = "2.0.0"


# -- the tree and the types ------------------------------------------------------------
# The layout is one constant; everything printed, drawn or checked derives from it.

TreeDict = Dict[str, "TreeDict"]  # folder name -> its sub-folders

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
INCOMPLETE = "incomplete"
# Every child of data/ other than media/ is a download source.
SOURCES = tuple(name for name in TREE[DATA] if name != MEDIA)

DEFAULT_MODE = 0o775  # group-writable: the guides' UMASK 002
# Synology's indexer keeps thumbnails and media info in an @eaDir beside the files of
# every folder it indexes: never a download, a leftover or a copy to relink.
NAS_METADATA = "@eaDir"
MAX_ID = 2**32 - 2  # 2**32 - 1 is -1 to the kernel: "leave unchanged"
DEFAULT_NAME_MAX = 255

# What a run does with each folder.
CREATE, KEEP, CHANGE, CONFLICT = "create", "keep", "change", "conflict"
SYMLINK_TO = "symlink -> "  # a kept folder that is a symlink: its detail, then the target
# How a --check finding is graded.
PROBLEM, WARNING = "problem", "warning"

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | O_CLOEXEC
# A folder of the tree is opened without following a symlink in its place.
TREE_DIR_FLAGS = DIR_FLAGS | O_NOFOLLOW
SCANDIR_FD = os.scandir in getattr(os, "supports_fd", set())  # 3.7+
# Every change goes through a folder's descriptor: refuse systems without them.
DIR_FD_OK = all(call in os.supports_dir_fd for call in (os.open, os.mkdir, os.stat, os.unlink))


class Error(Exception):
    """A failure the user can cause or fix: printed as one line (and a line of what
    was done before it, if any), no traceback."""

    def __init__(self, message: str, code: int = 1, before: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.before = before


class Interrupted(Exception):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) arrived; raised where stopping is safe."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Owner(NamedTuple):
    uid: int  # -1 leaves it unchanged, as with os.chown
    gid: int
    spec: str  # as the user typed it


class Folder(NamedTuple):
    parts: Tuple[str, ...]  # ("data", "media", "movies")
    lasts: Tuple[bool, ...]  # whether each level is its parent's last child
    leaf: bool  # no sub-folders in the tree


class Step(NamedTuple):
    folder: Folder
    path: str
    action: str  # CREATE, KEEP, CHANGE or CONFLICT
    detail: str  # what is in the way, where a symlink points, what changes
    st: Optional[os.stat_result]  # the folder's stat (its target's, for a symlink)
    symlink: bool


Pairs = Sequence[Tuple[str, Tuple[str, ...], Tuple[str, ...]]]


class Finding(NamedTuple):
    section: str  # layout, filesystem, probes, permissions, containers
    kind: str  # a key of KINDS
    path: str
    detail: str
    fix: str
    errno: str  # the errno's name, or ""
    severity: str  # PROBLEM or WARNING
    container: str  # for the containers section: the container, and
    other: str  # the other container of a pair
    paths: Tuple[str, ...]  # every path of its one cause (path is the first)


class Kind(NamedTuple):
    section: str  # where the report shows it
    severity: str  # its grade, unless its rule says otherwise
    rule: str  # when it takes the other grade (or section); "" for never


AS_CROSSED = "a warning where no import crosses it"
AS_DENIED = "in permissions where the user may not (EACCES, EPERM)"
# Every kind of finding the script can make, once: the README's table of findings is
# checked against this, and finding() takes its section and grade from here.
KINDS: Dict[str, Kind] = {
    "missing": Kind("layout", PROBLEM, ""),
    "conflict": Kind("layout", PROBLEM, ""),
    "other-filesystem": Kind("filesystem", PROBLEM, AS_CROSSED),
    "mount-point": Kind("filesystem", PROBLEM, AS_CROSSED),
    "symlink-elsewhere": Kind("filesystem", PROBLEM, AS_CROSSED),
    "symlink-outside": Kind("filesystem", WARNING, ""),
    "symlink-absolute": Kind("filesystem", WARNING, ""),
    "no-hardlinks": Kind("filesystem", PROBLEM, ""),
    "server-hardlinks": Kind("filesystem", WARNING, ""),
    "ram": Kind("filesystem", WARNING, ""),
    "overlay": Kind("filesystem", WARNING, ""),
    "not-writable": Kind("permissions", PROBLEM, "a warning where no import writes, or where "
                         "the probe as that user wrote all the same"),
    "sticky": Kind("permissions", WARNING, ""),
    "cannot-link": Kind("permissions", PROBLEM, "a warning where only torrent folders can't be "
                        "moved (the client keeps them)"),
    "reach-failed": Kind("probes", PROBLEM, AS_DENIED),
    "create-failed": Kind("probes", PROBLEM, AS_DENIED),
    "finish-failed": Kind("probes", WARNING, ""),
    "hardlink-failed": Kind("probes", PROBLEM, ""),
    "move-failed": Kind("probes", PROBLEM, ""),
    "new-folder-failed": Kind("probes", PROBLEM, ""),
    "remove-failed": Kind("probes", PROBLEM, ""),
    "same-folder": Kind("probes", PROBLEM, ""),
    "probe-blocked": Kind("probes", WARNING, ""),
    "probe-disturbed": Kind("probes", WARNING, ""),
    "locked": Kind("probes", PROBLEM, "a warning for incomplete/, which no import crosses"),
    "named-volume": Kind("containers", PROBLEM, ""),
    "outside-tree": Kind("containers", PROBLEM, "a warning for a media server or a reader"),
    "read-only": Kind("containers", PROBLEM, ""),
    "split-mounts": Kind("containers", PROBLEM, ""),
    "path-mismatch": Kind("containers", PROBLEM, ""),
    "library-path": Kind("containers", WARNING, ""),
    "broad-access": Kind("containers", WARNING, ""),
    "root": Kind("containers", WARNING, ""),
    "cannot-write": Kind("containers", PROBLEM, "a warning where an ACL may let it write"),
    "ids": Kind("containers", WARNING, ""),
    "umask": Kind("containers", WARNING, ""),
    "docker-unreachable": Kind("containers", PROBLEM, ""),
    "save-unmounted": Kind("routes", PROBLEM, ""),
    "import-unseen": Kind("routes", PROBLEM, ""),
    "import-copies": Kind("routes", PROBLEM, ""),
    "mapping-wrong": Kind("routes", PROBLEM, ""),
    "mapping-needless": Kind("routes", WARNING, ""),
    "root-in-downloads": Kind("routes", PROBLEM, ""),
    "root-outside-media": Kind("routes", WARNING, ""),
    "root-unmounted": Kind("routes", PROBLEM, ""),
    "hardlinks-off": Kind("routes", PROBLEM, "a warning for an importer with no torrent client"),
    "import-off": Kind("routes", WARNING, ""),
    "manual-mode": Kind("routes", WARNING, ""),
    "incomplete-elsewhere": Kind("routes", WARNING, ""),
    "library-unseen": Kind("routes", WARNING, ""),
    "settings-unread": Kind("routes", WARNING, ""),
    "imports-copied": Kind("imports", PROBLEM, "a warning where the newest torrent import is "
                           "no copy (fixed since)"),
}  # fmt: skip


def finding(
    kind: str,
    path: str,
    detail: str,
    fix: str,
    *,
    severity: str = "",
    section: str = "",
    errno_name: str = "",
    container: str = "",
    other: str = "",
    paths: Sequence[str] = (),
) -> Finding:
    """A finding of a kind of KINDS, in its section and with its grade unless the case
    (the kind's rule) says otherwise; paths: every path one cause blocks (one finding,
    counted once), path being the first."""
    known = KINDS[kind]
    return Finding(section or known.section, kind, path, detail, fix, errno_name,
                   severity or known.severity, container, other,
                   tuple(paths) or (path,))  # fmt: skip


# -- the plan (pure): options and the tree into folders and decisions ------------------
# Nothing here touches the disk; argparse types reject bad input before anything runs.


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
            folders.append(Folder(parts + (name,), child_lasts, not node[name]))
            visit(node[name], parts + (name,), child_lasts)

    visit(tree, (), ())
    return folders


def import_pairs(folders: Sequence[Folder]) -> List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]]:
    """(source, complete/<cat>, media/<cat>) for every category an *arr app imports.

    The categories are the leaves under each complete/ (tv, anime/tv, added
    ones); parents such as anime/ are not import targets.
    """
    known = {folder.parts for folder in folders}
    pairs = []
    for folder in folders:
        parts = folder.parts
        if folder.leaf and len(parts) > 3 and parts[2] == COMPLETE and parts[1] in SOURCES:
            target = (DATA, MEDIA) + parts[3:]
            if target in known:
                pairs.append((parts[1], parts, target))
    return pairs


def ascii_number(text: str, digits: str = "0123456789") -> bool:
    return bool(text) and all(char in digits for char in text)


def parse_mode(text: str) -> int:
    """argparse type for --mode: 3 or 4 octal digits, with rwx for the owner."""
    if len(text) not in (3, 4) or not ascii_number(text, "01234567"):
        raise argparse.ArgumentTypeError(
            "%r is not a folder mode: give 3 or 4 octal digits such as 775, 0775 or 2775" % text
        )
    mode = int(text, 8)
    if mode & 0o700 != 0o700:
        raise argparse.ArgumentTypeError(
            "%s leaves the owner without rwx on its own folders: give 7 as the owner digit "
            "(e.g. 775)" % text
        )
    return mode


def parse_id(text: str, what: str) -> int:
    """A numeric user or group id in 0 .. 2**32-2, ASCII digits only."""
    if not ascii_number(text):
        raise argparse.ArgumentTypeError("%s %r is not a number" % (what, text))
    number = int(text)
    if number > MAX_ID:
        raise argparse.ArgumentTypeError("%s %s is out of range (0 to %d)" % (what, text, MAX_ID))
    return number


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
        if ascii_number(user[:1]):
            uid = parse_id(user, "uid")
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
        if ascii_number(group[:1]):
            gid = parse_id(group, "gid")
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise argparse.ArgumentTypeError("unknown group %r" % group)
    return Owner(uid, gid, text)


def parse_category(text: str) -> str:
    """argparse type for --add-category: one plain folder name a compose file can hold."""
    if text in ("", ".", "..") or "/" in text or (os.sep != "/" and os.sep in text):
        raise argparse.ArgumentTypeError("%r is not a plain folder name" % text)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise argparse.ArgumentTypeError("%r holds a control character" % text)
    if text != text.strip():
        raise argparse.ArgumentTypeError("%r starts or ends with white space" % text)
    if ":" in text:
        raise argparse.ArgumentTypeError(
            "%r holds a ':', which docker's volume syntax can't hold" % text
        )
    library = TREE[DATA][MEDIA]
    if library.get(text) and text not in TREE[DATA][SOURCES[0]][COMPLETE]:
        raise argparse.ArgumentTypeError(  # complete/personal would lead nowhere
            "%r is media/%s/, a folder of folders (%s) that no download is imported "
            "into; pick another name" % (text, text, ", ".join(library[text]))
        )
    return text


def parse_path(text: str) -> str:
    """argparse type for --path: anything but empty (an unset shell variable)."""
    if not text:
        raise argparse.ArgumentTypeError(
            "is empty (an unset variable?); give the folder to hold data/, e.g. /mnt/user"
        )
    return text


def parse_size(text: str) -> int:
    """argparse type for --min-size: bytes, with an optional K, M or G (powers of 1024)."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = text.rstrip("KMGkmg"), text[len(text.rstrip("KMGkmg")) :].upper()
    if not ascii_number(number) or unit not in units:
        raise argparse.ArgumentTypeError("%r is not a size such as 1048576, 512K, 1M or 2G" % text)
    return int(number) * units[unit]


def parse_minutes(text: str) -> int:
    """argparse type for --min-age: whole minutes."""
    if not ascii_number(text):
        raise argparse.ArgumentTypeError("%r is not a whole number of minutes" % text)
    return int(text)


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
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a folder"


def changes(st: os.stat_result, owner: Optional[Owner], mode: Optional[int]) -> str:
    """What --owner / --mode would change on an existing folder ('' for nothing)."""
    said = []
    if owner is not None:
        uid, gid = owner_after(st, owner)
        if (uid, gid) != (st.st_uid, st.st_gid):
            said.append("owner %d:%d -> %d:%d" % (st.st_uid, st.st_gid, uid, gid))
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        said.append("mode %04o -> %04o" % (stat.S_IMODE(st.st_mode), mode))
    return ", ".join(said)


def owner_after(st: os.stat_result, owner: Owner) -> Tuple[int, int]:
    """The uid and gid a folder has once --owner is given to it (-1 keeps its own)."""
    return (
        st.st_uid if owner.uid == -1 else owner.uid,
        st.st_gid if owner.gid == -1 else owner.gid,
    )


# What an errno means and what to do about it: by (what failed, errno), else by the errno
# alone ("").  The one-line errors of every mode, the probes' fixes ("probe") and the
# reasons --relink skips a pair for ("link"; "replace": the rename over the copy, after
# the link was made and before it is undone) all come from here.
ERRNO_FIXES: Dict[Tuple[str, int], str] = {
    ("", errno.EACCES): "no permission to write there: run as a user who may "
    "(e.g. with sudo) or fix the parent folder's permissions",
    ("", errno.EPERM): "operation not permitted: the folder may be immutable (lsattr) or on a "
    "filesystem that refuses it",
    ("", errno.ENOSPC): "the disk is full (or out of inodes): free some space",
    ("", errno.EROFS): "the filesystem is mounted read-only: remount it read-write",
    ("", errno.EIO): "the disk reported an I/O error: check it (dmesg, SMART)",
    ("", errno.EDQUOT): "your disk quota is used up: free some space or raise it",
    ("", errno.ENAMETOOLONG): "a name is longer than this filesystem allows: use a shorter one",
    ("chown", errno.EPERM): "changing the owner needs root: run it with sudo",
    ("chmod", errno.EPERM): "only the folder's owner (or root) may change its mode",
    ("probe", errno.EXDEV): "the two folders are not on one filesystem and mount: keep all of "
    "data/ on one disk, share or dataset (on a union, one disk), and give the containers ONE "
    "/data volume",
    ("probe", errno.EPERM): "this filesystem or the kernel (fs.protected_hardlinks) does not "
    "allow the hardlink: use a filesystem with hardlinks (ext4, xfs, btrfs, zfs) and run the "
    "apps as the files' owner",
    ("probe", errno.EMLINK): "the file has too many links for this filesystem",
    ("probe", errno.EOPNOTSUPP): "this filesystem or share has no hardlinks: put data/ on ext4, "
    "xfs, btrfs or zfs (Unraid: Settings > Global Share Settings > Tunable (support Hard "
    "Links): Yes)",
    ("probe", errno.EACCES): "no write access: fix the owner/mode (run again without --check, "
    "with --owner PUID:PGID)",
    ("probe", errno.EEXIST): "the two folders are one folder (a symlink?): make each a folder "
    "of its own",
    ("link", errno.EXDEV): "the copy and the download are on two filesystems or mounts: a "
    "hardlink can't cross; keep data/ on one filesystem (see --check)",
    ("link", errno.EMLINK): "the download has as many links as this filesystem allows",
    ("link", errno.EPERM): "the filesystem or fs.protected_hardlinks refused the link: run as "
    "the files' owner or as root",
    ("link", errno.EACCES): "no write access to the library folder: run as its owner or as root",
    ("link", errno.EROFS): "the filesystem is mounted read-only",
    ("replace", errno.EPERM): "the copy can't be replaced: it is immutable or append-only "
    "(lsattr shows it; chattr -i or -a lifts it), or its folder is sticky and the copy "
    "someone else's",
    ("replace", errno.EACCES): "the copy can't be replaced: no write access to its folder",
    ("replace", errno.EBUSY): "the copy can't be replaced: it is a mount point or in use by "
    "the system",
}


def errno_fix(what: str, number: int) -> str:
    """What to do where what failed with errno number: its own text, else the errno's."""
    return ERRNO_FIXES.get((what, number)) or ERRNO_FIXES.get(("", number), "")


def os_error(exc: OSError, path: Optional[str] = None, op: str = "") -> Error:
    """Turn an OSError into our one-line error, with a hint for what failed."""
    message = "%s: %s" % (path or exc.filename, exc.strerror or exc)
    hint = errno_fix(op, exc.errno or 0)
    return Error(message + (" (%s)" % hint if hint else ""))


def quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def category_option(name: str) -> str:
    """--add-category NAME as a shell takes it: quoted where it needs to be, and joined
    by '=' where NAME starts with '-' (argparse would take it for an option)."""
    return "--add-category" + ("=" if name.startswith("-") else " ") + quote(name)


SCRIPT_NAME = "create_media_structure.py"


def creator_command(steps: Sequence[Step], options: str = "") -> str:
    """The create command a fix: line gives to paste: the tree's --path, then options,
    then the categories it must name (creator_categories)."""
    base = os.path.dirname(steps[0].path)
    return "python3 %s --path %s%s%s" % (SCRIPT_NAME, quote(base), options,
                                         creator_categories(steps))  # fmt: skip


def creator_categories(steps: Sequence[Step]) -> str:
    """' --add-category NAME' for each category of the checked tree that the creator
    doesn't make by itself (given to --check, or found on disk): a fix that runs the
    creator again must name them, or it leaves their folders as they are."""
    names = [step.folder.parts[2] for step in steps
             if len(step.folder.parts) == 3 and step.folder.parts[1] == MEDIA
             and step.folder.parts[2] not in TREE[DATA][MEDIA]]  # fmt: skip
    return "".join(" " + category_option(name) for name in names)


# -- the walk: every look at and change of the tree goes through a folder's fd ---------
# After the first run the tree belongs to the containers' user, who may swap any
# folder for a symlink at any moment.  So nothing here takes a path below --path:
# each folder is opened relative to its parent's descriptor with O_NOFOLLOW, and
# mkdir, chown, chmod, link, rename and unlink all name a descriptor.  A symlink
# in the tree is followed only when root or the caller owns it (systemd-tmpfiles'
# rule for unsafe path transitions).


class Walk:
    """The tree's open folders, by their parts; () is --path itself."""

    def __init__(self, base: str, base_fd: int) -> None:
        self.base = base
        self.fds: Dict[Tuple[str, ...], int] = {(): base_fd}

    def path(self, parts: Sequence[str]) -> str:
        return os.path.join(self.base, *parts)

    def open(self, parts: Tuple[str, ...], st: Optional[os.stat_result] = None) -> int:
        """The descriptor of a folder that was there, opened now if need be.

        With st, the folder must still be the one the plan looked at.
        """
        fd = self.fds.get(parts)
        if fd is None:
            parent = self.open(parts[:-1])
            try:
                fd = os.open(parts[-1], TREE_DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK, errno.ENOENT):
                    raise Error("%s: replaced during the run; run again" % self.path(parts))
                raise os_error(exc, self.path(parts), "open")
            self.fds[parts] = fd
            if st is not None and not same_file(os.fstat(fd), st):
                raise Error("%s: replaced during the run; run again" % self.path(parts))
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - we opened it
                pass
        self.fds.clear()


def lock_folder(walk: Walk, parts: Tuple[str, ...], wait: bool) -> Optional[int]:
    """An exclusive flock on an open folder of the tree, held until its fd is closed;
    None where another run holds it and wait is False."""
    import fcntl

    fd = os.open(".", DIR_FLAGS, dir_fd=walk.fds[parts])
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as exc:  # other than held: no locks on this filesystem, go on without
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):  # pragma: no branch
            os.close(fd)
            return None
    return fd


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_base(path: str) -> Walk:
    """Open --path, which must be an existing folder (a symlink to one is fine: you named it)."""
    if not DIR_FD_OK:  # pragma: no cover - not Linux, BSD or macOS
        raise Error("this system can't change folders through descriptors (dir_fd); use Linux")
    base = os.path.abspath(os.path.expanduser(path))
    try:
        fd = os.open(base, DIR_FLAGS)
    except FileNotFoundError:
        raise Error(
            "%s: no such folder; is the array / volume mounted? Nothing was created." % base
        )
    except NotADirectoryError:
        raise Error("%s: not a folder; --path takes the folder to hold data/" % base)
    except OSError as exc:
        raise os_error(exc, base, "open")
    walk = Walk(base, fd)
    if os.path.basename(base) == DATA:
        inside = [name for name in ("torrents", MEDIA) if _exists(fd, name)]
        if inside:
            walk.close()
            raise Error(
                "%s already holds %s/: --path takes the folder ABOVE data/, i.e. --path %s"
                % (base, inside[0], os.path.dirname(base)),
                2,
            )
    return walk


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def plan(
    walk: Walk,
    folders: Sequence[Folder],
    owner: Optional[Owner],
    mode: Optional[int],
    need_stat: bool = False,
) -> List[Step]:
    """Look at every folder and decide what to do with it; change nothing.

    Folders with sub-folders are opened (O_NOFOLLOW | O_DIRECTORY proves they
    are real folders, and their descriptors serve the children); a leaf gets
    one fstatat.  Nothing below a missing folder is looked at.  The stat of a
    folder is taken only where --owner, --mode or --check need it.
    """
    need_stat = need_stat or owner is not None or mode is not None
    steps: List[Step] = []
    absent: Set[Tuple[str, ...]] = set()
    for folder in folders:
        path = walk.path(folder.parts)
        if folder.parts[:-1] in absent:
            step = Step(folder, path, CREATE, "", None, False)
        else:
            step = _look(walk, folder, path, owner, mode, need_stat)
        if step.action in (CREATE, CONFLICT):
            absent.add(folder.parts)
        steps.append(step)
    return steps


def _look(
    walk: Walk,
    folder: Folder,
    path: str,
    owner: Optional[Owner],
    mode: Optional[int],
    need_stat: bool,
) -> Step:
    parent = walk.fds[folder.parts[:-1]]
    name = folder.parts[-1]
    if not folder.leaf:
        try:
            fd = os.open(name, TREE_DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return Step(folder, path, CREATE, "", None, False)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise os_error(exc, path, "open")
        else:  # a real folder, not a symlink
            walk.fds[folder.parts] = fd
            st: Optional[os.stat_result] = os.fstat(fd) if need_stat else None
            detail = changes(st, owner, mode) if st is not None else ""
            return Step(folder, path, CHANGE if detail else KEEP, detail, st, False)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return Step(folder, path, CREATE, "", None, False)
    except OSError as exc:
        raise os_error(exc, path, "look at")
    if stat.S_ISLNK(st.st_mode):
        return _plan_symlink(walk, folder, path, st)
    if stat.S_ISDIR(st.st_mode) and folder.leaf:
        detail = changes(st, owner, mode)
        return Step(folder, path, CHANGE if detail else KEEP, detail, st, False)
    if stat.S_ISDIR(st.st_mode):  # it was not a folder a moment ago
        raise Error("%s: changed while it was looked at; run again" % path)
    return Step(folder, path, CONFLICT, describe(st.st_mode), None, False)


def _plan_symlink(walk: Walk, folder: Folder, path: str, link_st: os.stat_result) -> Step:
    """A symlink to a folder counts as present, when root or the caller made it."""
    parent = walk.fds[folder.parts[:-1]]
    if link_st.st_uid not in (0, os.getuid()):
        return Step(
            folder,
            path,
            CONFLICT,
            "a symlink owned by uid %d (neither root nor you), not followed; if you made "
            "it, make it yours: chown -h" % link_st.st_uid,
            None,
            True,
        )
    target = _read_link(parent, folder.parts[-1], link_st, path)
    try:
        fd = os.open(target, DIR_FLAGS, dir_fd=parent)  # relative targets start at parent
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            what = "a dangling symlink -> " + target
        elif exc.errno == errno.ENOTDIR:
            what = "a symlink to %s -> %s" % (_target_kind(parent, target), target)
        else:
            what = "a broken symlink -> %s (%s)" % (target, exc.strerror)
        return Step(folder, path, CONFLICT, what, None, True)
    walk.fds[folder.parts] = fd
    return Step(folder, path, KEEP, SYMLINK_TO + target, os.fstat(fd), True)


def _target_kind(parent: int, target: str) -> str:
    try:
        return describe(os.stat(target, dir_fd=parent).st_mode)
    except OSError:  # pragma: no cover - gone meanwhile
        return "something not a folder"


def _read_link(parent: int, name: str, link_st: os.stat_result, path: str) -> str:
    """The target of the very symlink that was looked at (not one swapped in since)."""
    o_path = getattr(os, "O_PATH", 0)
    if o_path:  # Linux: hold the link itself, then read it
        fd = os.open(name, o_path | O_NOFOLLOW | O_CLOEXEC, dir_fd=parent)
        try:
            if not same_file(os.fstat(fd), link_st):
                raise Error("%s: changed while it was looked at; run again" % path)
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
    target = os.readlink(name, dir_fd=parent)  # pragma: no cover - not Linux
    if not same_file(os.stat(name, dir_fd=parent, follow_symlinks=False), link_st):
        raise Error("%s: changed while it was looked at; run again" % path)  # pragma: no cover
    return target  # pragma: no cover


def apply(
    walk: Walk,
    steps: Sequence[Step],
    owner: Optional[Owner],
    mode: Optional[int],
    done: List[Step],
    signals: "Signals",
) -> None:
    """Carry out a conflict-free plan, appending each step to done as soon as it took effect.

    New folders get --mode (default 775) from mkdir itself, the umask being
    set to 0 once; only setuid / setgid bits, which mkdir ignores, need a
    chmod.  Existing folders change owner only with --owner, mode only with
    --mode.  A signal stops the run between two folders, never inside one.
    """
    new_mode = DEFAULT_MODE if mode is None else mode
    chmod_new = bool(new_mode & 0o6000)
    old_umask = os.umask(0)
    try:
        for step in steps:
            signals.poll()
            if step.action == CREATE:
                _create(walk, step, owner, new_mode, chmod_new, done)
            elif step.action == CHANGE:
                _change(walk, step, owner, mode, done)
    finally:
        os.umask(old_umask)


def _create(
    walk: Walk,
    step: Step,
    owner: Optional[Owner],
    mode: int,
    chmod_new: bool,
    done: List[Step],
) -> None:
    parts, name = step.folder.parts, step.folder.parts[-1]
    parent = walk.fds[parts[:-1]]
    try:
        os.mkdir(name, mode & 0o1777, dir_fd=parent)
    except FileExistsError:  # a concurrent run made it: fine, if it is a real folder
        fd = _open_made(parent, name, step.path)
        if step.folder.leaf:
            os.close(fd)
        else:
            walk.fds[parts] = fd
        done.append(step._replace(action=KEEP, detail="made by another run"))
        return
    except OSError as exc:
        raise os_error(exc, step.path, "create")
    done.append(step)
    if step.folder.leaf and owner is None and not chmod_new:
        return
    fd = _open_made(parent, name, step.path)
    try:
        if owner is not None:
            _on_fd(os.fchown, fd, step.path, "chown", owner.uid, owner.gid)
        if chmod_new:
            _on_fd(os.fchmod, fd, step.path, "chmod", mode)
    finally:
        if step.folder.leaf:
            os.close(fd)
        else:
            walk.fds[parts] = fd


def _open_made(parent: int, name: str, path: str) -> int:
    """Open a folder just made (by us or a peer); a symlink or file there is an error."""
    try:
        return os.open(name, TREE_DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise Error("%s: something other than a folder appeared there during the run" % path)
        raise os_error(exc, path, "open")


def _change(
    walk: Walk, step: Step, owner: Optional[Owner], mode: Optional[int], done: List[Step]
) -> None:
    assert step.st is not None
    fd = walk.open(step.folder.parts, step.st)
    said = False
    if owner is not None and owner_after(step.st, owner) != (step.st.st_uid, step.st.st_gid):
        _on_fd(os.fchown, fd, step.path, "chown", owner.uid, owner.gid)
        done.append(step)
        said = True
    if mode is not None and stat.S_IMODE(step.st.st_mode) != mode:
        _on_fd(os.fchmod, fd, step.path, "chmod", mode)
        if not said:
            done.append(step)


def _on_fd(call: Callable[..., None], fd: int, path: str, op: str, *args: int) -> None:
    try:
        call(fd, *args)
    except OSError as exc:
        raise os_error(exc, path, op)


class Signals:
    """Hold Ctrl-C, SIGTERM and SIGHUP until a point where stopping leaves things whole.

    The handler only notes the signal; poll() raises Interrupted where the
    caller can stop cleanly.  Outside the main thread (where Python allows no
    handler) signals keep their default behaviour.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.caught = 0
        self.saved: Dict[int, Any] = {}
        self.waiting = False  # in a wait that a signal may end at once (see at_once)

    def __enter__(self) -> "Signals":
        import signal

        for name in self.NAMES:
            number = getattr(signal, name, None)
            if number is not None:
                try:
                    self.saved[number] = signal.signal(number, self._note)
                except (ValueError, OSError):  # not the main thread
                    pass
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.caught = self.caught or signum
        if self.waiting:  # Python would retry the interrupted call and wait on for good
            raise Interrupted(self.caught)

    def at_once(self) -> "AtOnce":
        """For a with block that waits on something else (another run's lock): a signal
        ends the wait at once, where the handler alone would let it go on."""
        return AtOnce(self)

    def poll(self) -> None:
        if self.caught:
            raise Interrupted(self.caught)

    def __exit__(self, *exc: Any) -> None:
        import signal

        for number, handler in self.saved.items():
            signal.signal(number, handler)


class AtOnce:
    """See Signals.at_once."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals

    def __enter__(self) -> None:
        self.signals.poll()
        self.signals.waiting = True

    def __exit__(self, *exc: Any) -> None:
        self.signals.waiting = False


# -- what every mode shares: listing, mounts, inode flags, progress, child processes ---
# Every mode lists folders, asks where a folder is mounted, reads a file's chattr
# flags, shows progress on a long run and may hand work to a forked child: those
# helpers live here, once, and every later section uses them by their public names.


def folder_entries(
    fd: int, lone_only: bool = True
) -> Iterator[Tuple[str, bool, Optional[os.stat_result]]]:
    """(name, is a folder, stat) of each folder and regular file, relative to fd; symlinks,
    Synology's @eaDir and the rest are left out.  The stat is None for folders, for
    files gone meanwhile, and, with lone_only, for files hardlinked elsewhere."""
    if SCANDIR_FD:  # the entry's type spares a stat for every folder
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != NAS_METADATA:
                        yield entry.name, True, None
                elif entry.is_file(follow_symlinks=False):
                    yield entry.name, False, _file_stat(entry.stat, lone_only)
        return
    for name in os.listdir(fd):  # pragma: no cover - Python 3.6
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if name != NAS_METADATA:
                yield name, True, None
        elif stat.S_ISREG(st.st_mode):
            yield name, False, st if not lone_only or st.st_nlink == 1 else None


def _file_stat(
    get_stat: Callable[..., os.stat_result], lone_only: bool
) -> Optional[os.stat_result]:
    try:
        st = get_stat(follow_symlinks=False)
    except OSError:  # gone while we looked
        return None
    return st if not lone_only or st.st_nlink == 1 else None


def subfolder_names(fd: int) -> List[str]:
    """The folders in a folder (no symlinks, no @eaDir): its files are not looked at, so
    a library folder of thousands of files costs one listing."""
    if SCANDIR_FD:
        with os.scandir(fd) as entries:
            return [e.name for e in entries
                    if e.is_dir(follow_symlinks=False) and e.name != NAS_METADATA]  # fmt: skip
    return [name for name, is_dir, _ in folder_entries(fd) if is_dir]  # pragma: no cover


def open_below(parent: int, name: str) -> Optional[int]:
    try:
        return os.open(name, TREE_DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None


def open_file(name: str, dir_fd: int, noatime: bool = False) -> int:
    """Open a file of the tree to read, relative to its folder: never through a symlink,
    and never waiting (O_NONBLOCK), so that a fifo put in a file's place can't hang the
    run; the caller's fstat tells what it opened.  noatime: without touching its atime
    where the system lets us (the file's owner or root)."""
    flags = os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    if noatime and hasattr(os, "O_NOATIME"):
        try:
            return os.open(name, flags | os.O_NOATIME, dir_fd=dir_fd)
        except PermissionError as exc:  # not its owner: EPERM for the flag, EACCES to read
            if exc.errno != errno.EPERM:
                raise
    return os.open(name, flags, dir_fd=dir_fd)


def folders_below(
    fd: int, top: Tuple[str, ...] = ()
) -> Iterator[Tuple[Tuple[str, ...], int, List[str]]]:
    """Each folder of a subtree, depth first: (its parts, top's first; its descriptor, or
    -1 where it could not be opened; a list the caller fills with the names of the
    sub-folders to go into).  fd is the subtree's open top, closed here.

    A folder is opened only when its turn comes and closed once its sub-folders are
    done: the descriptors held grow with the depth, not with the width (media/tv holds
    thousands of shows, and 1024 descriptors is a common limit).
    """
    parts = top
    stack: List[Tuple[Tuple[str, ...], int, List[str]]] = []  # a folder, its fd, what's left
    try:
        while fd >= 0:
            below: List[str] = []
            stack.append((parts, fd, below))  # first: a stop at the yield closes it too
            yield parts, fd, below
            fd = -1
            while stack and fd < 0:  # the next folder to read, or -1 when none is left
                above, above_fd, left = stack[-1]
                if not left:
                    os.close(above_fd)
                    stack.pop()
                    continue
                name = left.pop()
                child = open_below(above_fd, name)
                parts = above + (name,)
                if child is None:
                    yield parts, -1, []
                else:
                    fd = child
    finally:  # stopped early (a signal): nothing stays open
        for _, held, _ in stack:
            os.close(held)


class Mount(NamedTuple):
    point: str
    root: str  # the part of the source filesystem mounted there ("/" unless a bind)
    fstype: str
    device: str  # what is mounted: a device, a share, a union's disks


MOUNTINFO = "/proc/self/mountinfo"  # Linux's mount table, with bind mounts


def read_mountinfo(text: bytes) -> List[Mount]:
    """Parse /proc/self/mountinfo (see proc(5)); later lines mount over earlier ones."""
    mounts: List[Mount] = []
    for line in text.splitlines():
        fields = line.split(b" ")
        try:
            tail = fields.index(b"-")
            mounts.append(
                Mount(
                    _unescape(fields[4]),
                    _unescape(fields[3]),
                    os.fsdecode(fields[tail + 1]),
                    _unescape(fields[tail + 2]),
                )
            )
        except (ValueError, IndexError):
            continue
    return mounts


def _unescape(field: bytes) -> str:
    for code, char in ((b"\\040", b" "), (b"\\011", b"\t"), (b"\\012", b"\n"), (b"\\134", b"\\")):
        field = field.replace(code, char)
    return os.fsdecode(field)


def load_mounts() -> Tuple[Optional[List[Mount]], str]:
    """The mount table, or None and why not."""
    try:
        with open(MOUNTINFO, "rb") as handle:
            return read_mountinfo(handle.read()), ""
    except OSError as exc:
        if sys.platform.startswith("linux"):
            return None, "%s can't be read (%s)" % (MOUNTINFO, exc.strerror)
        return None, "no mount table here (not Linux)"


def mount_of(real_path: str, mounts: Sequence[Mount]) -> Optional[Mount]:
    """The mount a resolved path lives on: the longest matching mount point, last wins."""
    best: Optional[Mount] = None
    for mount in mounts:
        if inside(real_path, mount.point) and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def ancestors(path: str) -> Iterator[str]:
    """path and each folder above it, up to /."""
    path = path.rstrip("/") or "/"
    while True:
        yield path
        if path == "/":
            return
        path = os.path.dirname(path)


def rebase(path: str, old: str, new: str) -> str:
    """path, which is old or below it, as the same place below new (a mount's two
    sides, a remote path mapping's two paths)."""
    if path == old:
        return new
    base = old.rstrip("/")
    rest = path[len(base) + 1 :]
    if path.startswith(base + "/") and "/." not in "/" + rest and "//" not in rest:
        return os.path.join(new, rest)  # already normal: no relpath (a history's 1,000 rows)
    rest = os.path.relpath(path, old)
    return new if rest == "." else os.path.join(new, rest)


def app_path(path: str) -> str:
    """A path as the kernel reads it: //data/./tv/ is /data/tv (normpath keeps a
    leading //)."""
    clean = os.path.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("/") else clean


def describe_mount(mount: Mount) -> str:
    bind = "" if mount.root == "/" else ", a bind mount of %s" % mount.root
    return "%s %s%s" % (mount.fstype, mount.device, bind)


def real_path_of(fd: int, path: str) -> str:
    """Where an open folder really is (Linux names it in /proc), else realpath."""
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return os.path.realpath(path)


def fstype_of(fd: int, path: str) -> str:
    """The type of the filesystem an open folder is on ("" with no mount table)."""
    mounts, _ = load_mounts()
    mount = mount_of(real_path_of(fd, path), mounts or ())
    return mount.fstype if mount is not None else ""


FS_IMMUTABLE_FL, FS_APPEND_FL = 0x10, 0x20  # chattr +i, chattr +a: Linux's inode flags
# Machines whose ioctl numbers use Linux's generic encoding.  On PowerPC, MIPS, SPARC,
# Alpha and PA-RISC the direction bits differ, and the number that reads the flags
# here would write them there: nothing is asked of those.
GENERIC_IOCTLS = ("x86", "i386", "i486", "i586", "i686", "aarch64", "arm", "riscv", "s390",
                  "loongarch")  # fmt: skip


def chattr_flag(fd: int) -> str:
    """Whether a folder (or file) is immutable or append-only (chattr +i, +a): in such
    a folder not even root may rename or delete a name (nor add one, when immutable).
    "immutable", "append-only", or "" (neither, or not Linux, or no such flags there)."""
    if not sys.platform.startswith("linux") or not os.uname().machine.startswith(GENERIC_IOCTLS):
        return ""
    import fcntl

    flags = bytearray(8)  # the kernel writes an int; room for the long the number names
    long_size = 8 if sys.maxsize > 2**32 else 4
    try:
        fcntl.ioctl(fd, 0x80006601 | (long_size << 16), flags)  # FS_IOC_GETFLAGS, as lsattr
    except OSError:
        return ""
    value = int.from_bytes(bytes(flags[:4]), sys.byteorder)
    if value & FS_IMMUTABLE_FL:
        return "immutable"
    return "append-only" if value & FS_APPEND_FL else ""


def human_size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class Progress:
    """Counts files; after a second, shows the count on a terminal, a few times a second."""

    EVERY = 0.25  # seconds between two redraws

    def __init__(self, stream: Optional[IO[str]], label: str = "checking") -> None:
        import time

        self.clock = time.monotonic
        self.start = self.clock()
        self.next = self.start + 1.0
        isatty = getattr(stream, "isatty", None)
        try:
            self.stream = stream if stream is not None and isatty and isatty() else None
        except ValueError:  # a closed stream
            self.stream = None
        self.label = label
        self.workers = 1  # the other workers' files are estimated from ours
        self.parent: Optional[int] = None  # in an audit worker: the process to end with
        self.files = 0
        self.total = 0
        self.shown = False

    def tick(self, files: int) -> None:
        self.files += files
        if self._due():
            self.draw("%s: about %d files looked at" % (self.label, self.files * self.workers))

    def tick_bytes(self, nbytes: int) -> None:
        self.files += nbytes
        if self._due():
            self.draw("%s: %s of %s" % (self.label, human_size(self.files), human_size(self.total)))

    def _due(self) -> bool:
        """Whether to redraw now: on a terminal, after the first second, a few times a second."""
        if self.stream is None or self.clock() < self.next:
            return False
        self.next = self.clock() + self.EVERY
        return True

    def draw(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write("\r" + text)
            self.stream.flush()
            self.shown = True
        except (OSError, ValueError):
            self.stream = None

    def done(self) -> None:
        if self.shown and self.stream is not None:
            self.draw(" " * 60 + "\r")


REPORT_SAME = 3  # lines shown of a run alike but for their folder
Line = TypeVar("Line")  # what one line of a report shows


def fold(items: Sequence[Line], key: Callable[[Line], Any]) -> List[Tuple[List[Line], int]]:
    """The items grouped by key, in the order first seen: each group's first few to show
    (all of a group just one longer: a count saves no line) and how many more it has."""
    groups: Dict[Any, List[Line]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [
        (group, 0)
        if len(group) <= REPORT_SAME + 1
        else (group[:REPORT_SAME], len(group) - REPORT_SAME)
        for group in groups.values()
    ]


# A newline, a tab, a terminal's escape (C0, DEL and C1) in a name: the name may be
# a stranger's (a torrent's, a container user's), and the reader is often root.
CONTROLS = {code: "\\x%02x" % code for code in [*range(0x20), *range(0x7F, 0xA0)]}
# Characters that reorder or break what a terminal shows (bidi overrides and isolates,
# the line and paragraph separators): a name can't make a line read otherwise.
REORDERING = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
CONTROLS.update({code: "\\u%04x" % code for code in REORDERING})


def printable(text: str) -> str:
    """A line for a terminal: a name's characters as its bytes spell them in UTF-8,
    bytes that aren't and control characters as \\xNN, so no name breaks a line or
    drives the terminal."""
    return as_utf8(text).translate(CONTROLS)


def as_utf8(text: str) -> str:
    """A name as the characters its bytes spell in UTF-8; bytes that aren't, as \\xNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


# A forked child: its pid, and the read end of the pipe its result comes through.
Child = Tuple[int, int]


def fork_child(work: Callable[[], Any], ignore: Sequence[str]) -> Child:
    """Run work in a forked child, which ignores the signals named in ignore, writes what
    work returns to a pipe (marshal: numbers, strings, lists and tuples of them) and
    exits; OSError where no pipe or process can be had."""
    import marshal

    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid:
        os.close(write_end)
        return pid, read_end
    code = 1  # pragma: no cover - the child: never returns, whatever happens
    try:  # pragma: no cover
        import signal

        for name in ignore:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        os.close(read_end)
        data = marshal.dumps(work())
        while data:
            data = data[os.write(write_end, data) :]
        code = 0
    finally:  # pragma: no cover
        os._exit(code)


def join_child(child: Child) -> Any:
    """Read what a forked child wrote (marshal) and reap it; None if it failed."""
    import marshal

    pid, read_end = child
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        return None
    return marshal.loads(b"".join(chunks))


def nothing() -> None:  # pragma: no cover - a child has no signals to poll
    pass


def run_command(
    command: List[str], timeout: int, feed: Optional[bytes] = None, cwd: Optional[str] = None
) -> Tuple[int, str, str]:
    """Run a program (no shell), stdin fed or empty: its exit code, what it printed, and
    what it said on stderr.  OSError where it isn't there; ETIMEDOUT where it didn't
    end in timeout seconds (a daemon that doesn't answer)."""
    import subprocess

    # 3.6 refuses stdin= beside input=, even stdin=None.
    given: Dict[str, Any] = {"stdin": subprocess.DEVNULL} if feed is None else {"input": feed}
    given.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, timeout=timeout)
    try:
        proc = subprocess.run(command, check=False, **given)
    except subprocess.TimeoutExpired:
        raise OSError(errno.ETIMEDOUT, "no answer in %d s" % timeout)
    said = proc.stderr.decode("utf-8", "replace").strip()
    return proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"), said


# -- reading what isn't ours: beneath its folder, bounded, never written ---------------
# An app's config folder belongs to the containers' user, and the check runs as root:
# every file in it is opened beneath the folder without following a symlink, never
# waited on (a fifo), read up to a limit, and never written (SQLite's -shm neither).


SETTINGS_LIMIT = 4 << 20  # a settings file bigger than this is not one
DB_COPY_LIMIT = 64 << 20  # a db read through a private copy (a -wal without -shm)
DB_ROWS = 100000  # rows of one table of settings (root folders, clients, ...)
DB_STEPS = 50000000  # steps of SQLite's machine for one query (a second or so)
DB_VALUE = 64 << 10  # the longest value of a settings table (a path, a client's JSON)
DB_TEXT = 16 << 20  # the text one query may return in all


class Unread(Exception):
    """An app's settings could not be read: the reason, in words."""


class ConfigFolder:
    """An app's config folder, read beneath itself: every part below it is opened with
    O_NOFOLLOW, so a symlink there (a db swapped for a link to a root-only one) is
    refused, never followed; nothing is opened to write, and nothing waits (a fifo)."""

    def __init__(self, top: str) -> None:
        self.top = top

    def path(self, relative: str) -> str:
        return os.path.normpath(os.path.join(self.top, relative)) if relative else self.top

    def open(self, relative: str, directory: bool = False) -> int:
        """A descriptor of relative (a file, or with directory a folder); OSError where
        it isn't there, Unread where a part of it is a symlink or leaves the folder."""
        parts = [part for part in relative.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise Unread("%s: leaves the config folder" % self.path(relative))
        fd = os.open(self.top, DIR_FLAGS)  # the folder itself: you (or docker) named it
        try:
            for at, name in enumerate(parts):
                try:
                    if directory or at < len(parts) - 1:
                        child = os.open(name, TREE_DIR_FLAGS, dir_fd=fd)
                    else:  # a file: never waited on (a fifo), its atime left where we may
                        child = open_file(name, fd, noatime=True)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(
                        os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                    ):
                        raise Unread("%s: a symlink, not followed" % self.path(
                            "/".join(parts[: at + 1])))  # fmt: skip
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def kind(self, relative: str) -> str:
        """'folder', 'file' (a regular one), 'other', or '' where nothing is there."""
        try:
            fd = self.open(relative)
        except (FileNotFoundError, NotADirectoryError):
            return ""
        except OSError as exc:
            if exc.errno != errno.EISDIR:
                raise Unread("%s: %s" % (self.path(relative), exc.strerror))
            fd = self.open(relative, directory=True)
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"

    def names(self, relative: str = "") -> List[str]:
        """The names in a folder below (sorted)."""
        try:
            fd = self.open(relative, directory=True)
        except OSError as exc:
            raise Unread("%s: %s" % (self.path(relative), exc.strerror))
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def read(self, relative: str, limit: int = SETTINGS_LIMIT) -> bytes:
        """A regular file's bytes, at most limit."""
        path = self.path(relative)
        try:
            fd = self.open(relative)
        except OSError as exc:
            raise Unread("%s: %s" % (path, exc.strerror))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Unread("%s: not a regular file" % path)
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise Unread("%s: over %s, more than a settings file holds"
                             % (path, human_size(limit)))  # fmt: skip
            return b"".join(chunks)
        except OSError as exc:
            raise Unread("%s: %s" % (path, exc.strerror))
        finally:
            os.close(fd)

    def text(self, relative: str) -> str:
        text = self.read(relative).decode("utf-8", "surrogateescape")
        return text[1:] if text.startswith("\ufeff") else text


def read_bytes(path: str, limit: int = SETTINGS_LIMIT) -> bytes:
    """A regular file's bytes, up to limit, opened without following its last link and
    without waiting (a fifo)."""
    return ConfigFolder(os.path.dirname(path) or ".").read(os.path.basename(path), limit)


def query(connection: Any, path: str, sql: str) -> List[Tuple[Any, ...]]:
    """The rows of one query, at most DB_ROWS; a missing table is an app that has none
    of those yet.  A query that runs on (a table that is a view of an endless
    recursion) is stopped after DB_STEPS steps of SQLite's machine."""
    import sqlite3

    table = sql.split(" FROM ", 1)[-1].split(maxsplit=1)[0]
    connection.set_progress_handler(lambda: 1, DB_STEPS)  # non-zero: stop the query
    if hasattr(connection, "setlimit"):  # 3.11+: no value a view makes can be gigabytes
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, DB_TEXT)
    try:
        rows = connection.execute(sql).fetchmany(DB_ROWS + 1)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        if "interrupted" in str(exc):
            raise Unread("%s: %s takes too long for a table of settings" % (path, table))
        raise Unread("%s: %s" % (path, exc))
    except sqlite3.DatabaseError as exc:
        raise Unread("%s: %s" % (path, exc))
    if len(rows) > DB_ROWS:
        raise Unread("%s: over %d rows in %s, more than settings hold" % (path, DB_ROWS, table))
    sizes = [len(value) for row in rows for value in row if isinstance(value, (str, bytes))]
    if any(size > DB_VALUE for size in sizes) or sum(sizes) > DB_TEXT:
        raise Unread("%s: values in %s larger than settings hold (over %s, or %s in all)"
                     % (path, table, human_size(DB_VALUE), human_size(DB_TEXT)))  # fmt: skip
    return list(rows)


class AppDatabase:
    """A connection to an app's SQLite db that changes nothing in its folder (not even
    -shm's read marks): a db up to DB_COPY_LIMIT is read through a private copy of it,
    its -wal and its -journal, each copied from a read-only descriptor opened beneath
    the config folder, and copied again once where the app changed them meanwhile (a
    checkpoint would tear the copy); a larger one is read in place, read-only, where
    SQLite may update -shm's read marks as every reader does, and never as immutable
    where a -journal is hot."""

    def __init__(self, config: ConfigFolder, relative: str) -> None:
        self.config, self.relative = config, relative
        self.private = ""
        self.folder = -1  # the db's folder, for a db read in place
        self.connection: Any = None

    def __enter__(self) -> Any:
        import sqlite3
        from urllib.parse import quote

        path = self.config.path(self.relative)
        files = self._files()
        try:
            if sum(size for _, size, _ in files.values()) <= DB_COPY_LIMIT:
                uri = "file:%s" % quote(self._copy(files))
            else:
                uri = self._in_place(files)
            self.connection = sqlite3.connect(uri, uri=True, timeout=1.0)
            self.connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except Unread:
            self.__exit__()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.__exit__()
            raise Unread("%s: %s" % (path, getattr(exc, "strerror", None) or exc))
        return self.connection

    def _files(self) -> Dict[str, Tuple[int, int, int]]:
        """The db, its -wal and its -journal where there: name end -> (inode, size,
        mtime), what a copy of them must still match.  Unread where the db is no regular
        file (a fifo would hang sqlite's open) or a symlink."""
        config, relative = self.config, self.relative
        found = {}
        for end in ("", "-wal", "-journal"):
            try:
                fd = config.open(relative + end)
            except (FileNotFoundError, NotADirectoryError):
                if not end:
                    raise Unread("%s: not there" % config.path(relative))
                continue
            except OSError as exc:
                raise Unread("%s: %s" % (config.path(relative + end), exc.strerror))
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Unread("%s: not a regular file" % config.path(relative + end))
            found[end] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return found

    def _copy(self, files: Dict[str, Tuple[int, int, int]]) -> str:
        import tempfile

        config, relative = self.config, self.relative
        self.private = tempfile.mkdtemp(prefix="cms-settings-")
        copy = os.path.join(self.private, "app.db")
        for _ in range(2):  # once more where a checkpoint tore the first copy
            for end in files:
                self._copy_file(relative + end, copy + end)
            again = self._files()
            if again == files:
                return copy
            files = again
            for name in os.listdir(self.private):
                os.unlink(os.path.join(self.private, name))
        raise Unread("%s: changed while it was read (the app is writing it); check again"
                     % config.path(relative))  # fmt: skip

    def _copy_file(self, relative: str, copy: str) -> None:
        """One file of the db into the private folder, at most DB_COPY_LIMIT bytes, by
        the kernel where it can (sendfile: a 56 MiB db in a few ms more than its read)."""
        config = self.config
        try:
            source = config.open(relative)
        except OSError as exc:
            raise Unread("%s: %s" % (config.path(relative), exc.strerror))
        try:
            target = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600)
            try:
                done = 0
                while done <= DB_COPY_LIMIT:
                    try:
                        sent = os.sendfile(target, source, done, 1 << 24)
                    except (OSError, AttributeError):  # not Linux, or not for these files
                        os.lseek(source, done, os.SEEK_SET)
                        sent = os.write(target, os.read(source, 1 << 20))
                    if not sent:
                        break
                    done += sent
            finally:
                os.close(target)
        except OSError as exc:
            raise Unread("%s: %s" % (config.path(relative), exc.strerror))
        finally:
            os.close(source)
        if done > DB_COPY_LIMIT:
            limit = human_size(DB_COPY_LIMIT)
            raise Unread("%s: grew over %s while it was read" % (config.path(relative), limit))

    def _in_place(self, files: Dict[str, Tuple[int, int, int]]) -> str:
        """The URI of the db read where it is: through its folder's descriptor (opened
        beneath the config folder), so that no symlink on the way is followed."""
        from urllib.parse import quote

        config, relative = self.config, self.relative
        try:
            self.folder = config.open(os.path.dirname(relative), directory=True)
        except OSError as exc:
            raise Unread("%s: %s" % (config.path(relative), exc.strerror))
        name = "/proc/self/fd/%d/%s" % (self.folder, os.path.basename(relative))
        quiet = "-wal" not in files and "-journal" not in files  # nothing to replay
        return "file:%s?mode=ro%s" % (quote(name), "&immutable=1" if quiet else "")

    def __exit__(self, *exc: Any) -> None:
        import shutil

        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.folder >= 0:
            os.close(self.folder)
            self.folder = -1
        if self.private:
            shutil.rmtree(self.private, ignore_errors=True)


# -- --check (host): layout and filesystem, from the plan and the mount table ----------
# The look is the creator's plan (with stats): what is missing or in the way, then
# every boundary inside the tree (another device, a mount point, a symlink) and the
# type of data/'s filesystem, graded by whether an import crosses it.

# Filesystems that lack hardlinks, or often refuse them.
NO_HARDLINKS = {"vfat", "msdos", "fat", "exfat"}
# Network and shared folders: hardlinks only where the server has them (Samba, Windows).
SERVER_HARDLINKS = {"cifs", "smb3", "smbfs", "9p", "vboxsf"}
# Unions of several disks: a link works only where both paths land on one disk.
UNIONS = {"fuse.mergerfs", "mergerfs", "fuse.shfs", "fuse.unionfs", "fuse.unionfs-fuse"}
RAM_FILESYSTEMS = {"tmpfs", "ramfs", "rootfs"}  # rootfs: Unraid runs from RAM
# Filesystems with subvolumes: another device to links and moves, and no mount to show it.
SUBVOLUMES = {"btrfs", "bcachefs"}
# What the type of data/'s filesystem means: the finding's kind, its text (with the type
# for %s) and its fix.  A union is a note instead: the probes tell for every pair.
FILESYSTEM_TYPES: Tuple[Tuple[Set[str], str, str, str], ...] = (
    (NO_HARDLINKS, "no-hardlinks", "%s does not support hardlinks (or refuses them)",
     "put data/ on a filesystem with hardlinks: ext4, xfs, btrfs, zfs"),
    (SERVER_HARDLINKS, "server-hardlinks", "data/ is a %s share: hardlinks work only where "
     "the server has them (the probes tell), and only inside one share", "best: run the "
     "apps on the machine that holds the disks; else one share for all of data/, mounted once"),
    ({"overlay"}, "overlay", "data/ is on %s: a hardlink of a file of a lower layer copies "
     "it up first (the space is used twice) and a folder rename fails with EXDEV",
     "put data/ on the disk itself, not inside a container's or a live system's overlay"),
    (RAM_FILESYSTEMS, "ram", "data/ is on %s, in memory: everything in it is gone at the next "
     "reboot (on Unraid: the array or pool wasn't mounted when it was made)",
     "put data/ on a disk: check --path (is the array started?)"),
)  # fmt: skip


def layout_findings(steps: Sequence[Step]) -> List[Finding]:
    """Each conflict, and each topmost missing folder with how many lie below it."""
    findings: List[Finding] = []
    again = creator_command(steps)
    absent: Set[Tuple[str, ...]] = set()
    for step in steps:
        parts = step.folder.parts
        if parts[:-1] in absent:  # below one already said
            absent.add(parts)
        elif step.action == CONFLICT:
            absent.add(parts)
            findings.append(
                finding(
                    "conflict",
                    step.path,
                    step.detail + " is in the way",
                    "mv %s %s && %s" % (quote(step.path), quote(step.path + ".old"), again),
                )
            )
        elif step.action == CREATE:
            absent.add(parts)
            below = sum(1 for s in steps if s.folder.parts[: len(parts)] == parts) - 1
            detail = "missing" + (" (and the %d folders below it)" % below if below else "")
            findings.append(finding("missing", step.path, detail, again))
    return findings


def symlink_target(step: Step) -> str:
    """What a symlinked tree folder points to, as written in the link."""
    assert step.symlink and step.detail.startswith(SYMLINK_TO)
    return step.detail[len(SYMLINK_TO) :]


def crossed_by_import(parts: Tuple[str, ...], pairs: Pairs) -> bool:
    """Whether an import (complete/<cat> -> media/<cat>) crosses a boundary at parts."""
    for _, src, dst in pairs:
        if (src[: len(parts)] == parts) != (dst[: len(parts)] == parts):
            return True
        if parts[: len(src)] == src or parts[: len(dst)] == dst:  # inside an import folder
            return True
    return False


def filesystem_findings(
    walk: Walk, steps: Sequence[Step], mounts: Optional[Sequence[Mount]], pairs: Pairs
) -> Tuple[List[Finding], List[str]]:
    """Every boundary inside the tree (another device, a mount point, a symlink
    elsewhere), graded by whether an import crosses it; the filesystem's type.

    mounts is None where there is no mount table: st_dev alone decides.
    """
    root = steps[0]
    assert root.st is not None and root.folder.parts == (DATA,)
    found: Dict[str, Finding] = {}
    real_root = real_path_of(walk.fds[(DATA,)], root.path)
    root_mount = mount_of(real_root, mounts) if mounts else None
    devices = {step.folder.parts: step.st.st_dev for step in steps if step.st is not None}
    for step in steps[1:]:
        if step.st is None:
            continue
        parts = step.folder.parts
        if step.symlink:
            item = _symlink_finding(walk, step, root.st, mounts, root_mount, real_root, pairs)
            if item is not None:
                found[step.path] = item
        elif step.st.st_dev != root.st.st_dev and devices.get(parts[:-1]) == root.st.st_dev:
            # Only where the tree first leaves data/'s device, not everything below.
            detail, fix = device_boundary(root_mount)
            found[step.path] = boundary(parts, step.path, "other-filesystem", detail, fix, pairs)
    for mount in mounts or ():
        if mount.point != real_root and inside(mount.point, real_root):
            rel = tuple(os.path.relpath(mount.point, real_root).split("/"))
            path = os.path.join(root.path, *rel)
            found[path] = boundary(
                (DATA,) + rel,
                path,
                "mount-point",
                "a mount point (%s): links and moves across it fail with EXDEV"
                % describe_mount(mount),
                "",
                pairs,
            )
    findings = [found[path] for path in sorted(found)]
    if root_mount is None:
        return findings, []
    more, notes = filesystem_type(root.path, root_mount)
    return findings + more, notes


def filesystem_type(path: str, root_mount: Mount) -> Tuple[List[Finding], List[str]]:
    """What the type of the filesystem data/ is on means (path: data/'s)."""
    findings: List[Finding] = []
    notes = ["data/ is on %s, mounted at %s" % (describe_mount(root_mount), root_mount.point)]
    for types, kind, detail, fix in FILESYSTEM_TYPES:
        if root_mount.fstype in types:
            findings.append(finding(kind, path, detail % root_mount.fstype, fix))
            break
    else:
        if root_mount.fstype in UNIONS:
            notes.append(
                "%s is a union of disks: a hardlink works only where both paths sit on one "
                "disk; the probes tell for every import pair" % root_mount.fstype
            )
    return findings, notes


def device_boundary(root_mount: Optional[Mount]) -> Tuple[str, str]:
    """What a folder on another device than data/ with no mount there is, and its fix."""
    if root_mount is not None and root_mount.fstype == "btrfs":  # no mount: a subvolume
        return (
            "a btrfs subvolume: another filesystem to links and moves, no mount",
            "make it a plain folder: make one beside it, mv the contents in, btrfs "
            "subvolume delete the old one, and give the new one its name",
        )
    return "on another filesystem than data/", ""


def library_boundaries(
    walk: Walk, steps: Sequence[Step], root_mount: Optional[Mount], pairs: Pairs
) -> List[Finding]:
    """The folders right below each category of media/ (a show's, a movie's) on another
    filesystem than the category (a btrfs subvolume per show): an import into one is
    EXDEV.  Their folders only: the library's files are never listed one by one."""
    findings: List[Finding] = []
    tree = {step.folder.parts for step in steps}
    for step in steps:
        parts = step.folder.parts
        if step.st is None or step.symlink or parts[:2] != (DATA, MEDIA) or len(parts) < 3:
            continue
        try:
            fd = walk.open(parts)
            names = subfolder_names(fd)
        except (Error, OSError):
            continue
        for name in names:
            if parts + (name,) in tree:
                continue  # a folder of the tree: looked at as such
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != step.st.st_dev:
                detail, fix = device_boundary(root_mount)
                findings.append(boundary(parts + (name,), walk.path(parts + (name,)),
                                         "other-filesystem", detail, fix, pairs))  # fmt: skip
    return findings


def boundary(
    parts: Tuple[str, ...], path: str, kind: str, detail: str, fix: str, pairs: Pairs
) -> Finding:
    """A boundary at parts: a problem where an import crosses it, else a warning."""
    if crossed_by_import(parts, pairs):
        return finding(
            kind,
            path,
            detail,
            fix
            or "keep the whole data/ tree on one filesystem and one mount: move this "
            "folder's contents into the tree's own filesystem, and remove the mount "
            "or symlink",
        )
    why = (
        "a finished download is copied, not moved, from incomplete/"
        if INCOMPLETE in parts
        else "no import writes here"
    )
    return finding(
        kind,
        path,
        detail + "; no import crosses it (%s)" % why,
        "fine if you meant it; otherwise keep it on data/'s filesystem",
        severity=WARNING,
    )


def _symlink_finding(
    walk: Walk,
    step: Step,
    root_st: os.stat_result,
    mounts: Optional[Sequence[Mount]],
    root_mount: Optional[Mount],
    real_root: str,
    pairs: Pairs,
) -> Optional[Finding]:
    """A folder of the tree that is a symlink: to another filesystem or mount, outside
    data/, or inside it by an absolute path a container doesn't have; else None."""
    assert step.st is not None
    parts = step.folder.parts
    real = real_path_of(walk.fds[parts], step.path)
    mount = mount_of(real, mounts) if mounts else None
    if step.st.st_dev != root_st.st_dev or mount != root_mount:
        where = " (%s)" % describe_mount(mount) if mount else ""
        return boundary(
            parts,
            step.path,
            "symlink-elsewhere",
            "a symlink to %s, on another filesystem or mount%s" % (real, where),
            "",
            pairs,
        )
    if not inside(real, real_root):
        return finding(
            "symlink-outside",
            step.path,
            "a symlink to %s, outside data/: imports on this host work, but a "
            "container given data/ sees it dangling or pointing elsewhere" % real,
            "move the folder into data/ and remove the symlink (or mount its "
            "target at the same path in every container)",
        )
    if os.path.isabs(symlink_target(step)):
        # Inside data/ on the host, but by the host's path: a container that
        # mounts data/ at /data has no such path.
        parent = real_path_of(walk.fds[parts[:-1]], os.path.dirname(step.path))
        relative = os.path.relpath(real, parent)
        return finding(
            "symlink-absolute",
            step.path,
            "a symlink by absolute path to %s: imports on this host work, but a "
            "container that mounts data/ at another path (/data) sees it dangling"
            % symlink_target(step),
            "make it relative: ln -sfn %s %s" % (quote(relative), quote(step.path)),
        )
    return None


# -- --check (host): permissions, from the mode bits -----------------------------------
# Who may write where, from the plan's stats: the mode bits and the owner of each
# folder, for the containers' user (--owner).  The probes below then prove it.

DENIED = (errno.EACCES, errno.EPERM)  # the user may not: a permissions finding


def can_write(st: os.stat_result, uid: int, gid: int, groups: AbstractSet[int]) -> bool:
    """Whether uid (gid -1 for unknown, with groups) may add and remove names in a
    folder, by its owner and mode bits alone (no ACLs); uid -1 is nobody's uid."""
    if uid == 0:  # root writes anywhere
        return True
    if uid != -1 and st.st_uid == uid:
        bits = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid in groups:
        bits = stat.S_IWGRP | stat.S_IXGRP
    else:
        bits = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & bits == bits


def writable_findings(
    steps: Sequence[Step],
    owner: Owner,
    groups: Set[int],
    imported: AbstractSet[str],
    wrote: AbstractSet[str] = frozenset(),
) -> List[Finding]:
    """Folders that owner could not write, from mode bits and ownership (no ACLs): one
    finding per owner and mode that stops it (one cause, its folders in paths).  A
    problem where a download or an import writes (imported), else a warning: only a new
    category needs those; a warning too where the probe as that user wrote all the same
    (wrote: an ACL, a group the bits don't show)."""
    causes: Dict[Tuple[int, int, int, bool], List[str]] = {}
    folders = 0
    for step in steps:
        st = step.st
        if st is None:
            continue
        folders += 1
        if not can_write(st, owner.uid, owner.gid, groups):
            key = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), step.path in wrote)
            causes.setdefault(key, []).append(step.path)
    fix = creator_command(steps, " --owner " + quote(owner.spec))
    findings: List[Finding] = []
    for (uid, gid, mode, probed), paths in causes.items():
        where = "here" if len(paths) == 1 else "%d of the tree's %d folders" % (len(paths), folders)
        detail = "%s can't write %s (owner %d:%d, mode %04o)" % (owner.spec, where, uid, gid, mode)
        severity = PROBLEM
        if probed:
            detail += ", but the probe as that user wrote there (an ACL?)"
            severity = WARNING
        elif not any(path in imported for path in paths):
            detail += "; no import writes there"
            severity = WARNING
        findings.append(finding("not-writable", paths[0], detail, fix, severity=severity,
                                paths=paths))  # fmt: skip
    return findings


def sticky_findings(steps: Sequence[Step]) -> List[Finding]:
    """Folders with the sticky bit: there only a file's owner (or the folder's) may
    move or delete it, so an app running as another user than the one that made a
    download can't move it out (usenet imports) or clean up.  One user for every
    app works: a warning, one per mode (its folders in paths)."""
    modes: Dict[int, List[str]] = {}
    for step in steps:
        if step.st is not None and step.st.st_mode & stat.S_ISVTX:
            modes.setdefault(stat.S_IMODE(step.st.st_mode), []).append(step.path)
    findings = []
    for mode, paths in modes.items():
        fix = "chmod -t " + " ".join(quote(path) for path in paths)
        if len(paths) > REPORT_SAME:
            fix = creator_command(steps, " --mode %04o" % (mode & ~stat.S_ISVTX))
        findings.append(finding(
            "sticky", paths[0],
            "sticky (mode %04o)%s: only a file's owner can move or delete it there, so an app "
            "running as another user can't move a download out or clean up"
            % (mode, "" if len(paths) == 1 else " in %d folders" % len(paths)),
            fix, paths=paths,
        ))  # fmt: skip
    return findings


def import_folders(pairs: Pairs) -> Set[Tuple[str, ...]]:
    """The folders downloads and imports write into: each pair's two, and incomplete/."""
    folders = {parts for _, src, dst in pairs for parts in (src, dst)}
    folders.update((DATA, source, INCOMPLETE) for source, _, _ in pairs)
    return folders


def imported_paths(pairs: Pairs, walk: Walk) -> Set[str]:
    """The paths of the folders downloads and imports write into (see import_folders)."""
    return {walk.path(parts) for parts in import_folders(pairs)}


def groups_of(uid: int, gid: int) -> List[int]:
    """The host's groups of uid: its login group and supplementary ones, with gid first."""
    groups = [gid]
    try:
        import pwd

        entry = pwd.getpwuid(uid)
        groups += [entry.pw_gid] + list(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except (ImportError, KeyError, OSError, AttributeError):
        pass
    return sorted(set(groups), key=groups.index)


def probe_identity(owner: Optional[Owner]) -> Tuple[int, int, List[int]]:
    """Whom the probes should run as: --owner's ids, filled in from the caller."""
    uid = os.getuid() if owner is None or owner.uid == -1 else owner.uid
    if owner is not None and owner.gid != -1:
        gid = owner.gid
    else:
        try:
            import pwd

            gid = pwd.getpwuid(uid).pw_gid
        except (ImportError, KeyError):
            gid = os.getgid()
    return uid, gid, groups_of(uid, gid)


# -- --check (host): probes, a real hardlink and move for every import pair ------------
# For each import pair a file is made in incomplete/, moved into complete/<cat>,
# then hardlinked and moved into media/<cat>, as the containers' user where root
# can become it.  Everything a probe makes carries a marker and is removed again;
# what a killed check left is removed by the next one.

PROBE_PREFIX = ".create_media_structure-probe"
PROBE_NAME = PROBE_PREFIX  # in incomplete/ and complete/<cat>; .l and .m in media/<cat>
PROBE_FILES = (PROBE_NAME, PROBE_NAME + ".l", PROBE_NAME + ".m")
PROBE_FOLDER = PROBE_NAME + ".d"  # on a union: a new folder in media/<cat>, a .l in it
PROBE_MARKER = b"create_media_structure.py --check probe\n"


class Stage:
    """What a probe was doing where it failed (or stopped): a ProbeResult's stage."""

    REACH = "reach"  # opening one of the pair's folders (folder: that folder)
    CREATE = "create"  # making the probe file (folder: where)
    FINISH = "finish"  # moving it from incomplete/ into complete/<cat>
    HARDLINK = "hardlink"  # linking it into media/<cat>
    MOVE = "move"  # moving it into media/<cat>
    NEW_FOLDER = "new-folder"  # linking it into a new folder of media/<cat> (a union)
    REMOVE = "remove"  # removing the hardlink again
    SAME_FOLDER = "same-folder"  # complete/<cat> and media/<cat> are one folder
    TAKEN = "taken"  # a name the probe needs is someone else's (folder: that name)
    LOCKED = "locked"  # a folder is immutable or append-only (folder: that folder)
    DISTURBED = "disturbed"  # a probe file taken away or changed halfway


# A probe result: (pair index, stage, the folder it concerns as parts or (), errno,
# text).  Plain tuples, strings and numbers: marshal carries them from the probe child.
ProbeResult = Tuple[int, str, Tuple[str, ...], int, str]


class ProbePlan(NamedTuple):
    token: str
    pairs: List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]]
    incoming: List[Optional[Tuple[str, ...]]]  # each pair's incomplete/, if there
    fuse: List[bool]  # whether inode numbers may differ between two names of a file


def probe_pairs(
    open_dir: Callable[[Tuple[str, ...]], int],
    probes: ProbePlan,
    close: bool,
    between: Callable[[], None],
) -> List[ProbeResult]:
    """For each pair: a file from incomplete/ moved into complete/<cat>, then hardlinked
    and moved from there into media/<cat>; everything made is removed again.

    A hardlink counts where both names then have a link count of 2 and the same
    inode; through FUSE (mergerfs without use_ino) the two names may show other
    inode numbers and the old name a cached count of 1, so there the new name's
    link count of 2 decides.
    open_dir gives a folder's descriptor; close says whether they are ours to close;
    between runs before each pair (a chance to stop).
    """
    results: List[ProbeResult] = []
    for index, (_, src, dst) in enumerate(probes.pairs):
        between()
        name = probes.token
        wanted = [src, dst] + [p for p in probes.incoming[index : index + 1] if p is not None]
        opened: Dict[Tuple[str, ...], int] = {}
        try:
            for parts in wanted:
                if parts not in opened:
                    try:
                        opened[parts] = open_dir(parts)
                    except OSError as exc:
                        where = _blocker(exc.filename) if close and exc.filename else ""
                        results.append((index, Stage.REACH, parts, exc.errno or 0, where))
            if len(opened) == len(set(wanted)):
                try:
                    results += _probe_one(index, name, opened, src, dst, probes)
                except OSError as exc:  # a probe file taken away or changed meanwhile
                    results.append((index, Stage.DISTURBED, (), exc.errno or 0, ""))
        finally:
            for parts, fd in opened.items():
                _remove_probes(fd, name, parts == dst)
                if close:
                    os.close(fd)
    return results


def _blocker(path: str) -> str:
    """The first folder on the way to path that this user can't get through: the parent
    of the first name it can't look at, or that name itself (a FUSE mount without
    allow_other refuses other users at its mount point)."""
    parts = path.split("/")
    for end in range(2, len(parts) + 1):
        try:
            os.stat("/".join(parts[:end]))
        except OSError:
            parent = "/".join(parts[: end - 1]) or "/"
            return parent if not os.access(parent, os.X_OK) else "/".join(parts[:end])
    return path


NEW_FOLDER_FIX = (
    "keep all of data/ on one disk of the union: a folder that is on several disks can "
    "get its new folders on any of them (mergerfs: remove the folder's copies on the "
    "other branches; Unraid: include one disk in the share)"
)
# mergerfs with link-exdev makes a symlink where a hardlink would cross its disks; with
# rename-exdev it moves the file aside, into .mergerfs_rename_exdev/ at its root, and
# leaves a symlink to it where the file should have gone.
UNION_SYMLINK = "a union makes one between its disks: mergerfs link-exdev"
UNION_MOVE_SYMLINK = "a union makes one between its disks: mergerfs rename-exdev"
UNION_ASIDE = ".mergerfs_rename_exdev"


def _probe_one(  # noqa: PLR0912, PLR0915 - the stages in the order they run
    index: int,
    name: str,
    opened: Dict[Tuple[str, ...], int],
    src: Tuple[str, ...],
    dst: Tuple[str, ...],
    probes: ProbePlan,
) -> List[ProbeResult]:
    src_fd, dst_fd = opened[src], opened[dst]
    if same_file(os.fstat(src_fd), os.fstat(dst_fd)):
        return [(index, Stage.SAME_FOLDER, (), errno.EEXIST, "")]
    results: List[ProbeResult] = []
    incoming = probes.incoming[index]
    for parts in (src, dst) + ((incoming,) if incoming is not None else ()):
        what = chattr_flag(opened[parts])  # a file made there might never be removed again
        if what:
            results.append((index, Stage.LOCKED, parts, errno.EPERM, what))
            if parts != incoming:
                return results
            incoming = None  # the pair is still probed from complete/
    places = [(src, (name,)), (dst, (name + ".l", name + ".m", PROBE_FOLDER))]
    if incoming is not None:
        places.append((incoming, (name,)))
    for parts, names in places:
        for taken in names:
            try:  # not ours (a leftover was removed before): never overwrite it
                os.stat(taken, dir_fd=opened[parts], follow_symlinks=False)
            except OSError:
                continue
            return results + [(index, Stage.TAKEN, parts + (taken,), errno.EEXIST, "")]
    made = False
    if incoming is not None:
        inc_fd = opened[incoming]
        try:
            _make_probe_file(inc_fd, name)
        except OSError as exc:
            results.append((index, Stage.CREATE, incoming, exc.errno or 0, ""))
        else:
            try:
                os.rename(name, name, src_dir_fd=inc_fd, dst_dir_fd=src_fd)
            except OSError as exc:
                results.append((index, Stage.FINISH, (), exc.errno or 0, ""))
            else:
                made = not stat.S_ISLNK(_arrived(src_fd, name).st_mode)
                if not made:  # then made in complete/ itself, where it should have gone
                    how = "the move arrived as a symlink (%s)" % UNION_MOVE_SYMLINK
                    results.append((index, Stage.FINISH, (), errno.EXDEV, how))
                    _remove_probe_file(src_fd, name)
    if not made:
        try:
            _make_probe_file(src_fd, name)
        except OSError as exc:
            if exc.errno in DENIED:  # the user can't write here: that is what failed the finish
                results = [r for r in results if not (r[1] == Stage.FINISH and r[3] in DENIED)]
            return results + [(index, Stage.CREATE, src, exc.errno or 0, "")]
    before = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
    fuse = probes.fuse[index]
    try:
        os.link(name, name + ".l", src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except OSError as exc:
        results.append((index, Stage.HARDLINK, (), exc.errno or 0, ""))
    else:
        one = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        two = os.stat(name + ".l", dir_fd=dst_fd, follow_symlinks=False)
        # The new name must count two names.  Through FUSE the old name's count may be a
        # cached 1 and the inode numbers differ: there the new name's count decides.
        if stat.S_ISLNK(two.st_mode):
            how = "the hardlink arrived as a symlink (%s)" % UNION_SYMLINK
            results.append((index, Stage.HARDLINK, (), errno.EXDEV, how))
        elif two.st_nlink < 2 or (not fuse and (one.st_nlink < 2 or not same_file(one, two))):
            how = "the hardlink arrived as a copy"
            results.append((index, Stage.HARDLINK, (), errno.EXDEV, how))
        elif fuse:  # a union: the folder an import makes may land on another disk
            results += _probe_new_folder(index, name, src_fd, dst_fd)
        try:
            os.unlink(name + ".l", dir_fd=dst_fd)
        except OSError as exc:  # the clean-up tries again; the report names the file
            results.append((index, Stage.REMOVE, (), exc.errno or 0, ""))
    try:
        os.rename(name, name + ".m", src_dir_fd=src_fd, dst_dir_fd=dst_fd)
    except OSError as exc:
        results.append((index, Stage.MOVE, (), exc.errno or 0, ""))
    else:
        moved = _arrived(dst_fd, name + ".m")
        if stat.S_ISLNK(moved.st_mode):
            how = "the move arrived as a symlink (%s)" % UNION_MOVE_SYMLINK
            results.append((index, Stage.MOVE, (), errno.EXDEV, how))
        elif not fuse and moved.st_ino != before.st_ino:
            results.append((index, Stage.MOVE, (), errno.EXDEV, "the move arrived as a copy"))
    return results


def _probe_new_folder(index: int, name: str, src_fd: int, dst_fd: int) -> List[ProbeResult]:
    """A hardlink into a new folder of media/<cat>, as an import makes one (a show's, a
    season's).  On a union a folder that is on several disks (media/tv) can get its new
    folders on any of them: the link into media/tv works, the import into it fails."""
    results: List[ProbeResult] = []
    os.mkdir(PROBE_FOLDER, 0o700, dir_fd=dst_fd)
    folder_fd = os.open(PROBE_FOLDER, TREE_DIR_FLAGS, dir_fd=dst_fd)
    try:
        try:
            os.link(name, name + ".l", src_dir_fd=src_fd, dst_dir_fd=folder_fd,
                    follow_symlinks=False)  # fmt: skip
        except OSError as exc:
            results.append((index, Stage.NEW_FOLDER, (), exc.errno or 0, ""))
        else:
            made = os.stat(name + ".l", dir_fd=folder_fd, follow_symlinks=False)
            if stat.S_ISLNK(made.st_mode) or made.st_nlink < 2:
                results.append((index, Stage.NEW_FOLDER, (), errno.EXDEV, "it arrived as a copy or "
                                "a symlink"))  # fmt: skip
            os.unlink(name + ".l", dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    os.rmdir(PROBE_FOLDER, dir_fd=dst_fd)
    return results


def _make_probe_file(dir_fd: int, name: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
    fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, PROBE_MARKER)
    finally:
        os.close(fd)


def _arrived(dir_fd: int, name: str) -> os.stat_result:
    """lstat of a name just renamed into place.  Where a union turned the move into a
    symlink, FUSE finds the type of the file it knew changed and fails the first look
    (EIO); the second looks the name up afresh."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def _remove_probe_file(dir_fd: int, name: str, aside: bool = True) -> bool:
    """Remove a probe file: our name, a regular file, holding our marker (nothing else);
    or (aside) where a union moved it aside, the file there and then the symlink to it."""
    try:
        file_fd = os.open(name, os.O_RDONLY | O_NOFOLLOW | os.O_NONBLOCK | O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        return aside and exc.errno == errno.ELOOP and _remove_moved_aside(dir_fd, name)
    try:
        st = os.fstat(file_fd)
        ours = stat.S_ISREG(st.st_mode) and os.read(file_fd, 100) == PROBE_MARKER
    except OSError:  # pragma: no cover - a read error on a tiny file
        ours = False
    finally:
        os.close(file_fd)
    try:
        if ours and same_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), st):
            os.unlink(name, dir_fd=dir_fd)
            return True
    except OSError:  # pragma: no cover - gone meanwhile
        pass
    return False


def _remove_moved_aside(dir_fd: int, name: str) -> bool:
    """The symlink name, left by mergerfs' rename-exdev where a probe file was moved: the
    file it points to is removed first (by the probe file's own rule), then the symlink.
    The target is reached one name at a time, following no symlink on the way."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    parts = target.split("/")
    if UNION_ASIDE not in parts or parts[-1] not in PROBE_FILES:
        return False  # not a probe file moved aside: not ours to touch
    fd = os.open("/", TREE_DIR_FLAGS) if target.startswith("/") else os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            if part not in ("", "."):
                fd, parent = os.open(part, TREE_DIR_FLAGS, dir_fd=fd), fd
                os.close(parent)
        removed = _remove_probe_file(fd, parts[-1], aside=False)  # one symlink, no chain
        if not removed or os.readlink(name, dir_fd=dir_fd) != target:
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove_probes(dir_fd: int, name: str, media: bool) -> None:
    """What a probe may have left in one folder: in media/<cat> its hardlink, its moved
    file and its new folder; elsewhere its file."""
    for suffix in (".l", ".m") if media else ("",):
        _remove_probe_file(dir_fd, name + suffix)
    if media:
        _remove_probe_folder(dir_fd)


def _remove_probe_folder(dir_fd: int) -> bool:
    """The probe's new folder: the probe file in it (by that file's rule), then the
    folder, if that leaves it empty.  True where the probe file was removed."""
    try:
        folder_fd = os.open(PROBE_FOLDER, TREE_DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        removed = _remove_probe_file(folder_fd, PROBE_NAME + ".l")
    finally:
        os.close(folder_fd)
    try:
        os.rmdir(PROBE_FOLDER, dir_fd=dir_fd)
    except OSError:  # something else is in it: not ours to remove
        pass
    return removed


def remove_leftover_probes(walk: Walk, folders: Sequence[Tuple[str, ...]]) -> int:
    """Probe files an earlier, killed check left: our names, regular files, our marker."""
    removed = 0
    for parts in folders:
        try:
            fd = walk.open(parts)
        except Error:
            continue
        removed += sum(_remove_probe_file(fd, name) for name in PROBE_FILES)
        removed += _remove_probe_folder(fd)
    return removed


def plan_probes(steps: Sequence[Step], all_pairs: Pairs) -> ProbePlan:
    """Every import pair whose two folders are there, and each pair's incomplete/."""
    present = {step.folder.parts for step in steps if step.st is not None}
    pairs = [p for p in all_pairs if p[1] in present and p[2] in present]
    incoming: List[Optional[Tuple[str, ...]]] = []
    for source, _, _ in pairs:
        parts = (DATA, source, INCOMPLETE)
        incoming.append(parts if parts in present else None)
    # Fixed names (one pair at a time, under a lock): a killed check's leftovers are
    # found by looking up three names per folder, not by listing big library folders.
    return ProbePlan(PROBE_NAME, pairs, incoming, [False] * len(pairs))


def with_fuse_flags(walk: Walk, probes: ProbePlan, mounts: Optional[Sequence[Mount]]) -> ProbePlan:
    """Mark the pairs that sit on FUSE, where inode numbers don't prove a hardlink."""
    fuse = []
    for _, src, dst in probes.pairs:
        types = set()
        for parts in (src, dst):
            mount = mount_of(real_path_of(walk.open(parts), walk.path(parts)), mounts or ())
            types.add(mount.fstype if mount else "")
        fuse.append(any(fstype.startswith("fuse") for fstype in types))
    return probes._replace(fuse=fuse)


def run_probes(
    walk: Walk,
    steps: Sequence[Step],
    probes: ProbePlan,
    owner: Optional[Owner],
    signals: Signals,
) -> Tuple[List[ProbeResult], str, str, List[str]]:
    """Run the probes as the containers' user where we can become it, else as the caller.

    Returns the results, "UID:GID", as whom in words, and notes.  Whatever a
    probe left (a killed child, a signal) is removed here, through our own
    descriptors, and the folders' times are put back.
    """
    stats = {step.folder.parts: step.st for step in steps if step.st is not None}
    uid, gid, groups = probe_identity(owner)
    notes: List[str] = []
    results: Optional[List[ProbeResult]] = None
    try:
        if is_root() and owner is not None and hasattr(os, "fork"):
            outcome = _probe_in_child(walk, probes, uid, gid, groups)
            if isinstance(outcome, str):
                notes.append(outcome + ": the probes ran as you (uid %d) instead" % os.getuid())
                _clean_after_probes(walk, probes, stats)  # what a killed child left
            else:
                results = outcome
        if results is None:
            uid, gid = os.getuid(), os.getgid()
            results = probe_pairs(
                lambda parts: walk.open(parts, stats.get(parts)), probes, False, signals.poll
            )
            who = "you (uid %d, gid %d)" % (uid, gid)
            if owner is not None:
                who += ", not as %s: that needs root" % owner.spec
        else:
            who = "uid %d, gid %d (groups %s), as the containers will" % (
                uid,
                gid,
                ",".join(str(g) for g in groups),
            )
    finally:
        _clean_after_probes(walk, probes, stats)
    return results, "%d:%d" % (uid, gid), who, notes


def _clean_after_probes(
    walk: Walk, probes: ProbePlan, stats: Dict[Tuple[str, ...], os.stat_result]
) -> None:
    touched: Set[Tuple[str, ...]] = set()
    for index, (_, src, dst) in enumerate(probes.pairs):
        incoming = probes.incoming[index]
        name = probes.token
        for parts in (src, dst, incoming):
            if parts is None:
                continue
            try:
                fd = walk.open(parts, stats[parts])
            except Error:  # replaced meanwhile: nothing of ours is in there
                continue
            touched.add(parts)
            _remove_probes(fd, name, parts == dst)
    for parts in touched:
        st = stats[parts]
        try:
            os.utime(walk.fds[parts], ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError:
            pass


def _probe_in_child(
    walk: Walk, probes: ProbePlan, uid: int, gid: int, groups: List[int]
) -> Union[str, List[ProbeResult]]:
    """Fork, become uid:gid with groups, probe by path as that user: results or why not.

    The child keeps none of our folder descriptors, so every folder above the
    tree must let the user through, as it must let the container.
    """

    def as_the_user() -> Union[str, List[ProbeResult]]:  # pragma: no cover - the child
        for fd in walk.fds.values():
            os.close(fd)
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            return "the system refused to switch to uid %d (%s)" % (uid, exc.strerror)
        return probe_pairs(
            lambda parts: os.open(walk.path(parts), DIR_FLAGS), probes, True, nothing
        )

    try:  # the parent stops and cleans up: the child ignores the signals that stop it
        child = fork_child(as_the_user, ("SIGINT", "SIGTERM", "SIGHUP"))
    except OSError as exc:
        return "could not start a process to run as uid %d (%s)" % (uid, exc.strerror)
    result: Optional[List[ProbeResult]] = join_child(child)
    return "the probe process as uid %d failed" % uid if result is None else result


def unprobed_pairs(results: Sequence[ProbeResult], probes: ProbePlan) -> Set[int]:
    """The pairs whose hardlink and move were never tried (or not to the end): a folder
    the probe could not reach, no file of its own in complete/<category>, a name in the
    way, one folder, a folder locked, a probe file taken away halfway."""
    return {
        index
        for index, stage, folder, _, _ in results
        if stage in (Stage.REACH, Stage.TAKEN, Stage.SAME_FOLDER, Stage.DISTURBED)
        or (stage == Stage.CREATE and folder == probes.pairs[index][1])
        or (stage == Stage.LOCKED and INCOMPLETE not in folder)
    }


def locked_finding(walk: Walk, folder: Tuple[str, ...], flag: str) -> Finding:
    """An immutable or append-only folder of an import pair: a problem, but for
    incomplete/ (no import crosses it)."""
    letter = flag[0]  # chattr's letter: i, a
    forbidden = "add, rename or delete" if flag == "immutable" else "rename or delete"
    if INCOMPLETE not in folder:
        fails, severity = "imports, upgrades or clean-ups fail", PROBLEM
    elif flag == "immutable":
        fails, severity = "the client can't download here", WARNING
    else:
        fails, severity = "the client can't move a finished download out", WARNING
    path = walk.path(folder)
    return finding(
        "locked",
        path,
        "%s (chattr +%s): not even root may %s a file here, so %s; not probed here"
        % (flag, letter, forbidden, fails),
        "if you didn't mean it: chattr -%s %s (lsattr -d shows it)" % (letter, quote(path)),
        severity=severity,
    )


# What each stage's failure says: its kind, the folder it names (src, dst, the pair's
# incomplete/, or the result's own folder), its text (formatted with the pair's src and
# dst below data/, its source, the reason and the probe's own path) and its fix ("":
# by the errno).  A stage whose errno is no news (a name in the way, one folder) has
# none in the finding.
PROBE_FINDINGS: Dict[str, Tuple[str, str, str, str]] = {
    Stage.REACH: ("reach-failed", "folder", "the probe could not open this folder: %(reason)s",
                  ""),
    Stage.CREATE: ("create-failed", "folder", "the probe could not create a file here: "
                   "%(reason)s", ""),
    Stage.FINISH: ("finish-failed", "incoming", "a move from %(source)s/incomplete to %(src)s "
                   "failed: %(reason)s; the client copies each finished download instead", ""),
    Stage.HARDLINK: ("hardlink-failed", "src", "hardlink from %(src)s to %(dst)s failed: "
                     "%(reason)s", ""),
    Stage.MOVE: ("move-failed", "src", "move from %(src)s to %(dst)s failed: %(reason)s", ""),
    Stage.NEW_FOLDER: ("new-folder-failed", "dst", "a hardlink from %(src)s into a new folder "
                       "in %(dst)s failed: %(reason)s; into %(dst)s itself it works, so the "
                       "union puts the folders an import makes (a show's, a season's) on "
                       "another disk than the download", NEW_FOLDER_FIX),
    Stage.REMOVE: ("remove-failed", "dst", "removing the probe's hardlink %(probe)s failed: "
                   "%(reason)s (so may an upgrade or a clean-up that removes a file here)", ""),
    Stage.SAME_FOLDER: ("same-folder", "src", "%(src)s and %(dst)s are the same folder",
                        errno_fix("probe", errno.EEXIST)),
    Stage.TAKEN: ("probe-blocked", "folder", "a file with the probe's name is in the way: "
                  "%(src)s -> %(dst)s not probed", "remove it if it isn't yours, and check "
                  "again"),
    Stage.DISTURBED: ("probe-disturbed", "src", "the probe of %(src)s -> %(dst)s failed "
                      "halfway: %(reason)s (did something remove or replace its file "
                      "meanwhile?); not probed", "check again"),
}  # fmt: skip
NO_ERRNO = (Stage.TAKEN, Stage.SAME_FOLDER)
REACH_DENIED_FIX = (
    "every folder from / down to this one must let the user through (x for its owner, "
    "group or others): run again without --check, with --owner PUID:PGID; a FUSE mount "
    "(mergerfs) needs the option allow_other"
)


def pass_fix(folder: str, probed_as: str) -> str:
    """The command that lets the probes' user (UID:GID) through a folder above data/,
    which --owner never touches: x for the class of users it falls in."""
    try:
        st = os.lstat(folder)
        uid, gid = (int(number) for number in probed_as.split(":"))
    except (OSError, ValueError):
        return REACH_DENIED_FIX
    who = "u" if st.st_uid == uid else "g" if st.st_gid in groups_of(uid, gid) else "o"
    return "chmod %s+x %s" % (who, quote(folder))


def probe_findings(
    results: Sequence[ProbeResult], probes: ProbePlan, walk: Walk, probed_as: str = ""
) -> List[Finding]:
    """Name the stage that failed, for which pair, graded: imports failing are problems;
    probed_as: as whom the probes ran (UID:GID), whom a fix lets through."""
    findings: List[Finding] = []
    for index, stage, folder, number, text in results:
        if stage == Stage.LOCKED:
            findings.append(locked_finding(walk, folder, text))
            continue
        source, src, dst = probes.pairs[index]
        kind, where, template, fix = PROBE_FINDINGS[stage]
        places = {"src": src, "dst": dst, "incoming": (DATA, source, INCOMPLETE), "folder": folder}
        path = walk.path(places[where])
        reason = text or os.strerror(number)
        section = ""
        if stage in (Stage.REACH, Stage.CREATE):  # text, if any, is the folder in the way
            reason = os.strerror(number)
            section = "permissions" if number in DENIED else ""
            if stage == Stage.REACH and number in DENIED:
                fix = REACH_DENIED_FIX
            if stage == Stage.REACH and text and text != path:
                path, template = text, "the probes can't get through this folder: %(reason)s"
                if number in DENIED and not inside(path, walk.path((DATA,))):
                    fix = pass_fix(path, probed_as)
        detail = template % {
            "src": "/".join(src[1:]), "dst": "/".join(dst[1:]), "source": source,
            "reason": reason, "probe": walk.path(dst + (probes.token + ".l",)),
        }  # fmt: skip
        findings.append(finding(
            kind, path, detail, fix or errno_fix("probe", number),
            section=section,
            errno_name="" if stage in NO_ERRNO else errno.errorcode.get(number, ""),
        ))  # fmt: skip
    unique: Dict[Tuple[str, str, str], Finding] = {}
    for item in findings:  # one folder that blocks many pairs is said once
        unique.setdefault((item.kind, item.path, item.detail), item)
    return list(unique.values())


def probe_wrote(
    probes: ProbePlan, results: Sequence[ProbeResult], unprobed: Set[int], walk: Walk
) -> Set[str]:
    """The folders the probes wrote into as the user: where the mode bits say it can't,
    they were wrong about it (an ACL, a group the bits don't show).  unprobed: the
    pairs whose probes wrote nothing (see unprobed_pairs)."""
    written: Set[str] = set()
    failed = {(index, stage, folder) for index, stage, folder, _, _ in results}
    for index, (_, src, dst) in enumerate(probes.pairs):
        if index in unprobed:
            continue
        written.add(walk.path(src))  # its file was made there, or moved in from incomplete/
        if (index, Stage.HARDLINK, ()) not in failed or (index, Stage.MOVE, ()) not in failed:
            written.add(walk.path(dst))
        incoming = probes.incoming[index]
        if incoming is not None and (index, Stage.CREATE, incoming) not in failed:
            written.add(walk.path(incoming))
    return written


# -- --check (host): the audit of lone files in complete/ ------------------------------
# Regular files below complete/ with a link count of 1 (not imported, imported as a
# copy, or kept only to seed): information, never a finding.  The same walk finds what
# can be: downloads the importers' users can't hardlink or move, and download folders
# on another filesystem than their category.

AUDIT_ITEMS_PER_WORKER = 16  # fewer download folders than this a process: no fork
AUDIT_RUNS = 255  # the most runs the download folders are cut into: a ticket is one byte
AUDIT_BIGGEST = 5  # downloads named in the report, per source
Item = Tuple[int, Tuple[str, ...], str]  # a download folder: its source, tree folder, name
# files, bytes, unreadable folders, biggest downloads as (bytes, files, name, item)
SourceResult = Tuple[int, int, int, List[Tuple[int, int, str, int]], "Access"]
ShareResult = Tuple[List[SourceResult], List[int]]  # a result per source, the runs done
# (bytes, files, folder, loose): loose means the files directly in a tree folder (a
# single-file download lands there), else the folder is one download
Biggest = Tuple[int, int, str, bool]
Totals = Tuple[int, int, int, List[Biggest], "Access"]  # the same, biggest by path
# What the audit's walk found besides sizes: the files the containers' user can't hardlink
# (the first as "path (owner, mode)"), the folders it can't move or empty (the first
# likewise), and the download folders on another filesystem than their category (the
# first's path): see cannot_link_findings and download_boundaries.
Access = Tuple[int, str, int, str, int, str]
NO_ACCESS_ISSUE: Access = (0, "", 0, "", 0, "")
# What the audit looks at besides sizes: the users it checks the downloads' links and
# moves for, each as (its name in the report, uid, its groups); whether
# fs.protected_hardlinks is on; whether to compare each folder's device with its category's
# (where no mount shows a boundary: a btrfs subvolume).
Identity = Tuple[str, int, FrozenSet[int]]
Who = Tuple[Tuple[Identity, ...], bool, bool]
SIZES_ONLY: Who = ((), False, False)


class Audit(NamedTuple):
    source: str
    path: str
    files: int  # regular files with a link count of 1
    bytes: int
    biggest: List["Biggest"]  # largest first
    unreadable: int  # folders that could not be listed
    access: "Access"  # what --owner's user could not link or move; other filesystems


def audit(
    walk: Walk,
    trees: Sequence[Tuple[str, Sequence[Tuple[str, ...]]]],
    progress: Progress,
    poll: Callable[[], None],
    who: Who = SIZES_ONLY,
) -> List[Audit]:
    """Regular files with a link count of 1 below each source's complete/; with who,
    also the downloads that user could not hardlink, and the folders it could not move.

    The tree folders are listed here; the download folders found in them (the
    folders that are not part of the tree), of all sources together, are cut into
    runs of neighbours, and one process per core (none where there are few) takes
    the next run from a pipe of tickets until none is left: the walk is CPU-bound
    in Python on a warm cache and I/O-bound on a cold one, processes overlap both
    where threads would queue on the GIL, and a process slowed by anything (a
    busy core, a slow disk) just takes fewer runs.  Each name is looked at
    relative to its folder's descriptor (as find's fts does), which spares the
    kernel resolving a long path per file.  Each download is summed and dropped,
    keeping only the biggest few: memory stays flat however many files there are.
    poll runs before each download folder: a stop ends the workers too.
    """
    import heapq

    items: List[Item] = []
    totals: List[Totals] = []
    for index, (_, tree) in enumerate(trees):
        found, biggest, files, nbytes, unreadable, access = _list_downloads(
            walk, index, tree, progress, who
        )
        items += found
        totals.append((files, nbytes, unreadable, biggest, access))
    runs = min(AUDIT_RUNS, len(items))
    workers = max(1, min(_audit_workers(), len(items) // AUDIT_ITEMS_PER_WORKER))
    tickets = _ticket_pipe(runs) if workers > 1 else None
    if tickets is None:  # one process, or no pipe to share through
        workers = 1
    progress.workers = workers
    children = [_fork_share(walk, items, tickets, runs, who) for _ in range(1, workers)]
    try:
        shares = [_audit_share(walk, items, _tickets(tickets, runs), runs, progress, poll, who)]
    except BaseException:  # stopped: the workers stop too (they only read), and are reaped
        import signal

        for child in children:
            if child is not None:
                os.kill(child[0], signal.SIGKILL)
                join_child(child)
        raise
    finally:
        if tickets is not None:
            os.close(tickets)
    for child in children:
        result = join_child(child) if child is not None else None
        if result is not None:  # else the runs it took are done again below
            shares.append(result)
    missing = set(range(runs)).difference(*(done for _, done in shares))
    if missing:
        shares.append(_audit_share(walk, items, iter(sorted(missing)), runs, progress, poll, who))
    audits = []
    for index, (source, tree) in enumerate(trees):
        files, nbytes, unreadable, biggest, access = totals[index]
        for share_result, _ in shares:
            more = share_result[index]
            files, nbytes, unreadable = files + more[0], nbytes + more[1], unreadable + more[2]
            biggest = biggest + [
                (size, count, walk.path(items[at][1] + (items[at][2],)), False)
                for size, count, _, at in more[3]
            ]
            access = _add_access(access, more[4])
        audits.append(Audit(source, walk.path(tree[0]), files, nbytes,
                            heapq.nlargest(AUDIT_BIGGEST, biggest), unreadable,
                            access))  # fmt: skip
    return audits


def _list_downloads(
    walk: Walk, source: int, tree: Sequence[Tuple[str, ...]], progress: Progress, who: Who
) -> Tuple[List[Item], List[Biggest], int, int, int, Access]:
    """The download folders in one source's tree folders, and the loose files there:
    (items, biggest, files, bytes, unreadable folders, what who can't do to them)."""
    items: List[Item] = []
    biggest: List[Biggest] = []
    files = nbytes = unreadable = 0
    access = NO_ACCESS_ISSUE
    for parts in tree:
        try:
            walk.open(parts)
        except Error:
            pass
        fd = walk.fds.get(parts)
        if fd is None:
            unreadable += 1
            continue
        loose_files = loose_bytes = seen = 0
        subfolders = {other[-1] for other in tree if other[:-1] == parts}  # the tree's own
        if len(parts) == 2:  # the source itself: its downloads grow in incomplete/
            subfolders |= {INCOMPLETE, COMPLETE}
        try:
            for name, is_dir, st in folder_entries(fd, lone_only=not who[0]):
                seen += 1
                if is_dir:
                    if name not in subfolders:
                        items.append((source, parts, name))
                    continue
                if st is None:
                    continue
                label = blocked_by(st, who) if who[0] else ""
                if label:
                    access = _add_access(access, (1, _owned(walk.path(parts + (name,)), st, label),
                                                  0, "", 0, ""))  # fmt: skip
                if st.st_nlink == 1:
                    loose_files, loose_bytes = loose_files + 1, loose_bytes + st.st_size
        except OSError:
            unreadable += 1
        progress.tick(seen)
        files, nbytes = files + loose_files, nbytes + loose_bytes
        if loose_files:
            biggest.append((loose_bytes, loose_files, walk.path(parts), True))
    return items, biggest, files, nbytes, unreadable, access


def blocked_by(st: os.stat_result, who: Who) -> str:
    """The first user of who that may not hardlink a file ("" where all may): with
    fs.protected_hardlinks on, only its owner or a user who may read and write it may,
    and never a setuid or setgid-executable file."""
    identities, protected, _ = who
    if not protected:
        return ""
    mode = st.st_mode
    for label, uid, groups in identities:
        if uid in (0, st.st_uid):
            continue
        bits = 0o060 if st.st_gid in groups else 0o006
        if mode & bits != bits or mode & 0o4000 or mode & 0o2010 == 0o2010:
            return label
    return ""


def unwritable_by(st: os.stat_result, who: Who) -> str:
    """The first user of who that may not move files out of a folder, or the folder."""
    for label, uid, groups in who[0]:
        if not can_write(st, uid, -1, groups):
            return label
    return ""


def _owned(path: str, st: os.stat_result, label: str = "") -> str:
    owner = "%s (owner %d:%d, mode %04o)" % (path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return owner + (" for " + label if label else "")


def _add_access(one: Access, two: Access) -> Access:
    return (one[0] + two[0], one[1] or two[1], one[2] + two[2], one[3] or two[3],
            one[4] + two[4], one[5] or two[5])  # fmt: skip


def _audit_workers() -> int:
    if not hasattr(os, "fork"):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _ticket_pipe(runs: int) -> Optional[int]:
    """The read end of a pipe holding one ticket (a byte: the run's number) per run,
    its write end closed: each reader's next byte is the next run.  None if no pipe."""
    try:
        read_end, write_end = os.pipe()
    except OSError:  # out of descriptors: one process does it all
        return None
    try:
        os.write(write_end, bytes(range(runs)))  # at most 255 bytes: one atomic write
    finally:
        os.close(write_end)
    return read_end


def _tickets(read_end: Optional[int], runs: int) -> Iterator[int]:
    """The runs this process takes: from the pipe (one byte a read), or all of them."""
    if read_end is None:
        yield from range(runs)
        return
    while True:
        ticket = os.read(read_end, 1)
        if not ticket:
            return
        yield ticket[0]


def _fork_share(
    walk: Walk, items: Sequence[Item], tickets: Optional[int], runs: int, who: Who
) -> Optional[Child]:
    """Start a process that audits runs until no ticket is left, or None (out of
    descriptors, a pids limit: the runs are done in this process)."""
    parent = os.getpid()

    def share() -> ShareResult:  # pragma: no cover - the child
        progress = Progress(None)
        progress.parent = parent
        return _audit_share(walk, items, _tickets(tickets, runs), runs, progress, nothing, who)

    try:  # Ctrl-C reaches the whole process group: the child ends with its parent instead
        return fork_child(share, ("SIGINT",))
    except OSError:
        return None


def _audit_share(
    walk: Walk,
    items: Sequence[Item],
    tickets: Iterator[int],
    runs: int,
    progress: Progress,
    poll: Callable[[], None],
    who: Who = SIZES_ONLY,
) -> ShareResult:
    """Sum the download folders of each run taken: a result per source, and the runs.

    The biggest downloads are kept as their name and item number: a path is joined
    only for the few that are reported.
    """
    import heapq

    results: List[SourceResult] = [(0, 0, 0, [], NO_ACCESS_ISSUE) for _ in SOURCES]
    done = []
    for run in tickets:
        done.append(run)
        for at in range(run * len(items) // runs, (run + 1) * len(items) // runs):
            poll()
            index, parts, name = items[at]
            files, nbytes, unreadable, biggest, access = results[index]
            item_files, item_bytes, bad, item_access = _sum_lone_files(
                walk.fds[parts], name, progress, who
            )
            if item_files:
                heapq.heappush(biggest, (item_bytes, item_files, name, at))
                if len(biggest) > AUDIT_BIGGEST:
                    heapq.heappop(biggest)
            if item_access != NO_ACCESS_ISSUE:
                where = walk.path(parts) + "/"  # the item's paths are relative to its folder
                links, first_link, moves, first_move, foreign, first_foreign = item_access
                item_access = (links, first_link and where + first_link, moves,
                               first_move and where + first_move, foreign,
                               first_foreign and where + first_foreign)  # fmt: skip
                access = _add_access(access, item_access)
            results[index] = (files + item_files, nbytes + item_bytes, unreadable + bad, biggest,
                              access)  # fmt: skip
    return results, done


def _sum_lone_files(  # noqa: PLR0912, PLR0915 - the audit's hot loop, inlined on purpose
    parent: int, name: str, progress: Progress, who: Who = SIZES_ONLY
) -> Tuple[int, int, int, Access]:
    """(files, bytes, unreadable folders) for the lone files of a whole subtree, and
    (with who) what that user can't do there, its paths relative to parent.

    The hot loop of --check: one fstatat per regular file (its link count), none
    for folders (the directory entry's type says so), each relative to its folder.
    """
    parent_pid = progress.parent
    users, devices = who[0], who[2]
    files = nbytes = unreadable = 0
    cannot_link = cannot_move = 0
    first_link = first_move = ""
    tree_dev = os.fstat(parent).st_dev if devices else 0
    foreign: List[Tuple[str, ...]] = []  # where the walk left the category's filesystem
    top = open_below(parent, name)
    if top is None:
        return 0, 0, 1, NO_ACCESS_ISSUE
    for parts, fd, below in folders_below(top, (name,)):
        if fd < 0:
            unreadable += 1
            continue
        if users or devices:  # one fstat a folder, only where it tells something
            folder_st = os.fstat(fd)
            if (
                devices
                and folder_st.st_dev != tree_dev
                and not any(parts[: len(f)] == f for f in foreign)
            ):
                foreign.append(parts)
        # An import moves the files out, then the folder: both need write access to it.
        label = unwritable_by(folder_st, who) if users else ""
        if label:
            cannot_move += 1
            first_move = first_move or _owned("/".join(parts), folder_st, label)
        seen = 0
        try:
            if SCANDIR_FD:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        seen += 1
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name != NAS_METADATA:
                                below.append(entry.name)
                        elif entry.is_file(follow_symlinks=False):
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except OSError:  # pragma: no cover - gone while we looked
                                continue
                            if st.st_nlink == 1:
                                files += 1
                                nbytes += st.st_size
                            if users:
                                label = blocked_by(st, who)
                                if label:
                                    cannot_link += 1
                                    if not first_link:
                                        path = "/".join(parts + (entry.name,))
                                        first_link = _owned(path, st, label)
            else:  # pragma: no cover - Python 3.6
                for child, is_dir, any_st in folder_entries(fd, lone_only=False):
                    seen += 1
                    if is_dir:
                        below.append(child)
                    elif any_st is not None:
                        if any_st.st_nlink == 1:
                            files, nbytes = files + 1, nbytes + any_st.st_size
                        label = blocked_by(any_st, who) if users else ""
                        if label:
                            cannot_link += 1
                            path = "/".join(parts + (child,))
                            first_link = first_link or _owned(path, any_st, label)
        except OSError:
            unreadable += 1
        progress.tick(seen)
        if parent_pid is not None and os.getppid() != parent_pid:  # pragma: no cover
            os._exit(1)  # the parent is gone: stop walking
    first_foreign = "/".join(foreign[0]) if foreign else ""
    access = (cannot_link, first_link, cannot_move, first_move, len(foreign), first_foreign)
    return files, nbytes, unreadable, access


# -- --check (host): every section together --------------------------------------------
# run_check runs the sections above in order and grades each: what the report and
# the containers' and routes' sections build on.

SECTIONS = ("layout", "filesystem", "probes", "permissions")


class CheckResult(NamedTuple):
    findings: List[Finding]
    notes: List[str]
    audits: List[Audit]
    sections: Dict[str, str]  # name -> "ok", PROBLEM, WARNING or "not checked: why"
    probed_as: str  # "UID:GID"
    probed_text: str  # as whom the probes ran, in words
    pairs: int  # import pairs probed


def run_check(  # noqa: PLR0912, PLR0915 - the sections in the order they run
    walk: Walk,
    steps: Sequence[Step],
    pairs: Pairs,
    owner: Optional[Owner],
    progress: Progress,
    signals: Signals,
    importers: Sequence[Identity] = (),
    table: Optional[Tuple[Optional[List[Mount]], str]] = None,
) -> CheckResult:
    """Everything --check reports: findings, notes, the audit, each section's grade;
    importers: the users (besides --owner's) whose imports the audit checks; table: the
    mount table (load_mounts), read here where not given."""
    findings = layout_findings(steps)
    notes: List[str] = []
    sections: Dict[str, str] = {}
    probed_as, probed_text = "", ""
    audits: List[Audit] = []
    if steps[0].st is None:
        why = "not checked: data/ is not there"
        sections.update(filesystem=why, probes=why, permissions=why)
        return CheckResult(findings, notes, audits, _grades(findings, sections), "", "", 0)
    mounts, no_table = table or load_mounts()
    if no_table:
        notes.append(no_table + ": bind mounts inside the tree were not checked, devices were")
    boundaries, fs_notes = filesystem_findings(walk, steps, mounts, pairs)
    root_mount = mount_of(real_path_of(walk.fds[(DATA,)], steps[0].path), mounts or ())
    # A mount below the tree is in the mount table (see filesystem_findings); a btrfs or
    # bcachefs subvolume, or any boundary where there is no table, only in st_dev.
    devices = root_mount is None or root_mount.fstype in SUBVOLUMES
    if devices:
        boundaries += library_boundaries(walk, steps, root_mount, pairs)
    notes = fs_notes + notes
    probes = with_fuse_flags(walk, plan_probes(steps, pairs), mounts)
    places = {parts for _, src, dst in probes.pairs for parts in (src, dst)}
    places.update(parts for parts in probes.incoming if parts is not None)
    results: List[ProbeResult] = []
    probe_found: List[Finding] = []
    unprobed: Set[int] = set()  # pairs whose probes wrote nothing
    if probes.pairs:
        # The probes use fixed names: one check's probes at a time (another waits).
        with signals.at_once():  # another check may hold it for a while
            lock = lock_folder(walk, (DATA, MEDIA), wait=True)
        try:
            removed = remove_leftover_probes(walk, sorted(places))
            if removed:
                notes.append(
                    "removed %d probe file(s) that an interrupted check had left" % removed
                )
            results, probed_as, probed_text, probe_notes = run_probes(
                walk, steps, probes, owner, signals
            )
        finally:
            if lock is not None:
                os.close(lock)
        notes += probe_notes
        probe_found = probe_findings(results, probes, walk, probed_as)
        boundaries, probe_found, across = crossed_boundaries(
            boundaries, probe_found, results, probes, walk
        )
        if across and not any(item.section == "probes" for item in probe_found):
            sections["probes"] = (
                "%d of %d import pair(s) fail across a boundary (see filesystem)"
                % (across, len(probes.pairs))
            )
        unprobed = unprobed_pairs(results, probes)
        if unprobed and not any(item.section == "probes" for item in probe_found):
            sections["probes"] = (
                "not checked: %d of %d import pair(s) could not be probed "
                "(see permissions)" % (len(unprobed), len(probes.pairs))
            )
    else:
        sections["probes"] = "not checked: no category has both complete/ and media/ folders"
    findings += boundaries
    users = list(importers)  # whose downloads' links and moves the audit checks
    mode_findings: List[Finding] = []
    wrote: Set[str] = set()
    if owner is not None:
        uid, gid, groups = probe_identity(owner)
        users.insert(0, (owner.spec, uid, frozenset(groups)))
        wrote = probe_wrote(probes, results, unprobed, walk) if probed_as == "%d:%d" % (
            uid, gid) else set()  # fmt: skip
        mode_findings = writable_findings(steps, owner, set(groups), imported_paths(pairs, walk),
                                          wrote)  # fmt: skip
    # A folder the mode bits already say the user can't write: the probe's EACCES there
    # has that one cause, counted once (in not-writable).
    blocked = {path for item in mode_findings for path in item.paths} - wrote
    probe_found = [item for item in probe_found if not (item.section == "permissions"
                                                        and item.path in blocked)]  # fmt: skip
    findings += probe_found
    findings += mode_findings
    findings += sticky_findings(steps)
    if owner is None:
        unchecked = "give --owner PUID:PGID to check as the containers' user"
        if any(item.section == "permissions" for item in findings):
            notes.append("write access was not checked: " + unchecked)
        else:
            sections["permissions"] = "not checked: " + unchecked
    trees = []
    for source in SOURCES:
        tree = [
            s.folder.parts
            for s in steps
            if s.st is not None and s.folder.parts[:3] == (DATA, source, COMPLETE)
        ]
        if tree and tree[0] == (DATA, source, COMPLETE):
            # A client saving beside complete/ (TRaSH's data/torrents/<category>) saves
            # inside the tree all the same: the source's own folder is listed too, and a
            # folder there named as a category is one too, its downloads each counted.
            beside = [(DATA, source, parts[3]) for parts in tree if len(parts) == 4]
            trees.append((source, tree + [(DATA, source)] + [
                parts for parts in beside if _real_folder(walk, parts)]))  # fmt: skip
    signals.poll()
    once = {user[1:]: user for user in reversed(users)}  # one each uid and groups, the first's
    users = [user for user in users if once[user[1:]] is user]
    who: Who = (tuple(users), bool(users) and protected_hardlinks(), devices)
    audits = audit(walk, trees, progress, signals.poll, who)
    progress.done()
    if users:
        findings += cannot_link_findings(audits, ", ".join(label for label, _, _ in users))
    findings += download_boundaries(audits, root_mount)
    graded = _grades(findings, sections)
    return CheckResult(findings, notes, audits, graded, probed_as, probed_text, len(probes.pairs))


def _real_folder(walk: Walk, parts: Tuple[str, ...]) -> bool:
    """Whether a folder of the tree's is there, a folder (no symlink to one)."""
    try:
        st = os.stat(parts[-1], dir_fd=walk.open(parts[:-1]), follow_symlinks=False)
    except (Error, OSError):
        return False
    return stat.S_ISDIR(st.st_mode)


def crossed_boundaries(
    boundaries: List[Finding],
    probe_found: List[Finding],
    results: Sequence[ProbeResult],
    probes: ProbePlan,
    walk: Walk,
) -> Tuple[List[Finding], List[Finding], int]:
    """One cause, one finding: a boundary of the filesystem section (a mount, a
    subvolume, a symlink to another disk) and the probes' EXDEV across it are one
    problem, counted there with the crossing pairs' folders in its paths.  Returns the
    boundaries, the probe findings left, and how many pairs were folded in."""
    crossing = {index for index, stage, _, number, _ in results
                if number == errno.EXDEV and stage in (Stage.HARDLINK, Stage.MOVE)}  # fmt: skip
    folded: Set[int] = set()
    joined = []
    for boundary_found in boundaries:
        mine = sorted(index for index in crossing if boundary_found.severity == PROBLEM and (
            inside(walk.path(probes.pairs[index][1]), boundary_found.path)
            != inside(walk.path(probes.pairs[index][2]), boundary_found.path)))  # fmt: skip
        if mine:
            folded.update(mine)
            sources = sorted({walk.path(probes.pairs[index][1]) for index in mine})
            boundary_found = boundary_found._replace(  # noqa: PLW2901 - the one finding, whole
                detail="%s; the probes' hardlink and move of %d import pair(s) across it "
                "failed so" % (boundary_found.detail, len(mine)),
                paths=boundary_found.paths + tuple(sources),
            )
        joined.append(boundary_found)
    crossed = {walk.path(probes.pairs[index][1]) for index in folded}
    left = [item for item in probe_found if not (
        item.errno == "EXDEV" and item.kind in ("hardlink-failed", "move-failed")
        and item.path in crossed)]  # fmt: skip
    return joined, left, len(folded)


def download_boundaries(audits: Sequence[Audit], root_mount: Optional[Mount]) -> List[Finding]:
    """Per source: the download folders on another filesystem than their category folder
    (a btrfs subvolume, a mount): a link or move from there into media/ is EXDEV."""
    findings = []
    for result in audits:
        count, first = result.access[4], result.access[5]
        if count:
            detail, fix = device_boundary(root_mount)
            more = " (and %d more download folder(s) like it)" % (count - 1) if count > 1 else ""
            findings.append(finding("other-filesystem", first, detail + more, fix))
    return findings


def protected_hardlinks() -> bool:
    """Whether fs.protected_hardlinks is on (as on most distributions; so where unknown)."""
    try:
        with open("/proc/sys/fs/protected_hardlinks", "rb") as handle:
            return handle.read(8).strip() != b"0"
    except OSError:
        return True


def cannot_link_findings(audits: Sequence[Audit], users: str) -> List[Finding]:
    """Per source: the downloads the containers' user could not hardlink (another user's
    0644 file, with fs.protected_hardlinks), and the download folders it could not move
    or empty: its importer then copies, or fails."""
    findings = []
    for result in audits:
        links, first_link, moves, first_move, _, _ = result.access
        said = []
        if links:
            said.append("can't hardlink %d download file(s) here: with fs.protected_hardlinks "
                        "only their owner, or a user who may read and write them, may; e.g. "
                        "%s" % (links, first_link))  # fmt: skip
        if moves:
            said.append("can't move %d download folder(s) out or empty them (no write "
                        "access to them), e.g. %s" % (moves, first_move))  # fmt: skip
        # A torrent's folder stays the client's: the import hardlinks, and moves only a
        # torrent done seeding; a usenet or ddl job folder is moved out (or emptied).
        torrent_folders_only = not links and result.source == "torrents"
        if said:
            findings.append(finding(
                "cannot-link", result.path, "%s %s" % (users, "; and ".join(said)),
                "run the download client as the importers' user, or with their PGID and "
                "UMASK=002 (what it writes then lets the group write); for what is there: "
                "chmod -R g+rwX %s" % quote(result.path),
                severity=WARNING if torrent_folders_only else PROBLEM,
            ))  # fmt: skip
    return findings


def _grades(findings: Sequence[Finding], sections: Dict[str, str]) -> Dict[str, str]:
    """Each section: problem, warning, ok, or the 'not checked: why' already set."""
    return {
        name: grade({item.severity for item in findings if item.section == name},
                    sections.get(name, "ok"))
        for name in SECTIONS + tuple(s for s in sections if s not in SECTIONS)
    }  # fmt: skip


def grade(severities: Set[str], otherwise: str = "ok") -> str:
    """The worst of some findings' severities; otherwise where there are none."""
    return PROBLEM if PROBLEM in severities else WARNING if WARNING in severities else otherwise


# -- --check --docker: what the containers see -----------------------------------------
# The host side can be perfect while Sonarr, given /downloads and /tv as two
# volumes, copies every import.  This reads the containers' real configuration
# (`docker inspect`, or saved inspect / compose JSON) and judges each container
# by its role: host paths and mounts are compared, never container path strings.


class AppKind(NamedTuple):
    """One kind of app: everything every section knows of it."""

    role: str  # download client, importer, media server, library reader, other
    images: Tuple[str, ...]  # keywords of its image's name (the last part, no tag)
    source: str  # a download client's source folder of the tree: torrents, usenet, ddl
    settings: Tuple[str, ...]  # its settings file below its config folder, each layout
    reader: str  # the reader of those (READERS, in the routes); "" where none is read
    port: int  # the web port it listens on where its settings don't say


def _db_layouts(kind: str) -> Tuple[str, ...]:
    return tuple(os.path.join(above, kind + ".db") for above in ("", "config", "app"))


_PLEX_DB = "Plug-in Support/Databases/com.plexapp.plugins.library.db"
_LIBRARIES = ("data/root/default", "root/default", "data/data/root/default")
# Every app, once, in the order image names are matched: tools named after an app
# (plex-meta-manager, jellystat) before the app.  Settings layouts: the images people
# run (linuxserver, hotio, binhex, the official ones), and a native install given as
# the folder that holds the file itself.
APPS: Dict[str, AppKind] = {
    "prowlarr": AppKind("other", ("prowlarr",), "", (), "", 9696),
    "tool": AppKind("other", ("jackett", "flaresolverr", "overseerr", "jellyseerr", "tautulli",
                              "ombi", "requestrr", "recyclarr", "unpackerr", "notifiarr",
                              "homarr", "organizr", "watchtower", "portainer", "gluetun", "nginx",
                              "traefik", "swag", "kometa", "plex-meta-manager",
                              "plex-auto-languages", "plextraktsync", "jellystat"), "", (), "", 0),
    "qbittorrent": AppKind("download client", ("qbittorrent",), "torrents", (
        "qBittorrent/qBittorrent.conf", "config/qBittorrent.conf",
        "qBittorrent/config/qBittorrent.conf", "qBittorrent.conf"), "qbittorrent", 8080),
    "transmission": AppKind("download client", ("transmission",), "torrents", (
        "settings.json", "transmission-daemon/settings.json"), "transmission", 9091),
    "deluge": AppKind("download client", ("deluge",), "torrents",
                      ("core.conf", "deluge/core.conf"), "deluge", 8112),
    "rtorrent": AppKind("download client", ("rtorrent", "rutorrent"), "torrents", (
        "rtorrent/rtorrent.rc", "rtorrent/.rtorrent.rc", ".rtorrent.rc", "rtorrent.rc"),
        "rtorrent", 8080),
    "sabnzbd": AppKind("download client", ("sabnzbd",), "usenet", (
        "sabnzbd.ini", "config/sabnzbd.ini", "sabnzbd/sabnzbd.ini"), "sabnzbd", 8080),
    "nzbget": AppKind("download client", ("nzbget",), "usenet",
                      ("nzbget.conf", "config/nzbget.conf"), "nzbget", 6789),
    "jdownloader": AppKind("download client", ("jdownloader",), "ddl", (), "", 5800),
    "pyload": AppKind("download client", ("pyload",), "ddl", (), "", 8000),
    "sonarr": AppKind("importer", ("sonarr",), "", _db_layouts("sonarr"), "importer", 8989),
    "radarr": AppKind("importer", ("radarr",), "", _db_layouts("radarr"), "importer", 7878),
    "lidarr": AppKind("importer", ("lidarr",), "", _db_layouts("lidarr"), "importer", 8686),
    "readarr": AppKind("importer", ("readarr",), "", _db_layouts("readarr"), "importer", 8787),
    "whisparr": AppKind("importer", ("whisparr",), "", _db_layouts("whisparr"), "importer",
                        6969),
    "mylar": AppKind("importer", ("mylar",), "", (), "", 8090),
    "plex": AppKind("media server", ("plex", "pms-docker"), "", tuple(
        os.path.join(above, _PLEX_DB) for above in (
            "Library/Application Support/Plex Media Server", "Plex Media Server", "")),
        "plex", 32400),
    "jellyfin": AppKind("media server", ("jellyfin",), "", _LIBRARIES, "jellyfin", 8096),
    "emby": AppKind("media server", ("emby",), "", _LIBRARIES, "jellyfin", 8096),
    "bazarr": AppKind("library reader", ("bazarr",), "", (), "", 6767),
}  # fmt: skip
# The apps whose settings are read (--app's KIND), and those of a role among them.
READ_APPS = tuple(kind for kind, app in APPS.items() if app.reader)
CLIENT_APPS = tuple(k for k in READ_APPS if APPS[k].role == "download client")
IMPORTER_APPS = tuple(k for k in READ_APPS if APPS[k].role == "importer")
SERVER_APPS = tuple(k for k in READ_APPS if APPS[k].role == "media server")
# The words that name a torrent client: the registry's (their kinds and image keywords),
# and those of the clients it has no record of (UTorrent, TorrentBlackhole, Vuze, Flood,
# Aria2, Hadouken).
TORRENT_WORDS = tuple(word for kind, app in APPS.items() if app.source == "torrents"
                      for word in (kind,) + app.images) + ("torrent", "vuze", "flood", "aria2",
                                                           "hadouken")  # fmt: skip


def torrent_client(name: str) -> bool:
    """Whether a download client's type or name (a row's Implementation, a history's
    downloadClient, a kind of APPS) is a torrent client's: its imports should be
    hardlinks (it seeds on); usenet's and ddl's move either way."""
    text = name.lower()
    return any(word in text for word in TORRENT_WORDS)


# The group "users" that an image's app user is in besides PGID, where the image is
# known: linuxserver's base images renumber it to 1000 (groupmod -g 1000 users); hotio's
# keep Alpine's 100.  Any other image: PGID alone, as --owner is judged.
IMAGE_GROUPS = (("linuxserver/", 1000), ("hotio/", 100))
# Container paths that hold an app's own state, not media.
STATE_PATHS = ("/config", "/app/config", "/transcode", "/cache")
SYSTEM_PATHS = ("/etc", "/run", "/var/run", "/dev", "/sys", "/proc")
DOCKER_TIMEOUT = 30  # seconds
GIVE_JSON = "give the output of docker inspect or of docker compose config --format json"


class ContainerMount(NamedTuple):
    type: str  # bind, volume, tmpfs
    host: str  # the host path (a volume's _data folder, or its name in compose)
    container: str
    rw: bool


class Container(NamedTuple):
    name: str
    image: str
    role: str
    mounts: List[ContainerMount]  # its data mounts only
    env: Dict[str, str]
    user: str
    kind: str  # its kind of APPS, from its image ("" unknown)
    config: str  # the host folder at its /config ("" none; a compose volume: its name)
    ident: str  # its id ("" from compose)
    hostname: str
    network: str  # its network mode: bridge, host, container:<id>, service:<name>, ...
    aliases: Tuple[str, ...]  # other names on its networks (compose service, aliases)
    ports: Tuple[int, ...]  # the host ports published to it


def load_containers(
    docker_input: str, stdin: Optional[IO[str]] = None
) -> Tuple[List[Container], str]:
    """The containers from docker (docker_input '') or a saved JSON file ('-': stdin),
    and why they can't be judged ('' where they can)."""
    import json

    remote = _remote_docker_host()
    where = "--docker %s" % (docker_input or "(docker inspect)")
    if docker_input == "":
        if remote:
            return [], remote
        text, failed = _run_docker()
        if failed:
            return [], "not checked: " + failed
        if not text.strip():
            return [], ""
    else:
        text = _read_saved(docker_input, stdin, where)
        if looks_like_compose_yaml(text):  # the compose file itself: compose reads it
            text = _compose_config(docker_input, text, where)
    try:
        document = json.loads(text)
    except RecursionError:  # hostile or broken: nested deeper than Python's stack
        raise Error("%s: JSON nested too deep to be docker's; %s" % (where, GIVE_JSON), 2)
    except ValueError as exc:
        raise Error("%s: not JSON (%s); %s" % (where, exc, GIVE_JSON), 2)
    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        containers = [
            _from_inspect(item, "%s: [%d]" % (where, at)) for at, item in enumerate(document)
        ]
        return containers, remote if docker_input == "" else ""
    if isinstance(document, dict) and isinstance(document.get("services"), dict):
        services = document["services"].items()
        binds = _bound_volumes(document.get("volumes"))
        return [_from_compose(str(name), item, where, binds) for name, item in services], ""
    raise Error("%s: neither docker inspect output (a list) nor docker compose config "
                "--format json (an object with services)" % where, 2)  # fmt: skip


def looks_like_compose_yaml(text: str) -> bool:
    """Whether a --docker file is a compose file in YAML (not JSON): a top-level key
    compose knows, at the start of a line."""
    if text.lstrip()[:1] in ("{", "["):
        return False
    keys = ("services:", "version:", "name:", "include:", "volumes:", "networks:")
    return any(line.startswith(keys) for line in text.splitlines())


# Compose implementations that print a compose file as JSON, the first one here wins:
# the docker CLI's plugin (v2), then the standalone docker-compose v2.  docker-compose
# 1.x has no --format: it prints its usage (exit 0), which is no JSON.
COMPOSE_COMMANDS = (["docker", "compose"], ["docker-compose"])
# What one that isn't there (or has no --format) says: try the next.
NO_COMPOSE = ("unknown command", "not a docker command", "unknown flag", "unknown shorthand",
              "no such option")  # fmt: skip


def _compose_config(docker_input: str, text: str, where: str) -> str:
    """`docker compose -f FILE config --format json` of a compose file in YAML, from the
    file's folder so that its .env applies (stdin: from here): compose's own reading
    of interpolation, .env, anchors and extends.  A failure is exit 2, in one line."""
    stdin = docker_input == "-"
    path = "-" if stdin else os.path.abspath(docker_input)
    feed = text.encode("utf-8", "surrogateescape") if stdin else None
    folder = os.path.dirname(path) or None  # stdin: from here
    for command in COMPOSE_COMMANDS:
        args = command + ["-f", path, "config", "--format", "json"]
        try:
            code, output, said = run_command(args, DOCKER_TIMEOUT, feed, folder)
        except OSError:  # not here, or hangs: the next one
            continue
        if code == 0 and output.lstrip().startswith("{"):
            return output
        if code != 0 and not any(word in said.lower() for word in NO_COMPOSE):
            why = said.splitlines()[-1] if said else "exit code %d" % code
            raise Error("%s: %s config: %s" % (where, " ".join(command), why), 2)
    raise Error(
        "%s: a compose file in YAML, and no Compose v2 here to read it (docker compose, or "
        "docker-compose 2.x): where there is one, run docker compose -f FILE config --format "
        "json > stack.json, then give --docker stack.json" % where,
        2,
    )


def _read_saved(docker_input: str, stdin: Optional[IO[str]], where: str) -> str:
    """The text of a saved --docker file, or of stdin ('-')."""
    try:
        if docker_input == "-":
            stream = stdin or sys.stdin
            if stream is None:  # started with fd 0 closed
                raise OSError(errno.EBADF, "standard input is closed")
            return stream.read()
        with open(docker_input, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise Error("%s: %s" % (where, exc.strerror), 2)


def _remote_docker_host() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if not host or host.startswith(("unix://", "npipe://")):
        return ""
    address = host.split("://", 1)[-1].rsplit("@", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if address in ("localhost", "::1") or address.startswith("127."):
        return ""
    return "not checked: DOCKER_HOST points at %s, another machine: its host paths are not this " \
        "machine's" % host  # fmt: skip


def _run_docker() -> Tuple[str, str]:
    """`docker ps -q`, then `docker inspect` of those: the JSON text, or why not."""
    ids, failed = _docker(["ps", "-q"])
    if failed or not ids.split():
        return "", failed
    return _docker(["inspect"] + ids.split())


def _docker(args: List[str]) -> Tuple[str, str]:
    """What `docker ARGS` printed, or why it failed ("" where it didn't): docker's own
    error, in one line."""
    try:
        code, output, said = run_command(["docker"] + args, DOCKER_TIMEOUT)
    except FileNotFoundError:
        return "", (
            "docker: no docker command here; run this where docker is, or save "
            "`docker inspect $(docker ps -aq) > containers.json` and give --docker containers.json"
        )
    except OSError as exc:
        hint = "; is the daemon running?" if exc.errno == errno.ETIMEDOUT else ""
        return "", "docker %s: %s%s" % (args[0], exc.strerror, hint)
    if code != 0:
        last = said.splitlines()[-1] if said else "exit code %d" % code
        hint = ""
        if "permission denied" in last.lower():
            hint = " (run it with sudo, or add your user to the docker group)"
        return "", "docker %s: %s%s" % (args[0], last, hint)
    return output, ""


DOCKER_DOWN = "not checked: docker"  # why_not where docker itself failed


def docker_down(why_not: str) -> bool:
    """Whether the containers weren't checked because docker failed (not answering, not
    there): the user asked for them, so that is a problem (docker-unreachable)."""
    return why_not.startswith(DOCKER_DOWN)


# Base OS and language images: a container of one is never an app, whatever its name
# (a one-shot debian named init-sabnzbd that copies a file is no download client).
BASE_IMAGES = ("debian", "ubuntu", "alpine", "busybox", "python", "node", "golang", "bash",
               "centos", "fedora", "rockylinux", "almalinux", "archlinux", "amazonlinux",
               "opensuse", "buildpack-deps", "php", "ruby", "perl", "rust", "openjdk",
               "eclipse-temurin", "docker", "scratch", "minideb", "distroless")  # fmt: skip


def _role(image: str, label: str) -> Tuple[str, str]:
    """(role, kind of APPS) from the image name; the compose service label is a hint only
    where the image says nothing (a bare id, a name of no keyword), never for a base
    OS or language image (BASE_IMAGES); ('unknown', '')."""
    name = _image_name(image)
    if name in BASE_IMAGES:
        return "unknown", ""
    for text in (name, label.lower()):
        for kind, app in APPS.items():
            if text and not _bare_id(text) and any(keyword in text for keyword in app.images):
                return app.role, kind
    return "unknown", ""


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0].lower()


def _bare_id(image: str) -> bool:
    text = image.split(":", 1)[-1] if image.startswith("sha256:") else image
    return len(text) >= 12 and all(char in "0123456789abcdef" for char in text)


def _is_data_mount(mount: ContainerMount) -> bool:
    target = mount.container.rstrip("/") or "/"
    # Only binds and volumes hold data: tmpfs, an image mounted read-only (podman, docker
    # 28's type=image), a named pipe are no folder of the host's.
    if mount.type not in ("bind", "volume") or target in STATE_PATHS:
        return False
    if any(inside(target, path) for path in SYSTEM_PATHS):
        return False
    if mount.host.endswith(".sock") or mount.container.endswith(".sock"):
        return False  # a socket, even where it isn't on this machine
    if mount.type == "bind":
        try:  # a single file or a socket: not a folder of media
            if not stat.S_ISDIR(os.stat(mount.host).st_mode):
                return False
        except OSError:
            pass
    return True


def _clean(path: str) -> str:
    """/data/torrents/ and /data/./torrents are /data/torrents (compose keeps what was
    typed); a volume's name is left as it is.  No path holds a NUL: one that does is
    not docker's."""
    if "\0" in path:
        raise Error("--docker: %r holds a NUL character: not a path docker gives" % path, 2)
    return os.path.normpath(path) if path.startswith("/") else path


def _field(parent: Dict[str, Any], key: str, kinds: Tuple[type, ...], where: str) -> Any:
    """parent[key] if it is one of kinds (the first kind, empty, where missing or null).
    Anything else is an Error: a file of another shape must not pass for an empty setup."""
    value = parent.get(key)
    if value is None:
        return kinds[0]()
    if not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise Error("%s: %s is %s, not %s: %s" % (where, key, type(value).__name__, names,
                                                  GIVE_JSON), 2)  # fmt: skip
    return value


def _from_inspect(item: Dict[str, Any], where: str = "--docker") -> Container:
    config = _field(item, "Config", (dict,), where)
    image = _field(config, "Image", (str,), where) or _field(item, "Image", (str,), where)
    env: Dict[str, str] = {}
    for pair in _field(config, "Env", (list,), where):
        key, _, value = str(pair).partition("=")
        env[key] = value
    mounts = []
    for at, mount in enumerate(_field(item, "Mounts", (list,), where)):
        if not isinstance(mount, dict):
            raise Error("%s: Mounts[%d] is not an object" % (where, at), 2)
        source = _field(mount, "Source", (str,), where) or _field(mount, "Name", (str,), where)
        target = _field(mount, "Destination", (str,), where)
        mounts.append(ContainerMount(_field(mount, "Type", (str,), where), _clean(source),
                                     _clean(target), mount.get("RW") is not False))  # fmt: skip
    labels = _field(config, "Labels", (dict,), where)
    label = str(labels.get("com.docker.compose.service") or "")
    role, kind = _role(image, label)
    name = _field(item, "Name", (str,), where).lstrip("/")
    user = _field(config, "User", (str,), where)
    host_config: Dict[str, Any] = _object(item.get("HostConfig"))
    settings: Dict[str, Any] = _object(item.get("NetworkSettings"))
    aliases = [label] + _aliases(settings.get("Networks"), ("Aliases", "DNSNames", "IPAddress",
                                                            "GlobalIPv6Address"))  # fmt: skip
    ports: List[Any] = []
    for published in (settings.get("Ports"), host_config.get("PortBindings")):
        for binds in published.values() if isinstance(published, dict) else ():
            ports += [b.get("HostPort") for b in binds or () if isinstance(b, dict)]
    return Container(name, image, role, [m for m in mounts if _is_data_mount(m)], env, user,
                     kind, _config_folder(mounts), str(item.get("Id") or ""),
                     str(config.get("Hostname") or ""), str(host_config.get("NetworkMode") or ""),
                     tuple(a for a in aliases if a), _port_numbers(ports))  # fmt: skip


def _object(value: Any) -> Dict[str, Any]:
    """A part of docker's JSON that only helps to match names: {} where of another shape."""
    return value if isinstance(value, dict) else {}


def _aliases(networks: Any, keys: Sequence[str]) -> List[str]:
    """The names a container has on its networks (inspect's and compose's shapes)."""
    names: List[str] = []
    for network in networks.values() if isinstance(networks, dict) else ():
        for key in keys:
            given = network.get(key) if isinstance(network, dict) else None
            if isinstance(given, str) and given:  # an address: IPAddress, GlobalIPv6Address
                given = [given]
            names += [str(name) for name in given] if isinstance(given, list) else []
    return names


def _config_folder(mounts: Sequence[ContainerMount]) -> str:
    """The host folder a container keeps its settings in (at /config)."""
    return next((m.host for m in mounts if m.container == "/config"), "")


def _port_numbers(ports: Sequence[Any]) -> Tuple[int, ...]:
    """Host ports as compose and inspect give them: 8080, "8080", "8080:8080", "1.2.3.4:8080:80",
    {"published": "8080"}."""
    numbers = set()
    for port in ports:
        given = port.get("published") if isinstance(port, dict) else port
        text = str(given if given is not None else "").split("/")[0]
        fields = text.split(":")
        text = fields[-2] if len(fields) > 1 else fields[0]  # HOST:CONTAINER
        if ascii_number(text) and 0 < int(text) < 65536:
            numbers.add(int(text))
    return tuple(sorted(numbers))


def _bound_volumes(volumes: Any) -> Dict[str, str]:
    """The compose file's named volumes that are binds of a host folder (the local driver
    with type none, o bind, device DIR): name -> DIR."""
    binds: Dict[str, str] = {}
    if not isinstance(volumes, dict):
        return binds
    for name, volume in volumes.items():
        options = volume.get("driver_opts") if isinstance(volume, dict) else None
        if not isinstance(options, dict) or volume.get("driver", "local") != "local":
            continue
        device = options.get("device")
        flags = str(options.get("o", "")).split(",")
        if isinstance(device, str) and device.startswith("/") and "bind" in flags:
            binds[str(name)] = _clean(device)
    return binds


def _from_compose(
    name: str, item: Any, where: str = "--docker", binds: Optional[Dict[str, str]] = None
) -> Container:
    where = "%s: services.%s" % (where, name)
    if not isinstance(item, dict):
        raise Error("%s is not an object: %s" % (where, GIVE_JSON), 2)
    image = _field(item, "image", (str,), where)
    environment = _field(item, "environment", (dict, list), where)
    if isinstance(environment, list):
        environment = dict(str(pair).partition("=")[::2] for pair in environment)
    env = {str(k): "" if v is None else str(v) for k, v in environment.items()}
    binds = binds or {}
    mounts = []
    for at, volume in enumerate(_field(item, "volumes", (list,), where)):
        subpath = ""
        if isinstance(volume, dict):
            mount = ContainerMount(
                _field(volume, "type", (str,), where) or "bind",
                _clean(_field(volume, "source", (str,), where)),
                _clean(_field(volume, "target", (str,), where)),
                not volume.get("read_only", False),
            )
            options = volume.get("volume")
            if isinstance(options, dict) and isinstance(options.get("subpath"), str):
                subpath = options["subpath"].lstrip("/")
        elif isinstance(volume, str):  # compose 1.x's config, and what people type
            mount = _short_volume(volume)
        else:
            raise Error("%s: volumes[%d] is neither an object nor a string" % (where, at), 2)
        if mount.type == "volume" and mount.host in binds:
            # A named volume that binds a folder: judged as that folder (and subpath).
            host = _clean(os.path.join(binds[mount.host], subpath)) if subpath else (
                binds[mount.host])  # fmt: skip
            mount = mount._replace(type="bind", host=host)
        mounts.append(mount)
    role, kind = _role(image, name)
    user = str(_field(item, "user", (str, int), where))
    aliases = [str(item.get("container_name") or "")] + _aliases(item.get("networks"), ("aliases",))
    ports: List[Any] = item["ports"] if isinstance(item.get("ports"), list) else []
    return Container(name, image, role, [m for m in mounts if _is_data_mount(m)], env, user,
                     kind, _config_folder(mounts), "", str(item.get("hostname") or ""),
                     str(item.get("network_mode") or ""), tuple(a for a in aliases if a),
                     _port_numbers(ports))  # fmt: skip


def _short_volume(text: str) -> ContainerMount:
    """SOURCE:TARGET[:MODE] (or a bare TARGET: an anonymous volume); a source that is a
    path makes a bind, a name a named volume."""
    fields = text.split(":")
    source, target = ("", fields[0]) if len(fields) == 1 else (fields[0], fields[1])
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    read_only = len(fields) > 2 and "ro" in fields[2].split(",")
    return ContainerMount(kind, _clean(source) if source else "", _clean(target), not read_only)


def container_ids(container: Container) -> Tuple[Optional[int], Optional[int]]:
    """(uid, gid) the app writes as: PUID/PGID, PLEX_UID/PLEX_GID or the user; None: unknown."""

    def number(text: Optional[str]) -> Optional[int]:
        return int(text) if text is not None and ascii_number(text.strip()) else None

    for uid_key, gid_key in (("PUID", "PGID"), ("PLEX_UID", "PLEX_GID")):
        if uid_key in container.env or gid_key in container.env:
            return number(container.env.get(uid_key)), number(container.env.get(gid_key))
    if container.user:
        user, _, group = container.user.partition(":")
        uid = 0 if user == "root" else number(user)
        return uid, number(group) if group else None
    return None, None


def writer_groups(container: Container, gid: int) -> FrozenSet[int]:
    """The groups an app writes with: its PGID, and its image's group "users" where the
    image is known to add its user to it (IMAGE_GROUPS)."""
    image = container.image.split("@", 1)[0].lower()
    extra = {group for prefix, group in IMAGE_GROUPS if prefix in image}
    return frozenset({gid} | extra)


def own_source(client: Container) -> str:
    """The source folder a download client writes: usenet/, ddl/, else torrents/."""
    app = APPS.get(client.kind)
    return app.source if app is not None and app.source else "torrents"


# A writer the tree doesn't let write: folders it can't, of how many, the first, an ACL seen.
Blocked = Dict[str, Tuple[int, int, str, bool]]


def blocked_writers(
    containers: Sequence[Container], walk: Walk, steps: Sequence[Step], pairs: Pairs
) -> Blocked:
    """Writers whose PUID/PGID the mode bits don't let write the folders their role
    writes into (a client: its own incomplete/ and complete/<cat>; an importer: every
    complete/<cat> and media/<cat>), even as a member of the image's group "users":
    name -> (how many can't be written, of how many, the first as 'path (owner,
    mode)', whether one of them has an ACL the bits don't show)."""
    wanted_by_all = import_folders(pairs)
    blocked: Blocked = {}
    for container in containers:
        uid, gid = container_ids(container)
        if container.role not in ("download client", "importer") or not uid or gid is None:
            continue  # root writes anywhere; unknown ids are not judged
        if container.role == "download client":
            own = own_source(container)
            wanted = {parts for parts in wanted_by_all if parts[1] == own}
        else:
            wanted = {parts for parts in wanted_by_all if INCOMPLETE not in parts}
        mine = [s for s in steps if s.st is not None and s.folder.parts in wanted]
        groups = writer_groups(container, gid)
        denied = {
            s.path for s in mine if s.st is not None and not can_write(s.st, uid, gid, groups)
        }
        if denied:
            first = next(s for s in mine if s.path in denied)
            st = first.st
            assert st is not None
            example = "%s (owner %d:%d, mode %04o)" % (first.path, st.st_uid, st.st_gid,
                                                        stat.S_IMODE(st.st_mode))  # fmt: skip
            acl = any(_has_acl(walk, s.folder.parts) for s in mine if s.path in denied)
            blocked[container.name] = (len(denied), len(mine), example, acl)
    return blocked


def _has_acl(walk: Walk, parts: Tuple[str, ...]) -> bool:
    """Whether a folder carries an ACL (POSIX, NFSv4, ...), which the mode bits don't show."""
    try:
        return any("acl" in name.lower() for name in os.listxattr(walk.open(parts)))
    except (Error, OSError, AttributeError):  # no xattrs here, or not Linux
        return False


def _covers(mount: ContainerMount, host: str) -> bool:
    return mount.type == "bind" and inside(host, mount.host.rstrip("/") or "/")


def _seen_at(mount: ContainerMount, host: str) -> str:
    """The container path at which mount shows host (which it covers)."""
    return rebase(host, mount.host, mount.container)


def names_of(container: Container) -> Set[str]:
    """The names another container may reach it by: its name, hostname, id, aliases."""
    names = {container.name, container.hostname, container.ident, container.ident[:12]}
    return {name.lower() for name in names.union(container.aliases) if name}


class Scene(NamedTuple):
    """The containers by role, and the tree they are judged against."""

    root: str  # <path>/data as given
    real_root: str  # the same, resolved
    media: str
    writers: List[Container]  # download clients and importers
    readers: List[Container]  # media servers and library readers
    importers: List[Container]
    clients: List[Container]
    poll: Callable[[], None]  # a chance to stop, once per container a rule looks at
    # Each importer's remote path mappings (its settings, where read): a client's folder
    # an importer sees at another path through one is no path-mismatch.
    mappings: Optional[Dict[str, Tuple[Tuple[str, str, str], ...]]] = None

    def in_tree(self, host: str) -> bool:
        return inside(host, self.root) or inside(os.path.realpath(host), self.real_root)


def judge_containers(
    containers: Sequence[Container],
    root: str,
    real_root: str,
    tree_ids: Optional[Tuple[int, int]],
    blocked: Optional[Blocked] = None,
    creator: Callable[[str], str] = lambda options: "python3 %s%s" % (SCRIPT_NAME, options),
    poll: Callable[[], None] = nothing,
    cited: AbstractSet[str] = frozenset(),
    mappings: Optional[Dict[str, Tuple[Tuple[str, str, str], ...]]] = None,
) -> List[Finding]:
    """Every containers finding, one rule after another: the mounts themselves
    (named-volume, outside-tree, read-only), split-mounts, path-mismatch, the readers'
    library-path and broad-access, the clients' broad-access, then the ids (root,
    cannot-write, ids, umask)."""
    scene = Scene(
        root,
        real_root,
        os.path.join(root, MEDIA),
        [c for c in containers if c.role in ("download client", "importer")],
        [c for c in containers if c.role in ("media server", "library reader")],
        [c for c in containers if c.role == "importer"],
        [c for c in containers if c.role == "download client"],
        poll,
        mappings,
    )
    findings: List[Finding] = []
    for rule in (_mount_findings, _split_mounts, _path_mismatches, _breadth_findings):
        findings += rule(scene)
    writers = [c for c in scene.writers if c.name not in cited]  # see check_containers
    return findings + _ids_findings(writers, tree_ids, root, blocked, creator)


def _found(container: Container, kind: str, path: str, detail: str, fix: str,
           severity: str = "", other: str = "") -> Finding:  # fmt: skip
    return finding(
        kind, path, detail, fix, severity=severity, container=container.name, other=other
    )


def _mount_findings(scene: Scene) -> List[Finding]:
    """Each data mount of a writer or reader: a docker volume, a folder outside the
    tree, a read-only mount where it must write."""
    findings: List[Finding] = []
    root = scene.root
    for container in scene.writers + scene.readers:
        scene.poll()
        writer = container in scene.writers
        for mount in container.mounts:
            at, host = mount.container, mount.host
            if mount.type == "volume":
                detail = "%s is a docker volume, not a folder of %s: imports can't hardlink " \
                    "or move out of it" % (at, root)  # fmt: skip
                fix = "bind a folder of the tree instead: - %s:/data" % root
                findings += [_found(container, "named-volume", host, detail, fix)] if writer else []
                continue
            if not scene.in_tree(host):
                twin = ""
                if os.path.basename(host.rstrip("/")) == os.path.basename(root):
                    twin = " (another path to the same share? two paths are two filesystems)"
                findings.append(_found(
                    container, "outside-tree", host, "%s comes from %s, outside %s%s"
                    % (at, host, root, twin), "bind folders of %s only (check them with "
                    "--check)" % root, PROBLEM if writer else WARNING))  # fmt: skip
            if writer and not mount.rw:
                detail = "%s is mounted read-only: %s can't write there" % (at, container.role)
                findings.append(_found(container, "read-only", host, detail,
                                       "remove :ro from this volume"))  # fmt: skip
    return findings


def _split_mounts(scene: Scene) -> List[Finding]:
    """An importer that reaches downloads and library through two mounts: its mounts that
    cover a client's folder (or a source of the tree) are its download mounts, the rest
    its library.  In the tree, one mount that covers media/ and the sources joins them;
    outside it, a library mount beside a download mount is two mounts, whatever their
    host folders (a link from one mount to another is EXDEV)."""
    findings: List[Finding] = []
    root, media = scene.root, scene.media
    tree_sources = [os.path.join(root, s) for s in SOURCES]
    client_folders = sorted({m.host for c in scene.clients for m in c.mounts if m.type == "bind"})
    sources = tree_sources + client_folders
    # A mount covers a client's folder where its host folder is that folder or above it.
    above_clients = {up for folder in client_folders for up in ancestors(folder)}
    holds_a_source: Dict[str, bool] = {}  # a library mount's host folder: holds a source

    for importer in scene.importers:
        scene.poll()
        binds = [m for m in importer.mounts if m.type == "bind"]
        downloads = [
            m for m in binds
            if any(_covers(m, s) or inside(m.host, s) for s in tree_sources)
            or (m.host.rstrip("/") or "/") in above_clients
        ]  # fmt: skip
        library = [m for m in importer.mounts if _covers(m, media) or inside(m.host, media)]
        elsewhere = [m for m in binds if m not in downloads and m not in library
                     and not scene.in_tree(m.host)]  # fmt: skip
        split_in_tree = library and downloads and not any(
            _covers(m, media) and _joined_mounts(m, d, sources, holds_a_source)
            for m in library for d in downloads)  # fmt: skip
        # Two data mounts, neither inside the other (an Unraid template's /downloads and
        # /tv, each from its own share folder): two mounts, whatever the clients mount.
        disjoint = [m for m in binds if not any(
            other is not m and (inside(m.host, other.host) or inside(other.host, m.host))
            for other in binds)]  # fmt: skip
        whole = any(inside(root, m.host) for m in binds)  # one mount holds the whole tree
        if split_in_tree or (elsewhere and downloads) or (len(disjoint) > 1 and not whole):
            points = sorted({m.container for m in library + elsewhere + downloads + disjoint})
            detail = "reaches downloads and library through %d mounts (%s): hardlinks and " \
                "moves between them fail with EXDEV, and %s copies every import without a " \
                "warning" % (len(points), ", ".join(points), (importer.kind or "it").capitalize(
                ))  # fmt: skip
            fix = "one bind of the whole tree in every importer: - %s:/data" % root
            findings.append(_found(importer, "split-mounts", root, detail, fix))
    return findings


def through_mappings(
    mappings: Sequence[Tuple[str, str, str]], hosts: Union[str, AbstractSet[str]], path: str
) -> Tuple[str, Optional[Tuple[str, str, str]]]:
    """Where an importer looks for a client's path: through its remote path mapping for
    that client (hosts: the row's host, or the names the client goes by, lower case),
    else the path itself.  Sonarr and Radarr take the first mapping, in the order of
    their Ids (the db's), whose host is the row's (any case) and whose remote path holds
    the download: not the longest."""
    if isinstance(hosts, str):
        hosts = {hosts.lower()}
    path = app_path(path)
    for mapping in mappings:
        remote = app_path(mapping[1]) if mapping[1] else ""
        if mapping[0].lower() in hosts and remote and inside(path, remote):
            return rebase(path, remote, app_path(mapping[2] or "/")), mapping
    return path, None


def _mapped(
    scene: Scene, importer: Container, client: Container, client_path: str, seen_at: str
) -> bool:
    """Whether the importer's remote path mapping for the client (through_mappings) turns
    the client's path into the one the importer sees it at."""
    mappings = (scene.mappings or {}).get(importer.name, ())
    seen_as, used = through_mappings(mappings, names_of(client), client_path)
    return used is not None and seen_as == seen_at


def _joined_mounts(
    library: ContainerMount,
    download: ContainerMount,
    sources: Sequence[str],
    holds_a_source: Dict[str, bool],
) -> bool:
    """Whether a library mount reaches a source that a download mount does: it holds the
    download's folder, or (inside it) a source of its own (holds_a_source: a cache)."""
    if inside(download.host, library.host):
        return True
    if not inside(library.host, download.host):
        return False
    if library.host not in holds_a_source:
        holds_a_source[library.host] = any(inside(s, library.host) for s in sources)
    return holds_a_source[library.host]


def _path_mismatches(scene: Scene) -> List[Finding]:
    """A client's folder that an importer sees at another container path, or nowhere.

    Importers with the same data mounts see a folder alike: each such group is judged
    once per folder (a stack of hundreds of Sonarrs costs what a few do)."""
    findings: List[Finding] = []
    root = scene.root
    tree_bind = ContainerMount("bind", root, "/data", True)  # what the fixes propose
    groups: Dict[Tuple[ContainerMount, ...], List[Tuple[int, Container]]] = {}
    for index, importer in enumerate(scene.importers):
        groups.setdefault(tuple(importer.mounts), []).append((index, importer))
    for client in scene.clients:
        scene.poll()
        for mount in client.mounts:
            if mount.type != "bind":
                continue
            seen = False
            mismatches: List[Tuple[int, Finding]] = []
            for mounts, members in groups.items():
                covering = [m for m in mounts if _covers(m, mount.host)]
                same_point = [m for m in mounts if m.container == mount.container]
                if not covering and not same_point:
                    continue  # these importers don't deal with that folder at all
                seen = seen or bool(covering)
                at = _seen_at(covering[0], mount.host) if covering else ""
                if at == mount.container:
                    continue
                where = "at %s" % at if at else "%s is %s there" % (
                    mount.container, same_point[0].host)  # fmt: skip
                # The example binds the tree's folder: one outside it is its own problem.
                host = mount.host if scene.in_tree(mount.host) else os.path.join(
                    root, own_source(client))  # fmt: skip
                seen_as = where if at else "nowhere (%s)" % where
                same_path = "mount %s at the same container path in both (e.g. - %s:/data in " \
                    "the importer and - %s:%s in the client), or, second best, a remote path " \
                    "mapping in " % (host, root, host, _seen_at(tree_bind, host))  # fmt: skip
                for order, importer in members:
                    if at and _mapped(scene, importer, client, mount.container, at):
                        continue  # its mapping joins the two paths: the routes say so
                    detail = "%s saves to %s, but %s sees that folder %s" % (
                        client.name, mount.container, importer.name, seen_as)  # fmt: skip
                    item = _found(client, "path-mismatch", mount.host, detail,
                                  same_path + importer.name, other=importer.name)  # fmt: skip
                    mismatches.append((order, item))
            findings += [item for _, item in sorted(mismatches, key=lambda pair: pair[0])]
            if not seen and scene.importers:
                findings.append(_found(
                    client, "path-mismatch", mount.host, "no importer sees %s (%s in %s)"
                    % (mount.host, mount.container, client.name),
                    "give the importers the whole tree: - %s:/data" % root,
                ))  # fmt: skip
    return findings


def _breadth_findings(scene: Scene) -> List[Finding]:
    """A media server or reader that sees the library at another path than the
    importers, or mounts more than the library; a client that mounts more than its own
    source folder."""
    findings: List[Finding] = []
    media = scene.media
    library_points = {
        _seen_at(m, media) for c in scene.importers for m in c.mounts if _covers(m, media)
    }
    for reader in scene.readers:
        scene.poll()
        seen_at = {_seen_at(m, media) for m in reader.mounts if _covers(m, media)}
        if library_points and seen_at and not seen_at & library_points:
            findings.append(
                _found(
                    reader,
                    "library-path",
                    media,
                    "sees the library at %s, the importers at %s: library updates and subtitle "
                    "paths need remapping"
                    % (", ".join(sorted(seen_at)), ", ".join(sorted(library_points))),
                    "mount it at the same path: - %s:%s" % (media, sorted(library_points)[0]),
                )
            )
        findings += _broad_access(reader, media, "the library it needs")
    for client in scene.clients:
        scene.poll()
        own = own_source(client)
        findings += _broad_access(client, os.path.join(scene.root, own), "its own %s/" % own)
    return findings


def _broad_access(container: Container, folder: str, needs: str) -> List[Finding]:
    """A container that mounts a folder above the one it needs (the library, a client's
    own source folder)."""
    broad = [m.host for m in container.mounts if m.type == "bind" and inside(folder, m.host)
             and m.host.rstrip("/") != folder]  # fmt: skip
    fix = "the narrower bind (--compose prints it): - %s:/data/%s" % (
        folder, os.path.basename(folder))  # fmt: skip
    return [_found(container, "broad-access", broad[0], "mounts %s, more than %s"
                   % (broad[0], needs), fix)] if broad else []  # fmt: skip


def _ids_findings(
    writers: Sequence[Container],
    tree_ids: Optional[Tuple[int, int]],
    root: str,
    blocked: Optional[Blocked] = None,
    creator: Callable[[str], str] = lambda options: "python3 %s%s" % (SCRIPT_NAME, options),
) -> List[Finding]:
    """Ids the writers run as, against each other and the tree's owner (None: no data/);
    blocked: the writers the tree doesn't let write (see blocked_writers); creator:
    the create command with the options given (creator_command).  A tree of root's is
    fixed by giving it to the apps' user, never the other way."""
    known = [(c, container_ids(c)) for c in writers]
    known = [(c, ids) for c, ids in known if ids != (None, None)]

    def give(ids: str) -> str:
        return "give the tree to the apps' user: " + creator(" --owner " + ids)

    findings = [item for container, ids in known for item in
                _writer_ids(container, ids, tree_ids, root, blocked or {}, give)]  # fmt: skip
    return findings + _shared_ids(known, tree_ids, root, give)


def _writer_ids(
    container: Container,
    ids: Tuple[Optional[int], Optional[int]],
    tree_ids: Optional[Tuple[int, int]],
    root: str,
    blocked: Blocked,
    give: Callable[[str], str],
) -> List[Finding]:
    """One writer's ids: root, cannot-write (it can't write where it must), else ids (a
    group other than the tree's)."""
    uid, gid = ids
    users_tree = tree_ids is not None and tree_ids[0] != 0  # root's is given away instead
    owner = "%d:%d" % tree_ids if tree_ids is not None else ""
    said = "%s:%s" % ("?" if uid is None else uid, "?" if gid is None else gid)
    to_match = give(said)
    if users_tree:
        to_match = "set PUID/PGID to the tree's owner (%s), or %s" % (owner, to_match)
    if uid == 0:
        fix = "set PUID/PGID to the tree's owner (%s)" % owner if users_tree else (
            "set PUID/PGID to the apps' user; then " + give("PUID:PGID"))  # fmt: skip
        detail = "runs as root (PUID 0 or no user): what it writes belongs to root, and the " \
            "other apps can't change it"  # fmt: skip
        return [_found(container, "root", root, detail, fix)]
    if container.name in blocked:
        cannot, of, example, acl = blocked[container.name]
        return [_found(
            container, "cannot-write", root,
            "writes as %s, and can't write %d of the %d folders its downloads or imports go "
            "into, e.g. %s%s" % (said, cannot, of, example,
                                 "; an ACL there may let it" if acl else ""),
            to_match, WARNING if acl else PROBLEM,
        )]  # fmt: skip
    if tree_ids is not None and gid is not None and gid != tree_ids[1]:
        return [_found(container, "ids", root, "writes as %s, the tree belongs to %s"
                       % (said, owner), to_match)]  # fmt: skip
    return []


def _shared_ids(
    known: Sequence[Tuple[Container, Tuple[Optional[int], Optional[int]]]],
    tree_ids: Optional[Tuple[int, int]],
    root: str,
    give: Callable[[str], str],
) -> List[Finding]:
    """The writers against each other: no group in common (ids), and where they run as
    several users, each one whose UMASK keeps the others out (umask)."""
    findings: List[Finding] = []
    gids = {ids[1] for _, ids in known if ids[1] is not None}
    if len(gids) > 1:
        group = tree_ids[1] if tree_ids is not None and tree_ids[1] != 0 else None
        findings.append(finding(
            "ids", root, "the download clients and importers share no group (PGID %s)"
            % ", ".join(str(g) for g in sorted(gids)),
            "give them all the same PGID (the tree's group, %d)" % group if group is not None
            else "give them all the same PGID; then " + give("PUID:PGID"),
        ))  # fmt: skip
    if len({ids[0] for _, ids in known if ids[0] is not None}) < 2:
        return findings
    for container, _ in known:
        umask = container.env.get("UMASK", container.env.get("UMASK_SET"))
        if umask is None or umask.strip().lstrip("0") in ("22", ""):
            findings.append(_found(
                container, "umask", root,
                "UMASK is %s while the apps run as different users: the others can't move or "
                "hardlink what it writes (fs.protected_hardlinks)"
                % ("unset (022)" if umask is None else umask),
                "set UMASK=002",
            ))  # fmt: skip
    return findings


def resolve_volume_binds(
    containers: Sequence[Container], steps: Sequence[Step], mounts: Optional[Sequence[Mount]]
) -> List[Container]:
    """docker inspect shows a named volume that binds a folder (the local driver's type
    none, o bind) by its .../volumes/NAME/_data: where that is this host's, it is judged
    as the folder it binds, found by its inode among the tree's folders, else through
    the mount table."""
    tree = {(s.st.st_dev, s.st.st_ino): s.path for s in steps if s.st is not None}
    judged = []
    for container in containers:
        mine = []
        for mount in container.mounts:
            folder = ""
            if mount.type == "volume" and mount.host.startswith("/"):
                folder = _bound_folder(mount.host, tree, mounts or ())
            mine.append(mount._replace(type="bind", host=folder) if folder else mount)
        judged.append(container._replace(mounts=mine))
    return judged


def _bound_folder(source: str, tree: Dict[Tuple[int, int], str], mounts: Sequence[Mount]) -> str:
    """The host folder a volume's _data is a bind of, or ''."""
    try:
        st = os.stat(source)
    except OSError:  # not this host's, or root's 0710 /var/lib/docker
        return ""
    if (st.st_dev, st.st_ino) in tree:
        return tree[(st.st_dev, st.st_ino)]
    real = os.path.realpath(source)
    bound = [m for m in mounts if m.point == real]
    if not bound or bound[-1].root == "/":
        return ""
    here = bound[-1]  # the same filesystem mounted elsewhere, at the longest root above
    above = [m for m in mounts if (m.device, m.fstype) == (here.device, here.fstype)
             and m.point != here.point and inside(here.root, m.root)]  # fmt: skip
    if not above:
        return ""
    best = max(above, key=lambda m: len(m.root))
    rest = os.path.relpath(here.root, best.root)
    return best.point if rest == "." else os.path.join(best.point, rest)


class Judged(NamedTuple):
    """A container as the containers section lists it."""

    container: Container
    verdict: str  # its grade, or why it was not judged


def load_docker(
    docker_input: str, steps: Sequence[Step], mounts: Optional[Sequence[Mount]]
) -> Tuple[List[Container], str]:
    """The containers --docker names, their volumes that bind folders resolved (through
    the mount table), and why they can't be judged ('' where they can)."""
    if docker_input == "-" and sys.argv[:1] == ["-"]:
        raise Error("--docker -: the script itself came through stdin; use --docker <(docker "
                    "inspect $(docker ps -q)) instead", 2)  # fmt: skip
    containers, why_not = load_containers(docker_input)
    if containers and not why_not:
        containers = resolve_volume_binds(containers, steps, mounts)
    return containers, why_not


def importer_users(containers: Sequence[Container]) -> List[Identity]:
    """The users the importers write as (PUID, PGID and the image's group "users"): whom
    the audit checks the downloads' links and moves for, one entry per uid:gid with its
    importers' names.  Root and unknown ids: none."""
    names: Dict[Tuple[int, int, FrozenSet[int]], List[str]] = {}
    for container in containers:
        uid, gid = container_ids(container)
        if container.role == "importer" and uid and gid is not None:
            key = (uid, gid, writer_groups(container, gid))
            names.setdefault(key, []).append(container.name)
    return [
        ("%s (%d:%d)" % (", ".join(who), uid, gid), uid, groups)
        for (uid, gid, groups), who in names.items()
    ]


def check_containers(
    found: CheckResult,
    walk: Walk,
    steps: Sequence[Step],
    pairs: Pairs,
    loaded: Tuple[List[Container], str],
    poll: Callable[[], None] = nothing,
    owner_blocked: Optional[Tuple[int, int]] = None,
    mappings: Optional[Dict[str, Tuple[Tuple[str, str, str], ...]]] = None,
) -> Tuple[CheckResult, List[Judged]]:
    """Add the containers section to a host check: findings, grade, and the list; poll
    runs once per container a rule looks at (a stack of thousands takes a while).
    owner_blocked: the ids --owner gave, where the permissions section found that they
    can't write: a writer of those ids that can't is that one problem, cited here."""
    containers, why_not = loaded
    sections = dict(found.sections)
    root = walk.path((DATA,))
    judged: List[Judged] = []
    findings = list(found.findings)
    if why_not or not containers:
        sections["containers"] = why_not or "not checked: no containers"
        if docker_down(why_not):
            findings.append(finding(
                "docker-unreachable", "docker", why_not[len("not checked: "):],
                "start docker (systemctl start docker), or check a saved file: docker inspect "
                "$(docker ps -q) > containers.json, then --docker containers.json",
            ))  # fmt: skip
    else:
        st = steps[0].st
        tree_ids = (st.st_uid, st.st_gid) if st is not None else None
        real_root = real_data_root(walk)
        blocked = blocked_writers(containers, walk, steps, pairs)
        cited = {c.name for c in containers if c.name in blocked
                 and container_ids(c) == owner_blocked}  # fmt: skip
        mine = judge_containers(containers, root, real_root, tree_ids, blocked,
                                lambda options: creator_command(steps, options), poll, cited,
                                mappings)  # fmt: skip
        findings += mine
        judged = verdicts(containers, mine, cited)
        sections["containers"] = grade({f.severity for f in mine} | ({PROBLEM} if cited else set()))
    return found._replace(findings=findings, sections=sections), judged


def real_data_root(walk: Walk) -> str:
    """Where <path>/data really is (its path as given where it isn't there)."""
    root = walk.path((DATA,))
    return real_path_of(walk.fds[(DATA,)], root) if (DATA,) in walk.fds else root


CITED = "problem: can't write, counted in permissions"


def verdicts(
    containers: Sequence[Container],
    findings: Sequence[Finding],
    cited: AbstractSet[str] = frozenset(),
) -> List[Judged]:
    """Each container with its grade from the containers section's findings; cited: the
    writers whose one problem the permissions section counts (see check_containers)."""
    by_name: Dict[str, Set[str]] = {}
    for item in findings:
        if item.section == "containers":
            by_name.setdefault(item.container, set()).add(item.severity)
    judged = []
    for container in containers:
        if container.role in ("unknown", "other"):
            verdict = "not judged: unknown image" if container.role == "unknown" else (
                "ignored: no media paths")  # fmt: skip
        elif container.name in cited:
            verdict = CITED
        else:
            verdict = grade(by_name.get(container.name, set()))
        judged.append(Judged(container, verdict))
    return judged


# -- --check --docker: routes, from the apps' own settings ------------------------------
# The mounts can be right while the apps' own settings still copy every import: a
# save folder on no mount, a root folder inside the downloads, a remote path mapping
# to the wrong folder, "Use Hardlinks instead of Copy" off.  This reads each app's
# settings from the host folder at its /config (or an --app folder) without changing
# a byte there, and follows each download from the client's folder to the importer's
# root folders: hardlink, move, copy, unseen or unknown.

# An import in an *arr app's History: its EventType (DownloadFolderImported in Sonarr,
# Radarr and Whisparr; TrackFileImported in Lidarr; BookFileImported in Readarr), and how
# many of the newest are read (a Data longer than DB_VALUE is cut, so it is skipped).
IMPORT_EVENT = 3
HISTORY_ROWS = 100
# An *arr's download-client row: the settings keys of the category and the folder.
CATEGORY_KEYS = ("tvCategory", "movieCategory", "musicCategory", "bookCategory", "category")
# downloadDirectory is Deluge's, where no completed one is set.
DIRECTORY_KEYS = ("tvDirectory", "movieDirectory", "musicDirectory", "bookDirectory",
                  "completedDirectory", "downloadDirectory", "directory")  # fmt: skip
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
DOCKER_HOST_NAMES = ("host.docker.internal", "host-gateway", "gateway.docker.internal")


class Row(NamedTuple):
    """An importer's download-client row."""

    name: str
    implementation: str  # as the row says it (QBittorrent, Sabnzbd, RTorrent, ...)
    host: str
    port: int
    category: str
    directory: str  # the row's folder override, or ""


class Settings(NamedTuple):
    """What routes need of one app's settings (paths as the app sees them)."""

    unread: str  # why they could not be read; "" where they were
    save: str  # a client: where finished downloads are, by default
    categories: Dict[str, str]  # a client: the folder of each category it names
    subfolders: bool  # a client: a category it doesn't name goes to <save>/<category>
    incomplete: str  # a client: the folder downloads grow in, where not save's
    manual: bool  # qBittorrent: Manual mode, so its category folders are not used
    roots: Tuple[str, ...]  # an importer's root folders
    mappings: Tuple[Tuple[str, str, str], ...]  # an importer's (host, remote, local)
    rows: Tuple[Row, ...]  # an importer's enabled download-client rows
    hardlinks: bool  # an importer: "Use Hardlinks instead of Copy"
    importing: bool  # an importer: Completed Download Handling
    libraries: Tuple[str, ...]  # a media server's library folders
    port: int  # a client: the port its web API listens on (0: not known)
    history: Tuple[Tuple[int, str, str], ...]  # an importer's newest imports: id, date, Data
    growing: Dict[str, str]  # a client: a category's own incomplete folder (qBittorrent's)
    caseless: bool  # a client: its category names match in any case (NZBGet)


NOTHING_SET = Settings("", "", {}, False, "", False, (), (), (), True, True, (), 0, (), {}, False)


class App(NamedTuple):
    """An app whose settings are read: a container, or one installed natively (--app)."""

    name: str
    kind: str  # one of READ_APPS
    container: Optional[Container]  # None: native, its paths are the host's
    folder: str  # its config folder on the host (a docker volume's name, "" none)
    settings: Settings


class Route(NamedTuple):
    client: str
    category: str
    importer: str
    download: str  # host folder ("" where unknown)
    seen_as: Optional[str]  # where the importer looks for it; None: nowhere
    root: str  # host folder of the root folder
    result: str  # hardlink, move, copy, unseen, unknown
    cause: str  # the kind of finding that explains a result other than hardlink or move
    why: str  # for unknown: why, in words


class Routes(NamedTuple):
    routes: List[Route]
    quiet: List[Tuple[str, str]]  # an app with no route, and why (nothing configured, ...)
    apps: List[App]  # the apps whose settings were read (the imports read them too)


def app_kind(container: Container) -> str:
    """The app whose settings a container holds ('' where none is read here)."""
    return container.kind if container.kind in READ_APPS else ""


# -- the apps' settings, each by its reader


class Source(NamedTuple):
    """What a reader reads: its settings file (or library folder) in a config folder."""

    config: ConfigFolder
    relative: str

    @property
    def path(self) -> str:
        return self.config.path(self.relative)

    def text(self) -> str:
        return self.config.text(self.relative)

    def beside(self, name: str) -> str:
        """The text of a file an app may keep beside its settings file; "" where there
        is none."""
        other = os.path.join(os.path.dirname(self.relative), name)
        return self.config.text(other) if self.config.kind(other) else ""


def find_settings(kind: str, config: ConfigFolder) -> str:
    """The app's settings file (or library folder) below its config folder, relative to
    it; '' where the folder holds nothing yet.  Unread where it can't be looked in, where
    it holds things but none of the known layouts, or where a symlink is on the way."""
    holds = any(not name.startswith(".") for name in config.names())
    for candidate in APPS[kind].settings:
        found = config.kind(candidate)
        if found and (found == "folder") == (APPS[kind].reader == "jellyfin"):  # libraries
            return os.path.normpath(candidate)
    if not holds:
        return ""
    raise Unread("%s: none of %s" % (config.top, ", ".join(APPS[kind].settings)))


def read_settings(kind: str, folder: str, inside_at: str) -> Settings:
    """One app's settings from its config folder; inside_at: where the app sees that
    folder (/config in a container, the folder itself natively)."""
    config = ConfigFolder(folder)
    relative = find_settings(kind, config)
    if not relative:
        return NOTHING_SET
    source = Source(config, relative)
    seen_at = os.path.normpath(os.path.join(inside_at, os.path.dirname(relative)))
    reader = READERS[APPS[kind].reader]
    path = source.path
    try:
        return reader(source, seen_at)
    except OSError as exc:  # a library folder that can't be listed
        raise Unread("%s: %s" % (exc.filename or path, exc.strerror))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise Unread("%s: not in the shape %s writes (%s)" % (path, kind, exc))


def _joined(base: str, path: str) -> str:
    """path as the app resolves it: relative ones below base."""
    path = path.strip()
    return os.path.normpath(os.path.join(base, path)) if path else ""


def _truth(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().strip('"').lower() in ("true", "1", "yes", "on")


def _port(value: Any, default: int) -> int:
    """A listen port from a settings file, or the app's default."""
    text = str(value if value is not None else "").strip().strip('"')
    return int(text) if ascii_number(text) and 0 < int(text) < 65536 else default


def _qbittorrent(source: Source, seen_at: str) -> Settings:
    import configparser
    import json

    path = source.path
    parser = configparser.RawConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(source.text(), path)
    except configparser.Error as exc:
        raise Unread("%s: not INI (%s)" % (path, str(exc).splitlines()[0]))

    def value(key: str, section: str = "BitTorrent") -> Optional[str]:
        found = parser.get(section, key, fallback=None)
        return None if found is None else qt_unescaped(found.strip().strip('"'))

    new = value("Session\\DefaultSavePath")
    save = new if new is not None else value("Downloads\\SavePath", "Preferences")
    save = os.path.normpath(save) if save else ""
    if value("Session\\TempPathEnabled") is not None or value("Session\\TempPath") is not None:
        temp_on, temp = value("Session\\TempPathEnabled"), value("Session\\TempPath")
    else:
        temp_on = value("Downloads\\TempPathEnabled", "Preferences")
        temp = value("Downloads\\TempPath", "Preferences")
    incomplete = ""
    if _truth(temp_on, False) and save:
        incomplete = _joined(save, temp or "temp")
    manual = _truth(value("Session\\DisableAutoTMMByDefault"), True) and not _truth(
        value("Session\\UseCategoryPathsInManualMode"), False
    )
    categories: Dict[str, str] = {}
    document = json.loads(source.beside("categories.json") or "{}")
    if not isinstance(document, dict):
        raise ValueError("categories.json is not an object")
    growing: Dict[str, str] = {}
    for name, item in document.items():
        folder = item.get("save_path") if isinstance(item, dict) else item
        categories[str(name)] = _joined(save, str(folder or "") or str(name))
        grow = item.get("download_path") if isinstance(item, dict) else None
        if isinstance(grow, str):  # its own incomplete folder ("": the default's, per name)
            growing[str(name)] = _joined(incomplete or _joined(save, "temp"), grow or str(name))
    return NOTHING_SET._replace(
        save=save,
        categories=categories,
        growing=growing,
        subfolders=True,
        incomplete=incomplete,
        manual=manual,
        port=_port(value("WebUI\\Port", "Preferences"), APPS["qbittorrent"].port),
    )


def qt_unescaped(text: str) -> str:
    """A value as QSettings reads it back: Qt 5 writes what isn't printable ASCII as
    \\xNNNN (hex digits, as many as follow) and some as \\uNNNN; \\\\ is a backslash."""
    import re

    def one(found: Any) -> str:
        escape: str = found.group(0)
        if escape == "\\\\":
            return "\\"
        try:
            return chr(int(escape[2:], 16))
        except (ValueError, OverflowError):
            return escape

    return re.sub(r"\\\\|\\x[0-9a-fA-F]{1,4}|\\u[0-9a-fA-F]{4}", one, text)


def _transmission(source: Source, seen_at: str) -> Settings:
    import json

    document = json.loads(source.text())

    def value(key: str) -> Any:  # 4.1 renamed download-dir to download_dir, and so on
        return document.get(key, document.get(key.replace("-", "_")))

    save = str(value("download-dir") or "")
    incomplete = (
        str(value("incomplete-dir") or "") if _truth(value("incomplete-dir-enabled"), False) else ""
    )
    return NOTHING_SET._replace(
        save=_joined("/", save),
        subfolders=True,
        port=_port(value("rpc-port"), APPS["transmission"].port),
        incomplete=_joined("/", incomplete),
    )


def _json_objects(text: str) -> List[Any]:
    """Deluge's files: a header object, then the settings object."""
    import json

    decoder, at, found = json.JSONDecoder(), 0, []
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        item, at = decoder.raw_decode(text, at)
        found.append(item)
    return found


def _deluge(source: Source, seen_at: str) -> Settings:
    document = _json_objects(source.text())[-1]
    moved = _truth(document.get("move_completed"), False)
    grow = str(document.get("download_location") or "")
    save = str(document.get("move_completed_path") or "") if moved else grow
    categories: Dict[str, str] = {}
    labels = _json_objects(source.beside("label.conf") or "{}")[-1].get("labels") or {}
    for name, label in labels.items():  # a label that applies its own move on completion
        if _truth(label.get("apply_move_completed"), False):
            moves = _truth(label.get("move_completed"), False)
            path = str(label.get("move_completed_path") or "") if moves else grow
            categories[str(name)] = _joined("/", path)  # moved there, or left where it grew
    web = _json_objects(source.beside("web.conf") or "{}")[-1]  # the *arr apps use the web UI
    return NOTHING_SET._replace(
        save=_joined("/", save),
        categories=categories,
        incomplete=_joined("/", grow) if moved else "",
        port=_port(web.get("port"), APPS["deluge"].port),
    )


def _configobj(text: str) -> Dict[str, Dict[str, Any]]:
    """SABnzbd's ConfigObj ini: top-level lines, [section], [[sub-section]], key = value."""
    sections: Dict[str, Dict[str, Any]] = {"": {}}
    section = sections[""]
    current = section
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[["):
            current = section.setdefault(line.strip("[]").strip(), {})
        elif line.startswith("["):
            section = current = sections.setdefault(line.strip("[]").strip(), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            current[key.strip()] = value
        else:
            raise ValueError("line %r is not key = value" % line[:40])
    return sections


def _sabnzbd(source: Source, seen_at: str) -> Settings:
    sections = _configobj(source.text())
    misc = sections.get("misc", {})
    complete = _joined(seen_at, str(misc.get("complete_dir") or "Downloads/complete"))
    incomplete = _joined(seen_at, str(misc.get("download_dir") or "Downloads/incomplete"))
    categories = {}
    for name, category in sections.get("categories", {}).items():
        if isinstance(category, dict):  # an empty dir is complete_dir itself
            categories[name] = _joined(complete, str(category.get("dir") or "")) or complete
    return NOTHING_SET._replace(
        save=categories.get("*", complete),
        categories=categories,
        incomplete=incomplete,
        port=_port(misc.get("port"), APPS["sabnzbd"].port),
    )


def _nzbget(source: Source, seen_at: str) -> Settings:
    options: Dict[str, str] = {}
    for raw in source.text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, given = line.partition("=")
            options[key.strip().lower()] = given.strip()

    def value(key: str, default: str = "", below: str = seen_at) -> str:
        """An option, ${Option}s filled in, a relative path below below (MainDir)."""
        text = options.get(key.lower(), default)
        for _ in range(5):  # ${Option} may name another that names another
            start = text.find("${")
            end = text.find("}", start)
            if start < 0 or end < 0:
                break
            text = text[:start] + options.get(text[start + 2 : end].lower(), "") + text[end + 1 :]
        return _joined(below, text) if text else ""

    # The defaults of the template config NZBGet ships (nzbget.conf.template): MainDir,
    # then completed/ and intermediate/ below it; a relative path is below MainDir.
    options.setdefault("maindir", "~/downloads")
    main_dir = value("MainDir")
    destination = value("DestDir", "${MainDir}/completed", main_dir)
    append = _truth(options.get("appendcategorydir"), True)
    categories = {}
    for number in range(1, 1000):
        name = options.get("category%d.name" % number)
        if name is None:
            break
        own = value("Category%d.DestDir" % number, "", main_dir)
        folder = own or (os.path.join(destination, name) if append else destination)
        categories[name.lower()] = folder  # NZBGet matches a category in any case
    return NOTHING_SET._replace(
        save=destination,
        categories=categories,
        subfolders=append,  # a category it doesn't define gets its folder too
        caseless=True,
        incomplete=value("InterDir", "${MainDir}/intermediate", main_dir),
        port=_port(options.get("controlport"), APPS["nzbget"].port),
    )


def _rtorrent(source: Source, seen_at: str) -> Settings:
    """rTorrent's .rtorrent.rc: its download folder (directory.default.set, or the old
    directory), a move on completion where a method.set_key on event.download.finished
    sets d.directory (or moves with mv), and its SCGI port."""
    import re

    settings: Dict[str, str] = {}
    finished = ""
    for raw in source.text().splitlines():
        line = raw.split("#", 1)[0].strip()
        key, equals, given = line.partition("=")
        if not equals:
            continue
        key, given = key.strip(), given.strip().strip('"')
        settings[key] = given
        if key == "method.set_key" and "event.download.finished" in given:
            moved = re.search(r"d\.directory\.set\s*=\s*([^;,\"]+)", given) or re.search(
                r"execute[.\w]*\s*=\s*mv,-u,\$d\.base_path=,([^;,\"]+)", given)  # fmt: skip
            finished = moved.group(1).strip() if moved else finished
    grow = settings.get("directory.default.set") or settings.get("directory", "")
    port = settings.get("network.scgi.open_port", "").rpartition(":")[2]
    return NOTHING_SET._replace(
        save=_joined(seen_at, finished or grow),
        incomplete=_joined(seen_at, grow) if finished else "",
        port=_port(port, APPS["rtorrent"].port),
    )


def postgres_host(config_xml: str) -> str:
    """config.xml's PostgresHost, where it names one: an empty <PostgresHost /> (or
    <PostgresHost></PostgresHost>) is SQLite still."""
    import re

    found = re.search(r"<postgreshost>([^<]*)</postgreshost>", config_xml, re.IGNORECASE)
    return found.group(1).strip() if found else ""


def _importer(source: Source, seen_at: str) -> Settings:
    import json

    path = source.path
    if postgres_host(source.beside("config.xml")):
        xml = os.path.join(os.path.dirname(path), "config.xml")
        raise Unread("%s: the app keeps its settings in PostgreSQL, not read here" % xml)
    with AppDatabase(source.config, source.relative) as db:
        roots = query(db, path, "SELECT Path FROM RootFolders")
        mappings = query(db, path, "SELECT Host, RemotePath, LocalPath FROM "
                          "RemotePathMappings ORDER BY Id")  # fmt: skip
        clients = query(
            db, path, "SELECT Enable, Name, Implementation, Settings FROM DownloadClients"
        )
        config = {
            str(key).lower(): value
            for key, value in query(db, path, "SELECT Key, Value FROM Config")
        }
        # The newest imports (by Id, the rowid: 200,000 rows cost what 100 do).
        try:
            history = query(db, path, "SELECT Id, substr(Date, 1, 64), substr(Data, 1, %d) "
                             "FROM History WHERE EventType = %d ORDER BY Id DESC LIMIT %d"
                             % (DB_VALUE, IMPORT_EVENT, HISTORY_ROWS))  # fmt: skip
        except Unread:  # a History of another shape: the settings still hold
            history = []
    rows = []
    for enabled, name, implementation, text in clients:
        if not enabled:
            continue
        fields = json.loads(text or "{}")
        if not isinstance(fields, dict):
            raise ValueError("a download client's Settings is not an object")
        category = next((fields[k] for k in CATEGORY_KEYS if fields.get(k)), "")
        folder = next((fields[k] for k in DIRECTORY_KEYS if fields.get(k)), "")
        port = fields.get("port")
        rows.append(Row(str(name or implementation), str(implementation or ""),
                        str(fields.get("host") or ""), port if isinstance(port, int) else 0,
                        str(category), str(folder)))  # fmt: skip
    return NOTHING_SET._replace(
        roots=tuple(os.path.normpath(str(root[0])) for root in roots if root[0]),
        mappings=tuple((str(h or ""), str(r or ""), str(lp or "")) for h, r, lp in mappings),
        rows=tuple(rows),
        hardlinks=_truth(config.get("copyusinghardlinks"), True),
        importing=_truth(config.get("enablecompleteddownloadhandling"), True),
        history=tuple((number, date, data) for number, date, data in history
                      if isinstance(number, int) and isinstance(data, str)
                      and isinstance(date, str)),
    )  # fmt: skip


def _plex(source: Source, seen_at: str) -> Settings:
    path = source.path
    with AppDatabase(source.config, source.relative) as db:
        found = query(db, path, "SELECT root_path FROM section_locations")
    paths = [row[0] for row in found if isinstance(row[0], str) and row[0]]
    return NOTHING_SET._replace(libraries=tuple(os.path.normpath(path) for path in paths))


def _jellyfin(source: Source, seen_at: str) -> Settings:
    """Jellyfin's and Emby's libraries: a folder each, its *.mblink files holding its
    paths (options.xml repeats them)."""
    import html
    import re

    config = source.config
    paths: List[str] = []
    for library in config.names(source.relative):
        here = os.path.join(source.relative, library)
        if config.kind(here) != "folder":
            continue
        names = config.names(here)
        links = [config.text(os.path.join(here, n)).strip() for n in names
                 if n.endswith(".mblink")]  # fmt: skip
        if not links and "options.xml" in names:
            text = config.text(os.path.join(here, "options.xml"))
            links = [html.unescape(p) for p in re.findall(r"<Path>([^<]*)</Path>", text)]
        paths += [os.path.normpath(link) for link in links if link.startswith("/")]
    return NOTHING_SET._replace(libraries=tuple(paths))


# Each reader an app of APPS names: (its settings file, the folder the app sees it in)
# -> Settings.
READERS: Dict[str, Callable[[Source, str], Settings]] = {
    "qbittorrent": _qbittorrent,
    "rtorrent": _rtorrent,
    "transmission": _transmission,
    "deluge": _deluge,
    "sabnzbd": _sabnzbd,
    "nzbget": _nzbget,
    "importer": _importer,
    "plex": _plex,
    "jellyfin": _jellyfin,
}


# -- which client a row means, and where a path of an app is on the host


def postgres_env(container: Container) -> Optional[Settings]:
    """An *arr told by its environment (SONARR__POSTGRES__HOST, ...) to keep its settings
    in PostgreSQL: unread, whatever .db is left beside it; None where it isn't."""
    for key, value in container.env.items():
        if key.upper().endswith("__POSTGRES__HOST") and value.strip():
            why = "%s=%s: the app keeps its settings in PostgreSQL, not read here"
            return NOTHING_SET._replace(unread=why % (key, value.strip()))
    return None


def load_apps(
    containers: Sequence[Container], why_not: str, native: Sequence[Tuple[str, str]]
) -> Tuple[List[App], List[str], str]:
    """The apps whose settings are read, notes on those that aren't, and why the
    containers' settings can't be ('' where they can): their config folders aren't on
    this machine (DOCKER_HOST elsewhere, a saved file from another host)."""
    notes: List[str] = []
    docker: List[Tuple[Container, str]] = []
    for container in containers:
        kind = app_kind(container)
        if kind:
            docker.append((container, kind))
        elif container.role in ("download client", "importer"):
            notes.append(
                "%s: no reader here for %s's settings, its routes are not checked"
                % (container.name, container.kind)
            )
    folders = [c.config for c, _ in docker if c.config.startswith("/")]
    elsewhere = ""
    if docker_down(why_not):
        elsewhere = "not checked: it needs the containers, which were not (see containers)"
        docker, notes = [], []
    elif why_not or (folders and not any(os.path.isdir(folder) for folder in folders)):
        elsewhere = "not checked: the config folders aren't on this machine"
        docker, notes = [], []
    apps = [App(c.name, kind, c, c.config, postgres_env(c) or
                settings_of(kind, c.config, "/config"))
            for c, kind in docker]  # fmt: skip
    counts: Dict[str, int] = {}
    for kind, folder in native:
        counts[kind] = counts.get(kind, 0) + 1
        name = kind if counts[kind] == 1 else "%s-%d" % (kind, counts[kind])
        apps.append(App(name, kind, None, folder, settings_of(kind, folder, folder)))
    return apps, notes, elsewhere


NO_SQLITE = "not checked: this Python has no sqlite3"


def settings_of(kind: str, folder: str, inside_at: str) -> Settings:
    """An app's settings, or why they could not be read (never an exception)."""
    if not folder:
        return NOTHING_SET._replace(unread="no folder is bound at /config")
    if not folder.startswith("/"):
        return NOTHING_SET._replace(
            unread="/config is the docker volume %s, which has no folder here to read" % folder
        )
    try:
        return read_settings(kind, folder, inside_at)
    except Unread as exc:
        return NOTHING_SET._replace(unread=str(exc))
    except ImportError:  # a Python built without sqlite3
        return NOTHING_SET._replace(unread=NO_SQLITE)


def namespace_owner(container: Container, containers: Sequence[Container]) -> Optional[Container]:
    """The container whose network namespace it shares (network_mode: service:gluetun,
    or container:<name or id>), or None."""
    mode, _, target = container.network.partition(":")
    if mode not in ("service", "container") or not target:
        return None
    target = target.lower()
    return next(
        (
            c
            for c in containers
            if target in names_of(c) or (len(target) >= 12 and c.ident.lower().startswith(target))
        ),
        None,
    )


def namespace(app: App, containers: Sequence[Container]) -> str:
    """Which network namespace an app listens in: 'host' natively or with network_mode
    host, else the container that owns it."""
    if app.container is None or app.container.network == "host":
        return "host"
    owner = namespace_owner(app.container, containers) or app.container
    return "host" if owner.network == "host" else owner.name


def host_ports(app: App, containers: Sequence[Container]) -> Set[int]:
    """The host ports that reach an app: its own published ones and those of its
    namespace's owner; natively or on the host's network, the one it listens on."""
    if namespace(app, containers) == "host":
        return {app.settings.port} - {0}
    assert app.container is not None
    owner = namespace_owner(app.container, containers)
    return set(app.container.ports) | (set(owner.ports) if owner is not None else set())


def own_addresses() -> Set[str]:
    """This machine's names and addresses, as a row's host may give them."""
    import socket

    names = set(DOCKER_HOST_NAMES + LOCAL_HOSTS)
    hostname = socket.gethostname().lower()
    names |= {hostname, hostname.split(".")[0]}
    try:  # the kernel's local addresses (docker0's gateway among them)
        lines = read_bytes("/proc/net/fib_trie").decode("ascii", "replace").splitlines()
    except Unread:
        lines = []
    for before, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line and "-- " in before:
            names.add(before.split("-- ", 1)[1].strip())
    return names


def match_client(
    row: Row,
    importer: App,
    clients: Sequence[App],
    containers: Sequence[Container],
    own: Set[str],
) -> Tuple[Optional[App], str]:
    """The client a row means, or why none: its host names a container (the client, or
    one whose namespace it shares; its address on a docker network too), localhost the
    importer's own namespace, an address of this machine the client publishing the
    row's port.  Any other address is another machine's (a seedbox), never the local
    client that happens to use the same port.  Clients behind one namespace (a VPN
    container) are told apart by the port each listens on."""
    kind = row.implementation.lower()
    same = [c for c in clients if c.kind == kind]
    host = row.host.strip().strip("[]").lower()
    named = [c for c in containers if host in names_of(c)]
    here = ""
    if named:
        found = [
            c
            for c in same
            if c.container is not None
            and (c.container in named or namespace_owner(c.container, containers) in named)
        ]
    elif host in LOCAL_HOSTS and namespace(importer, containers) != "host":
        found = [c for c in same if namespace(c, containers) == namespace(importer, containers)]
    elif host in own:  # this machine: the client its port reaches
        found = [c for c in same if row.port in host_ports(c, containers)]
        if not found and len(same) == 1:
            found, here = same, "the only %s on this machine" % row.implementation
    else:  # another machine's address (a seedbox), or a name no container has
        found = []
    if len(found) > 1:  # behind one VPN container: the row's port tells them apart
        found = [c for c in found if c.settings.port == row.port] or found
    if len(found) > 1:
        return None, "%d %s clients here answer to %s" % (len(found), row.implementation, row.host)
    if not found:
        return None, "client not on this machine"
    return found[0], here


def to_host(app: App, path: str) -> Tuple[str, str]:
    """(host folder, mount point) of an app's path: natively, itself and ''; in a
    container, through the deepest data mount that covers it: ('', '') where none does,
    ('', point) where it is a docker volume's."""
    path = app_path(path)  # //data/usenet/complete/ is /data/usenet/complete
    if app.container is None:
        return path, ""
    best: Optional[ContainerMount] = None
    for mount in app.container.mounts:
        if inside(path, mount.container) and (
            best is None or len(mount.container) > len(best.container)
        ):
            best = mount
    if best is None:
        return "", ""
    if best.type != "bind":
        return "", best.container
    return rebase(path, best.container, best.host), best.container


def same_folder(one: str, two: str) -> bool:
    return one == two or os.path.realpath(one) == os.path.realpath(two)


def device_of(path: str) -> Optional[int]:
    """The filesystem a host folder is on (of its nearest folder that exists yet)."""
    for folder in ancestors(path):
        try:
            return os.stat(folder).st_dev
        except OSError:
            continue
    return None  # pragma: no cover - / always exists


# -- the routes, and what they find


ONE_MOUNT = "one mount of the whole tree (- %s:/data), the root folder under /data/media"


class Judge(NamedTuple):
    """What the routes are judged against."""

    scene: Scene  # the tree (root, media, in_tree) and poll; its container lists unused
    said: List[Finding]  # the containers section's findings: a cause they name is cited
    containers: List[Container]
    clients: List[App]
    downloads: List[Tuple[App, str, str]]  # each client's folders: (client, folder, host)
    mounts: Sequence[Mount]  # this machine's mount table (a bind mount inside the tree)


def check_routes(
    found: CheckResult,
    containers: Sequence[Container],
    loaded: Tuple[List[App], List[str], str],
    root: str,
    real_root: str,
    mounts: Sequence[Mount],
    poll: Callable[[], None] = nothing,
) -> Tuple[CheckResult, Routes]:
    """Add the routes section to a check: each download from the client's folder to
    the importer's root folders, and what the apps' settings do wrong; loaded: the
    apps, read once (load_apps), which the containers section read before; mounts: the
    mount table, as the host sections read it."""
    scene = Scene(root, real_root, os.path.join(root, MEDIA), [], [], [], [], poll)
    apps, notes, elsewhere = loaded
    native = [app for app in apps if app.container is None]
    sections = dict(found.sections)
    said = [f for f in found.findings if f.section == "containers"]
    clients = [a for a in apps if a.kind in CLIENT_APPS]
    downloads = [(c, folder, to_host(c, folder)[0]) for c in clients
                 for folder in client_folders(c.settings)]  # fmt: skip
    judge = Judge(scene, said, list(containers), clients, downloads, mounts)
    importers = [a for a in apps if a.kind in IMPORTER_APPS]
    roots = {a.name: [(root,) + to_host(a, root) for root in a.settings.roots] for a in importers}
    routes: List[Route] = []
    quiet: List[Tuple[str, str]] = []
    mine: List[Finding] = []
    own: Set[str] = set()  # this machine's names and addresses, once an importer needs them
    for app in apps:
        scene.poll()
        if app.kind in IMPORTER_APPS and not own:
            own = own_addresses()
        mine += _settings_findings(app, judge, roots, own, routes, notes, quiet)
    for server in (a for a in apps if a.kind in SERVER_APPS and a.settings.libraries):
        mine += _library_findings(server, importers, roots)
    if elsewhere and not native:
        sections["routes"] = elsewhere
    elif not apps:
        sections["routes"] = "not checked: no app here whose settings are read"
    else:
        sections["routes"] = grade({f.severity for f in mine})
        notes = ([elsewhere + " (only the --app ones were)"] if elsewhere else []) + notes
    found = found._replace(findings=found.findings + mine, notes=found.notes + notes,
                           sections=sections)  # fmt: skip
    return found, Routes(routes, quiet, apps)


def _settings_findings(
    app: App,
    judge: Judge,
    roots: Dict[str, List[Tuple[str, str, str]]],
    own: Set[str],
    routes: List[Route],
    notes: List[str],
    quiet: List[Tuple[str, str]],
) -> List[Finding]:
    """One app's findings from its settings: unread, nothing configured (no finding), a
    client's folders, an importer's settings and routes."""
    settings = app.settings
    if settings.unread:
        quiet.append((app.name, NO_SQLITE if settings.unread == NO_SQLITE else "settings unread"))
        if settings.unread == NO_SQLITE:
            return []
        return [_app_finding(app, "settings-unread", app.folder, settings.unread,
                             "check the folder bound at /config (or given to --app) holds the "
                             "app's settings, readable by this user")]  # fmt: skip
    if not (settings.save or settings.roots or settings.rows or settings.libraries):
        quiet.append((app.name, "nothing configured"))  # set up later: nothing to say
        return []
    if app.kind in CLIENT_APPS:
        return _client_findings(app, judge)
    if app.kind in IMPORTER_APPS:
        return _importer_findings(app, roots[app.name], judge, own, routes, notes)
    return []


def _app_finding(
    app: App, kind: str, path: str, detail: str, fix: str, other: str = "", severity: str = ""
) -> Finding:
    return finding(kind, path, detail, fix, container=app.name, other=other, severity=severity)


def client_folders(settings: Settings) -> List[str]:
    """Every folder a client saves into; in Manual mode no torrent uses the category
    folders, so they are not judged."""
    categories = [] if settings.manual else sorted(set(settings.categories.values()))
    growing = [] if settings.manual else sorted(set(settings.growing.values()))
    folders = [settings.save] + categories + [settings.incomplete] + growing
    return [folder for at, folder in enumerate(folders) if folder and folder not in folders[:at]]


def client_folder(settings: Settings, category: str, directory: str) -> str:
    """Where a client puts a download of a row's category: the row's own folder (its
    directory setting, for every client that has one), the category's folder (in
    Automatic mode), else the default one."""
    if directory:
        return app_path(directory)
    if settings.manual:
        return settings.save
    if settings.caseless:
        category = category.lower()
    if category in settings.categories:
        return settings.categories[category]
    if settings.subfolders and category:
        return os.path.join(settings.save, category)
    return settings.save


def growing_pairs(settings: Settings) -> List[Tuple[str, str]]:
    """(incomplete folder, the folder its downloads finish in): the default one, and a
    category's own (qBittorrent's download_path)."""
    pairs = [(settings.incomplete, settings.save)]
    if not settings.manual:
        pairs += [(grow, settings.categories.get(name, settings.save))
                  for name, grow in sorted(settings.growing.items())]  # fmt: skip
    return [(grow, save) for grow, save in pairs if grow and save]


def _client_findings(client: App, judge: Judge) -> List[Finding]:
    """save-unmounted, manual-mode, incomplete-elsewhere."""
    settings, container = client.settings, client.container
    source = own_source(container) if container is not None else "torrents"
    findings = []
    fix = "a folder under one of its data mounts (e.g. /data/%s/complete)" % source
    for folder in client_folders(settings) if container is not None else ():  # natively: host's
        if to_host(client, folder) == ("", ""):
            findings.append(_app_finding(
                client, "save-unmounted", folder, "saves into %s, on none of its data mounts: "
                "downloads stay inside the container (or its /config) and no importer sees "
                "them" % folder, fix))  # fmt: skip
    if settings.manual and settings.categories:
        detail = "new torrents default to Manual mode: every download goes to %s, the " \
            "category folders (%s) are not used" % (settings.save, ", ".join(
                sorted(settings.categories)))  # fmt: skip
        fix = "Options > Downloads > Default Torrent Management Mode: Automatic"
        saved = to_host(client, settings.save)[0] or settings.save
        findings.append(_app_finding(client, "manual-mode", saved, detail, fix))
    fix = "an incomplete folder on the same mount, e.g. /data/%s/incomplete" % source
    for incomplete, finished in growing_pairs(settings):
        grow, grow_point = to_host(client, incomplete)
        save, save_point = to_host(client, finished)
        apart = grow_point != save_point or (grow and save and device_of(grow) != device_of(save))
        if apart and (grow or grow_point) and (save or save_point):
            findings.append(_app_finding(
                client, "incomplete-elsewhere", grow or incomplete, "downloads grow in %s, on "
                "another mount or filesystem than %s: each finished one is copied over"
                % (incomplete, finished), fix if container else "the same filesystem"))  # fmt: skip
    return findings


def _said(judge: Judge, kind: str, names: Sequence[str], hosts: Sequence[str] = ()) -> bool:
    """Whether the containers section already names this cause."""
    return any(
        f.kind == kind
        and f.container in names
        and (not hosts or any(h and (inside(h, f.path) or not f.path) for h in hosts))
        for f in judge.said
    )


def _importer_findings(
    importer: App,
    roots: Sequence[Tuple[str, str, str]],
    judge: Judge,
    own: Set[str],
    routes: List[Route],
    notes: List[str],
) -> List[Finding]:
    """An importer's own settings, its root folders (each as (its path, host folder,
    mount point)), and a route per row and root."""
    settings = importer.settings
    findings = []
    torrent = any(torrent_client(row.implementation) for row in settings.rows)
    if not settings.hardlinks:  # usenet imports move either way: a torrent client's copy
        detail = '"Use Hardlinks instead of Copy" is off: every torrent import is a copy' + (
            "" if torrent else " (it has no torrent client yet)")  # fmt: skip
        fix = "Settings > Media Management > Use Hardlinks instead of Copy: on"
        findings.append(_app_finding(importer, "hardlinks-off", judge.scene.root, detail, fix,
                                     severity=PROBLEM if torrent else WARNING))  # fmt: skip
    if not settings.importing:
        detail = "Completed Download Handling is off: nothing is imported by itself"
        fix = "Settings > Download Clients > Completed Download Handling: on"
        findings.append(_app_finding(importer, "import-off", judge.scene.root, detail, fix))
    findings += _root_findings(importer, roots, judge)
    for row in settings.rows:
        if row.implementation.lower() not in CLIENT_APPS:
            notes.append(
                "%s: download client %s (%s) is not read here: its route is not "
                "checked" % (importer.name, row.name, row.implementation)
            )
            continue
        matched, why = match_client(row, importer, judge.clients, judge.containers, own)
        if why and matched is not None:
            notes.append(
                "%s: download client %s at %s taken to be %s, %s"
                % (importer.name, row.name, row.host, matched.name, why)
            )
        findings += _route(importer, row, matched, why, roots, judge, routes)
    return findings


def _root_findings(
    importer: App, roots: Sequence[Tuple[str, str, str]], judge: Judge
) -> List[Finding]:
    """Root folders in the tree but outside media/, and inside a client's downloads (or
    holding them), whether or not a row names that client."""
    media = judge.scene.media
    findings = []
    for root, host, point in roots:
        if not host and not point and importer.container is not None:
            findings.append(_app_finding(
                importer, "root-unmounted", root, "root folder %s is on none of its data "
                "mounts: what it imports stays inside the container, and is gone with it"
                % root, ONE_MOUNT % judge.scene.root))  # fmt: skip
        if host and judge.scene.in_tree(host) and not inside(host, media):
            findings.append(_app_finding(
                importer, "root-outside-media", host, "root folder %s is in the tree but not "
                "in media/: the library and the downloads mix" % root,
                "a root folder under %s" % media))  # fmt: skip
        named: Set[str] = set()  # one finding per client
        fix = "a root folder under %s, the downloads under their source folder" % media
        for client, folder, download in judge.downloads:
            if host and download and client.name not in named and (
                    inside(host, download) or inside(download, host)):  # fmt: skip
                named.add(client.name)
                detail = "root folder %s and %s's download folder %s hold one another: " \
                    "imports land among the downloads" % (root, client.name, folder)  # fmt: skip
                findings.append(_app_finding(importer, "root-in-downloads", host, detail, fix,
                                             other=client.name))  # fmt: skip
    return findings


def _route(
    importer: App,
    row: Row,
    client: Optional[App],
    why: str,
    roots: Sequence[Tuple[str, str, str]],
    judge: Judge,
    routes: List[Route],
) -> List[Finding]:
    """One row's routes, one per root folder: where the client puts the download, where
    the importer looks for it, then what each import of it is."""
    name = client.name if client is not None else row.host or row.name
    route = Route(name, row.category, importer.name, "", None, "", "unknown", "", why)
    if client is None or client.settings.unread:
        routes.append(route._replace(cause="settings-unread" if client is not None else ""))
        return []
    folder = client_folder(client.settings, row.category, row.directory)
    download, point = to_host(client, folder)
    if not download:  # no save folder set, or one on no mount of the host's
        cause = "named-volume" if point else "save-unmounted" if folder else ""
        result = "unseen" if cause == "save-unmounted" else "unknown"
        why = "" if folder else "the client has no save folder set"
        routes += [route._replace(root=host, result=result, cause=cause, why=why)
                   for _, host, _ in roots or (("", "", ""),)]  # one per root folder  # fmt: skip
        return []
    route = route._replace(download=download)
    seen_as, mapping = through_mappings(importer.settings.mappings, row.host, folder)
    seen, seen_point = to_host(importer, seen_as)
    if not seen or not same_folder(seen, download):  # it looks for it elsewhere
        cause, finding_ = _unseen(importer, client, judge, folder, download, seen, seen_as,
                                  mapping)  # fmt: skip
        routes += [route._replace(root=host, result="unseen", cause=cause) for _, host, _ in
                   roots or (("", "", ""),)]  # fmt: skip
        return finding_
    findings: List[Finding] = []
    if mapping is not None and seen_as != folder and client.container and importer.container:
        findings.append(_app_finding(
            importer, "mapping-needless", download,
            "its remote path mapping %s -> %s only joins two container paths for one "
            "folder" % (mapping[1], mapping[2]),
            "mount %s at the same container path in both, then remove the mapping" % download,
            client.name))  # fmt: skip
    route = route._replace(client=client.name, seen_as=seen_as, why="")
    if not roots:
        routes.append(route._replace(why="no root folder set"))
    for root, root_host, root_point in roots:
        result, cause = _import_result(importer, client, judge, download, seen_point,
                                       root_host, root_point)  # fmt: skip
        routes.append(route._replace(root=root_host, result=result, cause=cause))
        if cause == "import-copies":
            apart = "under two mounts" if root_point != seen_point else "on two filesystems"
            findings.append(_app_finding(
                importer, cause, root_host, "%s's downloads (%s) and root folder %s are %s: "
                "every import is a copy" % (client.name, seen_as, root, apart),
                ONE_MOUNT % judge.scene.root, client.name))  # fmt: skip
    return findings


def _unseen(
    importer: App,
    client: App,
    judge: Judge,
    folder: str,
    download: str,
    seen: str,
    seen_as: str,
    mapping: Optional[Tuple[str, str, str]],
) -> Tuple[str, List[Finding]]:
    """A download the importer looks for elsewhere: the cause (a wrong mapping, the
    containers section's path-mismatch, else import-unseen) and its finding, if new."""
    where = "as another folder (%s)" % seen if seen else "nowhere"
    if mapping is not None:
        detail = "its remote path mapping %s -> %s (host %s) turns %s's %s into %s, which it " \
            "sees %s" % (mapping[1], mapping[2], mapping[0], client.name, folder, seen_as,
                         where)  # fmt: skip
        fix = "mount the tree at the same path in both and remove the mapping"
        return "mapping-wrong", [_app_finding(importer, "mapping-wrong", download, detail, fix,
                                              client.name)]  # fmt: skip
    if _said(judge, "path-mismatch", (client.name,), (download,)):
        return "path-mismatch", []  # the containers section counts it
    detail = "%s saves to %s, which it sees %s" % (client.name, folder, where)
    fix = "mount %s at the same container path in both" % download
    return "import-unseen", [_app_finding(importer, "import-unseen", download, detail, fix,
                                          client.name)]  # fmt: skip


def _import_result(
    importer: App, client: App, judge: Judge, download: str, seen_point: str,
    root_host: str, root_point: str,
) -> Tuple[str, str]:  # fmt: skip
    """What an import from a download folder the importer sees into a root folder is
    (hardlink, move or copy), and the kind of finding that says why where not."""
    torrent = torrent_client(client.kind)
    if torrent and not importer.settings.hardlinks:
        return "copy", "hardlinks-off"
    if not root_host:  # a volume's, or on no data mount: the library stays in the container
        return "copy", "named-volume" if root_point else "root-unmounted"
    # A bind mount inside the tree between them is a second mount of one filesystem: a
    # link or rename across it fails with EXDEV, as the probes show, whatever st_dev says.
    real_download, real_root = os.path.realpath(download), os.path.realpath(root_host)
    one_mount = mount_of(real_download, judge.mounts) == mount_of(real_root, judge.mounts)
    if root_point == seen_point and device_of(download) == device_of(root_host) and one_mount:
        return "hardlink" if torrent else "move", ""
    if root_point == seen_point and not one_mount:
        return "copy", "mount-point"
    if _said(judge, "split-mounts", (importer.name,)):
        return "copy", "split-mounts"
    if _said(judge, "outside-tree", (importer.name, client.name), (download, root_host)):
        return "copy", "outside-tree"
    return "copy", "import-copies"


def _library_findings(
    server: App, importers: Sequence[App], roots: Dict[str, List[Tuple[str, str, str]]]
) -> List[Finding]:
    """An importer's root folder that none of the server's libraries covers."""
    libraries = [to_host(server, folder)[0] for folder in server.settings.libraries]
    libraries = [folder for folder in libraries if folder]
    findings = []
    for importer in importers:
        for root, host, _ in roots[importer.name]:
            real = os.path.realpath(host) if host else ""
            if host and not any(inside(host, f) or inside(real, os.path.realpath(f))
                                for f in libraries):  # fmt: skip
                detail = "none of its libraries (%s) holds %s's root folder %s: its imports " \
                    "don't show up" % (", ".join(server.settings.libraries), importer.name,
                                       root)  # fmt: skip
                fix = "add %s as a library folder (as %s sees it)" % (host, server.name)
                findings.append(_app_finding(server, "library-unseen", host, detail, fix,
                                             importer.name))  # fmt: skip
    return findings


# -- --check: imports, what the importers' own history says they did --------------------
# Everything above predicts.  Each *arr app also records every import in its History
# (the db the routes read): the download (droppedPath) and the library file
# (importedPath), as the app saw them.  One inode for both is a hardlink, two a copy:
# "did my imports copy, since when, and how much space is it?" answered from disk.

IMPORT_RESULTS = ("hardlink", "copy", "download-gone", "import-gone", "unseen")


class Imported(NamedTuple):
    """One import of an importer's history, as it is on disk today."""

    importer: str
    client: str  # the row's downloadClientName, else downloadClient ("" unknown)
    torrent: bool  # from a torrent client
    date: str  # as the app wrote it
    download: str  # droppedPath, as the app wrote it
    imported: str  # importedPath
    host_download: Optional[str]  # where that is on this host (None: unseen)
    host_imported: Optional[str]
    result: str  # one of IMPORT_RESULTS
    size: int  # the library file's bytes (0 where it is gone or unseen)


class Imports(NamedTuple):
    rows: List[Imported]
    summary: List[Tuple[str, str]]  # each importer, and its line


def check_imports(
    found: CheckResult, routes: Routes, base: str, poll: Callable[[], None] = nothing
) -> Tuple[CheckResult, Optional[Imports]]:
    """Add the imports section to a check, where an importer's settings were read: its
    newest imports classified, and imports-copied where some were copies (None: no
    importer, no section)."""
    importers = [a for a in routes.apps if a.kind in IMPORTER_APPS and not a.settings.unread]
    if not importers:
        return found, None
    rows: List[Imported] = []
    summary: List[Tuple[str, str]] = []
    mine: List[Finding] = []
    for app in importers:
        poll()
        history, skipped = read_imports(app)
        rows += history
        summary.append((app.name, import_summary(history, skipped)))
        mine += imports_findings(app, history, routes, base)
    sections = dict(found.sections)
    sections["imports"] = grade({item.severity for item in mine})
    found = found._replace(findings=found.findings + mine, sections=sections)
    return found, Imports(rows, summary)


def read_imports(app: App) -> Tuple[List[Imported], int]:
    """An importer's newest imports, each classified on disk (lstat only, no file
    opened), newest first; and how many rows were skipped (a Data that isn't JSON or
    lacks the paths, a path holding a NUL)."""
    import json

    rows: List[Imported] = []
    skipped = 0
    for _, date, text in app.settings.history:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        fields = {str(k).lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
        dropped, imported = fields.get("droppedpath"), fields.get("importedpath")
        if not (isinstance(dropped, str) and isinstance(imported, str) and dropped and imported
                and "\0" not in dropped + imported):  # fmt: skip
            skipped += 1
            continue
        kind = "%s %s" % (
            fields.get("downloadclient") or "",
            fields.get("downloadclientname") or "",
        )
        client = str(fields.get("downloadclientname") or fields.get("downloadclient") or "")
        torrent = torrent_client(kind)
        rows.append(classify_import(app, date, client, torrent, dropped, imported))
    return rows, skipped


def classify_import(
    app: App, date: str, client: str, torrent: bool, dropped: str, imported: str
) -> Imported:
    """One import's result today: both files on one inode (hardlink) or two (copy), the
    download gone (moved, or removed since), the library file gone (upgraded or deleted
    since), or a path on none of today's mounts (unseen: the setup changed)."""
    host_download = to_host(app, app_path(dropped))[0]
    host_imported = to_host(app, app_path(imported))[0]
    unseen = Imported(app.name, client, torrent, date, dropped, imported, None, None, "unseen", 0)
    if not host_download or not host_imported:
        return unseen
    try:
        library: Optional[os.stat_result] = os.lstat(host_imported)
    except (FileNotFoundError, NotADirectoryError):
        library = None
    except OSError:  # not ours to see (a folder this user can't pass): unseen
        return unseen
    try:
        download: Optional[os.stat_result] = os.lstat(host_download)
    except (FileNotFoundError, NotADirectoryError):
        download = None
    except OSError:
        return unseen
    if library is None:
        result, size = "import-gone", 0
    elif download is None:
        result, size = "download-gone", library.st_size
    else:
        same = (library.st_dev, library.st_ino) == (download.st_dev, download.st_ino)
        result, size = "hardlink" if same else "copy", library.st_size
    return unseen._replace(host_download=host_download, host_imported=host_imported,
                           result=result, size=size)  # fmt: skip


def import_summary(rows: Sequence[Imported], skipped: int) -> str:
    """One importer's line: how its newest imports turned out, the copies' size and
    dates, e.g. last 100 imports: 81 hardlink, 12 copy (38.2 GiB, 2026-10-03 ..
    2026-11-30), 7 gone."""
    if not rows:
        return "no import in its history" + (" (%d unreadable)" % skipped if skipped else "")
    count = {result: 0 for result in IMPORT_RESULTS}
    for row in rows:
        count[row.result] += 1
    said = ["%d hardlink" % count["hardlink"]] if count["hardlink"] else []
    copies = [row for row in rows if row.result == "copy"]
    if copies:
        dates = sorted(row.date[:10] for row in copies)
        held = human_size(sum(row.size for row in copies))
        said.append("%d copy (%s, %s .. %s)" % (len(copies), held, dates[0], dates[-1]))
    gone = count["download-gone"] + count["import-gone"]
    if gone:
        said.append("%d gone" % gone)
    if count["unseen"]:
        said.append("%d unseen (on none of today's mounts)" % count["unseen"])
    if skipped:
        said.append("%d unreadable" % skipped)
    return "last %d imports: %s" % (len(rows) + skipped, ", ".join(said))


def imports_findings(
    app: App, rows: Sequence[Imported], routes: Routes, base: str
) -> List[Finding]:
    """imports-copied for an importer whose history holds copies: a problem where its
    newest torrent import (of those still on disk) is a copy: imports copy now; else a
    warning: fixed since, the space still spent."""
    copies = [row for row in rows if row.result == "copy"]
    if not copies:
        return []
    newest = next((r for r in rows if r.torrent and r.result in ("hardlink", "copy")), None)
    dates = sorted(row.date[:10] for row in copies)
    held = human_size(sum(r.size for r in copies))
    detail = "%d of its last %d imports are copies, %s held twice (%s .. %s)" % (
        len(copies), len(rows), held, dates[0], dates[-1])  # fmt: skip
    if newest is not None and newest.result == "copy":
        severity = PROBLEM
        detail += "; its newest torrent import (%s) copied: imports copy now" % newest.date[:10]
        mine = [r for r in routes.routes if r.importer == app.name]
        causes = sorted({r.cause or r.result for r in mine if r.result in ("copy", "unseen")})
        if causes:
            detail += " (the routes say why: %s)" % ", ".join(causes)
        elif mine:
            detail += "; yet its settings route downloads as hardlinks, so the cause is outside " \
                "them: fs.protected_hardlinks, a tagger that rewrote the file, a setup since " \
                "changed"  # fmt: skip
    else:
        severity = WARNING
        detail += "; its newest torrent import is no copy: fixed since, the space still spent"
    paths = [row.host_imported for row in copies if row.host_imported]
    fix = "python3 %s --path %s --relink --dry-run" % (SCRIPT_NAME, quote(base))
    return [finding("imports-copied", paths[0], detail, fix, severity=severity,
                    container=app.name, paths=paths)]  # fmt: skip


# -- --relink: copies in media/ become hardlinks of the download -----------------------
# Imports that were copied (two volumes, two shares) left the same bytes twice:
# once in complete/ (still seeding), once in media/.  Each proven copy becomes a
# hardlink of the download: link(download -> hidden temp name beside the copy),
# confirm, then rename(temp -> copy).  The library path exists at every instant
# with the same bytes; nothing is ever deleted first, copied or symlinked.

RELINK_PREFIX = ".cms-relink-"
RELINK_OK = all(call in os.supports_dir_fd for call in (os.link, os.rename))
MIN_SIZE = 1024**2
MIN_AGE = 15  # minutes: an unpack or an *arr upgrade may still be writing
BLOCK = 64 * 1024  # the head and tail compared first: most non-pairs differ there
CHUNK = 1024**2  # then the rest, in chunks this big
FIEMAP = 0xC020660B  # Linux's FS_IOC_FIEMAP: a file's extents, with their flags
FIEMAP_LAST, FIEMAP_SHARED = 0x1, 0x2000
FIEMAP_BATCH = 128  # extents asked for per call
# As root, fs.protected_hardlinks and ownership don't apply: what is left says so.
ROOT_LINK_EPERM = (
    "the filesystem refused the link: the download or the library folder is immutable or "
    "append-only (lsattr shows it; chattr -i or -a lifts it), or the filesystem has no "
    "hardlinks (FAT, exFAT)"
)
# The mode bits don't tell what an ACL gives (with a POSIX ACL the group bits are its
# mask; ZFS on TrueNAS SCALE and NFS mounts keep NFSv4 ACLs): two files whose ACLs
# differ could cost someone access.
ACL_XATTRS = ("system.posix_acl_access", "system.nfs4_acl_xdr", "system.nfs4_acl")
ACL_DIFFERS = (
    "its ACL differs from the download's (getfacl shows both): a user or group could lose "
    "access; make them match (setfacl) and run again"
)


UNREAD = "can't be read"  # a skip's reason: the file could not be opened
# Leases (Linux's F_SETLEASE): a write lease on the copy is granted only where no other
# program has it open, and breaks (with a signal) where one opens it meanwhile.
F_SETLEASE, F_GETLEASE = 1024, 1025
IN_USE = (
    "in use: another program has it open (a tagger, a media server writing its tags), "
    "and what it writes would go to the old copy; left alone: run again when it is closed"
)
NOT_OWNER = (
    "can't tell whether another program has it open (a lease takes the file's "
    "owner or root): left alone; run as root"
)
NO_LEASES = "no leases on %s: whether another program had the copy open was not seen"
OPENED_MEANWHILE = (
    "in use: another program opened it during the relink: left alone; run again when it is closed"
)
OPENED_WHILE_REPLACED = (
    "in use: another program opened it just as it was replaced: put back as it was; run "
    "again when it is closed"
)
FUSE_LEASE = (
    "a lease on %s sees programs that open the copy through this mount, not "
    "through the disks below it (/mnt/diskN, a mergerfs branch)"
)
ASIDE = ".was"  # the copy's second, hidden name while the rename is under way
# Filesystems other machines write too: a lease there sees nothing of their opens, and
# NFSv4 and SMB refuse one (EAGAIN) wherever the server gave no delegation: not "in use".
SHARED_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs",
                      "gfs2", "ocfs2", "lustre", "fuse.sshfs"}  # fmt: skip


class FileEntry(NamedTuple):
    """A regular file as the index saw it: where, and what must still hold at replace time."""

    parts: Tuple[str, ...]  # its folder, from --path
    name: str
    size: int
    dev: int
    ino: int
    nlink: int
    mtime_ns: int


class Side(NamedTuple):
    """One file of a pair: as indexed, its folder's descriptor, its path (for the report)."""

    entry: FileEntry
    dir_fd: int
    path: str


class Relinked(NamedTuple):
    download: str  # the download's path: its inode stays
    replace: str  # the library path that becomes a hardlink of it
    bytes: int
    takes_on: str  # the owner, mode and mtime the library name takes on
    frees: int  # of those bytes, the blocks the copy alone held (not a reflink's, a snapshot's)
    unwatched: str  # "" where a lease proved nothing else had the copy open; else why not


class Skipped(NamedTuple):
    path: str
    download: str
    reason: str
    errno: str  # the errno's name, or ""


class RelinkResult(NamedTuple):
    relinked: List[Relinked]
    skipped: List[Skipped]
    leftovers: int  # temp names of a killed run, removed (or, dry run, to remove)
    unreadable: List[str]  # folders that could not be opened or listed: not looked in
    asides: List[Tuple[str, str]]  # a killed run's old copies: (path, the file of its
    # bytes beside it, removed (or, dry run, to remove); "" where none is: kept)


def index_files(
    walk: Walk,
    top: Tuple[str, ...],
    min_size: int,
    wanted: Callable[[os.stat_result], bool],
    poll: Callable[[], None],
    unreadable: List[str],
    skip: AbstractSet[Tuple[str, ...]] = frozenset(),
) -> Iterator[Tuple[FileEntry, os.stat_result]]:
    """Every regular file of at least min_size below top (symlinks never followed);
    poll runs before each folder (a library's walk can be long); a folder that can't
    be opened or listed goes into unreadable.
    """
    try:
        top_fd = os.open(".", DIR_FLAGS, dir_fd=walk.open(top))  # the walk closes its own
    except Error:
        return
    for parts, fd, below in folders_below(top_fd, top):
        if fd < 0:
            unreadable.append(walk.path(parts))
            continue
        poll()  # a stop here closes what the walk holds open
        try:
            entries = list(folder_entries(fd, lone_only=False))
        except OSError:
            entries = []
            unreadable.append(walk.path(parts))
        for name, is_dir, st in entries:
            if is_dir:
                if parts + (name,) not in skip:
                    below.append(name)
            elif st is None:
                continue
            elif name.startswith(RELINK_PREFIX):  # ours, a killed run's: never a copy
                yield FileEntry(parts, name, -1, st.st_dev, st.st_ino, st.st_nlink, 0), st
            elif st.st_size >= min_size and wanted(st):
                entry = FileEntry(parts, name, st.st_size, st.st_dev, st.st_ino, st.st_nlink,
                                  st.st_mtime_ns)  # fmt: skip
                yield entry, st


def access_lost(download: os.stat_result, copy: os.stat_result) -> str:
    """Who would lose read or write access if the copy's name took the download's
    owner and mode ('' for nobody): the copy's owner, its group, everyone else."""
    download_mode, copy_mode = stat.S_IMODE(download.st_mode), stat.S_IMODE(copy.st_mode)

    def bits(mode: int, shift: int) -> int:
        return (mode >> shift) & 0o6  # read and write; media files need no x

    if copy.st_uid == download.st_uid:
        owner_has = bits(download_mode, 6)
    elif copy.st_gid == download.st_gid:
        owner_has = bits(download_mode, 3)
    else:
        owner_has = bits(download_mode, 0)
    group_has = bits(download_mode, 3) if copy.st_gid == download.st_gid else bits(download_mode, 0)
    # root reads and writes whatever the mode: a copy of root's (a cp run as root)
    # can't lose its owner anything
    owner_needs = bits(copy_mode, 6) if copy.st_uid != 0 else 0
    for who, has, needs in (
        ("its owner (uid %d)" % copy.st_uid, owner_has, owner_needs),
        ("its group (gid %d)" % copy.st_gid, group_has, bits(copy_mode, 3)),
        ("other users", bits(download_mode, 0), bits(copy_mode, 0)),
    ):
        if has & needs != needs:
            return (
                "%s would lose access: the download is %d:%d %04o, the copy %d:%d %04o; "
                "make them match (chown/chmod) and run again"
                % (
                    who,
                    download.st_uid,
                    download.st_gid,
                    download_mode,
                    copy.st_uid,
                    copy.st_gid,
                    copy_mode,
                )
            )
    return ""


def acl_of(fd: int) -> List[bytes]:
    """A file's access ACLs as the filesystem stores them; b"" for each it has none of,
    or where the system has no such thing."""
    acls = []
    for name in ACL_XATTRS:
        try:
            acls.append(os.getxattr(fd, name))
        except (AttributeError, OSError):  # not Linux; ENODATA: none; ENOTSUP: not here
            acls.append(b"")
    return acls


def xattr_differs(download_fd: int, copy_fd: int) -> str:
    """Why the copy's extended attributes would be lost or changed ("" where the user.*
    ones match): Samba's user.DOSATTRIB, user.xdg.tags, netatalk's Finder data.  Only
    user.* are the user's; trusted.* and security.* belong to the system."""

    def user_attributes(fd: int) -> Dict[str, bytes]:
        try:
            names = [name for name in os.listxattr(fd) if name.startswith("user.")]
            return {name: os.getxattr(fd, name) for name in names}
        except (AttributeError, OSError):  # not Linux; ENOTSUP: none on this filesystem
            return {}

    mine, theirs = user_attributes(copy_fd), user_attributes(download_fd)
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name) != theirs.get(name):
            where = "the copy's" if name in mine else "the download's"
            return (
                "%s extended attribute %s differs (getfattr -d shows both): the library "
                "file would lose or change it; make them match (setfattr) and run again"
                % (where, name)
            )
    return ""


def lease_held(fd: int) -> bool:
    """Whether our write lease on fd still stands: no program has opened the file since
    (an open breaks it, and waits until we let go)."""
    import fcntl

    try:
        return fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_WRLCK
    except OSError:  # pragma: no cover - it was granted on this fd
        return False


class Leases:
    """The write leases of one --relink run (Linux's F_SETLEASE).  While it runs, a lease
    break's signal (SIGIO, whose default ends the process) is caught and ignored:
    lease_held() asks the kernel instead.  Outside the main thread, where Python sets no
    handler, no lease is taken."""

    def __init__(self) -> None:
        self.ready = False
        self.saved: Any = None
        self.fstypes: Dict[int, str] = {}  # one look at the mount table per filesystem

    def __enter__(self) -> "Leases":
        import signal

        try:
            self.saved = signal.signal(signal.SIGIO, self._note)
            self.ready = sys.platform.startswith("linux")
        except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGIO
            pass
        return self

    @staticmethod
    def _note(signum: int, frame: Any) -> None:
        pass  # a break: lease_held() sees it

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self.saved is not None:
            signal.signal(signal.SIGIO, self.saved)

    def take(self, fd: int) -> Tuple[bool, str]:
        """Take a write lease on an open copy: whether it is held, and "" where it shows
        that nothing else has the copy open; IN_USE or NOT_OWNER: skip the pair; else why
        a lease can't tell here (go on: see README)."""
        if not self.ready:
            return False, NO_LEASES % "this system"
        import fcntl

        dev = os.fstat(fd).st_dev
        if dev not in self.fstypes:
            self.fstypes[dev] = fstype_of(fd, "") or "this filesystem"
        fstype = self.fstypes[dev]
        if fstype in SHARED_FILESYSTEMS:
            return False, NO_LEASES % fstype
        try:
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_WRLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return False, IN_USE
            if exc.errno in DENIED:
                return False, NOT_OWNER
            return False, NO_LEASES % fstype
        if fstype.startswith("fuse"):  # taken, but blind to opens on the disks below
            return True, FUSE_LEASE % fstype
        return True, ""


class Comparer:
    """Byte-for-byte comparison of two open files, with buffers reused across files.

    poll runs before each chunk: a Ctrl-C stops a long compare within a chunk, and a
    compare changes nothing, so stopping there leaves every file whole.
    """

    def __init__(self, progress: Progress, poll: Callable[[], None]) -> None:
        self.one = bytearray(CHUNK)
        self.two = bytearray(CHUNK)
        self.progress = progress
        self.poll = poll
        self.read = 0  # bytes read, both files

    def same(self, fd_one: int, fd_two: int, size: int) -> bool:
        """Head and tail blocks first (cheap rejects), then the middle, to the first difference."""
        return self.ends(fd_one, fd_two, size) and (
            size <= 2 * BLOCK or self._range(fd_one, fd_two, BLOCK, size - 2 * BLOCK)
        )

    def ends(self, fd_one: int, fd_two: int, size: int) -> bool:
        """The head and tail blocks only (a small file whole)."""
        if size <= 2 * BLOCK:
            return self._range(fd_one, fd_two, 0, size)
        return self._range(fd_one, fd_two, 0, BLOCK) and self._range(
            fd_one, fd_two, size - BLOCK, BLOCK
        )

    def _range(self, fd_one: int, fd_two: int, offset: int, length: int) -> bool:
        end = offset + length
        while offset < end:
            self.poll()
            want = min(CHUNK, end - offset)
            got_one = self._read(fd_one, self.one, want, offset)
            got_two = self._read(fd_two, self.two, want, offset)
            self.read += got_one + got_two
            self.progress.tick_bytes(got_one + got_two)
            if got_one != want or got_two != want:  # pragma: no cover - a race
                return False  # shorter than it said: it changed
            if want == CHUNK:
                if self.one != self.two:
                    return False
            elif self.one[:want] != self.two[:want]:  # memcmp (a memoryview: per element)
                return False
            offset += want
        return True

    @staticmethod
    def _read(fd: int, buffer: bytearray, want: int, offset: int) -> int:
        view = memoryview(buffer)[:want]
        preadv = getattr(os, "preadv", None)  # 3.7+: read into the reused buffer
        got = 0
        while got < want:
            if preadv is not None:
                count = preadv(fd, [view[got:]], offset + got)
            else:  # pragma: no cover - Python 3.6
                data = os.pread(fd, want - got, offset + got)
                count = len(data)
                view[got : got + count] = data
            if count == 0:
                break
            got += count
        return got


def find_and_relink(
    walk: Walk,
    args: argparse.Namespace,
    progress: Progress,
    signals: Signals,
    known: Optional[Dict[str, str]] = None,
) -> RelinkResult:
    """Index the downloads, find same-size copies in media/, then prove and link each;
    known: copies the importers' history names, with their download (host paths): those
    come first, their download the first candidate (and still proved byte for byte)."""
    import time

    known = known or {}

    # Zero-length files are never paired, whatever --min-size says: any two are "equal",
    # and one inode for a torrent's empty.txt and a .plexmatch would tie their edits.
    min_size = max(1, MIN_SIZE if args.min_size is None else args.min_size)
    min_age = MIN_AGE if args.min_age is None else args.min_age
    too_young = time.time() - min_age * 60  # an mtime after this is too young
    downloads: Dict[int, List[FileEntry]] = {}
    unreadable: List[str] = []
    for source in SOURCES:  # all of it but incomplete/ (TRaSH saves to data/torrents/tv)
        top = (DATA, source)
        found = index_files(walk, top, min_size, lambda st: True, signals.poll, unreadable,
                            skip={(DATA, source, INCOMPLETE)})  # fmt: skip
        for entry, _ in found:
            if entry.size >= 0:
                downloads.setdefault(entry.size, []).append(entry)
    for same_size in downloads.values():  # the one with more links first, then by path
        same_size.sort(key=lambda e: (-e.nlink, e.parts, e.name))

    def library(unread: List[str]) -> Tuple[List[FileEntry], List[FileEntry]]:
        """The copies in media/ (by folder and name), and the temp names left there."""
        copies: List[FileEntry] = []
        leftovers: List[FileEntry] = []
        wanted = lambda st: st.st_nlink == 1 and st.st_size in downloads  # noqa: E731
        for entry, _ in index_files(walk, (DATA, MEDIA), min_size, wanted, signals.poll, unread):
            (copies if entry.size >= 0 else leftovers).append(entry)
        copies.sort(key=lambda e: (walk.path(e.parts + (e.name,)) not in known, e.parts, e.name))
        return copies, leftovers

    copies, leftovers = library(unreadable)
    comparer = Comparer(progress, signals.poll)
    removed = _remove_leftovers(walk, leftovers, args.dry_run)
    asides = _set_aside(walk, leftovers, comparer, args.dry_run)
    if removed and not args.dry_run:  # a copy a killed run left a second name of is one again
        copies, _ = library([])  # its unreadable folders are said already
    progress.total = sum(2 * c.size for c in copies)
    relinked: List[Relinked] = []
    skipped: List[Skipped] = []
    with Leases() as leases:
        for copy in copies:
            signals.poll()
            candidates = downloads[copy.size]
            first = known.get(walk.path(copy.parts + (copy.name,)), "") if known else ""
            if first:  # the history's download is tried first
                candidates = sorted(
                    candidates, key=lambda e: walk.path(e.parts + (e.name,)) != first
                )
            outcome = _relink_one(walk, copy, candidates, comparer, leases, too_young, args.dry_run)
            if isinstance(outcome, Relinked):
                relinked.append(outcome)
            elif outcome is not None:
                skipped.append(outcome)
    return RelinkResult(relinked, skipped, removed, unreadable, asides)


def _remove_leftovers(walk: Walk, leftovers: Sequence[FileEntry], dry_run: bool) -> int:
    """Temp names a killed run left: our prefix, in media/, a regular file that another
    name also holds (a link count of at least 2)."""
    removed = 0
    for entry in leftovers:
        if entry.nlink < 2:
            continue
        if not dry_run:
            fd = _open_path(walk, entry.parts)
            if fd is None:
                continue
            try:
                st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_nlink >= 2 and st.st_ino == entry.ino:
                    os.unlink(entry.name, dir_fd=fd)
                else:
                    continue
            except OSError:
                continue
            finally:
                os.close(fd)
        removed += 1
    return removed


def _set_aside(
    walk: Walk, leftovers: Sequence[FileEntry], comparer: Comparer, dry_run: bool
) -> List[Tuple[str, str]]:
    """The old copies a run killed between its rename and the clean-up left (our prefix
    and ASIDE, one link): each is removed where a file in its folder has its bytes (the
    file now linked at its library path: nothing is lost), else kept; both are named."""
    found: List[Tuple[str, str]] = []
    for entry in leftovers:
        if entry.nlink != 1 or not entry.name.endswith(ASIDE):
            continue
        fd = _open_path(walk, entry.parts)
        if fd is None:
            continue
        try:
            same = _same_bytes_beside(fd, entry, comparer)
            if same and not dry_run:
                st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                if st.st_ino == entry.ino and st.st_nlink == 1:
                    os.unlink(entry.name, dir_fd=fd)
        except OSError:
            same = ""
        finally:
            os.close(fd)
        path = walk.path(entry.parts + (entry.name,))
        found.append((path, walk.path(entry.parts + (same,)) if same else ""))
    return found


def _same_bytes_beside(fd: int, entry: FileEntry, comparer: Comparer) -> str:
    """The name of a regular file in the folder fd that holds the bytes of entry."""
    mine = open_file(entry.name, fd)
    try:
        size = os.fstat(mine).st_size
        for name, is_dir, st in folder_entries(fd, lone_only=False):
            if is_dir or st is None or name == entry.name or st.st_size != size:
                continue
            other = open_file(name, fd)
            try:
                if stat.S_ISREG(os.fstat(other).st_mode) and comparer.same(mine, other, size):
                    return name
            finally:
                os.close(other)
    finally:
        os.close(mine)
    return ""


def _open_path(walk: Walk, parts: Tuple[str, ...]) -> Optional[int]:
    """A folder below data/media or data/<source>, opened name by name, no symlinks."""
    depth = 2
    try:
        fd: Optional[int] = os.open(".", DIR_FLAGS, dir_fd=walk.open(parts[:depth]))
    except (OSError, Error):
        return None
    for name in parts[depth:]:
        assert fd is not None
        child = open_below(fd, name)
        os.close(fd)
        if child is None:
            return None
        fd = child
    return fd


def _relink_one(
    walk: Walk,
    copy: FileEntry,
    candidates: Sequence[FileEntry],
    comparer: Comparer,
    leases: Leases,
    too_young: float,
    dry_run: bool,
) -> Optional[Union[Relinked, Skipped]]:
    """Prove one copy equal to a download and (unless dry_run) link it: a Relinked, a
    Skipped, or None where no download has its bytes."""
    copy_path = walk.path(copy.parts + (copy.name,))
    copy_dir = _open_path(walk, copy.parts)
    if copy_dir is None:
        return None
    unread: Optional[Skipped] = None  # a file that could not be read: said if nothing matches
    try:
        # Downloads on the copy's filesystem first: one elsewhere can only be a skip.
        for download in sorted(candidates, key=lambda entry: entry.dev != copy.dev):
            download_path = walk.path(download.parts + (download.name,))
            download_dir = _open_path(walk, download.parts)
            if download_dir is None:
                continue
            try:
                outcome = _try_pair(
                    Side(copy, copy_dir, copy_path),
                    Side(download, download_dir, download_path),
                    comparer,
                    leases,
                    too_young,
                    dry_run,
                )
            except Unreadable as exc:  # another download may still have its bytes
                unread = unread or exc.skipped
                continue
            finally:
                os.close(download_dir)
            if outcome is not None:
                return outcome
        return unread
    finally:
        os.close(copy_dir)


def _skip(copy_path: str, download_path: str, reason: str, number: int = 0) -> Skipped:
    name = errno.errorcode.get(number, "") if number else ""
    return Skipped(copy_path, download_path, reason, name)


class Unreadable(Exception):
    """A file of a pair that can't be read: the pair's skip, if no other download has the
    copy's bytes."""

    def __init__(self, skipped: Skipped) -> None:
        super().__init__(skipped.reason)
        self.skipped = skipped


def _open_side(side: "Side", other: "Side", what: str, noatime: bool = False) -> Optional[int]:
    """A file of a pair, open to read; None where it is gone (the next run sees)."""
    try:
        return open_file(side.entry.name, side.dir_fd, noatime)
    except OSError as exc:
        if exc.errno not in DENIED:
            return None
        copy, download = (side, other) if what == "copy" else (other, side)
        reason = "the %s %s: %s; run as its owner or as root" % (what, UNREAD, exc.strerror)
        raise Unreadable(_skip(copy.path, download.path, reason, errno.EACCES))


def _try_pair(  # noqa: PLR0912 - every check before a link, in the order they must hold
    copy_side: "Side",
    download_side: "Side",
    comparer: Comparer,
    leases: Leases,
    too_young: float,
    dry_run: bool,
) -> Optional[Union[Relinked, Skipped]]:
    """None where the bytes differ (try the next download), else the outcome; Unreadable
    where a file can't be read."""
    copy, copy_dir, copy_path = copy_side
    download, _, download_path = download_side
    download_fd = _open_side(download_side, copy_side, "download", noatime=True)
    if download_fd is None:
        return None
    try:
        copy_fd = _open_side(copy_side, download_side, "copy")
        if copy_fd is None:
            return None
        try:
            download_st, copy_st = os.fstat(download_fd), os.fstat(copy_fd)
            if not _unchanged(download_st, download) or not _unchanged(copy_st, copy, nlink=1):
                return None  # changed since the index (a fifo now, say): the next run sees
            if copy.dev != download.dev:  # no link can cross: the ends tell a copy, and spare
                if not comparer.ends(download_fd, copy_fd, copy.size):  # reading a TB for a skip
                    return None
                comparer.progress.total -= 2 * max(0, copy.size - 2 * BLOCK)  # not read
                return _skip(copy_path, download_path, errno_fix("link", errno.EXDEV), errno.EXDEV)
            if max(download_st.st_mtime, copy_st.st_mtime) > too_young:
                if not comparer.same(download_fd, copy_fd, copy.size):
                    return None
                return _skip(copy_path, download_path, "changed too recently (--min-age): "
                             "it may still be written")  # fmt: skip
            if not comparer.same(download_fd, copy_fd, copy.size):
                return None
            after_keep, after_copy = os.fstat(download_fd), os.fstat(copy_fd)
            if not _unchanged(after_keep, download) or not _unchanged(after_copy, copy, nlink=1):
                return _skip(copy_path, download_path, "changed while it was compared")
            frees = own_bytes(copy_fd, copy.size)
            # Checked before any link: in such a folder the temp name could never go.
            held = [(chattr_flag(copy_dir), "its folder"), (chattr_flag(copy_fd), "the copy")]
            same_acl = acl_of(download_fd) == acl_of(copy_fd)
            xattr = xattr_differs(download_fd, copy_fd)
            for what, place in held:
                if what:
                    reason = "%s is %s (chattr +%s): not even root may replace the copy; " \
                        "chattr -%s lifts it" % (place, what, what[0], what[0])  # fmt: skip
                    return _skip(copy_path, download_path, reason, errno.EPERM)
            if not same_acl:
                return _skip(copy_path, download_path, ACL_DIFFERS)
            if xattr:
                return _skip(copy_path, download_path, xattr)
            lost = access_lost(download_st, copy_st)
            if lost:
                return _skip(copy_path, download_path, lost)
            # From here to the rename, a lease shows whether another program has the copy
            # open (a tagger writing it): its writes would go to the old copy.
            watched, unwatched = leases.take(copy_fd)
            if unwatched in (IN_USE, NOT_OWNER):
                return _skip(copy_path, download_path, unwatched)
            pair = Relinked(
                download_path, copy_path, copy.size, _takes_on(download_st), frees, unwatched
            )
            if dry_run:
                return pair
            return (
                _link_over(copy_side, download_side, download_st, comparer, copy_fd, watched)
                or pair
            )
        finally:
            os.close(copy_fd)  # which ends a lease
    finally:
        os.close(download_fd)


def own_bytes(fd: int, size: int) -> int:
    """The bytes of a file's data that no other file holds: its extents not shared with
    a reflink (btrfs, XFS: cp makes those) or a snapshot, which a relink can't free.
    The whole size where the system can't tell (not Linux, tmpfs, ZFS, NFS, FUSE)."""
    import fcntl
    import struct

    if not sys.platform.startswith("linux"):  # pragma: no cover - the number is Linux's
        return size
    start = own = 0
    while True:  # struct fiemap, then fiemap_extent[FIEMAP_BATCH] of 56 bytes each
        request = bytearray(struct.pack("=QQLLLL", start, 2**64 - 1, 0, 0, FIEMAP_BATCH, 0))
        request += bytes(56 * FIEMAP_BATCH)
        try:
            fcntl.ioctl(fd, FIEMAP, request)
        except OSError:
            return size
        (mapped,) = struct.unpack_from("=L", request, 20)
        if not mapped:  # no extent from start on
            return min(own, size)
        for index in range(mapped):
            logical, _, length = struct.unpack_from("=QQQ", request, 32 + 56 * index)
            (flags,) = struct.unpack_from("=L", request, 72 + 56 * index)
            own += 0 if flags & FIEMAP_SHARED else length
            if flags & FIEMAP_LAST:
                return min(own, size)
        start = logical + length


def _unchanged(st: os.stat_result, entry: FileEntry, nlink: int = 0) -> bool:
    same = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
        entry.dev,
        entry.ino,
        entry.size,
        entry.mtime_ns,
    )
    return same and stat.S_ISREG(st.st_mode) and (not nlink or st.st_nlink == nlink)


def _takes_on(st: os.stat_result) -> str:
    import time

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    return "owner %d:%d, mode %04o, mtime %s" % (
        st.st_uid,
        st.st_gid,
        stat.S_IMODE(st.st_mode),
        when,
    )


def _link_over(  # noqa: PLR0912 - each step of the replace, and its undoing
    copy_side: "Side",
    download_side: "Side",
    download_st: os.stat_result,
    comparer: Comparer,
    copy_fd: int,
    watched: bool,
) -> Optional[Skipped]:
    """link(download -> temp beside the copy), confirm, rename(temp -> copy); None when done.

    The temp name is confirmed as the download by its inode and a risen link count.
    Through FUSE (mergerfs, Unraid's shfs) two names of one file may show two inode
    numbers: there the temp name's bytes are compared with the copy's once more, so
    what the library path gets is proven either way.  The temp name is removed on
    every failure; the copy's path never goes missing.  Where a lease on copy_fd is
    held, the copy keeps a second hidden name until the rename is done: a program that
    opened the copy meanwhile (the lease breaks) gets it put back at its path.
    """
    copy, copy_dir, copy_path = copy_side
    download, download_dir, download_path = download_side
    token = "%s%d-%s" % (RELINK_PREFIX, os.getpid(), os.urandom(6).hex())
    temp, aside = token, ""
    try:
        os.link(
            download.name, temp, src_dir_fd=download_dir, dst_dir_fd=copy_dir, follow_symlinks=False
        )
    except OSError as exc:
        return _failed(copy_path, download_path, exc)
    try:
        made = os.stat(temp, dir_fd=copy_dir, follow_symlinks=False)
        if made.st_nlink < download_st.st_nlink + 1 or stat.S_ISLNK(made.st_mode):
            fstype = fstype_of(copy_dir, os.path.dirname(copy_path)) or "this filesystem"
            if stat.S_ISLNK(made.st_mode):
                how = "a symlink on %s (%s)" % (fstype, UNION_SYMLINK)
            else:
                how = "a copy on %s (its link count did not rise)" % fstype
            return _skip(copy_path, download_path, "the link arrived as %s: undone" % how)
        if (made.st_size, made.st_mtime_ns) != (download.size, download.mtime_ns):  # written since
            return _skip(copy_path, download_path, "the download changed after it was compared: "
                         "left alone")  # fmt: skip
        if made.st_ino != download.ino and not _temp_is_the_copy(
            temp, copy_side, comparer, copy_fd
        ):
            return _skip(copy_path, download_path, "the linked name's bytes are not the "
                         "copy's (the download or the copy changed meanwhile): undone")  # fmt: skip
        now = os.stat(copy.name, dir_fd=copy_dir, follow_symlinks=False)
        if not _unchanged(now, copy, nlink=1):
            return _skip(copy_path, download_path, "changed just before the replace: left alone")
        if watched:
            if not lease_held(copy_fd):  # opened since the compare: it waits for us
                return _skip(copy_path, download_path, OPENED_MEANWHILE)
            os.link(copy.name, token + ASIDE, src_dir_fd=copy_dir, dst_dir_fd=copy_dir,
                    follow_symlinks=False)  # fmt: skip
            aside = token + ASIDE
        try:
            os.rename(temp, copy.name, src_dir_fd=copy_dir, dst_dir_fd=copy_dir)
        except OSError as exc:
            return _failed(copy_path, download_path, exc, replacing=True)
        temp = ""
        if aside and not lease_held(copy_fd):  # opened meanwhile: put the copy back
            os.rename(aside, copy.name, src_dir_fd=copy_dir, dst_dir_fd=copy_dir)
            aside = ""
            return _skip(copy_path, download_path, OPENED_WHILE_REPLACED)
    except OSError as exc:
        return _failed(copy_path, download_path, exc)
    finally:
        for name in (temp, aside):
            if name:
                try:
                    os.unlink(name, dir_fd=copy_dir)
                except OSError:
                    pass
    return None


def _failed(copy_path: str, download_path: str, exc: OSError, replacing: bool = False) -> Skipped:
    """The skip for a failed link (or, replacing, a failed rename over the copy)."""
    number = exc.errno or 0
    if replacing:
        reason = ERRNO_FIXES.get(
            ("replace", number), "the copy can't be replaced: %s" % exc.strerror
        )
    elif number == errno.EPERM and is_root():
        reason = ROOT_LINK_EPERM
    else:
        reason = errno_fix("link", number) or exc.strerror or ""
    return _skip(copy_path, download_path, reason, number)


def _temp_is_the_copy(temp: str, copy_side: "Side", comparer: Comparer, copy_fd: int) -> bool:
    """The temp name holds the copy's bytes, byte for byte (its size and mtime, the
    download's, were checked before; the copy's own re-check follows in _link_over).
    The copy is read through the descriptor already open: opening it again would
    break our own lease."""
    copy, copy_dir, _ = copy_side
    temp_fd = open_file(temp, copy_dir)
    try:
        comparer.progress.total += 2 * copy.size
        return comparer.same(temp_fd, copy_fd, copy.size)
    finally:
        os.close(temp_fd)


# -- --compose: the docker-compose volumes that keep imports hardlinks -----------------
# One bind per role, always of a folder of the one tree, at the same path inside.

# Who mounts which part of the tree; the download sources come from TREE.
CLIENTS = {
    "torrents": "torrent client: qBittorrent, Transmission, Deluge",
    "usenet": "usenet client: SABnzbd, NZBGet",
    "ddl": "direct-download client: JDownloader, pyLoad",
}
YAML_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+~@,=")


def compose_snippet(base: str) -> str:
    """One volumes: block per role, container side under /data, for pasting under a service."""
    roles: List[Tuple[str, Tuple[str, ...]]] = [
        (CLIENTS.get(source, source + " client"), (DATA, source)) for source in SOURCES
    ]
    roles += [
        (
            "Sonarr, Radarr, Lidarr, Readarr: the whole tree, so imports are hardlinks "
            "or instant moves",
            (DATA,),
        ),
        ("Plex, Jellyfin, Emby: the library", (DATA, MEDIA)),
    ]
    root = os.path.join(base, DATA)
    if ":" in root:
        raise Error("%s: docker's short volume syntax cannot hold a ':' in the path" % root, 2)
    lines = [
        "# docker-compose volumes for %s: paste each block under its service." % root,
        "# Every container sees the same /data paths; give them all the same PUID/PGID",
        "# (the tree's owner) and UMASK=002 in their environment.",
    ]
    for label, parts in roles:
        # Compose reads $ as a variable: a literal one is written $$.
        host = printable(os.path.join(base, *parts)).replace("$", "$$")
        volume = "%s:/%s" % (host, "/".join(parts))
        if not set(volume) <= YAML_SAFE | {":"}:
            volume = _yaml_quote(volume)
        lines += ["", "# " + label, "volumes:", "  - " + volume]
    return "\n".join(lines)


def _yaml_quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    import json

    return json.dumps(text)


# -- the report: what a person reads, and what a script parses -------------------------
# Paths whose bytes are UTF-8 come out as that UTF-8 in every locale and Python;
# other bytes as \xNN.  Output that can't be written never stops the work.

UNICODE_GLYPHS = ("\u251c\u2500\u2500 ", "\u2514\u2500\u2500 ", "\u2502   ", "    ")
ASCII_GLYPHS = ("|-- ", "`-- ", "|   ", "    ")

LABELS = {CREATE: "created", KEEP: "already there", CHANGE: "changed", CONFLICT: "in the way:"}
DRY_LABELS = {
    CREATE: "would create",
    KEEP: "already there",
    CHANGE: "would change",
    CONFLICT: "in the way:",
}


class Output:
    """stdout or stderr: every line printable, written as UTF-8.

    A failed write (a closed stream, a reader gone, a full disk) is noted and
    never raised: the work goes on, and main exits 1 if nothing else failed.
    The descriptor is then pointed at /dev/null so that Python's own flush at
    exit has nothing to complain about.
    """

    def __init__(self, stream: Optional[IO[str]]) -> None:
        self.stream = stream
        self.failed = False

    def lines(self, text: str) -> None:
        """A block of lines (a JSON document, a compose snippet), each made printable."""
        for line in text.split("\n"):
            self.line(line)

    def line(self, text: str) -> None:
        if self.failed:
            return
        if self.stream is None:
            self.failed = True
            return
        data = printable(text) + "\n"
        try:
            buffer = getattr(self.stream, "buffer", None)
            if buffer is not None:
                buffer.write(data.encode("utf-8"))
            else:
                self.stream.write(data)
        except (OSError, ValueError):
            self._fail()

    def flush(self) -> None:
        if self.stream is not None and not self.failed:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._fail()

    def glyphs(self) -> Tuple[str, ...]:
        """Box-drawing glyphs if the stream's encoding has them, else ASCII."""
        try:
            "".join(UNICODE_GLYPHS).encode(getattr(self.stream, "encoding", None) or "ascii")
        except (UnicodeEncodeError, LookupError):
            return ASCII_GLYPHS
        return UNICODE_GLYPHS

    def _fail(self) -> None:
        self.failed = True
        try:
            assert self.stream is not None
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass


def reopen_std_fds() -> None:
    """A closed fd 0, 1 or 2 would be handed out by the next open (a folder fd
    becoming stdout): put /dev/null there first."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # pragma: no cover - tested by subprocess (test_trust.py)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # pragma: no cover - the lowest free number is fd itself
                os.dup2(null, fd)
                os.close(null)


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


def report(steps: Sequence[Step], dry_run: bool, out: Output) -> None:
    """The tree, with each folder's state."""
    labels = DRY_LABELS if dry_run else LABELS
    glyphs = out.glyphs()
    names = []
    for step in steps:
        name = step.path if len(step.folder.parts) == 1 else step.folder.parts[-1]
        names.append(branch(step.folder.lasts, glyphs) + printable(name) + "/")
    width = max(len(name) for name in names) + 2
    for name, step in zip(names, steps):
        state = labels[step.action]
        if step.detail:
            state += " " + step.detail if step.action == CONFLICT else " (%s)" % step.detail
        out.line(name.ljust(width) + state)


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


CHECK_TITLES = {
    "layout": ("layout", "all {folders} folders are there"),
    "filesystem": ("filesystem", "every folder is on data/'s filesystem and mount"),
    "probes": ("probes", "{pairs} import pair(s): a hardlink and a move each work"),
    "permissions": ("permissions", "{owner} can write every folder"),
    "containers": ("containers", "every container sees one consistent /data"),
    "routes": ("routes", "every download reaches its importer as a hardlink or a move"),
    "imports": ("imports", "no copy among the importers' newest imports"),
}
LEFTOVERS = {
    "torrents": "not imported yet, imported as a copy, or kept only for seeding",
    "usenet": "leftovers: an import moves the file out, so nothing should stay here",
    "ddl": "leftovers: an import moves the file out, so nothing should stay here",
}


def report_check(
    root: str,
    steps: Sequence[Step],
    owner: Optional[Owner],
    found: CheckResult,
    out: Output,
    judged: Optional[List[Judged]] = None,
    routes: Optional[Routes] = None,
    imports: Optional[Imports] = None,
) -> None:
    """The --check report as text: each section's grade, its findings with fixes."""
    out.line("check of %s" % root)
    for section, grade in found.sections.items():
        title, healthy = CHECK_TITLES[section]
        mine = [item for item in found.findings if item.section == section]
        mine.sort(key=lambda item: item.severity != PROBLEM)  # problems first, in order
        if _report_listed(section, grade, mine, out, judged, routes, imports):
            continue
        if grade == "ok":
            text = healthy.format(
                folders=len(steps), pairs=found.pairs, owner=owner.spec if owner else ""
            )
            out.line("%-12s ok: %s" % (title, text))
        else:
            _report_section(title, grade, mine, out)
    if found.probed_text:
        out.line("note: the probes ran as %s" % found.probed_text)
    for note in found.notes:
        out.line("note: " + note)
    report_audit(found.audits, out)
    problems, warnings = causes(found.findings)
    if not any(item.severity == PROBLEM for item in found.findings):
        out.line(
            "result: healthy" + (", %s" % _count(0, "", warnings, "warning") if warnings else "")
        )
    else:
        out.line("result: %s, see above" % _count(problems, "problem", warnings, "warning"))


def _report_listed(
    section: str,
    grade: str,
    mine: List[Finding],
    out: Output,
    judged: Optional[List[Judged]],
    routes: Optional[Routes],
    imports: Optional[Imports],
) -> bool:
    """A section that lists what it judged (the containers, the routes, the imports):
    its counts, the list, then its findings; False for any other section."""
    title = CHECK_TITLES[section][0]
    containers = section == "containers" and bool(judged)
    routed = section == "routes" and routes is not None and not grade.startswith("not checked")
    if section == "imports" and imports is not None:
        out.line("%-12s %s" % (title, _count(*_named(causes(mine))) or "ok"))
        for name, line in imports.summary:
            out.line("  %s: %s" % (name, line))
    elif containers or routed:
        cited = containers and any(verdict == CITED for _, verdict in judged or ())
        said = [_count(*_named(causes(mine)))]
        if routed and routes is not None:
            said.append(_route_counts(routes))
        out.line("%-12s %s" % (title, "; ".join(text for text in said if text) or (
            "problem counted in permissions" if cited else "ok")))  # fmt: skip
        if judged and containers:
            report_containers(judged, out)
        elif routes is not None:
            report_routes(routes, out)
    else:
        return False
    _report_findings(explained_first(mine), out)
    return True


def _report_section(title: str, grade: str, mine: Sequence[Finding], out: Output) -> None:
    """A section that isn't ok: why it wasn't checked (with the fix, where it is a
    problem: docker-unreachable), its one cause on the header line, or its counts and
    findings."""
    if not mine or grade.startswith("not checked"):
        out.line("%-12s %s" % (title, grade))
        for item in mine:
            out.line("  fix: %s" % item.fix)
        return
    counted = _count(*_named(causes(mine)))
    if len(mine) > 1 or mine[0].container:
        out.line("%-12s %s" % (title, counted))
        _report_findings(mine, out)
        return
    item = mine[0]  # one cause: said on the header line
    if len(item.paths) == 1:
        out.line("%-12s %s: %s: %s" % (title, counted, item.path, item.detail))
    else:
        out.line("%-12s %s: %s" % (title, counted, item.detail))
        shown = ", ".join(item.paths[:REPORT_SAME])
        if len(item.paths) > REPORT_SAME:
            shown += " and %d more (--json lists each)" % (len(item.paths) - REPORT_SAME)
        out.line("  where: %s" % shown)
    if item.fix:
        out.line("  fix: %s" % item.fix)


def report_audit(audits: Sequence[Audit], out: Output) -> None:
    """Per source: the lone files in complete/, their size and the biggest downloads."""
    if audits:
        out.line("audit (information): files in complete/ that are hardlinked nowhere")
    for result in audits:
        meaning = " - " + LEFTOVERS.get(result.source, "") if result.files else ""
        out.line(
            "  %-9s %d file(s), %s%s"
            % (result.source + ":", result.files, human_size(result.bytes), meaning)
        )
        for nbytes, files, folder, loose in result.biggest:
            # Below complete/ as before; beside it (data/torrents/tv) from the source.
            top = result.path if inside(folder, result.path) else os.path.dirname(result.path)
            where = os.path.relpath(folder, top)
            if loose:  # not a download folder: say where the files lie
                where = " directly in %s/" % (os.path.basename(top) if where == os.curdir
                                              else where)  # fmt: skip
            else:
                where = ": " + where
            out.line("    %10s in %d file(s)%s" % (human_size(nbytes), files, where))
        if result.unreadable:
            out.line("    %d folder(s) could not be read" % result.unreadable)
    if any(result.files for result in audits):
        out.line(
            "  copies of these in media/ can become hardlinks again: --relink --dry-run shows which"
        )


# A cause that explains a container's other findings: the text says it first, and then
# how many more (and of which kinds) it explains; --json keeps each, the counts are all.
CAUSES = {"split-mounts": ("outside-tree", "path-mismatch", "read-only", "broad-access")}


def explained_first(findings: Sequence[Finding]) -> List[Finding]:
    """The findings as the text shows them: a container's cause (split-mounts) where the
    first of its group would be, saying "and N more (kinds)" for those it explains."""
    causes = {f.container: f for f in findings if f.kind in CAUSES and f.container}
    explained: Dict[str, List[Finding]] = {}
    for item in findings:
        cause = causes.get(item.container)
        if cause is not None and item is not cause and item.kind in CAUSES[cause.kind]:
            explained.setdefault(item.container, []).append(item)
    shown: List[Finding] = []
    said: Set[str] = set()
    for item in findings:
        cause = causes.get(item.container)
        if cause is not None and (item is cause or item in explained.get(item.container, [])):
            if item.container in said:
                continue
            said.add(item.container)
            more = explained.get(item.container, [])
            if more:
                kinds = ", ".join(sorted({other.kind for other in more}))
                cause = cause._replace(
                    detail="%s - and %d more (%s)" % (cause.detail, len(more), kinds)
                )
            shown.append(cause)
        else:
            shown.append(item)
    return shown


def _report_findings(findings: Sequence[Finding], out: Output) -> None:
    """Each finding on a line, its fix once for a run of the same fix; of findings alike
    but for their folder (every pair across one boundary, failing at the same step), the
    first few and a count; of one cause's many folders, the first and a count: --json
    lists each."""

    last_fix = ""
    for shown, more in fold(findings, _alike):
        for item in shown:
            who = "%s: " % item.container if item.container else ""
            out.line("  - %s: %s%s%s: %s" % (item.severity, who, item.path,
                                              _more_paths(item), item.detail))  # fmt: skip
            if item.fix and item.fix != last_fix:  # said once for a run of the same
                out.line("    fix: %s" % item.fix)
            last_fix = item.fix
        if more:
            out.line("  - ... and %d more like these (--json lists each)" % more)


def _alike(item: Finding) -> Tuple[str, str, str, str]:
    """What findings alike but for their folder share: one line and a count in the text,
    one cause in the counts."""
    shape = item.kind + item.errno if item.section == "probes" else item.detail  # the pair
    return item.severity, item.container, shape, item.fix


def _more_paths(item: Finding) -> str:
    """(and N more): the other paths of a finding's one cause."""
    more = len(item.paths) - 1
    return " (and %d more)" % more if more > 0 else ""


def _count(first: int, first_name: str, second: int, second_name: str) -> str:
    said = []
    for number, name in ((first, first_name), (second, second_name)):
        if number:
            said.append("%d %s%s" % (number, name, "" if number == 1 else "s"))
    return ", ".join(said)


def _named(counts: Tuple[int, int]) -> Tuple[int, str, int, str]:
    return counts[0], "problem", counts[1], "warning"


def causes(findings: Sequence[Finding]) -> Tuple[int, int]:
    """(problems, warnings) as the text counts them: one per cause, a container's cause
    counting for the findings it explains (explained_first), and the findings alike but
    for their folder (every pair across one boundary, failing at the same step) once."""
    groups = {_alike(item) for item in explained_first(findings)}
    problems = sum(severity == PROBLEM for severity, _, _, _ in groups)
    return problems, len(groups) - problems


def report_containers(judged: Sequence[Judged], out: Output) -> None:
    """One block per container: role, its data mounts host -> container, verdict."""
    for container, verdict in judged:
        out.line("  %s (%s, %s): %s" % (container.name, container.role, container.image, verdict))
        for mount in container.mounts:
            out.line("      %s -> %s%s" % (mount.host, mount.container,
                                           "" if mount.rw else " (read-only)"))  # fmt: skip


def _route_counts(routes: Routes) -> str:
    """The routes that are not a hardlink or a move, counted by result: what the header
    says, so that it is never "ok" over one of them; "(see containers)" where the
    containers section names their cause."""
    counts: Dict[str, int] = {}
    for route in routes.routes:
        if route.result not in ("hardlink", "move"):
            counts[route.result] = counts.get(route.result, 0) + 1
    text = ", ".join("%d %s" % (number, result) for result, number in sorted(counts.items()))
    cited = any(route.cause in KINDS and KINDS[route.cause].section == "containers"
                for route in routes.routes if route.result not in ("hardlink", "move"))  # fmt: skip
    return text + (" (see containers)" if text and cited else "")


def report_routes(routes: Routes, out: Output) -> None:
    """A line per route: CLIENT [CATEGORY] -> IMPORTER: DOWNLOAD -> ROOT: RESULT."""
    for route in routes.routes:
        category = " [%s]" % route.category if route.category else ""
        head = "  %s%s -> %s: " % (route.client, category, route.importer)
        if route.result == "unknown" and not route.download:
            out.line(head + "unknown: " + (route.why or route.cause))
            continue
        result = route.result + (" (%s)" % route.cause if route.cause else "")
        if route.why:
            result += ": " + route.why
        out.line("%s%s -> %s: %s" % (head, route.download or "(inside %s)" % route.client,
                                     route.root or "(no root folder)", result))  # fmt: skip
    for name, why in routes.quiet:
        out.line("  %s: %s" % (name, why))


def check_json(
    root: str,
    found: CheckResult,
    judged: Optional[List[Judged]] = None,
    routes: Optional[Routes] = None,
    imports: Optional[Imports] = None,
) -> str:
    """The --check result as one JSON document, for cron jobs and monitoring."""
    document: Dict[str, Any] = {
        "data_root": root,
        "healthy": not any(item.severity == PROBLEM for item in found.findings),
        "probed_as": found.probed_as or None,
        "sections": found.sections,
        "findings": [_finding_json(item) for item in found.findings],
        "notes": found.notes,
        "audit": [
            {
                "source": result.source,
                "path": result.path,
                "files": result.files,
                "bytes": result.bytes,
                "biggest": [
                    {"path": folder, "files": files, "bytes": nbytes}
                    for nbytes, files, folder, _ in result.biggest
                ],
                "unreadable_folders": result.unreadable,
            }
            for result in found.audits
        ],
    }
    if judged is not None:  # with --docker
        document["containers"] = [
            {
                "name": container.name,
                "image": container.image,
                "role": container.role,
                "mounts": [
                    {"type": m.type, "host": m.host, "container": m.container, "rw": m.rw}
                    for m in container.mounts
                ],
                "verdict": verdict,
            }
            for container, verdict in judged
        ]
    if routes is not None:  # with --docker or --app
        document["routes"] = [
            {"client": r.client, "category": r.category or None, "importer": r.importer,
             "download": r.download or None, "seen_as": r.seen_as, "root": r.root or None,
             "result": r.result, "cause": r.cause or None}
            for r in routes.routes
        ]  # fmt: skip
    if imports is not None:  # an importer's settings were read
        document["imports"] = [
            {"importer": r.importer, "client": r.client or None, "date": r.date,
             "download": r.download, "imported": r.imported, "host_download": r.host_download,
             "host_imported": r.host_imported, "result": r.result, "size": r.size}
            for r in imports.rows
        ]  # fmt: skip
    return json_text(document)


def _finding_json(item: Finding) -> Dict[str, Any]:
    document = item._asdict()
    document["errno"] = item.errno or None
    for key in ("container", "other"):
        if not document[key]:
            del document[key]
    return dict(document)


# The JSON fields that hold a path (or a list of paths): where a name's bytes are not
# UTF-8, a sibling FIELD_b64 holds them exactly (base64), since the text shows such a
# byte as \xNN, which a name could also spell out literally.
PATH_FIELDS = (
    "path",
    "paths",
    "other",
    "data_root",
    "keep",
    "replace",
    "host",
    "unreadable_folders",
    "download",
    "seen_as",
    "root",
    "imported",
    "host_download",
    "host_imported",
    "same_as",
)


def json_text(document: Any) -> str:
    """JSON with every string as UTF-8 text (other bytes as \\xNN); json escapes
    control characters (and everything not ASCII) its own way.  See PATH_FIELDS."""
    import json

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return as_utf8(value)
        if isinstance(value, dict):
            cleaned = {as_utf8(key): clean(item) for key, item in value.items()}
            for key in PATH_FIELDS:
                exact = exact_bytes(value.get(key))
                if exact is not None:
                    cleaned[key + "_b64"] = exact
            return cleaned
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(document), indent=2)


def exact_bytes(value: Any) -> Any:
    """A path's bytes in base64 where they are not UTF-8 (a list: each, or None for one
    that is); None where every one is UTF-8."""
    import base64

    def b64(text: str) -> Optional[str]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # surrogate escapes: bytes that aren't UTF-8
            raw = text.encode("utf-8", "surrogateescape")
            return base64.b64encode(raw).decode("ascii")
        return None

    if isinstance(value, str):
        return b64(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        each = [b64(item) for item in value]
        return each if any(item is not None for item in each) else None
    return None


def report_relink(walk: Walk, dry_run: bool, result: RelinkResult, out: "Output") -> None:
    root = walk.path((DATA,))

    def rel(path: str) -> str:
        return os.path.relpath(path, root)

    out.line("relink of %s%s" % (root, " (dry run: nothing is changed)" if dry_run else ""))
    verb = "would relink" if dry_run else "relinked"
    for pair in result.relinked:
        out.line("  %s: %s" % (verb, rel(pair.replace)))
        shared = ""
        if pair.frees != pair.bytes:
            shared = "; frees %s: a reflink or a snapshot shares the rest" % human_size(pair.frees)
        out.line("      = %s (%s%s; takes on %s)"
                 % (rel(pair.download), human_size(pair.bytes), shared, pair.takes_on))  # fmt: skip
    # A broken past skips thousands for one reason.
    for shown, more in fold(result.skipped, lambda item: (item.reason, item.errno)):
        for item in shown:
            out.line("  skipped: %s" % rel(item.path))
            out.line("      = %s: %s%s" % (rel(item.download), item.reason,
                                           " (%s)" % item.errno if item.errno else ""))  # fmt: skip
        if more:
            out.line("  ... and %d more skipped for the same reason (--json lists each)" % more)
    unwatched = [pair for pair in result.relinked if pair.unwatched]
    if unwatched:
        out.line("  note: %d of these: %s (README: --relink on FUSE and network shares)"
                 % (len(unwatched), unwatched[0].unwatched))  # fmt: skip
    _report_leftovers(result, dry_run, rel, out)
    if result.unreadable:
        out.line("  %d folder(s) could not be read, so nothing in them was looked at:"
                 % len(result.unreadable))  # fmt: skip
        for path in result.unreadable[:REPORT_SAME]:
            out.line("      %s" % rel(path))
        if len(result.unreadable) > REPORT_SAME:
            out.line("      ... and %d more (--json lists each)"
                     % (len(result.unreadable) - REPORT_SAME))  # fmt: skip
    total = sum(pair.frees for pair in result.relinked)
    held = sum(pair.bytes for pair in result.relinked) - total
    also = "; %s more stays with a reflink or snapshot" % human_size(held) if held else ""
    if dry_run:
        out.line(
            "result: would relink %d cop%s, %s to release%s; %d skipped"
            % (len(result.relinked), "y" if len(result.relinked) == 1 else "ies", human_size(total),
               also, len(result.skipped))
        )  # fmt: skip
    else:
        out.line(
            "result: %d cop%s relinked, %s released (once no program holds the old files open "
            "and no snapshot keeps them%s); %d skipped"
            % (len(result.relinked), "y" if len(result.relinked) == 1 else "ies", human_size(total),
               also, len(result.skipped))
        )  # fmt: skip


def _report_leftovers(
    result: RelinkResult, dry_run: bool, rel: Callable[[str], str], out: Output
) -> None:
    """What a killed run left: its temp names, and the old copies it set aside."""
    verb = "would remove" if dry_run else "removed"
    if result.leftovers:
        out.line("  %s %d temp name(s) that an interrupted run left" % (verb, result.leftovers))
    for path, same in result.asides:  # a killed run's old copy, beside its linked file
        if same:
            out.line("  %s %s: an old copy a killed run set aside; %s holds its bytes"
                     % (verb, rel(path), rel(same)))  # fmt: skip
        else:
            out.line("  kept %s: set aside by a killed run, and no file beside it holds its "
                     "bytes: look at it, then remove it yourself" % rel(path))  # fmt: skip


def relink_json(dry_run: bool, result: RelinkResult) -> str:
    return json_text(
        {
            "dry_run": dry_run,
            "pairs": [
                {
                    "keep": pair.download,
                    "replace": pair.replace,
                    "bytes": pair.bytes,
                    "frees": pair.frees,
                    "unwatched": pair.unwatched or None,
                }
                for pair in result.relinked
            ],
            "bytes_reclaimed": sum(pair.frees for pair in result.relinked),
            "skipped": [
                {
                    "path": item.path,
                    "keep": item.download,
                    "reason": item.reason,
                    "errno": item.errno or None,
                }
                for item in result.skipped
            ],
            "leftovers_removed": result.leftovers,
            "set_aside": [
                {"path": path, "same_as": same or None, "removed": bool(same)}
                for path, same in result.asides
            ],
            "unreadable_folders": result.unreadable,
        }
    )


# -- the command line: options, and which go with which mode ---------------------------
# The options, their argparse types (in the plan section; --app's here) and
# the table of which option goes with which mode: a usage error is exit 2 before
# anything runs.


def parse_app(text: str) -> Tuple[str, str]:
    """argparse type for --app KIND=DIR: the kind and the folder (which must exist)."""
    kind, equals, folder = text.partition("=")
    kind = kind.strip().lower()
    if not equals or kind not in READ_APPS:
        raise argparse.ArgumentTypeError(
            "%r: give KIND=DIR, KIND one of %s" % (text, " ".join(READ_APPS))
        )
    if not folder.strip():  # KIND= (an unset shell variable) is not the current folder
        raise argparse.ArgumentTypeError("%r: DIR is empty; give KIND=DIR" % text)
    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError("%s: no such folder" % folder)
    return kind, folder


EPILOG = """\
examples:
  Unraid (the containers' user, 99:100 there):
    python3 %(prog)s --path /mnt/user --owner nobody:users
  Synology (a user "docker", uid 1026, group users):
    python3 %(prog)s --path /volume1 --owner 1026:100
  look before you leap:
    python3 %(prog)s --path /srv --owner 1000:1000 --dry-run
  a second Radarr:
    python3 %(prog)s --path /srv --add-category movies-4k
  ready for hardlinks? and the containers?
    python3 %(prog)s --path /mnt/user --check --owner 99:100
    python3 %(prog)s --path /mnt/user --check --docker
  copies into hardlinks:
    python3 %(prog)s --path /mnt/user --relink --dry-run
  docker-compose volumes:
    python3 %(prog)s --path /mnt/user --compose
  no git on the NAS: see the README (scp, or a pinned download and sha256sum)

exit codes: 0 done, 1 conflict, OS failure, --check problem or unwritable
output, 2 usage error, 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP)
"""

# Which options go with which mode; anything else is a usage error.
MODES = ("create", "check", "compose", "relink")
OPTION_MODES = {
    "--owner": ("create", "check"),
    "--mode": ("create",),
    "--add-category": ("create", "check"),
    "--dry-run": ("create", "relink"),
    "--json": ("check", "relink"),
    "--docker": ("check", "relink"),
    "--app": ("check", "relink"),
    "--min-size": ("relink",),
    "--min-age": ("relink",),
}
MODE_NAMES = {
    "create": "creating the tree",
    "check": "--check",
    "compose": "--compose",
    "relink": "--relink",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, sized to the terminal as argparse sizes it, but without
    importing shutil: argparse makes a formatter for every option added, and shutil
    brings bz2, lzma and more into every run that prints no help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)


def terminal_columns() -> int:
    """What shutil.get_terminal_size() says of the columns: $COLUMNS, the terminal, 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (ValueError, OSError):  # not a terminal, or closed
            columns = 0
    return columns or 80


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="create_media_structure.py",
        description="Create the data/ tree (torrents, usenet, ddl, media) under --path,\n"
        "on one filesystem, so that imports are hardlinks or atomic moves.\n\n"
        "Creating is the default mode. --check creates nothing: it proves the tree\n"
        "works (a real hardlink and move per category, as --owner's user), and with\n"
        "--docker the containers' mounts and each download's route through the\n"
        "apps' own settings. --relink turns copies back into hardlinks.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--path",
        default=".",
        type=parse_path,
        metavar="DIR",
        help="the existing folder to hold data/ (default: the current folder)",
    )
    parser.add_argument(
        "--owner",
        type=parse_owner,
        metavar="USER[:GROUP]",
        help="create: owner of every folder of the tree, names or ids (e.g. 1000:1000); "
        "--check: the user to check and probe as",
    )
    parser.add_argument(
        "--mode",
        type=parse_mode,
        metavar="OCTAL",
        help="mode of every folder of the tree, new and existing (new ones get 775 "
        "without it; e.g. 2775)",
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
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--check",
        action="store_true",
        help="create nothing; check that the tree is ready for hardlinks and atomic moves, "
        "and count the files in complete/ that are hardlinked nowhere",
    )
    modes.add_argument(
        "--compose",
        action="store_true",
        help="print docker-compose volumes for --path, one block per app; touches nothing",
    )
    modes.add_argument(
        "--relink",
        action="store_true",
        help="turn byte-identical copies in media/ of files in complete/ into hardlinks",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --check or --relink: one JSON document"
    )
    parser.add_argument(
        "--docker",
        nargs="?",
        const="",
        metavar="FILE",
        help="with --check: check the containers too, from `docker inspect` of the running "
        "ones, or from FILE (docker inspect or docker compose config --format json, or the "
        "compose file; - for stdin); with --relink: the copies their importers' history names "
        "come first",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        type=parse_app,
        metavar="KIND=DIR",
        help="with --check or --relink: read the settings of an app installed without docker "
        "from DIR, its config folder (repeatable); KIND: %s" % " ".join(READ_APPS),
    )
    parser.add_argument(
        "--min-size",
        type=parse_size,
        metavar="BYTES",
        help="with --relink: the smallest file to look at (default 1M; K, M, G suffixes)",
    )
    parser.add_argument(
        "--min-age",
        type=parse_minutes,
        metavar="MINUTES",
        help="with --relink: leave files changed in the last MINUTES alone (default 15)",
    )
    parser.add_argument(
        "--version",
        action=VersionAction,
        nargs=0,
        help="print the version and this file's sha256 (compare it with sha256sum's where "
        "you copied it from), then exit",
    )
    return parser


class VersionAction(argparse.Action):
    """--version: the version and the file's sha256, hashed only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        out = Output(sys.stdout)  # a full disk, a reader gone: exit 1, as every mode
        out.lines("%s %s%s" % (parser.prog, __version__, own_sha256()))
        out.flush()
        parser.exit(1 if out.failed else 0)


def own_sha256() -> str:
    """'\nsha256 HEX  FILE' of this script as it lies on disk, so that the copy on the NAS
    can be checked against the one it came from without sha256sum; '' where it came
    through stdin (there is no file to hash)."""
    import hashlib

    path = globals().get("__file__") or ""
    if not path or path == "<stdin>":
        return ""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read(SCRIPT_LIMIT)).hexdigest()
    except OSError:
        return ""
    return "\nsha256 %s  %s" % (digest, os.path.basename(path))


SCRIPT_LIMIT = 16 << 20  # this file is well under a MiB: more is not this file


def chosen_mode(args: argparse.Namespace) -> str:
    """The run mode the options name: create, check, compose or relink."""
    for name in MODES[1:]:
        if getattr(args, name):
            return name
    return "create"


def checked_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The run mode, after refusing every option that the mode does not use (exit 2)."""
    run_mode = chosen_mode(args)
    for option, modes in OPTION_MODES.items():
        value = getattr(args, option[2:].replace("-", "_"))
        if value not in (None, False, []) and run_mode not in modes:
            parser.error("%s does not go with %s" % (option, MODE_NAMES[run_mode]))
    return run_mode


# -- the modes: create, --check and --relink from start to end, and main() -------------
# One driver per mode: it plans, runs the sections it needs and hands the result to
# the report.  main() turns every Error into one line on stderr and an exit code.


def in_ram(walk: Walk) -> str:
    """The RAM filesystem --path is on (tmpfs, ramfs, Unraid's rootfs), or ""."""
    fstype = fstype_of(walk.fds[()], walk.path(()))
    return fstype if fstype in RAM_FILESYSTEMS else ""


def check_name_lengths(walk: Walk, categories: Sequence[str]) -> None:
    """Refuse a category the filesystem can't name, before anything is created."""
    try:
        limit = os.fpathconf(walk.fds[()], "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = DEFAULT_NAME_MAX
    if not limit or limit < 0:
        limit = DEFAULT_NAME_MAX  # pragma: no cover - "no limit"
    for name in categories:
        if len(os.fsencode(name)) > limit:
            raise Error(
                "--add-category %r: %d bytes, but this filesystem allows %d in a name"
                % (name[:40] + "...", len(os.fsencode(name)), limit),
                2,
            )


def create(
    walk: Walk,
    steps: List[Step],
    args: argparse.Namespace,
    out: Output,
    err: Output,
    signals: Signals,
) -> int:
    """The default mode: create what is missing, change what --owner / --mode say."""
    conflicts = [step for step in steps if step.action == CONFLICT]
    if conflicts:
        if not args.quiet:
            report(steps, True, out)
        for step in conflicts:
            err.line("error: %s: %s is in the way" % (step.path, step.detail))
        raise Error(
            "%d thing(s) in the way of the tree; move them away and run "
            "again. Nothing was created." % len(conflicts)
        )
    create_warnings(walk, steps, args, err)
    if not args.dry_run:
        done: List[Step] = []
        try:
            apply(walk, steps, args.owner, args.mode, done, signals)
        except (Error, Interrupted, KeyboardInterrupt) as exc:
            tally = "%d folder(s) created, %d changed; run again to finish" % (
                sum(step.action == CREATE for step in done),
                sum(step.action == CHANGE for step in done),
            )
            if isinstance(exc, Error):
                raise Error(str(exc), exc.code, "before that: " + tally)
            err.line("interrupted: " + tally)
            raise
        finished = {step.folder.parts: step for step in done}
        steps = [finished.get(step.folder.parts, step) for step in steps]
    if not args.quiet:
        report(steps, args.dry_run, out)
        out.line(summary(steps, walk.base, args.dry_run))
    return 0


def create_warnings(
    walk: Walk, steps: Sequence[Step], args: argparse.Namespace, err: Output
) -> None:
    """What the user should hear before a tree is made: a risky --mode, a tree of root's,
    data/data, a tree in RAM."""
    if args.mode is not None and args.mode & 0o002:
        err.line("warning: --mode %04o lets every user on the system write there" % args.mode)
    if args.mode is not None and args.mode & stat.S_ISVTX:
        err.line(
            "warning: --mode %04o sets the sticky bit: only a file's owner can move or delete "
            "it there, so an app running as another user can't move a download out or clean "
            "up; %04o leaves it out" % (args.mode, args.mode & ~stat.S_ISVTX)
        )
    creating = any(step.action == CREATE for step in steps)
    if creating and args.owner is None and is_root():
        err.line(
            "warning: running as root without --owner: the new folders will belong to root, "
            "and containers running as PUID/PGID may not write there; add "
            "--owner 1000:1000 (Unraid: --owner nobody:users)"
        )
    if steps[0].action == CREATE and os.path.basename(walk.base) == DATA:
        # An Unraid share or a dataset named data, given as --path: a tree in data/data.
        err.line(
            "warning: --path %s is itself named data: the tree goes into %s; if this "
            "folder is meant to be the tree's data/, give --path %s"
            % (walk.base, steps[0].path, os.path.dirname(walk.base))
        )
    if creating:
        where = in_ram(walk)
        if where:
            err.line(
                "warning: %s is on %s, in memory: the tree will be gone at the next reboot "
                "(Unraid: is the array started?)" % (walk.path(()), where)
            )


def found_categories(walk: Walk, folders: Sequence[Folder]) -> List[Folder]:
    """Categories on disk that the tree doesn't name (made by hand, or by an
    --add-category that this run wasn't given): a folder of one name in a client's
    complete/ and in media/.  A check that skipped them would call healthy an import
    path it never tried."""

    def folder_names(parts: Tuple[str, ...]) -> Set[str]:
        fd = walk.fds.get(parts)
        if fd is None:
            return set()
        try:  # hidden, Synology's #recycle and @eaDir: never a category
            names = set(subfolder_names(fd))
        except OSError:
            return set()
        return {name for name in names if not name.startswith((".", "#", "@"))}

    known = {folder.parts for folder in folders}
    library = {name for name in folder_names((DATA, MEDIA)) if (DATA, MEDIA, name) not in known}
    found: List[Folder] = []
    for source in SOURCES:
        complete = (DATA, source, COMPLETE)
        for name in sorted(folder_names(complete) & library):
            if complete + (name,) not in known:
                found.append(Folder(complete + (name,), (True,) * 4, True))
    targets = sorted({folder.parts[-1] for folder in found})
    return [Folder((DATA, MEDIA, name), (True,) * 3, True) for name in targets] + found


def check(
    walk: Walk,
    steps: List[Step],
    folders: Sequence[Folder],
    args: argparse.Namespace,
    out: Output,
    err: Output,
    signals: Signals,
) -> int:
    """--check: report; exit 1 on any problem (warnings and the audit's counts never fail)."""
    root = walk.path((DATA,))
    pairs = import_pairs(folders)  # for the probes, the grades, and the containers
    table = load_mounts()  # once: every section judges against the same mount table
    loaded: Tuple[List[Container], str] = ([], "")
    if args.docker is not None:  # first: the audit checks the importers' users too
        loaded = load_docker(args.docker, steps, table[0])
    try:
        found = run_check(walk, steps, pairs, args.owner, Progress(sys.stderr), signals,
                          importer_users(loaded[0]), table)  # fmt: skip
    except (Interrupted, KeyboardInterrupt):
        err.line("interrupted: the check was stopped; the probe files it made were removed")
        raise
    named = set(TREE[DATA][MEDIA]) | set(args.add_category)
    unnamed = [f.parts[-1] for f in folders if f.parts[:2] == (DATA, MEDIA) and
               len(f.parts) == 3 and f.parts[-1] not in named]  # fmt: skip
    if unnamed:
        note = "also checked, found on disk in complete/ and media/: " + ", ".join(unnamed)
        note += " (%s makes it in every client)" % category_option(unnamed[0])
        found = found._replace(notes=found.notes + [note])
    judged: Optional[List[Judged]] = None
    routes: Optional[Routes] = None
    imports: Optional[Imports] = None
    # The apps' settings, read once: the containers judge a path-mismatch with the
    # importers' remote path mappings known, the routes and the imports read the rest.
    apps: Optional[Tuple[List[App], List[str], str]] = None
    try:
        if args.docker is not None or args.app:
            apps = load_apps(loaded[0], loaded[1], args.app)
        mappings = {app.name: app.settings.mappings for app in (apps[0] if apps else ())
                    if app.kind in IMPORTER_APPS and app.container is not None}  # fmt: skip
        if args.docker is not None:
            owner_blocked: Optional[Tuple[int, int]] = None
            if args.owner is not None and any(
                f.kind == "not-writable" and f.severity == PROBLEM for f in found.findings
            ):
                uid, gid, _ = probe_identity(args.owner)
                owner_blocked = (uid, gid)
            found, judged = check_containers(found, walk, steps, pairs, loaded, signals.poll,
                                             owner_blocked, mappings)  # fmt: skip
        if apps is not None:
            found, routes = check_routes(found, loaded[0], apps, root, real_data_root(walk),
                                         table[0] or (), signals.poll)  # fmt: skip
            found, imports = check_imports(found, routes, walk.base, signals.poll)
    except (Interrupted, KeyboardInterrupt):
        err.line("interrupted: the check was stopped; it had changed nothing")
        raise
    if args.json:
        out.lines(check_json(root, found, judged, routes, imports))
    elif not args.quiet:
        report_check(root, steps, args.owner, found, out, judged, routes, imports)
    else:
        for item in found.findings:
            who = item.container + ("/" + item.other if item.other else "")
            err.line("%s: %s%s: %s" % (item.severity, who + ": " if who else "", item.path,
                                       item.detail))  # fmt: skip
    return 1 if any(item.severity == PROBLEM for item in found.findings) else 0


def relink(
    walk: Walk,
    folders: Sequence[Folder],
    args: argparse.Namespace,
    out: "Output",
    err: "Output",
    signals: Signals,
) -> int:
    """--relink: find the copies, prove each byte for byte, link (unless --dry-run), report."""
    if not RELINK_OK:  # pragma: no cover - not Linux, BSD or macOS
        raise Error("--relink needs link and rename through descriptors (Linux, BSD, macOS)")
    steps = plan(walk, folders, None, None, need_stat=True)
    if steps[0].st is None or (DATA, MEDIA) not in walk.fds:
        raise Error(
            "%s: no data/media here, so nothing to relink: is --path the folder "
            "that holds data/? (--check shows the tree)" % walk.path((DATA,))
        )
    lock = lock_folder(walk, (DATA,), wait=False)  # one --relink at a time
    if lock is None:
        raise Error("another --relink is running on %s; wait for it" % walk.path((DATA,)))
    try:
        progress = Progress(sys.stderr, "comparing")
        known = history_copies(walk, steps, args) if args.docker is not None or args.app else {}
        result = find_and_relink(walk, args, progress, signals, known)
    except (Interrupted, KeyboardInterrupt):
        err.line("interrupted: nothing is half done (every library path is whole); run again")
        raise
    finally:
        os.close(lock)
    progress.done()
    if args.json:
        out.lines(relink_json(args.dry_run, result))
    elif not args.quiet:
        report_relink(walk, args.dry_run, result, out)
    else:
        for item in result.skipped:
            err.line("skipped: %s: %s" % (item.path, item.reason))
        for path in result.unreadable:
            err.line("not looked in: %s: could not be read" % path)
    return 1 if any(item.errno for item in result.skipped) else 0


def history_copies(walk: Walk, steps: Sequence[Step], args: argparse.Namespace) -> Dict[str, str]:
    """--relink with --docker or --app: the copies the importers' history names (library
    file -> download, host paths below data/), read as --check reads them."""
    loaded: Tuple[List[Container], str] = ([], "")
    if args.docker is not None:
        loaded = load_docker(args.docker, steps, load_mounts()[0])
    containers, why_not = loaded
    apps, _, _ = load_apps(containers, why_not, args.app)
    root = walk.path((DATA,))
    known: Dict[str, str] = {}
    for app in apps:
        if app.kind not in IMPORTER_APPS or app.settings.unread:
            continue
        for row in read_imports(app)[0]:
            library, download = row.host_imported, row.host_download
            if row.result == "copy" and library and download and inside(library, root) \
                    and inside(download, root):  # fmt: skip
                known.setdefault(library, download)
    return known


def run(args: argparse.Namespace, run_mode: str, out: Output, err: Output, signals: Signals) -> int:
    if run_mode == "compose":  # works before the path exists: it only prints
        out.lines(compose_snippet(os.path.abspath(os.path.expanduser(args.path))))
        return 0
    walk = open_base(args.path)
    try:
        check_name_lengths(walk, args.add_category)
        folders = list_folders(with_categories(TREE, args.add_category))
        if run_mode == "relink":
            return relink(walk, folders, args, out, err, signals)
        steps = plan(walk, folders, args.owner, args.mode, need_stat=run_mode == "check")
        if run_mode == "check":
            found = found_categories(walk, folders)  # their pairs are probed too
            more = plan(walk, found, args.owner, args.mode, need_stat=True)
            folders, steps = folders + found, steps + more
            return check(walk, steps, folders, args, out, err, signals)
        return create(walk, steps, args, out, err, signals)
    finally:
        walk.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    reopen_std_fds()
    out, err = Output(sys.stdout), Output(sys.stderr)  # None where closed at start
    for name in ("stdout", "stderr"):  # argparse must not crash on a closed one
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115
    parser = build_parser()
    args = parser.parse_args(argv)
    run_mode = checked_mode(parser, args)
    code = 0
    with Signals() as signals:
        try:
            code = run(args, run_mode, out, err, signals)
        except Error as exc:
            err.line("error: %s" % exc)
            if exc.before:
                err.line(exc.before)
            code = exc.code
        except Interrupted as exc:
            code = 128 + exc.signum
        except KeyboardInterrupt:
            code = 130
        if signals.caught and code < 128:
            code = 128 + signals.caught
    out.flush()
    err.flush()
    if code == 0 and (out.failed or err.failed):
        code = 1  # only the output failed: the work is done, but say so by the exit code
    return code


if __name__ == "__main__":
    sys.exit(main())
