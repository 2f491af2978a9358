#!/usr/bin/env python3
"""Benchmark: the creator, --check and --relink against the shell tools they replace.

    python3 tests/benchmark.py [--files 100000] [--repeat 7] [--million]
                               [--relink-mib 3072] [--only create,check,relink,...]

Prints, from one run, medians over --repeat runs of:
  * a fresh run and a re-run of the script, against `mkdir -p` of the same 52
    folders and a bare `python3 -c pass`: wall time, and filesystem metadata
    calls (all of them, and those on the tree's own paths) counted with
    `strace -f` when it is installed;
  * --check over a tree with --files downloaded files (half of them hardlinked
    into media/), against `find <complete dirs> -type f -links 1` (and, with
    --million, at 1,000,000 files); and the peak memory of --check at a tenth of
    the files and at all of them, against a fresh run's; on the empty tree, how
    much of its start-up a python3 that only compiles the script takes;
  * --relink --dry-run over a generated tree of --relink-mib MiB (copies, near
    duplicates differing at the start, middle and end, pairs already linked)
    against `jdupes -r -m` of the same folders: wall time, warm and (where
    /proc/sys/vm/drop_caches is writable) cold, and the bytes the script read
    (its rchar) against the floor (both files of every true pair once, plus each
    same-size non-pair up to its first difference); peak memory at 10,000 and
    100,000 candidate files;
  * --check --docker on stacks of 300 and 3,000 services, and what reading the
    settings of a stack of 10 apps (a 50 MB Sonarr db) adds to it.
Not a test: nothing here asserts a time.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "create_media_structure.py")
sys.path.insert(0, ROOT)

import create_media_structure as cms  # noqa: E402

# Every call that looks at or changes a file's metadata or opens one; close and
# getdents64 are left out, as the budget says.
METADATA_CALLS = (
    "stat,lstat,fstat,newfstatat,statx,fstatat64,open,openat,mkdir,mkdirat,chmod,fchmod,"
    "fchmodat,chown,fchown,lchown,fchownat,access,faccessat,faccessat2,readlink,readlinkat,"
    "utimensat"
)
FOLDERS = len(cms.list_folders(cms.TREE))


def leaves(base):
    """The tree's leaf folders, for one `mkdir -p` that makes all of it."""
    folders = cms.list_folders(cms.TREE)
    parents = {f.parts[:-1] for f in folders}
    return [os.path.join(base, *f.parts) for f in folders if f.parts not in parents]


