"""`inv l1.list` over 20 templates: cold (no parse cache) and warm (parsed HCL cached by content
hash under .work/), as ratios against bare Invoke's start-up (`inv --list` on a one-task tasks.py).

The 20 templates are builds as Packer sees them: copies of the two samples in folders of their own,
and two folders of three nested builds each that link their variables and base source from a
shared `common/` folder (the layout of published Proxmox template repositories)."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import base_env, copy_repo  # noqa: E402
from results import (  # noqa: E402
    BIN,
    compile_runner,
    interleaved,
    interleaved_medians,
    paired_ratio,
    run_seconds,
    write_section,
)

TEMPLATES = 20
ROUNDS = 41
COLD_ROUNDS = 7
TARGET = 1.3


NESTED_FOLDERS = 2
COMMON = {
    "variables.pkr.hcl": """
variable "proxmox_url" {
  type = string
}

variable "proxmox_token_id" {
  type = string
}

variable "proxmox_token" {
  type      = string
  sensitive = true
}

variable "proxmox_node" {
  type = string
}

variable "vm_storage" {
  type    = string
  default = "local-lvm"
}
""",
    "source.pkr.hcl": """
source "proxmox-iso" "base" {
  proxmox_url             = var.proxmox_url
  username                = var.proxmox_token_id
  token                   = var.proxmox_token
  node                    = var.proxmox_node
  iso_storage_pool        = "local"
  http_directory          = "${path.root}/../common/http"
  cloud_init              = true
  cloud_init_storage_pool = var.vm_storage
  ssh_username            = "packer"
}
""",
    "http/preseed.cfg": "d-i passwd/username string packer\n",
    "scripts/update.sh": "#!/bin/sh\napt-get update\n",
}
NESTED = """
build {
  name = "distros"
%s
  provisioner "shell" {
    scripts = ["${path.root}/../common/scripts/update.sh"]
  }
}
"""
NESTED_SOURCE = """
  source "proxmox-iso.base" {
    name         = "%(name)s"
    vm_name      = "%(name)s"
    iso_url      = "https://mirror.invalid/%(name)s.iso"
    iso_checksum = "sha256:%(sha)s"
  }
"""


def _repo(tmp: Path) -> Path:
    repo = copy_repo(tmp / "repo")
    templates = repo / "layers" / "l1" / "templates"
    samples = sorted(p for p in templates.iterdir() if p.is_dir())
    for rel, text in COMMON.items():
        (templates / "common" / rel).parent.mkdir(parents=True, exist_ok=True)
        (templates / "common" / rel).write_text(text)
    for n in range(NESTED_FOLDERS):
        folder = templates / f"distros-{n}"
        folder.mkdir()
        for name in ("variables.pkr.hcl", "source.pkr.hcl"):
            os.symlink(f"../common/{name}", folder / name)
        sources = "".join(
            NESTED_SOURCE % {"name": f"distro{n}{k}", "sha": f"{n}{k}" * 32} for k in range(3)
        )
        (folder / "build.pkr.hcl").write_text(NESTED % sources)
    for i in range(TEMPLATES - len(samples) - 3 * NESTED_FOLDERS):
        shutil.copytree(
            samples[i % len(samples)], templates / f"{samples[i % len(samples)].name}-{i:02d}"
        )
    return repo


def main() -> int:
    inv = str(BIN / "inv")
    env = base_env(PVE_NODE="pve1", PVE_STORAGE_VM="local-lvm")
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text(
            "from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n"
        )
        repo = _repo(Path(tmp))
        compile_runner(repo)  # as setup.sh does: Invoke itself never writes the runner's bytecode
        cache = repo / ".work" / "l1" / "parse-cache"

        def cold() -> float:
            shutil.rmtree(cache, ignore_errors=True)
            return run_seconds([inv, "l1.list"], repo, env)

        def bare_list() -> float:
            return run_seconds([inv, "--list"], bare, env)

        # Cold runs write the cache (and import the HCL parser); they are measured apart, so the
        # writes they leave behind do not land on the warm runs.
        cold_base, cold_s = interleaved_medians([bare_list, cold], rounds=COLD_ROUNDS)
        base_t, list_t, warm_t = interleaved(
            [
                bare_list,
                lambda: run_seconds([inv, "--list"], repo, env),
                lambda: run_seconds([inv, "l1.list"], repo, env),
            ],
            rounds=ROUNDS,
        )
        baseline, listing, warm = (statistics.median(t) for t in (base_t, list_t, warm_t))
        ratio = paired_ratio(warm_t, base_t)
        cold_s *= baseline / cold_base  # on the warm rounds' scale
    rows = [
        ("bare invoke `inv --list` (one-task tasks.py)", baseline),
        ("`inv --list` (this runner)", listing),
        (f"`inv l1.list`, {TEMPLATES} templates, cold (no parse cache)", cold_s),
        (f"`inv l1.list`, {TEMPLATES} templates, warm (parse cache)", warm),
    ]
    lines = [
        "## L1 templates (`benchmarks/templates.py`)",
        "",
        "| run | median | vs bare invoke |",
        "|---|---|---|",
        *[f"| {name} | {secs * 1000:.0f} ms | {secs / baseline:.2f}x |" for name, secs in rows],
        "",
        f"Target: warm `l1.list` at most {TARGET}x bare invoke start-up; measured {ratio:.2f}x "
        f"({'met' if ratio <= TARGET else 'MISSED'}), the median of the per-round ratios of "
        f"{ROUNDS} rounds, each running bare Invoke, `--list` and `l1.list` in turn (the table "
        "shows medians of each column). The 20 templates include two folders of three nested "
        "builds sharing a linked `common/` folder. Cold runs are measured apart, "
        f"{COLD_ROUNDS} rounds against bare Invoke, and scaled to the same baseline. The warm "
        "path lists each template folder once, loads each HCL file's cached document and path "
        "words and compiled expressions, evaluates the ones that can name a file, and hashes the "
        "inputs: it imports neither python-hcl2 nor PyYAML.",
        f"Load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("templates", text)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
