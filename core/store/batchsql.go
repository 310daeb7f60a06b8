package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strings"
)

// SQLite takes many rows per statement with multi-row VALUES. Each
// statement has one of a few shapes, prepared once when the store opens,
// so that no transaction prepares anything: a batch of n rows goes in
// chunks of powers of two rows, at most maxChunk.
const (
	maxChunkLog = 9
	maxChunk    = 1 << maxChunkLog // 512 rows of 7 values: well within SQLite's 32766 variables
)

// The chunked statements.
const (
	sqlInsertEvents = iota
	sqlLoadPlayers
	sqlWritePlayers
	sqlFlagNotFound
	numChunked
)

// Statements of Ingest on SQLite that take one row.
const (
	labelExistsSQL     = `SELECT 1 FROM labels WHERE id = ?`
	insertRejectionSQL = `INSERT INTO rejections (label, eid, reason, path, time) VALUES (?, ?, ?, ?, ?)`
	countRejectionSQL  = `INSERT INTO rejection_counts (label, reason, n) VALUES (?, ?, ?)
	ON CONFLICT (label, reason) DO UPDATE SET n = rejection_counts.n + excluded.n`
)

var chunkedSQL [numChunked][maxChunkLog + 1]string

func init() {
	for l := range maxChunkLog + 1 {
		n := 1 << l
		// WHERE true: SQLite's parser needs it between a SELECT and ON
		// CONFLICT.
		chunkedSQL[sqlInsertEvents][l] = `INSERT OR IGNORE INTO events
	(label, eid, event_date, ext_brand_id, user_ext_id, event_type, payload, skip_cjm, user_not_found, received)
SELECT ?, column1, column2, column3, column4, column5, column6, column7, 0, ?
FROM (VALUES ` + valuesList(n, 7) + `)
RETURNING eid`
		chunkedSQL[sqlLoadPlayers][l] = `SELECT ext_brand_id, user_ext_id, properties, last_online, first_seen FROM players
WHERE label = ? AND (ext_brand_id, user_ext_id) IN (VALUES ` + valuesList(n, 2) + `)`
		chunkedSQL[sqlWritePlayers][l] = `INSERT INTO players
	(label, ext_brand_id, user_ext_id, properties, last_online, first_seen, updated)
SELECT ?, column1, column2, column3, column4, column5, ?
FROM (VALUES ` + valuesList(n, 5) + `) WHERE true
ON CONFLICT (label, ext_brand_id, user_ext_id) DO UPDATE SET
	properties = excluded.properties, last_online = excluded.last_online, updated = excluded.updated`
		chunkedSQL[sqlFlagNotFound][l] = `UPDATE events SET user_not_found = 1
WHERE label = ? AND eid IN (` + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + `)`
	}
}

// chunked returns statement kind for rows rows, a power of two.
func chunked(kind, rows int) string {
	return chunkedSQL[kind][bits.Len(uint(rows))-1]
}

// valuesList returns rows tuples of cols placeholders: "(?, ?), (?, ?)".
func valuesList(rows, cols int) string {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return tuple + strings.Repeat(", "+tuple, rows-1)
}

// chunks calls fn for each chunk of n items: powers of two, largest
// first, at most maxChunk.
func chunks(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; {
		size := min(maxChunk, 1<<(bits.Len(uint(n-lo))-1))
		if err := fn(lo, lo+size); err != nil {
			return err
		}
		lo += size
	}
	return nil
}

// prepareSQLite prepares Ingest's statements on the writer's connection.
// Transactions use them through Tx.StmtContext, which reuses a statement
// prepared on the transaction's connection (and prepares it again if the
// connection was replaced).
func (s *Store) prepareSQLite(ctx context.Context) error {
	queries := []string{labelExistsSQL, insertRejectionSQL, countRejectionSQL}
	for _, byRows := range chunkedSQL {
		queries = append(queries, byRows[:]...)
	}
	s.prepared = make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		s.prepared[q] = st
	}
	return nil
}
