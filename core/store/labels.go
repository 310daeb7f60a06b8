package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/blindpost/blindpost/core/event"
)

// Label is one operator integration: the brands it sends events for, how
// its PII firewall treats a suspect value, and the event types it has
// registered beside the common ones (event.Common).
type Label struct {
	ID           string
	Name         string
	Brands       []string // sorted
	FirewallMode string   // FirewallReject or FirewallStrip
	EventTypes   []string // custom, sorted
}

// CreateLabel creates a label with no brand, no custom event type and the
// firewall refusing suspect events. ErrExists if id is taken.
func (s *Store) CreateLabel(ctx context.Context, id, name string) error {
	if !labelID.MatchString(id) {
		return fmt.Errorf("%w: label id: want 1-64 characters of [a-z0-9_-], starting with a letter or digit", ErrInvalid)
	}
	if name == "" || len(name) > maxName || !plainText(name) {
		return fmt.Errorf("%w: label name: want 1-%d bytes of text without control characters", ErrInvalid, maxName)
	}
	err := s.write(ctx, func(t *txn) error {
		_, err := t.exec(ctx, `INSERT INTO labels (id, name, firewall_mode, created) VALUES (?, ?, ?, ?)`,
			id, name, FirewallReject, t.now)
		return err
	})
	if s.d.conflict(err) {
		return fmt.Errorf("%w: label %s", ErrExists, id)
	}
	if err != nil {
		return fmt.Errorf("store: create label: %w", err)
	}
	return nil
}

// Label returns the label id, or ErrNotFound.
func (s *Store) Label(ctx context.Context, id string) (Label, error) {
	var l Label
	err := s.queryRow(ctx, `SELECT id, name, firewall_mode FROM labels WHERE id = ?`, id).Scan(&l.ID, &l.Name, &l.FirewallMode)
	if errors.Is(err, sql.ErrNoRows) {
		return Label{}, fmt.Errorf("%w: label", ErrNotFound)
	}
	if err != nil {
		return Label{}, fmt.Errorf("store: label: %w", s.closed(err))
	}
	byID := map[string]*Label{l.ID: &l}
	if err := s.labelLists(ctx, byID, ` WHERE label = ?`, id); err != nil {
		return Label{}, err
	}
	return l, nil
}

// Labels returns every label, by id.
func (s *Store) Labels(ctx context.Context) ([]Label, error) {
	rows, err := s.query(ctx, `SELECT id, name, firewall_mode FROM labels ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: labels: %w", err)
	}
	var labels []*Label
	byID := map[string]*Label{}
	for rows.Next() {
		l := new(Label)
		if err := rows.Scan(&l.ID, &l.Name, &l.FirewallMode); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: labels: %w", err)
		}
		labels = append(labels, l)
		byID[l.ID] = l
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: labels: %w", err)
	}
	if err := s.labelLists(ctx, byID, ``); err != nil {
		return nil, err
	}
	out := make([]Label, len(labels))
	for i, l := range labels {
		out[i] = *l
	}
	return out, nil
}

// labelLists fills in the brands and event types of the labels in byID.
func (s *Store) labelLists(ctx context.Context, byID map[string]*Label, where string, args ...any) error {
	for _, list := range []struct {
		query string
		field func(*Label) *[]string
	}{
		{`SELECT label, brand FROM brands` + where + ` ORDER BY label, brand`, func(l *Label) *[]string { return &l.Brands }},
		{`SELECT label, name FROM event_types` + where + ` ORDER BY label, name`, func(l *Label) *[]string { return &l.EventTypes }},
	} {
		rows, err := s.query(ctx, list.query, args...)
		if err != nil {
			return fmt.Errorf("store: labels: %w", err)
		}
		for rows.Next() {
			var label, v string
			if err := rows.Scan(&label, &v); err != nil {
				rows.Close()
				return fmt.Errorf("store: labels: %w", err)
			}
			if l := byID[label]; l != nil {
				f := list.field(l)
				*f = append(*f, v)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: labels: %w", err)
		}
	}
	return nil
}

// AddBrand lets label send events for brand (an ext_brand_id). Adding a
// brand twice is no error.
func (s *Store) AddBrand(ctx context.Context, label, brand string) error {
	if brand == "" || len(brand) > event.MaxIDLen || !plainText(brand) {
		return fmt.Errorf("%w: brand: want 1-%d bytes of text without control characters", ErrInvalid, event.MaxIDLen)
	}
	return s.labelChange(ctx, "add brand", label, `INSERT INTO brands (label, brand) VALUES (?, ?) ON CONFLICT (label, brand) DO NOTHING`, label, brand)
}

// SetFirewallMode sets how label's PII firewall treats a suspect value:
// FirewallReject or FirewallStrip.
func (s *Store) SetFirewallMode(ctx context.Context, label, mode string) error {
	if mode != FirewallReject && mode != FirewallStrip {
		return fmt.Errorf("%w: firewall mode %q: want %q or %q", ErrInvalid, mode, FirewallReject, FirewallStrip)
	}
	return s.labelChange(ctx, "set firewall mode", label, `UPDATE labels SET firewall_mode = ? WHERE id = ?`, mode, label)
}

// RegisterEventType lets label send events of the custom type name.
// Registering a type twice is no error; a common type (event.Common) needs
// no registering and is refused.
func (s *Store) RegisterEventType(ctx context.Context, label, name string) error {
	if !eventType.MatchString(name) {
		return fmt.Errorf("%w: event type: want lower-case letters, digits and _, starting with a letter, at most 64", ErrInvalid)
	}
	if slices.Contains(event.Common, name) {
		return fmt.Errorf("%w: event type %s is a common type", ErrInvalid, name)
	}
	return s.labelChange(ctx, "register event type", label, `INSERT INTO event_types (label, name) VALUES (?, ?) ON CONFLICT (label, name) DO NOTHING`, label, name)
}

// labelChange runs one statement that changes label, in a transaction
// that first checks that the label exists.
func (s *Store) labelChange(ctx context.Context, op, label, query string, args ...any) error {
	err := s.write(ctx, func(t *txn) error {
		if err := t.labelExists(ctx, label); err != nil {
			return err
		}
		_, err := t.exec(ctx, query, args...)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// labelExists returns ErrNotFound unless label exists. Labels are never
// deleted, so one found once is remembered.
func (t *txn) labelExists(ctx context.Context, label string) error {
	if _, ok := t.labels.Load(label); ok {
		return nil
	}
	var one int
	err := t.queryRow(ctx, labelExistsSQL, label).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: label", ErrNotFound)
	}
	if err != nil {
		return err
	}
	t.labels.Store(label, true)
	return nil
}