def wait(command, **kwargs):
    """Run command; return (seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = (
        os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    )
    if proc.returncode != 0:
        raise SystemExit("benchmark: %s exited %d" % (command, proc.returncode))
    return seconds, usage.ru_maxrss


def count_calls(command, tree):
    """(all metadata calls, those on the tree) of one run, or None without strace.

    On the tree: a path below tree, or a descriptor opened on it (strace -y names
    the folder behind each descriptor).
    """
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r") as log:
        subprocess.run(
            ["strace", "-f", "-y", "-qq", "-e", "trace=" + METADATA_CALLS, "-o", log.name]
            + command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        lines = [line for line in log.read().splitlines() if "(" in line and "resumed>" not in line]
    return len(lines), sum(1 for line in lines if tree in line)


def bench_creation(repeat):
    python = [sys.executable]
    script = python + [SCRIPT, "--path"]
    # name, command for a base folder, whether the tree is there already, the command's
    # own start-up (what it costs with nothing to do), for "beyond start-up"
    cases = [
        ("python3 -c pass", lambda base: python + ["-c", "pass"], False, None),
        (
            "mkdir -p, the same 52 folders",
            lambda base: ["mkdir", "-p", *leaves(base)],
            False,
            ["mkdir", "--version"],
        ),
        ("script, fresh run", lambda base: [*script, base, "-q"], False, python + ["-c", "pass"]),
        ("script, re-run", lambda base: [*script, base, "-q"], True, python + ["-c", "pass"]),
    ]
    print("Creating the tree (%d folders), median of %d runs" % (FOLDERS, repeat))
    print(
        "  %-30s %9s %10s %18s %13s %11s"
        % ("", "wall", "metadata", "beyond start-up", "on the tree", "per folder")
    )
    for name, command, again, startup in cases:
        times, calls = [], None
        for index in range(repeat + 1):
            base = tempfile.mkdtemp(prefix="cms-bench-")
            try:
                if again:
                    wait([*script, base, "-q"])
                seconds, _ = wait(command(base))
                if index:  # the first run warms the caches
                    times.append(seconds)
                if calls is None:  # once more, under strace, on a base in the same state
                    shutil.rmtree(base)
                    os.mkdir(base)
                    if again:
                        wait([*script, base, "-q"])
                    calls = count_calls(command(base), base)
                    own = count_calls(startup, base) if startup and calls else None
            finally:
                shutil.rmtree(base, ignore_errors=True)
        if calls:
            beyond = calls[0] - own[0] if own else 0
            tree = calls[1] if "script" in name else beyond
            counts = (calls[0], beyond, tree, "%.2f" % (tree / FOLDERS))
        else:
            counts = ("-", "-", "-", "-")
        print(
            "  %-30s %6.1f ms %10s %18s %13s %11s"
            % ((name, statistics.median(times) * 1000) + counts)
        )
    if shutil.which("strace") is None:
        print("  (strace not installed: no call counts)")
    print("  metadata: (f)stat(at), statx, open(at), mkdir(at), (f)chmod(at), (f/l)chown(at),")
    print("            access, readlink(at), utimensat; close and getdents64 left out")
    print("  on the tree: the script's calls on a path below --path or on a descriptor of it;")
    print("               mkdir -p's: its calls beyond start-up")


def make_downloads(base, files, per_folder=20):
    """files downloaded files spread over every source's complete/, half hardlinked."""
    wait([sys.executable, SCRIPT, "--path", base, "-q"])
    categories = ["movies", "tv", "music", "books", os.path.join("anime", "tv")]
    made = 0
    item = 0
    while made < files:
        source = cms.SOURCES[item % len(cms.SOURCES)]
        category = categories[item % len(categories)]
        folder = os.path.join(base, "data", source, "complete", category, "Item.%06d" % item)
        os.mkdir(folder)
        for number in range(min(per_folder, files - made)):
            path = os.path.join(folder, "file%02d.mkv" % number)
            with open(path, "wb") as handle:
                handle.write(b"x" * (number + 1))
            if made % 2 == 0:
                os.link(
                    path,
                    os.path.join(
                        base, "data", "media", category, "i%06d-%02d.mkv" % (item, number)
                    ),
                )
            made += 1
        item += 1


