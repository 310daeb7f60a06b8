package postgres

import (
	"context"

	"github.com/blindpost/blindpost/vault"
)

// RawRow is the test hook that reads a subject's stored row as it is in
// the database: the record version, the wrapped data key and the sealed
// record. Tests use it to know which bytes must disappear on erasure.
func (s *Store) RawRow(ctx context.Context, ref vault.Ref) (version int64, wrapped, sealed []byte, err error) {
	r, err := s.load(ctx, ref)
	return r.version, r.wrapped, r.sealed, err
}
