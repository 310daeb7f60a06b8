// Package dbviews feeds player events into the core from a SQL view (or
// table) in the operator's PostgreSQL or MySQL/MariaDB database, read by a
// watermark column.
//
// It runs on the vendor side, next to the core, with read access to a view
// the operator prepares. The view exposes one row per event, with the
// columns eid, event_date (epoch milliseconds or a timestamp),
// ext_brand_id, user_ext_id, event_type and payload (JSON text, may be
// NULL), plus a watermark column named in the Config: a timestamp, or an
// integer that only grows (a sequence, an auto-increment id). Each row
// becomes one event's JSON, handed to a Sink, which parses and checks it.
//
// # Watermark and overlap
//
// The position is the largest watermark delivered, saved through
// Checkpoints after the Sink has taken the rows. Every poll reads the rows
// whose watermark is at or above the checkpoint minus an overlap window,
// in watermark order, a page of BatchSize rows at a time.
//
// The overlap exists because a watermark is assigned when a row is
// written, not when its transaction commits. Transactions commit out of
// order: one that took the watermark t1 and commits after another that
// took t2 > t1 makes its row visible only after a poll has moved the
// checkpoint to t2. Reading from "checkpoint − overlap" picks the row up,
// as long as its transaction took less than the overlap to commit; without
// the window it would be skipped for good. Size the overlap to the longest
// transaction that writes the view's rows (minutes, not seconds); an
// overlap of zero is only safe if the writers commit in watermark order.
// The bound is inclusive for the same reason at a smaller scale: rows that
// share the checkpoint's watermark may not all have been delivered when a
// poll stopped between two pages.
//
// Rows re-read inside the window are not sent to the Sink again by the
// same Poller (it remembers their eids until they leave the window); after
// a restart, the core's de-duplication on eid absorbs them.
//
// The watermark column should be indexed: pages are ordered by it alone,
// and rows sharing one watermark are read together, so an index range scan
// serves every query.
//
// Like every adapter, the package imports neither the core nor the gateway;
// it declares what it needs from its user.
package dbviews

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Sink takes a batch of events, each one event's JSON.
type Sink interface {
	// Ingest returns nil once every event is durable or refused-and-recorded: the connector may then
	// commit/ack. An error means nothing may be acknowledged; the connector retries later.
	Ingest(ctx context.Context, events []json.RawMessage) error
}

// Checkpoints keeps each source's watermark across restarts.
type Checkpoints interface {
	// Checkpoint returns the saved value, or "" if there is none yet.
	Checkpoint(ctx context.Context, source string) (string, error)
	SaveCheckpoint(ctx context.Context, source, value string) error
}

// Config names the view and how to read it.
type Config struct {
	// Source names the checkpoint; empty means "dbviews/<driver>/<view>".
	Source string
	Driver string // "postgres", or "mysql" for MySQL and MariaDB
	// DSN is the connection string (postgres://… or a go-sql-driver DSN,
	// user:password@tcp(host:port)/db). It holds a secret: it is never
	// logged.
	DSN string
	// View and Watermark are identifiers, used quoted and exactly as
	// given: View is name or schema.name, Watermark a column of it. Each
	// part is letters, digits and _, not starting with a digit.
	View      string
	Watermark string
	// WatermarkType is "timestamp" (the default) or "integer".
	WatermarkType string
	// Overlap is the window behind the checkpoint that every poll reads
	// again, for a timestamp watermark; OverlapCount is the same for an
	// integer one. Zero means no window (see the package documentation).
	Overlap      time.Duration
	OverlapCount int64
	// BatchSize is the most rows read, and handed to the Sink, at once;
	// 0 means DefaultBatchSize.
	BatchSize int
	// Poll is the pause between polls once caught up; 0 means DefaultPoll.
	Poll time.Duration
}

// Defaults for the zero Config fields.
const (
	DefaultBatchSize = 1000
	DefaultPoll      = 2 * time.Second
)

