package queue

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

// State that gateway nodes sharing a PostgreSQL queue must share beyond
// the queue itself: the nonces of opened envelopes (a replay to another
// node is a replay all the same) and the volume guard's counters. Both
// work on SQLite too, where they outlive a restart, which the in-memory
// versions do not.
//
// On SQLite both ride on the send side's group commit: with one writer,
// sharing its sync is what keeps them cheap. On PostgreSQL each is a
// short transaction of its own, so that it never waits behind the locks
// that a group holds.

// CheckNonce records nonce for tenant until until, and returns
// envelope.ErrReplay if it is recorded already and has not expired (until
// is not before now): whichever node recorded it, and of several nodes
// recording one nonce at once exactly one succeeds. It satisfies the
// contract of envelope.ReplayCache (see Check); an error other than
// a replay wraps envelope.ErrUnavailable, so the envelope is refused as
// retryable: the check fails closed.
func (q *Queue) CheckNonce(ctx context.Context, tenant string, nonce []byte, until time.Time) error {
	if tenant == "" || len(nonce) == 0 {
		return fmt.Errorf("queue: check nonce: %w: empty tenant or nonce", ErrInvalid)
	}
	// The primary key decides: the insert of a nonce seen before
	// conflicts, and takes its place only if it has expired.
	const insert = `INSERT INTO nonces (tenant, nonce, until) VALUES (?, ?, ?)
		ON CONFLICT (tenant, nonce) DO UPDATE SET until = excluded.until WHERE nonces.until < ?`
	args := []any{tenant, nonce, unixNano(until), unixNano(q.now())}
	var res sql.Result
	var err error
	if q.d.postgres {
		res, err = q.exec(ctx, insert, args...) // a transaction of its own
	} else {
		err = q.writeGrouped(ctx, func(tx *txn) error {
			r, err := tx.exec(ctx, insert, args...)
			res = r
			return err
		})
	}
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return fmt.Errorf("queue: check nonce: %w: %w", envelope.ErrUnavailable, err)
	}
	q.maybeSweep(ctx)
	if n != 1 {
		return envelope.ErrReplay
	}
	return nil
}

// Check is CheckNonce, so that a Queue is an envelope.ReplayCache.
func (q *Queue) Check(ctx context.Context, tenant string, nonce []byte, until time.Time) error {
	return q.CheckNonce(ctx, tenant, nonce, until)
}

var _ envelope.ReplayCache = (*Queue)(nil)

// volumeWindow is the volume guard's window, in seconds.
const volumeWindow = 60

// AddVolume counts n requests for tenant at now and returns the total over
// the minute ending at now (the seconds within 60 of now's), counted by
// every node sharing the queue. Counters are not durable on PostgreSQL:
// a crash of the server may forget the last moment's counts, which only
// lowers a guard for a minute.
func (q *Queue) AddVolume(ctx context.Context, tenant string, now time.Time, n int) (total int, err error) {
	if tenant == "" || n < 0 {
		return 0, fmt.Errorf("%w: volume needs a tenant and a count of at least 0", ErrInvalid)
	}
	sec := now.Unix()
	add := func(tx *txn) error {
		if _, err := tx.exec(ctx, `INSERT INTO volume (tenant, second, node, n) VALUES (?, ?, ?, ?)
			ON CONFLICT (tenant, second, node) DO UPDATE SET n = volume.n + excluded.n`,
			tenant, sec, q.node, n); err != nil {
			return err
		}
		return tx.queryRow(ctx, `SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM volume WHERE tenant = ? AND second > ?`,
			tenant, sec-volumeWindow).Scan(&total)
	}
	if q.d.postgres {
		err = q.write(ctx, func(tx *txn) error {
			// Do not hold this node's counter through a WAL flush:
			// counts need not survive a crash, and every request
			// of the node adds to the same row.
			if _, err := tx.exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			return add(tx)
		})
	} else {
		err = q.writeGrouped(ctx, add)
	}
	if err != nil {
		return 0, fmt.Errorf("queue: add volume: %w", err)
	}
	q.maybeSweep(ctx)
	return total, nil
}

// sweepEvery is how often CheckNonce and AddVolume delete what has
// expired, so that the tables stay small between Prunes.
const sweepEvery = time.Minute

func (q *Queue) maybeSweep(ctx context.Context) {
	now := q.now().UnixNano()
	last := q.swept.Load()
	if now-last < int64(sweepEvery) || !q.swept.CompareAndSwap(last, now) {
		return
	}
	if err := q.sweep(ctx); err != nil {
		q.log.Warn("queue sweep failed", "err", err)
	}
}

// sweep deletes the expired nonces and the volume counters out of every
// window. Counters are kept a minute longer than the window, in case the
// callers' clock is behind the queue's.
func (q *Queue) sweep(ctx context.Context) error {
	now := q.now()
	if _, err := q.exec(ctx, `DELETE FROM nonces WHERE until < ?`, unixNano(now)); err != nil {
		return fmt.Errorf("queue: prune nonces: %w", err)
	}
	if _, err := q.exec(ctx, `DELETE FROM volume WHERE second <= ?`, now.Unix()-2*volumeWindow); err != nil {
		return fmt.Errorf("queue: prune volume counters: %w", err)
	}
	return nil
}
