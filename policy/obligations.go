package policy

import (
	"encoding/json"
	"fmt"
	"time"
)

// Reservation is one frequency-cap slot the gateway must reserve before it
// acknowledges an allowed message (obligation "reserve"): at most Limit
// messages under Key for this recipient in any Window.
type Reservation struct {
	Key    string // "<category>/<channel>", e.g. "marketing/email"
	Window time.Duration
	Limit  int
}

// DeferUntil returns the instant of obligation "defer_until": the message is
// allowed, but not before then (quiet hours). ok is false without one.
func (d Decision) DeferUntil() (t time.Time, ok bool, err error) {
	v, present := d.Obligations[ObligationDeferUntil]
	if !present {
		return time.Time{}, false, nil
	}
	s, isString := v.(string)
	if !isString {
		return time.Time{}, false, fmt.Errorf("policy: obligation %s is not a string", ObligationDeferUntil)
	}
	t, err = time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("policy: obligation %s: %w", ObligationDeferUntil, err)
	}
	return t, true, nil
}

// Reservations returns the slots of obligation "reserve" (none without one).
// An obligation the gateway cannot read is an error: the gateway must then
// not acknowledge the message, since it could not honour the obligation.
func (d Decision) Reservations() ([]Reservation, error) {
	v, present := d.Obligations[ObligationReserve]
	if !present {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("policy: obligation %s is not a list", ObligationReserve)
	}
	out := make([]Reservation, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policy: obligation %s[%d] is not an object", ObligationReserve, i)
		}
		key, ok1 := m["key"].(string)
		window, ok2 := integer(m["window_seconds"])
		limit, ok3 := integer(m["limit"])
		if !ok1 || !ok2 || !ok3 || key == "" || window <= 0 || limit <= 0 {
			return nil, fmt.Errorf("policy: obligation %s[%d] is malformed", ObligationReserve, i)
		}
		out = append(out, Reservation{Key: key, Window: time.Duration(window) * time.Second, Limit: int(limit)})
	}
	return out, nil
}

// Hold reports obligation "hold": the message was denied only by the volume
// guard, and the gateway should keep it and alert rather than reject it.
func (d Decision) Hold() bool {
	h, _ := d.Obligations[ObligationHold].(bool)
	return h && !d.Allow
}

// ListUnsubscribe reports obligation "list_unsubscribe": the email must
// carry one-click unsubscribe headers (RFC 8058). A gateway that cannot add
// them must not send the message.
func (d Decision) ListUnsubscribe() bool {
	l, _ := d.Obligations[ObligationListUnsubscribe].(bool)
	return l && d.Allow
}

func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case int:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	}
	return 0, false
}
