package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/profile"
)

// Outcome is Ingest's answer for one event.
type Outcome struct {
	// Duplicate: an event with this eid was stored before, or earlier in
	// the same batch. Nothing was changed; the events API answers 20056.
	Duplicate bool
	// UserNotFound: the event was stored, but its player did not exist
	// (see Ingest); the events API answers 10001.
	UserNotFound bool
}

// Ingest writes, in one durable transaction, the events of label not seen
// before and the rejections, and returns one Outcome per event, in order.
// An error means nothing was written, except ctx's: if ctx ends while
// Ingest waits, the batch may be written or not, and a retry finds its
// events duplicates if it was. ErrNotFound if label does not exist.
//
// An event whose (label, eid) is stored already, or repeats an eid earlier
// in evs, is a duplicate: it changes nothing. Each other event is stored
// and changes its player's state:
//
//   - A player (ext_brand_id, user_ext_id) exists once a registration or
//     update_profile event named it. Any other event for a player that
//     does not exist yet is stored all the same, flagged UserNotFound, and
//     changes no state: the player is not created.
//   - update_profile applies its payload to the player's properties
//     (core/profile: +key, -key, ^key, !key and plain keys). The player's
//     tags are its "tags" property; opt-out flags (core_is_*) are plain
//     properties.
//   - login sets the player's last_online to its event_date, unless a
//     later login did already.
//
// Events are taken as the PII firewall left them and must be valid
// (event.Validate); their ids must also be valid UTF-8 without NUL, which
// PostgreSQL cannot store. Ingest keeps nothing of evs once it returns. Of a rejection, only the eid, reason and path
// are kept, cleaned of invalid UTF-8 and control characters and cut to a
// bounded length; each also counts towards RejectionCounts. Rejections are
// not de-duplicated: a refused event delivered twice is recorded twice.
func (s *Store) Ingest(ctx context.Context, label string, evs []event.Event, rejections []event.Rejection) ([]Outcome, error) {
	b, err := newBatch(label, evs, rejections)
	if err != nil {
		return nil, err
	}
	var outs []Outcome
	if s.reqs != nil {
		outs, err = s.submit(ctx, b)
	} else {
		err = s.write(ctx, func(t *txn) error {
			var err error
			outs, err = t.ingestBatch(ctx, b)
			return err
		})
	}
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid), errors.Is(err, ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("store: ingest: %w", err)
	}
	return outs, nil
}

// ingestBatch writes one Ingest call in the transaction: nothing of it if
// its label does not exist.
func (t *txn) ingestBatch(ctx context.Context, b *batch) ([]Outcome, error) {
	if err := t.labelExists(ctx, b.label); err != nil {
		return nil, err
	}
	outs, err := t.ingest(ctx, b)
	if err != nil {
		return nil, err
	}
	if err := t.reject(ctx, b); err != nil {
		return nil, err
	}
	if t.cache != nil {
		for k, p := range b.players {
			t.pending[ckey{b.label, k.brand, k.user}] = cachedPlayer{p.exists, p.raw, p.lastOnline, p.firstSeen}
		}
	}
	return outs, nil
}

// batch is one Ingest call, checked and encoded before its transaction.
type batch struct {
	label      string
	evs        []event.Event
	payloads   []string // the events' payloads as JSON objects
	first      []int    // index of the first event with the same eid
	rejections []event.Rejection
	counts     map[string]int64 // rejections by reason

	players map[pkey]*player // the players' state once ingested
}

// Bounds of what is kept of a rejection.
const (
	maxReason = 64
	maxPath   = 512
)

