package kv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.Retokenizer = (*Store)(nil)

const (
	defaultRetokenBatch = 256
	// retokenWorkers bounds the subjects a pass works on at once: each
	// costs a few Vault round trips, which overlap.
	retokenWorkers = 16
)

// Retokenize lists the tenant's subjects brand by brand and, for each,
// adds the record's tokens under opts.To to the subject's secret
// (other_tokens) with check-and-set, writes their index entries and
// settles the index as Put does, then emits the record's (From, To) pairs.
// A subject whose secret already lists them gets its entries written again
// (a crash may have left one out) and its secret is not touched. A Put or
// an Erase racing it wins: the pass reads the subject again, or finds it
// gone. Each subject is written as a new KV version, like a Put.
//
// A record that does not decode is counted and the pass goes on, then
// fails with an error matching vault.ErrCorrupt; Vault unavailable stops it
// at once. It can simply be run again.
func (s *Store) Retokenize(ctx context.Context, tenant string, opts vault.RetokenOptions, emit func(vault.TokenPair) error) (vault.RetokenStats, error) {
	var st vault.RetokenStats
	if err := vault.ValidateID(tenant); err != nil {
		return st, fmt.Errorf("kv: retokenize: tenant: %w", err)
	}
	opts, err := vault.CheckRetoken(opts, s.tokenVersion, s.extraTokens, defaultRetokenBatch)
	if err != nil {
		return st, fmt.Errorf("kv: retokenize: %w", err)
	}
	failed, first := 0, error(nil)
	err = s.eachSubjects(ctx, tenant, opts.Batch, func(refs []vault.Ref) error {
		type result struct {
			pairs []vault.TokenPair
			added int
			err   error
		}
		res := make([]result, len(refs))
		parallel(len(refs), func(i int) {
			r := &res[i]
			r.pairs, r.added, r.err = s.retokenSubject(ctx, refs[i], opts)
		})
		for _, r := range res {
			st.Scanned++
			if r.err != nil {
				if errors.Is(r.err, vault.ErrUnavailable) || ctx.Err() != nil {
					return r.err
				}
				if failed++; first == nil {
					first = r.err
				}
				continue
			}
			st.Added += r.added
			for _, p := range r.pairs {
				st.Pairs++
				if err := emit(p); err != nil {
					return fmt.Errorf("emit: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("kv: retokenize: %w", err)
	}
	if failed > 0 {
		return st, fmt.Errorf("kv: retokenize: %d records could not be re-tokenised, the first: %w", failed, first)
	}
	return st, nil
}

// retokenSubject brings one subject's secret and index to list its tokens
// under opts.To, and returns its pairs and how many tokens it added.
func (s *Store) retokenSubject(ctx context.Context, ref vault.Ref, opts vault.RetokenOptions) ([]vault.TokenPair, int, error) {
	l := s.lock(ref)
	l.Lock()
	defer l.Unlock()
	for attempt := range maxPutAttempts {
		pairs, added, err := s.retokenOnce(ctx, ref, opts)
		if !errors.Is(err, errConflict) {
			return pairs, added, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, 0, err
		}
	}
	return nil, 0, newErr("write subject", vault.ErrUnavailable, "gave up after "+strconv.Itoa(maxPutAttempts)+" check-and-set conflicts")
}

// retokenOnce is one attempt of retokenSubject; it fails with errConflict
// if another writer changed the subject between its read and its write.
func (s *Store) retokenOnce(ctx context.Context, ref vault.Ref, opts vault.RetokenOptions) ([]vault.TokenPair, int, error) {
	cur, err := s.readSubject(ctx, ref, 0)
	if err != nil || cur.doc == nil {
		return nil, 0, err // nil doc: erased, nothing to index
	}
	defer clear(cur.doc.Record)
	var rec vault.Record
	if err := json.Unmarshal(cur.doc.Record, &rec); err != nil {
		return nil, 0, newErr("read subject", vault.ErrCorrupt, "undecodable record")
	}
	pairs, err := vault.RecordTokenPairs(ctx, s.kp, ref.Tenant, opts.From, opts.To, rec)
	if err != nil {
		return nil, 0, err
	}
	have := cur.tokens()
	var missing []string
	for _, p := range pairs {
		if !have[p.New] {
			missing = append(missing, p.New)
		}
	}
	mine := cur
	if len(missing) > 0 {
		doc := *cur.doc
		doc.OtherTokens = append(slices.Clone(doc.OtherTokens), missing...)
		v, err := s.writeSubject(ctx, ref, &doc, cur.version)
		if err != nil {
			return nil, 0, err
		}
		mine = state{version: v, doc: &doc}
	} else {
		// Listed already (by a Put, or an earlier pass that may have
		// stopped before the index): write the entries again.
		for _, p := range pairs {
			if err := s.addIndex(ctx, ref, p.New); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := s.reindex(ctx, ref, mine, have, false); err != nil {
		return nil, 0, err
	}
	return pairs, len(missing), nil
}

// DropTokenVersion removes the tokens of version v from every subject's
// secret of the tenant (with check-and-set, as a new KV version) and
// destroys their index entries, and returns how many it removed. A subject
// with a token of v but none of the same kind under the pinned version
// keeps its tokens, and the call then fails with an error matching
// vault.ErrNotRetokenized once it has gone through the others. Every node
// must have stopped indexing v, or its Puts bring such tokens back.
func (s *Store) DropTokenVersion(ctx context.Context, tenant string, v int) (int, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return 0, fmt.Errorf("kv: drop token version: tenant: %w", err)
	}
	if err := vault.CheckDropVersion(v, s.tokenVersion, s.extraTokens); err != nil {
		return 0, fmt.Errorf("kv: drop token version: %w", err)
	}
	dropped, missing := 0, 0
	err := s.eachSubjects(ctx, tenant, defaultRetokenBatch, func(refs []vault.Ref) error {
		type result struct {
			n       int
			missing bool
			err     error
		}
		res := make([]result, len(refs))
		parallel(len(refs), func(i int) {
			r := &res[i]
			r.n, r.missing, r.err = s.dropSubject(ctx, refs[i], v)
		})
		for _, r := range res {
			if r.err != nil {
				return r.err
			}
			dropped += r.n
			if r.missing {
				missing++
			}
		}
		return nil
	})
	if err != nil {
		return dropped, fmt.Errorf("kv: drop token version: %w", err)
	}
	if missing > 0 {
		return dropped, fmt.Errorf("kv: drop token version: %w: %d subjects have tokens of version %d without a counterpart of version %d and kept them",
			vault.ErrNotRetokenized, missing, v, s.tokenVersion)
	}
	return dropped, nil
}

// dropSubject removes one subject's tokens of version v. missing reports
// a subject that has no pinned-version token for a kind it would lose.
func (s *Store) dropSubject(ctx context.Context, ref vault.Ref, v int) (n int, missing bool, err error) {
	l := s.lock(ref)
	l.Lock()
	defer l.Unlock()
	for attempt := range maxPutAttempts {
		n, missing, err = s.dropOnce(ctx, ref, v)
		if !errors.Is(err, errConflict) {
			return n, missing, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, false, err
		}
	}
	return 0, false, newErr("write subject", vault.ErrUnavailable, "gave up after "+strconv.Itoa(maxPutAttempts)+" check-and-set conflicts")
}

// dropOnce is one attempt of dropSubject; it fails with errConflict if
// another writer changed the subject between its read and its write.
func (s *Store) dropOnce(ctx context.Context, ref vault.Ref, v int) (n int, missing bool, err error) {
	cur, err := s.readSubject(ctx, ref, 0)
	if err != nil || cur.doc == nil {
		return 0, false, err
	}
	defer clear(cur.doc.Record)
	drop := map[vault.Kind]bool{}
	pinned := map[vault.Kind]string{}
	var keep []string
	for t := range cur.tokens() {
		kind, ver, _ := vault.ParseToken(t) // readSubject checked them
		switch ver {
		case v:
			drop[kind] = true
			n++
		case s.tokenVersion:
			pinned[kind] = t
		default:
			keep = append(keep, t)
		}
	}
	if n == 0 {
		return 0, false, nil
	}
	for k := range drop {
		if pinned[k] == "" {
			return 0, true, nil
		}
	}
	slices.Sort(keep)
	doc := *cur.doc
	doc.Tokens, doc.OtherTokens = pinned, keep
	ver, err := s.writeSubject(ctx, ref, &doc, cur.version)
	if err != nil {
		return 0, false, err
	}
	return n, false, s.reindex(ctx, ref, state{version: ver, doc: &doc}, cur.tokens(), false)
}

// eachSubjects calls fn with the tenant's subjects, brand by brand, at
// most batch at a time.
func (s *Store) eachSubjects(ctx context.Context, tenant string, batch int, fn func([]vault.Ref) error) error {
	brands, err := s.listKeys(ctx, s.metadata(s.prefix+"/"+seg(tenant)), true)
	if err != nil {
		return err
	}
	for _, b := range brands {
		brand, err := base64.RawURLEncoding.DecodeString(b)
		if err != nil {
			return newErr("list subjects", vault.ErrCorrupt, "malformed brand folder")
		}
		users, err := s.list(ctx, s.metadata(s.brandDir(tenant, string(brand))+"/subjects"))
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(users, batch) {
			refs := make([]vault.Ref, 0, len(chunk))
			for _, u := range chunk {
				user, err := base64.RawURLEncoding.DecodeString(u)
				ref := vault.Ref{Tenant: tenant, Brand: string(brand), User: string(user)}
				if err != nil || ref.Validate() != nil {
					return newErr("list subjects", vault.ErrCorrupt, "malformed subject key")
				}
				refs = append(refs, ref)
			}
			if err := fn(refs); err != nil {
				return err
			}
		}
	}
	return nil
}

// parallel runs f(0..n-1) on up to retokenWorkers goroutines.
func parallel(n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(retokenWorkers, n) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// backoff waits a little after a lost check-and-set, longer each attempt,
// so that two writers do not keep colliding.
func backoff(ctx context.Context, attempt int) error {
	if err := sleep(ctx, time.Duration(mathrand.Int64N(int64(attempt+1)*int64(2*time.Millisecond)))); err != nil {
		return vaultErr("write subject", err)
	}
	return nil
}
