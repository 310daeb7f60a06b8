package queue

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

const entryColumns = `ext_id, tenant, msg_id, brand, "user", request, envelope, not_before, expires_at, attempts, created, callback_url, compat`

// Claim leases up to limit entries that are due (NotBefore has passed and
// they are not leased, or their lease has run out), increments their
// Attempts, and returns them oldest first. A claimed entry stays in the queue
// until Finish or Retry; if neither comes before the lease ends, it is claimed
// again; a zero lease makes it claimable again at once. Expired entries are
// returned like any other: the caller finishes them as "expired". Nodes
// claiming at once from one PostgreSQL queue never get the same entry.
func (q *Queue) Claim(ctx context.Context, limit int, lease time.Duration) ([]Entry, error) {
	if limit <= 0 || lease < 0 {
		return nil, fmt.Errorf("%w: claim limit %d, lease %v", ErrInvalid, limit, lease)
	}
	now := q.now()
	var out []Entry
	err := q.write(ctx, func(tx *txn) error {
		rows, err := tx.query(ctx, `
UPDATE entries SET due = ?, attempts = attempts + 1, owner = ?
WHERE ext_id IN (SELECT ext_id FROM entries WHERE due <= ? ORDER BY due LIMIT ?`+q.d.skipLocked+`)
RETURNING `+entryColumns, now.Add(lease).UnixNano(), q.node, now.UnixNano(), limit)
		if err != nil {
			return err
		}
		out, err = scanEntries(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: claim: %w", err)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(a.NotBefore.Compare(b.NotBefore), cmp.Compare(a.ExtID, b.ExtID))
	})
	return out, nil
}

// Finish removes an entry from the queue and puts its final status event in
// the outbox, in one transaction, with the provider's ids for the message
// if it was sent (for its delivery receipts; see Receipt). The event's
// Tenant, MsgID, ExtMessageID and CallbackURL are set to the entry's. If the
// entry is gone (finished or cancelled already), Finish writes nothing and
// returns ErrNotFound, so every entry gets exactly one final event.
func (q *Queue) Finish(ctx context.Context, extID string, ev Event, refs ...ProviderRef) error {
	err := q.writeGrouped(ctx, func(tx *txn) error {
		var k entryKey
		err := tx.queryRow(ctx, `DELETE FROM entries WHERE ext_id = ? RETURNING tenant, msg_id, ext_id, callback_url`, extID).
			Scan(&k.tenant, &k.msgID, &k.extID, &k.callbackURL)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if r.Adapter == "" || r.ID == "" {
				continue
			}
			if _, err := tx.exec(ctx, `INSERT INTO provider_ids
				(adapter, provider_id, tenant, msg_id, ext_message_id, callback_url, created) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (adapter, provider_id) DO NOTHING`,
				r.Adapter, r.ID, k.tenant, k.msgID, k.extID, k.callbackURL, tx.now); err != nil {
				return fmt.Errorf("keep provider id: %w", err)
			}
		}
		return tx.addEvent(ctx, k.fill(ev))
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("queue: finish %s: %w", extID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("queue: finish %s: %w", extID, err)
	}
	return nil
}

// Retry releases an entry's lease and makes it due again at at, with an
// optional status event (such as "deferred") written in the same
// transaction. ErrNotFound if the entry is gone.
func (q *Queue) Retry(ctx context.Context, extID string, at time.Time, ev *Event) error {
	err := q.writeGrouped(ctx, func(tx *txn) error {
		var k entryKey
		n := unixNano(at)
		err := tx.queryRow(ctx, `UPDATE entries SET not_before = ?, due = ? WHERE ext_id = ? RETURNING tenant, msg_id, ext_id, callback_url`,
			n, n, extID).Scan(&k.tenant, &k.msgID, &k.extID, &k.callbackURL)
		if err != nil || ev == nil {
			return err
		}
		return tx.addEvent(ctx, k.fill(*ev))
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("queue: retry %s: %w", extID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("queue: retry %s: %w", extID, err)
	}
	return nil
}

// Postpone is Retry for a message that was claimed but not tried: the
// adapter's rate limit or open circuit, or a policy deferral, put it off.
// It gives back the attempt Claim counted, so waiting never uses up a
// message's attempts.
func (q *Queue) Postpone(ctx context.Context, extID string, at time.Time, ev *Event) error {
	err := q.writeGrouped(ctx, func(tx *txn) error {
		var k entryKey
		n := unixNano(at)
		err := tx.queryRow(ctx, `UPDATE entries SET not_before = ?, due = ?,
			attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
			WHERE ext_id = ? RETURNING tenant, msg_id, ext_id, callback_url`,
			n, n, extID).Scan(&k.tenant, &k.msgID, &k.extID, &k.callbackURL)
		if err != nil || ev == nil {
			return err
		}
		return tx.addEvent(ctx, k.fill(*ev))
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("queue: postpone %s: %w", extID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("queue: postpone %s: %w", extID, err)
	}
	return nil
}

// CancelSubject finishes every queued entry addressed to the subject
// (tenant, brand, user), leased or not, with the event ev returns for it
// (erasure reports "unknown_recipient"), in one transaction, and returns how
// many it cancelled. Entries addressed by token are not found here; they
// fail to resolve at send time. ev must not call back into the Queue.
func (q *Queue) CancelSubject(ctx context.Context, tenant, brand, user string, ev func(Entry) Event) (int, error) {
	if tenant == "" || user == "" || ev == nil {
		return 0, fmt.Errorf("%w: cancel needs a tenant, a user and an event", ErrInvalid)
	}
	var n int
	err := q.write(ctx, func(tx *txn) error {
		rows, err := tx.query(ctx, `DELETE FROM entries WHERE tenant = ? AND brand = ? AND "user" = ? RETURNING `+entryColumns,
			tenant, brand, user)
		if err != nil {
			return err
		}
		entries, err := scanEntries(rows)
		if err != nil {
			return err
		}
		slices.SortFunc(entries, func(a, b Entry) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ExtID, b.ExtID))
		})
		for _, e := range entries {
			k := entryKey{tenant: e.Tenant, msgID: e.MsgID, extID: e.ExtID, callbackURL: e.CallbackURL}
			if err := tx.addEvent(ctx, k.fill(ev(e))); err != nil {
				return err
			}
		}
		n = len(entries)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: cancel subject: %w", err)
	}
	return n, nil
}

// ReleaseLeases ends leases now, so that the entries and events they hold
// are claimable at once: on SQLite every lease (the file has one process),
// on PostgreSQL those this node (Options.Node) holds. Call it once at
// start-up: the leases of the process that ran before are void. Another
// node's leases are left to run out: that node may still be sending.
func (q *Queue) ReleaseLeases(ctx context.Context) error {
	entries := `UPDATE entries SET due = not_before WHERE due <> not_before`
	events := `UPDATE events SET due = next_at WHERE due <> next_at`
	var args []any
	if q.d.postgres {
		entries += ` AND owner = ?`
		events += ` AND owner = ?`
		args = []any{q.node}
	}
	err := q.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(ctx, entries, args...); err != nil {
			return err
		}
		_, err := tx.exec(ctx, events, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: release leases: %w", err)
	}
	return nil
}

// Len returns the number of queued entries, leased or not.
func (q *Queue) Len(ctx context.Context) (int, error) {
	var n int
	if err := q.queryRow(ctx, `SELECT count(*) FROM entries`).Scan(&n); err != nil {
		return 0, fmt.Errorf("queue: len: %w", err)
	}
	return n, nil
}

func scanEntries(rows *sql.Rows) ([]Entry, error) {
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var nb, exp, created int64
		if err := rows.Scan(&e.ExtID, &e.Tenant, &e.MsgID, &e.Brand, &e.User, &e.Request, &e.Envelope,
			&nb, &exp, &e.Attempts, &created, &e.CallbackURL, &e.Compat); err != nil {
			return nil, err
		}
		e.NotBefore, e.ExpiresAt, e.Created = fromUnixNano(nb), fromUnixNano(exp), fromUnixNano(created)
		out = append(out, e)
	}
	return out, rows.Err()
}

// entryKey names the entry an event is about.
type entryKey struct{ tenant, msgID, extID, callbackURL string }

func (k entryKey) fill(ev Event) Event {
	ev.Tenant, ev.MsgID, ev.ExtMessageID, ev.CallbackURL = k.tenant, k.msgID, k.extID, k.callbackURL
	return ev
}

// Receipt records a provider's delivery receipt for a sent message: it puts
// ev in the outbox, for the message found by the provider's id (ref.ID) or,
// when the provider echoes the gateway's reference instead, by its
// ext_message_id (extID) among the messages sent through ref.Adapter. It
// returns the event as written (Tenant, MsgID, ExtMessageID and CallbackURL
// filled in), or ok false when the message already had a receipt with this
// status (providers repeat receipts). ErrNotFound if no sent message
// matches, or it is older than the answers' horizon.
func (q *Queue) Receipt(ctx context.Context, ref ProviderRef, extID string, ev Event) (_ Event, ok bool, err error) {
	if ref.Adapter == "" || (ref.ID == "" && extID == "") || ev.Status == "" {
		return Event{}, false, fmt.Errorf("%w: receipt needs an adapter, an id and a status", ErrInvalid)
	}
	var out Event
	err = q.write(ctx, func(tx *txn) error {
		out, ok = Event{}, false // a retried transaction starts over
		find := func() (k entryKey, last string, err error) {
			row := tx.queryRow(ctx, `SELECT tenant, msg_id, ext_message_id, callback_url, receipt FROM provider_ids
				WHERE adapter = ? AND provider_id = ?`, ref.Adapter, ref.ID)
			if ref.ID == "" {
				row = tx.queryRow(ctx, `SELECT tenant, msg_id, ext_message_id, callback_url, receipt FROM provider_ids
					WHERE adapter = ? AND ext_message_id = ? LIMIT 1`, ref.Adapter, extID)
			}
			err = row.Scan(&k.tenant, &k.msgID, &k.extID, &k.callbackURL, &last)
			return k, last, err
		}
		k, last, err := find()
		if err != nil {
			return err
		}
		if extID != "" && extID != k.extID {
			// The provider's id and the echoed reference disagree:
			// believe neither.
			return sql.ErrNoRows
		}
		if q.d.postgres {
			// Another node may be recording a receipt of the same
			// message (providers repeat them, and a message sent in
			// parts has one per part): one at a time, and read again
			// what the one before left.
			if err := tx.lock(ctx, q.receiptLocks, k.extID); err != nil {
				return err
			}
			if k, last, err = find(); err != nil {
				return err
			}
		}
		if last == ev.Status {
			return nil
		}
		if _, err := tx.exec(ctx, `UPDATE provider_ids SET receipt = ? WHERE ext_message_id = ?`, ev.Status, k.extID); err != nil {
			return fmt.Errorf("record receipt: %w", err)
		}
		out, ok = k.fill(ev), true
		return tx.addEvent(ctx, out)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, false, fmt.Errorf("queue: receipt: %w", ErrNotFound)
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("queue: receipt: %w", err)
	}
	if !ok {
		return ev, false, nil
	}
	return out, true, nil
}
