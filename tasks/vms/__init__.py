"""L2 VMs: specs (declared), facts (what Proxmox says), actions (what to change)."""
