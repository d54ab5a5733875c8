#!/bin/sh
# Packages and settings every VM in the homelab starts with.
set -eux
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get -y upgrade
apt-get -y install qemu-guest-agent cloud-init cloud-initramfs-growroot ca-certificates curl
systemctl enable qemu-guest-agent
