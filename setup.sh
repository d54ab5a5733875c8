#!/usr/bin/env bash
# From a fresh Debian 12 machine with Python 3.11 and git: system tools, a virtualenv with the
# runner's dependencies, then a rehearsal of the whole runner against local stand-ins.
# SETUP_SKIP_REHEARSAL=1 installs only (CI runs the rehearsal as its own step).
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

if command -v apt-get >/dev/null 2>&1; then
  want=(git openssh-server openssh-client packer)
  command -v kubectl >/dev/null 2>&1 || want+=(kubernetes-client)
  missing=()
  for pkg in "${want[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not a Debian machine; install git, openssh, packer and kubectl yourself" >&2
fi

# The SSH tests and the rehearsal run real sshd hosts that log in as an unprivileged user:
# sshd needs its privilege-separation dir; '*' unlocks the user for key logins only.
if [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/sshd ]; then
  mkdir -p /run/sshd
  ssh_test_user=${HOMELAB_SSH_TEST_USER:-homelab-test}
  id "$ssh_test_user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$ssh_test_user"
  usermod -p '*' "$ssh_test_user"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# `inv` never writes bytecode for task modules (Invoke sets sys.dont_write_bytecode), but it
# reads it: compile the runner once so every `inv` start skips recompiling it.
.venv/bin/python -m compileall -q tasks.py homelab_cli.py tasks

if [ "${SETUP_SKIP_REHEARSAL:-0}" != 1 ]; then
  .venv/bin/inv rehearse
fi
