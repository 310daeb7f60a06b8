package smpp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The PDU codec covers the operations an ESME bound as transceiver needs
// (SMPP 3.4 §4): bind_transceiver, submit_sm, deliver_sm, enquire_link,
// unbind and generic_nack, with their responses. Everything else the SMSC
// sends is answered with generic_nack (ESME_RINVCMDID).

// Command ids (SMPP 3.4 §5.1.2.1).
const (
	cmdGenericNack         uint32 = 0x80000000
	cmdBindTransceiver     uint32 = 0x00000009
	cmdBindTransceiverResp uint32 = 0x80000009
	cmdSubmitSM            uint32 = 0x00000004
	cmdSubmitSMResp        uint32 = 0x80000004
	cmdDeliverSM           uint32 = 0x00000005
	cmdDeliverSMResp       uint32 = 0x80000005
	cmdUnbind              uint32 = 0x00000006
	cmdUnbindResp          uint32 = 0x80000006
	cmdEnquireLink         uint32 = 0x00000015
	cmdEnquireLinkResp     uint32 = 0x80000015
	cmdAlertNotification   uint32 = 0x00000102

	respBit uint32 = 0x80000000
)

// Command status values (SMPP 3.4 §5.1.3) the client reads or writes.
const (
	statusOK           uint32 = 0x00000000
	statusInvMsgLen    uint32 = 0x00000001
	statusInvCmdLen    uint32 = 0x00000002
	statusInvCmdID     uint32 = 0x00000003
	statusInvBndSts    uint32 = 0x00000004
	statusAlyBnd       uint32 = 0x00000005
	statusSysErr       uint32 = 0x00000008
	statusInvSrcAdr    uint32 = 0x0000000A
	statusInvDstAdr    uint32 = 0x0000000B
	statusInvMsgID     uint32 = 0x0000000C
	statusBindFail     uint32 = 0x0000000D
	statusInvPaswd     uint32 = 0x0000000E
	statusInvSysID     uint32 = 0x0000000F
	statusMsgQFul      uint32 = 0x00000014
	statusSubmitFail   uint32 = 0x00000045
	statusInvDCS       uint32 = 0x00000104
	statusThrottled    uint32 = 0x00000058
	statusXTAppn       uint32 = 0x00000064
	statusXRAppn       uint32 = 0x00000065
	statusUnknownError uint32 = 0x000000FF
)

// statusName gives the standard name of the statuses an operator meets
// most, for error texts; the numeric code stays the stable part.
func statusName(s uint32) string {
	switch s {
	case statusInvMsgLen:
		return "ESME_RINVMSGLEN"
	case statusInvCmdLen:
		return "ESME_RINVCMDLEN"
	case statusInvCmdID:
		return "ESME_RINVCMDID"
	case statusInvBndSts:
		return "ESME_RINVBNDSTS"
	case statusAlyBnd:
		return "ESME_RALYBND"
	case statusSysErr:
		return "ESME_RSYSERR"
	case statusInvSrcAdr:
		return "ESME_RINVSRCADR"
	case statusInvDstAdr:
		return "ESME_RINVDSTADR"
	case statusInvMsgID:
		return "ESME_RINVMSGID"
	case statusBindFail:
		return "ESME_RBINDFAIL"
	case statusInvPaswd:
		return "ESME_RINVPASWD"
	case statusInvSysID:
		return "ESME_RINVSYSID"
	case statusMsgQFul:
		return "ESME_RMSGQFUL"
	case statusSubmitFail:
		return "ESME_RSUBMITFAIL"
	case statusInvDCS:
		return "ESME_RINVDCS"
	case statusThrottled:
		return "ESME_RTHROTTLED"
	case statusXTAppn:
		return "ESME_RX_T_APPN"
	case statusXRAppn:
		return "ESME_RX_R_APPN"
	case statusUnknownError:
		return "ESME_RUNKNOWNERR"
	}
	return ""
}

// statusText renders a command_status for an error message: the hex value
// and, when known, its name. It never holds SMSC-supplied text.
func statusText(s uint32) string {
	if n := statusName(s); n != "" {
		return fmt.Sprintf("0x%08x (%s)", s, n)
	}
	return fmt.Sprintf("0x%08x", s)
}

// Optional parameter tags (SMPP 3.4 §5.3.2).
const (
	tagReceiptedMessageID uint16 = 0x001E
	tagNetworkErrorCode   uint16 = 0x0423
	tagMessagePayload     uint16 = 0x0424
	tagMessageState       uint16 = 0x0427
)

const (
	headerLen = 16
	// maxPDULen bounds what the reader accepts. SMPP sets no limit, but a
	// short_message is at most 254 octets and a message_payload at most
	// 64 KiB; anything longer is a broken or hostile peer.
	maxPDULen = 70 * 1024
	// interfaceVersion is SMPP 3.4.
	interfaceVersion = 0x34
)

