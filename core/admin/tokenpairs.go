package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/tokenmap"
)

// The token pairs of a planned re-tokenisation (docs/key-rotation.md §5):
// the gateway gives every address a new token and signs the map old → new
// with its signing key; the core checks the signature against the gateway
// keys it pins (core.yaml gateway_keys) and rewrites the tokens its store
// holds.

// ErrNoGatewayKeys: the core pins no gateway key, so it can verify no pairs
// file.
var ErrNoGatewayKeys = errors.New("admin: no gateway_keys configured: the core cannot verify a token pairs file")

// SetGatewayKeys sets the gateway signing keys a token pairs file must be
// signed by, one of them.
func (a *Admin) SetGatewayKeys(keys []*envelope.VerifyingKey) {
	a.gatewayKeys = keys
}

// TokenPairs is what applying a token pairs file did.
type TokenPairs struct {
	Label   string `json:"label"`
	KeyID   string `json:"kid"`    // the gateway key that signed the file
	SHA256  string `json:"sha256"` // of the pairs file
	Pairs   int    `json:"pairs"`
	Players int    `json:"players"` // players whose properties changed
	Values  int    `json:"values"`  // token values rewritten
}

// ApplyTokenPairs verifies a pairs file (data) against its signature file
// (sig) with the pinned gateway keys, then rewrites every player property
// of label that holds an old token into the new one (store.ApplyTokenPairs).
// It refuses the whole file (ErrInvalid) on a bad or unknown signature, a
// malformed line or pair, or a pair of another tenant than label: the
// gateway's tenant is the core's label. Applying a file again changes
// only what is left, so a later file may go over an earlier one, and a
// pass that failed may simply run again.
func (a *Admin) ApplyTokenPairs(ctx context.Context, label string, data, sig []byte) (TokenPairs, error) {
	if _, err := a.Label(ctx, label); err != nil {
		return TokenPairs{}, err
	}
	if len(a.gatewayKeys) == 0 {
		return TokenPairs{}, ErrNoGatewayKeys
	}
	f, err := tokenmap.Open(data, sig, a.gatewayKeys)
	if err != nil {
		return TokenPairs{}, fmt.Errorf("%w: token pairs refused: %w", ErrInvalid, err)
	}
	pairs, err := f.Map(label)
	if err != nil {
		return TokenPairs{}, fmt.Errorf("%w: token pairs refused: %w", ErrInvalid, err)
	}
	res := TokenPairs{Label: label, KeyID: string(f.KeyID), SHA256: f.SHA256, Pairs: len(pairs)}
	res.Players, res.Values, err = a.store.ApplyTokenPairs(ctx, label, pairs)
	if err != nil {
		return res, fmt.Errorf("apply token pairs (%d players done; applying again is safe): %w", res.Players, storeErr("label", err))
	}
	return res, nil
}

// Limits of the token-pairs route. A pairs line is about 130 bytes: 256
// MiB is two million addresses.
const (
	MaxTokenPairsFile = 256 << 20
	maxTokenPairsSig  = 64 << 10
	// tokenPairsTimeout replaces the admin server's short deadlines for
	// this route: a large file takes a while to upload and apply.
	tokenPairsTimeout = 30 * time.Minute
)

// tokenPairs is POST /v1/labels/{label}/token-pairs: a multipart/form-data
// body with the part "pairs" (the pairs file, NDJSON) and the part "sig"
// (its .sig file), each once, as
//
//	curl -H "Authorization: Bearer $TOKEN" -F pairs=@pairs.ndjson -F sig=@pairs.ndjson.sig \
//	  http://127.0.0.1:8081/v1/labels/acme/token-pairs
//
// It answers 200 with TokenPairs.
func (h *handler) tokenPairs(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(tokenPairsTimeout)) // not supported by every writer: the server's then stand
	rc.SetWriteDeadline(time.Now().Add(tokenPairsTimeout))

	r.Body = http.MaxBytesReader(w, r.Body, MaxTokenPairsFile+maxTokenPairsSig+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, `want a multipart/form-data body with the parts "pairs" and "sig"`)
		return
	}
	parts := map[string][]byte{}
	limits := map[string]int64{"pairs": MaxTokenPairsFile, "sig": maxTokenPairsSig}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			h.bodyError(w, err)
			return
		}
		name := p.FormName()
		limit, known := limits[name]
		if _, dup := parts[name]; !known || dup {
			writeError(w, http.StatusBadRequest, CodeInvalid, `want the parts "pairs" and "sig", each once`)
			return
		}
		b, err := io.ReadAll(io.LimitReader(p, limit+1))
		if err != nil {
			h.bodyError(w, err)
			return
		}
		if int64(len(b)) > limit {
			writeError(w, http.StatusRequestEntityTooLarge, CodeInvalid, fmt.Sprintf("part %s: at most %d bytes", name, limit))
			return
		}
		parts[name] = b
	}
	if parts["pairs"] == nil || parts["sig"] == nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, `want the parts "pairs" and "sig", each once`)
		return
	}
	res, err := h.a.ApplyTokenPairs(r.Context(), r.PathValue("label"), parts["pairs"], parts["sig"])
	if errors.Is(err, ErrNoGatewayKeys) {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "no gateway_keys configured: the core cannot verify a token pairs file")
		return
	}
	if err == nil {
		h.log.Info("token pairs applied", "label", res.Label, "kid", res.KeyID, "pairs", res.Pairs, "players", res.Players, "values", res.Values)
	}
	h.answer(w, r, http.StatusOK, res, err)
}

// bodyError answers a body that could not be read.
func (h *handler) bodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, CodeInvalid, "body too large")
		return
	}
	writeError(w, http.StatusBadRequest, CodeInvalid, "unreadable multipart body")
}
