"""L1 on templates shaped like published Proxmox Packer repositories, through the front door.

The corpus (written here, in the layouts NOTES.md describes; nothing copied): a proxmox-iso
template with an http/ autoinstall folder, a boot_command and a `file:` checksum; proxmox-clone
plus a null build with Ansible provisioners; `vault()` and `jsondecode(file(...))` locals; three
nested builds in one folder sharing a linked common/ folder; a list of scripts in a pkrvars file
with `${abspath(path.root)}` paths, `file()` and `templatefile()`; a template run from the
repository root (`workdir: repo`) with `fileset()`; and one invalid file. For each: the `l1.list`
rows, the inputs, staleness after editing each kind of input, `l1.isos --dry-run` and
`l1.build --dry-run` offline.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import base_env, run_inv

TEMPLATES = "layers/l1/templates"
DEBIAN_SHA = "8fde79cfc6b20a696200fc5c15219cf6d721e8feb367e9e0e33a79d1cb68fa83"
UBUNTU_SHA = "9bc6028870aef3f74f4e16b900008179e78b130e6b0b9a140635434a46aa98b0"

PROXMOX_TOKEN_VARS = """
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
"""

CORPUS: dict[str, dict[str, str]] = {
    # proxmox-iso, Ubuntu autoinstall over Packer's HTTP server, a file: checksum; needs a newer
    # Packer (required_version, required_plugins) than Debian's 1.6.6.
    "ubuntu-noble": {
        "ubuntu-noble.pkr.hcl": """
packer {
  required_version = ">= 1.9.0"
  required_plugins {
    proxmox = {
      version = ">= 1.1.8"
      source  = "github.com/hashicorp/proxmox"
    }
  }
}

variable "proxmox_api_url" {
  type = string
}

variable "proxmox_api_token_id" {
  type = string
}

variable "proxmox_api_token_secret" {
  type      = string
  sensitive = true
}

variable "iso_checksum" {
  type    = string
  default = "file:https://releases.ubuntu.invalid/24.04.1/SHA256SUMS"
}

locals {
  iso_name = "ubuntu-24.04.1-live-server-amd64.iso"
}

source "proxmox-iso" "noble" {
  proxmox_url = var.proxmox_api_url
  username    = var.proxmox_api_token_id
  token       = var.proxmox_api_token_secret
  node        = "pve1"

  boot_iso {
    iso_url          = "https://releases.ubuntu.invalid/24.04.1/${local.iso_name}"
    iso_checksum     = var.iso_checksum
    iso_storage_pool = "local"
    unmount          = true
  }

  http_directory = "http"
  boot_wait      = "10s"
  boot_command = [
    "<esc><wait>e<wait>",
    "<down><down><down><end>",
    " autoinstall ds=nocloud-net\\\\;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/",
    "<f10>",
  ]
  ssh_username = "ubuntu"
  ssh_timeout  = "30m"
}

build {
  sources = ["source.proxmox-iso.noble"]

  provisioner "shell" {
    inline = ["while [ ! -f /var/lib/cloud/instance/boot-finished ]; do sleep 1; done"]
  }

  provisioner "file" {
    source      = "files/99-pve.cfg"
    destination = "/tmp/99-pve.cfg"
  }
}
""",
        "http/user-data": "#cloud-config\nautoinstall:\n  version: 1\n",
        "http/meta-data": "",
        "files/99-pve.cfg": "datasource_list: [NoCloud, ConfigDrive]\n",
        "README.md": "not an input\n",
    },
    # proxmox-clone for the template, a null build to try the playbook on a test host.
    "clone-ansible": {
        "docker.pkr.hcl": """
variable "proxmox_url" {
  type = string
}

variable "proxmox_username" {
  type        = string
  description = "the API token id (user@realm!token)"
}

variable "proxmox_token" {
  type      = string
  sensitive = true
}

variable "proxmox_node" {
  type = string
}

variable "test_host" {
  type    = string
  default = "127.0.0.1"
}

