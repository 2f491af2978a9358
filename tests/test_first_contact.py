"""A new user's first minutes: the compose file they have, one cause counted once, one
answer to "can my apps write?", fixes that work as written, headers that match."""

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import AS_ROOT, REPO, cms, needs_root

# -- compose files as users have them --------------------------------------------------------

COMPOSE_YAML = """\
services:
  sonarr:
    image: lscr.io/linuxserver/sonarr
    volumes:
      - ${DATA}:/data
"""


def compose_json(data: str) -> str:
    """What `docker compose config --format json` prints of COMPOSE_YAML, .env applied."""
    return json.dumps({"name": "stack", "services": {"sonarr": {
        "image": "lscr.io/linuxserver/sonarr",
        "volumes": [{"type": "bind", "source": data, "target": "/data"}],
    }}})  # fmt: skip


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """An empty folder first on PATH, and nothing else: a fake `docker` or
    `docker-compose` written there is the only one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def make(name: str, body: str) -> Path:
        script = folder / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
        return script

    return make


def write_stack(tree: Path) -> Path:
    stack = tree / "stack"
    stack.mkdir()
    (stack / "docker-compose.yml").write_text(COMPOSE_YAML)
    (stack / ".env").write_text("DATA=%s\n" % (tree / "data"))
    return stack / "docker-compose.yml"


def test_a_yaml_compose_file_is_read_through_docker_compose(tree, run, fake_bin):
    # Refused before: "a compose file in YAML, not JSON" (exit 2).
    answer = tree / "answer.json"
    answer.write_text(compose_json(str(tree / "data")))
    log = tree / "args"
    fake_bin("docker", 'echo "$PWD $*" > %s\n/bin/cat %s\n' % (log, answer))
    path = write_stack(tree)
    code, out, err = run("--path", str(tree), "--check", "--json", "--docker", str(path))
    assert (code, err) == (0, "")
    assert [c["name"] for c in json.loads(out)["containers"]] == ["sonarr"]
    # From the file's own folder, so that its .env applies.
    assert log.read_text().split() == [str(path.parent), "compose", "-f", str(path), "config",
                                       "--format", "json"]  # fmt: skip


def test_the_standalone_docker_compose_when_docker_has_no_plugin(tree, run, fake_bin):
    answer = tree / "answer.json"
    answer.write_text(compose_json(str(tree / "data")))
    fake_bin("docker", "echo \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n")
    fake_bin("docker-compose", "/bin/cat %s\n" % answer)
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker",
                       str(write_stack(tree)))  # fmt: skip
    assert code == 0 and [c["name"] for c in json.loads(out)["containers"]] == ["sonarr"]


def test_docker_compose_1_prints_usage_not_json(tree, run, fake_bin):
    # docker-compose 1.29 has no --format: it prints its usage and exits 0.
    fake_bin("docker-compose", "echo 'Validate and view the Compose file.'\necho 'Usage:'\n")
    path = write_stack(tree)
    code, out, err = run("--path", str(tree), "--check", "--docker", str(path))
    assert (code, out) == (2, "")
    assert err == (
        "error: --docker %s: a compose file in YAML, and no Compose v2 here to read it (docker "
        "compose, or docker-compose 2.x): where there is one, run docker compose -f FILE config "
        "--format json > stack.json, then give --docker stack.json\n" % path
    )


def test_compose_s_own_error_is_said(tree, run, fake_bin):
    fake_bin("docker", "echo 'service \"sonarr\" has neither an image nor a build' >&2\nexit 15\n")
    path = write_stack(tree)
    code, out, err = run("--path", str(tree), "--check", "--docker", str(path))
    assert (code, out) == (2, "")
    assert err == ('error: --docker %s: docker compose config: service "sonarr" has neither an '
                   "image nor a build\n" % path)  # fmt: skip


def test_a_compose_file_through_stdin(tree, run, fake_bin, monkeypatch):
    import io
    import sys

    answer = tree / "answer.json"
    answer.write_text(compose_json(str(tree / "data")))
    seen = tree / "stdin"
    fake_bin("docker", "/bin/cat > %s\n/bin/cat %s\n" % (seen, answer))
    monkeypatch.setattr(sys, "stdin", io.StringIO(COMPOSE_YAML))
    code, out, _ = run("--path", str(tree), "--check", "--json", "--docker", "-")
    assert code == 0 and json.loads(out)["containers"][0]["name"] == "sonarr"
    assert seen.read_text() == COMPOSE_YAML


@pytest.mark.parametrize("text", ["[]", '{"services": {}}', "not yaml: [", "# services:\n"])
def test_json_and_other_text_is_not_taken_for_yaml(text):
    assert not cms.looks_like_compose_yaml(text)


# -- one cause, one counted problem ------------------------------------------------------------


@needs_root
def test_a_tree_of_99_100_checked_for_1000_1000_is_one_problem(public_tmp, run):
    """Unraid's tree (nobody:users), checked for PUID 1000: was "48 problem(s), 25
    warning(s)" for one cause."""
    assert run("--path", str(public_tmp), "--owner", "99:100", "-q")[0] == 0
    code, out, _ = run("--path", str(public_tmp), "--check", "--owner", "1000:1000")
    assert code == 1
    assert "permissions  1 problem: 1000:1000 can't write 52 of the tree's 52 folders (owner " \
        "99:100, mode 0775)\n" in out  # fmt: skip
    assert "  fix: python3 create_media_structure.py --path %s --owner 1000:1000\n" % public_tmp \
        in out  # fmt: skip
    assert out.splitlines()[-1] == "result: 1 problem, see above"
    code, out, _ = run("--path", str(public_tmp), "--check", "--owner", "1000:1000", "--json")
    (item,) = json.loads(out)["findings"]
    assert item["kind"] == "not-writable" and len(item["paths"]) == 52


