// Package rabbitmq feeds player events from a RabbitMQ queue into the core,
// acknowledging each delivery by hand once the core holds it.
//
// It runs on the vendor side, next to the core, and sees events only as
// opaque JSON: each delivery's body is one event, handed to a Sink
// unparsed. Deliveries are collected into batches (up to Config.BatchSize,
// or whatever arrived within Config.Linger of the first) and acknowledged
// only after the Sink has returned nil, that is after every event of the
// batch is durable or refused and recorded (DESIGN.md §8, §9.6). If the
// Sink fails, the batch is rejected back onto the queue and comes again;
// if the connection dies first, the broker requeues whatever was not
// acknowledged. Delivery is therefore at least once, and the core
// de-duplicates on eid.
//
// Like every adapter, the package imports neither the core nor the gateway;
// it declares the one method it needs from its user.
package rabbitmq

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Sink takes a batch of events, each one event's JSON exactly as it arrived.
type Sink interface {
	// Ingest returns nil once every event is durable or refused-and-recorded: the connector may then
	// commit/ack. An error means nothing may be acknowledged; the connector retries later.
	Ingest(ctx context.Context, events []json.RawMessage) error
}

// Config names what to consume.
type Config struct {
	// URL is amqp://user:password@host:port/vhost (amqps:// for TLS). It
	// holds a secret: it is never logged.
	URL string
	// Queue must exist; the connector does not declare it, so the queue's
	// durability and arguments stay the operator's choice.
	Queue string
	// BatchSize bounds how many deliveries go to the Sink at once, and is
	// the channel's prefetch (Qos): the broker never has more than one
	// batch in flight to this consumer. 0 means DefaultBatchSize.
	BatchSize int
	// Linger is how long a batch waits to fill after its first delivery;
	// 0 means DefaultLinger.
	Linger time.Duration
}

// Defaults for the zero Config fields.
const (
	DefaultBatchSize = 100
	DefaultLinger    = 50 * time.Millisecond
)

// Options are the connector's dependencies and tuning; the zero value is usable.
type Options struct {
	Logger *slog.Logger // nil means slog.Default()
	// MinBackoff and MaxBackoff bound the wait before reconnecting and
	// after a failed Ingest; the wait doubles with each consecutive
	// failure. Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// TLS configures amqps:// connections; nil uses the system roots.
	TLS *tls.Config
	// ConnectionName is shown in the broker's management tools; empty
	// means "blindpost-core".
	ConnectionName string
}

var (
	// ErrConfig marks an unusable Config.
	ErrConfig = errors.New("rabbitmq: invalid config")
	// errDeliveriesClosed ends a session: the broker cancelled the
	// consumer, or the channel or connection closed.
	errDeliveriesClosed = errors.New("rabbitmq: delivery channel closed")
)

// Consumer consumes one queue.
type Consumer struct {
	cfg  Config
	sink Sink
	opts Options
	log  *slog.Logger
}

