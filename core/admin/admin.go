// Package admin manages the core's labels (the operators it serves): their
// brands, PII firewall mode, custom event types and events API keys. The
// HTTP admin API (NewHandler) and the `blindpost core labels|keys` commands
// both go through Admin, so both validate the same way.
//
// It runs on the vendor side. Nothing it handles is PII: labels, brands and
// event types are names the vendor chooses, and a player's state is what
// the PII firewall let into the store. API key secrets are returned once,
// at creation, and never again: the store keeps only their hashes.
package admin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
	"github.com/blindpost/blindpost/envelope"
)

// Store is what the admin needs of the core's store (*store.Store).
type Store interface {
	CreateLabel(ctx context.Context, id, name string) error
	Labels(ctx context.Context) ([]store.Label, error)
	Label(ctx context.Context, id string) (store.Label, error)
	AddBrand(ctx context.Context, label, brand string) error
	SetFirewallMode(ctx context.Context, label, mode string) error
	RegisterEventType(ctx context.Context, label, name string) error
	CreateAPIKey(ctx context.Context, label string) (key string, info store.APIKeyInfo, err error)
	APIKeys(ctx context.Context, label string) ([]store.APIKeyInfo, error)
	RevokeAPIKey(ctx context.Context, label, keyID string) error
	Player(ctx context.Context, label, brand, user string) (store.PlayerState, error)
	Rejections(ctx context.Context, label string, limit int) ([]store.Rejection, error)
	ApplyTokenPairs(ctx context.Context, label string, pairs map[string]string) (players, values int, err error)
}

var (
	// ErrInvalid marks a request refused as malformed.
	ErrInvalid = errors.New("admin: invalid")
	// ErrNotFound marks a label, key or player that does not exist.
	ErrNotFound = errors.New("admin: not found")
	// ErrExists marks a label id already taken.
	ErrExists = errors.New("admin: already exists")
)

// Label is one operator integration as the admin API shows it.
type Label struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Brands       []string `json:"brands"`
	FirewallMode string   `json:"firewall_mode"` // reject or strip
	EventTypes   []string `json:"event_types"`   // custom ones; the common ones need no registering
}

func labelOf(l store.Label) Label {
	out := Label{ID: l.ID, Name: l.Name, Brands: l.Brands, FirewallMode: l.FirewallMode, EventTypes: l.EventTypes}
	if out.Brands == nil {
		out.Brands = []string{}
	}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	return out
}

// KeyInfo describes an API key, never its secret.
type KeyInfo struct {
	ID      string     `json:"id"`
	Label   string     `json:"label"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"` // absent while the key is valid
}

func keyOf(k store.APIKeyInfo) KeyInfo {
	return KeyInfo{ID: k.ID, Label: k.Label, Created: k.Created.UTC(), Revoked: timePtr(k.Revoked)}
}

// Rejection is what is kept of an event the PII firewall refused.
type Rejection struct {
	EID    string    `json:"eid"`
	Reason string    `json:"reason"`
	Path   string    `json:"path"`
	Time   time.Time `json:"time"`
}

// Admin applies validated changes to the store.
type Admin struct {
	store       Store
	onChange    func(label string)
	gatewayKeys []*envelope.VerifyingKey // SetGatewayKeys (tokenpairs.go)
}

// New returns an Admin over st. onChange, if set, runs after a label's
// settings changed (the pipeline drops its cached copy there).
func New(st Store, onChange func(label string)) *Admin {
	if onChange == nil {
		onChange = func(string) {}
	}
	return &Admin{store: st, onChange: onChange}
}

// ValidLabelID reports whether s can name a label: 1-64 characters of
// [a-z0-9_-], like the gateway's tenant ids, so one id can name an operator
// on both sides.
func ValidLabelID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validID checks a brand or user id as the events carry them: printable
// ASCII without spaces, at most event.MaxIDLen bytes.
func validID(s string) bool {
	if s == "" || len(s) > event.MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

var typeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// storeErr maps the store's error kinds onto ours. The store's messages
// name fields, never values.
func storeErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w: %s", ErrExists, what)
	case errors.Is(err, store.ErrInvalid):
		return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
	}
	return err
}

