"""A fork server for the tests' processes: import once, fork for every start.

`python wsgi.py` and `celery -A workers worker` each spend about 3 s of CPU
importing their libraries (SQLAlchemy, Flask-SocketIO, eventlet with dnspython,
Celery, ...) before they serve, and the suite starts over a hundred web
processes and as many Celery processes: the largest single share of its CPU on a
2-core machine. A zygote does the part that is the same for every start once.
The `web` zygote patches like `wsgi.py` does (eventlet first); the `plain` one,
for Celery, patches nothing, as a worker does not. Each then imports every
module of `booking` and `workers` (none builds an app on import). For each start
it forks; the child takes the test's environment, working directory, log file
and arguments, and runs `wsgi.py` (or `-m celery`) as `__main__`, exactly as the
command would from there on: the app is created, configured from the
environment and served in the child.

What a fork cannot give is used only where it matters: variables read when a
module is first imported (PROMETHEUS_MULTIPROC_DIR by prometheus_client,
PYTHON*, EVENTLET_*) make the harness start `python wsgi.py` instead
(`needs_own_interpreter`).

Protocol, one request per connection on a Unix socket: the harness sends one
JSON line {"args", "env", "cwd", "log"}; the zygote answers one JSON line
{"pid"}. A child is its own session leader (as `start_new_session=True`), so
the harness signals and kills it like any other process; the zygote never
waits for it (the kernel reaps it). The zygote exits when its parent (the
pytest process) is gone.
"""
import json
import os
import pkgutil
import runpy
import signal
import socket
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Taken before eventlet patches the module: the zygote's own socket never needs a hub.
_PLAIN_SOCKET = socket.socket

# Read when a module is first imported: a child could not take them from its request.
IMPORT_TIME_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR",)
IMPORT_TIME_PREFIXES = ("PYTHON", "EVENTLET")


def needs_own_interpreter(env, base_env):
    """Whether env differs from base_env (the zygote's) in a variable read at import."""
    for name in set(env) | set(base_env):
        if name in IMPORT_TIME_VARIABLES or name.startswith(IMPORT_TIME_PREFIXES):
            if env.get(name) != base_env.get(name):
                return True
    return False


def _preload(flavor):
    if flavor == "web":
        import eventlet
        eventlet.monkey_patch()   # first, as wsgi.py does when serving
    for package in ("booking", "workers"):
        module = __import__(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            __import__(info.name)


def _own_hub():
    """A fresh eventlet hub for a forked child (web flavor).

    monkey_patch() creates the hub, and with it an epoll instance; a forked child
    would share that one kernel object with the zygote and every other child, so
    each would be woken by the others' sockets. The child closes its copy and gets
    a hub of its own, as gunicorn's eventlet worker does after a preloading fork.
    """
    hubs = sys.modules.get("eventlet.hubs")
    if hubs is None:
        return   # plain flavor: eventlet never patched nor started here
    old = getattr(hubs._threadlocal, "hub", None)
    if old is not None and hasattr(old, "poll") and hasattr(old.poll, "close"):
        old.poll.close()
    hubs.use_hub()


def _child(request, listener, conn, started):
    try:
        listener.close()
        conn.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _own_hub()
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        # Its own process group and its log file exist now: the pid can be answered.
        os.write(started, b"1")
        os.close(started)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        args = request["args"]
        if args[1] == "-m":     # python -m celery ...
            sys.argv = [args[2]] + list(args[3:])
            runpy.run_module(args[2], run_name="__main__", alter_sys=True)
        else:                   # python wsgi.py ...
            sys.argv = list(args[1:])
            runpy.run_path(args[1], run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(path, flavor):
    sys.path.insert(0, str(ROOT))   # as `python wsgi.py` run from the project's root has it
    _preload(flavor)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped by the kernel
    parent = os.getppid()
    listener = _PLAIN_SOCKET(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(1.0)
    print("zygote ready", flush=True)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(10)
            request = json.loads(conn.makefile("rb").readline())
            sys.stdout.flush()
            sys.stderr.flush()
            started_r, started_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(started_r)
                _child(request, listener, conn, started_w)
            os.close(started_w)
            os.read(started_r, 1)   # after the child's setsid (or its death: EOF)
            os.close(started_r)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def start_child(path, args, env, cwd, log):
    """Ask the zygote at path to start args; returns the child's pid."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(path)
        conn.sendall(json.dumps({"args": [str(a) for a in args], "env": env,
                                 "cwd": str(cwd), "log": str(log)}).encode() + b"\n")
        return json.loads(conn.makefile("rb").readline())["pid"]


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
