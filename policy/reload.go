package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrReload means a new bundle was refused; the previous one stays in force.
var ErrReload = errors.New("policy: reload refused, previous bundle kept")

// ReloadStats counts reloads since New.
type ReloadStats struct {
	Reloads  uint64 // bundles swapped in
	Failures uint64 // bundles refused (the previous one kept)
}

// Reload compiles bundle and, if it compiles, makes it the policy of every
// decision that starts afterwards; decisions already running finish with the
// bundle they started with, and each decision names the revision that made
// it. A bundle that does not load or compile changes nothing: Reload counts
// the failure, calls Options.OnReloadError, and returns an error wrapping
// ErrReload. Options.Data applies to the new bundle as to the first. A
// bundle with the revision already in force changes nothing.
func (e *Evaluator) Reload(ctx context.Context, bundle fs.FS) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	c, err := compile(ctx, bundle, e.opts.Data)
	if err != nil {
		return e.refuse(err)
	}
	if c.revision == e.cur.Load().revision {
		return nil // the same policy: nothing to swap
	}
	e.cur.Store(c)
	e.reloads.Add(1)
	return nil
}

// ReloadFrom reloads the bundle at path, a directory or a signed tarball
// (verified with Options.BundleKeys); see OpenBundle and Reload.
func (e *Evaluator) ReloadFrom(ctx context.Context, path string) error {
	fsys, err := OpenBundle(path, e.opts.BundleKeys...)
	if err != nil {
		return e.refuse(err)
	}
	return e.Reload(ctx, fsys)
}

// ReloadStats reports how many reloads succeeded and failed.
func (e *Evaluator) ReloadStats() ReloadStats {
	return ReloadStats{Reloads: e.reloads.Load(), Failures: e.failures.Load()}
}

func (e *Evaluator) refuse(err error) error {
	err = fmt.Errorf("%w: %w", ErrReload, err)
	e.failures.Add(1)
	if f := e.opts.OnReloadError; f != nil {
		f(err)
	}
	return err
}

// Watch loads the bundle at path (a directory or a signed tarball), then
// polls it every interval and reloads it when it changes, until ctx is
// done; it then returns ctx's error.
//
// A change is seen by the names, sizes and modification times of the files.
// A changed bundle that fails to load is reported once, through
// Options.OnReloadError, and tried again at the next change; so is a path
// that cannot be read. Deploy a new bundle by renaming it into place, so
// that Watch never sees half of one (if it does, the half fails to compile
// and the old bundle stays until the rest arrives).
func (e *Evaluator) Watch(ctx context.Context, path string, interval time.Duration) error {
	last, lastErr := fingerprint(path)
	if lastErr == nil {
		e.ReloadFrom(ctx, path) // a no-op if it is the bundle in force
	} else {
		e.refuse(lastErr)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		fp, err := fingerprint(path)
		if err != nil {
			if lastErr == nil || lastErr.Error() != err.Error() {
				e.refuse(err)
			}
			lastErr = err
			continue
		}
		lastErr = nil
		if fp == last {
			continue
		}
		last = fp
		e.ReloadFrom(ctx, path) // a failure is counted and reported by the hook
	}
}

// fingerprint summarises what Watch needs to notice a change at path: for
// every file, its name, size and modification time.
func fingerprint(path string) (string, error) {
	h := sha256.New()
	add := func(name string, fi fs.FileInfo) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(fi.Size())))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(fi.ModTime().UnixNano())))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("policy: watch: %w", err)
	}
	if !fi.IsDir() {
		add(".", fi)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	err = filepath.WalkDir(path, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		add(name, fi)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("policy: watch: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
