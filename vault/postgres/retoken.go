package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.Retokenizer = (*Store)(nil)

const (
	defaultRetokenBatch = 256
	// retokenWorkers bounds the records opened and tokenised at once. A
	// remote provider (Transit) batches concurrent calls, so many workers
	// mean few, large requests; a local one is CPU-bound either way.
	retokenWorkers = 256
	// maxRetokenAttempts bounds how often a pass reads again a subject
	// that Puts keep changing under it.
	maxRetokenAttempts = 5
	// dropBatch is the number of subjects whose entries one statement of
	// DropTokenVersion deletes.
	dropBatch = 1000
)

// retokenQueries are the statements of a re-tokenisation pass.
type retokenQueries struct {
	page, reload, lock, insert, missing, subjects, drop string
}

func newRetokenQueries(schema string) retokenQueries {
	r := strings.NewReplacer("{s}", schema)
	return retokenQueries{
		page: r.Replace(`SELECT s.brand, s.user_id, s.version, k.wrapped_key, s.sealed_record
			FROM {s}.subjects s JOIN {s}.data_keys k USING (tenant, brand, user_id)
			WHERE s.tenant = $1 AND (s.brand, s.user_id) > ($2, $3)
			ORDER BY s.brand, s.user_id LIMIT $4`),
		reload: r.Replace(`SELECT s.brand, s.user_id, s.version, k.wrapped_key, s.sealed_record
			FROM {s}.subjects s JOIN {s}.data_keys k USING (tenant, brand, user_id)
			JOIN unnest($2::text[], $3::text[]) AS u(brand, user_id) ON s.brand = u.brand AND s.user_id = u.user_id
			WHERE s.tenant = $1`),
		// A share lock on each subject row holds off Puts and Erases of
		// the batch until the entries are in. A row a Put updated while
		// this waited is returned as the Put left it (READ COMMITTED
		// follows the update), so its version tells the pass to read it
		// again; a row an Erase deleted is not returned at all. Rows are
		// locked in key order, so two passes cannot deadlock.
		lock: r.Replace(`SELECT s.brand, s.user_id, s.version FROM {s}.subjects s
			JOIN unnest($2::text[], $3::text[]) AS u(brand, user_id) ON s.brand = u.brand AND s.user_id = u.user_id
			WHERE s.tenant = $1 ORDER BY s.brand, s.user_id FOR SHARE OF s`),
		insert: r.Replace(`INSERT INTO {s}.tokens (tenant, brand, user_id, token)
			SELECT $1, b, u, t FROM unnest($2::text[], $3::text[], $4::text[]) AS x(b, u, t)
			ON CONFLICT DO NOTHING`),
		missing: r.Replace(`SELECT count(*) FROM {s}.tokens t
			WHERE t.tenant = $1 AND t.token LIKE $2 ESCAPE '\'
			AND NOT EXISTS (SELECT FROM {s}.tokens p
				WHERE p.user_id = t.user_id AND p.tenant = t.tenant AND p.brand = t.brand AND p.token LIKE $3 ESCAPE '\')`),
		subjects: r.Replace(`SELECT brand, user_id FROM {s}.subjects
			WHERE tenant = $1 AND (brand, user_id) > ($2, $3)
			ORDER BY brand, user_id LIMIT $4`),
		drop: r.Replace(`DELETE FROM {s}.tokens t USING unnest($2::text[], $3::text[]) AS u(brand, user_id)
			WHERE t.user_id = u.user_id AND t.tenant = $1 AND t.brand = u.brand AND t.token LIKE $4 ESCAPE '\'`),
	}
}

// retokenItem is one subject on its way through a pass.
type retokenItem struct {
	brand, user string
	row         row
	pairs       []vault.TokenPair
	err         error
}

// retokenPass is one Retokenize of one tenant.
type retokenPass struct {
	s      *Store
	tenant string
	opts   vault.RetokenOptions
	emit   func(vault.TokenPair) error
	st     vault.RetokenStats
	failed int
	first  error
	logged time.Time
}

