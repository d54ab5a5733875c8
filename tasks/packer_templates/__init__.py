"""L1: Packer templates as specs (HCL), facts (Proxmox), actions (build, promote, ISOs).

Nothing here is imported by `inv --list`; the `l1` collection imports these modules inside its
tasks. Specs and fingerprints are pure; Proxmox and Packer are reached only through adapters.
"""
