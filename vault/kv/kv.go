// Package kv is a vault.Store whose records live only in HashiCorp Vault's
// KV v2 secrets engine (or OpenBao's), for operators who want PII nowhere
// but Vault. It runs on the operator side of the trust boundary, inside the
// gateway; the gateway writes nothing to its own disks. Vault encrypts the
// secrets at rest with its barrier key, so this package seals nothing
// itself: what protects a record is Vault's policy on the paths below.
//
// # Layout
//
// Every id is written as one path segment in unpadded base64url, so that
// any printable id (slashes, dots, spaces, "..") stays one segment:
//
//	<mount>/data/<prefix>/<tenant>/<brand>/subjects/<user>
//	    format, tenant, brand, user, pseudonym, tokens (kind → token),
//	    other_tokens (of the other token key versions indexed during a
//	    re-tokenisation), record (the normalised vault.Record, without
//	    its pseudonym)
//	<mount>/data/<prefix>/<tenant>/<brand>/tokens/<token>/<user>
//	    user: one token index entry
//
// A token names a subject through a folder rather than one secret, so that
// two subjects of a brand sharing an address are two entries, which Lookup
// reports as vault.ErrAmbiguous like the other stores, without a
// read-modify-write of a shared secret. Tokens are minted with the
// KeyProvider's TokenMAC exactly as vault/embedded mints them
// (vault.Tokenize), so every backend agrees on every token.
//
// # Several gateway nodes
//
// Put reads the subject's secret and writes the next version with KV v2's
// check-and-set (options.cas = the version it read, 0 for a new subject);
// a writer that loses starts over from a fresh read, so no update is lost
// and the pseudonym made by the first Put is kept. After its write, Put
// adds the index entries of its tokens, deletes those of the version it
// replaced, then reads the subject again and, while the version has moved
// on, brings its own index changes in line with the newest version. Every
// writer finishes on a read that shows no newer version, so once the Puts
// of a subject have returned, the index holds exactly the tokens of the
// last version. A node that dies between its write and its index update
// can leave an entry behind, so Lookup also checks each candidate against
// the subject's own token list, which is the authority; an entry missing
// after such a crash comes back with the subject's next Put.
//
// # Re-tokenisation
//
// With Options.ExtraTokenVersions, Put lists and indexes each record's
// tokens under those token key versions too (other_tokens). Retokenize
// adds a new version's tokens to every stored subject's secret with
// check-and-set, as a new KV version, then indexes and settles them as Put
// does; DropTokenVersion removes an old version's tokens the same way
// (vault.Retokenizer; docs/key-rotation.md §5). Both go at the speed of
// Puts: about 150 subjects/s on a local dev server.
//
// # Erasure
//
// Erase deletes the KV metadata (not a soft delete: every version goes) of
// each token index entry named by any retained version of the subject, then
// of the subject itself. Vault's storage backend and its backups still hold
// the ciphertext of the deleted entries until the backend compacts them and
// the backups expire; they are encrypted under Vault's barrier keyring, and
// rotating that (sys/rotate), then removing old backups, closes the window.
//
// # Vault setup
//
// The mount must be a KV v2 engine (`vault secrets enable -path=secret
// kv-v2`); Check verifies it. The gateway's token needs create, read,
// update and list on <mount>/data/<prefix>/*, and read, list and delete on
// <mount>/metadata/<prefix>/*. The Store uses the client as given: its
// address, TLS, namespace, token renewal and retries (set MaxRetries to 0
// if the caller does its own).
package kv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	mathrand "math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
)

// Options configure a Store. The zero value uses the defaults.
type Options struct {
	// Mount is the path of the KV v2 engine. Default "secret".
	Mount string
	// Prefix is the folder of the gateway's secrets under the mount.
	// Default "blindpost".
	Prefix string
	// TokenVersion pins the token key version of new tokens. Zero means
	// the key provider's TokenVersion.
	TokenVersion int
	// ExtraTokenVersions are token key versions Put indexes each record
	// under as well, during a re-tokenisation (vault.Retokenizer): tokens
	// of every indexed version resolve. Every node must index the same
	// versions. Empty otherwise.
	ExtraTokenVersions []int
}