func newBatch(label string, evs []event.Event, rejections []event.Rejection) (*batch, error) {
	// The batch is the store's own: SQLite's writer may still be writing
	// it after a caller whose context ended has returned and reused evs.
	b := &batch{
		label:    label,
		evs:      slices.Clone(evs),
		payloads: make([]string, len(evs)),
		first:    make([]int, len(evs)),
	}
	var buf []byte
	seen := make(map[string]int, len(evs))
	for i := range b.evs {
		ev := &b.evs[i]
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("%w: event %d: %v", ErrInvalid, i, err)
		}
		if !storable(ev.EID) || !storable(ev.Brand) || !storable(ev.User) {
			return nil, fmt.Errorf("%w: event %d: eid, ext_brand_id and user_ext_id must be UTF-8 without NUL", ErrInvalid, i)
		}
		if j, ok := seen[ev.EID]; ok {
			b.first[i] = j
		} else {
			seen[ev.EID] = i
			b.first[i] = i
		}
		if ev.Payload == nil {
			b.payloads[i] = "{}"
			continue
		}
		var err error
		if buf, err = appendJSON(buf[:0], ev.Payload); err != nil {
			return nil, fmt.Errorf("%w: event %d: payload is not JSON data", ErrInvalid, i)
		}
		b.payloads[i] = string(buf)
		// Only update_profile payloads are read again (by the walk).
		if ev.Type != event.TypeUpdateProfile {
			ev.Payload = nil
			continue
		}
		p, err := profile.Normalize(ev.Payload)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: payload is not JSON data", ErrInvalid, i)
		}
		ev.Payload = p.(map[string]any)
	}
	if len(rejections) > 0 {
		b.rejections = make([]event.Rejection, len(rejections))
		b.counts = make(map[string]int64)
		for i, r := range rejections {
			r = event.Rejection{EID: clean(r.EID, event.MaxIDLen), Reason: clean(r.Reason, maxReason), Path: clean(r.Path, maxPath)}
			b.rejections[i] = r
			b.counts[r.Reason]++
		}
	}
	return b, nil
}

// clean makes s storable and printable, and at most max bytes.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// pkey names a player within a label.
type pkey struct{ brand, user string }

func (k pkey) compare(o pkey) int {
	return cmp.Or(strings.Compare(k.brand, o.brand), strings.Compare(k.user, o.user))
}

// player is one player's state during an Ingest.
type player struct {
	changes bool // a new event of the batch may change the player's state
	creator bool // a new event of the batch creates the player, unless it exists

	exists     bool           // at this point of the batch
	raw        string         // properties as stored
	props      map[string]any // properties, decoded once an update changed them
	lastOnline int64
	firstSeen  int64
	dirty      bool // to be written
}

// properties returns p's properties, decoding them the first time.
func (p *player) properties() (map[string]any, error) {
	if p.props != nil || p.raw == "" {
		return p.props, nil
	}
	dec := json.NewDecoder(strings.NewReader(p.raw))
	dec.UseNumber()
	if err := dec.Decode(&p.props); err != nil {
		return nil, fmt.Errorf("player properties: %w", err)
	}
	return p.props, nil
}

// encoded returns p's properties as JSON.
func (p *player) encoded() (string, error) {
	if p.props == nil {
		return cmp.Or(p.raw, "{}"), nil
	}
	b, err := appendJSON(nil, p.props)
	if err != nil {
		return "", fmt.Errorf("player properties: %w", err)
	}
	return string(b), nil
}

// creates reports whether an event of type typ creates its player.
func creates(typ string) bool {
	return typ == event.TypeRegistration || typ == event.TypeUpdateProfile
}

// walk goes through the batch in order, deciding each event's outcome and
// applying it to the players' state. players holds every player of the
// batch as the database has it; inserted, the eids this transaction
// stored. It returns the outcomes and the eids to flag UserNotFound.
//
// A duplicate that creates its player shows that its player exists: it
// was created when that event was first stored.
func (b *batch) walk(players map[pkey]*player, inserted map[string]bool, now int64) ([]Outcome, []string, error) {
	outs := make([]Outcome, len(b.evs))
	var notFound []string
	for i := range b.evs {
		ev := &b.evs[i]
		p := players[pkey{ev.Brand, ev.User}]
		if b.first[i] != i || !inserted[ev.EID] {
			outs[i].Duplicate = true
			p.exists = p.exists || creates(ev.Type)
			continue
		}
		if !p.exists && !creates(ev.Type) {
			outs[i].UserNotFound = true
			notFound = append(notFound, ev.EID)
			continue
		}
		if !p.exists {
			p.exists, p.dirty = true, true
			p.firstSeen = now
			p.props, p.raw = map[string]any{}, ""
		}
		switch ev.Type {
		case event.TypeUpdateProfile:
			props, err := p.properties()
			if err != nil {
				return nil, nil, err
			}
			if p.props, err = profile.Apply(props, ev.Payload); err != nil {
				return nil, nil, fmt.Errorf("%w: event %d: %v", ErrInvalid, i, err)
			}
			p.dirty = true
		case event.TypeLogin:
			if ev.EventDate > p.lastOnline {
				p.lastOnline, p.dirty = ev.EventDate, true
			}
		}
	}
	return outs, notFound, nil
}