source "proxmox-clone" "docker" {
  proxmox_url  = var.proxmox_url
  username     = var.proxmox_username
  token        = var.proxmox_token
  node         = var.proxmox_node
  clone_vm     = "ubuntu-noble"
  vm_name      = "docker-host"
  ssh_username = "ubuntu"
}

source "null" "test" {
  communicator = "ssh"
  ssh_host     = var.test_host
  ssh_username = "ubuntu"
}

build {
  sources = ["source.proxmox-clone.docker", "source.null.test"]

  provisioner "ansible" {
    playbook_file    = "./ansible/docker.yml"
    ansible_env_vars = ["ANSIBLE_CONFIG=ansible/ansible.cfg"]
    extra_arguments  = ["--extra-vars", "docker_users=ubuntu"]
  }

  provisioner "ansible" {
    only          = ["null.test"]
    playbook_file = "checks/verify.yml"
  }
}
""",
        "ansible/docker.yml": "- hosts: all\n  roles: [docker]\n",
        "ansible/ansible.cfg": "[defaults]\nroles_path = roles\n",
        "ansible/roles/docker/tasks/main.yml": "- name: docker\n  apt: {name: docker.io}\n",
        "checks/verify.yml": "- hosts: all\n  tasks: []\n",
    },
    # Secrets from Vault and settings from a JSON file, read through locals.
    "vault-secrets": {
        "vault.pkr.hcl": """
variable "proxmox_url" {
  type = string
}

locals {
  proxmox_token = vault("secret/data/proxmox", "token")
  iso_url       = vault("secret/data/isos", "debian")
  settings      = jsondecode(file("${path.root}/settings.json"))
}

source "proxmox-iso" "vault" {
  proxmox_url      = var.proxmox_url
  username         = local.settings.token_id
  token            = local.proxmox_token
  node             = local.settings.node
  iso_url          = local.iso_url
  iso_checksum     = "sha256:${local.settings.iso_sha256}"
  iso_storage_pool = "local"
  http_directory   = local.settings.http_dir
  ssh_username     = "debian"
}

