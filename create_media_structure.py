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
HINTS: Dict[int, str] = {
    errno.EACCES: "no permission to write there: run as a user who may "
    "(e.g. with sudo) or fix the parent folder's permissions",
    errno.EPERM: "operation not permitted: changing the owner needs root",
    errno.ENOSPC: "the disk is full (or out of inodes): free some space",
    errno.EROFS: "the filesystem is mounted read-only: remount it read-write",
    errno.EIO: "the disk reported an I/O error: check it (dmesg, SMART)",
    errno.EDQUOT: "your disk quota is used up: free some space or raise it",
}


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
            "a symlink to %s -> %s" % (describe(st.st_mode), target),
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


# -- --check: the same plan, then probes of what hardlinks and moves need --------

# Filesystems that lack hardlinks, or often refuse them.
NO_HARDLINKS = {"vfat", "msdos", "fat", "exfat", "cifs", "smb3", "smbfs", "9p", "vboxsf"}
# Unions of several disks: a link works only where both paths land on one disk.
UNIONS = {"fuse.mergerfs", "mergerfs", "fuse.shfs", "fuse.unionfs", "fuse.unionfs-fuse"}

PROBE_PREFIX = ".create_media_structure-probe-"
MOUNTINFO = "/proc/self/mountinfo"  # Linux's mount table, with bind mounts

# What a failed probe means, by errno, and what to do about it.
PROBE_FIXES: Dict[int, str] = {
    errno.EXDEV: "complete/ and media/ are not on one filesystem and mount: keep all of "
    "data/ on one disk, share or dataset, and give the containers ONE /data volume",
    errno.EPERM: "this filesystem or the kernel (fs.protected_hardlinks) does not allow the "
    "hardlink: use a filesystem with hardlinks (ext4, xfs, btrfs, zfs) and run as the owner",
    errno.EMLINK: "the file has too many links for this filesystem",
    errno.EACCES: "no write access: fix the owner/mode (rerun with --owner PUID:PGID)",
    errno.EROFS: "the filesystem is mounted read-only: remount it read-write",
}


class Finding(NamedTuple):
    section: str  # layout, filesystem, probe, permissions
    kind: str  # missing, conflict, other-filesystem, mount-point, ...
    path: str
    detail: str
    fix: str
    errno: str  # the errno's name, or ""


class Mount(NamedTuple):
    point: str
    root: str  # the part of the source filesystem mounted there ("/" unless a bind)
    fstype: str
    source: str


class Audit(NamedTuple):
    source: str
    path: str
    files: int  # regular files with a link count of 1
    bytes: int
    biggest: List[Tuple[int, int, str]]  # (bytes, files, folder), largest first
    unreadable: int  # folders that could not be listed


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


def mount_of(real_path: str, mounts: Sequence[Mount]) -> Optional[Mount]:
    """The mount a resolved path lives on: the longest matching mount point, last wins."""
    best: Optional[Mount] = None
    for mount in mounts:
        if _inside(real_path, mount.point) and (
            best is None or len(mount.point) >= len(best.point)
        ):
            best = mount
    return best


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def describe_mount(mount: Mount) -> str:
    bind = "" if mount.root == "/" else ", a bind mount of %s" % mount.root
    return "%s %s%s" % (mount.fstype, mount.source, bind)


def layout_findings(steps: Sequence[Step]) -> List[Finding]:
    """Each conflict, and each topmost missing folder with how many lie below it."""
    findings: List[Finding] = []
    absent: Set[Tuple[str, ...]] = set()
    for step in steps:
        parts = step.folder.parts
        if parts[:-1] in absent:  # below one already said
            absent.add(parts)
        elif step.action == CONFLICT:
            absent.add(parts)
            findings.append(
                Finding(
                    "layout",
                    "conflict",
                    step.path,
                    step.detail + " is in the way",
                    "move it away, then run without --check",
                    "",
                )
            )
        elif step.action == CREATE:
            absent.add(parts)
            below = sum(1 for s in steps if s.folder.parts[: len(parts)] == parts) - 1
            detail = "missing" + (" (and the %d folders below it)" % below if below else "")
            findings.append(
                Finding(
                    "layout", "missing", step.path, detail, "run without --check to create it", ""
                )
            )
    return findings