// CreateLabel adds a label, in reject mode, with no brands and no keys.
func (a *Admin) CreateLabel(ctx context.Context, id, name string) (Label, error) {
	if !ValidLabelID(id) {
		return Label{}, invalid("label id: want 1-64 characters of [a-z0-9_-]")
	}
	if len(name) > 200 || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return Label{}, invalid("name: at most 200 bytes of text")
	}
	if name == "" {
		name = id
	}
	if err := a.store.CreateLabel(ctx, id, name); err != nil {
		return Label{}, fmt.Errorf("create label: %w", storeErr("label", err))
	}
	a.onChange(id)
	return a.Label(ctx, id)
}

// Labels lists every label.
func (a *Admin) Labels(ctx context.Context) ([]Label, error) {
	ls, err := a.store.Labels(ctx)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	out := make([]Label, len(ls))
	for i, l := range ls {
		out[i] = labelOf(l)
	}
	return out, nil
}

// Label returns one label.
func (a *Admin) Label(ctx context.Context, id string) (Label, error) {
	if !ValidLabelID(id) {
		return Label{}, fmt.Errorf("%w: label", ErrNotFound)
	}
	l, err := a.store.Label(ctx, id)
	if err != nil {
		return Label{}, storeErr("label", err)
	}
	return labelOf(l), nil
}

// AddBrand lets the label's events name brand as their ext_brand_id.
func (a *Admin) AddBrand(ctx context.Context, label, brand string) (Label, error) {
	if !validID(brand) {
		return Label{}, invalid("brand: want 1-%d printable ASCII characters without spaces", event.MaxIDLen)
	}
	return a.change(ctx, label, func() error { return a.store.AddBrand(ctx, label, brand) })
}

// SetFirewallMode sets how the PII firewall treats the label's events:
// reject refuses an event with PII, strip removes the offending fields.
func (a *Admin) SetFirewallMode(ctx context.Context, label, mode string) (Label, error) {
	if mode != store.FirewallReject && mode != store.FirewallStrip {
		return Label{}, invalid("mode: want reject or strip")
	}
	return a.change(ctx, label, func() error { return a.store.SetFirewallMode(ctx, label, mode) })
}

// RegisterEventType lets the label's events use a custom event type.
func (a *Admin) RegisterEventType(ctx context.Context, label, name string) (Label, error) {
	if !typeRE.MatchString(name) {
		return Label{}, invalid("event type: want lower-case letters, digits and _, starting with a letter, at most 64")
	}
	if slices.Contains(event.Common, name) {
		return Label{}, invalid("event type: %s is a common type, always accepted", name)
	}
	return a.change(ctx, label, func() error { return a.store.RegisterEventType(ctx, label, name) })
}

// change runs one settings change of an existing label and returns the
// label as it is now.
func (a *Admin) change(ctx context.Context, label string, f func() error) (Label, error) {
	if _, err := a.Label(ctx, label); err != nil {
		return Label{}, err
	}
	if err := f(); err != nil {
		return Label{}, storeErr("label", err)
	}
	a.onChange(label)
	return a.Label(ctx, label)
}

// NewKey is an API key just created: Key is its secret, shown this once.
type NewKey struct {
	Key  string  `json:"key"`
	Info KeyInfo `json:"info"`
	// Previous lists the label's other valid keys after a rotation: revoke
	// them once the PAM uses the new one.
	Previous []KeyInfo `json:"previous,omitempty"`
}

// CreateKey creates an API key for the label's events API.
func (a *Admin) CreateKey(ctx context.Context, label string) (NewKey, error) {
	if _, err := a.Label(ctx, label); err != nil {
		return NewKey{}, err
	}
	key, info, err := a.store.CreateAPIKey(ctx, label)
	if err != nil {
		return NewKey{}, fmt.Errorf("create key: %w", storeErr("label", err))
	}
	return NewKey{Key: key, Info: keyOf(info)}, nil
}

