package smtp

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"golang.org/x/net/publicsuffix"
)

// MinRSABits is the smallest RSA DKIM key accepted. RFC 8301 §3.2 sets
// 1024 as the floor for verifiers; mailbox providers now expect 2048.
const MinRSABits = 2048

// DKIM is one brand's signing identity (RFC 6376): the key published at
// Selector._domainkey.Domain and the domain that takes responsibility for
// the message. The gateway picks one per brand and sets it on each Message.
//
// A DKIM value is read, never changed, by Send, so one value may be shared
// by concurrent Sends.
type DKIM struct {
	// Domain is the signing domain (d=). It must be the From address's
	// domain or a parent of it (DMARC alignment), and not a public suffix.
	Domain string
	// Selector (s=) names the key under Domain, e.g. "bp2026a", so keys
	// can be rotated by publishing a new selector first.
	Selector string
	// Signer holds the private key: an RSA key of at least MinRSABits
	// (rsa-sha256) or an Ed25519 key (ed25519-sha256, RFC 8463). An HSM or
	// KMS key works too, if its Public() is one of those.
	Signer crypto.Signer
	// Headers names the header fields to sign; nil means From, Reply-To,
	// To, Subject, Date, Message-ID, MIME-Version, Content-Type,
	// List-Unsubscribe, List-Unsubscribe-Post. From, List-Unsubscribe and
	// List-Unsubscribe-Post are signed whatever the list says (RFC 6376
	// §5.4, RFC 8058 §3). Each is signed once more than it occurs
	// ("oversigned"), so a field added on the way, a second From or a
	// Reply-To where there was none, breaks the signature.
	Headers []string
}

// defaultDKIMHeaders are the fields a reader trusts or a mail client acts on.
var defaultDKIMHeaders = []string{
	"From", "Reply-To", "To", "Subject", "Date", "Message-ID",
	"MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// requiredDKIMHeaders are signed even if Headers leaves them out.
var requiredDKIMHeaders = []string{"From", "List-Unsubscribe", "List-Unsubscribe-Post"}

// Validate reports DKIM settings that could not produce a signature a
// receiver would accept. Errors wrap ErrConfig.
func (d *DKIM) Validate() error {
	if !isHostname(d.Domain) || strings.Count(d.Domain, ".") == 0 {
		return fmt.Errorf("smtp: DKIM: domain is not a host name: %w", ErrConfig)
	}
	if suffix, _ := publicsuffix.PublicSuffix(strings.ToLower(d.Domain)); suffix == strings.ToLower(d.Domain) {
		return fmt.Errorf("smtp: DKIM: domain %s is a public suffix: %w", d.Domain, ErrConfig)
	}
	if !isHostname(d.Selector) {
		return fmt.Errorf("smtp: DKIM: selector is not a DNS name: %w", ErrConfig)
	}
	if _, err := keyAlgorithm(d.Signer); err != nil {
		return err
	}
	for _, h := range d.Headers {
		if !isFieldName(h) {
			return fmt.Errorf("smtp: DKIM: header list holds an invalid field name: %w", ErrConfig)
		}
		if strings.EqualFold(h, "DKIM-Signature") {
			return fmt.Errorf("smtp: DKIM: header list holds DKIM-Signature: %w", ErrConfig)
		}
	}
	return nil
}

// TXTRecord returns the DNS name and the TXT record that publish d's public
// key, for the operator to add to the brand's zone.
func (d *DKIM) TXTRecord() (name, value string, err error) {
	algo, err := keyAlgorithm(d.Signer)
	if err != nil {
		return "", "", err
	}
	var key []byte
	switch pub := d.Signer.Public().(type) {
	case *rsa.PublicKey:
		if key, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return "", "", fmt.Errorf("smtp: DKIM: %w", err)
		}
	case ed25519.PublicKey:
		key = pub // RFC 8463 §4.2: the raw key, not SubjectPublicKeyInfo
	}
	return d.Selector + "._domainkey." + d.Domain,
		"v=DKIM1; k=" + algo + "; p=" + base64.StdEncoding.EncodeToString(key), nil
}

