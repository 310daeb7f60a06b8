package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/blindpost/blindpost/vault"
)

// shredTables are the tables whose rows name or hold a subject's data, in
// the order Shred rewrites them: the wrapped data keys first, because once
// they are gone the sealed records and tokens left behind can no longer be
// opened, and data_keys is the smallest table, so that step is the fastest.
var shredTables = [...]string{"data_keys", "tokens", "subjects"}

// horizonAge is the age, in transactions, of the oldest snapshot or
// transaction in this database that could still see a row another
// transaction deleted: open transactions and their snapshots (except the
// caller's own), prepared transactions and replication slots (a standby
// with hot_standby_feedback). -1 if there is none.
const horizonAge = `
SELECT coalesce(max(age(x)), -1) FROM (
	SELECT backend_xmin AS x FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)
	UNION ALL SELECT backend_xid FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)
	UNION ALL SELECT xmin FROM pg_replication_slots
	UNION ALL SELECT transaction FROM pg_prepared_xacts WHERE database = current_database()
) h WHERE x IS NOT NULL`

// ErrShredDeferred is returned by Shred when a transaction that started
// before an erasure was still open: the rewrite had to keep the rows that
// transaction can see, so those erasures stay pending for the next Shred.
// It matches vault.ErrUnavailable.
var ErrShredDeferred = fmt.Errorf("%w: an open transaction predates an erasure", vault.ErrUnavailable)

// Shred makes the rows deleted by past erasures unrecoverable from the
// database files. A DELETE in PostgreSQL only marks a tuple dead: its bytes,
// the wrapped data key among them, stay in the table's pages, and in its
// indexes and TOAST table, until the space is reused, and a plain VACUUM
// frees the space without overwriting it. Shred rewrites the data_keys,
// tokens and subjects tables with VACUUM FULL, which copies the live rows
// into new files, rebuilds the indexes and TOAST table, and truncates the
// old files at commit.
//
// VACUUM FULL holds an ACCESS EXCLUSIVE lock on each table while it
// rewrites it: Put, Resolve and Lookup on every node wait for it (see the
// package documentation for the cost). Shred does nothing when no erasure
// is pending, so calling it often is cheap. Only one node shreds a schema
// at a time; a second caller waits for the first.
//
// Erasures whose transaction an open snapshot could still see are not
// shredded by this run (the rewrite must keep such rows); Shred then returns
// an error matching ErrShredDeferred and vault.ErrUnavailable, and a later
// run covers them.
func (s *Store) Shred(ctx context.Context) error {
	if err := s.shred(ctx); err != nil {
		return fmt.Errorf("postgres: shred: %w", err)
	}
	return nil
}

func (s *Store) shred(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return dbErr("connect", err)
	}
	defer conn.Release()
	// A session lock, so it spans the VACUUMs, which cannot run inside a
	// transaction block.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, s.lockKey); err != nil {
		return dbErr("lock", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err1 := conn.Exec(ctx, `RESET lock_timeout`)
		_, err2 := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, s.lockKey)
		if err1 != nil || err2 != nil {
			// Closing the connection releases the lock and the setting.
			conn.Hijack().Close(ctx)
		}
	}()

	// Short transactions in flight on other nodes often predate the
	// newest erasure by milliseconds: wait a little for them to end
	// rather than defer the erasure to the next run.
	var (
		safe     []pendingShred
		deferred int
	)
	for wait := 25 * time.Millisecond; ; wait *= 2 {
		if safe, deferred, err = s.pendingErasures(ctx, conn); err != nil {
			return err
		}
		if deferred == 0 || wait > maxHorizonWait {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(safe) == 0 && deferred == 0 {
		return nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`SET lock_timeout = %d`, s.lockTimeout.Milliseconds())); err != nil {
		return dbErr("set lock timeout", err)
	}
	for _, t := range shredTables {
		if _, err := conn.Exec(ctx, `VACUUM (FULL) `+s.schema+`.`+t); err != nil {
			return dbErr("rewrite "+t, err)
		}
	}
	if len(safe) > 0 {
		// Only as they were read: a re-wrap pass moves its row to each of
		// its transactions, and one it committed during the rewrite may
		// have left dead tuples the rewrite had to keep.
		ids, xids := make([]int64, len(safe)), make([]string, len(safe))
		for i, p := range safe {
			ids[i], xids[i] = p.id, p.xid
		}
		if _, err := conn.Exec(ctx, `DELETE FROM `+s.schema+`.shred_pending p
			USING unnest($1::bigint[], $2::text[]) AS u(id, xid)
			WHERE p.id = u.id AND p.erase_xid::text = u.xid`, ids, xids); err != nil {
			return dbErr("clear pending erasures", err)
		}
	}
	if deferred > 0 {
		return fmt.Errorf("%d erasures: %w", deferred, ErrShredDeferred)
	}
	return nil
}

// maxHorizonWait bounds how long Shred waits for transactions that
// predate an erasure (25 ms doubling: about 1.6 s in all).
const maxHorizonWait = time.Second

// pendingShred is a shred_pending row: an erasure, or a re-wrap pass.
type pendingShred struct {
	id  int64
	xid string
}

// pendingErasures splits the pending erasures into those whose
// transaction is older than every snapshot that remains, which VACUUM FULL
// can shred because no snapshot can see the rows they deleted, and the
// number of the others. Ages are relative to the statement's transaction,
// so both sides are computed in one statement; and the horizon only moves forward, so reading it before the
// rewrite is conservative.
func (s *Store) pendingErasures(ctx context.Context, conn *pgxpool.Conn) (safe []pendingShred, deferred int, err error) {
	rows, err := conn.Query(ctx, `SELECT id, erase_xid::text, age((erase_xid::text::bigint % 4294967296)::text::xid) > (`+horizonAge+`)
		FROM `+s.schema+`.shred_pending`)
	if err != nil {
		return nil, 0, dbErr("read pending erasures", err)
	}
	var (
		p  pendingShred
		ok bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&p.id, &p.xid, &ok}, func() error {
		if ok {
			safe = append(safe, p)
		} else {
			deferred++
		}
		return nil
	}); err != nil {
		return nil, 0, dbErr("read pending erasures", err)
	}
	return safe, deferred, nil
}

// Pending reports how many erasures (and re-wrap passes, one each) Shred
// has not yet covered, and when the oldest of them happened: the window in
// which an erased subject's wrapped data key may still be read from the
// database files. Export it as a metric; alert when oldest falls behind
// the shred schedule.
func (s *Store) Pending(ctx context.Context) (n int, oldest time.Time, err error) {
	var t *time.Time
	err = s.pool.QueryRow(ctx, `SELECT count(*), min(erased_at) FROM `+s.schema+`.shred_pending`).Scan(&n, &t)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("postgres: pending: %w", dbErr("query", err))
	}
	if t != nil {
		oldest = *t
	}
	return n, oldest, nil
}
