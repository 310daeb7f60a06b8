package firewall

import (
	"strconv"
	"testing"
)

// Every value here is fake: @example.com / .test addresses, +1555 and
// Ofcom drama numbers, card-network test numbers, example IBANs.
func TestDetect(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// emails
		{"plain email", "canary@example.com", ReasonEmail},
		{"email in text", "write to Canary.McTest+promo@sub.mail.test today", ReasonEmail},
		{"upper-case email", "CANARY@EXAMPLE.COM", ReasonEmail},
		{"non-ASCII local part", "Élodie@example.com", ReasonEmail},
		{"IDN domain", "canary@exämple.de", ReasonEmail},
		{"punycode label", "canary@xn--e1afmkfd.test", ReasonEmail},
		{"email ending a sentence", "mail canary@example.com.", ReasonEmail},
		{"mailto", "mailto:canary@example.com", ReasonEmail},
		{"bracketed obfuscation", "canary (at) example (dot) com", ReasonEmail},
		{"square obfuscation", "canary[AT]example[DOT]com", ReasonEmail},
		{"at obfuscation only", "canary{at}example.com", ReasonEmail},
		{"no TLD", "canary@localhost", ""},
		{"numeric TLD", "pkg@1.2.3", ""},
		{"handle", "@canary_mctest", ""},
		{"retina image", "icon@2x.png", ""},
		{"one-letter TLD", "a@b.c", ""},
		{"lone at", "meet @ 5", ""},
		{"empty local", ".@example.com", ""},
		{"plain words at dot", "meet at the bar dot com", ""},
		{"dot marker without at", "example (dot) com", ""},

		// cards (test numbers of the card networks)
		{"visa", "4111111111111111", ReasonCard},
		{"visa spaced", "4111 1111 1111 1111", ReasonCard},
		{"visa dashed", "4111-1111-1111-1111", ReasonCard},
		{"visa in text", "paid with 4111 1111 1111 1111 today", ReasonCard},
		{"visa after a short group", "ref 12 4111 1111 1111 1111", ReasonCard},
		{"retired visa 13", "4222222222222", ""},
		{"maestro 13", "5000000000005", ReasonCard},
		{"mastercard", "5555555555554444", ReasonCard},
		{"mastercard 2-series", "2223003122003222", ReasonCard},
		{"amex", "378282246310005", ReasonCard},
		{"amex grouped", "3782 822463 10005", ReasonCard},
		{"discover", "6011111111111117", ReasonCard},
		{"diners", "30569309025904", ReasonCard},
		{"jcb", "3530111333300000", ReasonCard},
		{"unionpay 19", "6212345678901265", ReasonCard},
		{"Luhn fails", "4111111111111112", ""},
		{"mixed separators", "4111 1111-1111 1111", ""},
		{"odd grouping", "41 111111 1111 1111", ""},
		{"inside an identifier", "tx4111111111111111", ""},
		{"followed by a letter", "4111111111111111x", ""},
		{"visa prefix, wrong length", "41111111111111111", ""},
		{"amex prefix, wrong length", "3782822463100053", ""},

		// epoch timestamps pass Luhn one time in ten; never cards
		{"epoch ms passing Luhn", "1718000000006", ""},
		{"epoch us passing Luhn", "1718000000000001", ""},
		{"epoch ns passing Luhn", "1718000000000000006", ""},
		{"year-2100 sentinel passing Luhn", "4102444800007", ""},

		// IBANs (the registry's examples)
		{"iban GB", "GB82WEST12345698765432", ReasonIBAN},
		{"iban GB printed", "GB82 WEST 1234 5698 7654 32", ReasonIBAN},
		{"iban lower case", "gb82west12345698765432", ReasonIBAN},
		{"iban DE", "DE89370400440532013000", ReasonIBAN},
		{"iban FR", "FR1420041010050500013M02606", ReasonIBAN},
		{"iban NO", "NO9386011117947", ReasonIBAN},
		{"iban in text", "pay to DE89 3704 0044 0532 0130 00, thanks", ReasonIBAN},
		{"iban bad check", "GB82WEST12345698765433", ""},
		{"iban too short", "GB82WEST1234569876543", ""},
		{"iban runs on", "GB82WEST123456987654321", ""},
		{"unknown country", "ZZ82WEST12345698765432", ""},
		{"iban inside a word", "xGB82WEST12345698765432", ""},

		// phones
		{"E.164", "+15550100199", ReasonPhone},
		{"E.164 grouped", "+1 (555) 010-0199", ReasonPhone},
		{"E.164 UK trunk", "+44 (0)20 7946 0958", ReasonPhone},
		{"E.164 dotted", "+33.6.12.34.56.78", ReasonPhone},
		{"E.164 in text", "call me on +1 555 010 0199 tonight", ReasonPhone},
		{"E.164 in tel URL", "tel:+15550100199", ReasonPhone},
		{"international 00", "0044 20 7946 0958", ReasonPhone},
		{"international 00 together", "004420794609580", ReasonPhone},
		{"UK national", "020 7946 0958", ReasonPhone},
		{"US national", "(555) 010-4477", ReasonPhone},
		{"US dashed", "1-555-010-4477", ReasonPhone},
		{"US dotted", "555.010.4477", ReasonPhone},
		{"FR national", "06 12 34 56 78", ReasonPhone},
		{"FR dotted", "06.12.34.56.78", ReasonPhone},
		{"NL national", "06-12345678", ReasonPhone},
		{"DE slash", "030/1234567", ReasonPhone},
		{"trunk 0 together", "0612345678", ReasonPhone},
		{"trunk 0 together 11", "02079460958", ReasonPhone},
		{"spaced ES mobile", "612 345 678", ReasonPhone},
		{"SSN shape", "123-45-6789", ReasonPhone},
		{"short E.164", "+1555010", ""},
		{"too long E.164", "+1555010019912345", ""},
		{"plus after digit", "1+15550100199", ""},
		{"plus in base64", "ab+15550100199cd", ""},
		{"signed amount", "+1234567.89", ""},
		{"score", "+15", ""},
		{"bare digits", "15550100199", ""},
		{"epoch ms", "1718000000000", ""},
		{"numeric id", "9876543210", ""},
		{"zero-padded id", "0000012345", ""},
		{"amount", "1500.00", ""},
		{"negative amount", "-1500.00", ""},
		{"big amount", "123456789.00", ""},
		{"crypto amount", "0.000123456789", ""},
		{"thousands", "1,234,567,890", ""},
		{"thousands dots", "1.234.567.890", ""},
		{"thousands and decimals", "1,234,567.89", ""},
		{"space thousands and decimals", "1 234 567,89", ""},
		{"swiss thousands", "1'234'567'890", ""},
		{"version", "10.0.19045.2965", ""},
		{"short version", "1.22.3", ""},
		{"ipv4", "172.16.254.12", ""},
		{"ipv4 three-digit groups", "192.168.100.200", ""},
		{"date", "2024-10-15", ""},
		{"date-based id", "2024-10-15-0001", ""},
		{"date time", "2024-10-15 12:30:45", ""},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", ""},
		{"digit uuid", "12345678-1234-4234-8234-123456789012", ""},

		// tokens and plain values
		{"token", "tok_email_v1_ydpp5ufegl5vjmakoadzk5b56cuiiuzb", ""},
		{"bonus code", "10FREE_SPIN_IN_GOLDEN_SLOT", ""},
		{"game", "Book of Ra", ""},
		{"currency", "EUR", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := detect(tt.in); got != tt.want {
				t.Errorf("detect(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDetectNumber(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"4111111111111111", ReasonCard},
		{"378282246310005", ReasonCard},
		{"1718000000006", ""}, // epoch ms that passes Luhn
		{"15550100199", ""},   // a phone as a number cannot be told from an id
		{"1500", ""},
		{"1500.00", ""},
		{"-4111111111111111", ""},
		{"4.111111111111111e15", ""},
	}
	for _, tt := range tests {
		if got := detectNumber(tt.in); got != tt.want {
			t.Errorf("detectNumber(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestEpochMillisecondsAreNeverCards walks 13-digit epoch milliseconds
// from 2001 to 2128 in large strides and checks that those passing Luhn —
// one in ten — are neither cards nor phones, as numbers and as strings.
func TestEpochMillisecondsAreNeverCards(t *testing.T) {
	luhnOK := 0
	for ms := int64(1_000_000_000_000); ms < 5_000_000_000_000; ms += 777_777_777 {
		s := strconv.FormatInt(ms, 10)
		if luhn(s) {
			luhnOK++
		}
		if r := detect(s); r != "" {
			t.Fatalf("epoch ms string detected as %s", r)
		}
		if r := detectNumber(s); r != "" {
			t.Fatalf("epoch ms number detected as %s", r)
		}
	}
	if luhnOK < 100 {
		t.Fatalf("only %d Luhn-valid timestamps tried", luhnOK)
	}
}

func TestLuhnAndMod97(t *testing.T) {
	if !luhn("79927398713") || luhn("79927398710") {
		t.Error("luhn disagrees with the textbook example 79927398713")
	}
	if got := mod97([]byte("GB82WEST12345698765432")); got != 1 {
		t.Errorf("mod97(GB example) = %d, want 1", got)
	}
}