// New checks cfg and returns a Consumer; it does not connect.
func New(cfg Config, sink Sink, opts Options) (*Consumer, error) {
	switch {
	case cfg.URL == "":
		return nil, fmt.Errorf("%w: url is required", ErrConfig)
	case cfg.Queue == "":
		return nil, fmt.Errorf("%w: queue is required", ErrConfig)
	case cfg.BatchSize < 0 || cfg.BatchSize > 65535:
		return nil, fmt.Errorf("%w: batch size must be between 1 and 65535", ErrConfig)
	case cfg.Linger < 0:
		return nil, fmt.Errorf("%w: linger must not be negative", ErrConfig)
	case sink == nil:
		return nil, fmt.Errorf("%w: a sink is required", ErrConfig)
	}
	// Parse the URL now so a typo fails at start-up; the error is ours,
	// because the parser's could quote the URL, password included.
	if _, err := amqp.ParseURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("%w: url is not an amqp:// or amqps:// URI", ErrConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(30*time.Second, opts.MinBackoff)
	}
	if opts.ConnectionName == "" {
		opts.ConnectionName = "blindpost-core"
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("connector", "rabbitmq", "queue", cfg.Queue)
	return &Consumer{cfg: cfg, sink: sink, opts: opts, log: log}, nil
}

// Run consumes until ctx ends and returns nil. A lost connection, a
// cancelled consumer or a missing queue ends the session; Run then
// reconnects with exponential back-off.
func (c *Consumer) Run(ctx context.Context) error {
	failures := 0
	for {
		consuming, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if consuming {
			failures = 0
		}
		failures++
		wait := backoff(c.opts.MinBackoff, c.opts.MaxBackoff, failures)
		c.log.Warn("session ended; reconnecting", "retry_in", wait, "err", err)
		sleep(ctx, wait)
	}
}

// session consumes over one connection until it fails or ctx ends.
// consuming reports whether the consumer got as far as subscribing.
func (c *Consumer) session(ctx context.Context) (consuming bool, err error) {
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:       10 * time.Second,
		Locale:          "en_US",
		TLSClientConfig: c.opts.TLS,
		Properties:      amqp.Table{"connection_name": c.opts.ConnectionName},
	})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	// Closing the connection hands every unacknowledged delivery back to
	// the queue.
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(c.cfg.BatchSize, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	deliveries, err := ch.Consume(c.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume: %w", err)
	}
	c.log.Info("consuming", "prefetch", c.cfg.BatchSize)

	sinkFailures := 0
	for {
		batch, open := c.collect(ctx, deliveries)
		if ctx.Err() != nil {
			return true, nil
		}
		if len(batch) > 0 {
			last := batch[len(batch)-1]
			events := make([]json.RawMessage, len(batch))
			for i, d := range batch {
				events[i] = d.Body
			}
			if err := c.sink.Ingest(ctx, events); err != nil {
				// Every delivery of the batch goes back to the queue
				// (multiple: all tags up to the last one, which are
				// exactly this batch's, as earlier ones were settled).
				if nerr := last.Nack(true, true); nerr != nil {
					return true, fmt.Errorf("requeue after a failed ingest: %w", nerr)
				}
				if ctx.Err() != nil {
					return true, nil
				}
				sinkFailures++
				wait := backoff(c.opts.MinBackoff, c.opts.MaxBackoff, sinkFailures)
				c.log.Warn("sink refused a batch; requeued for redelivery", "deliveries", len(batch), "retry_in", wait, "err", err)
				sleep(ctx, wait)
				continue
			}
			sinkFailures = 0
			if err := last.Ack(true); err != nil {
				// Not acknowledged: the broker redelivers the batch
				// after the reconnect, and eid de-duplication absorbs it.
				return true, fmt.Errorf("ack: %w", err)
			}
		}
		if !open {
			return true, closeReason(closed)
		}
	}
}

// closeReason says why the deliveries stopped: the channel's (or the
// connection's) close error if one comes promptly, else the broker
// cancelled the consumer (the queue was deleted, say).
func closeReason(closed <-chan *amqp.Error) error {
	select {
	case e, ok := <-closed:
		if ok && e != nil {
			return fmt.Errorf("%w: %w", errDeliveriesClosed, e)
		}
	case <-time.After(100 * time.Millisecond):
	}
	return fmt.Errorf("%w: consumer cancelled by the broker", errDeliveriesClosed)
}

// collect waits for a first delivery, then gathers more until the batch is
// full or Linger has passed. open is false once deliveries is closed.
func (c *Consumer) collect(ctx context.Context, deliveries <-chan amqp.Delivery) (batch []amqp.Delivery, open bool) {
	select {
	case <-ctx.Done():
		return nil, true
	case d, ok := <-deliveries:
		if !ok {
			return nil, false
		}
		batch = append(batch, d)
	}
	linger := time.NewTimer(c.cfg.Linger)
	defer linger.Stop()
	for len(batch) < c.cfg.BatchSize {
		select {
		case <-ctx.Done():
			return batch, true
		case <-linger.C:
			return batch, true
		case d, ok := <-deliveries:
			if !ok {
				return batch, false
			}
			batch = append(batch, d)
		}
	}
	return batch, true
}

// backoff is lo·2^(n−1), capped at hi.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
