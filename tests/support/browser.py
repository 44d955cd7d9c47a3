"""A real headless Chromium for the console's tests: Debian's `chromium` and `chromium-driver`, never a download."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.servers import ServerMissing

DESKTOP, PHONE = (1280, 900), (390, 844)  # a laptop, and a phone held upright


def chromium(size: tuple[int, int] = DESKTOP) -> webdriver.Chrome:
    """A headless Chromium driven through Debian's chromedriver (scripts/test.sh installs both)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        raise ServerMissing("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(30)
    return browser


def screenshot(browser: WebDriver, folder: Path, name: str) -> Path:
    """The page as it looks now, at desktop and at phone width, saved as `<name>-desktop.png` and `-phone.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = browser.get_window_size()["width"], browser.get_window_size()["height"]
    for label, (w, h) in (("desktop", DESKTOP), ("phone", PHONE)):
        browser.set_window_size(w, h)
        browser.save_screenshot(str(folder / f"{name}-{label}.png"))
    browser.set_window_size(width, height)
    return folder / f"{name}-desktop.png"