// Watermark types.
const (
	Timestamp = "timestamp"
	Integer   = "integer"
)

// Options are the connector's dependencies and tuning; the zero value is usable.
type Options struct {
	Logger *slog.Logger // nil means slog.Default()
	// MinBackoff and MaxBackoff bound the wait after a failed poll; the
	// wait doubles with each consecutive failure. Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

var (
	// ErrConfig marks an unusable Config.
	ErrConfig = errors.New("dbviews: invalid config")
	// ErrCheckpoint marks a saved checkpoint that is not a watermark of
	// the configured type. Run stops on it rather than start over.
	ErrCheckpoint = errors.New("dbviews: unreadable checkpoint")
	// ErrWatermark marks a row whose watermark column is not of the
	// configured type.
	ErrWatermark = errors.New("dbviews: watermark of the wrong type")
)

// identRE is what a configured identifier may be: letters, digits and _,
// 63 bytes at most (PostgreSQL's limit; MySQL's is 64). Anything else,
// quotes and dots included, is refused before it gets near a query.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Poller reads one view.
type Poller struct {
	cfg    Config
	sink   Sink
	cps    Checkpoints
	opts   Options
	log    *slog.Logger
	db     *sql.DB
	dollar bool // PostgreSQL placeholders ($1) rather than MySQL's (?)
	// The queries: qAll pages from the start, qFrom from a watermark
	// on, qAfter from after one, qAt reads all rows of one watermark.
	qAll, qFrom, qAfter, qAt string

	mu     sync.Mutex // serializes polls
	loaded bool
	cp     mark // the checkpoint, once loaded
	// seen holds the eids this Poller delivered whose watermark is still
	// inside the overlap window, so re-reads of the window are not sent
	// to the Sink again.
	seen map[string]mark
}

// mark is a watermark value; ok is false for "none yet".
type mark struct {
	t  time.Time
	n  int64
	ok bool
}

// New checks cfg and returns a Poller. It does not connect; Close releases
// the database handle.
func New(cfg Config, sink Sink, cps Checkpoints, opts Options) (*Poller, error) {
	if cfg.WatermarkType == "" {
		cfg.WatermarkType = Timestamp
	}
	parts := strings.Split(cfg.View, ".")
	switch {
	case cfg.Driver != "postgres" && cfg.Driver != "mysql":
		return nil, fmt.Errorf("%w: driver must be postgres or mysql", ErrConfig)
	case cfg.DSN == "":
		return nil, fmt.Errorf("%w: dsn is required", ErrConfig)
	case len(parts) > 2 || !allIdents(parts):
		return nil, fmt.Errorf("%w: view must be name or schema.name, each letters, digits and _", ErrConfig)
	case !identRE.MatchString(cfg.Watermark):
		return nil, fmt.Errorf("%w: watermark must be a column name of letters, digits and _", ErrConfig)
	case cfg.WatermarkType != Timestamp && cfg.WatermarkType != Integer:
		return nil, fmt.Errorf("%w: watermark type must be timestamp or integer", ErrConfig)
	case cfg.Overlap < 0 || cfg.OverlapCount < 0:
		return nil, fmt.Errorf("%w: overlap must not be negative", ErrConfig)
	case cfg.BatchSize < 0 || cfg.Poll < 0:
		return nil, fmt.Errorf("%w: batch size and poll interval must not be negative", ErrConfig)
	case sink == nil || cps == nil:
		return nil, fmt.Errorf("%w: a sink and checkpoints are required", ErrConfig)
	}
	if cfg.Source == "" {
		cfg.Source = "dbviews/" + cfg.Driver + "/" + cfg.View
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
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

	p := &Poller{
		cfg: cfg, sink: sink, cps: cps, opts: opts,
		log:    log.With("connector", "dbviews", "source", cfg.Source),
		dollar: cfg.Driver == "postgres",
		seen:   make(map[string]mark),
	}
	var err error
	if p.db, err = open(cfg.Driver, cfg.DSN); err != nil {
		return nil, err
	}
	p.buildQueries(parts)
	return p, nil
}

func allIdents(parts []string) bool {
	for _, s := range parts {
		if !identRE.MatchString(s) {
			return false
		}
	}
	return true
}

// open returns a lazily connecting handle. Parse errors are reported
// without the DSN, which may hold a password.
func open(driver, dsn string) (*sql.DB, error) {
	if driver == "postgres" {
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: dsn is not a valid PostgreSQL connection string", ErrConfig)
		}
		return stdlib.OpenDB(*cc), nil
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: dsn is not a valid MySQL DSN", ErrConfig)
	}
	// Times in UTC both ways, whatever the server's zone: DATETIME has
	// no zone, and a watermark read must compare equal when sent back.
	mc.ParseTime = true
	mc.Loc = time.UTC
	if mc.Params == nil {
		mc.Params = make(map[string]string)
	}
	if _, ok := mc.Params["time_zone"]; !ok {
		mc.Params["time_zone"] = "'+00:00'"
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: dsn is not a valid MySQL DSN", ErrConfig)
	}
	return sql.OpenDB(conn), nil
}

// Columns the view must expose, in scan order.
var columns = []string{"eid", "event_date", "ext_brand_id", "user_ext_id", "event_type", "payload"}

func (p *Poller) quote(id string) string {
	if p.dollar {
		return `"` + id + `"`
	}
	return "`" + id + "`"
}

func (p *Poller) ph(i int) string {
	if p.dollar {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// buildQueries prepares the queries. Pages are ordered by the watermark
// alone, so that an index on it serves them without sorting; rows that
// share a watermark are handled by Poll. NULL watermarks are never read.
func (p *Poller) buildQueries(view []string) {
	var quoted []string
	for _, s := range view {
		quoted = append(quoted, p.quote(s))
	}
	cols := make([]string, 0, len(columns)+1)
	for _, c := range columns {
		cols = append(cols, p.quote(c))
	}
	wm := p.quote(p.cfg.Watermark)
	head := "SELECT " + strings.Join(cols, ", ") + ", " + wm +
		" FROM " + strings.Join(quoted, ".") + " WHERE " + wm + " IS NOT NULL"
	page := " ORDER BY " + wm + " LIMIT " + strconv.Itoa(p.cfg.BatchSize)
	p.qAll = head + page
	p.qFrom = head + " AND " + wm + " >= " + p.ph(1) + page
	p.qAfter = head + " AND " + wm + " > " + p.ph(1) + page
	p.qAt = head + " AND " + wm + " = " + p.ph(1)
}

// Close releases the database handle. Call it after Run has returned.
func (p *Poller) Close() error { return p.db.Close() }

// Run polls until ctx ends, pausing Config.Poll once caught up and backing
// off exponentially after a failure (the database's connections are
// re-established by database/sql). It returns nil when ctx ends, and an
// error only for a saved checkpoint it cannot read (ErrCheckpoint).
func (p *Poller) Run(ctx context.Context) error {
	failures := 0
	for {
		_, err := p.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := p.cfg.Poll
		if err != nil {
			if errors.Is(err, ErrCheckpoint) {
				return err
			}
			failures++
			wait = backoff(p.opts.MinBackoff, p.opts.MaxBackoff, failures)
			p.log.Warn("poll failed", "retry_in", wait, "err", err)
		} else {
			failures = 0
		}
		sleep(ctx, wait)
	}
}

// Poll reads and delivers rows until it has caught up, saving the
// checkpoint after each batch the Sink took. It returns how many events
// went to the Sink. After an error the rows not yet taken are read again
// by the next poll.
func (p *Poller) Poll(ctx context.Context) (delivered int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		s, err := p.cps.Checkpoint(ctx, p.cfg.Source)
		if err != nil {
			return 0, fmt.Errorf("load checkpoint: %w", err)
		}
		if p.cp, err = p.parse(s); err != nil {
			return 0, err
		}
		p.loaded = true
	}
	deliver := func(rs []row) error {
		n, err := p.deliver(ctx, rs)
		delivered += n
		return err
	}

	query, args := p.qAll, []any(nil)
	if p.cp.ok {
		query, args = p.qFrom, []any{p.arg(p.lower())}
	}
	for {
		var n int
		var first, last mark
		err := p.scan(ctx, query, args, func(rs []row) error {
			if n == 0 {
				first = rs[0].mark
			}
			n += len(rs)
			last = rs[len(rs)-1].mark
			return deliver(rs)
		})
		if err != nil {
			return delivered, err
		}
		if n < p.cfg.BatchSize {
			break
		}
		if p.after(last, first) {
			// Go on from the page's last watermark: its rows are read
			// again (and skipped as seen), since more may share it.
			query, args = p.qFrom, []any{p.arg(last)}
			continue
		}
		// One watermark fills a whole page: read all its rows, then
		// go on after it.
		if err := p.scan(ctx, p.qAt, []any{p.arg(last)}, deliver); err != nil {
			return delivered, err
		}
		query, args = p.qAfter, []any{p.arg(last)}
	}
	// Forget what the next poll will not read again.
	lower := p.lower()
	for k, m := range p.seen {
		if p.after(lower, m) {
			delete(p.seen, k)
		}
	}
	if delivered > 0 {
		p.log.Debug("delivered", "events", delivered)
	}
	return delivered, nil
}

// deliver hands the rows not seen before to the Sink, then moves the
// checkpoint to the last row's watermark if that is later.
func (p *Poller) deliver(ctx context.Context, rs []row) (int, error) {
	var events []json.RawMessage
	for _, r := range rs {
		if _, ok := p.seen[p.key(r)]; !ok {
			events = append(events, r.event)
		}
	}
	if len(events) > 0 {
		if err := p.sink.Ingest(ctx, events); err != nil {
			return 0, fmt.Errorf("ingest: %w", err)
		}
	}
	for _, r := range rs {
		p.seen[p.key(r)] = r.mark
	}
	if last := rs[len(rs)-1].mark; p.after(last, p.cp) {
		if err := p.cps.SaveCheckpoint(ctx, p.cfg.Source, p.format(last)); err != nil {
			return len(events), fmt.Errorf("save checkpoint: %w", err)
		}
		p.cp = last
	}
	return len(events), nil
}

// key identifies a row in seen: its eid, or, for a row without one (which
// the core will refuse), its watermark, so that it is not refused again at
// every poll while it stays inside the window.
func (p *Poller) key(r row) string {
	if r.eid != "" {
		return r.eid
	}
	return "\x00" + p.format(r.mark)
}

// row is one view row as an event.
type row struct {
	eid   string
	mark  mark
	event json.RawMessage
}

// scan runs query and passes its rows to fn in batches of at most
// BatchSize, in order.
func (p *Poller) scan(ctx context.Context, query string, args []any, fn func([]row) error) error {
	rows, err := p.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query %s: %w", p.cfg.View, err)
	}
	defer rows.Close()
	var batch []row
	for rows.Next() {
		var (
			eid, brand, user, typ, payload sql.NullString
			date, wm                       any
		)
		if err := rows.Scan(&eid, &date, &brand, &user, &typ, &payload, &wm); err != nil {
			return fmt.Errorf("scan %s: %w", p.cfg.View, err)
		}
		m, err := p.toMark(wm)
		if err != nil {
			return err
		}
		ev, err := json.Marshal(struct {
			EID       string          `json:"eid"`
			EventDate json.RawMessage `json:"event_date"`
			Brand     string          `json:"ext_brand_id"`
			User      string          `json:"user_ext_id"`
			Type      string          `json:"event_type"`
			Payload   json.RawMessage `json:"payload,omitempty"`
		}{eid.String, eventDate(date), brand.String, user.String, typ.String, payloadJSON(payload)})
		if err != nil {
			return fmt.Errorf("encode a row of %s: %w", p.cfg.View, err)
		}
		batch = append(batch, row{eid: eid.String, mark: m, event: ev})
		if len(batch) == p.cfg.BatchSize {
			if err := fn(batch); err != nil {
				return err
			}
			batch = nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p.cfg.View, err)
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}

// eventDate renders the event_date column as epoch milliseconds. A value
// that is not a number or a time is passed on as a JSON string (or null),
// so that the core refuses the event as invalid and records it, instead
// of the row vanishing here.
func eventDate(v any) json.RawMessage {
	var n int64
	switch v := v.(type) {
	case int64:
		n = v
	case time.Time:
		n = v.UnixMilli()
	case float64:
		if v != float64(int64(v)) {
			b, _ := json.Marshal(strconv.FormatFloat(v, 'f', -1, 64))
			return b
		}
		n = int64(v)
	case []byte:
		return dateText(string(v))
	case string:
		return dateText(v)
	default:
		return json.RawMessage("null")
	}
	return strconv.AppendInt(nil, n, 10)
}

// dateText is a textual event_date: digits are epoch milliseconds.
func dateText(s string) json.RawMessage {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		b, _ := json.Marshal(s)
		return b
	}
	return strconv.AppendInt(nil, n, 10)
}

// payloadJSON passes the payload column on as JSON. Text that is not JSON
// becomes a JSON string, which the core refuses as invalid and records.
func payloadJSON(s sql.NullString) json.RawMessage {
	if !s.Valid || s.String == "" {
		return nil
	}
	if json.Valid([]byte(s.String)) {
		return json.RawMessage(s.String)
	}
	b, _ := json.Marshal(s.String)
	return b
}

func (p *Poller) toMark(v any) (mark, error) {
	if p.cfg.WatermarkType == Timestamp {
		if t, ok := v.(time.Time); ok {
			return mark{t: t.UTC(), ok: true}, nil
		}
		return mark{}, fmt.Errorf("%w: %s is not a timestamp", ErrWatermark, p.cfg.Watermark)
	}
	switch v := v.(type) {
	case int64:
		return mark{n: v, ok: true}, nil
	case []byte:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return mark{n: n, ok: true}, nil
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return mark{n: n, ok: true}, nil
		}
	}
	return mark{}, fmt.Errorf("%w: %s is not an integer", ErrWatermark, p.cfg.Watermark)
}

