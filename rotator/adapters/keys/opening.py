"""The key store the config names: key_dir itself, or keys sealed in `keys.database`
under the KEK with key_dir as each node's local copy; and the KEK's making and re-wrapping
(`rotator keys kek-create`, `rotator keys rewrap`)."""

from __future__ import annotations

from pathlib import Path

from ...config.keys import KeysConfig
from ...config.settings import Config
from ...domain.errors import ConfigError
from ...ports import KeyStore
from .envelope import Envelope, create_kek, read_kek
from .files import FsKeyStore
from .pool import FsKeyPool
from .sealed import Rewrapped, SealedKeyStore, open_sealed_keys, rewrap


def key_stores(config: Config, readonly: bool) -> tuple[KeyStore, FsKeyPool]:
    """The key store and the pool: key_dir itself, or keys sealed in keys.database with
    key_dir as the local copy (pooled keys stay local until taken, then are sealed)."""
    files = FsKeyStore(config.key_dir)
    if not config.keys.sealed or readonly:
        # a read-only command reads no private key: it needs neither the KEK nor the database
        return files, FsKeyPool(files)
    store = SealedKeyStore(files, open_sealed_keys(config.keys.database), envelope(config.keys))
    return store, FsKeyPool(files, seal=store.seal)


def envelope(keys: KeysConfig) -> Envelope:
    assert keys.kek_file is not None
    kek = read_kek(keys.kek_file, keys.credentials)
    previous = keys.previous_kek_file
    return Envelope(kek, [] if previous is None else [read_kek(previous, keys.credentials)])


def make_kek(path: Path) -> str:
    """`rotator keys kek-create`: a new KEK in `path` (0400); its id."""
    return create_kek(path).id


def rewrap_keys(config: Config, new_kek: Path) -> Rewrapped:
    """`rotator keys rewrap`: every sealed key's data key wrapped by the KEK in `new_kek`."""
    keys = config.keys
    if not keys.sealed:
        raise ConfigError(
            f'{config.path}: keys.store is "files": no key is sealed, there is nothing to re-wrap'
        )
    new = read_kek(new_kek, keys.credentials)
    sealed = open_sealed_keys(keys.database)
    try:
        return rewrap(sealed, envelope(keys), new)
    finally:
        sealed.close()
