package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.Rewrapper = (*Store)(nil)

// batchRewrapper is a key provider that re-wraps many data keys of a
// tenant in a few round trips, such as hashivault.Provider (RewrapKeys):
// out[i] is the new wrapped key of wrapped[i], or nil and errs[i] says why.
type batchRewrapper interface {
	RewrapKeys(ctx context.Context, tenant string, wrapped, ad [][]byte) (out [][]byte, errs []error, err error)
}

const (
	defaultRewrapBatch = 256
	// rewrapWorkers bounds the concurrent RewrapKey calls of a provider
	// that cannot re-wrap in batches: a local provider is CPU-bound, a
	// remote one coalesces concurrent calls into batches of its own.
	rewrapWorkers = 8
	// maxRewrapAttempts bounds how often one pass re-reads and re-wraps a
	// subject whose row changed under it. A row changes only by a Put,
	// which wraps under the newest version itself, so a second attempt
	// rarely has anything left to do.
	maxRewrapAttempts = 3
	// rewrapLogEvery spaces the pass's progress lines.
	rewrapLogEvery = 5 * time.Second
)

// rewrapQueries are the statements of a re-wrap pass.
type rewrapQueries struct {
	page, reload, write, keyCheck, pendingBump, pendingNew string
}

func newRewrapQueries(schema string) rewrapQueries {
	r := strings.NewReplacer("{s}", schema)
	return rewrapQueries{
		// Keyset pagination over the primary key: each page is one short
		// statement, whose snapshot pairs each wrapped key with the record
		// version it is bound to.
		page: r.Replace(`SELECT s.brand, s.user_id, s.version, k.wrapped_key
			FROM {s}.subjects s JOIN {s}.data_keys k USING (tenant, brand, user_id)
			WHERE s.tenant = $1 AND (s.brand, s.user_id) > ($2, $3)
			ORDER BY s.brand, s.user_id LIMIT $4`),
		reload: r.Replace(`SELECT s.brand, s.user_id, s.version, k.wrapped_key
			FROM {s}.subjects s JOIN {s}.data_keys k USING (tenant, brand, user_id)
			JOIN unnest($2::text[], $3::text[]) AS u(brand, user_id) ON s.brand = u.brand AND s.user_id = u.user_id
			WHERE s.tenant = $1`),
		// The wrapped key read with the record version is the
		// check-and-set value: every Put writes a fresh one (random data
		// key, random nonce) with the new version in the same transaction,
		// so an unchanged wrapped key means an unchanged version. It is
		// compared on data_keys, the table being updated, so READ
		// COMMITTED re-checks it against the row a concurrent Put
		// committed while this statement waited for its lock (a condition
		// on the joined subjects row would be checked against the old
		// snapshot instead).
		write: r.Replace(`UPDATE {s}.data_keys k SET wrapped_key = u.new
			FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bytea[]) AS u(brand, user_id, old, new)
			WHERE k.tenant = $1 AND k.brand = u.brand AND k.user_id = u.user_id AND k.wrapped_key = u.old
			RETURNING k.brand, k.user_id`),
		keyCheck:    r.Replace(`UPDATE {s}.key_checks SET wrapped = $3 WHERE tenant = $1 AND wrapped = $2`),
		pendingBump: r.Replace(`UPDATE {s}.shred_pending SET erase_xid = pg_current_xact_id() WHERE id = $1`),
		pendingNew:  r.Replace(`INSERT INTO {s}.shred_pending DEFAULT VALUES RETURNING id`),
	}
}

// keyRow is one subject's wrapped data key as a page read it.
type keyRow struct {
	brand, user string
	version     int64 // the record version, bound into the associated data
	wrapped     []byte
}

// rewrapItem is one wrapped key on its way to the newest KEK version.
type rewrapItem struct {
	row     keyRow
	ad      []byte
	cur     int // KEK version that wrapped it, 0 if the provider cannot tell
	wrapped []byte
	version int // KEK version of wrapped
	err     error
}

// pass is the state of one Rewrap call.
type pass struct {
	tenant  string
	stats   vault.RewrapStats
	failed  int
	first   error // the first key that could not be re-wrapped
	pending int64 // this pass's shred_pending row, 0 before its first write
	logged  time.Time
}