def filesystem_findings(
    steps: Sequence[Step], mounts: Optional[Sequence[Mount]]
) -> Tuple[List[Finding], List[str]]:
    """Every boundary inside the tree (another device, a mount point, a symlink
    elsewhere) and the type of data/'s filesystem: findings, and notes.

    mounts is None where there is no mount table (not Linux): st_dev alone decides.
    """
    present = [step for step in steps if step.st is not None]
    if not present or len(present[0].folder.parts) != 1:
        return [], []
    root = present[0]
    assert root.st is not None
    found: Dict[str, Finding] = {}
    fix = (
        "keep the whole data/ tree on one filesystem and one mount: move this "
        "folder's contents into the tree's own filesystem, and remove the mount or symlink"
    )
    real_root = os.path.realpath(root.path)
    root_mount = mount_of(real_root, mounts) if mounts else None
    devices = {step.folder.parts: step.st.st_dev for step in present if step.st is not None}
    for step in present[1:]:
        assert step.st is not None
        if step.symlink:
            real = os.path.realpath(step.path)
            mount = mount_of(real, mounts) if mounts else None
            if step.st.st_dev != root.st.st_dev or mount != root_mount:
                where = " (%s)" % describe_mount(mount) if mount else ""
                found[step.path] = Finding(
                    "filesystem",
                    "symlink-elsewhere",
                    step.path,
                    "a symlink to %s, on another filesystem or mount%s" % (real, where),
                    fix,
                    "",
                )
        elif step.st.st_dev != root.st.st_dev and devices[step.folder.parts[:-1]] == root.st.st_dev:
            # Only where the tree first leaves data/'s device, not everything below.
            found[step.path] = Finding(
                "filesystem",
                "other-filesystem",
                step.path,
                "on another filesystem than data/",
                fix,
                "",
            )
    for mount in mounts or ():
        if mount.point != real_root and _inside(mount.point, real_root):
            path = os.path.join(root.path, os.path.relpath(mount.point, real_root))
            found[path] = Finding(
                "filesystem",
                "mount-point",
                path,
                "a mount point (%s): links and moves across it fail with EXDEV"
                % describe_mount(mount),
                fix,
                "",
            )
    findings = [found[path] for path in sorted(found)]
    if root_mount is None:
        return findings, []
    notes = ["data/ is on %s, mounted at %s" % (describe_mount(root_mount), root_mount.point)]
    more, union = fstype_finding(root_mount, root.path)
    return findings + more, notes + union


def fstype_finding(mount: Mount, path: str) -> Tuple[List[Finding], List[str]]:
    """A finding for a filesystem type without hardlinks; a note for a union."""
    if mount.fstype in NO_HARDLINKS:
        return [
            Finding(
                "filesystem",
                "no-hardlinks",
                path,
                "%s does not support hardlinks (or refuses them)" % mount.fstype,
                "put data/ on a filesystem with hardlinks: ext4, xfs, btrfs, zfs",
                "",
            )
        ], []
    if mount.fstype in UNIONS:
        return [], [
            "%s is a union of disks: a hardlink works only where both paths sit on one "
            "disk; the probes below tell for these folders" % mount.fstype
        ]
    return [], []


