package smpp_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/blindpost/blindpost/adapters/sms"
)

// BenchmarkSend is the hot path: one short GSM message, submit_sm to
// submit_sm_resp, against smsc.js. BenchmarkRawSubmit runs the same
// exchange over a bare socket with pre-encoded frames, so the difference
// between the two is the client's own cost; the rest is Node's.

func BenchmarkSend(b *testing.B) {
	s := startSMSC(b, "SMSC_QUIET=1")
	c := newClient(b, config(s.Addr), nil)
	msg := sms.Message{To: toOK, Body: "Your code is 123456"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendParallel(b *testing.B) {
	s := startSMSC(b, "SMSC_QUIET=1")
	c := newClient(b, config(s.Addr), nil)
	msg := sms.Message{To: toOK, Body: "Your code is 123456"}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := c.Send(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRawSubmit(b *testing.B) {
	s := startSMSC(b, "SMSC_QUIET=1")
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	frame := func(id, seq uint32, body []byte) []byte {
		f := binary.BigEndian.AppendUint32(nil, uint32(16+len(body)))
		f = binary.BigEndian.AppendUint32(f, id)
		f = binary.BigEndian.AppendUint32(f, 0)
		f = binary.BigEndian.AppendUint32(f, seq)
		return append(f, body...)
	}
	readFrame := func() {
		var h [16]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			b.Fatal(err)
		}
		if st := binary.BigEndian.Uint32(h[8:]); st != 0 {
			b.Fatalf("status 0x%08x", st)
		}
		if _, err := br.Discard(int(binary.BigEndian.Uint32(h[:])) - 16); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := conn.Write(frame(0x09, 1, []byte(testSystemID+"\x00"+testPassword+"\x00"+testSysType+"\x00\x34\x00\x00\x00"))); err != nil {
		b.Fatal(err)
	}
	readFrame()
	text := "Your code is 123456"
	submit := []byte("\x00\x01\x0115550100000\x00\x01\x0115550100001\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00")
	submit = append(append(submit, byte(len(text))), text...)
	seq := uint32(1)
	for b.Loop() {
		seq++
		if _, err := conn.Write(frame(0x04, seq, submit)); err != nil {
			b.Fatal(err)
		}
		readFrame()
	}
}
