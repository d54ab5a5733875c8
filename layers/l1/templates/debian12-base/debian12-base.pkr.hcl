# The base template every other template and VM starts from: Debian 12 installed from the netinst
# ISO with a preseed file, qemu-guest-agent and cloud-init, then generalised.
#
# Needs Packer >= 1.7 with the Proxmox plugin (`inv l1.build` runs `packer init` first). The ISO is
# staged on the ISO storage by `inv l1.isos` (Proxmox downloads it and verifies the checksum), so
# the build never waits on a download.

packer {
  required_plugins {
    proxmox = {
      version = ">= 1.2.1"
      source  = "github.com/hashicorp/proxmox"
    }
  }
}

locals {
  iso_name = "debian-${var.debian_version}-amd64-netinst.iso"
  disks = [
    { size = var.disk_size, storage = var.vm_storage, type = "scsi" },
  ]
}

source "proxmox-iso" "debian12" {
  proxmox_url              = var.proxmox_url
  username                 = var.proxmox_token_id
  token                    = var.proxmox_token
  insecure_skip_tls_verify = var.proxmox_insecure_skip_tls_verify
  node                     = var.proxmox_node

  vm_name              = "debian12-base"
  template_description = "Debian ${var.debian_version} base: qemu-guest-agent, cloud-init; built by the homelab runner"
  os                   = "l26"
  cpu_type             = "host"
  cores                = 2
  memory               = 2048
  scsi_controller      = "virtio-scsi-single"
  qemu_agent           = true

  boot_iso {
    type             = "scsi"
    iso_file         = "${var.iso_storage}:iso/${local.iso_name}"
    iso_url          = "https://cdimage.debian.org/cdimage/archive/${var.debian_version}/amd64/iso-cd/${local.iso_name}"
    iso_checksum     = "sha256:${var.iso_sha256}"
    iso_storage_pool = var.iso_storage
    unmount          = true
  }

  dynamic "disks" {
    for_each = local.disks
    content {
      type         = disks.value.type
      disk_size    = disks.value.size
      storage_pool = disks.value.storage
      format       = "raw"
      io_thread    = true
    }
  }

  network_adapters {
    model  = "virtio"
    bridge = "vmbr0"
  }

  cloud_init              = true
  cloud_init_storage_pool = var.vm_storage

  http_directory = "http"
  boot_wait      = "5s"
  boot_command = [
    "<esc><wait>",
    "auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg ",
    "hostname=debian12-base domain=home.example.net<enter>",
  ]

  # The installer's build-only account; scripts/cleanup.sh locks it, and cloud-init gives every
  # clone its own user and keys.
  ssh_username = var.ssh_username
  ssh_password = var.ssh_build_password
  ssh_timeout  = "30m"
}

build {
  name    = "debian12-base"
  sources = ["source.proxmox-iso.debian12"]

  provisioner "shell" {
    execute_command = "sudo -E sh -eux '{{ .Path }}'"
    scripts         = ["${path.root}/scripts/base.sh"]
  }

  provisioner "file" {
    source      = "cloud-init/99-pve.cfg"
    destination = "/tmp/99-pve.cfg"
  }

  provisioner "shell" {
    execute_command = "sudo -E sh -eux '{{ .Path }}'"
    scripts         = ["${path.root}/scripts/cleanup.sh"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
