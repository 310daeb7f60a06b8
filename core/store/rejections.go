package store

import (
	"context"
	"fmt"
	"time"
)

// Rejection is what is kept of a refused event.
type Rejection struct {
	EID    string
	Reason string // e.g. "email", "card", "pii_property"
	Path   string // the JSON path of the offending value, e.g. "payload.contact"
	Time   time.Time
}

// DefaultRejections is how many rejections Rejections returns when asked
// for none in particular, MaxRejections the most it returns.
const (
	DefaultRejections = 100
	MaxRejections     = 10000
)

// Rejections returns label's latest rejections, newest first: at most
// limit, DefaultRejections if limit is not positive.
func (s *Store) Rejections(ctx context.Context, label string, limit int) ([]Rejection, error) {
	if limit <= 0 {
		limit = DefaultRejections
	}
	limit = min(limit, MaxRejections)
	rows, err := s.query(ctx, `SELECT eid, reason, path, time FROM rejections WHERE label = ? ORDER BY id DESC LIMIT ?`, label, limit)
	if err != nil {
		return nil, fmt.Errorf("store: rejections: %w", err)
	}
	var out []Rejection
	if err := scanRows(rows, func() error {
		var r Rejection
		var at int64
		err := rows.Scan(&r.EID, &r.Reason, &r.Path, &at)
		r.Time = fromUnixMilli(at)
		out = append(out, r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("store: rejections: %w", err)
	}
	return out, nil
}

// RejectionCounts returns how many events were refused, by label and
// reason, since the store was created.
func (s *Store) RejectionCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.query(ctx, `SELECT label, reason, n FROM rejection_counts`)
	if err != nil {
		return nil, fmt.Errorf("store: rejection counts: %w", err)
	}
	out := make(map[string]map[string]int)
	if err := scanRows(rows, func() error {
		var label, reason string
		var n int64
		if err := rows.Scan(&label, &reason, &n); err != nil {
			return err
		}
		if out[label] == nil {
			out[label] = make(map[string]int)
		}
		out[label][reason] = int(n)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: rejection counts: %w", err)
	}
	return out, nil
}
