"""Shared fixtures. Engine and S3 fixtures fail loudly when the lab is down: a test that
silently skips cannot fail, and then it proves nothing."""

pytest_plugins = ["tests.conftest_s3"]
