package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/blindpost/blindpost/core/profile"
)

// PlayerState is what the core knows of a player, built by its events.
type PlayerState struct {
	// Properties are set by update_profile events (core/profile), decoded
	// as encoding/json does with UseNumber.
	Properties map[string]any
	// OptOuts are the opt-out flags among Properties (core_is_*, such as
	// core_is_email_disabled_by_platform): plain properties, read as set
	// or not (profile.OptOuts).
	OptOuts map[string]bool
	// Tags are the string elements of the "tags" property.
	Tags []string
	// LastOnline is the event_date of the player's latest login; zero if
	// none was seen.
	LastOnline time.Time
	// FirstSeen is when the core created the player; UpdatedAt when its
	// state last changed.
	FirstSeen, UpdatedAt time.Time
}

// Player returns the state of player (brand, user) of label, or
// ErrNotFound if no registration or update_profile event has named it.
func (s *Store) Player(ctx context.Context, label, brand, user string) (PlayerState, error) {
	var raw string
	var lastOnline, firstSeen, updated int64
	err := s.queryRow(ctx, `SELECT properties, last_online, first_seen, updated FROM players
		WHERE label = ? AND ext_brand_id = ? AND user_ext_id = ?`, label, brand, user).Scan(&raw, &lastOnline, &firstSeen, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return PlayerState{}, fmt.Errorf("%w: player", ErrNotFound)
	}
	if err != nil {
		return PlayerState{}, fmt.Errorf("store: player: %w", s.closed(err))
	}
	p := &player{raw: raw}
	props, err := p.properties()
	if err != nil {
		return PlayerState{}, fmt.Errorf("store: player: %w", err)
	}
	if props == nil {
		props = map[string]any{}
	}
	return PlayerState{
		Properties: props,
		OptOuts:    profile.OptOuts(props),
		Tags:       profile.Tags(props),
		LastOnline: fromUnixMilli(lastOnline),
		FirstSeen:  fromUnixMilli(firstSeen),
		UpdatedAt:  fromUnixMilli(updated),
	}, nil
}
