package queue

import (
	"bytes"
	"context"
	"fmt"
	"slices"
)

type acceptReq struct {
	ctx   context.Context
	items []Item
	done  chan acceptResult // buffered: the writer never waits for a caller
}

type acceptResult struct {
	outcomes []Outcome
	err      error
}

// Accept remembers each item's final answer and enqueues its entry, or, for
// an id seen before, returns the first answer (same hash) or a conflict
// (another hash) and writes nothing. It returns only after the transaction
// is durable. Concurrent calls are group-committed: one writer goroutine
// gathers the calls waiting at that moment, writes them all in one
// transaction and syncs once. A call's items are written all or none.
//
// If ctx ends while the call waits, Accept returns the context's error; the
// items may or may not have been written, and a retry gets Duplicate if they
// were.
func (q *Queue) Accept(ctx context.Context, items []Item) ([]Outcome, error) {
	items, err := q.prepare(items)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	r := &acceptReq{ctx: ctx, items: items, done: make(chan acceptResult, 1)}
	select {
	case q.reqs <- r:
	case <-q.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.outcomes, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prepare validates items and returns copies with defaults filled in, so the
// writer never fails a whole group over one caller's mistake.
func (q *Queue) prepare(items []Item) ([]Item, error) {
	now := q.now()
	out := make([]Item, len(items))
	for i, it := range items {
		if it.Tenant == "" || it.ID == "" {
			return nil, fmt.Errorf("%w: item %d: empty tenant or id", ErrInvalid, i)
		}
		switch it.Answer.Status {
		case StatusAccepted:
			if it.Entry == nil || it.Entry.ExtID == "" || it.Entry.ExtID != it.Answer.ExtMessageID {
				return nil, fmt.Errorf("%w: item %d: accepted needs an entry whose ExtID is the answer's ext_message_id", ErrInvalid, i)
			}
			e := *it.Entry
			if e.Tenant == "" {
				e.Tenant = it.Tenant
			}
			if e.MsgID == "" {
				e.MsgID = it.ID
			}
			if e.Tenant != it.Tenant || e.MsgID != it.ID {
				return nil, fmt.Errorf("%w: item %d: entry tenant or id differs from the item's", ErrInvalid, i)
			}
			if e.Created.IsZero() {
				e.Created = now
			}
			if e.Request == nil {
				e.Request = []byte{}
			}
			it.Entry = &e
		case StatusRejected:
			if it.Entry != nil {
				return nil, fmt.Errorf("%w: item %d: rejected item has an entry", ErrInvalid, i)
			}
		default:
			return nil, fmt.Errorf("%w: item %d: answer status %q", ErrInvalid, i, it.Answer.Status)
		}
		if it.Callback != nil {
			ev := entryKey{tenant: it.Tenant, msgID: it.ID, extID: it.Answer.ExtMessageID}.fill(*it.Callback)
			it.Callback = &ev
		}
		out[i] = it
	}
	return out, nil
}

// writeLoop is the single writer behind Accept. It takes one waiting call,
// then every other call already waiting (up to MaxBatch items), so the batch
// grows by itself while the previous commit is syncing, and no call ever
// waits for a timer.
func (q *Queue) writeLoop() {
	defer q.writer.Done()
	var batch []*acceptReq
	for {
		batch = batch[:0]
		select {
		case r := <-q.reqs:
			batch = append(batch, r)
		case <-q.closing:
			return
		}
		n := len(batch[0].items)
	gather:
		for n < q.max {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
				n += len(r.items)
			default:
				break gather
			}
		}
		q.commit(batch)
	}
}

// commit writes a group in one transaction and answers its calls. If the
// transaction fails, each call is written again alone, so that one bad call
// cannot fail the others.
func (q *Queue) commit(batch []*acceptReq) {
	results, err := q.writeGroup(batch)
	if err != nil && len(batch) > 1 {
		q.log.Warn("queue group commit failed, writing calls one by one", "calls", len(batch), "err", err)
		for _, r := range batch {
			q.commit([]*acceptReq{r})
		}
		return
	}
	if err == nil {
		q.commits.Add(1)
	}
	for i, r := range batch {
		res := results[i]
		if err != nil {
			res = acceptResult{err: fmt.Errorf("queue: accept: %w", err)}
		}
		if res.err == nil {
			q.calls.Add(1)
			q.items.Add(int64(len(r.items)))
		}
		r.done <- res
	}
}

// writeGroup writes the calls of a group in one transaction, skipping calls
// whose caller has given up.
func (q *Queue) writeGroup(batch []*acceptReq) ([]acceptResult, error) {
	ctx := context.Background() // one caller giving up must not abort the others
	results := make([]acceptResult, len(batch))
	err := q.write(ctx, func(tx *txn) error {
		clear(results) // a retried transaction starts over
		if q.d.postgres && !slices.ContainsFunc(batch, func(r *acceptReq) bool { return takesCaps(r.items) }) {
			return writeGroupBulk(ctx, tx, batch, results)
		}
		if err := q.lockGroup(ctx, tx, batch); err != nil {
			return err
		}
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				results[i].err = err // nobody is waiting: write nothing
				continue
			}
			outs, err := tx.accept(ctx, r.items, q.reserveLocks)
			if err != nil {
				return err
			}
			results[i].outcomes = outs
		}
		return nil
	})
	return results, err
}

