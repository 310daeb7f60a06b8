package firewall_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
)

// typicalEvent is a deposit with the kind of payload a PAM sends: about
// 1 KB of JSON, ids, amounts, timestamps, flags, codes, a token and a
// nested object and array.
const typicalEvent = `{"eid":"550e8400-e29b-41d4-a716-446655440000","event_date":1718000000000,
"ext_brand_id":"brand-1","user_ext_id":"100234567","event_type":"deposit","payload":{
"amount":1500.00,"amount_str":"1500.00","currency":"EUR","balance":123456789.5,"payment_method":"card",
"psp":"adyen","psp_tx_id":"98765432101234","card_brand":"visa","card_last4":"1111","first_deposit":false,
"deposit_count":17,"bonus_code":"10FREE_SPIN_IN_GOLDEN_SLOT","bonus_id":4471,"campaign":"WELCOME_100_DEP",
"created_at":1718000000006,"processed_at":"1718000000123","country":"DE","language":"de-DE",
"platform":"web","app_version":"2.14.3","session_id":"12345678-1234-4234-8234-123456789012",
"core_is_email_disabled":false,"core_is_sms_disabled_by_platform":true,"email_verified":true,
"email_token":"tok_email_v1_ydpp5ufegl5vjmakoadzk5b56cuiiuzb","vip_level":3,"segment":"high_roller",
"limits":{"daily":500,"weekly":2000,"monthly":"5000.00","currency":"EUR"},
"tags":["vip","slots","live_casino","sports","weekend_reload"],
"last_game":{"name":"Book of Ra","provider":"Novomatic","id":10234,"rtp":"95.10"},
"note":"Deposit via web cashier, promotion applied automatically at checkout."}}`

func BenchmarkCheck(b *testing.B) {
	fw := firewall.New(firewall.Options{})
	proto, err := event.Decode([]byte(typicalEvent))
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(proto)
	for _, mode := range []firewall.Mode{firewall.Reject, firewall.Strip} {
		b.Run(fmt.Sprintf("%s/%dB", mode, len(raw)), func(b *testing.B) {
			ev := proto // Check finds nothing to strip: the payload is shared safely
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if vs, reject := fw.Check(&ev, mode); len(vs) != 0 || reject {
					b.Fatalf("typical event refused: %v", vs)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("pii-strip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev := event.Event{EID: "e", EventDate: 1, Brand: "b", User: "u", Type: "t", Payload: map[string]any{
				"contact": map[string]any{"email": "canary@example.com", "phone": "+15550100199"},
				"tags":    []any{"vip", "4111 1111 1111 1111"}, "amount": json.Number("10")}}
			if vs, _ := fw.Check(&ev, firewall.Strip); len(vs) != 3 {
				b.Fatalf("got %v", vs)
			}
		}
	})
}
