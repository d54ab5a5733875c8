# A k3s node template: a linked clone of the base template (debian12-base), sized for k3s, with a
# cloud-init drive whose user-data is checked here before Proxmox ever boots it.
#
# Runs on every Packer with the Proxmox builders, 1.6.6 included: password login (Packer 1.6 has
# no API-token login) and no required_plugins block (no `packer init` before 1.7). The runner fills
# the proxmox_* variables from the env through PKR_VAR_* (layers/l1/layer.yaml), never argv.

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

variable "vm_storage" {
  type    = string
  default = "local-lvm"
}

variable "base_template" {
  type        = string
  default     = "debian12-base"
  description = "the Proxmox template this one is cloned from (built by templates/debian12-base)"
}

variable "cores" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 4096
}

locals {
  template_name = "debian12-k3s"
  description   = "k3s node: ${var.cores} cores, ${var.memory} MiB, cloned from ${var.base_template}; built by the homelab runner"
}

source "proxmox-clone" "k3s" {
  proxmox_url = var.proxmox_url
  username    = var.proxmox_username
  password    = var.proxmox_password
  node        = var.proxmox_node

  clone_vm   = var.base_template
  full_clone = false

  vm_name              = local.template_name
  template_description = local.description
  cores                = var.cores
  memory               = var.memory
  qemu_agent           = true
  scsi_controller      = "virtio-scsi-single"

  network_adapters {
    model  = "virtio"
    bridge = "vmbr0"
  }

  cloud_init              = true
  cloud_init_storage_pool = var.vm_storage

  # Nothing to do inside the guest: the base template is already provisioned; this template only
  # changes hardware and cloud-init defaults, so Packer never needs to log in.
  communicator = "none"
}

build {
  sources = ["source.proxmox-clone.k3s"]

  provisioner "shell-local" {
    script           = "${path.root}/scripts/check-user-data.sh"
    environment_vars = ["USER_DATA=${path.root}/cloud-init/user-data"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      template = local.template_name
    }
  }
}