build {
  sources = ["source.proxmox-iso.vault"]
}
""",
        "settings.json": json.dumps(
            {
                "token_id": "packer@pve!build",
                "node": "pve1",
                "iso_sha256": DEBIAN_SHA,
                "http_dir": "http",
            }  # fmt: skip
        ),
        "http/preseed.cfg": "d-i debian-installer/locale string en_US.UTF-8\n",
    },
    # Shared HCL: no build block. Linked into distros/.
    "common": {
        "variables.pkr.hcl": PROXMOX_TOKEN_VARS,
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
  ssh_timeout             = "30m"
}
""",
        "http/preseed.cfg": "d-i passwd/username string packer\n",
        "scripts/update.sh": "#!/bin/sh\napt-get update\n",
        "scripts/cleanup.sh": "#!/bin/sh\napt-get clean\n",
    },
    # Three builds of one folder, as nested sources over the shared base source.
    "distros": {
        "build.pkr.hcl": f"""
build {{
  name = "distros"

  source "proxmox-iso.base" {{
    name         = "debian12"
    vm_name      = "debian12"
    iso_url      = "https://cdimage.debian.invalid/12.7.0/debian-12.7.0-amd64-netinst.iso"
    iso_checksum = "sha256:{DEBIAN_SHA}"
    boot_command = ["<esc><wait>auto url=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/preseed.cfg<enter>"]
  }}

  source "proxmox-iso.base" {{
    name           = "ubuntu2204"
    vm_name        = "ubuntu2204"
    iso_url        = "https://releases.ubuntu.invalid/22.04.5/ubuntu-22.04.5-live-server-amd64.iso"
    iso_checksum   = "sha256:{UBUNTU_SHA}"
    http_directory = "${{path.root}}/http/ubuntu"
  }}

  source "proxmox-iso.base" {{
    name     = "rocky9"
    vm_name  = "rocky9"
    iso_file = "local:iso/Rocky-9.4-x86_64-minimal.iso"
  }}

  provisioner "shell" {{
    scripts = ["${{path.root}}/../common/scripts/update.sh"]
  }}

  provisioner "shell" {{
    only   = ["proxmox-iso.rocky9"]
    script = "${{path.root}}/scripts/rocky.sh"
  }}

  provisioner "shell" {{
    scripts = ["${{path.root}}/../common/scripts/cleanup.sh"]
  }}
}}
""",
        "http/ubuntu/user-data": "#cloud-config\n",
        "scripts/rocky.sh": "#!/bin/sh\ndnf -y update\n",
    },
    # A list of scripts in a pkrvars file; paths built with abspath(path.root), file(),
    # templatefile() and locals.
    "k8s-node": {
        "k8s.pkr.hcl": """
variable "proxmox_url" {
  type = string
}

variable "proxmox_username" {
  type = string
}

variable "proxmox_password" {
  type      = string
  sensitive = true
}

variable "proxmox_node" {
  type = string
}

variable "provision_scripts" {
  type    = list(string)
  default = []
}

variable "k8s_version" {
  type    = string
  default = "1.30"
}

locals {
  data_dir = "${abspath(path.root)}/data"
  motd     = file("${local.data_dir}/motd")
  kubeadm  = templatefile("${abspath(path.root)}/data/kubeadm.yaml.pkrtpl", { version = var.k8s_version })
}

source "proxmox-clone" "k8s" {
  proxmox_url  = var.proxmox_url
  username     = var.proxmox_username
  password     = var.proxmox_password
  node         = var.proxmox_node
  clone_vm     = "debian12-base"
  vm_name      = "k8s-node"
  ssh_username = "debian"
}

build {
  sources = ["source.proxmox-clone.k8s"]

  provisioner "shell" {
    scripts = var.provision_scripts
  }

  provisioner "file" {
    source      = "${local.data_dir}/sysctl.conf"
    destination = "/tmp/sysctl.conf"
  }

  provisioner "shell" {
    inline = ["echo '${local.motd}' | sudo tee /etc/motd", "echo '${local.kubeadm}' > /tmp/kubeadm.yaml"]
  }
}
""",
        "scripts.auto.pkrvars.hcl": (
            'provision_scripts = [\n  "scripts/10-base.sh",\n  "scripts/20-containerd.sh",\n'
            '  "scripts/30-kubeadm.sh",\n]\n'
        ),
        "scripts/10-base.sh": "#!/bin/sh\necho base\n",
        "scripts/20-containerd.sh": "#!/bin/sh\necho containerd\n",
        "scripts/30-kubeadm.sh": "#!/bin/sh\necho kubeadm\n",
        "scripts/99-unused.sh": "#!/bin/sh\necho not listed\n",
        "data/motd": "Welcome to a k8s node\n",
        "data/sysctl.conf": "net.ipv4.ip_forward = 1\n",
        "data/kubeadm.yaml.pkrtpl": "kubernetesVersion: ${version}\n",
    },
    # Written to be run as `packer build cwd-relative` from the repository root.
    "cwd-relative": {
        "cwd.pkr.hcl": """
variable "proxmox_url" {
  type = string
}

variable "proxmox_username" {
  type = string
}

variable "proxmox_password" {
  type      = string
  sensitive = true
}

variable "proxmox_node" {
  type = string
}

source "proxmox-clone" "cwd" {
  proxmox_url  = var.proxmox_url
  username     = var.proxmox_username
  password     = var.proxmox_password
  node         = var.proxmox_node
  clone_vm     = "debian12-base"
  ssh_username = "debian"
}

build {
  sources = ["source.proxmox-clone.cwd"]

  provisioner "shell" {
    scripts = [for s in fileset(path.root, "scripts/*.sh") : "${path.root}/${s}"]
  }

  provisioner "file" {
    source      = "cwd-relative/files/motd"
    destination = "/tmp/motd"
  }

  provisioner "file" {
    source      = "${path.cwd}/cwd-relative/files/issue"
    destination = "/tmp/issue"
  }
}
""",
        "scripts/a.sh": "#!/bin/sh\necho a\n",
        "files/motd": "hello\n",
        "files/issue": "issue\n",
    },
    "broken": {"broken.pkr.hcl": 'source "null" "x" {\n  communicator = \n}\n'},
}

