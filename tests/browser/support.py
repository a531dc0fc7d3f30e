"""What browser tests import: where Chromium is, why it cannot run, and Selenium's locators
(usable even where selenium is not installed, so that collection never fails; the tests skip)."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("BROWSER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BROWSER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the tests skip (selenium_missing); the names only have to exist

    class By:  # type: ignore[no-redef]
        ID = "id"
        NAME = "name"
        CSS_SELECTOR = "css selector"
        XPATH = "xpath"
        LINK_TEXT = "link text"
        PARTIAL_LINK_TEXT = "partial link text"
        TAG_NAME = "tag name"


def selenium_missing() -> str:
    """Why browser tests cannot run here, or "" when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is absent: install Debian's {package} (apt-get install {package})"
    return ""