def bench_check(files, repeat, million=False):
    python = [sys.executable]
    results = {}
    counts = [0, files // 10, files] + ([1000000] if million else [])
    for count in counts:  # 0: the fixed cost (start-up, probes)
        base = tempfile.mkdtemp(prefix="cms-bench-")
        try:
            make_downloads(base, count)
            # Let writeback of the new tree finish first: a kernel flusher busy on one
            # core would slow whichever command uses both, not the tree users check.
            os.sync()
            check = python + [SCRIPT, "--path", base, "--check", "--json"]
            complete = [os.path.join(base, "data", s, "complete") for s in cms.SOURCES]
            find = ["find"] + complete + ["-type", "f", "-links", "1"]
            runs = {"check": [], "find": [], "pass": [], "compile": []}
            # A python3 that only compiles the script: what every run of it pays first
            # (a script run from a file or a pipe is compiled each time; no .pyc).
            compile_only = python + [
                "-c",
                "compile(open(%r).read(), %r, 'exec')" % (SCRIPT, SCRIPT),
            ]
            peak = 0
            for index in range(repeat + 1):
                for name, command in (
                    ("check", check),
                    ("find", find),
                    ("pass", python + ["-c", "pass"]),
                    ("compile", compile_only),
                ):
                    seconds, _ = wait(command)
                    if index:
                        runs[name].append(seconds)
            peak = measured(check[1:])[2]
            results[count] = (
                statistics.median(runs["check"]),
                statistics.median(runs["find"]),
                peak,
                statistics.median(runs["pass"]),
                statistics.median(runs["compile"]),
            )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    fresh_base = tempfile.mkdtemp(prefix="cms-bench-")
    try:
        fresh_peak = measured([SCRIPT, "--path", fresh_base, "-q"])[2]
    finally:
        shutil.rmtree(fresh_base, ignore_errors=True)
    print()
    print("--check (audit + probes) against find -type f -links 1, median of %d runs" % repeat)
    print("  %-12s %14s %12s %12s %16s" % ("files", "--check", "find", "ratio", "--check peak RSS"))
    for count, (check_s, find_s, peak, _, _) in sorted(results.items()):
        print(
            "  %-12d %11.0f ms %9.0f ms %11.2fx %13d KiB"
            % (count, check_s * 1000, find_s * 1000, check_s / find_s, peak)
        )
    print("  fresh run peak RSS: %d KiB" % fresh_peak)
    empty, bare, compiled = results[0][0], results[0][3], results[0][4]
    print(
        "  empty tree: --check %.0f ms, python3 -c pass %.0f ms: +%.0f ms, of which +%.0f ms "
        "is compiling the script (a python3 that only compiles it: %.0f ms)"
        % (
            empty * 1000,
            bare * 1000,
            (empty - bare) * 1000,
            (compiled - bare) * 1000,
            compiled * 1000,
        )
    )


# -- --relink against jdupes -----------------------------------------------------------------

CHUNK = 16 * 1024 * 1024


def write_file(path, seed, size, flip=None):
    """size bytes from seed (the same seed, the same bytes); flip: an offset to change."""
    import random

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            block = bytearray(rng.getrandbits(8 * min(CHUNK, size - written)).to_bytes(
                min(CHUNK, size - written), "little"))  # fmt: skip
            if flip is not None and written <= flip < written + len(block):
                block[flip - written] ^= 1
            handle.write(block)
            written += len(block)
    old = time.time() - 7200
    os.utime(path, (old, old))


def make_relink_tree(base, mib):
    """Pairs, near-duplicates and linked pairs over about mib MiB; returns the floor in bytes."""
    wait([sys.executable, SCRIPT, "--path", base, "-q"])
    data = os.path.join(base, "data")
    size = 64 * 1024 * 1024
    floor = 0
    files = max(8, mib // 64)
    pairs = files * 5 // 16  # a download and its copy: 2 files each
    near = 3  # differing at the start, the middle, the end
    linked = max(1, files // 16)
    for index in range(pairs):
        source = cms.SOURCES[index % 3]
        write_file(
            os.path.join(data, source, "complete", "movies", "P%d" % index, "f.mkv"), index, size
        )
        write_file(os.path.join(data, "media", "movies", "P%d" % index, "f.mkv"), index, size)
        floor += 2 * size
    for index, where in enumerate(("start", "middle", "end")):
        seed = 1000 + index
        offset = {"start": 10, "middle": size // 2, "end": size - 10}[where]
        write_file(os.path.join(data, "torrents", "complete", "tv", "N%d" % index, "e.mkv"),
                   seed, size + index + 1)  # fmt: skip
        write_file(os.path.join(data, "media", "tv", "N%d" % index, "e.mkv"), seed,
                   size + index + 1, flip=offset)  # fmt: skip
        floor += 2 * (offset + 1)
    for index in range(linked):
        path = os.path.join(data, "torrents", "complete", "music", "L%d" % index, "a.flac")
        write_file(path, 2000 + index, size + 100 + index)
        target = os.path.join(data, "media", "music", "L%d.flac" % index)
        os.link(path, target)
    return floor, pairs, near, linked, size


def measured(command):
    """Run the script in-process under a fresh interpreter: (seconds, rchar, peak RSS KiB).

    Measured from inside, as VmHWM of /proc/self/status: ru_maxrss would carry the
    peak of the process that forked it over the exec.
    """
    wrapper = (
        "import runpy, sys, time; sys.argv = %r; start = time.perf_counter()\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "seconds = time.perf_counter() - start\n"
        "io = dict(line.split(': ') for line in open('/proc/self/io').read().splitlines())\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "peak = int(status.split()[0])\n"
        "sys.stderr.write('%%f %%s %%d\\n' %% (seconds, io['rchar'], peak))\n" % (command,)
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=True)  # fmt: skip
    seconds, rchar, peak = proc.stderr.decode().split()[-3:]
    return float(seconds), int(rchar), int(peak)


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def print_relink(cold, mine, theirs, reads, floor):
    """One --relink line against jdupes (where it ran), and the bytes read against the floor."""
    line = "  %s: --relink --dry-run %.2f s" % ("cold" if cold else "warm", statistics.median(mine))
    if theirs:
        line += ", jdupes %.2f s: %.2fx" % (
            statistics.median(theirs),
            statistics.median(mine) / statistics.median(theirs),
        )
    print(line)
    read = statistics.median(reads)
    print("        bytes read %.0f MiB, floor %.0f MiB: %.3fx" % (read / 2**20, floor / 2**20,
                                                                read / floor))  # fmt: skip


def make_mixed_tree(base, pairs, near, seed=7):
    """The relink issue's tree: pairs of 1-12 MiB files (a download and its copy) and
    same-size near-duplicates (a download and a library file of its size that differs
    at one random byte).  Returns the floor: both files of each pair once, and each
    near-duplicate up to its first difference."""
    import random

    rng = random.Random(seed)
    wait([sys.executable, SCRIPT, "--path", base, "-q"])
    data = os.path.join(base, "data")
    old = time.time() - 7200
    floor = 0
    for index in range(pairs + near):
        size = rng.randint(1, 12) * 1024 * 1024 + rng.randint(0, 1023)
        body = bytearray(os.urandom(size))
        source = cms.SOURCES[index % 3]
        kind = "P" if index < pairs else "N"
        download = os.path.join(data, source, "complete", "movies", "%s%d" % (kind, index), "f")
        copy = os.path.join(data, "media", "movies", "%s%d" % (kind, index), "f.mkv")
        for path in (download, copy):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(body)
            os.utime(path, (old, old))
            if kind == "N" and path == download:
                flip = rng.randrange(size)
                body[flip] ^= 1
                floor += 2 * (flip + 1)
        if kind == "P":
            floor += 2 * size
    return floor


def bench_relink_mixed(pairs, near, rounds=3):
    """--relink --dry-run against jdupes on the mixed tree, warm and cold: the median of
    rounds that alternate the two, each cold run after the page cache is dropped."""
    jdupes = shutil.which("jdupes")
    base = tempfile.mkdtemp(prefix="cms-bench-mixed-")
    try:
        floor = make_mixed_tree(base, pairs, near)
        data = os.path.join(base, "data")
        folders = [os.path.join(data, s, "complete") for s in cms.SOURCES]
        folders.append(os.path.join(data, "media"))
        script = [SCRIPT, "--path", base, "--relink", "--dry-run", "--json"]
        print()
        print(
            "--relink --dry-run against jdupes -r -m: %d pairs of 1-12 MiB, %d same-size "
            "near-duplicates; median of %d alternating rounds" % (pairs, near, rounds)
        )
        for cold in (False, True):
            if cold and not drop_caches():
                print("  cold cache: /proc/sys/vm/drop_caches is not writable here")
                continue
            if not cold:  # warm both up first
                measured(script)
                if jdupes:
                    wait([jdupes, "-r", "-m", "-q"] + folders)
            mine, theirs, reads = [], [], []
            for _ in range(rounds):
                if cold:
                    drop_caches()
                seconds, rchar, _ = measured(script)
                mine.append(seconds)
                reads.append(rchar)
                if jdupes:
                    if cold:
                        drop_caches()
                    theirs.append(wait([jdupes, "-r", "-m", "-q"] + folders)[0])
            print_relink(cold, mine, theirs, reads, floor)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def compose_stack(data, services):
    """A compose config (JSON) of that many services, the guides' apps in turn, each with
    its /config and its binds of the tree (every fifth a client with a folder of its own
    outside it, as real stacks have)."""
    apps = [("qbittorrent", "lscr.io/linuxserver/qbittorrent", ["torrents"]),
            ("sabnzbd", "lscr.io/linuxserver/sabnzbd", ["usenet"]),
            ("sonarr", "lscr.io/linuxserver/sonarr", [""]),
            ("radarr", "lscr.io/linuxserver/radarr", [""]),
            ("plex", "lscr.io/linuxserver/plex", ["media"]),
            ("prowlarr", "lscr.io/linuxserver/prowlarr", [])]  # fmt: skip
    document = {"services": {}}
    for index in range(services):
        name, image, folders = apps[index % len(apps)]
        volumes = [{"type": "bind", "source": "/srv/appdata/%s%d" % (name, index),
                    "target": "/config"}]  # fmt: skip
        for folder in folders:
            source = os.path.join(data, folder) if folder else data
            if index % 5 == 0 and folder == "torrents":
                source = "/mnt/downloads/%d" % index
            volumes.append({"type": "bind", "source": source.rstrip("/"),
                            "target": "/data/" + folder if folder else "/data"})  # fmt: skip
        document["services"]["%s%d" % (name, index)] = {
            "image": image, "volumes": volumes,
            "environment": {"PUID": "1000", "PGID": "1000", "UMASK": "002"},
        }  # fmt: skip
    return document


def bench_docker(counts=(300, 3000), repeat=3):
    """--check --docker on compose stacks of 300 and 3,000 services: ten times the
    services should cost about ten times the time, not a hundred."""
    import json

    base = tempfile.mkdtemp(prefix="cms-bench-docker-")
    try:
        wait([sys.executable, SCRIPT, "--path", base, "-q"])
        print()
        print("--check --docker FILE on a compose stack, median of %d runs" % repeat)
        times = {}
        for count in counts:
            path = os.path.join(base, "stack%d.json" % count)
            with open(path, "w") as handle:
                json.dump(compose_stack(os.path.join(base, "data"), count), handle)
            command = [sys.executable, SCRIPT, "--path", base, "--check", "--docker", path,
                       "--json"]  # fmt: skip
            runs = []
            for _ in range(repeat):  # exit 1: the stack has problems, as real ones do
                start = time.perf_counter()
                subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
                runs.append(time.perf_counter() - start)
            times[count] = statistics.median(runs)
            print("  %5d services: %.2f s" % (count, times[count]))
        first, last = counts[0], counts[-1]
        print("  %dx the services: %.1fx the time" % (last // first, times[last] / times[first]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def routes_stack(base, data):
    """Ten apps' config folders under base/appdata, the guides' settings in them (a
    Sonarr db of 50 MB, its history filled), and docker inspect JSON of them."""
    import json
    import sqlite3

    def container(name, image, binds):
        config = os.path.join(base, "appdata", name)
        os.makedirs(config)
        mounts = [{"Type": "bind", "Source": s, "Destination": t, "RW": True}
                  for s, t in binds + [(config, "/config")]]  # fmt: skip
        stack.append({"Id": name, "Name": "/" + name, "Mounts": mounts,
                      "Config": {"Image": image, "Env": ["PUID=1000", "PGID=1000"]}})  # fmt: skip
        return config

    def arr(name, size_mib=0):
        config = container(name, "lscr.io/linuxserver/" + name, [(data, "/data")])
        db = sqlite3.connect(os.path.join(config, name + ".db"))
        db.executescript(
            "CREATE TABLE RootFolders (Id INTEGER PRIMARY KEY, Path TEXT);"
            "CREATE TABLE RemotePathMappings (Id INTEGER PRIMARY KEY, Host TEXT, RemotePath TEXT,"
            " LocalPath TEXT);"
            "CREATE TABLE DownloadClients (Id INTEGER PRIMARY KEY, Enable INTEGER, Name TEXT,"
            " Implementation TEXT, Settings TEXT);"
            "CREATE TABLE Config (Id INTEGER PRIMARY KEY, Key TEXT, Value TEXT);"
            "CREATE TABLE History (Id INTEGER PRIMARY KEY, Data BLOB);"
        )
        db.execute("INSERT INTO RootFolders (Path) VALUES ('/data/media/tv')")
        for impl, host in (("QBittorrent", "qbittorrent"), ("Sabnzbd", "sabnzbd")):
            settings = json.dumps({"host": host, "port": 8080, "tvCategory": "tv"})
            db.execute("INSERT INTO DownloadClients (Enable, Name, Implementation, Settings) "
                       "VALUES (1, ?, ?, ?)", (impl, impl, settings))  # fmt: skip
        db.executemany("INSERT INTO History (Data) VALUES (?)",
                       ((os.urandom(4096),) for _ in range(size_mib * 256)))  # fmt: skip
        db.commit()
        db.close()

    stack = []
    qb = container("qbittorrent", "lscr.io/linuxserver/qbittorrent",
                   [(data + "/torrents", "/data/torrents")])  # fmt: skip
    os.makedirs(os.path.join(qb, "qBittorrent"))
    with open(os.path.join(qb, "qBittorrent", "qBittorrent.conf"), "w") as handle:
        handle.write("[BitTorrent]\nSession\\DefaultSavePath=/data/torrents/complete\n"
                     "Session\\DisableAutoTMMByDefault=false\n")  # fmt: skip
    for name, image, folder, text in (
        ("transmission", "lscr.io/linuxserver/transmission", "torrents",
         '{"download-dir": "/data/torrents/complete"}'),
        ("sabnzbd", "lscr.io/linuxserver/sabnzbd", "usenet",
         "[misc]\ncomplete_dir = /data/usenet/complete\n"),
        ("nzbget", "lscr.io/linuxserver/nzbget", "usenet", "MainDir=/data/usenet\n"),
    ):  # fmt: skip
        config = container(name, image, [(data + "/" + folder, "/data/" + folder)])
        settings = {"transmission": "settings.json", "sabnzbd": "sabnzbd.ini"}.get(
            name, "nzbget.conf"
        )
        with open(os.path.join(config, settings), "w") as handle:
            handle.write(text)
    arr("sonarr", 50)
    for name in ("radarr", "lidarr", "readarr"):
        arr(name)
    plex = container("plex", "plexinc/pms-docker", [(data + "/media", "/data/media")])
    folder = os.path.join(plex, "Library/Application Support/Plex Media Server/Plug-in Support/"
                          "Databases")  # fmt: skip
    os.makedirs(folder)
    db = sqlite3.connect(os.path.join(folder, "com.plexapp.plugins.library.db"))
    db.execute("CREATE TABLE section_locations (id INTEGER PRIMARY KEY, root_path TEXT)")
    db.execute("INSERT INTO section_locations (root_path) VALUES ('/data/media/tv')")
    db.commit()
    db.close()
    jellyfin = container("jellyfin", "jellyfin/jellyfin", [(data + "/media", "/data/media")])
    os.makedirs(os.path.join(jellyfin, "root/default/Shows"))
    with open(os.path.join(jellyfin, "root/default/Shows/tv.mblink"), "w") as handle:
        handle.write("/data/media/tv")
    return stack


def bench_routes(repeat=9):
    """What reading the apps' settings adds to --check --docker: a stack of 10 apps with
    a 50 MB Sonarr db read in place, against the same stack whose config folders aren't
    on this machine (nothing read); runs alternate, medians compared."""
    import json

    base = tempfile.mkdtemp(prefix="cms-bench-routes-")
    try:
        wait([sys.executable, SCRIPT, "--path", base, "-q"])
        stack = routes_stack(base, os.path.join(base, "data"))
        away = json.loads(json.dumps(stack).replace(base + "/appdata", "/nonexistent"))
        runs = {"read": [], "not read": []}
        for _ in range(repeat):
            for label, document in (("read", stack), ("not read", away)):
                path = os.path.join(base, "stack.json")
                with open(path, "w") as handle:
                    json.dump(document, handle)
                command = [sys.executable, SCRIPT, "--path", base, "--check", "--docker", path,
                           "--json"]  # fmt: skip
                start = time.perf_counter()
                done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
                runs[label].append(time.perf_counter() - start)
                routes = json.loads(done.stdout).get("routes", [])
                assert label == "not read" or len(routes) == 8, routes
        read, skipped = (statistics.median(runs[k]) for k in ("read", "not read"))
        size = os.path.getsize(os.path.join(base, "appdata", "sonarr", "sonarr.db")) >> 20
        print()
        print("--check --docker on 10 apps (a %d MiB Sonarr db), median of %d runs" % (
            size, repeat))  # fmt: skip
        print("  settings read: %.0f ms, not read: %.0f ms, reading adds %.0f ms"
              % (read * 1000, skipped * 1000, (read - skipped) * 1000))  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def imports_stack(base, data, imports):
    """Ten importers (Sonarr, Radarr, Lidarr, Readarr, Whisparr, two of each), each with
    a History of `imports` imports of real files (hardlinks, and every tenth a copy)
    among as many grabs, and docker inspect JSON of them."""
    import json
    import sqlite3

    stack = []
    for number in range(10):
        kind = ("sonarr", "radarr", "lidarr", "readarr", "whisparr")[number % 5]
        name = "%s-%d" % (kind, number)
        config = os.path.join(base, "appdata", name)
        os.makedirs(config)
        stack.append({"Id": name, "Name": "/" + name, "Config": {
            "Image": "lscr.io/linuxserver/" + kind, "Env": ["PUID=1000", "PGID=1000"]},
            "Mounts": [{"Type": "bind", "Source": s, "Destination": t, "RW": True}
                       for s, t in ((data, "/data"), (config, "/config"))]})  # fmt: skip
        db = sqlite3.connect(os.path.join(config, kind + ".db"))
        db.executescript(
            "CREATE TABLE RootFolders (Id INTEGER PRIMARY KEY, Path TEXT);"
            "CREATE TABLE History (Id INTEGER PRIMARY KEY, EpisodeId INTEGER, SeriesId INTEGER,"
            " SourceTitle TEXT, Date DATETIME, Quality TEXT, Data TEXT, EventType INTEGER,"
            " DownloadId TEXT, Languages TEXT);"
        )
        db.execute("INSERT INTO RootFolders (Path) VALUES ('/data/media/tv')")
        rows = []
        for item in range(imports):
            download = "torrents/complete/tv/%s-%d.mkv" % (name, item)
            library = "media/tv/%s-%d.mkv" % (name, item)
            with open(os.path.join(data, download), "wb") as handle:
                handle.write(b"x" * 4096)
            if item % 10:
                os.link(os.path.join(data, download), os.path.join(data, library))
            else:
                shutil.copyfile(os.path.join(data, download), os.path.join(data, library))
            text = json.dumps({"droppedPath": "/data/" + download, "importedPath": "/data/"
                               + library, "downloadClient": "QBittorrent"})  # fmt: skip
            rows += [(1, "{}"), (3, text)]
        db.executemany("INSERT INTO History (EpisodeId, SeriesId, SourceTitle, Date, Quality, "
                       "Data, EventType, DownloadId, Languages) VALUES (1, 1, 'x', "
                       "'2026-11-30 10:00:00Z', '{}', ?, ?, 'A', '[]')",
                       [(text, event) for event, text in rows])  # fmt: skip
        db.commit()
        db.close()
    return stack


def bench_imports(repeat=9):
    """What the imports section adds to --check --docker: 10 importers x 100 imports (a
    History of 200 rows each, real files), against the same stack with empty histories;
    runs alternate, medians compared."""
    import json
    import sqlite3

    base = tempfile.mkdtemp(prefix="cms-bench-imports-")
    try:
        wait([sys.executable, SCRIPT, "--path", base, "-q"])
        stack = imports_stack(base, os.path.join(base, "data"), 100)
        full = os.path.join(base, "full")
        shutil.copytree(os.path.join(base, "appdata"), full)
        runs = {"history": [], "empty": []}
        path = os.path.join(base, "stack.json")
        with open(path, "w") as handle:
            json.dump(stack, handle)
        command = [sys.executable, SCRIPT, "--path", base, "--check", "--docker", path]
        done = subprocess.run(command + ["--json"], stdout=subprocess.PIPE, check=False)
        assert len(json.loads(done.stdout)["imports"]) == 1000
        for _ in range(repeat):
            for label in ("history", "empty"):
                shutil.rmtree(os.path.join(base, "appdata"))
                shutil.copytree(full, os.path.join(base, "appdata"))
                if label == "empty":
                    for top, _, names in os.walk(os.path.join(base, "appdata")):
                        for db_name in (n for n in names if n.endswith(".db")):
                            db = sqlite3.connect(os.path.join(top, db_name))
                            db.execute("DELETE FROM History")
                            db.commit()
                            db.close()
                start = time.perf_counter()
                subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
                runs[label].append(time.perf_counter() - start)
        full_ms, empty_ms = (statistics.median(runs[k]) * 1000 for k in ("history", "empty"))
        print()
        print("--check --docker (text) on 10 importers x 100 imports, median of %d runs" % repeat)
        print("  with their history: %.0f ms, empty: %.0f ms, the imports add %.0f ms"
              % (full_ms, empty_ms, full_ms - empty_ms))  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_relink(mib, repeat=5):  # noqa: PLR0912 - one benchmark, step by step
    jdupes = shutil.which("jdupes")
    base = tempfile.mkdtemp(prefix="cms-bench-relink-")
    try:
        floor, pairs, near, linked, size = make_relink_tree(base, mib)
        data = os.path.join(base, "data")
        folders = [os.path.join(data, s, "complete") for s in cms.SOURCES] + [
            os.path.join(data, "media")
        ]
        script = [SCRIPT, "--path", base, "--relink", "--dry-run", "--json"]
        total = sum(
            os.path.getsize(os.path.join(top, name))
            for folder in folders
            for top, _, names in os.walk(folder)
            for name in names
        )
        print()
        print(
            "--relink --dry-run against jdupes -r -m, %.1f GiB in %d pairs, %d near-duplicates, "
            "%d linked pairs; median of %d runs" % (total / 1024**3, pairs, near, linked, repeat)
        )
        for cold in (False, True):
            if cold and not drop_caches():
                print("  cold cache: /proc/sys/vm/drop_caches is not writable here")
                continue
            mine, theirs, reads = [], [], []
            for index in range(repeat + (0 if cold else 1)):
                if cold:
                    drop_caches()
                seconds, rchar, _ = measured(script)
                if cold or index:
                    mine.append(seconds)
                    reads.append(rchar)
                if jdupes:
                    if cold:
                        drop_caches()
                    seconds, _ = wait([jdupes, "-r", "-m", "-q"] + folders)
                    if cold or index:
                        theirs.append(seconds)
            print_relink(cold, mine, theirs, reads, floor)
        if not jdupes:
            print("  (jdupes not installed: apt-get install jdupes)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for count in (10000, 100000):
        base = tempfile.mkdtemp(prefix="cms-bench-relink-")
        try:
            wait([sys.executable, SCRIPT, "--path", base, "-q"])
            for index in range(count):  # distinct sizes: each one an index entry, none compared
                folder = os.path.join(
                    base, "data", "torrents", "complete", "tv", "S%d" % (index // 100)
                )
                if index % 100 == 0:
                    os.makedirs(folder)
                with open(os.path.join(folder, "f%d" % index), "wb") as handle:
                    handle.write(b"x" * (index + 1))
            _, _, peak = measured([SCRIPT, "--path", base, "--relink", "--dry-run",
                                   "--min-size", "1", "-q"])  # fmt: skip
            print("  peak RSS with %d candidate files: %d KiB" % (count, peak))
        finally:
            shutil.rmtree(base, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--million", action="store_true", help="--check at 1,000,000 files too")
    parser.add_argument("--relink-mib", type=int, default=3072)
    parser.add_argument("--only", default="create,check,relink,mixed,docker,routes,imports")
    parser.add_argument(
        "--mixed-pairs",
        type=int,
        default=300,
        help="pairs (and as many near-duplicates) of the mixed --relink tree",
    )
    args = parser.parse_args()
    print("python %s, %s" % (sys.version.split()[0], sys.platform))
    if "create" in args.only:
        bench_creation(args.repeat)
    if "check" in args.only:
        bench_check(args.files, args.repeat, args.million)
    if "relink" in args.only.split(","):
        bench_relink(args.relink_mib)
    if "mixed" in args.only:
        bench_relink_mixed(args.mixed_pairs, args.mixed_pairs)
    if "docker" in args.only:
        bench_docker()
    if "routes" in args.only:
        bench_routes()
    if "imports" in args.only:
        bench_imports()


if __name__ == "__main__":
    main()
