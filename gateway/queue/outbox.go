package queue

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// addEvent puts ev in the outbox with the tenant's next sequence number.
// The transaction's events are written, and numbered, as it commits
// (writeEvents).
func (t *txn) addEvent(_ context.Context, ev Event) error {
	if ev.Tenant == "" || ev.Status == "" {
		return fmt.Errorf("%w: event needs a tenant and a status", ErrInvalid)
	}
	if ev.Time.IsZero() {
		ev.Time = fromUnixNano(t.now)
	}
	t.events = append(t.events, ev)
	return nil
}

// writeEvents writes the transaction's events, numbering each tenant's
// from its counter, last thing before the commit. The counter stays locked
// until the commit (SQLite: the file's one writer; PostgreSQL: the
// counter's row), so that every number is handed out once, in commit
// order, and outbox order agrees with it. Tenants are taken in sorted
// order, the same in every transaction of every node, and only at the end,
// so that two transactions never wait for each other's counters in a
// cycle, and none holds a counter while it waits for anything but a later
// tenant's counter.
func (t *txn) writeEvents(ctx context.Context) error {
	if len(t.events) == 0 {
		return nil
	}
	byTenant := map[string][]Event{}
	for _, ev := range t.events {
		byTenant[ev.Tenant] = append(byTenant[ev.Tenant], ev)
	}
	write := t.writeTenantEvents
	if t.d.postgres {
		write = t.writeTenantEventsPG
	}
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		if err := write(ctx, tenant, byTenant[tenant]); err != nil {
			return fmt.Errorf("add event: %w", err)
		}
	}
	t.events = nil
	return nil
}

func (t *txn) writeTenantEvents(ctx context.Context, tenant string, evs []Event) error {
	var last int64
	if err := t.queryRow(ctx, `SELECT last FROM seqs WHERE tenant = ?`, tenant).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read sequence number: %w", err)
	}
	for _, ev := range evs {
		last++
		if _, err := t.exec(ctx, `INSERT INTO events
			(tenant, seq, msg_id, ext_message_id, status, reason, decision_id, time, checkpoint, next_at, due, callback_url)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)`,
			tenant, last, ev.MsgID, ev.ExtMessageID, ev.Status, ev.Reason, ev.DecisionID, unixNano(ev.Time), ev.Checkpoint, ev.CallbackURL); err != nil {
			return err
		}
	}
	if _, err := t.exec(ctx, `INSERT INTO seqs (tenant, last) VALUES (?, ?)
		ON CONFLICT (tenant) DO UPDATE SET last = excluded.last`, tenant, last); err != nil {
		return fmt.Errorf("save sequence number: %w", err)
	}
	return nil
}

// writeTenantEventsPG is writeTenantEvents in one round trip: the upsert
// takes len(evs) numbers from the counter (and locks it), and the events
// are inserted in their order from arrays.
func (t *txn) writeTenantEventsPG(ctx context.Context, tenant string, evs []Event) error {
	n := len(evs)
	msgIDs, extIDs, statuses, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	decisions, checkpoints, callbacks := make([]string, n), make([]string, n), make([]string, n)
	times := make([]int64, n)
	for i, ev := range evs {
		msgIDs[i], extIDs[i], statuses[i], reasons[i] = ev.MsgID, ev.ExtMessageID, ev.Status, ev.Reason
		decisions[i], checkpoints[i], callbacks[i] = ev.DecisionID, ev.Checkpoint, ev.CallbackURL
		times[i] = unixNano(ev.Time)
	}
	_, err := t.tx.ExecContext(ctx, `
WITH s AS (
	INSERT INTO seqs (tenant, last) VALUES ($1, $2)
	ON CONFLICT (tenant) DO UPDATE SET last = seqs.last + excluded.last
	RETURNING last - $2 AS base)
INSERT INTO events
	(tenant, seq, msg_id, ext_message_id, status, reason, decision_id, time, checkpoint, next_at, due, callback_url)
SELECT $1, s.base + e.i, e.msg_id, e.ext_id, e.status, e.reason, e.decision_id, e.tm, e.checkpoint, 0, 0, e.callback_url
FROM s, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[])
	WITH ORDINALITY AS e(msg_id, ext_id, status, reason, decision_id, tm, checkpoint, callback_url, i)
ORDER BY e.i`,
		tenant, int64(n), msgIDs, extIDs, statuses, reasons, decisions, times, checkpoints, callbacks)
	return err
}