var (
	errShortPDU   = errors.New("smpp: pdu shorter than its header or its fields")
	errPDULength  = errors.New("smpp: command_length out of range")
	errCString    = errors.New("smpp: unterminated or overlong C-octet string")
	errTLV        = errors.New("smpp: malformed optional parameter")
	errFieldValue = errors.New("smpp: field value not encodable")
)

// pdu is one decoded frame: the header and the raw body that follows it.
type pdu struct {
	id     uint32
	status uint32
	seq    uint32
	body   []byte
}

// readPDU reads one frame. A length outside [16, maxPDULen] is an error the
// session cannot recover from: framing is lost.
func readPDU(r io.Reader) (pdu, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return pdu{}, err
	}
	n := binary.BigEndian.Uint32(h[0:])
	if n < headerLen || n > maxPDULen {
		return pdu{}, fmt.Errorf("%w: %d", errPDULength, n)
	}
	p := pdu{
		id:     binary.BigEndian.Uint32(h[4:]),
		status: binary.BigEndian.Uint32(h[8:]),
		seq:    binary.BigEndian.Uint32(h[12:]),
	}
	if n > headerLen {
		p.body = make([]byte, n-headerLen)
		if _, err := io.ReadFull(r, p.body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return pdu{}, err
		}
	}
	return p, nil
}

// decodePDU decodes one complete frame held in b, which must be exactly as
// long as its command_length says.
func decodePDU(b []byte) (pdu, error) {
	if len(b) < headerLen {
		return pdu{}, errShortPDU
	}
	n := binary.BigEndian.Uint32(b)
	if n < headerLen || n > maxPDULen || int(n) != len(b) {
		return pdu{}, fmt.Errorf("%w: %d for %d octets", errPDULength, n, len(b))
	}
	return pdu{
		id:     binary.BigEndian.Uint32(b[4:]),
		status: binary.BigEndian.Uint32(b[8:]),
		seq:    binary.BigEndian.Uint32(b[12:]),
		body:   b[headerLen:],
	}, nil
}

// appendPDU appends a whole frame with the given body to dst.
func appendPDU(dst []byte, id, status, seq uint32, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(headerLen+len(body)))
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, status)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return append(dst, body...)
}

// encode returns p as a frame.
func (p pdu) encode() []byte {
	return appendPDU(make([]byte, 0, headerLen+len(p.body)), p.id, p.status, p.seq, p.body)
}

// bodyReader reads the fields of a PDU body in order.
type bodyReader struct {
	b   []byte
	err error
}

func (r *bodyReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = errShortPDU
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// cstring reads a C-octet string of at most max octets including the NUL.
func (r *bodyReader) cstring(max int) string {
	if r.err != nil {
		return ""
	}
	for i, c := range r.b {
		if i >= max {
			break
		}
		if c == 0 {
			s := string(r.b[:i])
			r.b = r.b[i+1:]
			return s
		}
	}
	r.err = errCString
	return ""
}

func (r *bodyReader) octets(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errShortPDU
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// tlvs reads the optional parameters that fill the rest of the body.
func (r *bodyReader) tlvs() []tlv {
	var ts []tlv
	for r.err == nil && len(r.b) > 0 {
		if len(r.b) < 4 {
			r.err = errTLV
			return nil
		}
		tag := binary.BigEndian.Uint16(r.b)
		n := int(binary.BigEndian.Uint16(r.b[2:]))
		if len(r.b) < 4+n {
			r.err = errTLV
			return nil
		}
		ts = append(ts, tlv{tag: tag, value: r.b[4 : 4+n : 4+n]})
		r.b = r.b[4+n:]
	}
	return ts
}

// appendCString appends s and its NUL; s must hold no NUL and fit max
// octets with it.
func appendCString(dst []byte, s string, max int) ([]byte, error) {
	if len(s)+1 > max {
		return dst, fmt.Errorf("%w: %d octets where %d fit", errFieldValue, len(s)+1, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return dst, fmt.Errorf("%w: NUL in a C-octet string", errFieldValue)
		}
	}
	return append(append(dst, s...), 0), nil
}

// tlv is one optional parameter.
type tlv struct {
	tag   uint16
	value []byte
}

func appendTLVs(dst []byte, ts []tlv) []byte {
	for _, t := range ts {
		dst = binary.BigEndian.AppendUint16(dst, t.tag)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.value)))
		dst = append(dst, t.value...)
	}
	return dst
}

// Field sizes including the NUL (SMPP 3.4 §5.2).
const (
	maxSystemID    = 16
	maxPassword    = 9
	maxSystemType  = 13
	maxAddrRange   = 41
	maxServiceType = 6
	maxAddr        = 21
	maxTime        = 17
	maxMessageID   = 65
)

// bindBody is the body of bind_transceiver (§4.1.5).
type bindBody struct {
	systemID, password, systemType string
	addrTON, addrNPI               byte
	addressRange                   string
}