// Retokenize adds the index entries of the tenant's records under token
// key version opts.To while the gateways serve, and emits each record's
// (From, To) pairs once its entries are committed. It walks the subjects
// in primary-key order, a page (opts.Batch, 256) per read, in one
// statement whose snapshot pairs each sealed record with its data key;
// opens and tokenises the page outside any transaction (concurrent calls,
// which the Transit provider sends as batches); then, in one short
// transaction, share-locks the page's subject rows and inserts the entries
// of those whose record version is unchanged. A Put or an Erase of such a
// subject waits for that commit; a subject one of them changed first is
// read again (a Put indexed both versions itself, since To is one this
// store indexes on Put) or, erased, left alone. The pass deletes nothing,
// so it leaves no dead tuples to shred.
//
// A record that does not open is left as it is and the pass goes on, then
// fails with an error matching vault.ErrCorrupt; a provider or database
// that is unavailable stops it at once. It can simply be run again.
func (s *Store) Retokenize(ctx context.Context, tenant string, opts vault.RetokenOptions, emit func(vault.TokenPair) error) (vault.RetokenStats, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.RetokenStats{}, fmt.Errorf("postgres: retokenize: tenant: %w", err)
	}
	opts, err := vault.CheckRetoken(opts, s.tokenVersion, s.extraTokens, defaultRetokenBatch)
	if err != nil {
		return vault.RetokenStats{}, fmt.Errorf("postgres: retokenize: %w", err)
	}
	p := &retokenPass{s: s, tenant: tenant, opts: opts, emit: emit, logged: time.Now()}
	var after retokenItem
	for {
		items, err := s.retokenRows(ctx, s.tq.page, tenant, after.brand, after.user, opts.Batch)
		if err != nil {
			return p.st, fmt.Errorf("postgres: retokenize: %w", err)
		}
		if len(items) == 0 {
			break
		}
		p.st.Scanned += len(items)
		after = *items[len(items)-1]
		if err := p.page(ctx, items); err != nil {
			return p.st, fmt.Errorf("postgres: retokenize: %w", err)
		}
		if time.Since(p.logged) >= rewrapLogEvery {
			p.logged = time.Now()
			s.log.Info("vault re-tokenisation in progress", "tenant", tenant, "scanned", p.st.Scanned, "added", p.st.Added)
		}
		if len(items) < opts.Batch {
			break
		}
	}
	if p.failed > 0 {
		return p.st, fmt.Errorf("postgres: retokenize: %d records could not be re-tokenised, the first: %w", p.failed, p.first)
	}
	return p.st, nil
}

// retokenRows runs the page or the reload query.
func (s *Store) retokenRows(ctx context.Context, q string, args ...any) ([]*retokenItem, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, dbErr("read records", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*retokenItem, error) {
		it := &retokenItem{}
		return it, r.Scan(&it.brand, &it.user, &it.row.version, &it.row.wrapped, &it.row.sealed)
	})
	if err != nil {
		return nil, dbErr("read records", err)
	}
	return items, nil
}

