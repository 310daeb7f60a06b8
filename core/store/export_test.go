package store

import "context"

// StoredEvent is an events row, for tests to look behind Ingest.
type StoredEvent struct {
	EID, Brand, User, Type, Payload string
	EventDate                       int64
	SkipCJM, UserNotFound           bool
}

// StoredEvents returns label's events in order of arrival.
func (s *Store) StoredEvents(ctx context.Context, label string) ([]StoredEvent, error) {
	payload := "payload"
	if s.d.postgres {
		payload = "payload::text"
	}
	rows, err := s.query(ctx, `SELECT eid, ext_brand_id, user_ext_id, event_type, `+payload+`, event_date, skip_cjm, user_not_found
		FROM events WHERE label = ? ORDER BY seq`, label)
	if err != nil {
		return nil, err
	}
	var out []StoredEvent
	err = scanRows(rows, func() error {
		var e StoredEvent
		err := rows.Scan(&e.EID, &e.Brand, &e.User, &e.Type, &e.Payload, &e.EventDate, &e.SkipCJM, &e.UserNotFound)
		out = append(out, e)
		return err
	})
	return out, err
}
