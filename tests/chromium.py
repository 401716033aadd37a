"""The marker for tests that lay pages out in Debian's headless Chromium.

CI installs Chromium (scripts/install_chromium.sh) and sets FIXATE_RT_REQUIRE_CHROMIUM=1: never skipped there.
"""

import os

import pytest

from fixate_rt.data.adserp.organic import ChromiumMissing, find_browser


def have_chromium() -> bool:
    try:
        find_browser()
        return True
    except ChromiumMissing:
        return False


needs_chromium = pytest.mark.skipif(not have_chromium() and os.environ.get("FIXATE_RT_REQUIRE_CHROMIUM") != "1",
                                    reason="headless Chromium not installed (apt-get install chromium)")
