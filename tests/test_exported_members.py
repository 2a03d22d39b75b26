"""The public API is what ``layoutsync/__init__.py`` lists, sorted, and every name resolves."""

from __future__ import annotations

import layoutsync


def test_all_is_sorted_and_unique() -> None:
    names = [name for name in layoutsync.__all__ if name != "__version__"]
    assert names == sorted(names, key=lambda n: (n[0].islower(), n))
    assert len(set(layoutsync.__all__)) == len(layoutsync.__all__)


def test_every_exported_name_exists() -> None:
    for name in layoutsync.__all__:
        assert hasattr(layoutsync, name), name


def test_the_documented_library_call_imports() -> None:
    from layoutsync import (  # noqa: F401
        AsyncSession,
        Client,
        Session,
        SqliteStore,
        compile_layout,
        load_spec,
    )


def test_every_error_is_a_layoutsync_error() -> None:
    for name in layoutsync.__all__:
        value = getattr(layoutsync, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, layoutsync.LayoutsyncError), name