# -- one answer to "can my apps write?" ---------------------------------------------------------


def inspect(name, image, data, target, env):
    return {"Name": "/" + name, "Config": {"Image": image, "Env": env, "User": "", "Labels": {}},
            "HostConfig": {"Binds": []},
            "Mounts": [{"Type": "bind", "Source": data, "Destination": target,
                        "RW": True}]}  # fmt: skip


@needs_root
def test_the_containers_and_permissions_give_one_answer(public_tmp, run):
    """PUID 1000 on a 99:100 0775 tree: linuxserver's abc is in PGID 1000 and in "users",
    which their images renumber to 1000, not 100: the apps can't write.  It was a warning
    (ids) in the containers section, exit 0."""
    assert run("--path", str(public_tmp), "--owner", "99:100", "-q")[0] == 0
    data = str(public_tmp / "data")
    stack = public_tmp / "c.json"
    stack.write_text(json.dumps([
        inspect("qbittorrent", "lscr.io/linuxserver/qbittorrent", data + "/torrents",
                "/data/torrents", ["PUID=1000", "PGID=1000", "UMASK=002"]),
        inspect("sonarr", "lscr.io/linuxserver/sonarr", data, "/data",
                ["PUID=1000", "PGID=1000", "UMASK=002"]),
    ]))  # fmt: skip
    code, out, _ = run("--path", str(public_tmp), "--check", "--json", "--docker", str(stack))
    document = json.loads(out)
    assert code == 1
    assert sorted(f["container"] for f in document["findings"] if f["kind"] == "cannot-write") \
        == ["qbittorrent", "sonarr"]  # fmt: skip
    # With --owner, the permissions section finds it first: the containers cite it.
    code, out, _ = run("--path", str(public_tmp), "--check", "--docker", str(stack),
                       "--owner", "1000:1000")  # fmt: skip
    assert code == 1
    assert "containers   problem counted in permissions\n" in out
    assert "  sonarr (importer, lscr.io/linuxserver/sonarr): problem: can't write, counted in " \
        "permissions\n" in out  # fmt: skip
    assert out.splitlines()[-1].startswith("result: 1 problem,")  # and the routes' warnings


# -- fixes that work as written ------------------------------------------------------------------


