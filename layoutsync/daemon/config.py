"""Spec files the daemon manages: one file or a directory of them, one session each.

``SpecCatalog.scan()`` compares the files on disk with the last accepted
scan and returns the ``ConfigChanges`` (added, changed, removed, failed):

- the session name is the file stem (``rooms/lobby.json`` -> ``lobby``);
- only files whose size or mtime changed are loaded again, so a directory of
  thousands of specs rescans in milliseconds;
- a file that fails to load keeps its previous spec (a typo in an edit must
  not tear a live layout down) and the error is reported until it is fixed;
- two files may not claim one instanceId (the second would fight the first
  with 409s): the one that came later is refused.

``watch_specs`` turns file-system events (watchfiles; polling where inotify
is unavailable) into calls of a reload callback.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LayoutsyncError
from ..logs import get_logger
from ..spec import session_name

__all__ = [
    "SPEC_SUFFIXES",
    "ConfigChanges",
    "ConfigError",
    "ConfigProblem",
    "LoadedSpec",
    "SpecCatalog",
    "session_name",
    "watch_specs",
]

SPEC_SUFFIXES = (".json", ".toml")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

SpecLoader = Callable[[Path], Any]


class ConfigProblem(LayoutsyncError):
    """The configuration path itself is unusable (missing, unreadable, not a spec file)."""


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A spec accepted from ``path``; ``spec`` is a ``layoutsync.spec.LayoutSpec``."""

    name: str
    path: Path
    spec: Any


