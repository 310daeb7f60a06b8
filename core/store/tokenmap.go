package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// A planned re-tokenisation on the gateway (docs/key-rotation.md §5) gives
// every address a new token; the core gets the map old → new, signed
// (package tokenmap), and ApplyTokenPairs rewrites what the store holds.

const (
	// tokenScanPage is how many players the scan reads per query.
	tokenScanPage = 1024
	// tokenBatch is how many players one transaction rewrites: short
	// transactions, so that Ingest on other nodes (PostgreSQL), or between
	// the batches (SQLite), waits little for the players it shares.
	tokenBatch = 256
)

// ApplyTokenPairs rewrites, in the properties of every player of label,
// each string equal to an old token of pairs (old → new) into its new
// token, wherever it is: a property's value, or an element or member of
// one at any depth (object keys are left alone). An array keeps one copy
// of a new token the rewrite puts in it twice (as in [old, new]), as the
// + operator would. It returns how many players and string values it
// changed.
//
// It runs while the core ingests: it reads the players in pages, and
// rewrites those that hold an old token in transactions of a few hundred
// players each, reading each again under the transaction (PostgreSQL:
// row-locked, in Ingest's order) so that no concurrent update is lost. On
// SQLite the transactions run on the Ingest writer, which keeps its player
// cache true; a store of another process refuses (the lock file), as for
// Ingest: apply through the running core instead. On error, the batches
// before it stay applied; applying the same pairs again changes only what
// is left, so it is safe to run again.
//
// Every old and new must look like a token (tok_…), be storable, and
// differ; no new may also be an old (applying twice would rewrite a value
// twice). ErrInvalid otherwise, ErrNotFound if label does not exist.
func (s *Store) ApplyTokenPairs(ctx context.Context, label string, pairs map[string]string) (players, values int, err error) {
	for old, nw := range pairs {
		switch {
		case !strings.HasPrefix(old, "tok_") || !strings.HasPrefix(nw, "tok_") || !storable(old) || !storable(nw):
			// The scan finds candidates by "tok_".
			return 0, 0, fmt.Errorf("%w: token pairs: old and new must be tokens", ErrInvalid)
		case old == nw:
			return 0, 0, fmt.Errorf("%w: token pairs: a pair maps a token to itself", ErrInvalid)
		}
		if _, chain := pairs[nw]; chain {
			return 0, 0, fmt.Errorf("%w: token pairs: a new token is also an old one", ErrInvalid)
		}
	}
	if _, err := s.Label(ctx, label); err != nil {
		return 0, 0, err
	}
	if len(pairs) == 0 {
		return 0, 0, nil
	}
	var after *pkey
	for {
		page, err := s.tokenCandidates(ctx, label, after)
		if err != nil {
			return players, values, fmt.Errorf("store: apply token pairs: %w", s.closed(err))
		}
		var keys []pkey
		for _, c := range page {
			_, n, err := rewriteTokens(c.raw, pairs)
			if err != nil {
				return players, values, fmt.Errorf("store: apply token pairs: %w", err)
			}
			if n > 0 {
				keys = append(keys, c.key)
			}
		}
		for lo := 0; lo < len(keys); lo += tokenBatch {
			p, v, err := s.rewritePlayers(ctx, label, keys[lo:min(lo+tokenBatch, len(keys))], pairs)
			players, values = players+p, values+v
			if err != nil {
				return players, values, fmt.Errorf("store: apply token pairs: %w", s.closed(err))
			}
		}
		if len(page) < tokenScanPage {
			return players, values, nil
		}
		after = &page[len(page)-1].key
	}
}

type tokenCandidate struct {
	key pkey
	raw string
}

// tokenCandidates reads, in key order after after (from the start if
// nil), the next page of label's players whose properties hold "tok_".
// The key condition is a range on the primary key's columns, so each page
// starts where the last ended rather than from the start.
func (s *Store) tokenCandidates(ctx context.Context, label string, after *pkey) ([]tokenCandidate, error) {
	props := "properties"
	if s.d.postgres {
		props = "properties::text"
	}
	q := `SELECT ext_brand_id, user_ext_id, ` + props + ` FROM players
WHERE label = ? AND ` + props + ` LIKE '%tok\_%' ESCAPE '\'`
	args := []any{label}
	if after != nil {
		q += ` AND ext_brand_id >= ? AND (ext_brand_id > ? OR user_ext_id > ?)`
		args = append(args, after.brand, after.brand, after.user)
	}
	q += ` ORDER BY ext_brand_id, user_ext_id LIMIT ` + fmt.Sprint(tokenScanPage)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var page []tokenCandidate
	err = scanRows(rows, func() error {
		var c tokenCandidate
		err := rows.Scan(&c.key.brand, &c.key.user, &c.raw)
		page = append(page, c)
		return err
	})
	return page, err
}