func (b bindBody) appendTo(dst []byte) ([]byte, error) {
	var err error
	if dst, err = appendCString(dst, b.systemID, maxSystemID); err != nil {
		return dst, fmt.Errorf("system_id: %w", err)
	}
	if dst, err = appendCString(dst, b.password, maxPassword); err != nil {
		return dst, fmt.Errorf("password: %w", err)
	}
	if dst, err = appendCString(dst, b.systemType, maxSystemType); err != nil {
		return dst, fmt.Errorf("system_type: %w", err)
	}
	dst = append(dst, interfaceVersion, b.addrTON, b.addrNPI)
	if dst, err = appendCString(dst, b.addressRange, maxAddrRange); err != nil {
		return dst, fmt.Errorf("address_range: %w", err)
	}
	return dst, nil
}

// decodeBindResp reads the SMSC's system_id from a bind_*_resp body. An
// error response may carry no body at all (§4.1.6 lets it be omitted).
func decodeBindResp(body []byte) (systemID string, err error) {
	if len(body) == 0 {
		return "", nil
	}
	r := bodyReader{b: body}
	systemID = r.cstring(maxSystemID)
	r.tlvs() // sc_interface_version, ignored
	return systemID, r.err
}

// decodeMessageIDResp reads the message_id of a submit_sm_resp (or
// deliver_sm_resp) body. Error responses usually omit the body (§4.4.2).
func decodeMessageIDResp(body []byte) (string, error) {
	if len(body) == 0 {
		return "", nil
	}
	r := bodyReader{b: body}
	id := r.cstring(maxMessageID)
	return id, r.err
}

// shortMessage is the body shared by submit_sm (§4.4.1) and deliver_sm
// (§4.6.1): the two have the same mandatory fields in the same order.
type shortMessage struct {
	serviceType          string
	srcTON, srcNPI       byte
	src                  string
	dstTON, dstNPI       byte
	dst                  string
	esmClass             byte
	protocolID           byte
	priority             byte
	scheduleDeliveryTime string
	validityPeriod       string
	registeredDelivery   byte
	replaceIfPresent     byte
	dataCoding           byte
	smDefaultMsgID       byte
	message              []byte // short_message, at most 255 octets
	tlvs                 []tlv
}

func (m *shortMessage) appendTo(dst []byte) ([]byte, error) {
	var err error
	if dst, err = appendCString(dst, m.serviceType, maxServiceType); err != nil {
		return dst, fmt.Errorf("service_type: %w", err)
	}
	dst = append(dst, m.srcTON, m.srcNPI)
	if dst, err = appendCString(dst, m.src, maxAddr); err != nil {
		return dst, fmt.Errorf("source_addr: %w", err)
	}
	dst = append(dst, m.dstTON, m.dstNPI)
	if dst, err = appendCString(dst, m.dst, maxAddr); err != nil {
		return dst, fmt.Errorf("destination_addr: %w", err)
	}
	dst = append(dst, m.esmClass, m.protocolID, m.priority)
	if dst, err = appendCString(dst, m.scheduleDeliveryTime, maxTime); err != nil {
		return dst, fmt.Errorf("schedule_delivery_time: %w", err)
	}
	if dst, err = appendCString(dst, m.validityPeriod, maxTime); err != nil {
		return dst, fmt.Errorf("validity_period: %w", err)
	}
	if len(m.message) > 255 {
		return dst, fmt.Errorf("short_message: %w: %d octets", errFieldValue, len(m.message))
	}
	dst = append(dst, m.registeredDelivery, m.replaceIfPresent, m.dataCoding, m.smDefaultMsgID, byte(len(m.message)))
	dst = append(dst, m.message...)
	return appendTLVs(dst, m.tlvs), nil
}

// decodeShortMessage reads a submit_sm or deliver_sm body. The slices in
// the result alias body.
func decodeShortMessage(body []byte) (shortMessage, error) {
	r := bodyReader{b: body}
	var m shortMessage
	m.serviceType = r.cstring(maxServiceType)
	m.srcTON, m.srcNPI = r.byte(), r.byte()
	m.src = r.cstring(maxAddr)
	m.dstTON, m.dstNPI = r.byte(), r.byte()
	m.dst = r.cstring(maxAddr)
	m.esmClass, m.protocolID, m.priority = r.byte(), r.byte(), r.byte()
	m.scheduleDeliveryTime = r.cstring(maxTime)
	m.validityPeriod = r.cstring(maxTime)
	m.registeredDelivery, m.replaceIfPresent = r.byte(), r.byte()
	m.dataCoding, m.smDefaultMsgID = r.byte(), r.byte()
	m.message = r.octets(int(r.byte()))
	m.tlvs = r.tlvs()
	if r.err != nil {
		return shortMessage{}, r.err
	}
	return m, nil
}

// tlv returns the value of the first optional parameter with the tag.
func (m *shortMessage) tlv(tag uint16) ([]byte, bool) {
	for _, t := range m.tlvs {
		if t.tag == tag {
			return t.value, true
		}
	}
	return nil, false
}