# What Debian's Packer 1.6.6 can read (no required_plugins / required_version above it).
PACKER_166 = ["clone-ansible", "vault-secrets", "distros", "k8s-node", "cwd-relative", "broken"]
LINKS = {"distros/variables.pkr.hcl": "common/variables.pkr.hcl",
         "distros/source.pkr.hcl": "common/source.pkr.hcl"}  # fmt: skip
LAYER_OVERRIDES = """
  templates:
    clone-ansible:
      connection:
        proxmox_username: "${PM_TOKEN_ID}"
    cwd-relative:
      workdir: repo
"""


def write_corpus(repo: Path, *, overrides: bool = True) -> Path:
    """Replace the sample templates with the corpus; the templates folder."""
    templates = repo / TEMPLATES
    shutil.rmtree(templates)
    for folder, files in CORPUS.items():
        for rel, text in files.items():
            path = templates / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for link, target in LINKS.items():
        os.symlink(os.path.relpath(templates / target, (templates / link).parent), templates / link)
    if overrides:
        layer = repo / "layers/l1/layer.yaml"
        layer.write_text(layer.read_text().rstrip() + "\n" + LAYER_OVERRIDES)
    return templates


OFFLINE = {
    # Nothing listens on port 9 of 127.0.0.1: every API call is refused at once.
    "PVE_ACCESS_HOST": "127.0.0.1:9",
    "PVE_RETRIES": "1",
    "PVE_NODE": "pve1",
    "PVE_STORAGE_VM": "local-lvm",
    "PVE_STORAGE_ISO": "local",
    "PM_TOKEN_ID": "homelab@pve!runner",
    "PM_TOKEN_SECRET": "corpus-token-secret-1234",
    "PM_USER": "root@pam",
    "PM_PASSWORD": "corpus-password-5678",
}


def _env(**extra: str) -> dict[str, str]:
    return base_env(**{**OFFLINE, **extra})


def _rows(repo: Path, **env: str) -> dict[str, dict]:
    result = run_inv(repo, "l1.list", "--json", env=_env(**env))
    assert result.returncode == 2, result  # the broken folder fails the run...
    assert "Traceback" not in result.output
    return {r["template"]: r for r in json.loads(result.stdout)}  # ...but every row is there


def _inputs(row: dict) -> set[str]:
    return {k.removeprefix(TEMPLATES + "/") for k in row["inputs"] if not k.startswith("var:")}


@pytest.fixture
def corpus(sample_repo: Path) -> Path:
    write_corpus(sample_repo)
    return sample_repo


def test_every_build_is_a_row_and_the_broken_folder_is_one_row(corpus: Path) -> None:
    rows = _rows(corpus)
    assert set(rows) == {
        "ubuntu-noble",
        "clone-ansible/docker",
        "clone-ansible/test",
        "vault-secrets",
        "distros/debian12",
        "distros/ubuntu2204",
        "distros/rocky9",
        "k8s-node",
        "cwd-relative",
        "broken",
    }  # common/ has no build block: shared HCL, not a template
    assert rows["broken"]["error"].startswith(f"{TEMPLATES}/broken/broken.pkr.hcl:2")
    assert "invalid HCL" in rows["broken"]["error"]
    assert rows["distros/ubuntu2204"]["source"] == "proxmox-iso.ubuntu2204 (from proxmox-iso.base)"
    assert rows["distros/rocky9"]["build"] == "distros.proxmox-iso.rocky9"
    assert rows["clone-ansible/test"]["build"] == "null.test"
    assert rows["cwd-relative"]["workdir"] == "repo"
    table = run_inv(corpus, "l1.list", env=_env())
    assert table.returncode == 2, table
    assert "shared HCL, not templates (no build block): common" in table.stdout
    broken = next(line for line in table.stdout.splitlines() if line.startswith("broken"))
    assert "error:" in broken
    assert f"error: {TEMPLATES}/broken/broken.pkr.hcl:2:18: invalid HCL" in " ".join(
        table.stdout.split()
    )
    assert "1 of 10 template folder(s) could not be read: broken" in table.stderr


