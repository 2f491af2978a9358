#!/usr/bin/env python3
"""Benchmark: the creator and --check against the shell tools they replace.

    python3 tests/benchmark.py [--files 100000] [--repeat 7]

Prints, from one run, medians over --repeat runs of:
  * a fresh run and a re-run of the script, against `mkdir -p` of the same 52
    folders and a bare `python3 -c pass`: wall time, and filesystem metadata
    calls (all of them, and those on the tree's own paths) counted with
    `strace -f` when it is installed;
  * --check over a tree with --files downloaded files (half of them hardlinked
    into media/), against `find <complete dirs> -type f -links 1`; and the peak
    memory of --check at a tenth of the files and at all of them, against a
    fresh run's.
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

METADATA_CALLS = (
    "stat,lstat,newfstatat,statx,fstatat64,mkdir,mkdirat,chmod,fchmodat,chown,lchown,"
    "fchownat,access,faccessat,faccessat2,readlink,readlinkat"
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
    """(all metadata calls, those on paths below tree) of one run, or None without strace."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r") as log:
        subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=" + METADATA_CALLS, "-o", log.name] + command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        lines = [line for line in log.read().splitlines() if "(" in line and "resumed>" not in line]
    return len(lines), sum(1 for line in lines if '"%s' % tree in line)


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
    print("  metadata: stat, lstat, newfstatat, statx, mkdir(at), chmod, chown, access, readlink")
    print("  on the tree: the script's calls on the tree's own paths; mkdir -p's beyond start-up")


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


def bench_check(files, repeat):
    python = [sys.executable]
    results = {}
    for count in (0, files // 10, files):  # 0: the fixed cost (start-up, probes)
        base = tempfile.mkdtemp(prefix="cms-bench-")
        try:
            make_downloads(base, count)
            check = python + [SCRIPT, "--path", base, "--check", "--json"]
            complete = [os.path.join(base, "data", s, "complete") for s in cms.SOURCES]
            find = ["find"] + complete + ["-type", "f", "-links", "1"]
            runs = {"check": [], "find": []}
            peak = 0
            for index in range(repeat + 1):
                for name, command in (("check", check), ("find", find)):
                    seconds, rss = wait(command)
                    if index:
                        runs[name].append(seconds)
                    if name == "check":
                        peak = max(peak, rss)
            results[count] = (
                statistics.median(runs["check"]),
                statistics.median(runs["find"]),
                peak,
            )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    fresh_base = tempfile.mkdtemp(prefix="cms-bench-")
    try:
        _, fresh_peak = wait(python + [SCRIPT, "--path", fresh_base, "-q"])
    finally:
        shutil.rmtree(fresh_base, ignore_errors=True)
    print()
    print("--check (audit + probes) against find -type f -links 1, median of %d runs" % repeat)
    print("  %-12s %14s %12s %12s %16s" % ("files", "--check", "find", "ratio", "--check peak RSS"))
    for count, (check_s, find_s, peak) in sorted(results.items()):
        print(
            "  %-12d %11.0f ms %9.0f ms %11.2fx %13d KiB"
            % (count, check_s * 1000, find_s * 1000, check_s / find_s, peak)
        )
    print("  fresh run peak RSS: %d KiB" % fresh_peak)
    fixed = results[0][0]
    walk, find_s = results[files][0] - fixed, results[files][1]
    print(
        "  the audit walk alone at %d files (--check minus its fixed cost at 0 files): "
        "%.0f ms, %.2fx find" % (files, walk * 1000, walk / find_s)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print("python %s, %s" % (sys.version.split()[0], sys.platform))
    bench_creation(args.repeat)
    bench_check(args.files, args.repeat)


if __name__ == "__main__":
    main()