// Store is a vault.Store in Vault KV v2. It is safe for concurrent use, by
// several Stores on several nodes too.
type Store struct {
	c            *api.Client
	kp           vault.KeyProvider
	mount        string
	prefix       string
	tokenVersion int
	extraTokens  []int // ExtraTokenVersions

	// subjectLocks serialise this process's writes to one subject, so its
	// own Puts do not spend their round trips losing check-and-set races
	// to each other; the check-and-set covers other nodes.
	subjectLocks [64]sync.Mutex

	mountOK atomic.Bool // the mount passed checkMount
}

var _ vault.Store = (*Store)(nil)

const (
	docFormat = "blindpost-subject-v1"
	// maxPutAttempts bounds the check-and-set retries of one Put. Each
	// lost race means another writer won, so this is only reached under
	// sustained contention on one subject.
	maxPutAttempts = 16
	// maxIndexRounds bounds the reads with which a Put settles the index.
	maxIndexRounds = 16
	// maxBody bounds a response: a record is at most some 70 KiB.
	maxBody = 4 << 20
)

// New returns a Store that keeps its records in the KV v2 engine at
// opts.Mount through client.
func New(client *api.Client, kp vault.KeyProvider, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("kv: nil Vault client")
	}
	if kp == nil {
		return nil, errors.New("kv: nil key provider")
	}
	s := &Store{c: client, kp: kp, mount: opts.Mount, prefix: opts.Prefix, tokenVersion: opts.TokenVersion}
	if s.mount == "" {
		s.mount = "secret"
	}
	if s.prefix == "" {
		s.prefix = "blindpost"
	}
	var err error
	if s.mount, err = cleanPath(s.mount); err != nil {
		return nil, fmt.Errorf("kv: mount: %w", err)
	}
	if s.prefix, err = cleanPath(s.prefix); err != nil {
		return nil, fmt.Errorf("kv: prefix: %w", err)
	}
	if s.tokenVersion == 0 {
		s.tokenVersion = kp.TokenVersion()
	}
	if s.extraTokens, err = vault.CheckTokenVersions(s.tokenVersion, opts.ExtraTokenVersions); err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	return s, nil
}

// cleanPath trims slashes from p and accepts only segments of
// [A-Za-z0-9._-] that are not "." or "..": configuration, not ids, but a
// typo must not write secrets somewhere unexpected.
func cleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: empty, \".\" or \"..\" segment in %q", vault.ErrInvalid, p)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return "", fmt.Errorf("%w: character %q in %q", vault.ErrInvalid, c, p)
			}
		}
	}
	return p, nil
}

// Check verifies that the mount is a KV v2 engine the client can reach.
// Put runs it once before a Store's first write, since a KV v1 mount would
// take the record at the wrong path and ignore the check-and-set that keeps
// several nodes from losing updates; call it at startup to fail early.
func (s *Store) Check(ctx context.Context) error {
	if err := s.checkMount(ctx); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	return nil
}

// ensureMount runs the Check once per Store, before its first write.
func (s *Store) ensureMount(ctx context.Context) error {
	if s.mountOK.Load() {
		return nil
	}
	if err := s.checkMount(ctx); err != nil {
		return err
	}
	s.mountOK.Store(true)
	return nil
}

