package smpp

import (
	"unicode/utf16"
)

// Data coding schemes the client sends (SMPP 3.4 §5.2.19).
const (
	// codingDefault is "SMSC default alphabet", which SMSCs take to be the
	// GSM 03.38 default alphabet, one septet per octet (see encodeGSM).
	codingDefault byte = 0x00
	// codingUCS2 is ISO/IEC 10646 UCS-2, sent as UTF-16BE so that
	// characters outside the BMP survive as surrogate pairs.
	codingUCS2 byte = 0x08
)

// Segment limits (3GPP TS 23.040 §9.2.3.24.1): 140 octets of user data,
// less 6 octets of concatenation header when the message takes several
// parts.
const (
	gsmSingle  = 160 // septets
	gsmPart    = 153 // septets, leaving room for the header and fill bits
	ucs2Single = 70  // UTF-16 code units
	ucs2Part   = 67  // UTF-16 code units
	// maxParts is what an 8-bit concatenation reference can number.
	maxParts = 255
)

const gsmEscape = 0x1B

// gsmSeptet returns the septet for r in the default alphabet (escaped
// reports a character of the extension table, sent as 0x1B and the
// septet), or false if r is in neither. A switch rather than a table keeps
// the package free of mutable state and costs nothing for ASCII.
func gsmSeptet(r rune) (septet byte, escaped, ok bool) {
	switch {
	case 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z', '0' <= r && r <= '9':
		return byte(r), false, true
	}
	switch r {
	case ' ', '!', '"', '#', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
		':', ';', '<', '=', '>', '?', '\n', '\r':
		return byte(r), false, true
	case '@':
		return 0x00, false, true
	case '£':
		return 0x01, false, true
	case '$':
		return 0x02, false, true
	case '¥':
		return 0x03, false, true
	case 'è':
		return 0x04, false, true
	case 'é':
		return 0x05, false, true
	case 'ù':
		return 0x06, false, true
	case 'ì':
		return 0x07, false, true
	case 'ò':
		return 0x08, false, true
	case 'Ç':
		return 0x09, false, true
	case 'Ø':
		return 0x0B, false, true
	case 'ø':
		return 0x0C, false, true
	case 'Å':
		return 0x0E, false, true
	case 'å':
		return 0x0F, false, true
	case 'Δ':
		return 0x10, false, true
	case '_':
		return 0x11, false, true
	case 'Φ':
		return 0x12, false, true
	case 'Γ':
		return 0x13, false, true
	case 'Λ':
		return 0x14, false, true
	case 'Ω':
		return 0x15, false, true
	case 'Π':
		return 0x16, false, true
	case 'Ψ':
		return 0x17, false, true
	case 'Σ':
		return 0x18, false, true
	case 'Θ':
		return 0x19, false, true
	case 'Ξ':
		return 0x1A, false, true
	case 'Æ':
		return 0x1C, false, true
	case 'æ':
		return 0x1D, false, true
	case 'ß':
		return 0x1E, false, true
	case 'É':
		return 0x1F, false, true
	case '¤':
		return 0x24, false, true
	case '¡':
		return 0x40, false, true
	case 'Ä':
		return 0x5B, false, true
	case 'Ö':
		return 0x5C, false, true
	case 'Ñ':
		return 0x5D, false, true
	case 'Ü':
		return 0x5E, false, true
	case '§':
		return 0x5F, false, true
	case '¿':
		return 0x60, false, true
	case 'ä':
		return 0x7B, false, true
	case 'ö':
		return 0x7C, false, true
	case 'ñ':
		return 0x7D, false, true
	case 'ü':
		return 0x7E, false, true
	case 'à':
		return 0x7F, false, true
	// The default extension table (3GPP TS 23.038 §6.2.1.1).
	case '\f':
		return 0x0A, true, true
	case '^':
		return 0x14, true, true
	case '{':
		return 0x28, true, true
	case '}':
		return 0x29, true, true
	case '\\':
		return 0x2F, true, true
	case '[':
		return 0x3C, true, true
	case '~':
		return 0x3D, true, true
	case ']':
		return 0x3E, true, true
	case '|':
		return 0x40, true, true
	case '€':
		return 0x65, true, true
	}
	return 0, false, false
}

// encodeGSM returns s in the GSM 03.38 default alphabet with its extension
// table, one septet per octet, or false if a character of s is in neither.
//
// Septets are sent unpacked: with data_coding 0 an SMSC expects one septet
// in each octet of short_message and packs them itself for the air
// interface. Packed septets are what a handset sees, not what an ESME
// submits, and few SMSCs accept them.
func encodeGSM(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s)+8)
	for _, r := range s {
		c, esc, ok := gsmSeptet(r)
		if !ok {
			return nil, false
		}
		if esc {
			out = append(out, gsmEscape)
		}
		out = append(out, c)
	}
	return out, true
}

// encodeUCS2 returns s as UTF-16BE code units.
func encodeUCS2(s string) []byte {
	units := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(units))
	for _, u := range units {
		out = append(out, byte(u>>8), byte(u))
	}
	return out
}

// segmented is a body ready for submit_sm: its data coding and the user
// data of each part, without the concatenation header.
type segmented struct {
	dataCoding byte
	parts      [][]byte
}

// segment chooses the coding for body (GSM 7-bit when every character
// fits, UCS-2 otherwise) and splits it into parts that each fit one SMS.
// A split never falls between an escape and the septet it introduces, nor
// inside a surrogate pair, so every part decodes on its own.
func segment(body string) segmented {
	if sept, ok := encodeGSM(body); ok {
		if len(sept) <= gsmSingle {
			return segmented{dataCoding: codingDefault, parts: [][]byte{sept}}
		}
		return segmented{dataCoding: codingDefault, parts: split(sept, gsmPart, 1, func(b []byte) bool {
			return b[len(b)-1] == gsmEscape
		})}
	}
	ucs := encodeUCS2(body)
	if len(ucs) <= 2*ucs2Single {
		return segmented{dataCoding: codingUCS2, parts: [][]byte{ucs}}
	}
	return segmented{dataCoding: codingUCS2, parts: split(ucs, 2*ucs2Part, 2, func(b []byte) bool {
		u := uint16(b[len(b)-2])<<8 | uint16(b[len(b)-1])
		return u >= 0xD800 && u < 0xDC00 // a high surrogate: its pair follows
	})}
}

// split cuts b into parts of at most limit octets, on multiples of unit
// octets, moving a cut back by one unit where cutsPair says the part would
// end inside a two-unit sequence.
func split(b []byte, limit, unit int, cutsPair func(part []byte) bool) [][]byte {
	var parts [][]byte
	for len(b) > 0 {
		n := min(limit, len(b))
		if n < len(b) && cutsPair(b[:n]) {
			n -= unit
		}
		parts = append(parts, b[:n:n])
		b = b[n:]
	}
	return parts
}

// udh returns the 8-bit-reference concatenation header (IE 0x00) for part
// seq (from 1) of total.
func udh(ref, total, seq byte) []byte {
	return []byte{0x05, 0x00, 0x03, ref, total, seq}
}
