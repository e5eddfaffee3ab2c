"""deploy/local/cluster (up, status, scale, down) with a private run folder and a free port.

A bench drives the same command an operator does and reads its JSON answers; it
never touches another engineer's cluster.
"""
import json
import subprocess
import sys
from pathlib import Path

from deploy.local.launcher import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLUSTER = ROOT / "deploy" / "local" / "cluster"


class LocalCluster:
    """deploy/local/cluster with a private run folder and port."""

    def __init__(self, env, run_dir):
        self.run_dir = Path(run_dir)
        self.env = dict(env, BOXOFFICE_RUN_DIR=str(self.run_dir))
        self.port = free_port()
        self.info = None

    def _run(self, *args, timeout=400):
        out = subprocess.run([PYTHON, str(CLUSTER), *args], cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        with open(self.run_dir.parent / "cluster-commands.log", "a") as log:
            log.write(f"$ cluster {' '.join(args)}\n{out.stderr}\n")
        if out.returncode != 0:
            raise RuntimeError(f"cluster {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        self.info = json.loads(out.stdout)
        return self.info

    def up(self, web, workers, concurrency=2):
        return self._run("up", "--web", str(web), "--workers", str(workers), "--port",
                         str(self.port), "--worker-concurrency", str(concurrency))

    def status(self):
        return self._run("status", timeout=60)

    def scale(self, **counts):
        args = ["scale"]
        for k, v in counts.items():
            args += [f"--{k}", str(v)]
        return self._run(*args)

    def down(self):
        if not (self.run_dir / "cluster.json").exists():
            return None
        return self._run("down", timeout=300)

    @property
    def lb(self):
        return self.info["lb"]

    def web_urls(self):
        """Each running web process's own address: /metrics and /readyz are served there
        only (the load balancer answers them 404, as in production)."""
        try:
            return [w["url"] for w in self.state()["web"]]
        except (OSError, ValueError, KeyError):
            return [w["url"] for w in (self.info or {}).get("web", [])]

    def state(self):
        """The cluster's own state file (entries with start times, logs)."""
        return json.loads((self.run_dir / "cluster.json").read_text())