def test_inputs_are_found_however_the_path_is_built(corpus: Path) -> None:
    rows = _rows(corpus)
    assert _inputs(rows["ubuntu-noble"]) == {
        "ubuntu-noble/ubuntu-noble.pkr.hcl",
        "ubuntu-noble/http/user-data",
        "ubuntu-noble/http/meta-data",
        "ubuntu-noble/files/99-pve.cfg",
    }
    # The playbook's folder counts whole (its roles); the verify playbook only for the null build.
    docker, test = _inputs(rows["clone-ansible/docker"]), _inputs(rows["clone-ansible/test"])
    assert "clone-ansible/ansible/roles/docker/tasks/main.yml" in docker
    assert "clone-ansible/ansible/ansible.cfg" in docker
    assert "clone-ansible/checks/verify.yml" not in docker
    assert test == docker | {"clone-ansible/checks/verify.yml"}
    # jsondecode(file(...)): the file read, and the folder one of its values names.
    assert _inputs(rows["vault-secrets"]) == {
        "vault-secrets/vault.pkr.hcl",
        "vault-secrets/settings.json",
        "vault-secrets/http/preseed.cfg",
    }
    # Linked shared files are named by the file they lead to; per-build overrides and `only`.
    shared = {
        "common/variables.pkr.hcl",
        "common/source.pkr.hcl",
        "distros/build.pkr.hcl",
        "common/scripts/update.sh",
        "common/scripts/cleanup.sh",
    }
    assert _inputs(rows["distros/debian12"]) == shared | {"common/http/preseed.cfg"}
    assert _inputs(rows["distros/ubuntu2204"]) == shared | {"distros/http/ubuntu/user-data"}
    assert _inputs(rows["distros/rocky9"]) == shared | {
        "common/http/preseed.cfg",
        "distros/scripts/rocky.sh",
    }
    # The pkrvars script list, abspath(path.root) locals, file() and templatefile() arguments.
    assert _inputs(rows["k8s-node"]) == {
        "k8s-node/k8s.pkr.hcl",
        "k8s-node/scripts.auto.pkrvars.hcl",
        "k8s-node/scripts/10-base.sh",
        "k8s-node/scripts/20-containerd.sh",
        "k8s-node/scripts/30-kubeadm.sh",
        "k8s-node/data/motd",
        "k8s-node/data/sysctl.conf",
        "k8s-node/data/kubeadm.yaml.pkrtpl",
    }
    # Run from the templates folder: cwd-relative paths, path.cwd and fileset() all resolve.
    assert _inputs(rows["cwd-relative"]) == {
        "cwd-relative/cwd.pkr.hcl",
        "cwd-relative/scripts/a.sh",
        "cwd-relative/files/motd",
        "cwd-relative/files/issue",
    }
    assert all(r["warnings"] == [] for n, r in rows.items() if n not in ("vault-secrets", "broken"))


def test_values_that_cannot_be_evaluated_are_warnings_naming_file_and_line(corpus: Path) -> None:
    rows = _rows(corpus)
    [warning] = rows["vault-secrets"]["warnings"]
    assert warning.startswith(f"{TEMPLATES}/vault-secrets/vault.pkr.hcl:17: iso_url")
    assert "vault() reads HashiCorp Vault at build time" in warning
    assert "not fingerprinted" in warning
    listed = run_inv(corpus, "l1.list", env=_env())
    assert "warning: vault-secrets: " in listed.stderr and "vault.pkr.hcl:17" in listed.stderr


def _make_stable(repo: Path, rows: dict[str, dict], names: list[str]) -> None:
    """A hand-written stable.json per template (no `artifact` key), at today's fingerprint."""
    for name in names:
        row = rows[name]
        folder = repo / "layers/l1/artifacts" / name
        folder.mkdir(parents=True, exist_ok=True)
        pointer = {"name": name.replace("/", "-"), "node": "pve1", "vmid": 9100 + len(name),
                   "storage": "local-lvm", "fingerprint": row["fingerprint"], "inputs": row["inputs"]}  # fmt: skip
        (folder / "stable.json").write_text(json.dumps(pointer))


