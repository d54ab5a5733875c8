"""homelab runner: one `inv` surface for Proxmox VE, k3s and Flux GitOps (layers L0-L4)."""

import sys
from pathlib import Path

# `inv` loads this file as the module `tasks` (its loader registers it in sys.modules before
# running it); giving it a __path__ that points at the tasks/ folder makes it a package as well,
# so `import tasks.runtime.context` resolves identically under `inv`, pytest and mypy. Pyright
# ignores __path__: tasks/__init__.pyi makes the folder a package for it.
__path__ = [str(Path(__file__).resolve().with_name("tasks"))]

from tasks.namespace import build_namespace  # noqa: E402
from tasks.runtime.pipes import quiet_broken_pipe  # noqa: E402

quiet_broken_pipe()
if Path(sys.argv[0]).name in ("inv", "invoke") and "homelab_cli" not in sys.modules:
    print(
        "warning: this `inv` is Invoke's own script, not the runner's: optional arguments, "
        "friendly errors and completion are missing; run `bash setup.sh` (or "
        "`.venv/bin/pip install -e .`) to restore it",
        file=sys.stderr,
    )
ns = build_namespace()
