package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.Retokenizer = (*Store)(nil)

const (
	defaultRetokenBatch = 256
	// retokenWorkers bounds the records opened and tokenised at once: a
	// local key provider is CPU-bound, a remote one batches concurrent
	// calls.
	retokenWorkers = 8
	// maxRetokenAttempts bounds how often a pass reads again a subject
	// that Puts keep changing under it.
	maxRetokenAttempts = 5
	// dropBatch is the number of index entries one transaction of
	// DropTokenVersion deletes, so Puts are not held up for long.
	dropBatch = 1000
)

// retokenItem is one subject on its way through a pass.
type retokenItem struct {
	ref   vault.Ref
	row   row
	pairs []vault.TokenPair
	err   error
}

// Retokenize adds the index entries of the tenant's records under token
// key version opts.To, batch by batch, and emits each record's (From, To)
// pairs once they are committed. Records are opened and tokenised outside
// any transaction; each batch's entries are then written in one short
// write transaction, only for subjects whose record version is unchanged,
// so an Erase is never undone and a record a Put replaced is never indexed
// under its old addresses: such subjects are read again (their Put indexed
// both versions already, since To is one this store indexes on Put).
//
// A record that does not open is left as it is and the pass goes on, then
// fails with an error matching vault.ErrCorrupt; DropTokenVersion refuses
// while such a subject has no token of the pinned version.
func (s *Store) Retokenize(ctx context.Context, tenant string, opts vault.RetokenOptions, emit func(vault.TokenPair) error) (vault.RetokenStats, error) {
	var st vault.RetokenStats
	if err := vault.ValidateID(tenant); err != nil {
		return st, fmt.Errorf("embedded: retokenize: tenant: %w", err)
	}
	opts, err := vault.CheckRetoken(opts, s.tokenVersion, s.extraTokens, defaultRetokenBatch)
	if err != nil {
		return st, fmt.Errorf("embedded: retokenize: %w", err)
	}
	p := &retokenPass{s: s, tenant: tenant, opts: opts, emit: emit, st: &st}
	var after vault.Ref
	for {
		items, err := s.retokenPage(ctx, tenant, after, opts.Batch)
		if err != nil {
			return st, fmt.Errorf("embedded: retokenize: %w", err)
		}
		if len(items) == 0 {
			break
		}
		st.Scanned += len(items)
		after = items[len(items)-1].ref
		if err := p.batch(ctx, items); err != nil {
			return st, fmt.Errorf("embedded: retokenize: %w", err)
		}
		if len(items) < opts.Batch {
			break
		}
	}
	if p.failed > 0 {
		return st, fmt.Errorf("embedded: retokenize: %d records could not be re-tokenised, the first: %w", p.failed, p.first)
	}
	return st, nil
}

// retokenPass is one Retokenize of one tenant.
type retokenPass struct {
	s      *Store
	tenant string
	opts   vault.RetokenOptions
	emit   func(vault.TokenPair) error
	st     *vault.RetokenStats
	failed int
	first  error
}

