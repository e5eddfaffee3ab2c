"""nginx in front of the local cluster's web processes: render its config, start, reload.

The config comes from nginx.conf.tmpl beside this file, with one upstream server per
live web process; a reload (SIGHUP) makes new nginx workers take the new list while the
old ones finish their connections, so no open socket is dropped. Used by
deploy/local/cluster.
"""
import os
import pwd
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.launcher import ROOT, LaunchError, Process

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.tmpl"


@dataclass
class Paths:
    binary: str
    run_dir: Path

    @property
    def conf(self):
        return self.run_dir / "nginx" / "nginx.conf"

    @property
    def error_log(self):
        return self.run_dir / "logs" / "nginx-error.log"

    def args(self):
        return [self.binary, "-p", str(self.run_dir / "nginx"), "-c", str(self.conf),
                "-e", str(self.error_log)]


def binary(say):
    """The nginx executable, installing Debian's package when there is none."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found:
        return found
    say("nginx is missing: installing Debian's package")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def vendor_dirs():
    """{name: folder} of the whitelisted node_modules dist folders the app serves at /vendor/."""
    for module in ("booking.assets", "booking.pages"):
        try:
            mod = __import__(module, fromlist=["VENDOR_DIRS"])
        except Exception:
            continue
        dirs = getattr(mod, "VENDOR_DIRS", None)
        if dirs:
            return {str(k).strip("/"): Path(v) for k, v in dict(dirs).items()}
    return None


def _vendor_locations():
    dirs = vendor_dirs()
    cache = ("            add_header Cache-Control $asset_cache_control;\n"
             "            add_header Expires $asset_expires;\n"
             "            add_header Strict-Transport-Security \"max-age=31536000; "
             "includeSubDomains\" always;\n"
             "            add_header X-Content-Type-Options \"nosniff\" always;\n")
    if dirs:
        blocks = []
        for name, folder in sorted(dirs.items()):
            blocks.append(f"        location /vendor/{name}/ {{\n"
                          f"            alias {Path(folder).resolve()}/;\n{cache}        }}")
        blocks.append("        location /vendor/ {\n            return 404;\n        }")
        return "\n".join(blocks)
    # The app has not said which folders it serves: let it answer, with the
    # same cache headers as files nginx serves itself.
    return ("        location /vendor/ {\n"
            "            proxy_pass http://boxoffice_web;\n"
            "            proxy_http_version 1.1;\n"
            "            proxy_set_header Connection \"\";\n"
            "            proxy_set_header Host $http_host;\n"
            "            proxy_hide_header Cache-Control;\n"
            "            proxy_hide_header Expires;\n" + cache + "        }")


def render(paths, port, web_ports):
    """Write nginx.conf: listen on 127.0.0.1:port, balance over web_ports. Its path."""
    run_dir = paths.run_dir
    (run_dir / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                        for p in web_ports)
    if not servers:
        raise LaunchError("no web process to balance")
    user_line = ""
    if os.geteuid() == 0:
        # Workers run as the checkout's owner, who can read static/ and node_modules/.
        user_line = f"user {pwd.getpwuid(ROOT.stat().st_uid).pw_name};"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else nofile
    values = {
        "USER_LINE": user_line, "RUN_DIR": str(run_dir), "LOG_DIR": str(run_dir / "logs"),
        "ROOT": str(ROOT), "LISTEN": f"127.0.0.1:{port}", "SERVERS": servers,
        "NOFILE": str(nofile), "WORKER_CONNECTIONS": str(max(1024, nofile // 2 - 64)),
        "VENDOR_LOCATIONS": _vendor_locations(),
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    paths.conf.write_text(text)
    return paths.conf


def _check(paths):
    test = subprocess.run(paths.args() + ["-t", "-q"], capture_output=True, text=True)
    if test.returncode != 0:
        raise LaunchError(f"nginx config invalid:\n{test.stderr}")


def start(paths):
    """Start nginx on the rendered config (it daemonizes itself); its Process."""
    _check(paths)
    subprocess.run(paths.args(), check=True, capture_output=True, text=True)
    pid_file = paths.run_dir / "nginx" / "nginx.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not pid_file.exists():
        raise LaunchError(f"nginx wrote no pid file in 10 s; see {paths.error_log}")
    return Process.adopt("nginx", int(pid_file.read_text().strip()), paths.error_log)


def reload(paths, master):
    """SIGHUP nginx after checking the config; returns once a worker runs the new one."""
    _check(paths)
    before = set(master.children())
    master.signal(signal.SIGHUP)
    # Old workers finish their connections: open sockets are not dropped.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (set(master.children()) - before):
        time.sleep(0.05)
