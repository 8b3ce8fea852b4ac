"""The console tests use the API tests' fixtures (``tests/api/conftest.py``: an app on the
test's own data dir, tokens per role, a TestClient, the store); their own helpers live
beside them (``console_support.py``, ``registry_support.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