// RotateKey creates a new key and keeps the old ones valid until they are
// revoked, so the PAM can switch without a gap.
func (a *Admin) RotateKey(ctx context.Context, label string) (NewKey, error) {
	nk, err := a.CreateKey(ctx, label)
	if err != nil {
		return NewKey{}, err
	}
	keys, err := a.Keys(ctx, label)
	if err != nil {
		return NewKey{}, err
	}
	for _, k := range keys {
		if k.ID != nk.Info.ID && k.Revoked == nil {
			nk.Previous = append(nk.Previous, k)
		}
	}
	return nk, nil
}

// Keys lists the label's keys, revoked ones included, oldest first,
// without their secrets.
func (a *Admin) Keys(ctx context.Context, label string) ([]KeyInfo, error) {
	if _, err := a.Label(ctx, label); err != nil {
		return nil, err
	}
	ks, err := a.store.APIKeys(ctx, label)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", storeErr("label", err))
	}
	out := make([]KeyInfo, len(ks))
	for i, k := range ks {
		out[i] = keyOf(k)
	}
	return out, nil
}

// RevokeKey makes a key invalid at once.
func (a *Admin) RevokeKey(ctx context.Context, label, keyID string) error {
	if _, err := a.Label(ctx, label); err != nil {
		return err
	}
	if err := a.store.RevokeAPIKey(ctx, label, keyID); err != nil {
		return fmt.Errorf("revoke key: %w", storeErr("key", err))
	}
	return nil
}

// Player is a player's state as support tools read it. Properties hold
// only what the PII firewall let in; OptOuts repeats the opt-out flags
// (core_is_*) among them, read as set or not.
type Player struct {
	Label      string          `json:"label"`
	Brand      string          `json:"ext_brand_id"`
	User       string          `json:"user_ext_id"`
	Properties map[string]any  `json:"properties"`
	OptOuts    map[string]bool `json:"opt_outs"`
	Tags       []string        `json:"tags"`
	LastOnline *time.Time      `json:"last_online,omitempty"`
	FirstSeen  *time.Time      `json:"first_seen,omitempty"`
	UpdatedAt  *time.Time      `json:"updated_at,omitempty"`
}

// Player returns one player's state.
func (a *Admin) Player(ctx context.Context, label, brand, user string) (Player, error) {
	if !ValidLabelID(label) {
		return Player{}, invalid("label: want 1-64 characters of [a-z0-9_-]")
	}
	if !validID(brand) || !validID(user) {
		return Player{}, invalid("brand and user: want 1-%d printable ASCII characters without spaces", event.MaxIDLen)
	}
	ps, err := a.store.Player(ctx, label, brand, user)
	if err != nil {
		return Player{}, storeErr("player", err)
	}
	p := Player{Label: label, Brand: brand, User: user, Properties: ps.Properties, OptOuts: ps.OptOuts, Tags: ps.Tags,
		LastOnline: timePtr(ps.LastOnline), FirstSeen: timePtr(ps.FirstSeen), UpdatedAt: timePtr(ps.UpdatedAt)}
	if p.Properties == nil {
		p.Properties = map[string]any{}
	}
	if p.OptOuts == nil {
		p.OptOuts = map[string]bool{}
	}
	if p.Tags == nil {
		p.Tags = []string{}
	}
	return p, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Rejections lists the label's latest events the PII firewall refused, as
// (eid, reason, path): what was refused, never the value.
func (a *Admin) Rejections(ctx context.Context, label string, limit int) ([]Rejection, error) {
	if _, err := a.Label(ctx, label); err != nil {
		return nil, err
	}
	limit = min(max(limit, 0), store.MaxRejections)
	rs, err := a.store.Rejections(ctx, label, limit)
	if err != nil {
		return nil, fmt.Errorf("rejections: %w", err)
	}
	out := make([]Rejection, len(rs))
	for i, r := range rs {
		out[i] = Rejection{EID: r.EID, Reason: r.Reason, Path: r.Path, Time: r.Time.UTC()}
	}
	return out, nil
}
