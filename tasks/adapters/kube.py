"""kubectl and flux: the only place the runner talks to the cluster (and to `kubectl kustomize`).

Every call goes through the run's effects seam: mutating calls are echoed, and in a dry run only
printed, while read-only calls still run so a dry run checks real state. Secret data goes to
kubectl as a manifest on stdin, never on argv.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import CommandFailed, ConfigError, ExternalError

if TYPE_CHECKING:
    from pathlib import Path

    from tasks.runtime.run import Run
    from tasks.runtime.seam import CommandResult


class Kube:
    def __init__(self, run: Run, *, env: dict[str, str] | None = None):
        self.run_ = run
        self.effects = run.effects
        self.env = dict(env or {})  # on top of the resolved env (e.g. a cluster's own KUBECONFIG)

    def _run(
        self,
        tool: str,
        args: tuple[str, ...],
        *,
        mutating: bool,
        stdin: str | None = None,
        check: bool = True,
    ) -> CommandResult:
        from tasks.runtime.console import say

        result = self.effects.command(
            [tool, *args],
            mutates=mutating,
            env=self.env,
            stdin=stdin,
            check=False,
            what=None if stdin is None else f"{tool} {' '.join(args)} (manifest on stdin)",
            executable=self.binary(tool),
        )
        if result.exited == 127:
            raise ExternalError(f"{tool} is not installed or not on PATH", hint=f"install {tool}")
        if check and result.failed:
            raise CommandFailed(result.command, result.exited, result.tail())
        if mutating and result.stdout.strip():
            for line in result.stdout.strip().splitlines():
                say(f"    {line}")
        return result

    def binary(self, tool: str) -> str:
        """The first `tool` new enough for the runner, on PATH or in its venv (a Debian 12
        kubectl 1.20 first on PATH is passed over); exit 2 naming the fix when there is none."""
        from tasks.runtime.tools import tool_path

        return tool_path(self.run_, tool)

    def kubectl(
        self, *args: str, mutating: bool = False, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        return self._run("kubectl", args, mutating=mutating, stdin=stdin, check=check)

    def flux(self, *args: str, mutating: bool = False, check: bool = True) -> CommandResult:
        return self._run("flux", args, mutating=mutating, check=check)

    def get_one(self, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object as JSON, or None when the cluster does not have it."""
        result = self.kubectl(
            "get", resource, name, f"--namespace={namespace}", "-o", "json", check=False
        )
        if result.failed:
            if "NotFound" in (result.stderr or "") or "not found" in (result.stderr or ""):
                return None
            raise CommandFailed(result.command, result.exited, result.tail())
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise ExternalError(f"kubectl get {resource} {name}: output is not JSON") from None

    def get_json(self, *args: str) -> dict[str, Any]:
        result = self.kubectl("get", *args, "-o", "json")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise ExternalError(f"kubectl get {' '.join(args)}: output is not JSON") from None

    def apply_manifest(self, manifest: dict[str, Any]) -> None:
        """`kubectl apply -f -` with the manifest on stdin (how secrets reach the cluster)."""
        self.kubectl("apply", "-f", "-", mutating=True, stdin=json.dumps(manifest))

    def kustomize(self, folder: Path) -> str:
        """`kubectl kustomize FOLDER`: render offline; a broken folder is a configuration error.

        Renders are kept for the rest of the process: one `inv` run never changes the tree, and an
        orchestrator's steps render the same folders several times.
        """
        key = str(folder.resolve())
        if key in _RENDERED:
            return _RENDERED[key]
        result = self._run("kubectl", ("kustomize", str(folder)), mutating=False, check=False)
        if result.failed:
            raise ConfigError(
                f"{self.run_.project.rel(folder)}: kubectl kustomize failed: "
                f"{_kubectl_error(result.stderr)}"
            )
        _RENDERED[key] = result.stdout
        return result.stdout

    def kustomize_raw(self, folder: Path) -> CommandResult:
        """`kubectl kustomize` as kustomize-controller builds: files outside the folder may be
        loaded (the load restrictor off). The caller reads the exit status and caches."""
        result = self.effects.command(
            ["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", str(folder)],
            mutates=False,
            env=self.env,
            check=False,
            executable=self.binary("kubectl"),
        )
        if result.exited == 127:
            raise ExternalError("kubectl is not installed or not on PATH", hint="install kubectl")
        return result


_RENDERED: dict[str, str] = {}


def kubectl_error(stderr: str | None) -> str:
    return _kubectl_error(stderr)


def _kubectl_error(stderr: str | None) -> str:
    """The message inside kubectl's klog line (`E1123 ... "command failed" err="..."`)."""
    import re

    lines = (stderr or "").strip().splitlines()
    if not lines:
        return "no output"
    found = re.search(r'err="(.*)"\s*$', lines[-1])
    text = found.group(1) if found else lines[-1]
    return text.replace('\\"', '"')
