// Package hashivault is a vault.KeyProvider whose keys live in the Transit
// engine of HashiCorp Vault or OpenBao (github.com/hashicorp/vault/api),
// for operators who keep every key in Vault. Any vault.Store takes it:
// vault/embedded and vault/postgres seal records exactly as with a local
// key file, but the tenant keys never leave Vault.
//
// It runs on the operator side of the trust boundary, inside the gateway.
// It sees data keys in clear (they come back from transit/decrypt to open
// a record) and the normalised addresses it MACs into tokens; it keeps
// neither, and its errors and log lines carry neither, nor ciphertexts,
// tokens or secret ids.
//
// # Keys
//
// Each tenant has two Transit keys, named from Config.KeyPrefix:
//
//	<prefix><tenant>-kek    aes256-gcm96 (or aes128-gcm96, chacha20-poly1305)
//	                        wraps per-subject data keys: Wrap is
//	                        transit/encrypt, Unwrap transit/decrypt, with
//	                        associated_data = vault.AssociatedData(subject,
//	                        version), so a wrapped key moved to another
//	                        subject or record version does not unwrap.
//	<prefix><tenant>-token  type hmac: TokenMAC is transit/hmac/<key>/sha2-256
//	                        with key_version pinned to Config.TokenKeyVersion.
//
// Tenant ids must be 1-64 of A-Z a-z 0-9 _ - to be used here: they become
// part of key names and policy paths. Setup creates both keys (neither
// exportable nor backed up in plaintext) and checks existing ones;
// GatewayPolicy prints the least-privilege Vault policy of the gateway and
// AdminPolicy the one of the operator's key-management commands. The
// gateway's policy grants update on encrypt, decrypt and hmac only, so it
// can neither read, rotate nor export a key, nor let Transit create a
// missing key on first use.
//
// A wrapped key is the Transit ciphertext itself, "vault:v<N>:<base64>",
// so a record store needs no change and CiphertextVersion tells which KEK
// version wrapped a row.
//
// # Batching
//
// WrapBatch, UnwrapBatch and TokenMACBatch send batch_input requests of up
// to Config.BatchSize items. The single-item KeyProvider methods are
// batched too: per tenant and operation at most Config.MaxInFlight
// requests fly at a time, and calls that arrive meanwhile go out together
// in the next one. An idle gateway sends every call at once, alone; a busy
// one sends fewer, larger requests, which a Transit server answers several
// times faster (see the benchmarks).
//
// # Failures
//
// Every error from Vault is an *Error that matches one of:
//
//   - vault.ErrUnavailable: Vault sealed, unreachable, timing out, rate
//     limiting, a 5xx, a 403 (the token's policy, or an expired or revoked
//     token: operator configuration), a missing key or a pinned token key
//     version that does not exist. The gateway retries later; no message is
//     sent unresolved.
//   - vault.ErrCorrupt: Transit refused to decrypt: wrong associated data
//     (another subject, another record version), another tenant's key, a
//     tampered or truncated ciphertext, or a KEK version retired by
//     min_decryption_version or trimmed. Retrying cannot help.
//   - vault.ErrInvalid: a tenant id that cannot name a key, or a request
//     Vault rejected as malformed.
//
// # Authentication
//
// Config.Auth.Method is token (from a file, re-read at each re-login so a
// Vault Agent sink works, or from an environment variable), approle (role
// id, and a secret id from a file or variable) or kubernetes (a role and
// the service account JWT, re-read at each login). The token is renewed by
// the client's LifetimeWatcher in a goroutine that Close stops; when
// renewal ends (max TTL reached, or renewal failing) the provider logs in
// again, and a 403 on a call whose token lookup-self also refuses (a
// revoked token) makes it log in again at once. Tokens from a login are
// revoked by Close. TLS is verified against Config.CAFile; VAULT_*
// environment variables are ignored, so only the config decides.
//
// Tested against a real Vault 1.21.4 dev server: token (file and
// environment), AppRole, renewal, re-login at max TTL and after
// revocation, TLS with a CA file. Not tested, because a dev server cannot
// exercise them: Kubernetes auth and namespaces (Vault Enterprise,
// OpenBao), both written from Vault's API documentation (POST
// auth/<mount>/login with role and jwt; the X-Vault-Namespace header), and
// OpenBao itself, which speaks the same Transit API.
//
// # Rotating the key-encryption key
//
//  1. RotateKEK: new wraps use the new version at once; old wrapped keys
//     still unwrap.
//  2. Re-wrap every stored wrapped key whose version is older, in batches,
//     and write the results back: the record stores' Rewrap does it, with
//     the Provider as a vault.KEKVersioner (KEKVersion: the version from
//     the ciphertext, the latest from KeyStatus, cached for seconds) and
//     RewrapKeys (Rewrap with plain types).
//     `blindpost keys rotate kek --config FILE` runs steps 1 and 2, and
//     `--finish` steps 3 and 4 once no key of an old version is left.
//  3. SetMinDecryptionVersion(new): Transit now refuses the old versions,
//     so a row the re-wrap missed fails loudly (vault.ErrCorrupt) while it
//     can still be undone by lowering the minimum again.
//  4. TrimKEK(new): the old versions are destroyed. Backups and WAL
//     archives taken before step 2 still hold data keys wrapped by them,
//     including those of subjects erased since: trimming is what makes
//     those unreadable, and so closes the erasure window of backups.
//
// Transit's transit/rewrap endpoint would keep data keys inside Vault
// during step 2, but it ignores associated_data (hashicorp/vault#29532,
// still so in 1.21.4), so Rewrap decrypts and encrypts again instead.
//
// The token key is rotated with RotateTokenKey, but nothing changes until
// Config.TokenKeyVersion moves to the new version: every token changes
// then, so that is a planned re-tokenisation, never a side effect.
//
// # Gateway configuration
//
//	vault:
//	  hashicorp:
//	    address: https://vault.internal:8200
//	    ca_file: /etc/blindpost/vault-ca.pem
//	    mount: transit
//	    key_prefix: blindpost-
//	    token_key_version: 1
//	    auth:
//	      method: approle
//	      role_id: 7f1c...            # not secret
//	      secret_id_file: /run/secrets/vault-secret-id
package hashivault
