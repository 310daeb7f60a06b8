package embedded

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/vault"
)

// fullRecord sets every field of vault.Record, by reflection, so that a
// field added to the record without teaching decodeRecordFast fails
// TestDecodeRecordKnowsEveryField instead of silently taking the slow path.
func fullRecord(t testing.TB) vault.Record {
	t.Helper()
	rec := vault.Record{
		Email: "alice@example.com", Phone: "+15550100001", TelegramChatID: "-1001234567890",
		PushTokens: []vault.PushToken{{Token: "tok-1", DeviceType: "ios"}, {Token: "tok-2", DeviceType: "web"}},
		FirstName:  "Ålice <&> \"Q\" \\ \u2028", LastName: "O'Brien-Smith", Locale: "en-GB", Country: "MT",
		Timezone:     "Europe/Malta",
		Consents:     map[string]bool{"marketing_email": true, "marketing_sms": false},
		OptOuts:      map[string]bool{"core_is_sms_disabled": true},
		OptOutSince:  map[string]time.Time{"core_is_sms_disabled": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)},
		SnoozedUntil: map[string]time.Time{"email": time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3600))},
		SelfExcluded: true,
		Pseudonym:    "aaaaaaaaaaaaaaaaaaaaaaaaaa",
	}
	v := reflect.ValueOf(rec)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullRecord leaves %s unset", v.Type().Field(i).Name)
		}
	}
	return rec
}

func TestDecodeRecordKnowsEveryField(t *testing.T) {
	for name, rec := range map[string]vault.Record{
		"full":  fullRecord(t),
		"empty": {},
		"empty collections": {PushTokens: []vault.PushToken{}, Consents: map[string]bool{},
			OptOuts: map[string]bool{}, OptOutSince: map[string]time.Time{}, SnoozedUntil: map[string]time.Time{}},
	} {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeRecordFast(b)
		if !ok {
			t.Fatalf("%s: decodeRecordFast refused json.Marshal's output %s", name, b)
		}
		var want vault.Record
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decodeRecordFast = %+v\njson.Unmarshal = %+v", name, got, want)
		}
	}
}

// FuzzDecodeRecord checks that decodeRecord and json.Unmarshal agree on
// every input: the same error-ness and the same record.
func FuzzDecodeRecord(f *testing.F) {
	full, _ := json.Marshal(fullRecord(f))
	for _, seed := range []string{
		string(full), `{}`, ` { } `, `null`, `[]`, `{"email":null}`, `{"EMAIL":"a@example.com"}`,
		`{"email":"a@example.com","email":"b@example.com"}`, `{"em\u0061il":"a@example.com"}`,
		`{"first_name":"\ud83d\ude00 \u00e9"}`, "{\"first_name\":\"\xff\xfe\"}", `{"first_name":"a` + "\x01" + `"}`,
		`{"consents":{"marketing_email":true,"marketing_email":false}}`, `{"consents":{"x":1}}`,
		`{"opt_out_since":{"k":"2026-01-02T03:04:05Z"}}`, `{"opt_out_since":{"k":"yesterday"}}`,
		`{"opt_out_since":{"k":null}}`, `{"snoozed_until":{"email":"2026-01-02T03:04:05.123+01:00"}}`,
		`{"push_tokens":[]}`, `{"push_tokens":[{}]}`, `{"push_tokens":[{"token":"t","token":"u"}]}`,
		`{"push_tokens":null}`, `{"self_excluded":true}`, `{"self_excluded":"true"}`, `{"self_excluded":tru}`,
		`{"email":"a"} x`, `{"email":"a",}`, `{"email" : "a" , "phone" : "+15550100001" }`,
		`{"pseudonym":"x"`, `{"unknown":{"nested":[1,2]}}`, "{\"email\":\"a\"}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := decodeRecord(b)
		var want vault.Record
		wantErr := json.Unmarshal(b, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: decodeRecord err %v, json.Unmarshal err %v", b, gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decodeRecord = %+v\njson.Unmarshal = %+v", b, got, want)
		}
		if _, ok := decodeRecordFast(b); ok && wantErr != nil {
			t.Fatalf("%q: the fast path accepted what json.Unmarshal refuses", b)
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	rec := fullRecord(b)
	rec.FirstName = strings.ToUpper("alice")
	doc, _ := json.Marshal(rec)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRecord(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r vault.Record
			if err := json.Unmarshal(doc, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
