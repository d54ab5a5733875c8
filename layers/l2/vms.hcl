# The VMs of this homelab. `inv l2.plan` compares them with Proxmox; `inv l2.apply` makes it so.
#
# template: an L1 stable manifest name (layers/l1/artifacts/<name>/stable.json), else the name
# of a template in the cluster, else its VMID. Left out: the only stable manifest there is.
# Only declared attributes are managed; the rest keep the template's values.
#
# The k3s cluster `home`: `groups` puts each VM in inventory/hosts.yaml's k3s_servers or k3s_agents
# (their k3s_role and k3s options), the `k3s` tag in the `k3s` group the host orchestrator installs
# (HOST_NAME=k3s). The first server initialises the cluster; the agents join it.

defaults {
  template      = "debian12-k3s"
  vmid_range    = "210-249"
  cores         = 2
  memory        = 4096
  start_on_boot = true
  agent         = true

  network "net0" {
    bridge = "vmbr0"
    vlan   = 20
  }
}

vm "k3s-server-1" {
  vmid   = 211
  groups = ["k3s_servers"]
  tags   = ["k3s", "server"]

  disk "scsi0" {
    size = "32G"
  }

  cloud_init {
    user     = "ops"
    ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHomelabSampleKeyReplaceMeWithYours0000 ops@homelab"]
    ip       = "10.0.20.11/24"
    gateway  = "10.0.20.1"
  }
}

vm "k3s-agent-1" {
  groups = ["k3s_agents"]
  tags   = ["k3s", "agent"]
  memory = 8192

  disk "scsi0" {
    size = "64G"
  }

  cloud_init {
    user     = "ops"
    ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHomelabSampleKeyReplaceMeWithYours0000 ops@homelab"]
    ip       = "10.0.20.21/24"
    gateway  = "10.0.20.1"
  }
}

vm "k3s-agent-2" {
  groups = ["k3s_agents"]
  tags   = ["k3s", "agent"]
  memory = 8192

  disk "scsi0" {
    size = "64G"
  }

  cloud_init {
    user     = "ops"
    ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHomelabSampleKeyReplaceMeWithYours0000 ops@homelab"]
    ip       = "10.0.20.22/24"
    gateway  = "10.0.20.1"
  }
}