// lower is the checkpoint minus the overlap.
func (p *Poller) lower() mark {
	m := p.cp
	m.t = m.t.Add(-p.cfg.Overlap)
	m.n -= p.cfg.OverlapCount
	return m
}

// after reports whether a is later than b; any mark is later than none.
func (p *Poller) after(a, b mark) bool {
	switch {
	case !b.ok:
		return a.ok
	case p.cfg.WatermarkType == Timestamp:
		return a.t.After(b.t)
	}
	return a.n > b.n
}

func (p *Poller) arg(m mark) any {
	if p.cfg.WatermarkType == Timestamp {
		return m.t
	}
	return m.n
}

func (p *Poller) format(m mark) string {
	if p.cfg.WatermarkType == Timestamp {
		return m.t.UTC().Format(time.RFC3339Nano)
	}
	return strconv.FormatInt(m.n, 10)
}

func (p *Poller) parse(s string) (mark, error) {
	if s == "" {
		return mark{}, nil
	}
	if p.cfg.WatermarkType == Timestamp {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return mark{}, fmt.Errorf("%w: %s is not an RFC 3339 time", ErrCheckpoint, p.cfg.Source)
		}
		return mark{t: t.UTC(), ok: true}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return mark{}, fmt.Errorf("%w: %s is not an integer", ErrCheckpoint, p.cfg.Source)
	}
	return mark{n: n, ok: true}, nil
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
