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

// addEvent puts ev in the outbox with the tenant's next sequence number.
func (t *txn) addEvent(ctx context.Context, ev Event) error {
	if ev.Tenant == "" || ev.Status == "" {
		return fmt.Errorf("%w: event needs a tenant and a status", ErrInvalid)
	}
	seq, err := t.nextSeq(ctx, ev.Tenant)
	if err != nil {
		return err
	}
	s, err := t.stmt(ctx, `INSERT INTO events
		(tenant, seq, msg_id, ext_message_id, status, reason, decision_id, time, checkpoint, next_at, due, callback_url)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)`)
	if err != nil {
		return err
	}
	tm := unixNano(ev.Time)
	if tm == 0 {
		tm = t.now
	}
	if _, err := s.ExecContext(ctx, ev.Tenant, seq, ev.MsgID, ev.ExtMessageID, ev.Status, ev.Reason, ev.DecisionID, tm, ev.Checkpoint, ev.CallbackURL); err != nil {
		return fmt.Errorf("add event: %w", err)
	}
	return nil
}

func (t *txn) nextSeq(ctx context.Context, tenant string) (int64, error) {
	last, ok := t.seqs[tenant]
	if !ok {
		s, err := t.stmt(ctx, `SELECT last FROM seqs WHERE tenant = ?`)
		if err != nil {
			return 0, err
		}
		if err := s.QueryRowContext(ctx, tenant).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("read sequence number: %w", err)
		}
		if t.seqs == nil {
			t.seqs = make(map[string]int64)
		}
	}
	t.seqs[tenant] = last + 1
	return last + 1, nil
}

func (t *txn) saveSeqs(ctx context.Context) error {
	for tenant, last := range t.seqs {
		s, err := t.stmt(ctx, `INSERT INTO seqs (tenant, last) VALUES (?, ?)
			ON CONFLICT (tenant) DO UPDATE SET last = excluded.last`)
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, tenant, last); err != nil {
			return fmt.Errorf("save sequence number: %w", err)
		}
	}
	return nil
}

// ClaimEvents leases up to limit outbox events whose next attempt is due,
// increments their Attempts, and returns them in outbox order. Each must be
// acknowledged (AckEvent) or rescheduled (RetryEvent); otherwise it is due
// again when the lease ends.
func (q *Queue) ClaimEvents(ctx context.Context, limit int, lease time.Duration) ([]Event, error) {
	if limit <= 0 || lease < 0 {
		return nil, fmt.Errorf("%w: claim limit %d, lease %v", ErrInvalid, limit, lease)
	}
	now := q.now()
	var out []Event
	err := q.write(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `
UPDATE events SET due = ?, attempts = attempts + 1
WHERE id IN (SELECT id FROM events WHERE due <= ? ORDER BY id LIMIT ?)
RETURNING id, tenant, seq, msg_id, ext_message_id, status, reason, decision_id, time, checkpoint, attempts, callback_url`,
			now.Add(lease).UnixNano(), now.UnixNano(), limit)
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
		s, err := tx.stmt(ctx, `DELETE FROM events WHERE id = ?`)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := s.ExecContext(ctx, id); err != nil {
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
	res, err := q.db.ExecContext(ctx, query, args...)
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
