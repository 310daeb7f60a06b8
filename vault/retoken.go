package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
)

// Re-tokenisation: changing the pinned token key version changes every
// token, so it is planned (docs/key-rotation.md §5). While it runs, a store
// indexes each record under two versions, Put included; a pass adds the new
// version's entries of the records already stored and reports each old
// token with its new one, for the core to translate its references; once
// every node pins the new version, the old version's entries are dropped.

// ErrNotRetokenized: a subject holds tokens of the version to drop and not
// those of the pinned version, so dropping would make it unreachable by
// token. It is what a Put by a node that does not index the new version
// leaves behind; another re-tokenisation pass repairs it.
var ErrNotRetokenized = errors.New("vault: subjects not re-tokenised to the pinned version")

// TokenPair is one address's token under two token key versions. Tokens
// are opaque HMACs: a pair holds no PII, and the core needs it to move its
// references from the old token to the new one.
type TokenPair struct {
	Kind Kind
	Old  string // under RetokenOptions.From
	New  string // under RetokenOptions.To
}

// RetokenOptions tune one re-tokenisation pass.
type RetokenOptions struct {
	// From is the version of the old tokens of each pair; To the version
	// whose index entries the pass adds. To must be one the store indexes
	// on Put (its pinned or an extra version), or the entries would decay
	// with every Put after the pass.
	From, To int
	// Batch is the number of subjects per transaction; default 256.
	Batch int
}

// RetokenStats report one pass over a tenant's subjects.
type RetokenStats struct {
	Scanned int // subjects read
	Added   int // index entries of version To written by this pass
	Pairs   int // pairs emitted: one per address per subject, so a shared address more than once
}

// Retokenizer is a record store that can index its records under a new
// token key version while the gateways serve, and drop an old version's
// entries after the switch.
type Retokenizer interface {
	// Retokenize walks the tenant's subjects in batches, opens each
	// record, adds the index entries of its tokens under opts.To and
	// calls emit with each (From, To) pair of its addresses, once the
	// entries are stored. A subject a Put or an Erase changed during the
	// pass is read again (its Put indexed both versions itself), never
	// overwritten or brought back. A pass cut short can be run again: it
	// adds only what is missing, and emits every pair again. emit is
	// called from one goroutine at a time; its error stops the pass.
	Retokenize(ctx context.Context, tenant string, opts RetokenOptions, emit func(TokenPair) error) (RetokenStats, error)
	// DropTokenVersion deletes the tenant's index entries of token key
	// version v and returns how many it deleted. It refuses v if the
	// store indexes it on Put (pinned or extra), and fails with an error
	// matching ErrNotRetokenized while a subject has a token of v but none
	// of the same kind under the pinned version; such subjects keep their
	// entries.
	DropTokenVersion(ctx context.Context, tenant string, v int) (int, error)
}

// CheckTokenVersions validates the token key versions a store indexes:
// the pinned version and the extra ones of a re-tokenisation, each a
// valid version other than the pinned one. It returns extra sorted, each
// version once.
func CheckTokenVersions(pinned int, extra []int) ([]int, error) {
	if pinned < 1 || pinned > maxVersion {
		return nil, fmt.Errorf("%w: token version %d", ErrInvalid, pinned)
	}
	for _, v := range extra {
		switch {
		case v < 1 || v > maxVersion:
			return nil, fmt.Errorf("%w: extra token version %d", ErrInvalid, v)
		case v == pinned:
			return nil, fmt.Errorf("%w: extra token version %d is the pinned version", ErrInvalid, v)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(extra))), nil
}

// IndexTokens returns the tokens a store indexes rec under: by kind under
// the pinned version (what Put reports), and as one list those first, in
// kind order, then the tokens of each extra version.
func IndexTokens(ctx context.Context, kp KeyProvider, tenant string, pinned int, extra []int, rec Record) (map[Kind]string, []string, error) {
	tokens, err := RecordTokens(ctx, kp, tenant, pinned, rec)
	if err != nil {
		return nil, nil, err
	}
	all := make([]string, 0, len(tokens)*(1+len(extra)))
	for _, k := range [...]Kind{KindEmail, KindPhone, KindTelegram} {
		if t, ok := tokens[k]; ok {
			all = append(all, t)
		}
	}
	for _, v := range extra {
		more, err := RecordTokens(ctx, kp, tenant, v, rec)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range [...]Kind{KindEmail, KindPhone, KindTelegram} {
			if t, ok := more[k]; ok {
				all = append(all, t)
			}
		}
	}
	return tokens, all, nil
}

// RecordTokenPairs returns the pairs of rec's addresses (email, phone,
// Telegram chat id, in that order) from token key version from to to.
func RecordTokenPairs(ctx context.Context, kp KeyProvider, tenant string, from, to int, rec Record) ([]TokenPair, error) {
	olds, err := RecordTokens(ctx, kp, tenant, from, rec)
	if err != nil {
		return nil, err
	}
	news, err := RecordTokens(ctx, kp, tenant, to, rec)
	if err != nil {
		return nil, err
	}
	var pairs []TokenPair
	for _, k := range [...]Kind{KindEmail, KindPhone, KindTelegram} {
		if o, ok := olds[k]; ok {
			pairs = append(pairs, TokenPair{Kind: k, Old: o, New: news[k]})
		}
	}
	return pairs, nil
}