func (s *Store) checkMount(ctx context.Context) error {
	body, status, err := s.get(ctx, "sys/internal/ui/mounts/"+s.mount, nil)
	if err != nil {
		return vaultErr("check mount", err)
	}
	if status == 404 {
		return newErr("check mount", vault.ErrUnavailable, "no KV v2 engine at the mount")
	}
	var m struct {
		Data struct {
			Type    string            `json:"type"`
			Options map[string]string `json:"options"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return newErr("check mount", vault.ErrUnavailable, "undecodable mount description")
	}
	if m.Data.Type != "kv" || m.Data.Options["version"] != "2" {
		return newErr("check mount", vault.ErrInvalid, "the mount is not a KV version 2 engine")
	}
	return nil
}

// Paths. seg encodes an id as one path segment.
func seg(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func (s *Store) brandDir(tenant, brand string) string {
	return s.prefix + "/" + seg(tenant) + "/" + seg(brand)
}

func (s *Store) subjectKey(ref vault.Ref) string {
	return s.brandDir(ref.Tenant, ref.Brand) + "/subjects/" + seg(ref.User)
}

func (s *Store) tokenDir(tenant, brand, token string) string {
	return s.brandDir(tenant, brand) + "/tokens/" + token
}

func (s *Store) tokenKey(ref vault.Ref, token string) string {
	return s.tokenDir(ref.Tenant, ref.Brand, token) + "/" + seg(ref.User)
}

func (s *Store) data(key string) string     { return s.mount + "/data/" + key }
func (s *Store) metadata(key string) string { return s.mount + "/metadata/" + key }

// subjectDoc is the secret of one subject.
type subjectDoc struct {
	Format    string                `json:"format"`
	Tenant    string                `json:"tenant"`
	Brand     string                `json:"brand"`
	User      string                `json:"user"`
	Pseudonym string                `json:"pseudonym"`
	Tokens    map[vault.Kind]string `json:"tokens"`
	// OtherTokens are the record's tokens under the other token key
	// versions the store indexes during a re-tokenisation.
	OtherTokens []string        `json:"other_tokens,omitempty"`
	Record      json.RawMessage `json:"record"`
}

// state is what a read of a subject's secret found. version is KV's current
// version, 0 if the secret does not exist; doc is nil if it does not, or if
// its current version was deleted or destroyed by hand.
type state struct {
	version int64
	doc     *subjectDoc
}

func (st state) tokens() map[string]bool {
	m := map[string]bool{}
	if st.doc != nil {
		for _, t := range st.doc.Tokens {
			m[t] = true
		}
		for _, t := range st.doc.OtherTokens {
			m[t] = true
		}
	}
	return m
}

// get sends a GET and returns the body of a 2xx answer, or of KV's own 404
// (a missing secret, or a deleted version, whose body carries the
// metadata) with status 404. Any other failure is returned as is.
func (s *Store) get(ctx context.Context, path string, params url.Values) ([]byte, int, error) {
	resp, err := s.c.Logical().ReadRawWithDataWithContext(ctx, path, params)
	return readResponse(resp, err)
}

func readResponse(resp *api.Response, err error) ([]byte, int, error) {
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		var re *api.ResponseError
		if resp != nil && resp.StatusCode == 404 && errors.As(err, &re) && len(re.Errors) == 0 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
			return body, 404, nil
		}
		return nil, 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, 0, err
	}
	return body, resp.StatusCode, nil
}

// readSubject reads the current version of ref's secret, or version v if
// v > 0.
func (s *Store) readSubject(ctx context.Context, ref vault.Ref, v int64) (state, error) {
	var params url.Values
	if v > 0 {
		params = url.Values{"version": {strconv.FormatInt(v, 10)}}
	}
	body, status, err := s.get(ctx, s.data(s.subjectKey(ref)), params)
	if err != nil {
		return state{}, vaultErr("read subject", err)
	}
	defer clear(body)
	var r struct {
		Data *struct {
			Data     *subjectDoc `json:"data"`
			Metadata struct {
				Version int64 `json:"version"`
			} `json:"metadata"`
		} `json:"data"`
	}
	if status == 404 {
		// A version deleted by hand still counts for the check-and-set.
		if json.Unmarshal(body, &r) == nil && r.Data != nil && r.Data.Metadata.Version > 0 {
			return state{version: r.Data.Metadata.Version}, nil
		}
		return state{}, nil
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Data == nil || r.Data.Metadata.Version < 1 {
		return state{}, newErr("read subject", vault.ErrCorrupt, "undecodable secret")
	}
	st := state{version: r.Data.Metadata.Version, doc: r.Data.Data}
	if d := st.doc; d != nil {
		if d.Format != docFormat || d.Tenant != ref.Tenant || d.Brand != ref.Brand || d.User != ref.User {
			// A secret copied to another subject's path, or not ours.
			return state{}, newErr("read subject", vault.ErrCorrupt, "secret does not belong to this subject")
		}
		if len(d.Pseudonym) != vault.PseudonymLen || len(d.Record) == 0 {
			return state{}, newErr("read subject", vault.ErrCorrupt, "malformed secret")
		}
		for k, t := range d.Tokens {
			if kind, _, err := vault.ParseToken(t); err != nil || kind != k {
				return state{}, newErr("read subject", vault.ErrCorrupt, "malformed token list")
			}
		}
		for _, t := range d.OtherTokens {
			if _, _, err := vault.ParseToken(t); err != nil {
				return state{}, newErr("read subject", vault.ErrCorrupt, "malformed token list")
			}
		}
	}
	return st, nil
}

// writeSubject writes doc as the version after cas, and returns the new
// version. It fails with errConflict if cas is no longer current.
func (s *Store) writeSubject(ctx context.Context, ref vault.Ref, doc *subjectDoc, cas int64) (int64, error) {
	body, err := json.Marshal(struct {
		Options struct {
			CAS int64 `json:"cas"`
		} `json:"options"`
		Data *subjectDoc `json:"data"`
	}{Options: struct {
		CAS int64 `json:"cas"`
	}{cas}, Data: doc})
	if err != nil {
		return 0, err
	}
	resp, err := s.c.Logical().WriteRawWithContext(ctx, s.data(s.subjectKey(ref)), body)
	clear(body)
	out, _, err := readResponse(resp, err)
	if err != nil {
		return 0, vaultErr("write subject", err)
	}
	var r struct {
		Data struct {
			Version int64 `json:"version"`
		} `json:"data"`
	}
	if json.Unmarshal(out, &r) != nil || r.Data.Version < 1 {
		// KV v1 answers 204 with no version, and ignores the cas.
		return 0, newErr("write subject", vault.ErrInvalid, "the mount is not a KV version 2 engine")
	}
	return r.Data.Version, nil
}

func (s *Store) addIndex(ctx context.Context, ref vault.Ref, token string) error {
	body, err := json.Marshal(map[string]any{"data": map[string]string{"user": ref.User}})
	if err != nil {
		return err
	}
	resp, err := s.c.Logical().WriteRawWithContext(ctx, s.data(s.tokenKey(ref, token)), body)
	if _, _, err := readResponse(resp, err); err != nil {
		return vaultErr("index token", err)
	}
	return nil
}

// destroy deletes every version and the metadata of key. A key that is
// already gone is not an error.
func (s *Store) destroy(ctx context.Context, op, key string) error {
	resp, err := s.c.Logical().DeleteRawWithContext(ctx, s.metadata(key))
	if _, _, err := readResponse(resp, err); err != nil {
		return vaultErr(op, err)
	}
	return nil
}

func (s *Store) lock(ref vault.Ref) *sync.Mutex {
	h := fnv.New32a()
	h.Write(vault.AssociatedData(ref, 0))
	return &s.subjectLocks[h.Sum32()%uint32(len(s.subjectLocks))]
}

// Put normalises rec, writes it as the subject's next version with
// check-and-set, keeps the subject's pseudonym (or makes one on the first
// Put) and replaces the subject's token index entries.
func (s *Store) Put(ctx context.Context, ref vault.Ref, rec vault.Record) (vault.Subject, error) {
	if err := ref.Validate(); err != nil {
		return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
	}
	rec.Pseudonym = ""
	rec, err := rec.Normalize()
	if err != nil {
		return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
	}
	tokens, index, err := vault.IndexTokens(ctx, s.kp, ref.Tenant, s.tokenVersion, s.extraTokens, rec)
	if err != nil {
		return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
	}
	others := index[len(tokens):] // IndexTokens lists the pinned version's first
	if err := s.ensureMount(ctx); err != nil {
		return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
	}
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
	}
	defer clear(recJSON)

	l := s.lock(ref)
	l.Lock()
	defer l.Unlock()
	for attempt := range maxPutAttempts {
		cur, err := s.readSubject(ctx, ref, 0)
		if err != nil {
			return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
		}
		doc := &subjectDoc{
			Format: docFormat, Tenant: ref.Tenant, Brand: ref.Brand, User: ref.User,
			Tokens: tokens, OtherTokens: others, Record: recJSON,
		}
		if cur.doc != nil {
			doc.Pseudonym = cur.doc.Pseudonym
		} else if doc.Pseudonym, err = vault.NewPseudonym(rand.Reader); err != nil {
			return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
		}
		v, err := s.writeSubject(ctx, ref, doc, cur.version)
		if errors.Is(err, errConflict) {
			// Another node won; back off a little so two nodes do not
			// keep colliding, then start over from its version.
			if err := sleep(ctx, time.Duration(mathrand.Int64N(int64(attempt+1)*int64(2*time.Millisecond)))); err != nil {
				return vault.Subject{}, fmt.Errorf("kv: put: %w", vaultErr("write subject", err))
			}
			continue
		}
		if err != nil {
			return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
		}
		if err := s.reindex(ctx, ref, state{version: v, doc: doc}, cur.tokens(), true); err != nil {
			return vault.Subject{}, fmt.Errorf("kv: put: %w", err)
		}
		return vault.Subject{Ref: ref, Pseudonym: doc.Pseudonym, Tokens: tokens}, nil
	}
	return vault.Subject{}, fmt.Errorf("kv: put: %w", newErr("write subject", vault.ErrUnavailable,
		"gave up after "+strconv.Itoa(maxPutAttempts)+" check-and-set conflicts"))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// reindex brings the token index from the tokens of the version Put
// replaced (old) to those of the version it wrote (mine), then follows any
// newer version until a read shows none: see "Several gateway nodes" in the
// package comment for why every Put's last index change then agrees with
// the last version. With readd it writes the entries of every token of
// mine, so that one a crash left out comes back; without, only those old
// lacks.
func (s *Store) reindex(ctx context.Context, ref vault.Ref, mine state, old map[string]bool, readd bool) error {
	want := mine.tokens()
	for t := range want {
		if !readd && old[t] {
			continue
		}
		if err := s.addIndex(ctx, ref, t); err != nil {
			return err
		}
	}
	for t := range old {
		if !want[t] {
			if err := s.destroy(ctx, "drop stale token", s.tokenKey(ref, t)); err != nil {
				return err
			}
		}
	}
	last := mine
	for range maxIndexRounds {
		cur, err := s.readSubject(ctx, ref, 0)
		if err != nil {
			return err
		}
		if cur.version == last.version && pseudonym(cur) == pseudonym(last) {
			return nil
		}
		have := cur.tokens()
		for t := range have {
			if !want[t] {
				if err := s.addIndex(ctx, ref, t); err != nil {
					return err
				}
			}
		}
		for t := range want {
			if !have[t] {
				if err := s.destroy(ctx, "drop stale token", s.tokenKey(ref, t)); err != nil {
					return err
				}
			}
		}
		want, last = have, cur
	}
	return newErr("index tokens", vault.ErrUnavailable, "the subject kept changing; Put again")
}

func pseudonym(st state) string {
	if st.doc == nil {
		return ""
	}
	return st.doc.Pseudonym
}

// Resolve reads the record of ref.
func (s *Store) Resolve(ctx context.Context, ref vault.Ref) (vault.Record, error) {
	if err := ref.Validate(); err != nil {
		return vault.Record{}, fmt.Errorf("kv: resolve: %w", err)
	}
	st, err := s.readSubject(ctx, ref, 0)
	if err != nil {
		return vault.Record{}, fmt.Errorf("kv: resolve: %w", err)
	}
	if st.doc == nil {
		return vault.Record{}, fmt.Errorf("kv: resolve: %w", vault.ErrNotFound)
	}
	defer clear(st.doc.Record)
	var rec vault.Record
	if err := json.Unmarshal(st.doc.Record, &rec); err != nil {
		return vault.Record{}, fmt.Errorf("kv: resolve: %w", newErr("read subject", vault.ErrCorrupt, "undecodable record"))
	}
	rec.Pseudonym = st.doc.Pseudonym
	return rec, nil
}

// maxCandidates bounds the index entries of one token that Lookup checks.
const maxCandidates = 16

// Lookup returns the subject of brand whose record holds the value token
// stands for. Index entries are checked against the subjects' own token
// lists. A token held by two subjects of the brand is refused with an error
// matching vault.ErrAmbiguous and vault.ErrInvalid.
func (s *Store) Lookup(ctx context.Context, tenant, brand, token string) (vault.Ref, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.Ref{}, fmt.Errorf("kv: lookup: tenant: %w", err)
	}
	if err := vault.ValidateID(brand); err != nil {
		return vault.Ref{}, fmt.Errorf("kv: lookup: brand: %w", err)
	}
	if _, _, err := vault.ParseToken(token); err != nil {
		return vault.Ref{}, fmt.Errorf("kv: lookup: %w", err)
	}
	users, err := s.list(ctx, s.metadata(s.tokenDir(tenant, brand, token)))
	if err != nil {
		return vault.Ref{}, fmt.Errorf("kv: lookup: %w", err)
	}
	var found []vault.Ref
	for i, u := range users {
		if i == maxCandidates || len(found) == 2 {
			break
		}
		id, err := base64.RawURLEncoding.DecodeString(u)
		if err != nil {
			return vault.Ref{}, fmt.Errorf("kv: lookup: %w", newErr("list index", vault.ErrCorrupt, "malformed index entry"))
		}
		ref := vault.Ref{Tenant: tenant, Brand: brand, User: string(id)}
		if ref.Validate() != nil {
			return vault.Ref{}, fmt.Errorf("kv: lookup: %w", newErr("list index", vault.ErrCorrupt, "malformed index entry"))
		}
		st, err := s.readSubject(ctx, ref, 0)
		if err != nil {
			return vault.Ref{}, fmt.Errorf("kv: lookup: %w", err)
		}
		if st.tokens()[token] {
			found = append(found, ref)
		}
	}
	switch len(found) {
	case 0:
		return vault.Ref{}, fmt.Errorf("kv: lookup: %w", vault.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return vault.Ref{}, fmt.Errorf("kv: lookup: %w: %w", vault.ErrInvalid, vault.ErrAmbiguous)
}

// list returns the keys of a metadata folder; folders (keys ending in
// "/") are left out.
func (s *Store) list(ctx context.Context, path string) ([]string, error) {
	return s.listKeys(ctx, path, false)
}

// listKeys returns the secrets of a metadata folder, or with folders its
// sub-folders (without their trailing "/").
func (s *Store) listKeys(ctx context.Context, path string, folders bool) ([]string, error) {
	body, status, err := s.get(ctx, path, url.Values{"list": {"true"}})
	if err != nil {
		return nil, vaultErr("list index", err)
	}
	if status == 404 {
		return nil, nil
	}
	var r struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		return nil, newErr("list index", vault.ErrCorrupt, "undecodable listing")
	}
	keys := r.Data.Keys[:0]
	for _, k := range r.Data.Keys {
		if dir, ok := strings.CutSuffix(k, "/"); ok == folders {
			keys = append(keys, dir)
		}
	}
	return keys, nil
}

// Tokenize returns the token of value under the pinned token key version.
func (s *Store) Tokenize(ctx context.Context, tenant string, kind vault.Kind, value string) (string, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return "", fmt.Errorf("kv: tokenize: tenant: %w", err)
	}
	tok, err := vault.Tokenize(ctx, s.kp, tenant, s.tokenVersion, kind, value)
	if err != nil {
		return "", fmt.Errorf("kv: tokenize: %w", err)
	}
	return tok, nil
}

// Erase deletes, with every version and the metadata, the index entries of
// every token any retained version of the subject lists, then the
// subject's secret. The index goes first so that an Erase cut short can be
// repeated: the subject's secret still names what is left.
func (s *Store) Erase(ctx context.Context, ref vault.Ref) error {
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("kv: erase: %w", err)
	}
	l := s.lock(ref)
	l.Lock()
	defer l.Unlock()
	cur, err := s.readSubject(ctx, ref, 0)
	if err != nil {
		return fmt.Errorf("kv: erase: %w", err)
	}
	if cur.version == 0 {
		return fmt.Errorf("kv: erase: %w", vault.ErrNotFound)
	}
	tokens := cur.tokens()
	// Older versions may name tokens a Put cut short left indexed.
	for v := cur.version - 1; v >= 1; v-- {
		old, err := s.readSubject(ctx, ref, v)
		if errors.Is(err, vault.ErrCorrupt) {
			continue // a foreign or damaged old version: it goes below
		}
		if err != nil {
			return fmt.Errorf("kv: erase: %w", err)
		}
		if old.version == 0 {
			break // trimmed by max_versions: so are the older ones
		}
		for t := range old.tokens() {
			tokens[t] = true
		}
	}
	for t := range tokens {
		if err := s.destroy(ctx, "erase token", s.tokenKey(ref, t)); err != nil {
			return fmt.Errorf("kv: erase: %w", err)
		}
	}
	if err := s.destroy(ctx, "erase subject", s.subjectKey(ref)); err != nil {
		return fmt.Errorf("kv: erase: %w", err)
	}
	return nil
}

// Close releases nothing: the Vault client belongs to the caller.
func (s *Store) Close() error { return nil }

var _ vault.Rewrapper = (*Store)(nil)

// Rewrap has nothing to do and returns zero stats: this store seals
// nothing itself, so no data key of it is wrapped by a tenant's
// key-encryption key, and rotating or trimming the KEK changes nothing for
// its records (the KEK is not used; the token key is a separate key). What
// protects the records at rest is Vault's barrier keyring (see Erasure in
// the package comment). It is here so that `blindpost keys rotate kek`
// treats every record store alike.
func (s *Store) Rewrap(ctx context.Context, tenant string, opts vault.RewrapOptions) (vault.RewrapStats, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.RewrapStats{}, fmt.Errorf("kv: rewrap: tenant: %w", err)
	}
	return vault.RewrapStats{}, nil
}
