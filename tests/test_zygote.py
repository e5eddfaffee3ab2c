"""The tests' fork server (tests/zygote.py): what a forked child gets, and when not to fork."""
import os
import re
import signal
import subprocess
from pathlib import Path

import requests

from deploy.local.launcher import pid_alive
from tests import zygote
from tests.harness import PYTHON, ROOT, _Zygote, free_port, wait_until


def test_variables_read_at_import_need_their_own_interpreter():
    base = {"PATH": "/usr/bin", "PYTHONHASHSEED": "0"}
    assert not zygote.needs_own_interpreter(dict(base, DATABASE_URL="mysql://x"), base)
    assert zygote.needs_own_interpreter(dict(base, PROMETHEUS_MULTIPROC_DIR="/tmp/p"), base)
    assert zygote.needs_own_interpreter(dict(base, PYTHONPATH="/elsewhere"), base)
    assert zygote.needs_own_interpreter({"PATH": "/usr/bin"}, base)   # one taken away
    assert zygote.needs_own_interpreter(dict(base, EVENTLET_HUB="poll"), base)


def test_a_forked_child_runs_the_module_with_its_arguments_log_and_session(tmp_path):
    port = free_port()
    log = tmp_path / "child.log"
    pid = _Zygote.start("plain", [PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                        {"PATH": os.environ["PATH"]}, log)
    try:
        assert os.getsid(pid) == pid          # its own session, as start_new_session=True
        wait_until(lambda: b"Serving HTTP" in log.read_bytes(), 30, "http.server serving")
        # The project's root is its working directory, as for `python -m` run there.
        assert requests.get(f"http://127.0.0.1:{port}/README.md", timeout=5).status_code == 200
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, "the child reaped by the kernel")


def test_a_forked_web_process_takes_the_tests_environment(cluster):
    web = cluster.web(extra_env={"HOLD_TTL_SECONDS": "77"})
    assert not web.popen, "forked from the zygote, not a new interpreter"
    # The page's settings come from the app the child built from its environment.
    page = requests.get(web.url + "/", timeout=5)
    assert re.search(r'"hold_ttl_seconds": ?77\b', page.text), page.text[-2000:]


def test_the_zygote_is_not_used_where_a_variable_read_at_import_differs(cluster, tmp_path):
    web = cluster.web(extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert web.popen is not None, "its own interpreter"


def _epoll_watches_not_its_own(pid):
    """Watches in pid's epoll instances whose fd number pid has open on another file."""
    strangers = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:   # the process opens and closes files meanwhile
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except FileNotFoundError:
            continue
        for line in info.splitlines():
            # tfd:        5 events:       1b data:     7f3800000005  pos:0 ino:3df0e sdev:9
            watch = re.match(r"tfd:\s*(\d+)\s.*\bino:([0-9a-f]+)", line)
            if watch:
                try:
                    mine = os.stat(f"/proc/{pid}/fd/{watch[1]}").st_ino
                except FileNotFoundError:
                    continue   # closed since: its watch went with it
                # The same number open here on another file: another process's watch.
                if mine != int(watch[2], 16):
                    strangers.append(line)
    return strangers


def test_forked_web_processes_do_not_share_an_event_hub(cluster):
    """monkey_patch() made the zygote's epoll; a child that kept it would be woken by
    every other child's sockets."""
    webs = [cluster.web(), cluster.web()]
    for web in webs:
        assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
    for web in webs:
        # A number closed and reused between two reads of /proc can look foreign
        # once; another process's watches stay.
        wait_until(lambda: _epoll_watches_not_its_own(web.pid) == [], 5,
                   f"only its own sockets in {web.name}'s epoll: "
                   f"{_epoll_watches_not_its_own(web.pid)}")


def test_a_zygote_and_its_folder_are_gone_when_its_process_exits():
    """A pytest process's zygote is killed at its exit, and its socket folder removed."""
    out = subprocess.run(
        [PYTHON, "-c", "from tests.harness import _Zygote\n"
                       "proc, path = _Zygote._launch('plain')\n"
                       "print(proc.pid, path)"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    pid, path = out.stdout.split()
    assert not Path(path).parent.exists(), "the zygote's folder is left behind"
    wait_until(lambda: not pid_alive(int(pid)), 10, "the zygote gone")