def run_fix(fix: str, cwd: Path) -> None:
    """A fix: line, run as the user would paste it (the script by its path here)."""
    assert fix and "run again" not in fix and "--check" not in fix, fix
    script = "python3 %s" % shlex.quote(str(REPO / cms.SCRIPT_NAME))
    words = shlex.split(fix.replace("python3 create_media_structure.py", script))
    commands = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    for command in commands:
        subprocess.run(command, cwd=str(cwd), check=True, stdout=subprocess.DEVNULL)


def findings_of(run, tree, *options):
    code, out, _ = run("--path", str(tree), "--check", "--json", *options)
    return [f for f in json.loads(out)["findings"] if f["section"] in ("layout", "permissions")]


@pytest.mark.parametrize("damage", ["missing", "conflict", "sticky", "sticky-many", "owner"])
def test_each_fix_of_layout_and_permissions_works_as_written(public_tmp, run, damage):
    tree = public_tmp
    assert run("--path", str(tree), "-q")[0] == 0
    options = []
    data = tree / "data"
    if damage == "missing":
        (data / "media" / "tv").rmdir()
    elif damage == "conflict":
        (data / "media" / "tv").rmdir()
        (data / "media" / "tv").write_text("a file where a folder goes\n")
    elif damage == "sticky":
        os.chmod(str(data / "usenet" / "complete" / "tv"), 0o1775)
    elif damage == "sticky-many":
        for folder in (data / "usenet" / "complete").iterdir():
            os.chmod(str(folder), 0o1775)
    else:
        if not AS_ROOT:
            pytest.skip("giving the tree to another user needs root")
        options = ["--owner", "4242:4242"]
    found = findings_of(run, tree, *options)
    assert found, damage
    for item in found:
        run_fix(item["fix"], tree)
    assert findings_of(run, tree, *options) == []


@needs_root
def test_a_folder_above_data_that_the_user_cannot_pass(public_tmp, run, monkeypatch):
    """A 0700 folder above data/: the fix was --owner, which never touches it."""
    share = public_tmp / "share"
    share.mkdir()
    assert run("--path", str(share), "--owner", "4242:4242", "-q")[0] == 0
    os.chmod(str(share), 0o700)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, out, _ = run("--path", str(share), "--check", "--owner", "4242:4242")
    assert code == 1
    assert "permissions  1 problem: %s: the probes can't get through this folder" % share in out
    assert "  fix: chmod o+x %s\n" % share in out
    run_fix("chmod o+x %s" % share, public_tmp)
    assert stat.S_IMODE(os.stat(str(share)).st_mode) == 0o701
    assert run("--path", str(share), "--check", "--owner", "4242:4242")[0] == 0
    # The group's bit where the user is in the folder's group.
    os.chmod(str(share), 0o700)
    os.chown(str(share), 0, 4242)
    code, out, _ = run("--path", str(share), "--check", "--owner", "4242:4242")
    assert "  fix: chmod g+x %s\n" % share in out


# -- headers that match their lines ---------------------------------------------------------------


def test_the_routes_header_counts_what_is_not_a_hardlink():
    import io

    route = cms.Route("qbittorrent", "tv", "sonarr", "", None, "", "unseen", "split-mounts", "")
    routes = cms.Routes([route], [], [])
    stream = io.StringIO()
    found = cms.CheckResult([], [], [], {"routes": "ok"}, "", "", 0)
    cms.report_check("/srv/data", [], None, found, cms.Output(stream), None, routes)
    assert "routes       1 unseen (see containers)\n" in stream.getvalue()
    assert "routes       ok" not in stream.getvalue()


# -- what --help and the README say first ----------------------------------------------------------


def test_help_says_creating_is_the_default_and_what_check_adds():
    text = " ".join(cms.build_parser().format_help().split())
    assert "Creating is the default mode." in text
    assert "--check creates nothing" in text and "--docker the containers' mounts" in text


def test_the_readme_starts_with_what_to_run():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 450
    head = "\n".join(lines[:60])
    assert "python3 create_media_structure.py --path" in head  # the create command
    assert "--check" in head
    assert "python3 -m pytest -rs" in head  # the test command, skips with their reason
    assert "sha256sum" in head and "scp" in head and "--version" in head
    text = "\n".join(lines)
    for placeholder in ("OWNER/REPO", "SHA256-PUBLISHED", "TAG"):
        assert placeholder not in text
