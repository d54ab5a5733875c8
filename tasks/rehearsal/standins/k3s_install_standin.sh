#!/bin/sh
# A thin recording stand-in for https://get.k3s.io, used only by the tests and the rehearsal: no k3s
# can be downloaded or run here. It honours the real installer's variables (INSTALL_K3S_VERSION,
# INSTALL_K3S_BIN_DIR, K3S_CONFIG_FILE, K3S_URL, K3S_TOKEN), its command (`server` or `agent`) and
# the config file's `write-kubeconfig`, `data-dir`, `https-listen-port` and `server`, and leaves what
# the real one leaves: `k3s` and the uninstall script (k3s-uninstall.sh on a server,
# k3s-agent-uninstall.sh on an agent) in the bin dir, and on a server the cluster token
# (DATA_DIR/server/token, 0600) and a kubeconfig. A joining host (K3S_URL set) must reach the
# server's /ping first and must be given the token.
#
# Instead of starting a service it appends one line per run to $INSTALL_K3S_BIN_DIR/k3s-standin.log:
# the version, the command, the server it joined, a SHA-256 of the token it was given (never the
# token), whether that token was on any process's command line while it ran (/proc/*/cmdline), its
# own arguments, and when it started and ended. `k3s kubectl ...` (drain, delete node) is recorded
# there too.
set -eu
started=$(date +%s.%N)
bin_dir=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
version=${INSTALL_K3S_VERSION:?INSTALL_K3S_VERSION is required by this stand-in}
config=${K3S_CONFIG_FILE:-/etc/rancher/k3s/config.yaml}
cmd=${1:-server}
log="$bin_dir/k3s-standin.log"

setting() {  # a top-level scalar of the k3s config file, quotes stripped
  [ -f "$config" ] || return 0
  sed -n "s/^$1: *//p" "$config" | head -1 | sed "s/^[\"']//; s/[\"']\$//"
}
kubeconfig=$(setting write-kubeconfig)
kubeconfig=${kubeconfig:-/etc/rancher/k3s/k3s.yaml}
data_dir=$(setting data-dir)
data_dir=${data_dir:-/var/lib/rancher/k3s}
port=$(setting https-listen-port)
port=${port:-6443}
server_url=${K3S_URL:-$(setting server)}

token_sha=none
token_on_argv=no
if [ -n "${K3S_TOKEN:-}" ]; then
  token_sha=$(printf '%s' "$K3S_TOKEN" | sha256sum | cut -d' ' -f1)
  for f in /proc/[0-9]*/cmdline; do
    line=$(tr '\0' ' ' < "$f" 2>/dev/null) || continue
    case "$line" in *"$K3S_TOKEN"*) token_on_argv=yes ;; esac
  done
fi

if [ -n "$server_url" ]; then
  [ -n "${K3S_TOKEN:-}" ] || { echo "[ERROR] K3S_URL is set but K3S_TOKEN is not" >&2; exit 1; }
  if ! curl -ksf --max-time 5 "$server_url/ping" > /dev/null 2>&1; then
    echo "[ERROR] cannot reach the k3s server at $server_url" >&2
    exit 1
  fi
fi

mkdir -p "$bin_dir"
cat > "$bin_dir/k3s" <<EOF
#!/bin/sh
case "\$1" in
  --version|-v) echo "k3s version $version (standin)"; echo "go version go1.22.9" ;;
  kubectl) shift; echo "kubectl \$*" >> "$log"; echo "stand-in kubectl: \$*" ;;
  *) echo "k3s stand-in: \$*" ;;
esac
EOF
chmod 755 "$bin_dir/k3s"

if [ "$cmd" = agent ]; then
  uninstall="$bin_dir/k3s-agent-uninstall.sh"
  rm -f "$bin_dir/k3s-uninstall.sh"
else
  uninstall="$bin_dir/k3s-uninstall.sh"
  rm -f "$bin_dir/k3s-agent-uninstall.sh"
fi
cat > "$uninstall" <<EOF
#!/bin/sh
set -e
rm -f "$bin_dir/k3s" "$kubeconfig" "$data_dir/server/token"
echo "uninstalled $cmd started=\$(date +%s.%N)" >> "$log"
rm -f "$uninstall"
EOF
chmod 755 "$uninstall"

umask 077
if [ "$cmd" = server ]; then
  mkdir -p "$data_dir/server" "$(dirname "$kubeconfig")"
  if [ ! -s "$data_dir/server/token" ]; then
    secret=${K3S_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
    case "$secret" in
      K10*::server:*) printf '%s\n' "$secret" > "$data_dir/server/token" ;;  # a joined server's
      *) printf 'K10%s::server:%s\n' "$(printf '%s' "$secret" | sha256sum | cut -c1-32)" \
        "$secret" > "$data_dir/server/token" ;;
    esac
  fi
  cat > "$kubeconfig" <<EOF
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCnN0YW5kLWluCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K
    server: https://127.0.0.1:$port
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmNsaWVudAotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCnN0YW5kLWluLSQkCi0tLS0tRU5EIEVDIFBSSVZBVEUgS0VZLS0tLS0K
EOF
fi
echo "installed $version $cmd config=$config join=${server_url:-none} token-sha256=$token_sha" \
  "token-on-argv=$token_on_argv args=$* started=$started ended=$(date +%s.%N)" >> "$log"
echo "[INFO]  k3s stand-in $version ($cmd) installed to $bin_dir"
