package vault_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

// specPath is the wire spec whose section 11.3 this test reads. The test
// parses the Markdown itself, rather than a copy of the vectors, so that it
// fails as soon as the spec and the code disagree, whichever one changed.
const specPath = "../docs/protocol.md"

// TestProtocolVectors checks every row of both tables of docs/protocol.md
// §11.3: each valid input normalises to the listed value and tokenises to
// the listed token under the listed test-only key, and each invalid input
// is rejected with ErrInvalid.
func TestProtocolVectors(t *testing.T) {
	spec := readSpecSection(t, "### 11.3 ")
	m := regexp.MustCompile("Token key version 1 \\(TEST-ONLY\\) = `([0-9a-f]{64})`").FindStringSubmatch(spec)
	if m == nil {
		t.Fatal("§11.3: no TEST-ONLY token key")
	}
	key, _ := hex.DecodeString(m[1])

	tables := markdownTables(t, spec)
	if len(tables) != 2 {
		t.Fatalf("§11.3: %d tables, want 2 (valid and invalid inputs)", len(tables))
	}
	valid, invalid := tables[0], tables[1]
	if h := valid.header; !slices.Equal(h, []string{"kind", "input", "normalised", "token"}) {
		t.Fatalf("§11.3: valid table header %q", h)
	}
	if h := invalid.header; !slices.Equal(h, []string{"kind", "input", "rule"}) {
		t.Fatalf("§11.3: invalid table header %q", h)
	}

	ctx := context.Background()
	seen := map[string]int{}
	var prev string
	for i, row := range valid.rows {
		kind := vault.Kind(row[0])
		in := specCell(t, row[1])
		want := specCell(t, row[2])
		tok := prev
		if row[3] != "(same)" {
			tok = specCell(t, row[3])
		}
		prev = tok
		if !kind.Valid() || tok == "" {
			t.Fatalf("§11.3 valid row %d: bad kind %q or token %q", i+1, row[0], row[3])
		}
		seen["valid "+row[0]]++

		got, err := vault.Normalize(kind, in)
		if err != nil || got != want {
			t.Errorf("§11.3 row %d: Normalize(%s, %q) = %q, %v; spec says %q", i+1, kind, in, got, err, want)
		}
		gotTok, err := vault.Tokenize(ctx, keyedMAC(key), "any-tenant", 1, kind, in)
		if err != nil || gotTok != tok {
			t.Errorf("§11.3 row %d: Tokenize(%s, %q) = %q, %v; spec says %q", i+1, kind, in, gotTok, err, tok)
		}
		if k, v, err := vault.ParseToken(tok); err != nil || k != kind || v != 1 {
			t.Errorf("§11.3 row %d: ParseToken(%q) = %s, %d, %v", i+1, tok, k, v, err)
		}
	}
	for i, row := range invalid.rows {
		kind := vault.Kind(row[0])
		in := specCell(t, row[1])
		if !kind.Valid() {
			t.Fatalf("§11.3 invalid row %d: bad kind %q", i+1, row[0])
		}
		seen["invalid "+row[0]]++
		if got, err := vault.Normalize(kind, in); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("§11.3 invalid row %d (%s): Normalize(%s, %q) = %q, %v; spec says invalid", i+1, row[2], kind, in, got, err)
		}
	}
	// Guard against a table that silently lost its rows.
	for _, table := range []string{"valid", "invalid"} {
		for _, kind := range []vault.Kind{vault.KindEmail, vault.KindPhone, vault.KindTelegram} {
			if seen[table+" "+string(kind)] == 0 {
				t.Errorf("§11.3: no %s %s vector", table, kind)
			}
		}
	}
}

// readSpecSection returns the text of the spec from the heading that starts
// with heading to the next heading of the same or a higher level.
func readSpecSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatalf("the spec must be readable next to the code: %v", err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n"+heading)
	if i < 0 {
		t.Fatalf("%s: no heading %q", specPath, heading)
	}
	sec := doc[i+1:]
	level := strings.Index(heading, " ") // number of '#'
	for j := 0; ; {
		k := strings.Index(sec[j+1:], "\n#")
		if k < 0 {
			return sec
		}
		j += 1 + k
		line := sec[j+1:]
		if n := len(line) - len(strings.TrimLeft(line, "#")); n <= level {
			return sec[:j]
		}
	}
}

type mdTable struct {
	header []string
	rows   [][]string
}

// markdownTables parses the pipe tables of text: consecutive lines that
// start with '|', a header row, a delimiter row, then the data rows.
func markdownTables(t *testing.T, text string) []mdTable {
	t.Helper()
	var tables []mdTable
	var lines []string
	flush := func() {
		if len(lines) == 0 {
			return
		}
		if len(lines) < 3 || !regexp.MustCompile(`^\|( *-+ *\|)+$`).MatchString(lines[1]) {
			t.Fatalf("malformed table at %q", lines[0])
		}
		tb := mdTable{header: splitRow(lines[0])}
		for _, l := range lines[2:] {
			row := splitRow(l)
			if len(row) != len(tb.header) {
				t.Fatalf("row %q: %d cells, header has %d", l, len(row), len(tb.header))
			}
			tb.rows = append(tb.rows, row)
		}
		tables = append(tables, tb)
		lines = nil
	}
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "|") {
			lines = append(lines, l)
		} else {
			flush()
		}
	}
	flush()
	return tables
}

// splitRow splits a table row into trimmed cells. Cells never hold '|'.
func splitRow(l string) []string {
	cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|"), "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// specCell decodes a §11.3 value cell: text in backticks, read as a JSON
// string if it starts with a double quote and literally otherwise.
func specCell(t *testing.T, cell string) string {
	t.Helper()
	if len(cell) < 2 || cell[0] != '`' || cell[len(cell)-1] != '`' || strings.Count(cell, "`") != 2 {
		t.Fatalf("§11.3: cell %q is not one backtick-quoted value", cell)
	}
	s := cell[1 : len(cell)-1]
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	var v string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("§11.3: cell %s is not a JSON string: %v", cell, err)
	}
	return v
}