// dirty returns the players to write, in key order.
func dirty(players map[pkey]*player) []pkey {
	var keys []pkey
	for k, p := range players {
		if p.dirty {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, pkey.compare)
	return keys
}

// ingest writes the batch's events and their effects, one statement per
// step over many rows (SQLite: multi-row VALUES in chunks; PostgreSQL:
// arrays), rather than one per event:
//
//  1. the new events are inserted, and which were new comes back;
//  2. PostgreSQL: the players those new events create are inserted,
//     empty, so that they exist to be locked (SQLite has one writer:
//     nothing else changes a player in between);
//  3. every player of the batch is read (SQLite: unless the player cache
//     has it; PostgreSQL: those the batch may change are row-locked, FOR
//     UPDATE, so that no other node changes them until this transaction
//     ends);
//  4. the batch is walked in order, the changed players are written, and
//     the rare events whose player does not exist are flagged.
//
// On PostgreSQL, several nodes may ingest at once: the events go in eid
// order and the players in key order, so that two transactions take
// what they share in the same order and wait for each other rather than
// deadlock; a deadlock that happens all the same is retried (write).
func (t *txn) ingest(ctx context.Context, b *batch) ([]Outcome, error) {
	var idx []int // the first event of each eid
	for i := range b.evs {
		if b.first[i] == i {
			idx = append(idx, i)
		}
	}
	if t.d.postgres {
		slices.SortFunc(idx, func(i, j int) int { return strings.Compare(b.evs[i].EID, b.evs[j].EID) })
	}
	inserted, err := t.insertEvents(ctx, b, idx)
	if err != nil {
		return nil, fmt.Errorf("store events: %w", err)
	}

	players := make(map[pkey]*player)
	b.players = players
	var creators []pkey
	for _, i := range idx {
		ev := &b.evs[i]
		k := pkey{ev.Brand, ev.User}
		p := players[k]
		if p == nil {
			p = new(player)
			players[k] = p
		}
		if !inserted[ev.EID] {
			continue
		}
		if creates(ev.Type) && !p.creator {
			p.creator = true
			creators = append(creators, k)
		}
		p.changes = p.changes || creates(ev.Type) || ev.Type == event.TypeLogin
	}
	var created map[pkey]bool
	if t.d.postgres && len(creators) > 0 {
		if created, err = t.createPlayers(ctx, b, creators); err != nil {
			return nil, fmt.Errorf("create players: %w", err)
		}
	}
	if err := t.loadPlayers(ctx, b, players, created); err != nil {
		return nil, fmt.Errorf("load players: %w", err)
	}

	outs, notFound, err := b.walk(players, inserted, t.now)
	if err != nil {
		return nil, err
	}
	if err := t.writePlayers(ctx, b, players); err != nil {
		return nil, fmt.Errorf("store players: %w", err)
	}
	if err := t.flagNotFound(ctx, b, notFound); err != nil {
		return nil, fmt.Errorf("flag events: %w", err)
	}
	return outs, nil
}

// insertEvents inserts the events idx names and returns the eids that
// were new.
func (t *txn) insertEvents(ctx context.Context, b *batch, idx []int) (map[string]bool, error) {
	inserted := make(map[string]bool, len(idx))
	scan := func(rows *sql.Rows) error {
		return scanRows(rows, func() error {
			var eid string
			err := rows.Scan(&eid)
			inserted[eid] = true
			return err
		})
	}
	if len(idx) == 0 {
		return inserted, nil
	}
	if !t.d.postgres {
		return inserted, chunks(len(idx), func(lo, hi int) error {
			args := make([]any, 0, 2+7*(hi-lo))
			args = append(args, b.label, t.now)
			for _, i := range idx[lo:hi] {
				ev := &b.evs[i]
				args = append(args, ev.EID, ev.EventDate, ev.Brand, ev.User, ev.Type, b.payloads[i], ev.SkipCJM)
			}
			rows, err := t.query(ctx, chunked(sqlInsertEvents, hi-lo), args...)
			if err != nil {
				return err
			}
			return scan(rows)
		})
	}
	n := len(idx)
	eids, brands, users, types, payloads := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	dates := make([]int64, n)
	skips := make([]bool, n)
	for j, i := range idx {
		ev := &b.evs[i]
		eids[j], brands[j], users[j], types[j], payloads[j] = ev.EID, ev.Brand, ev.User, ev.Type, b.payloads[i]
		dates[j], skips[j] = ev.EventDate, ev.SkipCJM
	}
	rows, err := t.tx.QueryContext(ctx, `
INSERT INTO events (label, eid, event_date, ext_brand_id, user_ext_id, event_type, payload, skip_cjm, user_not_found, received)
SELECT $1, e.eid, e.d, e.b, e.u, e.t, e.p::json, e.s, false, $9
FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::boolean[]) AS e(eid, d, b, u, t, p, s)
ON CONFLICT (label, eid) DO NOTHING
RETURNING eid`, b.label, eids, dates, brands, users, types, payloads, skips, t.now)
	if err != nil {
		return nil, err
	}
	return inserted, scan(rows)
}

// createPlayers inserts, on PostgreSQL, the players of keys that do not
// exist, empty, and returns those it inserted. A concurrent transaction
// inserting one of them waits for this one, then finds it.
func (t *txn) createPlayers(ctx context.Context, b *batch, keys []pkey) (map[pkey]bool, error) {
	slices.SortFunc(keys, pkey.compare)
	kb, ku := splitKeys(keys)
	rows, err := t.tx.QueryContext(ctx, `
INSERT INTO players (label, ext_brand_id, user_ext_id, properties, last_online, first_seen, updated)
SELECT $1, k.b, k.u, '{}', 0, $4, $4 FROM unnest($2::text[], $3::text[]) AS k(b, u)
ON CONFLICT (label, ext_brand_id, user_ext_id) DO NOTHING
RETURNING ext_brand_id, user_ext_id`, b.label, kb, ku, t.now)
	if err != nil {
		return nil, err
	}
	created := make(map[pkey]bool, len(keys))
	return created, scanRows(rows, func() error {
		var k pkey
		err := rows.Scan(&k.brand, &k.user)
		created[k] = true
		return err
	})
}

// loadPlayers reads the players of the batch into players. A player in
// created was inserted by this transaction: it exists only once the walk
// reaches the event that creates it.
//
// On PostgreSQL it locks the players the batch may change, and only
// those: of the others (bets, wins, deposits: most events), the walk
// needs only to know whether they exist, and a player is never deleted.
func (t *txn) loadPlayers(ctx context.Context, b *batch, players map[pkey]*player, created map[pkey]bool) error {
	keys := slices.SortedFunc(maps.Keys(players), pkey.compare)
	var rows *sql.Rows
	scan := func() error {
		var k pkey
		var raw string
		var lastOnline, firstSeen int64
		if err := rows.Scan(&k.brand, &k.user, &raw, &lastOnline, &firstSeen); err != nil {
			return err
		}
		if p := players[k]; p != nil && !created[k] {
			p.exists, p.raw, p.lastOnline, p.firstSeen = true, raw, lastOnline, firstSeen
		}
		return nil
	}
	if !t.d.postgres {
		if t.cache != nil {
			misses := keys[:0]
			for _, k := range keys {
				ck := ckey{b.label, k.brand, k.user}
				c, ok := t.pending[ck] // an earlier batch of the same transaction's
				if !ok {
					c, ok = t.cache.get(ck)
				}
				if !ok {
					misses = append(misses, k)
					continue
				}
				p := players[k]
				p.exists, p.raw, p.lastOnline, p.firstSeen = c.exists, c.raw, c.lastOnline, c.firstSeen
			}
			keys = misses
		}
		return chunks(len(keys), func(lo, hi int) error {
			args := make([]any, 0, 1+2*(hi-lo))
			args = append(args, b.label)
			for _, k := range keys[lo:hi] {
				args = append(args, k.brand, k.user)
			}
			var err error
			rows, err = t.query(ctx, chunked(sqlLoadPlayers, hi-lo), args...)
			if err != nil {
				return err
			}
			return scanRows(rows, scan)
		})
	}
	var changing, others []pkey
	for _, k := range keys {
		if players[k].changes {
			changing = append(changing, k)
		} else {
			others = append(others, k)
		}
	}
	cb, cu := splitKeys(changing)
	ob, ou := splitKeys(others)
	var err error
	rows, err = t.tx.QueryContext(ctx, `
WITH changing AS (
	SELECT p.ext_brand_id, p.user_ext_id, p.properties::text AS properties, p.last_online, p.first_seen
	FROM players p
	WHERE p.label = $1 AND (p.ext_brand_id, p.user_ext_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
	ORDER BY p.ext_brand_id, p.user_ext_id
	FOR UPDATE
)
SELECT * FROM changing
UNION ALL
SELECT p.ext_brand_id, p.user_ext_id, '', 0, 0
FROM players p
WHERE p.label = $1 AND (p.ext_brand_id, p.user_ext_id) IN (SELECT * FROM unnest($4::text[], $5::text[]))`, b.label, cb, cu, ob, ou)
	if err != nil {
		return err
	}
	return scanRows(rows, scan)
}

// writePlayers writes the players the walk changed. On PostgreSQL they
// all exist (createPlayers); on SQLite a new one is inserted.
func (t *txn) writePlayers(ctx context.Context, b *batch, players map[pkey]*player) error {
	keys := dirty(players)
	if len(keys) == 0 {
		return nil
	}
	props := make([]string, len(keys))
	for j, k := range keys {
		p := players[k]
		var err error
		if props[j], err = p.encoded(); err != nil {
			return err
		}
		p.raw, p.props = props[j], nil // as stored, for the cache
	}
	if !t.d.postgres {
		return chunks(len(keys), func(lo, hi int) error {
			args := make([]any, 0, 2+5*(hi-lo))
			args = append(args, b.label, t.now)
			for j := lo; j < hi; j++ {
				p := players[keys[j]]
				args = append(args, keys[j].brand, keys[j].user, props[j], p.lastOnline, p.firstSeen)
			}
			_, err := t.exec(ctx, chunked(sqlWritePlayers, hi-lo), args...)
			return err
		})
	}
	kb, ku := splitKeys(keys)
	online := make([]int64, len(keys))
	for j, k := range keys {
		online[j] = players[k].lastOnline
	}
	_, err := t.tx.ExecContext(ctx, `
UPDATE players AS p SET properties = t.p::json, last_online = t.o, updated = $6
FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS t(b, u, p, o)
WHERE p.label = $1 AND p.ext_brand_id = t.b AND p.user_ext_id = t.u`, b.label, kb, ku, props, online, t.now)
	return err
}

// flagNotFound marks the events eids as UserNotFound.
func (t *txn) flagNotFound(ctx context.Context, b *batch, eids []string) error {
	if len(eids) == 0 {
		return nil
	}
	if t.d.postgres {
		_, err := t.tx.ExecContext(ctx, `UPDATE events SET user_not_found = true WHERE label = $1 AND eid = ANY($2::text[])`, b.label, eids)
		return err
	}
	return chunks(len(eids), func(lo, hi int) error {
		args := make([]any, 0, 1+hi-lo)
		args = append(args, b.label)
		for _, e := range eids[lo:hi] {
			args = append(args, e)
		}
		_, err := t.exec(ctx, chunked(sqlFlagNotFound, hi-lo), args...)
		return err
	})
}

func splitKeys(keys []pkey) (brands, users []string) {
	brands, users = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		brands[i], users[i] = k.brand, k.user
	}
	return brands, users
}

