package ingest

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"

	"github.com/blindpost/blindpost/core/event"
)

// Sink is the pipeline bound to one label, as a connector (Kafka, RabbitMQ,
// SQL views) uses it.
type Sink struct {
	p     *Pipeline
	label string
}

// SinkFor returns the sink of a label's connector.
func (p *Pipeline) SinkFor(label string) *Sink { return &Sink{p: p, label: label} }

// Ingest returns nil once every event of the batch is durable or refused:
// the connector may then acknowledge it. A refused event (invalid, unknown
// brand or type, PII) can never succeed on a retry, so it is acknowledged
// too, counted, logged by eid and code, and, when the firewall refused it,
// recorded as (eid, reason, path) in the store. An error means nothing may
// be acknowledged; the connector retries later and duplicates absorb the
// replay. A label deleted under a running connector is such an error: its
// stream waits rather than lose events.
func (s *Sink) Ingest(ctx context.Context, raws []json.RawMessage) error {
	res, err := s.p.Ingest(ctx, s.label, raws)
	if err != nil {
		return err
	}
	if res.Refused == 0 {
		return nil
	}
	// The first few refusals by eid (or batch index) and code: enough to
	// find them at the source, nothing of their content.
	const listed = 10
	var first []string
	for _, e := range res.Errors {
		if len(first) == listed {
			break
		}
		if e.Code == event.CodeDuplicateEID || e.Code == event.CodeUserNotFound {
			continue // stored, or stored before
		}
		key := e.EID
		if key == "" {
			key = "#" + strconv.Itoa(e.Index)
		}
		first = append(first, key+":"+strconv.Itoa(e.Code))
	}
	s.p.log.LogAttrs(ctx, slog.LevelWarn, "connector events refused",
		slog.String("label", s.label), slog.Int("events", len(raws)), slog.Int("stored", res.Stored),
		slog.Int("duplicates", res.Duplicates), slog.Int("refused", res.Refused), slog.Any("first", first))
	return nil
}
