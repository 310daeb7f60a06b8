package queue

import (
	"context"
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
// alone), commits once, and answers each. No update waits for a timer.

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

func (q *Queue) commitGroup(batch []*groupOp) {
	ctx := context.Background() // one caller giving up must not abort the others
	errs := make([]error, len(batch))
	err := q.write(ctx, func(tx *txn) error {
		for i, op := range batch {
			if err := op.ctx.Err(); err != nil {
				errs[i] = err // nobody is waiting: write nothing
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT op"); err != nil {
				return err
			}
			seqs := maps.Clone(tx.seqs)
			if errs[i] = op.fn(tx); errs[i] != nil {
				// Undo this update alone, sequence numbers included.
				tx.seqs = seqs
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO op"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE op"); err != nil {
				return err
			}
		}
		return nil
	})
	for i, op := range batch {
		if err != nil {
			errs[i] = fmt.Errorf("group commit: %w", err)
		}
		op.done <- errs[i]
	}
}