// ClaimEvents leases up to limit outbox events whose next attempt is due,
// increments their Attempts, and returns them in outbox order. Each must be
// acknowledged (AckEvent) or rescheduled (RetryEvent); otherwise it is due
// again when the lease ends. Nodes claiming at once from one PostgreSQL
// queue never get the same event.
func (q *Queue) ClaimEvents(ctx context.Context, limit int, lease time.Duration) ([]Event, error) {
	if limit <= 0 || lease < 0 {
		return nil, fmt.Errorf("%w: claim limit %d, lease %v", ErrInvalid, limit, lease)
	}
	now := q.now()
	var out []Event
	err := q.write(ctx, func(tx *txn) error {
		out = out[:0] // a retried transaction starts over
		rows, err := tx.query(ctx, `
UPDATE events SET due = ?, attempts = attempts + 1, owner = ?
WHERE id IN (SELECT id FROM events WHERE due <= ? ORDER BY id LIMIT ?`+q.d.skipLocked+`)
RETURNING id, tenant, seq, msg_id, ext_message_id, status, reason, decision_id, time, checkpoint, attempts, callback_url`,
			now.Add(lease).UnixNano(), q.node, now.UnixNano(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ev Event
			var t int64
			if err := rows.Scan(&ev.ID, &ev.Tenant, &ev.Seq, &ev.MsgID, &ev.ExtMessageID, &ev.Status, &ev.Reason,
				&ev.DecisionID, &t, &ev.Checkpoint, &ev.Attempts, &ev.CallbackURL); err != nil {
				return err
			}
			ev.Time = fromUnixNano(t)
			out = append(out, ev)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("queue: claim events: %w", err)
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// AckEvent removes a delivered event from the outbox.
func (q *Queue) AckEvent(ctx context.Context, id int64) error {
	return q.execOne(ctx, "ack event", `DELETE FROM events WHERE id = ?`, id)
}

// AckEvents removes several delivered events in one transaction (one sync
// instead of one per event). Ids already gone are ignored.
func (q *Queue) AckEvents(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := q.write(ctx, func(tx *txn) error {
		if q.d.postgres {
			_, err := tx.exec(ctx, `DELETE FROM events WHERE id = ANY(?)`, ids)
			return err
		}
		for _, id := range ids {
			if _, err := tx.exec(ctx, `DELETE FROM events WHERE id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: ack events: %w", err)
	}
	return nil
}

// RetryEvent releases an event's lease and makes it due again at at.
func (q *Queue) RetryEvent(ctx context.Context, id int64, at time.Time) error {
	n := unixNano(at)
	return q.execOne(ctx, "retry event", `UPDATE events SET next_at = ?, due = ? WHERE id = ?`, n, n, id)
}

// execOne runs a statement that must change exactly one row.
func (q *Queue) execOne(ctx context.Context, op, query string, args ...any) error {
	res, err := q.exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("queue: %s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("queue: %s: %w", op, err)
	} else if n == 0 {
		return fmt.Errorf("queue: %s: %w", op, ErrNotFound)
	}
	return nil
}

// AddEvent puts a status event that no queued entry finishes in the outbox:
// a player's opt-out through the gateway's unsubscribe link, about the
// message that carried it.
func (q *Queue) AddEvent(ctx context.Context, ev Event) error {
	if err := q.write(ctx, func(tx *txn) error { return tx.addEvent(ctx, ev) }); err != nil {
		return fmt.Errorf("queue: add event: %w", err)
	}
	return nil
}
