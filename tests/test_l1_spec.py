"""L1 specs: Packer HCL discovery and parsing, variables, ISO references, inputs and fingerprints.

(The shapes of published templates, nested builds, linked common/ folders, evaluated inputs and the
real Packer are in tests/test_l1_corpus.py and tests/test_l1_packer.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import base_env, run_inv

from tasks.l1 import spec as specs
from tasks.l1.actions import input_staleness, plan_isos
from tasks.l1.artifacts import update_stable_wanted
from tasks.l1.fingerprint import compute
from tasks.l1.inputs import analyse, normalise_checksum, parse_checksum
from tasks.runtime.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "layers" / "l1" / "templates"

# A real-world shaped proxmox-iso template: required_plugins, locals, a dynamic block, boot_iso,
# nested post-processors, provisioners referencing scripts through ${path.root}.
ISO_TEMPLATE = r"""
packer {
  required_plugins {
    proxmox = {
      version = ">= 1.1.8"
      source  = "github.com/hashicorp/proxmox"
    }
  }
}

variable "proxmox_node" { type = string }
variable "iso_storage" {
  type    = string
  default = "isos"
}
variable "ubuntu" {
  type    = string
  default = "24.04.1"
}
variable "api_token" {
  type      = string
  sensitive = true
}

locals {
  iso   = "ubuntu-${var.ubuntu}-live-server-amd64.iso"
  disks = [{ size = "32G", pool = "local-zfs" }]
}

source "proxmox-iso" "noble" {
  node = var.proxmox_node
  boot_iso {
    iso_file         = "${var.iso_storage}:iso/${local.iso}"
    iso_url          = "https://releases.ubuntu.com/${var.ubuntu}/${local.iso}"
    iso_checksum     = "e240e4b801f7bb68c20d1356b60968ad0c33a41d00d828e74ceb3364a0317be9"
    iso_storage_pool = var.iso_storage
  }
  additional_iso_files {
    iso_url      = "./seed/cidata.iso"
    iso_checksum = "none"
  }
  dynamic "disks" {
    for_each = local.disks
    content {
      disk_size    = disks.value.size
      storage_pool = disks.value.pool
    }
  }
  http_directory = "http"
}

