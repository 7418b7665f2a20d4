"""Finding a Chromium to launch, and the flags it needs here.

:func:`find_browser` takes ``SIDEKICK_BROWSER_PATH``, else Playwright's own download, else a system
Chromium. Tests, benchmarks and the product all use it, so they run wherever one of those exists.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from sidekick.config import Settings
from sidekick.errors import BrowserUnavailableError

CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
NO_BROWSER = (
    "No Chromium was found. Run `make run` (it installs one), or install Chromium yourself "
    "(`python -m playwright install chromium`, or `apt-get install chromium` on Debian/Ubuntu) "
    "or set SIDEKICK_BROWSER_PATH to a Chromium executable."
)


def playwright_chromium() -> str | None:
    """Playwright's own downloaded Chromium, if `playwright install chromium` ever succeeded."""
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    patterns = ("chromium-*/chrome-linux*/chrome", "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
                "chromium-*/chrome-win*/chrome.exe")
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
        if found:
            return found[0]
    return None


def system_chromium() -> str | None:
    # Debian's /usr/bin/chromium is a shell wrapper; the real binary skips its warning and a fork.
    for path in ("/usr/lib/chromium/chromium",):
        if os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def find_browser(settings: Settings) -> str:
    """SIDEKICK_BROWSER_PATH, else Playwright's Chromium, else a system Chromium."""
    if settings.browser_path:
        if not os.access(settings.browser_path, os.X_OK):
            raise BrowserUnavailableError(
                f"SIDEKICK_BROWSER_PATH={settings.browser_path} is not an executable file."
            )
        return settings.browser_path
    found = playwright_chromium() or system_chromium()
    if not found:
        raise BrowserUnavailableError(NO_BROWSER)
    return found


def launch_args() -> list[str]:
    args = list(CHROMIUM_FLAGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root.
    return args

