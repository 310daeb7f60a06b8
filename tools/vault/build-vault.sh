#!/usr/bin/env bash
# Build a real HashiCorp Vault server binary from the Go module proxy, once, into a cache dir.
# Usage: build-vault.sh [OUT_DIR]   -> prints the path of the binary.
# Why the edits: the module zip of github.com/hashicorp/vault omits the nested modules
# api/ and sdk/ that go.mod replaces with ./api and ./sdk, so we drop those replaces and use the
# tagged modules the go.mod already requires (api v1.22.0, sdk v0.21.0). sdk v0.21.0 is a little
# newer than the 1.21.x branch's in-tree sdk, so three call sites need a one-line adaptation.
set -euo pipefail
VAULT_VERSION=v1.21.4
OUT_DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/blindpost/bin}
BIN=$OUT_DIR/vault-$VAULT_VERSION
if [[ -x $BIN ]] && "$BIN" version >/dev/null 2>&1; then ln -sfn "vault-$VAULT_VERSION" "$OUT_DIR/vault"; echo "$BIN"; exit 0; fi
mkdir -p "$OUT_DIR"
# A cold build needs about 6 GB: ~1.5 GB of modules, ~4 GB of build cache, the
# copied source and the 365 MB binary. Say so plainly rather than fail deep
# inside the compiler with "no space left on device".
need_kb=$((6 * 1024 * 1024))
for d in /tmp "$OUT_DIR" "$(go env GOMODCACHE)" "$(go env GOCACHE)"; do
	mkdir -p "$d" 2>/dev/null || true
	free_kb=$(df -Pk "$d" | awk 'NR==2 {print $4}')
	if [[ -n $free_kb && $free_kb -lt $need_kb ]]; then
		echo "build-vault.sh: only $((free_kb / 1024)) MB free on the disk of $d; building Vault needs about 6 GB. Free some space or set BLINDPOST_VAULT_BIN to an existing vault binary." >&2
		exit 1
	fi
done
echo "build-vault.sh: building Vault $VAULT_VERSION from the Go module proxy into $OUT_DIR (about 20 minutes the first time on 2 cores; cached after that)" >&2
WORK=$(mktemp -d /tmp/vault-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DIR=$(go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
cp -r "$DIR" "$WORK/src"; chmod -R u+w "$WORK/src"; cd "$WORK/src"
for m in api api/auth/approle api/auth/kubernetes api/auth/userpass sdk; do
  go mod edit -dropreplace="github.com/hashicorp/vault/$m"
done
go mod edit -require=github.com/hashicorp/vault/sdk@v0.21.0 -require=github.com/hashicorp/vault/api@v1.22.0
# sdk v0.21.0: framework.Backend.ActivationFunc gained a string arg; keysutil RestorePolicy returns only error.
sed -i 's|ActivationFunc: iStore.activateDeduplication,|ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },|' vault/identity_store.go
sed -i 's|b.idStoreBackend.ActivationFunc(ctx, nil)|b.idStoreBackend.ActivationFunc(ctx, nil, "")|' vault/logical_system_activation_flags.go
sed -i 's|restoredKeyName, err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)|restoredKeyName := keyName\n\terr := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)|' builtin/logical/transit/path_restore.go
grep -q 'ActivationFunc(ctx, nil, "")' vault/logical_system_activation_flags.go
grep -q 'restoredKeyName := keyName' builtin/logical/transit/path_restore.go
go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN.tmp" .
mv "$BIN.tmp" "$BIN"
ln -sfn "vault-$VAULT_VERSION" "$OUT_DIR/vault" # the name the tests look for first
echo "$BIN"
