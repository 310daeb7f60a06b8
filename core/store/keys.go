package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// APIKeyInfo describes an API key; the key itself is shown once, by
// CreateAPIKey, and never stored.
type APIKeyInfo struct {
	ID      string // public: names the key in lists, logs and revocations
	Label   string
	Created time.Time
	Revoked time.Time // zero while the key is valid
}

// An API key is "bpk_" + 16 hex digits of id + "_" + 64 hex digits of a
// 256-bit random secret. The id finds the key's row; the SHA-256 of the
// whole key, compared in constant time, authenticates it.
const (
	keyPrefix = "bpk_"
	idBytes   = 8
	keyBytes  = 32
	keyLen    = len(keyPrefix) + 2*idBytes + 1 + 2*keyBytes
)

// CreateAPIKey creates a key for label. A label may have several valid
// keys at once, so that one can be rotated without downtime.
func (s *Store) CreateAPIKey(ctx context.Context, label string) (string, APIKeyInfo, error) {
	var id [idBytes]byte
	var secret [keyBytes]byte
	rand.Read(id[:]) // crypto/rand.Read never fails
	rand.Read(secret[:])
	info := APIKeyInfo{ID: hex.EncodeToString(id[:]), Label: label}
	key := keyPrefix + info.ID + "_" + hex.EncodeToString(secret[:])
	hash := sha256.Sum256([]byte(key))
	err := s.write(ctx, func(t *txn) error {
		if err := t.labelExists(ctx, label); err != nil {
			return err
		}
		info.Created = fromUnixMilli(t.now)
		_, err := t.exec(ctx, `INSERT INTO api_keys (id, label, hash, created) VALUES (?, ?, ?, ?)`,
			info.ID, label, hash[:], t.now)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", APIKeyInfo{}, err
	}
	if err != nil {
		return "", APIKeyInfo{}, fmt.Errorf("store: create api key: %w", err)
	}
	return key, info, nil
}

// APIKeys lists label's keys, revoked ones included, oldest first.
func (s *Store) APIKeys(ctx context.Context, label string) ([]APIKeyInfo, error) {
	rows, err := s.query(ctx, `SELECT id, created, revoked FROM api_keys WHERE label = ? ORDER BY created, id`, label)
	if err != nil {
		return nil, fmt.Errorf("store: api keys: %w", err)
	}
	defer rows.Close()
	var keys []APIKeyInfo
	for rows.Next() {
		k := APIKeyInfo{Label: label}
		var created, revoked int64
		if err := rows.Scan(&k.ID, &created, &revoked); err != nil {
			return nil, fmt.Errorf("store: api keys: %w", err)
		}
		k.Created, k.Revoked = fromUnixMilli(created), fromUnixMilli(revoked)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes label's key keyID at once. ErrNotFound if label has
// no such key; revoking a revoked key is no error.
func (s *Store) RevokeAPIKey(ctx context.Context, label, keyID string) error {
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(ctx, `UPDATE api_keys SET revoked = CASE WHEN revoked = 0 THEN ? ELSE revoked END
			WHERE id = ? AND label = ?`, t.now, keyID, label)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: api key", ErrNotFound)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("store: revoke api key: %w", err)
	}
	return nil
}

// Authenticate returns the label whose valid key apiKey is, or
// ErrUnauthorized: for a malformed, unknown, revoked or wrong key alike.
// The key's hash is compared in constant time. Finding the row by the
// key's id takes the time it takes, which may tell whether the id exists:
// ids are not secret (APIKeys lists them); the secret is.
func (s *Store) Authenticate(ctx context.Context, apiKey string) (string, error) {
	id, ok := keyID(apiKey)
	if !ok {
		return "", ErrUnauthorized
	}
	hash := sha256.Sum256([]byte(apiKey))
	var label string
	var stored []byte
	var revoked int64
	err := s.queryRow(ctx, `SELECT label, hash, revoked FROM api_keys WHERE id = ?`, id).Scan(&label, &stored, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrUnauthorized
	}
	if err != nil {
		return "", fmt.Errorf("store: authenticate: %w", s.closed(err))
	}
	if subtle.ConstantTimeCompare(hash[:], stored) != 1 || revoked != 0 {
		return "", ErrUnauthorized
	}
	return label, nil
}

// keyID returns the id part of a well-formed key.
func keyID(key string) (string, bool) {
	if len(key) != keyLen || !strings.HasPrefix(key, keyPrefix) {
		return "", false
	}
	rest := key[len(keyPrefix):]
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || !isHex(id) || !isHex(secret) {
		return "", false
	}
	return id, true
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