EDITS = [
    # (what kind of input, the file to edit under templates/, the builds it makes stale)
    ("http/ folder file", "ubuntu-noble/http/user-data", ["ubuntu-noble"]),
    ("plain relative file", "ubuntu-noble/files/99-pve.cfg", ["ubuntu-noble"]),
    ("a role beside the playbook", "clone-ansible/ansible/roles/docker/tasks/main.yml",
     ["clone-ansible/docker", "clone-ansible/test"]),
    ("a provisioner only one build runs", "clone-ansible/checks/verify.yml", ["clone-ansible/test"]),
    ("file() read by a jsondecode local", "vault-secrets/settings.json", ["vault-secrets"]),
    ("a folder named by a JSON value", "vault-secrets/http/preseed.cfg", ["vault-secrets"]),
    ("linked shared HCL", "common/source.pkr.hcl",
     ["distros/debian12", "distros/ubuntu2204", "distros/rocky9"]),
    ("a shared script", "common/scripts/update.sh",
     ["distros/debian12", "distros/ubuntu2204", "distros/rocky9"]),
    ("a nested build's own http folder", "distros/http/ubuntu/user-data", ["distros/ubuntu2204"]),
    ("a script only one nested build runs", "distros/scripts/rocky.sh", ["distros/rocky9"]),
    ("a script listed in pkrvars", "k8s-node/scripts/20-containerd.sh", ["k8s-node"]),
    ("file() of a local built with abspath", "k8s-node/data/motd", ["k8s-node"]),
    ("an abspath(path.root) path", "k8s-node/data/sysctl.conf", ["k8s-node"]),
    ("a templatefile() template", "k8s-node/data/kubeadm.yaml.pkrtpl", ["k8s-node"]),
    ("a fileset() match", "cwd-relative/scripts/a.sh", ["cwd-relative"]),
    ("a path relative to the repository root", "cwd-relative/files/motd", ["cwd-relative"]),
    ("a path.cwd path", "cwd-relative/files/issue", ["cwd-relative"]),
]  # fmt: skip


def test_each_kind_of_input_makes_exactly_its_builds_stale(corpus: Path) -> None:
    rows = _rows(corpus)
    names = [n for n in rows if n != "broken"]
    _make_stable(corpus, rows, names)
    fresh = _rows(corpus)
    assert all(fresh[n]["up_to_date"] for n in names), {n: fresh[n]["reasons"] for n in names}
    templates = corpus / TEMPLATES
    for kind, rel, stale in EDITS:
        path = templates / rel
        before = path.read_text()
        path.write_text(before + ("\n" if rel.endswith(".json") else "\n# edited\n"))
        now = _rows(corpus)
        got = sorted(n for n in names if not now[n]["up_to_date"])
        assert got == sorted(stale), (kind, got)
        real = os.path.relpath(os.path.realpath(path), corpus)
        for name in stale:
            assert now[name]["reasons"] == [f"inputs changed: changed {real}"], (kind, name)
        path.write_text(before)
    # Files that are not inputs change nothing.
    for rel in ("ubuntu-noble/README.md", "k8s-node/scripts/99-unused.sh"):
        (templates / rel).write_text("edited\n")
    assert all(r["up_to_date"] for n, r in _rows(corpus).items() if n != "broken")
    # A new file a fileset() matches, and a script added to the pkrvars list, are new inputs.
    (templates / "cwd-relative/scripts/b.sh").write_text("#!/bin/sh\n")
    pkrvars = templates / "k8s-node/scripts.auto.pkrvars.hcl"
    pkrvars.write_text(pkrvars.read_text().replace("]", '  "scripts/99-unused.sh",\n]'))
    now = _rows(corpus)
    assert now["cwd-relative"]["reasons"] == [
        f"inputs changed: added {TEMPLATES}/cwd-relative/scripts/b.sh"
    ]
    assert now["k8s-node"]["reasons"] == [
        f"inputs changed: changed {TEMPLATES}/k8s-node/scripts.auto.pkrvars.hcl, "
        f"added {TEMPLATES}/k8s-node/scripts/99-unused.sh"
    ]
    # A placement value (the node) is an input too; the API token is not.
    moved = _rows(corpus, PVE_NODE="pve2", PM_TOKEN_SECRET="another-token-0000")
    assert moved["distros/debian12"]["reasons"] == ["inputs changed: changed var:proxmox_node"]
    assert moved["vault-secrets"]["up_to_date"]  # declares no placement variable


