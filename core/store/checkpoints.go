package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Checkpoint returns the watermark saved for source (an SQL-view
// connector names its own), or "" if none was saved.
func (s *Store) Checkpoint(ctx context.Context, source string) (string, error) {
	var v string
	err := s.queryRow(ctx, `SELECT value FROM checkpoints WHERE source = ?`, source).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: checkpoint: %w", s.closed(err))
	}
	return v, nil
}

// SaveCheckpoint durably saves value as source's watermark.
func (s *Store) SaveCheckpoint(ctx context.Context, source, value string) error {
	if source == "" || len(source) > maxName || !plainText(source) {
		return fmt.Errorf("%w: checkpoint source: want 1-%d bytes of text without control characters", ErrInvalid, maxName)
	}
	if len(value) > maxCheckpoint || !storable(value) {
		return fmt.Errorf("%w: checkpoint value: want at most %d bytes of UTF-8 without NUL", ErrInvalid, maxCheckpoint)
	}
	err := s.write(ctx, func(t *txn) error {
		_, err := t.exec(ctx, `INSERT INTO checkpoints (source, value, updated) VALUES (?, ?, ?)
			ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated = excluded.updated`, source, value, t.now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: save checkpoint: %w", err)
	}
	return nil
}