// page indexes one page, reading again the subjects that changed under it.
func (p *retokenPass) page(ctx context.Context, items []*retokenItem) error {
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
		if len(changed) == 0 {
			return nil
		}
		brands, users := make([]string, len(changed)), make([]string, len(changed))
		for i, it := range changed {
			brands[i], users[i] = it.brand, it.user
		}
		if items, err = p.s.retokenRows(ctx, p.s.tq.reload, p.tenant, brands, users); err != nil {
			return err
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
				recs[i], it.err = p.s.openRow(ctx, vault.Ref{Tenant: p.tenant, Brand: it.brand, User: it.user}, it.row)
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

// write locks the items' subject rows, inserts the To entries of those
// whose record version is unchanged, commits, and emits their pairs. It
// returns the items whose subjects changed or went. A deadlock or
// serialisation failure writes nothing and reports every item changed.
func (p *retokenPass) write(ctx context.Context, items []*retokenItem) (changed []*retokenItem, err error) {
	var ok []*retokenItem // the items that opened
	var brands, users []string
	want := map[[2]string]*retokenItem{}
	for _, it := range items {
		if it.err != nil {
			continue
		}
		ok = append(ok, it)
		brands = append(brands, it.brand)
		users = append(users, it.user)
		want[[2]string{it.brand, it.user}] = it
	}
	if len(ok) == 0 {
		return nil, nil
	}
	tx, err := p.s.pool.Begin(ctx)
	if err != nil {
		return nil, dbErr("begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, p.s.tq.lock, p.tenant, brands, users)
	if err != nil {
		return nil, dbErr("lock subjects", err)
	}
	var done []*retokenItem
	var b, u string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&b, &u, &v}, func() error {
		if it := want[[2]string{b, u}]; it != nil && it.row.version == v {
			done = append(done, it)
			delete(want, [2]string{b, u})
		}
		return nil
	})
	if conflict(err) {
		return ok, nil
	}
	if err != nil {
		return nil, dbErr("lock subjects", err)
	}
	var tb, tu, tt []string
	for _, it := range done {
		for _, pr := range it.pairs {
			tb, tu, tt = append(tb, it.brand), append(tu, it.user), append(tt, pr.New)
		}
	}
	var added int64
	if len(tt) > 0 {
		tag, err := tx.Exec(ctx, p.s.tq.insert, p.tenant, tb, tu, tt)
		if conflict(err) {
			return ok, nil
		}
		if err != nil {
			return nil, dbErr("index tokens", err)
		}
		added = tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		if conflict(err) {
			return ok, nil
		}
		return nil, dbErr("commit", err)
	}
	p.st.Added += int(added)
	for _, it := range done {
		for _, pr := range it.pairs {
			p.st.Pairs++
			if err := p.emit(pr); err != nil {
				return nil, fmt.Errorf("emit: %w", err)
			}
		}
	}
	for _, it := range want {
		changed = append(changed, it)
	}
	return changed, nil
}

// DropTokenVersion deletes the tenant's index entries of token key version
// v, for a thousand subjects per statement, after checking that every
// subject with such an entry also has one of the same kind under the
// pinned version. Every node must have stopped indexing v (neither pinned
// nor an extra version), or its Puts bring entries of v back.
func (s *Store) DropTokenVersion(ctx context.Context, tenant string, v int) (int, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return 0, fmt.Errorf("postgres: drop token version: tenant: %w", err)
	}
	if err := vault.CheckDropVersion(v, s.tokenVersion, s.extraTokens); err != nil {
		return 0, fmt.Errorf("postgres: drop token version: %w", err)
	}
	missing := 0
	for _, k := range [...]vault.Kind{vault.KindEmail, vault.KindPhone, vault.KindTelegram} {
		var n int
		if err := s.pool.QueryRow(ctx, s.tq.missing, tenant, vault.TokenLike(k, v), vault.TokenLike(k, s.tokenVersion)).Scan(&n); err != nil {
			return 0, fmt.Errorf("postgres: drop token version: %w", dbErr("check", err))
		}
		missing += n
	}
	if missing > 0 {
		return 0, fmt.Errorf("postgres: drop token version: %w: %d tokens of version %d have no counterpart of version %d; nothing was dropped",
			vault.ErrNotRetokenized, missing, v, s.tokenVersion)
	}
	total := 0
	var afterBrand, afterUser string
	for {
		rows, err := s.pool.Query(ctx, s.tq.subjects, tenant, afterBrand, afterUser, dropBatch)
		if err != nil {
			return total, fmt.Errorf("postgres: drop token version: %w", dbErr("read subjects", err))
		}
		var brands, users []string
		var b, u string
		if _, err := pgx.ForEachRow(rows, []any{&b, &u}, func() error {
			brands, users = append(brands, b), append(users, u)
			return nil
		}); err != nil {
			return total, fmt.Errorf("postgres: drop token version: %w", dbErr("read subjects", err))
		}
		if len(brands) == 0 {
			return total, nil
		}
		tag, err := s.pool.Exec(ctx, s.tq.drop, tenant, brands, users, vault.TokenLike("", v))
		if err != nil {
			return total, fmt.Errorf("postgres: drop token version: %w", dbErr("delete", err))
		}
		total += int(tag.RowsAffected())
		if len(brands) < dropBatch {
			return total, nil
		}
		afterBrand, afterUser = brands[len(brands)-1], users[len(users)-1]
	}
}
