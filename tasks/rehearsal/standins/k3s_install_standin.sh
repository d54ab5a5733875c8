#!/bin/sh
# Stand-in for https://get.k3s.io, used only by the tests and the rehearsal (the real download
# cannot happen here). It honours the real installer's variables and leaves what the real one
# leaves: `k3s` and `k3s-uninstall.sh` in INSTALL_K3S_BIN_DIR, a kubeconfig where the k3s config
# file's `write-kubeconfig` says (default /etc/rancher/k3s/k3s.yaml), the token never on argv.
# Instead of starting a service it records each run in $INSTALL_K3S_BIN_DIR/k3s-standin.log.
set -eu
bin_dir=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
version=${INSTALL_K3S_VERSION:?INSTALL_K3S_VERSION is required by this stand-in}
config=${K3S_CONFIG_FILE:-/etc/rancher/k3s/config.yaml}
cmd=${1:-server}

kubeconfig=/etc/rancher/k3s/k3s.yaml
if [ -f "$config" ]; then
  found=$(sed -n 's/^write-kubeconfig: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$config")
  [ -n "$found" ] && kubeconfig=$found
fi
[ -n "${K3S_TOKEN:-}" ] || { echo "[ERROR] K3S_TOKEN is not set" >&2; exit 1; }

mkdir -p "$bin_dir" "$(dirname "$kubeconfig")"
cat > "$bin_dir/k3s" <<EOF
#!/bin/sh
case "\$1" in
  --version|-v) echo "k3s version $version (standin)"; echo "go version go1.22.9" ;;
  *) echo "k3s stand-in: \$*" ;;
esac
EOF
chmod 755 "$bin_dir/k3s"
cat > "$bin_dir/k3s-uninstall.sh" <<EOF
#!/bin/sh
set -e
rm -f "$bin_dir/k3s" "$kubeconfig"
echo "uninstalled" >> "$bin_dir/k3s-standin.log"
rm -f "$bin_dir/k3s-uninstall.sh"
EOF
chmod 755 "$bin_dir/k3s-uninstall.sh"
umask 077
cat > "$kubeconfig" <<EOF
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCnN0YW5kLWluCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K
    server: https://127.0.0.1:6443
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
echo "installed $version $cmd config=$config exec=${INSTALL_K3S_EXEC:-}" >> "$bin_dir/k3s-standin.log"
echo "[INFO]  k3s stand-in $version installed to $bin_dir"
