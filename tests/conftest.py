"""Tests run offline, on the CPU, on what they make themselves, and leave no cache behind: the datasets cache and
qbench's own (file fingerprints) live in a temporary folder removed when the session ends."""

import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
CACHE = tempfile.mkdtemp(prefix="qbench-test-cache-")
os.environ["HF_DATASETS_CACHE"] = os.path.join(CACHE, "datasets")  # read when `datasets` is imported: set first
os.environ["QBENCH_CACHE"] = os.path.join(CACHE, "qbench")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(CACHE, ignore_errors=True)