// keyAlgorithm returns the DKIM key type (k=) of s, refusing short RSA keys
// and key types DKIM does not define.
func keyAlgorithm(s crypto.Signer) (string, error) {
	if s == nil {
		return "", fmt.Errorf("smtp: DKIM: no signing key: %w", ErrConfig)
	}
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("smtp: DKIM: RSA key of %d bits, want at least %d: %w", pub.N.BitLen(), MinRSABits, ErrConfig)
		}
		return "rsa", nil
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return "", fmt.Errorf("smtp: DKIM: malformed Ed25519 key: %w", ErrConfig)
		}
		return "ed25519", nil
	default:
		return "", fmt.Errorf("smtp: DKIM: %T keys cannot sign DKIM; use RSA or Ed25519: %w", pub, ErrConfig)
	}
}

// LoadDKIMKey reads an unencrypted private key from PEM: PKCS#8 ("PRIVATE
// KEY", RSA or Ed25519) or PKCS#1 ("RSA PRIVATE KEY"), as openssl genpkey
// and opendkim-genkey write them. RSA keys shorter than MinRSABits are
// refused. Errors never quote the file's content.
func LoadDKIMKey(pemBytes []byte) (crypto.Signer, error) {
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("smtp: DKIM key: no PEM private key found: %w", ErrConfig)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			if block.Headers["Proc-Type"] != "" {
				return nil, fmt.Errorf("smtp: DKIM key: encrypted PEM is not supported: %w", ErrConfig)
			}
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("smtp: DKIM key: encrypted PEM is not supported: %w", ErrConfig)
		default:
			continue // a certificate or a public key next to the private key
		}
		if err != nil {
			// x509's errors describe the structure, not the key, but say
			// only what kind of block failed.
			return nil, fmt.Errorf("smtp: DKIM key: cannot parse %s block: %w", block.Type, ErrConfig)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("smtp: DKIM key: %T is not a signing key: %w", key, ErrConfig)
		}
		if _, err := keyAlgorithm(signer); err != nil {
			return nil, err
		}
		return signer, nil
	}
}

// aligned reports whether fromDomain is domain or a subdomain of it. Both
// are ASCII host names (see isMailbox and Validate).
func aligned(fromDomain, domain string) bool {
	f, d := asciiLower(fromDomain), asciiLower(strings.TrimSuffix(domain, "."))
	return f == d || strings.HasSuffix(f, "."+d)
}

// headerKeys returns the h= list: each field to sign, as many times as it
// occurs in the message plus one.
func (d *DKIM) headerKeys(fields [][2]string) []string {
	names := d.Headers
	if names == nil {
		names = defaultDKIMHeaders
	}
	names = append(names[:len(names):len(names)], requiredDKIMHeaders...)
	count := make(map[string]int, len(fields))
	for _, f := range fields {
		count[asciiLower(f[0])]++
	}
	seen := make(map[string]bool, len(names))
	var keys []string
	for _, n := range names {
		l := asciiLower(n)
		if seen[l] {
			continue
		}
		seen[l] = true
		for range count[l] + 1 {
			keys = append(keys, n)
		}
	}
	return keys
}

// errDKIMSign marks a failure of the signer itself (an HSM or KMS that is
// unavailable), which a later attempt may not repeat.
var errDKIMSign = errors.New("DKIM signing failed")

// sign returns msg with a DKIM-Signature field prepended, using relaxed
// header and body canonicalisation (RFC 6376 §3.4.2, §3.4.4), which
// survives the re-folding and trailing-space trimming relays do.
func (d *DKIM) sign(msg []byte, fields [][2]string) ([]byte, error) {
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 d.Domain,
		Selector:               d.Selector,
		Signer:                 d.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             d.headerKeys(fields),
	})
	if err != nil { // Validate has already checked what NewSigner checks
		return nil, fmt.Errorf("smtp: DKIM: %w: %w", err, ErrConfig)
	}
	if _, err := s.Write(msg); err != nil {
		s.Close()
		return nil, fmt.Errorf("smtp: DKIM: %w: %w (%w)", errDKIMSign, err, ErrTemporary)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("smtp: DKIM: %w: %w (%w)", errDKIMSign, err, ErrTemporary)
	}
	sig := s.Signature()
	var b bytes.Buffer
	b.Grow(len(sig) + len(msg))
	b.WriteString(sig)
	b.Write(msg)
	return b.Bytes(), nil
}

// isHostname reports whether s is dot-separated LDH labels.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// isFieldName reports whether s is an RFC 5322 field name.
func isFieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
