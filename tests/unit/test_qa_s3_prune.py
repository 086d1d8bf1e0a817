"""Reading metadata from a store that cannot be used (stuck, down, refusing us): the failure
is raised at once, not followed by a second question to the same store ("is the file still
there?"), which against a stuck S3 doubled the wait (two calls of about 2 minutes each)."""

from __future__ import annotations

import pytest

from reconciler.errors import StorageError
from reconciler.storage.base import StoreUnavailable
from reconciler.storage.prune import read_unless_vanished


class Store:
    def __init__(self, error: StorageError, there: bool) -> None:
        self.error, self.there, self.asked = error, there, 0

    def read_bytes(self, key: str) -> bytes:
        raise self.error

    def exists(self, key: str) -> bool:
        self.asked += 1
        return self.there


def test_a_store_that_cannot_be_used_is_not_asked_again():
    store = Store(StoreUnavailable("S3 endpoint http://s3 did not answer in time to download k"), there=True)
    with pytest.raises(StoreUnavailable):
        read_unless_vanished(store, "metadata/backup-1.json")
    assert store.asked == 0


def test_a_store_that_cannot_be_used_never_makes_a_file_vanish():
    """A HEAD that 404s (a bare 404 says nothing of the bucket) after a refused GET must not
    turn the refusal into "deleted meanwhile", which would hide the backup without a word."""
    store = Store(StoreUnavailable("S3 refused to download k (SlowDown)"), there=False)
    with pytest.raises(StoreUnavailable):
        read_unless_vanished(store, "metadata/backup-1.json")


def test_a_file_deleted_meanwhile_is_still_skipped():
    store = Store(StorageError("metadata/backup-1.json not found in bucket b"), there=False)
    assert read_unless_vanished(store, "metadata/backup-1.json") is None
    assert store.asked == 1
