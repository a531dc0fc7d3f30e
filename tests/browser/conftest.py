"""Browser tests: Debian's headless Chromium driven by Selenium through /usr/bin/chromedriver,
against pytest-django's `live_server` (a real HTTP server on loopback, in a thread).

Selenium rather than Playwright: Playwright's sync API runs an asyncio loop in the test thread,
and Django's ORM then refuses to run there (SynchronousOnlyOperation), so a test could not set
up or assert on the database.

One browser per test session (start-up is the slow part); every test gets it with its cookies
cleared. Every test here is marked `browser` and skips, saying why, when Chromium or its driver
is not installed (`.ci/run` installs both: `apt-get install chromium chromium-driver`).

    from tests.browser.support import By

    def test_something(browser, live_server):
        browser.log_in(live_server, accountant())
        browser.open(live_server, "/admin/")
        assert "Blocked orders" in browser.text()
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import CHROMEDRIVER, CHROMIUM, By, selenium_missing

# The flags that work in a container as root, with no network noise from Chromium itself.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
# Seconds a wait for an element or a page gives up after; pages here render in milliseconds.
WAIT_SECONDS = 10
PASSWORD = "secret-password"  # tests/factories/parties.py user_in_group


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    here = Path(__file__).parent
    missing = selenium_missing()
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.browser)
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"browser test skipped: {missing}"))


class Browser:
    """The Selenium driver with the few steps every scenario needs, waiting where pages load."""

    def __init__(self, driver: Any):
        self.driver = driver

    def open(self, live_server: Any, path: str) -> None:
        self.driver.get(live_server.url + path)

    def log_in(self, live_server: Any, user: Any, password: str = PASSWORD) -> None:
        """Through the admin's login form, as a person would."""
        self.open(live_server, "/admin/login/?next=/admin/")
        self.driver.find_element(By.NAME, "username").send_keys(user.get_username())
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.submit(By.CSS_SELECTOR, "form#login-form [type=submit]")
        self.wait_for(By.ID, "user-tools")

    def find(self, by: str, value: str) -> Any:
        return self.driver.find_element(by, value)

    def find_all(self, by: str, value: str) -> list[Any]:
        return self.driver.find_elements(by, value)

    def wait_for(self, by: str, value: str, timeout: float = WAIT_SECONDS) -> Any:
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((by, value))
        )

    def wait_for_text(self, text: str, timeout: float = WAIT_SECONDS) -> None:
        """Until `text` is on the page (a page that refreshes itself gets there eventually)."""
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, timeout).until(lambda driver: text in self.text())

    def click(self, by: str, value: str) -> None:
        self.driver.find_element(by, value).click()

    def submit(self, by: str, value: str) -> None:
        """Click something that loads a new page, and wait until the new page is there."""
        from selenium.webdriver.support.ui import WebDriverWait

        element = self.driver.find_element(by, value)
        element.click()
        WebDriverWait(self.driver, WAIT_SECONDS).until(lambda driver: _gone(element))

    def text(self) -> str:
        """The page's visible text; read again when the page replaced itself mid-read (a page
        that refreshes itself, or a redirect landing just then)."""
        for _ in range(3):
            try:
                return self.driver.find_element(By.TAG_NAME, "body").text
            except Exception as error:
                if not _document_replaced(error):
                    raise
        return self.driver.find_element(By.TAG_NAME, "body").text

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.driver.current_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


def _document_replaced(error: Exception) -> bool:
    """Whether Selenium failed only because the page was replaced under it. Chromium reports
    that as a stale element, or (mid-navigation) as "Node ... does not belong to the document"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    if isinstance(error, StaleElementReferenceException):
        return True
    return isinstance(error, WebDriverException) and "does not belong to the document" in str(error)


def _gone(element: Any) -> bool:
    """Whether the page holding `element` has been replaced by the next one."""
    try:
        element.is_enabled()
    except Exception as error:
        if _document_replaced(error):
            return True
        raise
    return False


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    missing = selenium_missing()
    if missing:
        pytest.skip(f"browser test skipped: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ledger-sync-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    # Selenium Manager would otherwise look for (and try to download) a driver of its own.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium: Any, live_server: Any, transactional_db: Any) -> Iterator[Browser]:
    """The session's Chromium, logged out, for a test against `live_server` (whose data lives
    in a transactional test database, so the server thread sees what the test creates)."""
    _chromium.delete_all_cookies()
    yield Browser(_chromium)
    _chromium.delete_all_cookies()
