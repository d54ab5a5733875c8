#!/bin/sh
# Generalise the image: every clone gets its own machine id, host keys and cloud-init run.
set -eux
install -m 0644 /tmp/99-pve.cfg /etc/cloud/cloud.cfg.d/99-pve.cfg
rm -f /etc/sudoers.d/packer
passwd -l packer
apt-get -y autoremove --purge
apt-get clean
cloud-init clean --logs --seed
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
sync
