package vault

import (
	"context"
	"fmt"
)

// KEKVersioner is a KeyProvider that can tell which version of a tenant's
// key-encryption key wrapped a data key, so that re-wrapping after a
// rotation touches only the keys that need it and can report when the old
// version is no longer used (and may be trimmed, which closes the backups'
// erasure window).
type KEKVersioner interface {
	// KEKVersion returns the KEK version that wrapped the data key and the
	// version Wrap uses now.
	KEKVersion(ctx context.Context, tenant string, wrapped []byte) (version, latest int, err error)
}

// Rewrapper is a record store that can re-wrap the data keys of a tenant's
// subjects under the key provider's newest KEK version, while it serves:
// each batch is its own short transaction, and a record changed since it
// was read is left for the next pass rather than overwritten.
type Rewrapper interface {
	Rewrap(ctx context.Context, tenant string, opts RewrapOptions) (RewrapStats, error)
}

// RewrapOptions tune one re-wrap pass. The zero value is usable.
type RewrapOptions struct {
	Batch int // subjects per transaction; default 256
}

// RewrapStats report one pass over a tenant's subjects.
type RewrapStats struct {
	Scanned   int // data keys looked at
	Rewrapped int // data keys wrapped again under the newest version
	// Oldest is the oldest KEK version still wrapping a key of the tenant
	// after the pass (0 when the tenant has no subjects): versions below
	// it may be trimmed.
	Oldest int
}

// RewrapKey wraps a data key again under the provider's newest KEK version.
// It returns the new wrapped key and true, or the old one and false when it
// is already current. ad is the record's associated data, which a re-wrap
// keeps. The plaintext data key is cleared before RewrapKey returns.
func RewrapKey(ctx context.Context, kp KeyProvider, tenant string, wrapped, ad []byte) (_ []byte, changed bool, version int, err error) {
	if v, ok := kp.(KEKVersioner); ok {
		cur, latest, err := v.KEKVersion(ctx, tenant, wrapped)
		if err != nil {
			return nil, false, 0, fmt.Errorf("rewrap: %w", err)
		}
		if cur >= latest {
			return wrapped, false, cur, nil
		}
		version = latest
	}
	dk, err := kp.Unwrap(ctx, tenant, wrapped, ad)
	if err != nil {
		return nil, false, 0, fmt.Errorf("rewrap: %w", err)
	}
	defer clear(dk)
	out, err := kp.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		return nil, false, 0, fmt.Errorf("rewrap: %w", err)
	}
	return out, true, version, nil
}