@dataclass(frozen=True, slots=True)
class ConfigError:
    """Why ``path`` (session ``name``) was not loaded; the previous spec, if any, stays."""

    name: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """What one scan changed. ``failed`` lists every file in error after the scan."""

    added: tuple[LoadedSpec, ...] = ()
    changed: tuple[LoadedSpec, ...] = ()
    removed: tuple[LoadedSpec, ...] = ()
    failed: tuple[ConfigError, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _default_loader(path: Path) -> Any:
    from ..spec import load_spec

    return load_spec(path)


class SpecCatalog:
    """The accepted specs under ``path`` and the errors of the files that failed."""

    def __init__(self, path: str | os.PathLike[str], *, loader: SpecLoader | None = None) -> None:
        self.path = Path(path)
        self._loader = loader or _default_loader
        self._specs: dict[str, LoadedSpec] = {}
        self._stamps: dict[Path, tuple[int, int, int]] = {}
        self._errors: dict[str, ConfigError] = {}

    @property
    def is_directory(self) -> bool:
        return self.path.is_dir()

    @property
    def specs(self) -> Mapping[str, LoadedSpec]:
        return dict(self._specs)

    @property
    def errors(self) -> Mapping[str, ConfigError]:
        return dict(self._errors)

    def error_for(self, name: str) -> ConfigError | None:
        return self._errors.get(name)

    def files(self) -> dict[str, Path]:
        """Spec files on disk by session name. Raises ``ConfigProblem`` if ``path`` is unusable."""
        path = self.path
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as exc:
                raise ConfigProblem(f"{path}: cannot list the directory: {exc.strerror}") from None
            candidates = [
                entry
                for entry in entries
                if entry.suffix.lower() in SPEC_SUFFIXES
                and not entry.name.startswith(".")
                and entry.is_file()
            ]
        elif path.is_file():
            if path.suffix.lower() not in SPEC_SUFFIXES:
                raise ConfigProblem(
                    f"{path}: not a spec file (expected {' or '.join(SPEC_SUFFIXES)})"
                )
            candidates = [path]
        elif path.exists():
            raise ConfigProblem(f"{path}: neither a spec file nor a directory")
        else:
            raise ConfigProblem(f"{path}: no such file or directory")
        found: dict[str, Path] = {}
        for entry in candidates:
            found.setdefault(session_name(entry), entry)
        return found

    def scan(self) -> ConfigChanges:
        """Load what changed on disk since the last scan and report the difference."""
        files = self.files()
        errors: dict[str, ConfigError] = {}
        added: list[LoadedSpec] = []
        changed: list[LoadedSpec] = []
        removed: list[LoadedSpec] = []
        stamps: dict[Path, tuple[int, int, int]] = {}

        duplicates = self._duplicate_stems()
        for name, path in files.items():
            if name in duplicates:
                errors[name] = ConfigError(
                    name, path, f"several files define session {name!r}: {duplicates[name]}"
                )
                continue
            if not _NAME.match(name):
                errors[name] = ConfigError(
                    name,
                    path,
                    f"session name {name!r} (the file stem) must be 1 to 128 of letters, "
                    "digits, '_', '-' and '.', not starting with '.' or '-'",
                )
                continue
            try:
                stamp = _stamp(path.stat())
            except OSError:
                continue  # removed between the listing and now: the next scan sees it gone
            stamps[path] = stamp
            current = self._specs.get(name)
            if current is not None and current.path == path and self._stamps.get(path) == stamp:
                if name in self._errors and self._errors[name].path == path:
                    errors[name] = self._errors[name]
                continue
            previous_error = self._errors.get(name)
            if (
                current is None
                and previous_error is not None
                and previous_error.path == path
                and self._stamps.get(path) == stamp
            ):
                errors[name] = previous_error
                continue
            try:
                spec = self._loader(path)
            except (LayoutsyncError, OSError, ValueError) as exc:
                errors[name] = ConfigError(name, path, _message(exc))
                continue
            loaded = LoadedSpec(name, path, spec)
            if current is None:
                added.append(loaded)
            elif _fingerprint(current.spec) != _fingerprint(spec) or current.path != path:
                changed.append(loaded)

        for name, current in self._specs.items():
            if name not in files:
                removed.append(current)

        accepted = {name: loaded for name, loaded in self._specs.items() if name in files}
        for loaded in (*added, *changed):
            accepted[loaded.name] = loaded
        added, changed = self._refuse_shared_instance_ids(accepted, added, changed, errors)

        self._specs = {
            name: loaded
            for name, loaded in accepted.items()
            if name not in errors or name in self._specs
        }
        self._stamps = stamps
        self._errors = errors
        return ConfigChanges(
            added=tuple(added),
            changed=tuple(changed),
            removed=tuple(removed),
            failed=tuple(errors[name] for name in sorted(errors)),
        )

    def _duplicate_stems(self) -> dict[str, str]:
        if not self.path.is_dir():
            return {}
        seen: dict[str, list[str]] = {}
        try:
            for entry in self.path.iterdir():
                if entry.suffix.lower() in SPEC_SUFFIXES and not entry.name.startswith("."):
                    seen.setdefault(session_name(entry), []).append(entry.name)
        except OSError:
            return {}
        return {stem: ", ".join(sorted(names)) for stem, names in seen.items() if len(names) > 1}

    def _refuse_shared_instance_ids(
        self,
        accepted: dict[str, LoadedSpec],
        added: list[LoadedSpec],
        changed: list[LoadedSpec],
        errors: dict[str, ConfigError],
    ) -> tuple[list[LoadedSpec], list[LoadedSpec]]:
        """A new or edited spec may not take an instanceId another session already has."""
        fresh = {loaded.name for loaded in (*added, *changed)}
        owners: dict[str, str] = {}
        for name in sorted(accepted, key=lambda n: (n in fresh, n)):
            instance_id = getattr(accepted[name].spec, "instance_id", None)
            if instance_id is None:
                continue
            owner = owners.setdefault(instance_id, name)
            if owner == name:
                continue
            errors[name] = ConfigError(
                name,
                accepted[name].path,
                f"instanceId {instance_id!r} is already used by session {owner!r} (two tasks "
                "would fight with 409s): give this file another instanceId, or remove one of "
                "the two files",
            )
            if name in self._specs:
                accepted[name] = self._specs[name]  # an edit: keep the previous spec
            else:
                del accepted[name]
        keep_added = [loaded for loaded in added if loaded.name not in errors]
        keep_changed = [loaded for loaded in changed if loaded.name not in errors]
        return keep_added, keep_changed


def _fingerprint(spec: Any) -> Any:
    return getattr(spec, "fingerprint", None) or id(spec)


def _message(exc: BaseException) -> str:
    """One line per file: the fields and reasons, without the path (``ConfigError`` adds it)."""
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    errors = getattr(exc, "errors", None)
    if isinstance(errors, tuple) and errors:
        return "; ".join(str(error) for error in errors)
    return " ".join(str(exc).split())


async def watch_specs(
    path: Path,
    on_change: Callable[[], Awaitable[object]],
    *,
    stop: asyncio.Event,
    poll_interval: float = 2.0,
    rescan_interval: float = 60.0,
    debounce_ms: int = 300,
    force_polling: bool = False,
) -> None:
    """Call ``on_change`` after spec files under ``path`` change, until ``stop`` is set.

    A single spec file is watched through its directory, since editors save
    by writing a new file and renaming it over the old one. ``on_change``
    rescans, so a spurious call costs a few ``stat``s; it is also called once
    ``poll_interval`` after the watch is in place (a file written while it was
    being set up is not missed) and every ``rescan_interval`` seconds after
    that (an event the OS dropped is not missed for ever). If watchfiles
    cannot watch (no inotify, too many watches), this polls every
    ``poll_interval`` seconds instead.
    """
    log = get_logger(component="config")
    target = path if path.is_dir() else path.parent
    if not force_polling:
        try:
            from watchfiles import awatch

            last_scan: float | None = None
            async for changes in awatch(
                target,
                stop_event=stop,
                debounce=debounce_ms,
                recursive=False,
                rust_timeout=max(int(poll_interval * 1000), 1),
                yield_on_timeout=True,
            ):
                now = time.monotonic()
                if changes or last_scan is None or now - last_scan >= rescan_interval:
                    last_scan = now
                    await on_change()
            return
        except Exception as exc:
            log.warning("spec watch unavailable, polling instead", error=str(exc))
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), poll_interval)
        except TimeoutError:
            await on_change()
