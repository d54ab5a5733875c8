"""The GitOps side: specs (the tree, modes, cluster.yaml), facts (what the cluster says), actions."""