def writable_findings(steps: Sequence[Step], owner: Owner) -> List[Finding]:
    """Folders that owner could not write, from mode bits and ownership (no ACLs)."""
    groups = {owner.gid}
    try:
        import pwd

        entry = pwd.getpwuid(owner.uid)
        groups.add(entry.pw_gid)
        groups.update(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except (ImportError, KeyError, OSError, AttributeError):
        pass
    findings: List[Finding] = []
    if owner.uid == 0:  # root writes anywhere
        return findings
    for step in steps:
        if step.st is None:
            continue
        st = step.st
        if owner.uid != -1 and st.st_uid == owner.uid:
            bits = stat.S_IWUSR | stat.S_IXUSR
        elif st.st_gid in groups:
            bits = stat.S_IWGRP | stat.S_IXGRP
        else:
            bits = stat.S_IWOTH | stat.S_IXOTH
        if st.st_mode & bits != bits:
            findings.append(
                Finding(
                    "permissions",
                    "not-writable",
                    step.path,
                    "%s cannot write here (owner %d:%d, mode %04o)"
                    % (owner.spec, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                    "rerun without --check with --owner %s" % owner.spec,
                    "",
                )
            )
    return findings


def probe(source: str, complete: Step, media: Step) -> List[Finding]:
    """Hardlink and move a fresh file from complete/ into media/; leave nothing behind.

    Only files this probe created are removed (same inode), also after a failure.
    The two folders' times are put back as they were.
    """
    findings: List[Finding] = []
    token = "%s%d-%s" % (PROBE_PREFIX, os.getpid(), os.urandom(4).hex())
    made: List[Tuple[str, int, int]] = []  # path, dev, ino
    try:
        for kind, operation in (("hardlink", os.link), ("move", os.rename)):
            src = os.path.join(complete.path, token + "-" + kind)
            dst = os.path.join(media.path, token + "-" + kind)
            what = "%s from %s/complete to media" % (kind, source)
            try:
                fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    st = os.fstat(fd)
                    made += [(src, st.st_dev, st.st_ino), (dst, st.st_dev, st.st_ino)]
                    os.write(fd, b"create_media_structure.py --check probe\n")
                finally:
                    os.close(fd)
                operation(src, dst)
                arrived = os.lstat(dst)
                made.append((dst, arrived.st_dev, arrived.st_ino))  # ours, whatever it is
                if (arrived.st_dev, arrived.st_ino) != (st.st_dev, st.st_ino):
                    raise OSError(errno.EXDEV, "the %s arrived as another file" % kind, dst)
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, "")
                findings.append(
                    Finding(
                        "probe",
                        kind + "-failed",
                        complete.path,
                        "%s failed: %s" % (what, exc.strerror),
                        PROBE_FIXES.get(exc.errno or 0, HINTS.get(exc.errno or 0, "")),
                        name,
                    )
                )
    finally:
        for path, dev, ino in made:
            try:
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
            except OSError:
                pass
        for step in (complete, media):
            assert step.st is not None
            try:
                os.utime(step.path, ns=(step.st.st_atime_ns, step.st.st_mtime_ns))
            except OSError:
                pass
    return findings


class Progress:
    """Counts files; after about a second, shows the count on a terminal's stderr."""

    def __init__(self, stream: Optional[IO[str]]) -> None:
        import time

        self.clock = time.monotonic
        self.start = self.clock()
        self.stream = stream if stream is not None and stream.isatty() else None
        self.workers = _audit_workers()  # the other workers' files are estimated from ours
        self.files = 0
        self.shown = False

    def tick(self, files: int) -> None:
        self.files += files
        if self.stream is not None and self.clock() - self.start > 1.0:
            self.stream.write("\rchecking: about %d files looked at" % (self.files * self.workers))
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown and self.stream is not None:
            self.stream.write("\r" + " " * 40 + "\r")
            self.stream.flush()


def audit(source: str, tree_dirs: Sequence[str], progress: Progress, top: int = 5) -> Audit:
    """Regular files with a link count of 1 below a source's complete/.

    The download folders (folders inside a tree folder that are not part of
    the tree) are shared out, every n-th to each of n processes, one per core:
    the walk is CPU-bound in Python on a warm cache and I/O-bound on a cold
    one, and processes overlap both where threads would queue on the GIL.
    Each folder is summed and dropped, keeping only the biggest few, so memory
    stays flat however many files there are.
    """
    import heapq

    workers = _audit_workers()
    children = [(share, _fork_share(tree_dirs, share, workers, top)) for share in range(1, workers)]
    files, nbytes, unreadable, biggest = _audit_share(tree_dirs, 0, workers, progress, top)
    for share, child in children:
        result = _join_share(child)
        if result is None:  # the worker failed: do its share here
            result = _audit_share(tree_dirs, share, workers, progress, top)
        files, nbytes, unreadable = files + result[0], nbytes + result[1], unreadable + result[2]
        biggest += result[3]
    return Audit(source, tree_dirs[0], files, nbytes, heapq.nlargest(top, biggest), unreadable)


ShareResult = Tuple[int, int, int, List[Tuple[int, int, str]]]  # files, bytes, unreadable, biggest


def _audit_workers() -> int:
    if not hasattr(os, "fork"):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _fork_share(tree_dirs: Sequence[str], share: int, workers: int, top: int) -> Tuple[int, int]:
    """Start a process that audits one share; return (pid, the pipe's read end)."""
    import marshal

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    code = 1  # the child: never returns, whatever happens
    try:
        os.close(read_end)
        data = marshal.dumps(_audit_share(tree_dirs, share, workers, Progress(None), top))
        while data:
            data = data[os.write(write_end, data) :]
        code = 0
    finally:
        os._exit(code)


def _join_share(child: Tuple[int, int]) -> Optional[ShareResult]:
    """Read a worker's result and reap it; None if it failed."""
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
    if status != 0:
        return None
    result: ShareResult = marshal.loads(b"".join(chunks))
    return result


def _audit_share(
    tree_dirs: Sequence[str], share: int, workers: int, progress: Progress, top: int
) -> ShareResult:
    """Sum every workers-th download folder, starting at share (and, share 0, loose files)."""
    import heapq

    known = set(tree_dirs)
    biggest: List[Tuple[int, int, str]] = []
    files = nbytes = unreadable = index = 0

    def keep(item_bytes: int, item_files: int, folder: str) -> None:
        heapq.heappush(biggest, (item_bytes, item_files, folder))
        if len(biggest) > top:
            heapq.heappop(biggest)

    for folder in tree_dirs:
        loose_files = loose_bytes = 0
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.path in known:
                            continue
                        index += 1
                        if index % workers != share:
                            continue
                        item_files, item_bytes, bad = _sum_lone_files(entry.path, progress)
                        files, nbytes = files + item_files, nbytes + item_bytes
                        unreadable += bad
                        if item_files:
                            keep(item_bytes, item_files, entry.path)
                    elif share == 0:
                        size = _lone_file_size(entry)
                        if size is not None:
                            loose_files, loose_bytes = loose_files + 1, loose_bytes + size
        except OSError:
            unreadable += share == 0  # every share meets it; one counts it
        files, nbytes = files + loose_files, nbytes + loose_bytes
        if loose_files:
            keep(loose_bytes, loose_files, folder)
    return files, nbytes, unreadable, biggest


def _sum_lone_files(top: str, progress: Progress) -> Tuple[int, int, int]:
    """(files, bytes, unreadable folders) for the lone files of a whole subtree."""
    files = nbytes = unreadable = 0
    stack = [top]
    while stack:
        seen = 0
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    size = _lone_file_size(entry)
                    if size is not None:
                        files, nbytes = files + 1, nbytes + size
        except OSError:
            unreadable += 1
        progress.tick(seen)
    return files, nbytes, unreadable


def _lone_file_size(entry: "os.DirEntry[str]") -> Optional[int]:
    """The size of a regular file that is hardlinked nowhere else, or None."""
    try:
        if entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            if st.st_nlink == 1:
                return st.st_size
    except OSError:  # gone while we looked
        pass
    return None


def run_check(
    steps: Sequence[Step], owner: Optional[Owner], progress: Progress
) -> Tuple[List[Finding], List[str], List[Audit]]:
    """Everything --check reports, in order: findings, notes, and the audit."""
    findings = layout_findings(steps)
    notes: List[str] = []
    mounts: Optional[List[Mount]] = None
    try:
        with open(MOUNTINFO, "rb") as handle:
            mounts = read_mountinfo(handle.read())
    except OSError:
        notes.append("no mount table here (not Linux): checked devices only, not bind mounts")
    more, fs_notes = filesystem_findings(steps, mounts)
    findings += more
    notes = fs_notes + notes
    by_parts = {step.folder.parts: step for step in steps if step.st is not None}
    media = by_parts.get((DATA, MEDIA))
    audits: List[Audit] = []
    for source in SOURCES:
        complete = by_parts.get((DATA, source, COMPLETE))
        if complete is None or media is None:
            notes.append("%s: probes and audit skipped, complete/ or media/ is missing" % source)
            continue
        findings += probe(source, complete, media)
        tree_dirs = [
            step.path for parts, step in by_parts.items() if parts[:3] == (DATA, source, COMPLETE)
        ]
        audits.append(audit(source, tree_dirs, progress))
    progress.done()
    if owner is not None:
        findings += writable_findings(steps, owner)
    return findings, notes, audits


# -- --compose: the docker-compose volumes that keep imports hardlinks ---------

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
        volume = "%s:/%s" % (os.path.join(base, *parts), "/".join(parts))
        if not set(volume) <= YAML_SAFE | {":"}:
            volume = _yaml_quote(volume)
        lines += ["", "# " + label, "volumes:", "  - " + volume]
    return "\n".join(lines)


def _yaml_quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    import json

    return json.dumps(text)


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


CHECK_SECTIONS = (
    ("layout", "layout", "all {} folders are there"),
    ("filesystem", "one filesystem", "every folder is on the same filesystem and mount as data/"),
    ("probe", "probes", "a hardlink and a move from each complete/ into media/ both work"),
    ("permissions", "permissions", "{} can write every folder"),
)
LEFTOVERS = {
    "torrents": "not imported yet, imported as a copy, or kept only for seeding",
    "usenet": "leftovers: an import moves the file out, so nothing should stay here",
    "ddl": "leftovers: an import moves the file out, so nothing should stay here",
}


def report_check(
    root: str,
    steps: Sequence[Step],
    owner: Optional[Owner],
    found: Tuple[List[Finding], List[str], List[Audit]],
    out: IO[str],
) -> None:
    """The --check report as text, section by section."""
    findings, notes, audits = found
    emit(out, "check of %s" % root)
    for section, title, healthy in CHECK_SECTIONS:
        if section == "permissions" and owner is None:
            continue
        mine = [finding for finding in findings if finding.section == section]
        if not mine:
            subject = len(steps) if section == "layout" else owner.spec if owner else ""
            emit(out, "%-15s ok: %s" % (title, healthy.format(subject)))
            continue
        emit(out, "%-15s %d problem(s)" % (title, len(mine)))
        last_fix = ""
        for finding in mine:
            emit(out, "  - %s: %s" % (finding.path, finding.detail))
            if finding.fix and finding.fix != last_fix:  # said once for a run of the same
                emit(out, "    fix: %s" % finding.fix)
            last_fix = finding.fix
    for note in notes:
        emit(out, "note: " + note)
    if audits:
        emit(out, "audit (information): files in complete/ that are hardlinked nowhere")
    for result in audits:
        meaning = " - " + LEFTOVERS.get(result.source, "") if result.files else ""
        emit(
            out,
            "  %-9s %d file(s), %s%s"
            % (result.source + ":", result.files, human_size(result.bytes), meaning),
        )
        for nbytes, files, folder in result.biggest:
            emit(
                out,
                "    %10s in %d file(s): %s"
                % (human_size(nbytes), files, os.path.relpath(folder, result.path)),
            )
        if result.unreadable:
            emit(out, "    %d folder(s) could not be read" % result.unreadable)
    emit(
        out,
        "result: healthy" if not findings else "result: %d problem(s), see above" % len(findings),
    )


def check_json(root: str, found: Tuple[List[Finding], List[str], List[Audit]]) -> str:
    """The --check findings as one JSON document, for cron jobs and monitoring."""
    import json

    findings, notes, audits = found
    document = {
        "data_root": root,
        "healthy": not findings,
        "findings": [dict(finding._asdict(), errno=finding.errno or None) for finding in findings],
        "notes": notes,
        "audit": [
            {
                "source": result.source,
                "path": result.path,
                "files": result.files,
                "bytes": result.bytes,
                "biggest": [
                    {"path": folder, "files": files, "bytes": nbytes}
                    for nbytes, files, folder in result.biggest
                ],
                "unreadable_folders": result.unreadable,
            }
            for result in audits
        ],
    }
    return json.dumps(document, indent=2)


def human_size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# -- the command line ----------------------------------------------------------

EPILOG = """\
examples:
  Unraid:                 python3 %(prog)s --path /mnt/user --owner nobody:users
  Synology (id docker):   python3 %(prog)s --path /volume1 --owner 1026:100
  look before you leap:   python3 %(prog)s --path /srv --owner 1000:1000 --dry-run
  a second Radarr:        python3 %(prog)s --path /srv --add-category movies-4k
  ready for hardlinks?    python3 %(prog)s --path /mnt/user --check
  docker-compose volumes: python3 %(prog)s --path /mnt/user --compose
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
    parser.add_argument(
        "--check",
        action="store_true",
        help="create nothing; check that the tree is ready for hardlinks and atomic moves, "
        "and count the files in complete/ that are hardlinked nowhere",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --check: print one JSON document instead"
    )
    parser.add_argument(
        "--compose",
        action="store_true",
        help="print docker-compose volumes for --path, one block per app; touches nothing",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def check(base: str, steps: Sequence[Step], args: argparse.Namespace) -> int:
    """--check: report, and exit 1 on any finding (the audit alone never fails)."""
    root = os.path.join(base, DATA)
    found = run_check(steps, args.owner, Progress(sys.stderr))
    if args.json:
        emit(sys.stdout, check_json(root, found))
    elif not args.quiet:
        report_check(root, steps, args.owner, found, sys.stdout)
    else:
        for finding in found[0]:
            emit(sys.stderr, "error: %s: %s" % (finding.path, finding.detail))
    return 1 if found[0] else 0


def count_created(done: Sequence[Step]) -> int:
    return sum(step.action == CREATE for step in done)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and not args.check:
        parser.error("--json goes with --check")
    out = sys.stdout
    done: List[Step] = []
    try:
        if args.compose:  # works before the path exists: it only prints
            emit(out, compose_snippet(os.path.abspath(os.path.expanduser(args.path))))
            return 0
        base = resolve_base(args.path)
        steps = plan(
            base, list_folders(with_categories(TREE, args.add_category)), args.owner, args.mode
        )
        if args.check:
            return check(base, steps, args)
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


if __name__ == "__main__":
    sys.exit(main())
