"""What every benchmark run needs: progress lines, a results folder, the machine's load, clean stops.

Also the test cards of the demo payment provider (docs/API.md, "Test cards").
"""
import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

GOOD_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
NO_FUNDS_CARD = "4000000000009995"


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stop_cleanly_on_signals():
    """SIGTERM/SIGINT end the run through its `finally` (cluster down, database dropped).

    A bench started in the background by a non-interactive shell inherits an
    ignored SIGINT; restore it, and turn SIGTERM into SystemExit.
    """
    def _exit(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def results_dir(name):
    path = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_load():
    """What else runs here: 1-minute load average and the busiest other processes."""
    load1, load5, _ = os.getloadavg()
    top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
                         capture_output=True, text=True).stdout.splitlines()[:6]
    return {"loadavg_1m": round(load1, 2), "loadavg_5m": round(load5, 2), "cores": os.cpu_count(),
            "top": [t.strip() for t in top]}
