package queue

import (
	"context"
	"fmt"
)

// WriteForTest runs fn in a write transaction as the queue's own methods
// do: alone, or (grouped) through the send side's group writer. exec runs
// a statement in it.
func (q *Queue) WriteForTest(ctx context.Context, grouped bool, fn func(exec func(query string, args ...any) error) error) error {
	w := q.write
	if grouped {
		w = q.writeGrouped
	}
	return w(ctx, func(tx *txn) error {
		return fn(func(query string, args ...any) error {
			_, err := tx.exec(ctx, query, args...)
			return err
		})
	})
}

// RowsForTest counts the rows of one of the queue's tables.
func (q *Queue) RowsForTest(ctx context.Context, table string) (int, error) {
	var n int
	if err := q.queryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %q`, table)).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}
