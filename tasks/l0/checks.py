"""L0 runway checks: fail fast, change nothing. Every probe only reads; they run concurrently.

A probe returns one or more rows (check, status, detail, fix). Probes that need the API run at
the same time as the one proving the API works; if that one fails, their rows become "skip" so
the operator sees one cause, not six.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.runtime.errors import HomelabError
from tasks.runtime.settings import parse_bool

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"


@dataclass
class Row:
    check: str
    status: str
    detail: str
    fix: str = ""
    required: bool = True
    seconds: float = 0.0


@dataclass
class Probe:
    name: str
    run: Callable[[], list[Row]]
    needs_api: bool = False


@dataclass
class RunwayInputs:
    env: dict[str, str]
    required_env: list[str]
    privileges: dict[str, list[str]]  # acl path template -> privileges
    tools: list[dict[str, Any]]
    nodes: set[str] = field(default_factory=set)
    storages: set[tuple[str, str]] = field(default_factory=set)  # (node, storage) for VM images
    iso_storage: str | None = None
    iso_node: str | None = None  # the ISO storage is checked on PVE_NODE
    l2_error: str | None = None


def runway_inputs(run: Any) -> RunwayInputs:
    """What the runway checks, from the run's env, layers/l0/layer.yaml and L2's declarations
    (the nodes and storages the VMs use); an L2 declaration error is kept for its row."""
    from tasks.runtime.config import load_layer_manifest

    manifest = load_layer_manifest(run.project, "l0")
    values = dict(run.env.merged)
    node = (values.get("PVE_NODE") or "").strip()
    storage = (values.get("PVE_STORAGE_VM") or "").strip()
    inputs = RunwayInputs(
        env=values,
        required_env=list(manifest.get("required_env") or []),
        privileges=dict(manifest.get("privileges") or {}),
        tools=list(manifest.get("tools") or []),
        nodes={node} if node else set(),
        storages={(node, storage)} if node and storage else set(),
        iso_storage=(values.get("PVE_STORAGE_ISO") or "").strip() or None,
        iso_node=node or None,
    )
    try:
        from tasks.l2.apply import declared_nodes_and_storages

        nodes, pairs = declared_nodes_and_storages(run)
        inputs.nodes |= nodes
        inputs.storages |= {(n, s) for n, s in pairs if n and s}
    except HomelabError as exc:
        inputs.l2_error = exc.message.splitlines()[0]
    return inputs


def _row_error(check: str, exc: HomelabError, fix: str = "") -> Row:
    return Row(check, FAIL, exc.message.splitlines()[0], fix or (exc.hint or ""))


def env_probes(inputs: RunwayInputs) -> list[Probe]:
    from tasks.adapters.proxmox import TOKEN_ID

    def required() -> list[Row]:
        from tasks.runtime.secrets import where_to_set

        missing = [n for n in inputs.required_env if not (inputs.env.get(n) or "").strip()]
        if missing:
            fixes = where_to_set(missing).split("; ")
            return [
                Row(
                    "env: required variables",
                    FAIL,
                    "missing: " + ", ".join(missing),
                    "; ".join(fixes),
                )
            ]
        return [Row("env: required variables", OK, f"all {len(inputs.required_env)} present")]

    def token() -> list[Row]:
        token_id = (inputs.env.get("PM_TOKEN_ID") or "").strip()
        if not token_id:
            return [Row("env: PM_TOKEN_ID format", SKIP, "not set")]
        if TOKEN_ID.match(token_id):
            return [Row("env: PM_TOKEN_ID format", OK, token_id)]
        return [
            Row(
                "env: PM_TOKEN_ID format",
                FAIL,
                f"{token_id!r} is not user@realm!tokenid",
                "copy the token id from Datacenter > Permissions > API Tokens (e.g. homelab@pve!runner)",
            )
        ]

    def tls_mode() -> list[Row]:
        if parse_bool(inputs.env.get("PVE_TLS_INSECURE")):
            return [
                Row(
                    "tls: verification",
                    WARN,
                    "OFF (PVE_TLS_INSECURE=1)",
                    "set PVE_CA_BUNDLE to your CA's certificate and drop PVE_TLS_INSECURE",
                    required=False,
                )
            ]
        bundle = (inputs.env.get("PVE_CA_BUNDLE") or "").strip()
        return [Row("tls: verification", OK, f"on (CA: {bundle or 'system trust store'})")]

    probes = [Probe("env", required), Probe("token", token), Probe("tls", tls_mode)]
    if inputs.l2_error:
        error = inputs.l2_error
        probes.append(
            Probe(
                "l2",
                lambda: [
                    Row(
                        "l2: declared VMs",
                        FAIL,
                        error,
                        "fix the declaration under layers/l2/ (inv l2.plan shows the same)",
                    )
                ],
            )
        )
    return probes


def api_probes(inputs: RunwayInputs, client: Any) -> list[Probe]:
    from tasks.adapters.proxmox import PveApiError, held_privileges

    def version() -> list[Row]:
        try:
            info = client.version()
        except PveApiError as exc:
            if exc.status is None:
                return [
                    _row_error("api: endpoint and TLS", exc),
                    Row("api: credentials", SKIP, "endpoint failed"),
                ]
            endpoint = Row(
                "api: endpoint and TLS", OK, f"{client.base_url} answers, certificate valid"
            )
            return [endpoint, _row_error("api: credentials", exc)]
        return [
            Row("api: endpoint and TLS", OK, f"{client.base_url} answers, certificate valid"),
            Row(
                "api: credentials",
                OK,
                f"token {client.settings.token_id} works (PVE {info.get('version', '?')})",
            ),
        ]

    def privileges() -> list[Row]:
        try:
            held = client.permissions()
        except PveApiError as exc:
            return [_row_error("token: privileges", exc)]
        rows = []
        for template, wanted in inputs.privileges.items():
            for path in _expand(template, inputs):
                have = held_privileges(held, path)
                missing = [p for p in wanted if p not in have]
                check = f"token: privileges on {path}"
                if missing:
                    rows.append(
                        Row(
                            check,
                            FAIL,
                            "missing " + ", ".join(missing),
                            f"grant them on {path} to {client.settings.token_id} (a role with these "
                            "privileges; mind privilege separation)",
                        )
                    )
                else:
                    rows.append(Row(check, OK, "holds " + ", ".join(wanted)))
        return rows

    def nodes() -> list[Row]:
        try:
            listed = {n.get("node"): n.get("status") for n in client.nodes()}
        except PveApiError as exc:
            return [_row_error("node", exc)]
        rows = []
        for node in sorted(inputs.nodes):
            check = f"node: {node}"
            if node not in listed:
                known = ", ".join(sorted(str(n) for n in listed)) or "none"
                rows.append(
                    Row(
                        check,
                        FAIL,
                        f"not in the cluster (nodes: {known})",
                        "fix PVE_NODE or the VM's node",
                    )
                )
            elif listed[node] != "online":
                rows.append(Row(check, FAIL, f"{listed[node]}", "bring the node online"))
            else:
                rows.append(Row(check, OK, "online"))
        return rows

    def storage_probe(node: str) -> Callable[[], list[Row]]:
        def run() -> list[Row]:
            try:
                listed = {s.get("storage"): s for s in client.node_storages(node)}
            except PveApiError as exc:
                return [_row_error(f"storage: {node}", exc)]
            rows = []
            wanted = sorted(s for n, s in inputs.storages if n == node)
            checks = [(s, "images", "VM disks") for s in wanted]
            if inputs.iso_storage and node == inputs.iso_node:
                checks.append((inputs.iso_storage, "iso", "ISO images"))
            for storage, content, what in checks:
                check = f"storage: {node}/{storage} ({what})"
                info = listed.get(storage)
                if info is None:
                    known = ", ".join(sorted(str(s) for s in listed)) or "none"
                    rows.append(
                        Row(
                            check,
                            FAIL,
                            f"not on this node (storages: {known})",
                            "fix PVE_STORAGE_VM / PVE_STORAGE_ISO or the storage's nodes",
                        )
                    )
                    continue
                contents = str(info.get("content") or "").split(",")
                problems = []
                if str(info.get("enabled", 1)) in ("0", "False"):
                    problems.append("disabled")
                if str(info.get("active", 1)) in ("0", "False"):
                    problems.append("not active")
                if content not in contents:
                    problems.append(
                        f"does not accept {content} (content: {info.get('content') or 'none'})"
                    )
                if problems:
                    rows.append(
                        Row(
                            check,
                            FAIL,
                            "; ".join(problems),
                            f"Datacenter > Storage > {storage}: enable it and allow '{content}'",
                        )
                    )
                else:
                    rows.append(Row(check, OK, f"enabled, active, accepts {content}"))
            return rows

        return run

    probes = [
        Probe("version", version, True),
        Probe("privileges", privileges, True),
        Probe("nodes", nodes, True),
    ]
    storage_nodes = {n for n, _s in inputs.storages}
    if inputs.iso_storage and inputs.iso_node:
        storage_nodes.add(inputs.iso_node)
    for node in sorted(storage_nodes):
        probes.append(Probe(f"storage:{node}", storage_probe(node), True))
    return probes


def _expand(template: str, inputs: RunwayInputs) -> list[str]:
    """`/nodes/{node}` and `/storage/{storage}` once per node/storage in use; `{iso_storage}` once."""
    if "{node}" in template:
        return [template.replace("{node}", n) for n in sorted(inputs.nodes)]
    if "{storage}" in template:
        return [template.replace("{storage}", s) for s in sorted({s for _n, s in inputs.storages})]
    if "{iso_storage}" in template:
        return [template.replace("{iso_storage}", inputs.iso_storage)] if inputs.iso_storage else []
    return [template]


def _packer_lacks(run) -> list[tuple[str, str]]:
    """(template, what the installed Packer lacks: required_version, plugins) for every template."""
    from tasks.adapters import packer
    from tasks.l1.tools import packer_report

    return packer_report(run, packer.version(run.effects))


def tool_probes(run, inputs: RunwayInputs) -> list[Probe]:
    """Each tool: found and new enough, too old (the version seen and the one needed), or missing.
    The first binary new enough on PATH or in the runner's venv is the one the runner uses."""
    from tasks.runtime.tools import find_tool, shown

    def probe(tool: dict[str, Any]) -> Callable[[], list[Row]]:
        def check_tool() -> list[Row]:
            name, layer = tool["name"], tool.get("layer", "?")
            required = bool(tool.get("required", True))
            finding = find_tool(run, name)
            check = f"tool: {name} ({layer})"
            if finding.status == "ok" and name == "packer":
                lacking = _packer_lacks(run)
                if lacking:
                    detail = f"{finding.describe()}; " + "; ".join(f"{t}: {p}" for t, p in lacking)
                    fix = (
                        "install a current Packer (https://developer.hashicorp.com/packer/install)"
                    )
                    # A warning: the other templates still build with this Packer.
                    return [Row(check, WARN, detail, fix, required=required)]
            if finding.status == "ok":
                return [Row(check, OK, finding.describe(), required=required)]
            status = FAIL if required else WARN
            fix = tool.get("install", "")
            if finding.status == "too-old":
                detail = f"{shown(finding.version)} at {finding.path}: needs {shown(finding.minimum)} or newer"
                return [Row(check, status, detail, fix, required=required)]
            return [Row(check, status, "not found on PATH or in .venv", fix, required=required)]

        return check_tool

    return [Probe(f"tool:{t['name']}", probe(t)) for t in inputs.tools]


def run_probes(probes: list[Probe], *, serial: bool = False) -> list[Row]:
    """Run every probe (concurrently unless `serial`); rows in probe order, each timed."""

    def timed(probe: Probe) -> list[Row]:
        started = time.perf_counter()
        try:
            rows = probe.run()
        except HomelabError as exc:
            rows = [_row_error(probe.name, exc)]
        took = time.perf_counter() - started
        for row in rows:
            row.seconds = took
        return rows

    if serial:
        results = [timed(p) for p in probes]
    else:
        from tasks.runtime.fanout import fan_out

        done = fan_out(probes, timed, name=lambda p: p.name, parallel=max(1, len(probes)))
        results = [o.value if o.ok else [Row(o.name, FAIL, o.detail)] for o in done]
    api_down = any(
        r.check in ("api: endpoint and TLS", "api: credentials") and r.status == FAIL
        for rows in results
        for r in rows
    )
    out: list[Row] = []
    for probe, rows in zip(probes, results, strict=True):
        if api_down and probe.needs_api and probe.name != "version":
            out.append(
                Row(
                    f"{probe.name.replace(':', ': ')}",
                    SKIP,
                    "needs a working API connection (see above)",
                )
            )
            continue
        out.extend(rows)
    return out