// takesCaps reports whether an item takes a frequency cap.
func takesCaps(items []Item) bool {
	return slices.ContainsFunc(items, func(it Item) bool { return len(it.Reserve) > 0 })
}

// writeGroupBulk writes the items of all the group's calls at once
// (acceptBulk), in call order, and hands each call its outcomes.
func writeGroupBulk(ctx context.Context, tx *txn, batch []*acceptReq, results []acceptResult) error {
	var items []Item
	var live []int // calls whose caller still waits
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i].err = err // nobody is waiting: write nothing
			continue
		}
		live = append(live, i)
		items = append(items, r.items...)
	}
	if len(items) == 0 {
		return nil
	}
	outs, err := tx.acceptBulk(ctx, items)
	if err != nil {
		return err
	}
	for _, i := range live {
		n := len(batch[i].items)
		results[i].outcomes, outs = outs[:n:n], outs[n:]
	}
	return nil
}

// lockGroup takes, on PostgreSQL, the frequency caps' locks that a group of
// accepts needs, up front and in sorted order, so that the accept groups
// of several nodes wait for each other rather than deadlock.
func (q *Queue) lockGroup(ctx context.Context, tx *txn, batch []*acceptReq) error {
	if !q.d.postgres {
		return nil
	}
	var keys []string
	for _, r := range batch {
		for _, it := range r.items {
			for _, rs := range it.Reserve {
				keys = append(keys, rs.Key)
			}
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if err := tx.lock(ctx, q.reserveLocks, k); err != nil {
			return err
		}
	}
	return nil
}

// accept writes one call's items; an error leaves the transaction to be
// rolled back.
func (t *txn) accept(ctx context.Context, items []Item, reserveLocks int64) ([]Outcome, error) {
	if t.d.postgres && !takesCaps(items) {
		return t.acceptBulk(ctx, items)
	}
	outs := make([]Outcome, len(items))
	for i, it := range items {
		o, err := t.acceptItem(ctx, it, reserveLocks)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		outs[i] = o
	}
	return outs, nil
}

func (t *txn) acceptItem(ctx context.Context, it Item, reserveLocks int64) (Outcome, error) {
	// Insert first: new ids are the common case, and the primary key
	// decides, across nodes too (PostgreSQL makes a concurrent insert of
	// the same id wait for this transaction, then do nothing).
	a := it.Answer
	res, err := t.exec(ctx, `INSERT INTO answers (tenant, id, hash, status, ext_message_id, code, message, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, id) DO NOTHING`,
		it.Tenant, it.ID, it.Hash[:], a.Status, a.ExtMessageID, a.Code, a.Message, t.now)
	if err != nil {
		return Outcome{}, fmt.Errorf("remember answer: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Outcome{}, fmt.Errorf("remember answer: %w", err)
	} else if n == 0 {
		return t.seen(ctx, it)
	}
	if e := it.Entry; e != nil && len(it.Reserve) > 0 {
		full, err := t.reserve(ctx, e.ExtID, it.Reserve, reserveLocks)
		if err != nil {
			return Outcome{}, err
		}
		if full {
			a = Answer{Status: StatusRejected, Code: CodeFrequencyCap, Message: "frequency cap reached; not sent"}
			if _, err := t.exec(ctx, `UPDATE answers SET status = ?, ext_message_id = '', code = ?, message = ?
				WHERE tenant = ? AND id = ?`, a.Status, a.Code, a.Message, it.Tenant, it.ID); err != nil {
				return Outcome{}, fmt.Errorf("remember answer: %w", err)
			}
			return Outcome{Answer: a}, nil
		}
	}
	if e := it.Entry; e != nil {
		nb := unixNano(e.NotBefore)
		if _, err := t.exec(ctx, insertEntry, e.ExtID, e.Tenant, e.MsgID, e.Brand, e.User, e.Request, e.Envelope,
			nb, unixNano(e.ExpiresAt), e.Attempts, unixNano(e.Created), nb, e.CallbackURL, e.Compat); err != nil {
			return Outcome{}, fmt.Errorf("enqueue: %w", err)
		}
	}
	if it.Callback != nil {
		if err := t.addEvent(ctx, *it.Callback); err != nil {
			return Outcome{}, err
		}
	}
	return Outcome{Answer: a}, nil
}

// acceptBulk is accept on PostgreSQL for items that take no frequency cap
// (whose items' order matters): all their answers in one statement, then
// all their entries in another, rather than two round trips per item. The
// answers go in (tenant, id) order, so that nodes accepting the same ids
// at once do not cross; where an id repeats, its first item is the one
// inserted, and the others find its answer.
func (t *txn) acceptBulk(ctx context.Context, items []Item) ([]Outcome, error) {
	n := len(items)
	tenants, ids, statuses, exts, codes, messages := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	hashes := make([][]byte, n)
	for i, it := range items {
		a := it.Answer
		tenants[i], ids[i], hashes[i] = it.Tenant, it.ID, it.Hash[:]
		statuses[i], exts[i], codes[i], messages[i] = a.Status, a.ExtMessageID, a.Code, a.Message
	}
	rows, err := t.tx.QueryContext(ctx, `
INSERT INTO answers (tenant, id, hash, status, ext_message_id, code, message, created)
SELECT e.tenant, e.id, e.hash, e.status, e.ext, e.code, e.message, $8
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[])
	WITH ORDINALITY AS e(tenant, id, hash, status, ext, code, message, i)
ORDER BY e.tenant, e.id, e.i
ON CONFLICT (tenant, id) DO NOTHING
RETURNING tenant, id`, tenants, ids, hashes, statuses, exts, codes, messages, t.now)
	if err != nil {
		return nil, fmt.Errorf("remember answers: %w", err)
	}
	inserted := map[[2]string]bool{}
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return nil, fmt.Errorf("remember answers: %w", err)
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("remember answers: %w", err)
	}

	outs := make([]Outcome, n)
	var entries []*Entry
	for i, it := range items {
		k := [2]string{it.Tenant, it.ID}
		if !inserted[k] {
			o, err := t.seen(ctx, it)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			outs[i] = o
			continue
		}
		delete(inserted, k) // a later item with this id is a repeat
		outs[i] = Outcome{Answer: it.Answer}
		if it.Entry != nil {
			entries = append(entries, it.Entry)
		}
		if it.Callback != nil {
			if err := t.addEvent(ctx, *it.Callback); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
		}
	}
	if len(entries) == 0 {
		return outs, nil
	}
	m := len(entries)
	extIDs, eTenants, msgIDs, brands, users, callbacks := make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
	requests, envelopes, compats := make([][]byte, m), make([][]byte, m), make([][]byte, m)
	notBefore, expires, attempts, created := make([]int64, m), make([]int64, m), make([]int64, m), make([]int64, m)
	for i, e := range entries {
		extIDs[i], eTenants[i], msgIDs[i], brands[i], users[i], callbacks[i] = e.ExtID, e.Tenant, e.MsgID, e.Brand, e.User, e.CallbackURL
		requests[i], envelopes[i], compats[i] = e.Request, e.Envelope, e.Compat
		notBefore[i], expires[i], attempts[i], created[i] = unixNano(e.NotBefore), unixNano(e.ExpiresAt), int64(e.Attempts), unixNano(e.Created)
	}
	if _, err := t.tx.ExecContext(ctx, `
INSERT INTO entries
	(ext_id, tenant, msg_id, brand, "user", request, envelope, not_before, expires_at, attempts, created, due, callback_url, compat)
SELECT ext_id, tenant, msg_id, brand, u, request, envelope, not_before, expires_at, attempts, created, not_before, callback_url, compat
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
	$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::bytea[])
	AS e(ext_id, tenant, msg_id, brand, u, request, envelope, not_before, expires_at, attempts, created, callback_url, compat)`,
		extIDs, eTenants, msgIDs, brands, users, requests, envelopes, notBefore, expires, attempts, created, callbacks, compats); err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	return outs, nil
}

// seen answers an id that already has an answer.
func (t *txn) seen(ctx context.Context, it Item) (Outcome, error) {
	var hash []byte
	var a Answer
	if err := t.queryRow(ctx, `SELECT hash, status, ext_message_id, code, message FROM answers WHERE tenant = ? AND id = ?`,
		it.Tenant, it.ID).Scan(&hash, &a.Status, &a.ExtMessageID, &a.Code, &a.Message); err != nil {
		return Outcome{}, fmt.Errorf("look up answer: %w", err)
	}
	if !bytes.Equal(hash, it.Hash[:]) {
		return Outcome{Conflict: true}, nil
	}
	return Outcome{Answer: a, Duplicate: true}, nil
}

const insertEntry = `INSERT INTO entries
	(ext_id, tenant, msg_id, brand, "user", request, envelope, not_before, expires_at, attempts, created, due, callback_url, compat)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// reserve takes every counter of rs for extID, or none if one is full. On
// PostgreSQL each counter is locked first (lockGroup took the locks of the
// whole group already), so that nodes count and take it one at a time.
func (t *txn) reserve(ctx context.Context, extID string, rs []Reservation, locks int64) (full bool, err error) {
	keys := make([]string, len(rs))
	for i, r := range rs {
		keys[i] = r.Key
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := t.lock(ctx, locks, k); err != nil {
			return false, err
		}
	}
	for _, r := range rs {
		var n int
		if err := t.queryRow(ctx, `SELECT count(*) FROM reservations WHERE key = ? AND at > ?`,
			r.Key, t.now-r.Window.Nanoseconds()).Scan(&n); err != nil {
			return false, fmt.Errorf("count reservations: %w", err)
		}
		if n >= r.Limit {
			return true, nil
		}
	}
	for _, r := range rs {
		if _, err := t.exec(ctx, `INSERT INTO reservations (key, at, until, ext_id) VALUES (?, ?, ?, ?)`,
			r.Key, t.now, t.now+r.Window.Nanoseconds(), extID); err != nil {
			return false, fmt.Errorf("reserve: %w", err)
		}
	}
	return false, nil
}
