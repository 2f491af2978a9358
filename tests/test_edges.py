"""Edges: the branches a normal run doesn't take (bad streams, odd input, late signals)."""

import errno
import io
import json
import os
import signal
import stat
import sys
import time

from conftest import cms, dirs_on_disk, expected_dirs


def test_bad_min_age(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--relink", "--min-age", "soon")
    assert code == 2 and "is not a whole number of minutes" in err


def test_describe():
    assert cms.describe(stat.S_IFLNK) == "a symlink"
    assert cms.describe(stat.S_IFDIR) == "not a folder"


def test_no_mount_table_off_linux(tree, run, monkeypatch):
    monkeypatch.setattr(cms, "MOUNTINFO", str(tree / "none"))
    monkeypatch.setattr(sys, "platform", "darwin")
    code, out, _ = run("--path", str(tree), "--check", "--json")
    assert json.loads(out)["notes"][0].startswith("no mount table here (not Linux)")


def test_output_to_a_closed_or_missing_stream():
    missing = cms.Output(None)
    missing.line("x")
    assert missing.failed

    class Broken(io.StringIO):
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

        def fileno(self):
            raise io.UnsupportedOperation("no fileno")

    broken = cms.Output(Broken())
    broken.line("x")
    broken.line("y")  # no second try
    assert broken.failed

    class NoFlush(io.StringIO):
        def flush(self):
            raise ValueError("I/O operation on closed file")

    late = cms.Output(NoFlush())
    late.line("x")
    late.flush()
    assert late.failed


def test_stdout_closed_at_start_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    assert cms.main(["--path", str(tmp_path)]) == 1  # only the output failed
    assert dirs_on_disk(tmp_path) == expected_dirs()


def test_progress_on_a_closed_or_failing_terminal():
    class Closed:
        def isatty(self):
            raise ValueError("closed")

    assert cms.Progress(Closed()).stream is None

    class Failing(io.StringIO):
        def isatty(self):
            return True

        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

    progress = cms.Progress(Failing())
    progress.next = 0
    progress.tick(1)
    assert progress.stream is None  # gave up drawing, no crash


def test_progress_of_bytes(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = cms.Progress(terminal, "comparing")
    progress.total = 2048
    progress.next = 0
    progress.tick_bytes(1024)
    assert terminal.getvalue() == "\rcomparing: 1.0 KiB of 2.0 KiB"


def test_name_limit_unknown(tmp_path, run, monkeypatch):
    def refuse(fd, name):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fpathconf", refuse)
    assert run("--path", str(tmp_path), "--add-category", "z" * 255, "-q")[0] == 0
    assert run("--path", str(tmp_path), "--add-category", "z" * 256, "-q")[0] == 2


def test_a_signal_after_the_work(tmp_path, run, monkeypatch):
    real = cms.summary

    def summary(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the report is printed
        return real(*args)

    monkeypatch.setattr(cms, "summary", summary)
    code, out, _ = run("--path", str(tmp_path))
    assert code == 143 and "done: 52 created" in out


def test_check_interrupted_in_process(tree, run, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cms, "audit", stop)
    code, out, err = run("--path", str(tree), "--check")
    assert code == 130
    assert err == "interrupted: the check was stopped; the probe files it made were removed\n"


def test_a_move_that_arrives_as_a_copy(tree, run, monkeypatch):
    real_rename = os.rename

    def copying_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if not str(dst).endswith(".m"):
            return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        data = os.open(src, os.O_RDONLY, dir_fd=src_dir_fd)
        copy = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dst_dir_fd)
        os.write(copy, os.read(data, 1000))
        os.close(data)
        os.close(copy)
        os.unlink(src, dir_fd=src_dir_fd)

    monkeypatch.setattr(os, "rename", copying_rename)
    code, out, _ = run("--path", str(tree), "--check", "--json")
    details = {f["detail"] for f in json.loads(out)["findings"]}
    assert (
        "move from torrents/complete/tv to media/tv failed: the move arrived as a copy" in details
    )


def test_owner_without_a_passwd_entry_probes_with_the_callers_group(tree, run):
    code, out, _ = run("--path", str(tree), "--check", "--owner", "4243", "--json")
    assert json.loads(out)["probed_as"] == "%d:%d" % (os.getuid(), os.getgid())


def old_file(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - 3600
    os.utime(str(path), (when, when))


def test_relink_text_with_skips_quiet_and_interrupted(tree, run, monkeypatch):
    data = tree / "data"
    old_file(data / "torrents/complete/tv/A/a.mkv", b"a" * (2 << 20))
    copy = data / "media/tv/A/a.mkv"
    old_file(copy, b"a" * (2 << 20))
    os.utime(str(copy), None)  # young
    old_file(data / "torrents/complete/tv/B/b.mkv", b"b" * (3 << 20))
    young_other = data / "media/tv/B/b.mkv"
    old_file(young_other, b"c" * (3 << 20))  # same size, other bytes, young: not a copy
    os.utime(str(young_other), None)
    code, out, _ = run("--path", str(tree), "--relink")
    assert code == 0
    assert "  skipped: media/tv/A/a.mkv" in out
    assert "media/tv/B" not in out
    assert out.splitlines()[-1].endswith("; 1 skipped")
    code, out, err = run("--path", str(tree), "--relink", "-q")
    assert (code, out) == (0, "")
    assert err.startswith("skipped: %s: changed too recently" % copy)

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cms.Comparer, "same", stop)
    code, _, err = run("--path", str(tree), "--relink")
    assert code == 130
    assert err.startswith("interrupted: nothing is half done")


def test_a_signal_stops_a_long_compare_within_a_chunk(tree, run, monkeypatch):
    """SIGTERM while a big pair is compared: the compare stops at the next chunk (not
    minutes later, after the link), nothing is linked and the exit says so."""
    data = tree / "data"
    keep, copy = data / "torrents/complete/movies/F/f.mkv", data / "media/movies/F/f.mkv"
    for path in (keep, copy):
        old_file(path, b"f" * (4 << 20))
    ino = os.stat(str(copy)).st_ino
    real_read = cms.Comparer._read
    reads = []

    def read_then_signal(fd, buffer, want, offset):
        if not reads:
            os.kill(os.getpid(), signal.SIGTERM)
        reads.append(want)
        return real_read(fd, buffer, want, offset)

    monkeypatch.setattr(cms.Comparer, "_read", staticmethod(read_then_signal))
    code, _, err = run("--path", str(tree), "--relink")
    assert code == 143
    assert err.startswith("interrupted: nothing is half done")
    assert len(reads) == 2  # the chunk under way, of each file
    assert os.stat(str(copy)).st_ino == ino and os.stat(str(keep)).st_nlink == 1


def test_a_signal_stops_the_index_walk(tree, run, monkeypatch):
    """SIGTERM while a big library is walked: it stops at the next folder (it used to be
    lost where no copy was found, the run ending 0)."""
    old_file(tree / "data/torrents/complete/movies/F/f.mkv", b"f" * (2 << 20))
    real_entries = cms.folder_entries
    listed = []

    def entries_then_signal(fd, lone_only=True):
        if not listed:
            os.kill(os.getpid(), signal.SIGTERM)
        listed.append(fd)
        return real_entries(fd, lone_only)

    monkeypatch.setattr(cms, "folder_entries", entries_then_signal)
    code, out, err = run("--path", str(tree), "--relink")
    assert (code, out) == (143, "")
    assert err.startswith("interrupted: nothing is half done")
    assert len(listed) == 1


def test_relink_without_a_tree(tmp_path, run):
    code, _, err = run("--path", str(tmp_path), "--relink")
    assert code == 1
    assert err == (
        "error: %s: no data/media here, so nothing to relink: is --path the folder that holds "
        "data/? (--check shows the tree)\n" % (tmp_path / "data")
    )


def test_docker_details(tree, run, tmp_path, monkeypatch):
    data = str(tree / "data")
    document = {
        "services": {
            "sonarr": {
                "image": "lscr.io/linuxserver/sonarr",
                "environment": ["PUID=%d" % os.getuid(), "PGID=%d" % os.getgid(), "UMASK=002"],
                "volumes": [
                    "sonarr-config:/config",  # the short syntax, of a state path
                    {"type": "bind", "source": data, "target": "/data"},
                    {"type": "tmpfs", "target": "/tmp"},
                    {"type": "bind", "source": "/etc/localtime", "target": "/etc/localtime"},
                    {"type": "bind", "source": "/var/run/docker.sock", "target": "/sock"},
                ],
            },
            "qbittorrent": {
                "image": "lscr.io/linuxserver/qbittorrent",
                "environment": {"PUID": str(os.getuid()), "PGID": str(os.getgid())},
                "volumes": [{"type": "volume", "source": "dl", "target": "/data/torrents"}],
            },
            "plex": {
                "image": "plexinc/pms-docker",
                "volumes": [{"type": "volume", "source": "lib", "target": "/data/media"}],
            },
        }
    }
    path = tmp_path / "compose.json"
    path.write_text(json.dumps(document))
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker", str(path))
    result = json.loads(out)
    sonarr = next(c for c in result["containers"] if c["name"] == "sonarr")
    assert [m["container"] for m in sonarr["mounts"]] == ["/data"]
    problems = sorted(
        (f["kind"], f.get("container")) for f in result["findings"] if f["severity"] == "problem"
    )
    assert problems == [("named-volume", "qbittorrent")]  # plex may read from a volume


def test_docker_host_on_this_machine_and_failing_cli(tree, run, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    code, out, err = run("--path", str(tree), "--check", "--docker")
    assert (code, err) == (1, "")
    assert "containers   not checked: docker ps: Cannot connect to the Docker daemon\n" in out
    docker.chmod(0o644)  # not executable: the system refuses to run it
    code, out, err = run("--path", str(tree), "--check", "--docker")
    assert (code, err) == (1, "") and "containers   not checked: docker" in out