// rewritePlayers rewrites the tokens of the players keys in one
// transaction, reading them again inside it.
func (s *Store) rewritePlayers(ctx context.Context, label string, keys []pkey, pairs map[string]string) (players, values int, err error) {
	err = s.writeAlone(ctx, func(t *txn) error {
		players, values = 0, 0 // a retried transaction starts over
		type row struct {
			key                   pkey
			raw                   string
			lastOnline, firstSeen int64
		}
		var rs []row
		read := func(rows *sql.Rows) error {
			return scanRows(rows, func() error {
				var r row
				err := rows.Scan(&r.key.brand, &r.key.user, &r.raw, &r.lastOnline, &r.firstSeen)
				rs = append(rs, r)
				return err
			})
		}
		if t.d.postgres {
			kb, ku := splitKeys(keys)
			rr, err := t.tx.QueryContext(ctx, `
SELECT ext_brand_id, user_ext_id, properties::text, last_online, first_seen FROM players
WHERE label = $1 AND (ext_brand_id, user_ext_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
ORDER BY ext_brand_id, user_ext_id
FOR UPDATE`, label, kb, ku)
			if err != nil {
				return err
			}
			if err := read(rr); err != nil {
				return err
			}
		} else if err := chunks(len(keys), func(lo, hi int) error {
			args := make([]any, 0, 1+2*(hi-lo))
			args = append(args, label)
			for _, k := range keys[lo:hi] {
				args = append(args, k.brand, k.user)
			}
			rr, err := t.query(ctx, chunked(sqlLoadPlayers, hi-lo), args...)
			if err != nil {
				return err
			}
			return read(rr)
		}); err != nil {
			return err
		}

		var kb, ku, props []string
		for _, r := range rs {
			raw, n, err := rewriteTokens(r.raw, pairs)
			if err != nil {
				return err
			}
			if n == 0 {
				continue // changed since the scan
			}
			players, values = players+1, values+n
			kb, ku, props = append(kb, r.key.brand), append(ku, r.key.user), append(props, raw)
			if t.cache != nil {
				t.pending[ckey{label, r.key.brand, r.key.user}] = cachedPlayer{exists: true, raw: raw, lastOnline: r.lastOnline, firstSeen: r.firstSeen}
			}
		}
		if len(props) == 0 {
			return nil
		}
		if t.d.postgres {
			_, err := t.tx.ExecContext(ctx, `
UPDATE players AS p SET properties = t.p::json, updated = $5
FROM unnest($2::text[], $3::text[], $4::text[]) AS t(b, u, p)
WHERE p.label = $1 AND p.ext_brand_id = t.b AND p.user_ext_id = t.u`, label, kb, ku, props, t.now)
			return err
		}
		for i := range props {
			if _, err := t.exec(ctx, `UPDATE players SET properties = ?, updated = ?
WHERE label = ? AND ext_brand_id = ? AND user_ext_id = ?`, props[i], t.now, label, kb[i], ku[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return players, values, nil
}

// writeAlone runs fn in a write transaction of its own: on SQLite on the
// Ingest writer's goroutine, the only one that touches the player cache
// (group.go); on PostgreSQL, which has no cache, as write does.
func (s *Store) writeAlone(ctx context.Context, fn func(*txn) error) error {
	if s.reqs == nil {
		return s.write(ctx, fn)
	}
	r := &ingestReq{ctx: ctx, alone: fn, done: make(chan ingestResult, 1)}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// The writer answers every request it took, and runs this one under
	// ctx: waiting for it is short even once ctx ended, and fn is done
	// with what it captured when this returns.
	return (<-r.done).err
}

// commitAlone runs a writeAlone request on the writer's goroutine. Like
// Ingest, it needs the file's lock: only the process that holds it may
// change players, or its player cache would go stale.
func (s *Store) commitAlone(r *ingestReq) {
	if err := r.ctx.Err(); err != nil {
		r.done <- ingestResult{err: err}
		return
	}
	if err := s.lockForIngest(); err != nil {
		r.done <- ingestResult{err: err}
		return
	}
	r.done <- ingestResult{err: s.write(r.ctx, r.alone)}
}

// rewriteTokens returns the properties raw (a JSON object, as stored) with
// every string value found in pairs replaced, and how many it replaced; raw
// itself if none.
func rewriteTokens(raw string, pairs map[string]string) (string, int, error) {
	if !strings.Contains(raw, "tok_") {
		return raw, 0, nil
	}
	p := &player{raw: raw}
	props, err := p.properties()
	if err != nil {
		return "", 0, err
	}
	n := 0
	for k, v := range props {
		props[k] = replaceTokens(v, pairs, &n)
	}
	if n == 0 {
		return raw, 0, nil
	}
	b, err := appendJSON(nil, props)
	if err != nil {
		return "", 0, fmt.Errorf("player properties: %w", err)
	}
	return string(b), n, nil
}

// replaceTokens returns v with its strings found in pairs replaced, adding
// the count to n.
func replaceTokens(v any, pairs map[string]string, n *int) any {
	switch v := v.(type) {
	case string:
		if nw, ok := pairs[v]; ok {
			*n++
			return nw
		}
	case map[string]any:
		for k, e := range v {
			v[k] = replaceTokens(e, pairs, n)
		}
	case []any:
		before := *n
		var added map[string]bool // new tokens this array gained
		for i, e := range v {
			if s, ok := e.(string); ok {
				if nw, ok := pairs[s]; ok {
					*n++
					v[i] = nw
					if added == nil {
						added = map[string]bool{}
					}
					added[nw] = true
					continue
				}
			}
			v[i] = replaceTokens(e, pairs, n)
		}
		if *n == before || added == nil {
			return v
		}
		out := v[:0]
		seen := map[string]bool{}
		for _, e := range v {
			if s, ok := e.(string); ok && added[s] {
				if seen[s] {
					continue
				}
				seen[s] = true
			}
			out = append(out, e)
		}
		return out
	}
	return v
}