// reject records the batch's rejections and counts them.
func (t *txn) reject(ctx context.Context, b *batch) error {
	if len(b.rejections) == 0 {
		return nil
	}
	reasons := slices.Sorted(maps.Keys(b.counts)) // counters in one order: no deadlock between nodes
	if t.d.postgres {
		n := len(b.rejections)
		eids, rs, paths := make([]string, n), make([]string, n), make([]string, n)
		for i, r := range b.rejections {
			eids[i], rs[i], paths[i] = r.EID, r.Reason, r.Path
		}
		if _, err := t.tx.ExecContext(ctx, `
INSERT INTO rejections (label, eid, reason, path, time)
SELECT $1, r.e, r.r, r.p, $5 FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS r(e, r, p, i)
ORDER BY r.i`, b.label, eids, rs, paths, t.now); err != nil {
			return fmt.Errorf("record rejections: %w", err)
		}
		ns := make([]int64, len(reasons))
		for i, r := range reasons {
			ns[i] = b.counts[r]
		}
		if _, err := t.tx.ExecContext(ctx, `
INSERT INTO rejection_counts (label, reason, n)
SELECT $1, c.r, c.n FROM unnest($2::text[], $3::bigint[]) AS c(r, n)
ON CONFLICT (label, reason) DO UPDATE SET n = rejection_counts.n + excluded.n`, b.label, reasons, ns); err != nil {
			return fmt.Errorf("count rejections: %w", err)
		}
		return nil
	}
	for _, r := range b.rejections {
		if _, err := t.exec(ctx, insertRejectionSQL, b.label, r.EID, r.Reason, r.Path, t.now); err != nil {
			return fmt.Errorf("record rejection: %w", err)
		}
	}
	for _, r := range reasons {
		if _, err := t.exec(ctx, countRejectionSQL, b.label, r, b.counts[r]); err != nil {
			return fmt.Errorf("count rejections: %w", err)
		}
	}
	return nil
}

// scanRows calls scan for each row of rows, and closes them.
func scanRows(rows *sql.Rows, scan func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(); err != nil {
			return err
		}
	}
	return rows.Err()
}
