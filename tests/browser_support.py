"""Screenshots of browser journeys, one per page, for review (tests/browser/screenshots/,
or TOLLHOUSE_SCREENSHOTS)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from playwright.async_api import Page

SCREENSHOTS = Path(
    os.environ.get("TOLLHOUSE_SCREENSHOTS", Path(__file__).parent / "browser" / "screenshots")
)


class Screens:
    """Saves one numbered screenshot per page of a journey, for review."""

    def __init__(self, journey: str) -> None:
        self.folder = SCREENSHOTS / journey
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.count = 0

    async def shot(self, page: Page, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9-]', '-', name)}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path
