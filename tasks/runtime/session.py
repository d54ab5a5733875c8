"""Per-process state: resolved env chains and the single Doppler fetch."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.runtime.envlayers import EnvLayers, resolve_env
from tasks.runtime.project import Project


class Session:
    """Caches what one `inv` process has resolved, so Doppler is fetched at most once."""

    def __init__(self, project: Project):
        self.project = project
        self._chains: dict[tuple, EnvLayers] = {}
        self._doppler: dict[str, str] | None = None

    def _fetch_doppler(self, env) -> dict[str, str]:
        if self._doppler is None:
            from tasks.runtime.doppler import fetch_secrets

            self._doppler = fetch_secrets({**os.environ, **env})
        return self._doppler

    def env(
        self, chain: str = "cluster", override: str | Path | None = None, doppler: bool = True
    ) -> EnvLayers:
        override_path = None
        if override:
            override_path = Path(override).expanduser()
            if not override_path.is_absolute():
                override_path = Path.cwd() / override_path
        key = (chain, str(override_path) if override_path else None, doppler)
        if key not in self._chains:
            self._chains[key] = resolve_env(
                self.project.inventory,
                chain=chain,
                override_file=override_path,
                doppler=doppler,
                fetch_doppler=self._fetch_doppler,
            )
        return self._chains[key]


_SESSION: Session | None = None


def session() -> Session:
    global _SESSION
    if _SESSION is None or _SESSION.project.root != Project.current().root:
        _SESSION = Session(Project.current())
    return _SESSION