// note counts a key left wrapped by KEK version v towards Oldest.
func (p *pass) note(v int) {
	if v > 0 && (p.stats.Oldest == 0 || v < p.stats.Oldest) {
		p.stats.Oldest = v
	}
}

func (p *pass) fail(err error) {
	p.failed++
	if p.first == nil {
		p.first = err
	}
}

// Rewrap re-wraps the tenant's data keys, and its key check, under the key
// provider's newest KEK version, while gateways keep serving. It walks the
// tenant's subjects in pages of opts.Batch (default 256); keys the provider
// (a vault.KEKVersioner) reports current are left alone, the others are
// re-wrapped with their own associated data (in one batch call when the
// provider offers one, as hashivault's Transit provider does) and written
// back in one short transaction per page, each only if the subject's row
// has not changed since it was read. A subject a Put changed meanwhile is
// read again: the Put wrapped its new key under the newest version itself.
//
// Stats.Oldest is the oldest KEK version still wrapping one of the
// tenant's keys, the key check included; 0 if there is none, or if the
// provider cannot tell versions apart (it then re-wraps every key on every
// pass). A key that fails to re-wrap (vault.ErrCorrupt: tampered, or wrapped
// by a version already retired) is counted in Oldest by the version it
// names and reported in the error after the pass; a provider or database
// that is unavailable stops the pass at once. A pass that is cut short can
// simply be run again.
//
// The old wrapped keys stay in the table's dead tuples, as an erased
// subject's do, so a pass that changes anything records itself in
// shred_pending, and the next Shred rewrites them away. Until the old KEK
// version is destroyed they are copies of live data keys; after, they open
// nothing.
func (s *Store) Rewrap(ctx context.Context, tenant string, opts vault.RewrapOptions) (vault.RewrapStats, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.RewrapStats{}, fmt.Errorf("postgres: rewrap: tenant: %w", err)
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = defaultRewrapBatch
	}
	p := &pass{tenant: tenant, logged: time.Now()}
	if err := s.rewrapKeyCheck(ctx, p); err != nil {
		return p.stats, fmt.Errorf("postgres: rewrap: %w", err)
	}
	after := keyRow{}
	for {
		rows, err := s.keyRows(ctx, s.rq.page, tenant, after.brand, after.user, batch)
		if err != nil {
			return p.stats, fmt.Errorf("postgres: rewrap: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		p.stats.Scanned += len(rows)
		if err := s.rewrapPage(ctx, p, rows); err != nil {
			return p.stats, fmt.Errorf("postgres: rewrap: %w", err)
		}
		after = rows[len(rows)-1]
		if time.Since(p.logged) >= rewrapLogEvery {
			p.logged = time.Now()
			s.log.Info("vault re-wrap in progress", "tenant", tenant, "scanned", p.stats.Scanned, "rewrapped", p.stats.Rewrapped)
		}
		if len(rows) < batch {
			break
		}
	}
	if p.failed > 0 {
		return p.stats, fmt.Errorf("postgres: rewrap: %d data keys could not be re-wrapped, the first: %w", p.failed, p.first)
	}
	return p.stats, nil
}

// rewrapPage re-wraps the keys of one page, reading again and retrying the
// subjects that changed under it.
func (s *Store) rewrapPage(ctx context.Context, p *pass, rows []keyRow) error {
	for attempt := 1; len(rows) > 0; attempt++ {
		items, err := s.rewrapItems(ctx, p, rows)
		if err != nil {
			return err
		}
		changed, err := s.writeRewrapped(ctx, p, items)
		if err != nil {
			return err
		}
		if len(changed) == 0 {
			return nil
		}
		if attempt == maxRewrapAttempts {
			// Still changing: they keep their old version for this pass.
			for _, it := range changed {
				p.note(it.cur)
			}
			return nil
		}
		brands, users := make([]string, len(changed)), make([]string, len(changed))
		for i, it := range changed {
			brands[i], users[i] = it.row.brand, it.row.user
		}
		if rows, err = s.keyRows(ctx, s.rq.reload, p.tenant, brands, users); err != nil {
			return err
		}
	}
	return nil
}

// rewrapItems asks the provider which keys are old and re-wraps those. Keys
// that fail alone are counted in p; it returns the keys to write back.
func (s *Store) rewrapItems(ctx context.Context, p *pass, rows []keyRow) ([]*rewrapItem, error) {
	kv, versioned := s.kp.(vault.KEKVersioner)
	var todo []*rewrapItem
	for _, r := range rows {
		it := &rewrapItem{row: r, ad: vault.AssociatedData(vault.Ref{Tenant: p.tenant, Brand: r.brand, User: r.user}, r.version)}
		if versioned {
			cur, latest, err := kv.KEKVersion(ctx, p.tenant, r.wrapped)
			if errors.Is(err, vault.ErrUnavailable) {
				return nil, fmt.Errorf("key version: %w", err)
			}
			if err != nil {
				p.fail(fmt.Errorf("key version: %w", err))
				continue
			}
			if it.cur = cur; cur >= latest {
				p.note(cur)
				continue
			}
		}
		todo = append(todo, it)
	}
	if err := s.rewrapKeys(ctx, p.tenant, todo); err != nil {
		return nil, err
	}
	out := todo[:0]
	for _, it := range todo {
		if it.err != nil {
			p.fail(it.err)
			p.note(it.cur)
			continue
		}
		out = append(out, it)
	}
	return out, nil
}

// rewrapKeys fills in wrapped, version or err of every item. The error is
// a failure of the provider as a whole.
func (s *Store) rewrapKeys(ctx context.Context, tenant string, items []*rewrapItem) error {
	if len(items) == 0 {
		return nil
	}
	if b, ok := s.kp.(batchRewrapper); ok {
		wrapped, ads := make([][]byte, len(items)), make([][]byte, len(items))
		for i, it := range items {
			wrapped[i], ads[i] = it.row.wrapped, it.ad
		}
		out, errs, err := b.RewrapKeys(ctx, tenant, wrapped, ads)
		if err != nil {
			return fmt.Errorf("re-wrap: %w", err)
		}
		if len(out) != len(items) || len(errs) != len(items) {
			return fmt.Errorf("re-wrap: %w: %d results for %d keys", vault.ErrUnavailable, len(out), len(items))
		}
		kv, versioned := s.kp.(vault.KEKVersioner)
		for i, it := range items {
			if it.wrapped, it.err = out[i], errs[i]; it.err == nil && versioned {
				it.version, _, it.err = kv.KEKVersion(ctx, tenant, it.wrapped)
			}
		}
		return firstUnavailable(items)
	}
	var wg sync.WaitGroup
	next := make(chan *rewrapItem)
	for range min(rewrapWorkers, len(items)) {
		wg.Go(func() {
			for it := range next {
				var changed bool
				it.wrapped, changed, it.version, it.err = vault.RewrapKey(ctx, s.kp, tenant, it.row.wrapped, it.ad)
				if it.err == nil && !changed {
					it.wrapped = nil // current after all: nothing to write
				}
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	return firstUnavailable(items)
}

func firstUnavailable(items []*rewrapItem) error {
	for _, it := range items {
		if errors.Is(it.err, vault.ErrUnavailable) {
			return fmt.Errorf("re-wrap: %w", it.err)
		}
	}
	return nil
}

// writeRewrapped writes the new wrapped keys back in one transaction, each
// only if its row still holds the key that was re-wrapped, and returns the
// items whose rows had changed (or gone: an erasure, which the caller finds
// when it reads them again).
func (s *Store) writeRewrapped(ctx context.Context, p *pass, items []*rewrapItem) (changed []*rewrapItem, err error) {
	var brands, users []string
	var olds, news [][]byte
	for _, it := range items {
		if it.wrapped == nil { // current after all
			p.note(it.version)
			continue
		}
		brands = append(brands, it.row.brand)
		users = append(users, it.row.user)
		olds = append(olds, it.row.wrapped)
		news = append(news, it.wrapped)
	}
	if len(brands) == 0 {
		return nil, nil
	}
	done, err := s.writeKeys(ctx, p, brands, users, olds, news)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if it.wrapped == nil {
			continue
		}
		if done[[2]string{it.row.brand, it.row.user}] {
			p.stats.Rewrapped++
			p.note(it.version)
		} else {
			changed = append(changed, it)
		}
	}
	return changed, nil
}

// writeKeys runs the check-and-set update and records the pass in
// shred_pending, in one transaction. A deadlock or serialisation failure
// writes nothing and reports every key as changed, to be read again.
func (s *Store) writeKeys(ctx context.Context, p *pass, brands, users []string, olds, news [][]byte) (map[[2]string]bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, dbErr("begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, s.rq.write, p.tenant, brands, users, olds, news)
	if err != nil {
		return nil, dbErr("write keys", err)
	}
	done := map[[2]string]bool{}
	var b, u string
	_, err = pgx.ForEachRow(rows, []any{&b, &u}, func() error {
		done[[2]string{b, u}] = true
		return nil
	})
	if conflict(err) {
		return map[[2]string]bool{}, nil
	}
	if err != nil {
		return nil, dbErr("write keys", err)
	}
	if len(done) == 0 {
		return done, nil
	}
	id, err := s.markRewrapPending(ctx, tx, p.pending)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		if conflict(err) {
			return map[[2]string]bool{}, nil
		}
		return nil, dbErr("commit", err)
	}
	p.pending = id
	return done, nil
}

// markRewrapPending makes the pass's shred_pending row name the current
// transaction, so that Shred waits until no snapshot can see the old keys
// this one replaced (nor those of the pass's earlier transactions). A pass
// has one row, made by its first write, or again if a Shred has covered
// it since.
func (s *Store) markRewrapPending(ctx context.Context, tx pgx.Tx, id int64) (int64, error) {
	if id != 0 {
		tag, err := tx.Exec(ctx, s.rq.pendingBump, id)
		if err != nil {
			return 0, dbErr("mark shred pending", err)
		}
		if tag.RowsAffected() == 1 {
			return id, nil
		}
	}
	if err := tx.QueryRow(ctx, s.rq.pendingNew).Scan(&id); err != nil {
		return 0, dbErr("mark shred pending", err)
	}
	return id, nil
}

func conflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// keyRows runs a page or reload query.
func (s *Store) keyRows(ctx context.Context, q string, args ...any) ([]keyRow, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, dbErr("read keys", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keyRow, error) {
		var k keyRow
		return k, r.Scan(&k.brand, &k.user, &k.version, &k.wrapped)
	})
	if err != nil {
		return nil, dbErr("read keys", err)
	}
	return out, nil
}

// rewrapKeyCheck re-wraps the tenant's key check, which Open unwraps on
// every node: left on a destroyed KEK version, it would stop every gateway
// from starting. A tenant without one (no Put yet) has nothing to do.
func (s *Store) rewrapKeyCheck(ctx context.Context, p *pass) error {
	for range maxRewrapAttempts {
		var old []byte
		err := s.pool.QueryRow(ctx, s.q.keyCheck, p.tenant).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return dbErr("read key check", err)
		}
		wrapped, changed, v, err := vault.RewrapKey(ctx, s.kp, p.tenant, old, keyCheckAD)
		if err != nil {
			return fmt.Errorf("key check: %w", err)
		}
		if !changed {
			p.note(v)
			return nil
		}
		tag, err := s.pool.Exec(ctx, s.rq.keyCheck, p.tenant, old, wrapped)
		if err != nil {
			return dbErr("write key check", err)
		}
		if tag.RowsAffected() == 1 {
			p.note(v)
			return nil
		}
	}
	return fmt.Errorf("key check: %w: it kept changing", vault.ErrUnavailable)
}

// Tenants returns the tenants the store holds keys of (those with a key
// check: every tenant that has had a Put), for a KEK rotation that must
// reach all of them, such as the embedded key file's, which every tenant
// shares.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant FROM `+s.schema+`.key_checks ORDER BY tenant`)
	if err != nil {
		return nil, fmt.Errorf("postgres: tenants: %w", dbErr("query", err))
	}
	ts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: tenants: %w", dbErr("query", err))
	}
	return ts, nil
}