def test_history_and_list_agree_on_a_hand_written_stable_pointer(corpus: Path) -> None:
    rows = _rows(corpus)
    _make_stable(corpus, rows, ["k8s-node"])
    row = _rows(corpus)["k8s-node"]
    assert row["stable"]["vmid"] == 9108 and row["stable"]["artifact"] is None
    history = run_inv(corpus, "l1.history", "k8s-node", env=_env())
    assert history.returncode == 0, history
    assert "no stable artifact yet" not in history.stdout
    assert "stable: vmid 9108 on pve1 (written by hand or imported" in history.stdout
    data = json.loads(run_inv(corpus, "l1.history", "k8s-node", "--json", env=_env()).stdout)
    assert data["stable_pointer"]["vmid"] == 9108 and data["artifacts"] == []


def test_isos_dry_run_offline_reports_each_iso_and_the_ones_to_stage_by_hand(corpus: Path) -> None:
    dry = run_inv(corpus, "l1.isos", "--dry-run", env=_env())
    assert "Traceback" not in dry.output
    lines = dry.stdout.splitlines()

    def row(template: str) -> list[str]:
        return [line for line in lines if line.startswith(template + " ")]

    def unchecked(template: str, volume: str, detail: str) -> bool:
        return any(
            r.split()[1:4] == [volume, "not", "checked"] and detail in r for r in row(template)
        )

    assert unchecked("ubuntu-noble", "local:iso/ubuntu-24.04.1-live-server-amd64.iso", "https://")
    assert unchecked("distros/debian12", "local:iso/debian-12.7.0-amd64-netinst.iso", "https://")
    assert unchecked(
        "distros/ubuntu2204", "local:iso/ubuntu-22.04.5-live-server-amd64.iso", "22.04.5"
    )
    assert unchecked("distros/rocky9", "local:iso/Rocky-9.4-x86_64-minimal.iso", "no iso_url")
    [vault] = row("vault-secrets")
    text = " ".join(dry.stdout.split())  # long cells wrap
    assert "stage yourself" in vault
    assert (
        "stage this ISO yourself: iso_url = '${local.iso_url}' cannot be evaluated here (vault()"
        in text
    )
    assert (
        "not checked in this dry run: whether each ISO is on the storage (needs the Proxmox API"
        in text
    )
    assert (
        "ubuntu-24.04.1-live-server-amd64.iso: the checksum" in text
    )  # the file: checksum could not be fetched offline either
    assert "broken: not read, its ISOs are not staged" in dry.stderr
    assert dry.returncode == 2, (
        dry
    )  # some ISOs cannot be staged by the runner, and one folder is broken


def test_build_dry_run_offline_lists_missing_variables_before_any_api_call(corpus: Path) -> None:
    # ubuntu-noble's variables have names the layer mapping does not know.
    dry = run_inv(corpus, "l1.build", "ubuntu-noble", "--dry-run", env=_env())
    assert dry.returncode == 2, dry
    for var in ("proxmox_api_url", "proxmox_api_token_id", "proxmox_api_token_secret"):
        assert var in dry.stderr
    assert "ubuntu-noble.pkr.hcl:" in dry.stderr and "PKR_VAR_proxmox_api_url" in dry.stderr
    # ...and on this machine's Packer it would not even start: said in the same error.
    assert (
        "required_version = '>= 1.9.0'" in dry.stderr and "needs Packer 1.7 or later" in dry.stderr
    )
    assert "cannot reach the Proxmox API" not in dry.output  # checked before any API call

    # Every build of a folder, each with its own outcome; a missing env value named.
    dry = run_inv(corpus, "l1.build", "distros", "--dry-run", env=_env(PM_TOKEN_SECRET=""))
    assert dry.returncode == 2, dry
    assert (
        "3 of 3 template(s) failed: distros/debian12, distros/rocky9, distros/ubuntu2204"
        in dry.stderr
    )
    assert "proxmox_token (set PM_TOKEN_SECRET)" in dry.stderr


