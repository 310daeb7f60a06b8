package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
)

// Group commit for the send side's updates.
//
// Every sent message ends with one small write (Finish, Retry or Postpone),
// and with several send workers those writes arrive together. Each in its
// own transaction costs an fsync; shared, one fsync covers them all. A
// single writer takes one waiting update and every other already waiting,
// runs each inside the same transaction under its own SAVEPOINT (so one
// that fails, such as a Finish of an entry erasure cancelled, rolls back
// alone), commits once, and answers each. No update waits for a timer. An
// update that lost a conflict with another node's transaction (a deadlock)
// fails the whole transaction instead, which write then runs again. (On
// PostgreSQL savepoints are used only once an update has failed: see
// commitGroup.)

// groupOp is one update waiting for the group writer.
type groupOp struct {
	ctx  context.Context
	fn   func(*txn) error
	done chan error
}

// maxGroup bounds the updates one transaction takes.
const maxGroup = 64

// writeGrouped runs fn in a transaction shared with concurrent updates and
// returns once that transaction is durable (or fn's own error).
func (q *Queue) writeGrouped(ctx context.Context, fn func(*txn) error) error {
	op := &groupOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case q.ops <- op:
	case <-q.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-op.done // the writer always answers, even on Close
}

func (q *Queue) groupLoop() {
	defer q.writer.Done()
	var batch []*groupOp
	for {
		batch = batch[:0]
		select {
		case op := <-q.ops:
			batch = append(batch, op)
		case <-q.closing:
			return
		}
	gather:
		for len(batch) < maxGroup {
			select {
			case op := <-q.ops:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		q.commitGroup(batch)
	}
}

// errFailedAlone stops a group written without savepoints when one of its
// updates fails: the group is written again, with them.
var errFailedAlone = errors.New("an update of the group failed")

func (q *Queue) commitGroup(batch []*groupOp) {
	ctx := context.Background() // one caller giving up must not abort the others
	errs := make([]error, len(batch))
	// A savepoint costs nothing in SQLite, but two round trips and a
	// subtransaction in PostgreSQL, for updates that almost never fail:
	// there, a group is first written without, and only if one of its
	// updates fails is it rolled back and written again with them.
	savepoints := !q.d.postgres
	var err error
	for {
		err = q.write(ctx, func(tx *txn) error { return q.writeGroupOps(ctx, tx, batch, errs, savepoints) })
		if savepoints || !errors.Is(err, errFailedAlone) {
			break
		}
		savepoints = true
	}
	for i, op := range batch {
		if err != nil {
			errs[i] = fmt.Errorf("group commit: %w", err)
		}
		op.done <- errs[i]
	}
}

// writeGroupOps runs the updates of a group in tx and sets each one's
// error. With savepoints, an update that fails is undone alone; without,
// it fails the transaction with errFailedAlone.
func (q *Queue) writeGroupOps(ctx context.Context, tx *txn, batch []*groupOp, errs []error, savepoints bool) error {
	clear(errs) // a transaction run again starts over
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err // nobody is waiting: write nothing
			continue
		}
		if savepoints {
			if _, err := tx.exec(ctx, "SAVEPOINT op"); err != nil {
				return err
			}
		}
		events, locked := len(tx.events), maps.Clone(tx.locked)
		if errs[i] = op.fn(tx); errs[i] != nil {
			if q.d.retryable(errs[i]) {
				return errs[i] // the whole transaction, run again
			}
			if !savepoints {
				return errFailedAlone
			}
			// Undo this update alone, the events it added and the
			// locks it took included.
			tx.events, tx.locked = tx.events[:events], locked
			if _, err := tx.exec(ctx, "ROLLBACK TO op"); err != nil {
				return err
			}
		}
		if savepoints {
			if _, err := tx.exec(ctx, "RELEASE op"); err != nil {
				return err
			}
		}
	}
	return nil
}