func (s *Store) retokenPage(ctx context.Context, tenant string, after vault.Ref, n int) ([]*retokenItem, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT brand, user, version, wrapped_key, sealed_record FROM subjects
		WHERE tenant = ? AND (brand, user) > (?, ?)
		ORDER BY brand, user LIMIT ?`, tenant, after.Brand, after.User, n)
	if err != nil {
		return nil, dbErr("read records", err)
	}
	defer rows.Close()
	var items []*retokenItem
	for rows.Next() {
		it := &retokenItem{ref: vault.Ref{Tenant: tenant}}
		if err := rows.Scan(&it.ref.Brand, &it.ref.User, &it.row.version, &it.row.wrapped, &it.row.sealed); err != nil {
			return nil, dbErr("read records", err)
		}
		items = append(items, it)
	}
	return items, dbErr("read records", rows.Err())
}

// batch indexes one batch, reading again the subjects that changed under
// it.
func (p *retokenPass) batch(ctx context.Context, items []*retokenItem) error {
	for attempt := 1; len(items) > 0; attempt++ {
		if attempt > maxRetokenAttempts {
			return fmt.Errorf("%w: %d subjects kept changing during the pass; run it again", vault.ErrUnavailable, len(items))
		}
		if err := p.tokenise(ctx, items); err != nil {
			return err
		}
		changed, err := p.write(ctx, items)
		if err != nil {
			return err
		}
		items = items[:0]
		for _, it := range changed {
			r, err := p.s.load(ctx, it.ref)
			if errors.Is(err, vault.ErrNotFound) {
				continue // erased meanwhile
			}
			if err != nil {
				return err
			}
			items = append(items, &retokenItem{ref: it.ref, row: r})
		}
	}
	return nil
}

// tokenise opens the records, many at a time, and computes their pairs
// (in one batch per version when the provider offers it). Records that
// fail alone are counted (their err is set); a provider that is
// unavailable fails the batch.
func (p *retokenPass) tokenise(ctx context.Context, items []*retokenItem) error {
	recs := make([]vault.Record, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(retokenWorkers, len(items)) {
		wg.Go(func() {
			for i := range next {
				it := items[i]
				recs[i], it.err = p.s.openRow(ctx, it.ref, it.row)
			}
		})
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	var opened []int
	for i, it := range items {
		if it.err == nil {
			opened = append(opened, i)
			recs[len(opened)-1] = recs[i]
		}
	}
	pairs, errs, err := vault.RecordsTokenPairs(ctx, p.s.kp, p.tenant, p.opts.From, p.opts.To, recs[:len(opened)])
	clear(recs)
	if err != nil {
		return err
	}
	for j, i := range opened {
		items[i].pairs, items[i].err = pairs[j], errs[j]
	}
	for _, it := range items {
		if it.err == nil {
			continue
		}
		if errors.Is(it.err, vault.ErrUnavailable) || ctx.Err() != nil {
			return it.err
		}
		p.failed++
		if p.first == nil {
			p.first = it.err
		}
	}
	return nil
}

// write adds the To entries of the items whose record version is
// unchanged, in one transaction, then emits their pairs. It returns the
// items whose subjects changed or went.
func (p *retokenPass) write(ctx context.Context, items []*retokenItem) (changed []*retokenItem, err error) {
	tx, err := p.s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, dbErr("begin", err)
	}
	defer tx.Rollback()
	version, err := tx.PrepareContext(ctx, `SELECT version FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`)
	if err != nil {
		return nil, dbErr("prepare", err)
	}
	defer version.Close()
	insert, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO tokens (tenant, brand, token, user) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return nil, dbErr("prepare", err)
	}
	defer insert.Close()
	var done []*retokenItem
	added := 0
	for _, it := range items {
		if it.err != nil {
			continue
		}
		var v int64
		err := version.QueryRowContext(ctx, p.tenant, it.ref.Brand, it.ref.User).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) || err == nil && v != it.row.version {
			changed = append(changed, it)
			continue
		}
		if err != nil {
			return nil, dbErr("read version", err)
		}
		for _, pr := range it.pairs {
			res, err := insert.ExecContext(ctx, p.tenant, it.ref.Brand, pr.New, it.ref.User)
			if err != nil {
				return nil, dbErr("index token", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return nil, dbErr("index token", err)
			}
			added += int(n)
		}
		done = append(done, it)
	}
	if err := tx.Commit(); err != nil {
		return nil, dbErr("commit", err)
	}
	p.st.Added += added
	for _, it := range done {
		for _, pr := range it.pairs {
			p.st.Pairs++
			if err := p.emit(pr); err != nil {
				return nil, fmt.Errorf("emit: %w", err)
			}
		}
	}
	return changed, nil
}

// DropTokenVersion deletes the tenant's index entries of token key version
// v, for a thousand subjects per transaction, after checking that every subject with
// such an entry also has one of the same kind under the pinned version.
func (s *Store) DropTokenVersion(ctx context.Context, tenant string, v int) (int, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return 0, fmt.Errorf("embedded: drop token version: tenant: %w", err)
	}
	if err := vault.CheckDropVersion(v, s.tokenVersion, s.extraTokens); err != nil {
		return 0, fmt.Errorf("embedded: drop token version: %w", err)
	}
	missing := 0
	for _, k := range [...]vault.Kind{vault.KindEmail, vault.KindPhone, vault.KindTelegram} {
		var n int
		err := s.r.QueryRowContext(ctx, `
			SELECT count(*) FROM tokens t WHERE t.tenant = ? AND t.token LIKE ? ESCAPE '\'
			AND NOT EXISTS (SELECT 1 FROM tokens p
				WHERE p.tenant = t.tenant AND p.brand = t.brand AND p.user = t.user AND p.token LIKE ? ESCAPE '\')`,
			tenant, vault.TokenLike(k, v), vault.TokenLike(k, s.tokenVersion)).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("embedded: drop token version: %w", dbErr("check", err))
		}
		missing += n
	}
	if missing > 0 {
		return 0, fmt.Errorf("embedded: drop token version: %w: %d tokens of version %d have no counterpart of version %d; nothing was dropped",
			vault.ErrNotRetokenized, missing, v, s.tokenVersion)
	}
	total := 0
	var after vault.Ref
	for {
		n, last, err := s.dropPage(ctx, tenant, v, after)
		total += n
		if err != nil {
			return total, fmt.Errorf("embedded: drop token version: %w", err)
		}
		if last == (vault.Ref{}) {
			return total, nil
		}
		after = last
	}
}

// dropPage deletes the entries of version v of up to dropBatch subjects
// after *after, in one transaction, and returns how many it deleted and
// the last subject it covered (zero when there was none).
func (s *Store) dropPage(ctx context.Context, tenant string, v int, after vault.Ref) (int, vault.Ref, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, vault.Ref{}, dbErr("begin", err)
	}
	defer tx.Rollback()
	var last vault.Ref
	err = tx.QueryRowContext(ctx, `SELECT brand, user FROM (SELECT brand, user FROM subjects
		WHERE tenant = ? AND (brand, user) > (?, ?) ORDER BY brand, user LIMIT ?) ORDER BY brand DESC, user DESC LIMIT 1`,
		tenant, after.Brand, after.User, dropBatch).Scan(&last.Brand, &last.User)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, vault.Ref{}, nil
	}
	if err != nil {
		return 0, vault.Ref{}, dbErr("read subjects", err)
	}
	last.Tenant = tenant
	res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE tenant = ? AND (brand, user) > (?, ?) AND (brand, user) <= (?, ?)
		AND token LIKE ? ESCAPE '\'`, tenant, after.Brand, after.User, last.Brand, last.User, vault.TokenLike("", v))
	if err != nil {
		return 0, vault.Ref{}, dbErr("delete", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, vault.Ref{}, dbErr("delete", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, vault.Ref{}, dbErr("commit", err)
	}
	return int(n), last, nil
}