def _said(result) -> str:
    return " ".join(result.stdout.split())  # plans and tables wrap long lines


def test_build_dry_run_offline_plans_and_says_what_needed_the_api(corpus: Path) -> None:
    dry = run_inv(corpus, "l1.build", "distros/ubuntu2204", "--dry-run", env=_env())
    assert dry.returncode == 0, dry
    assert "distros/ubuntu2204: build: no stable artifact" in dry.stdout
    assert (
        "packer validate, build in layers/l1/templates/distros "
        "(-only=distros.proxmox-iso.ubuntu2204)" in _said(dry)
    )
    assert "not checked in this dry run (needs the Proxmox API" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    # Run from the repository root: Packer gets the folder name there.
    dry = run_inv(corpus, "l1.build", "cwd-relative", "--dry-run", env=_env())
    assert dry.returncode == 0, dry
    assert "packer validate, build cwd-relative in layers/l1/templates (workdir: repo)" in _said(
        dry
    )
    # The per-template mapping: clone-ansible's proxmox_username is the token id, not PM_USER.
    dry = run_inv(corpus, "l1.build", "clone-ansible/docker", "--dry-run", env=_env())
    assert dry.returncode == 0, dry
    assert "proxmox_username <- PM_TOKEN_ID" in _said(dry)
    assert OFFLINE["PM_TOKEN_SECRET"] not in dry.output and OFFLINE["PM_PASSWORD"] not in dry.output


def test_a_name_the_cli_does_not_know_lists_the_templates(corpus: Path) -> None:
    missing = run_inv(corpus, "l1.build", env=_env())
    assert missing.returncode == 2 and "distros/rocky9" in missing.stderr, missing
    several = run_inv(corpus, "l1.history", "distros", env=_env())
    assert several.returncode == 2 and "distros holds 3 builds" in several.stderr, several
    short = run_inv(corpus, "l1.history", "rocky9", env=_env())  # a unique build name
    assert short.returncode == 0 and "distros/rocky9: no artifacts yet" in short.stdout, short
    shared = run_inv(corpus, "l1.build", "common", "--dry-run", env=_env())
    assert shared.returncode == 2 and "shared HCL" in shared.stderr, shared


@pytest.mark.parametrize(
    ("name", "code", "said"),
    [
        ("ubuntu-noble", 2, "no value for Packer variable(s) proxmox_api_token_id"),
        ("clone-ansible/docker", 0, "-only=proxmox-clone.docker"),
        ("clone-ansible/test", 0, "-only=null.test"),
        ("vault-secrets", 0, "packer validate, build in layers/l1/templates/vault-secrets"),
        ("distros/debian12", 0, "-only=distros.proxmox-iso.debian12"),
        ("distros/rocky9", 0, "-only=distros.proxmox-iso.rocky9"),
        ("k8s-node", 0, "variables: k8s_version <- default, provision_scripts <- "),
        ("cwd-relative", 0, "(workdir: repo)"),
        ("broken", 2, "broken.pkr.hcl:2:18: invalid HCL"),
    ],
)
def test_build_dry_run_offline_for_every_template(
    corpus: Path, name: str, code: int, said: str
) -> None:
    dry = run_inv(corpus, "l1.build", name, "--dry-run", env=_env())
    assert dry.returncode == code, dry
    assert said in " ".join(dry.output.split()), dry
    assert "Traceback" not in dry.output and OFFLINE["PM_PASSWORD"] not in dry.output
    if code == 0:
        assert "not checked in this dry run (needs the Proxmox API" in dry.stdout
        assert "dry run: nothing was changed" in dry.stdout
