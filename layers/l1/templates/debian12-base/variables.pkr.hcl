# Filled by the runner from the env through PKR_VAR_* (see layers/l1/layer.yaml); the token never
# appears on a command line.

variable "proxmox_url" {
  type = string
}

variable "proxmox_token_id" {
  type        = string
  description = "user@realm!tokenid (PM_TOKEN_ID)"
}

variable "proxmox_token" {
  type      = string
  sensitive = true
}

variable "proxmox_insecure_skip_tls_verify" {
  type    = bool
  default = false
}

variable "proxmox_node" {
  type = string
}

variable "vm_storage" {
  type    = string
  default = "local-lvm"
}

variable "iso_storage" {
  type    = string
  default = "local"
}

variable "debian_version" {
  type    = string
  default = "12.7.0"
}

variable "iso_sha256" {
  type    = string
  default = "8fde79cfc6b20a696200fc5c15219cf6d721e8feb367e9e0e33a79d1cb68fa83"
}

variable "disk_size" {
  type    = string
  default = "20G"
}

variable "ssh_username" {
  type    = string
  default = "packer"
}

variable "ssh_build_password" {
  type        = string
  default     = "packer"
  description = "the installer's build-only password (http/preseed.cfg); locked by scripts/cleanup.sh"
}