// CheckRetoken validates the options of a pass over a store that pins
// pinned and also indexes extra, and fills in the default batch.
func CheckRetoken(opts RetokenOptions, pinned int, extra []int, defaultBatch int) (RetokenOptions, error) {
	switch {
	case opts.From < 1 || opts.From > maxVersion || opts.To < 1 || opts.To > maxVersion:
		return opts, fmt.Errorf("%w: token versions %d and %d", ErrInvalid, opts.From, opts.To)
	case opts.From == opts.To:
		return opts, fmt.Errorf("%w: from and to are both token version %d", ErrInvalid, opts.To)
	case opts.To != pinned && !slices.Contains(extra, opts.To):
		return opts, fmt.Errorf("%w: token version %d is neither pinned nor an extra version of this store: its Puts would not index it", ErrInvalid, opts.To)
	}
	if opts.Batch <= 0 {
		opts.Batch = defaultBatch
	}
	return opts, nil
}

// CheckDropVersion refuses to drop a version the store indexes on Put.
func CheckDropVersion(v, pinned int, extra []int) error {
	switch {
	case v < 1 || v > maxVersion:
		return fmt.Errorf("%w: token version %d", ErrInvalid, v)
	case v == pinned:
		return fmt.Errorf("%w: token version %d is pinned: pin the new version first", ErrInvalid, v)
	case slices.Contains(extra, v):
		return fmt.Errorf("%w: token version %d is still indexed on every Put (an extra version): remove it first", ErrInvalid, v)
	}
	return nil
}

// TokenLike is a LIKE pattern, with '\' as the escape character, that
// matches the tokens of one kind (any kind if kind is "") under token key
// version v, and no others: neither a kind nor the base32 MAC holds '_',
// so "_v<N>_" can only be the version.
func TokenLike(kind Kind, v int) string {
	k := "%"
	if kind != "" {
		k = string(kind)
	}
	return `tok\_` + k + `\_v` + strconv.Itoa(v) + `\_%`
}

// TokenVersionOf returns the key version a well-formed token names, or 0.
func TokenVersionOf(token string) int {
	_, v, err := ParseToken(token)
	if err != nil {
		return 0
	}
	return v
}

// TokenMACBatcher is a KeyProvider that computes many MACs under one token
// key version in one call, as hashivault's Transit provider does with one
// transit/hmac request per batch.
type TokenMACBatcher interface {
	TokenMACBatch(ctx context.Context, tenant string, version int, msgs [][]byte) ([][]byte, error)
}

// RecordsTokenPairs returns the pairs of each record, as RecordTokenPairs
// does one by one, with one TokenMACBatch per version when kp offers it:
// a pass over a remote provider then costs two requests per batch of
// records instead of two per address. errs[i] is the error of recs[i]
// alone (a value that does not normalise); err is a failure of the
// provider, for all of them.
func RecordsTokenPairs(ctx context.Context, kp KeyProvider, tenant string, from, to int, recs []Record) (pairs [][]TokenPair, errs []error, err error) {
	pairs, errs = make([][]TokenPair, len(recs)), make([]error, len(recs))
	b, ok := kp.(TokenMACBatcher)
	if !ok {
		for i, rec := range recs {
			pairs[i], errs[i] = RecordTokenPairs(ctx, kp, tenant, from, to, rec)
			if errors.Is(errs[i], ErrUnavailable) || ctx.Err() != nil {
				return nil, nil, errs[i]
			}
		}
		return pairs, errs, nil
	}
	if from < 1 || from > maxVersion || to < 1 || to > maxVersion {
		return nil, nil, fmt.Errorf("%w: token versions %d and %d", ErrInvalid, from, to)
	}
	type address struct {
		rec  int
		kind Kind
	}
	var addrs []address
	var msgs [][]byte
	defer func() {
		for _, m := range msgs {
			clear(m) // normalised addresses
		}
	}()
	for i, rec := range recs {
		var mine [][]byte
		for _, f := range [...]struct {
			kind  Kind
			value string
		}{
			{KindEmail, rec.Email}, {KindPhone, rec.Phone}, {KindTelegram, rec.TelegramChatID},
		} {
			if f.value == "" {
				continue
			}
			norm, err := Normalize(f.kind, f.value)
			if err != nil {
				errs[i] = err
				break
			}
			m := make([]byte, 0, len(f.kind)+1+len(norm))
			m = append(append(append(m, f.kind...), 0), norm...)
			mine = append(mine, m)
			addrs = append(addrs, address{i, f.kind})
		}
		if errs[i] != nil {
			addrs = addrs[:len(addrs)-len(mine)]
			for _, m := range mine {
				clear(m)
			}
			continue
		}
		msgs = append(msgs, mine...)
	}
	if len(msgs) == 0 {
		return pairs, errs, nil
	}
	// Both versions at once: two round trips overlap.
	var macs [2][][]byte
	var macErr [2]error
	var wg sync.WaitGroup
	for j, v := range [2]int{from, to} {
		wg.Go(func() { macs[j], macErr[j] = b.TokenMACBatch(ctx, tenant, v, msgs) })
	}
	wg.Wait()
	for j := range macs {
		if err := macErr[j]; err != nil {
			return nil, nil, fmt.Errorf("token mac: %w", err)
		}
		if len(macs[j]) != len(msgs) {
			return nil, nil, fmt.Errorf("token mac: %w: provider returned %d MACs for %d messages", ErrUnavailable, len(macs[j]), len(msgs))
		}
		for _, m := range macs[j] {
			if len(m) < tokenMACLen {
				return nil, nil, fmt.Errorf("token mac: provider returned %d bytes", len(m))
			}
		}
	}
	for k, a := range addrs {
		pairs[a.rec] = append(pairs[a.rec], TokenPair{
			Kind: a.kind,
			Old:  FormatToken(a.kind, from, macs[0][k]),
			New:  FormatToken(a.kind, to, macs[1][k]),
		})
	}
	return pairs, errs, nil
}
