// Package kafka feeds player events from a Kafka topic into the core, as a
// member of a consumer group that commits offsets by hand.
//
// It runs on the vendor side, next to the core, and sees events only as
// opaque JSON: each record's value is one event, handed to a Sink unparsed.
// Offsets are committed only after the Sink has returned nil, that is after
// every event of the batch is durable or refused and recorded, so nothing
// acknowledged is lost if the process dies (DESIGN.md §8, §9.6). Delivery is
// at least once: after a crash, a failed commit or a rebalance some records
// come again, and the core de-duplicates them on eid.
//
// Like every adapter, the package imports neither the core nor the gateway;
// it declares the one method it needs from its user.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Sink takes a batch of events, each one event's JSON exactly as it arrived.
type Sink interface {
	// Ingest returns nil once every event is durable or refused-and-recorded: the connector may then
	// commit/ack. An error means nothing may be acknowledged; the connector retries later.
	Ingest(ctx context.Context, events []json.RawMessage) error
}

// Config names what to consume.
type Config struct {
	Brokers []string // seed brokers, host:port
	Topic   string
	Group   string // the consumer group; its committed offsets are the connector's position
	// BatchSize bounds how many records go to the Sink at once; 0 means
	// DefaultBatchSize.
	BatchSize int
}

// DefaultBatchSize is the batch size when Config.BatchSize is 0.
const DefaultBatchSize = 500

// Options are the connector's dependencies and tuning; the zero value is usable.
type Options struct {
	Logger *slog.Logger // nil means slog.Default()
	// MinBackoff and MaxBackoff bound the wait after a failed Ingest; the
	// wait doubles with each consecutive failure. Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// ClientOpts are extra franz-go options, applied after the connector's
	// own: TLS (kgo.DialTLSConfig), SASL (kgo.SASL), time-outs.
	ClientOpts []kgo.Opt
}

// ErrConfig marks an unusable Config.
var ErrConfig = errors.New("kafka: invalid config")

// Consumer is one group member. Run it once per process (or more, for more
// members: each Run is a member of its own).
type Consumer struct {
	cfg  Config
	sink Sink
	opts Options
	log  *slog.Logger
}

// New checks cfg and returns a Consumer; it does not connect.
func New(cfg Config, sink Sink, opts Options) (*Consumer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, fmt.Errorf("%w: brokers are required", ErrConfig)
	case cfg.Topic == "":
		return nil, fmt.Errorf("%w: topic is required", ErrConfig)
	case cfg.Group == "":
		return nil, fmt.Errorf("%w: group is required", ErrConfig)
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("%w: batch size must not be negative", ErrConfig)
	case sink == nil:
		return nil, fmt.Errorf("%w: a sink is required", ErrConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(30*time.Second, opts.MinBackoff)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("connector", "kafka", "topic", cfg.Topic, "group", cfg.Group)
	return &Consumer{cfg: cfg, sink: sink, opts: opts, log: log}, nil
}

// Run consumes until ctx ends, then leaves the group and returns nil. It
// returns an error only if the client cannot be created. Broker outages are
// retried by the client with its own back-off; a failing Sink is retried
// here, with exponential back-off, from the first record it did not take.
func (c *Consumer) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topic),
		kgo.DisableAutoCommit(),
		// Between a poll and AllowRebalance no partition can be revoked, so
		// the commit after Ingest never lands on a partition another
		// member already owns, and a re-seek after a failed Ingest is safe.
		kgo.BlockRebalanceOnPoll(),
		// Records of aborted transactions are not events.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.WithLogger(kgoLogger{c.log}),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			c.log.Info("partitions assigned", "partitions", m[c.cfg.Topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			// Nothing to commit here: every batch is committed (or
			// re-sought) before rebalances are allowed again.
			if len(m[c.cfg.Topic]) > 0 {
				c.log.Info("partitions revoked", "partitions", m[c.cfg.Topic])
			}
		}),
	}, c.opts.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: new client: %w", err)
	}
	defer cl.CloseAllowingRebalance()

	failures := 0
	for {
		fetches := cl.PollRecords(ctx, c.cfg.BatchSize)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			cl.AllowRebalance()
			return nil
		}
		fetchFailed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			fetchFailed = true
			c.log.Warn("fetch failed", "partition", partition, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			if fetchFailed {
				failures++
				sleep(ctx, backoff(c.opts.MinBackoff, c.opts.MaxBackoff, failures))
			}
			continue
		}

		events := make([]json.RawMessage, len(recs))
		for i, r := range recs {
			events[i] = r.Value
		}
		if err := c.sink.Ingest(ctx, events); err != nil {
			// Nothing of this batch may be committed. Rewind each
			// partition to its first record of the batch, so this member
			// delivers them again (and drops whatever it had buffered
			// past them); if the process dies instead, the group resumes
			// from the last commit, which is no later.
			cl.SetOffsets(firstOffsets(recs))
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait := backoff(c.opts.MinBackoff, c.opts.MaxBackoff, failures)
			c.log.Warn("sink refused a batch; it will be redelivered", "records", len(recs), "retry_in", wait, "err", err)
			sleep(ctx, wait)
			continue
		}
		failures = 0
		// The batch is durable: commit it even if ctx has just ended, so a
		// clean shutdown does not redeliver it. A failed commit only means
		// duplicates, which the core absorbs.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := cl.CommitRecords(cctx, recs...); err != nil {
			c.log.Warn("commit failed; the batch may be redelivered", "records", len(recs), "err", err)
		}
		cancel()
		cl.AllowRebalance()
	}
}

// firstOffsets maps each partition of recs to its first record's offset.
func firstOffsets(recs []*kgo.Record) map[string]map[int32]kgo.EpochOffset {
	m := make(map[string]map[int32]kgo.EpochOffset)
	for _, r := range recs {
		tm := m[r.Topic]
		if tm == nil {
			tm = make(map[int32]kgo.EpochOffset)
			m[r.Topic] = tm
		}
		if at, ok := tm[r.Partition]; !ok || r.Offset < at.Offset {
			tm[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	return m
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

// kgoLogger passes franz-go's warnings and errors to slog. Its messages
// carry broker and partition metadata, never record contents.
type kgoLogger struct{ log *slog.Logger }

func (kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	if level == kgo.LogLevelError {
		lvl = slog.LevelError
	}
	l.log.Log(context.Background(), lvl, "kafka client: "+msg, keyvals...)
}