build {
  sources = ["source.proxmox-iso.noble"]
  provisioner "shell" {
    scripts = ["${path.root}/scripts/a.sh", "scripts/b.sh"]
  }
  provisioner "shell" {
    inline = ["cat ${path.root}/missing.txt"]
    environment_vars = ["CFG=files/app.cfg"]
  }
  post-processors {
    post-processor "manifest" {
      output = "out/manifest.json"
    }
  }
}
"""


def _write_template(root: Path, name: str = "noble") -> Path:
    folder = root / "layers" / "l1" / "templates" / name
    for rel, text in {
        f"{name}.pkr.hcl": ISO_TEMPLATE,
        "scripts/a.sh": "echo a\n",
        "scripts/b.sh": "echo b\n",
        "http/user-data": "#cloud-config\n",
        "http/meta-data": "",
        "files/app.cfg": "x=1\n",
        "seed/cidata.iso": "ISO",
        "README.md": "not an input\n",
    }.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (root / "tasks.py").write_text("")
    return folder


def _one(folder: Path, cache: Path | None = None) -> specs.TemplateSpec:
    [build] = specs.load_folder(folder, cache).builds
    return build


def _analysis(t: specs.TemplateSpec, supplied: dict[str, str] | None = None, *, isos=False):
    pv = specs.PackerVariables({})
    pv.from_env = dict(supplied or {})
    checkout = specs.checkout_root(t.folder)
    return analyse(t, pv, str(t.folder), "folder", str(checkout), None, {}, isos=isos)


def _references(t: specs.TemplateSpec) -> list[Path]:
    return [Path(p) for p in _analysis(t).references]


def test_parses_a_real_world_proxmox_iso_template(tmp_path: Path) -> None:
    folder = _write_template(tmp_path)
    t = _one(folder)
    assert t.name == "noble"
    assert t.source_label == "proxmox-iso.noble"
    assert set(t.plugins) == {"proxmox"}
    assert t.manifest_output == "out/manifest.json"
    assert t.variables["api_token"].sensitive and not t.variables["proxmox_node"].has_default
    assert t.variables["iso_storage"].default == "isos"
    assert t.locals["iso"] == "ubuntu-${var.ubuntu}-live-server-amd64.iso"
    rels = sorted(str(p.relative_to(folder)) for p in _references(t))
    # scripts via ${path.root} and plainly, http_directory, an env-var word, the seed ISO;
    # a README nothing mentions and a missing file are not inputs.
    assert rels == ["files/app.cfg", "http", "scripts/a.sh", "scripts/b.sh", "seed/cidata.iso"]


def test_references_follow_links_but_stay_inside_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    folder = _write_template(checkout)
    shared = checkout / "shared"
    (shared / "scripts").mkdir(parents=True)
    (shared / "scripts" / "a.sh").write_text("echo shared a\n")
    outside = tmp_path / "outside.cfg"
    outside.write_text("x=2\n")
    # scripts/ is a link to a folder elsewhere in the checkout; files/app.cfg leads outside it.
    for rel in ("scripts/a.sh", "scripts/b.sh"):
        (folder / rel).unlink()
    (folder / "scripts").rmdir()
    (folder / "scripts").symlink_to(shared / "scripts")
    (folder / "files" / "app.cfg").unlink()
    (folder / "files" / "app.cfg").symlink_to(outside)
    t = _one(folder)
    assert sorted(map(str, _references(t))) == sorted(
        [
            str(folder / "http"),
            str(folder / "seed" / "cidata.iso"),
            str(shared / "scripts" / "a.sh"),
        ]
    )


def test_iso_references_resolve_variables_and_locals(tmp_path: Path) -> None:
    t = _one(_write_template(tmp_path))
    boot, seed = _analysis(t, {"iso_storage": "nas"}, isos=True).isos
    assert boot.volid("local") == "nas:iso/ubuntu-24.04.1-live-server-amd64.iso"
    assert boot.url == "https://releases.ubuntu.com/24.04.1/ubuntu-24.04.1-live-server-amd64.iso"
    assert (
        boot.checksum == "sha256:e240e4b801f7bb68c20d1356b60968ad0c33a41d00d828e74ceb3364a0317be9"
    )
    assert seed.local_path == (t.folder / "seed" / "cidata.iso").resolve()
    assert seed.volid("local") == "local:iso/cidata.iso" and seed.checksum is None


def test_the_bundled_samples_parse() -> None:
    settings = specs.load_settings(REPO / "layers" / "l1", None)
    found = {t.name: t for t in specs.discover(settings, None).templates}
    assert set(found) == {"debian12-base", "debian12-k3s"}
    assert found["debian12-base"].builders == {"proxmox-iso"}
    assert found["debian12-k3s"].builders == {"proxmox-clone"}
    assert not found["debian12-k3s"].plugins  # runs on Packer 1.6.6
    assert "proxmox_password" in settings.connection and "proxmox_node" in settings.placement


def test_packer_variables_fill_declared_ones_and_name_what_is_missing(tmp_path: Path) -> None:
    t = _one(_write_template(tmp_path))
    settings = specs.L1Settings(
        tmp_path, tmp_path, tmp_path,
        connection={"api_token": "${PM_TOKEN_SECRET}", "not_declared": "${PVE_NODE}"},
        placement={"proxmox_node": "${PVE_NODE}", "iso_storage": "${PVE_STORAGE_ISO}"},
    )  # fmt: skip
    env = {"PM_TOKEN_SECRET": "tok-1234", "PVE_NODE": "pve7"}
    layers = SimpleNamespace(merged=env, is_secret=lambda n: n == "PM_TOKEN_SECRET")
    pv = specs.packer_variables(t, settings, layers)
    assert pv.values == {"api_token": "tok-1234", "proxmox_node": "pve7"}
    assert pv.placement == {"proxmox_node": "pve7"}  # secrets never reach the fingerprint
    assert pv.secret_names == {"api_token"} and pv.missing == {}
    assert pv.sources["api_token"] == "PM_TOKEN_SECRET" and pv.sources["iso_storage"] == "default"
    pv = specs.packer_variables(t, settings, SimpleNamespace(merged={}, is_secret=lambda n: False))
    assert pv.missing == {"api_token": ["PM_TOKEN_SECRET"], "proxmox_node": ["PVE_NODE"]}
    # The operator's own PKR_VAR_* wins over the mapping and counts as a value.
    env = {"PKR_VAR_api_token": "mine-5678", "PVE_NODE": "pve7"}
    pv = specs.packer_variables(t, settings, SimpleNamespace(merged=env, is_secret=lambda n: False))
    assert pv.missing == {} and "api_token" not in pv.values
    assert (
        pv.supplied()["api_token"] == "mine-5678" and pv.sources["api_token"] == "PKR_VAR_api_token"
    )


def test_per_template_mapping_overrides_the_layer_mapping(tmp_path: Path) -> None:
    t = _one(_write_template(tmp_path))
    settings = specs.L1Settings(
        tmp_path, tmp_path, tmp_path,
        connection={"api_token": "${PM_TOKEN_SECRET}"},
        placement={"proxmox_node": "${PVE_NODE}"},
        overrides={"noble": {"connection": {"api_token": "${OTHER_TOKEN}"},
                             "variables": {"proxmox_node": None}, "workdir": "repo"}},
    )  # fmt: skip
    env = {"PM_TOKEN_SECRET": "tok-1234", "OTHER_TOKEN": "tok-9999", "PVE_NODE": "pve7"}
    pv = specs.packer_variables(t, settings, SimpleNamespace(merged=env, is_secret=lambda n: False))
    assert pv.values == {"api_token": "tok-9999"}
    assert pv.missing == {"proxmox_node": []}  # unmapped here, and it has no default
    assert settings.for_template(t)[2] == "repo"


def test_api_url_uses_the_proxmox_adapters_parser() -> None:
    assert specs.api_url({"PVE_ACCESS_HOST": "pve.lan"}) == "https://pve.lan:8006/api2/json"
    assert (
        specs.api_url({"PVE_ACCESS_HOST": "https://pve.lan:443/"})
        == "https://pve.lan:443/api2/json"
    )
    assert (
        specs.api_url({"PVE_ACCESS_HOST": "[fd00::1]:8007"}) == "https://[fd00::1]:8007/api2/json"
    )
    # What the adapter refuses, Packer is never handed either (no silent http -> https upgrade).
    for bad in ("http://pve.lan:8006", "https://pve.lan:8006/api2/json"):
        with pytest.raises(ConfigError, match="PVE_ACCESS_HOST"):
            specs.api_url({"PVE_ACCESS_HOST": bad})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("none", None),
        ("SHA256:" + "AB" * 32, "sha256:" + "ab" * 32),
        ("ab" * 32, "sha256:" + "ab" * 32),
        ("md5:" + "0" * 32, "md5:" + "0" * 32),
    ],
)
def test_checksum_forms(raw: str, expected: str | None) -> None:
    assert normalise_checksum(raw, "t") == expected


def test_file_checksums_name_their_checksum_file() -> None:
    assert parse_checksum("file:https://x/SHA256SUMS", "t") == (None, "https://x/SHA256SUMS")
    assert parse_checksum("file:./SHA256SUMS", "t", "/tpl") == (None, "/tpl/SHA256SUMS")
    assert parse_checksum("none", "t") == (None, None)


@pytest.mark.parametrize("raw", ["sha256:abc", "sha256:zz" + "0" * 62, "md5:" + "0" * 64])
def test_bad_checksums_are_config_errors(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalise_checksum(raw, "t")


def test_fingerprint_follows_inputs_only(tmp_path: Path) -> None:
    folder = _write_template(tmp_path)

    def fingerprint(node: str = "pve1"):
        t = _one(folder)
        return compute(t, _analysis(t), {"proxmox_node": node}, tmp_path)

    first = fingerprint()
    (folder / "README.md").write_text("edited, still not an input\n")
    (folder / "out").mkdir(exist_ok=True)
    (folder / "out" / "manifest.json").write_text("{}")
    assert fingerprint() == first
    (folder / "http" / "user-data").write_text("#cloud-config\npackages: [curl]\n")
    second = fingerprint()
    assert second.value != first.value
    stable = {"fingerprint": first.value, "inputs": first.inputs}
    assert input_staleness(second, stable) == [
        "inputs changed: changed layers/l1/templates/noble/http/user-data"
    ]
    moved = fingerprint("pve2")
    assert "changed var:proxmox_node" in input_staleness(moved, {**stable, "fingerprint": "x"})[0]


def test_parse_cache_is_keyed_by_content(tmp_path: Path) -> None:
    folder = _write_template(tmp_path)
    cache = tmp_path / "cache"
    cold = _one(folder, cache)
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 2  # what a warm list reads, and the lines and expressions apart
    assert _one(folder, cache).variables == cold.variables  # from the cache
    hcl = folder / "noble.pkr.hcl"
    hcl.write_text(hcl.read_text().replace('default = "isos"', 'default = "nas"'))
    assert _one(folder, cache).variables["iso_storage"].default == "nas"
    assert len(list(cache.rglob("*.json"))) == 4
    for entry in entries:
        entry.write_text("{not json")  # a damaged entry is ignored and rewritten
    hcl.write_text(ISO_TEMPLATE)
    again = _one(folder, cache)
    assert again.variables["iso_storage"].default == "isos"
    assert (
        again.folder_spec.files[0].where("variable", 1)
        == "layers/l1/templates/noble/noble.pkr.hcl:12"
    )


def test_update_stable_semantics() -> None:
    assert update_stable_wanted(None) and update_stable_wanted("") and update_stable_wanted("yes")
    assert update_stable_wanted(" YES ")
    for other in ("no", "true", "1", "y", "never"):
        assert not update_stable_wanted(other)


def test_iso_plan_skips_matching_and_refuses_a_changed_checksum(tmp_path: Path) -> None:
    t = _one(_write_template(tmp_path))
    boot, seed = _analysis(t, isos=True).isos
    volid = boot.volid("local")
    present = {"isos": {volid: {"volid": volid, "size": 10}}}
    ledger = {volid: {"checksum": boot.checksum}}
    plan = plan_isos([boot, seed], present, ledger, "local", {seed.volid("local"): 3})
    assert [(a.volid, a.action) for a in plan] == [
        (volid, "present"),
        ("local:iso/cidata.iso", "upload"),
    ]
    plan = plan_isos([boot], present, {volid: {"checksum": "sha256:" + "0" * 64}}, "local")
    assert plan[0].action == "conflict"
    assert plan_isos([boot], {}, {}, "local")[0].action == "download"


# ---------------------------------------------------------------- through the front door


def _env() -> dict[str, str]:
    return base_env(PVE_NODE="pve1", PVE_STORAGE_VM="local-lvm")


def test_list_names_the_file_of_a_parse_error_and_lists_the_rest(sample_repo: Path) -> None:
    bad = sample_repo / "layers" / "l1" / "templates" / "debian12-k3s" / "broken.pkr.hcl"
    bad.write_text('source "null" "x" {\n  communicator = \n}\n')
    result = run_inv(sample_repo, "l1.list", env=_env())
    assert result.returncode == 2, str(result)
    row = next(line for line in result.stdout.splitlines() if line.startswith("debian12-k3s"))
    assert "error:" in row  # the row of the broken template (long cells wrap)
    text = " ".join(result.stdout.split())
    assert "error: layers/l1/templates/debian12-k3s/broken.pkr.hcl:2:18: invalid HCL" in text
    assert "Traceback" not in result.output
    assert "debian12-base" in result.stdout and "no stable artifact" in result.stdout
    assert "1 of 2 template folder(s) could not be read: debian12-k3s" in result.stderr


def test_list_refuses_a_loose_template_file(sample_repo: Path) -> None:
    (sample_repo / "layers" / "l1" / "templates" / "loose.pkr.hcl").write_text("")
    result = run_inv(sample_repo, "l1.list", env=_env())
    assert result.returncode == 2 and "its own folder" in result.stderr, str(result)


def test_list_reports_every_template_as_json(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "l1.list", "--json", env=_env())
    assert result.returncode == 0, str(result)
    rows = {r["template"]: r for r in json.loads(result.stdout)}
    assert rows["debian12-k3s"]["source"] == "proxmox-clone.k3s"
    assert rows["debian12-base"]["reasons"] == ["no stable artifact"]
    assert not rows["debian12-k3s"]["checked_on_proxmox"]


def test_bad_layer_settings_are_reported_with_the_file(sample_repo: Path) -> None:
    layer = sample_repo / "layers" / "l1" / "layer.yaml"
    layer.write_text(layer.read_text() + "\n" + "extra:\n  packer: 1\n")
    text = layer.read_text().replace("  connection:", "  connectoin:", 1)
    layer.write_text(text)
    result = run_inv(sample_repo, "l1.list", env=_env())
    assert result.returncode == 2, str(result)
    assert "layer.yaml" in result.stderr and "connectoin" in result.stderr


def test_artifacts_written_in_the_same_second_keep_their_order(tmp_path: Path) -> None:
    from run_support import standalone_effects

    from tasks.l1.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path, "tpl", standalone_effects())
    base = {"name": "tpl", "node": "pve1", "storage": "local-lvm"}
    first, second, third = (store.write({**base, "vmid": n}, now=1_800_000_000) for n in (1, 2, 3))
    assert [a.file for a in store.artifacts()] == [first.file, second.file, third.file]
    assert store.find(None).data["vmid"] == 3


@pytest.mark.parametrize(
    ("constraint", "have", "failed"),
    [
        (">= 1.7.0", (1, 6, 6), ">= 1.7.0"),
        (">= 1.7.0, < 2.0.0", (1, 9, 4), None),
        ("~> 1.9", (1, 10, 0), None),
        ("~> 1.9", (2, 0, 0), "~> 1.9"),
        ("~> 1.9.2", (1, 10, 0), "~> 1.9.2"),
        ("= 1.6.6", (1, 6, 6), None),
        ("!= 1.6.6", (1, 6, 6), "!= 1.6.6"),
        ("1.8", (1, 8, 0), None),
    ],
)
def test_required_version_constraints(constraint: str, have: tuple, failed: str | None) -> None:
    from tasks.adapters.packer import unmet

    assert unmet(constraint, have) == failed


def test_too_old_packer_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    from tasks.adapters.packer import PackerVersion
    from tasks.l1.tools import packer_problems, require_packer

    t = _one(_write_template(tmp_path))
    t.folder_spec.required_version.append((">= 1.9.0", "noble.pkr.hcl:3"))
    problems = packer_problems(t, PackerVersion("1.6.6"))
    assert problems == [
        "noble.pkr.hcl:3: required_version = '>= 1.9.0' (Packer 1.6.6 fails '>= 1.9.0')",
        "required_plugins (proxmox) needs Packer 1.7 or later for `packer init`; this machine has 1.6.6",
    ]
    assert packer_problems(t, PackerVersion("1.11.2")) == []
    with pytest.raises(ConfigError, match="the installed Packer 1.6.6 is too old"):
        require_packer(t, PackerVersion("1.6.6"))


def test_machine_readable_output_is_shown_as_text_and_its_artifacts_kept() -> None:
    from tasks.adapters.packer import MachineOutput

    out = MachineOutput()
    lines = [
        "1700000000,,ui,say,==> proxmox-clone.k3s: Converting VM to template%!(PACKER_COMMA) now",
        "1700000000,,ui,error,Build 'x' errored\\nsecond line",
        "1700000001,proxmox-clone.k3s,artifact-count,1",
        "1700000001,proxmox-clone.k3s,artifact,0,builder-id,proxmox.clone",
        "1700000001,proxmox-clone.k3s,artifact,0,id,pve1:101",
        "1700000001,proxmox-clone.k3s,artifact,0,string,A template was created: 101",
        "1700000001,proxmox-clone.k3s,artifact,0,end",
        "1700000001,null.test,artifact,0,id,Null",
    ]
    shown = [out.feed(line + "\n") for line in lines]
    assert shown[0] == ("==> proxmox-clone.k3s: Converting VM to template, now\n", False)
    assert shown[1] == ("Build 'x' errored\nsecond line\n", True)
    assert shown[2:] == [None] * 6
    assert out.vmid("proxmox-clone.k3s") == 101 and out.vmid("null.test") is None
    assert out.artifacts["proxmox-clone.k3s"][0]["builder-id"] == "proxmox.clone"
