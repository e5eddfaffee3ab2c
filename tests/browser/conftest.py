"""Browser tests: Playwright for Python driving Debian's Chromium (headless).

Playwright's own browser download does not work here; `make test` installs the
Debian `chromium` package and these tests launch /usr/bin/chromium directly.
"""
import os
from pathlib import Path

import pytest

from tests.harness import ROOT

CHROMIUM = os.environ.get("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (contexts keep the tests apart)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does).")
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run npm ci (make deps does).")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots():
    """The folder the tests write screenshots to (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def embedded_site(cluster):
    """A factory of one web process in the embedded mode (no Redis: tasks run in-process)."""
    def start(**extra_env):
        # An empty REDIS_URL means unset: the one-process mode, here on the test MariaDB.
        env = {"REDIS_URL": "", "SWEEP_INTERVAL_SECONDS": "1", **extra_env}
        return cluster.web(extra_env=env)
    return start
