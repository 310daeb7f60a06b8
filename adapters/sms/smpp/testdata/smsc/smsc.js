'use strict';
// A scriptable SMSC for the tests of blindpost's SMPP adapter (adapters/sms/smpp), built on the
// npm `smpp` package so that the Go client is checked against an implementation it shares no code
// with.
//
//   node smsc.js [port]        (port 0, the default, picks a free one)
//
// Everything it sees goes to stdout as one JSON object a line; the first is
// {"event":"listening","port":N}. It reads commands from stdin, one JSON object a line:
//
//   {"cmd":"receipt","id":"…","stat":"DELIVRD","err":"000","tlv":true,"retries":2}
//       send a deliver_sm delivery receipt on every bound session; with "retries", redeliver
//       up to that many times, 50 ms apart, while the client answers with an error status
//   {"cmd":"mo","text":"…"}       send a mobile-originated deliver_sm (no receipt bit)
//   {"cmd":"enquire_link"}       send enquire_link on every bound session
//   {"cmd":"drop"}               cut every connection without unbind
//
// Destinations with a magic meaning (E.164 without the plus, as on the wire):
//   15550100999 → ESME_RTHROTTLED, 15550100998 → ESME_RINVDSTADR,
//   15550100997 → no answer at all, 15550100996 → drop the connection instead of answering.
//
// Environment: SMSC_SYSTEM_ID and SMSC_PASSWORD (default blindpost / secret), SMSC_QUIET=1 to
// leave out the per-submit_sm events (for benchmarks).

const smpp = require('smpp');
const readline = require('readline');

const SYSTEM_ID = process.env.SMSC_SYSTEM_ID || 'blindpost';
const PASSWORD = process.env.SMSC_PASSWORD || 'secret';
const QUIET = process.env.SMSC_QUIET === '1';
const port = Number(process.argv[2] || process.env.SMSC_PORT || 0);

const MAGIC = {
	'15550100999': {status: smpp.ESME_RTHROTTLED},
	'15550100998': {status: smpp.ESME_RINVDSTADR},
	'15550100997': {silent: true},
	'15550100996': {drop: true},
};

// Keep every incoming PDU's raw bytes, so the tests can check the short_message octets exactly as
// they came over the wire, next to the library's own decoding of them.
const fromBuffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
	Object.defineProperty(this, 'raw', {value: Buffer.from(buffer), enumerable: false});
	return fromBuffer.call(this, buffer);
};

function log(o) {
	process.stdout.write(JSON.stringify(o) + '\n');
}

// rawShortMessage walks the mandatory fields of a submit_sm and returns its short_message octets.
function rawShortMessage(raw) {
	let off = 16;
	const cstring = () => {
		const end = raw.indexOf(0, off);
		off = end + 1;
	};
	cstring(); // service_type
	off += 2; // source_addr_ton, source_addr_npi
	cstring(); // source_addr
	off += 2; // dest_addr_ton, dest_addr_npi
	cstring(); // destination_addr
	off += 3; // esm_class, protocol_id, priority_flag
	cstring(); // schedule_delivery_time
	cstring(); // validity_period
	off += 4; // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
	const len = raw[off];
	off += 1;
	return raw.subarray(off, off + len);
}

let nextSession = 0;
let nextMessage = 0x5a000000;
const sessions = new Set();

const server = smpp.createServer(function (session) {
	const sid = ++nextSession;
	// Like a real SMSC: answer at once, without Nagle holding back small
	// responses while earlier ones are unacknowledged.
	session.socket.setNoDelay(true);
	session.sid = sid;
	session.bound = false;
	sessions.add(session);
	log({event: 'connect', session: sid});

	session.on('bind_transceiver', function (pdu) {
		if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
			log({event: 'bind_refused', session: sid});
			session.send(pdu.response({command_status: smpp.ESME_RINVPASWD}));
			return;
		}
		session.bound = true;
		log({
			event: 'bind_transceiver', session: sid, system_id: pdu.system_id,
			system_type: pdu.system_type, interface_version: pdu.interface_version,
		});
		session.send(pdu.response({system_id: 'nodesmsc'}));
	});

	session.on('submit_sm', function (pdu) {
		const magic = MAGIC[pdu.destination_addr] || {};
		const status = magic.status || 0;
		const id = status ? '' : (nextMessage++).toString(16);
		if (!QUIET || status || magic.silent || magic.drop) {
			const sm = pdu.short_message || {};
			log({
				event: 'submit_sm', session: sid, seq: pdu.sequence_number,
				service_type: pdu.service_type,
				source_addr_ton: pdu.source_addr_ton, source_addr_npi: pdu.source_addr_npi,
				source_addr: pdu.source_addr,
				dest_addr_ton: pdu.dest_addr_ton, dest_addr_npi: pdu.dest_addr_npi,
				destination_addr: pdu.destination_addr,
				esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
				data_coding: pdu.data_coding,
				short_message_hex: rawShortMessage(pdu.raw).toString('hex'),
				udh_hex: (sm.udh || []).map((b) => b.toString('hex')),
				text: typeof sm.message === 'string' ? sm.message : null,
				message_id: id, status: status,
			});
		}
		if (magic.silent) {
			return;
		}
		if (magic.drop) {
			session.socket.destroy();
			return;
		}
		session.send(pdu.response({command_status: status, message_id: id}));
	});

	session.on('enquire_link', function (pdu) {
		log({event: 'enquire_link', session: sid, seq: pdu.sequence_number});
		session.send(pdu.response());
	});

	session.on('unbind', function (pdu) {
		log({event: 'unbind', session: sid, seq: pdu.sequence_number});
		session.send(pdu.response(), function () {
			session.close();
		});
	});

	session.on('generic_nack', function (pdu) {
		log({event: 'generic_nack', session: sid, seq: pdu.sequence_number, status: pdu.command_status});
	});

	session.on('close', function () {
		sessions.delete(session);
		log({event: 'close', session: sid});
	});

	session.on('error', function (err) {
		log({event: 'error', session: sid, error: String(err && err.code || err)});
	});
});

function pad3(n) {
	return String(n).padStart(3, '0');
}

function sendReceipt(session, cmd, attempt) {
	const stat = cmd.stat || 'DELIVRD';
	const err = cmd.err || '000';
	const delivered = stat === 'DELIVRD' ? 1 : 0;
	const text = cmd.text !== undefined ? cmd.text :
		'id:' + cmd.id + ' sub:001 dlvrd:' + pad3(delivered) +
		' submit date:2401011200 done date:2401011201 stat:' + stat + ' err:' + err + ' text:';
	const opts = {
		source_addr_ton: 1, source_addr_npi: 1, source_addr: cmd.from || '15550100001',
		dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: '15550100000',
		esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'latin1'),
	};
	if (cmd.tlv) {
		opts.receipted_message_id = cmd.id;
		opts.message_state = {ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8}[stat] || 7;
	}
	session.deliver_sm(opts, function (resp) {
		log({event: 'deliver_sm_resp', session: session.sid, id: cmd.id, attempt: attempt, status: resp.command_status});
		if (resp.command_status !== 0 && attempt < (cmd.retries || 0)) {
			setTimeout(function () {
				sendReceipt(session, cmd, attempt + 1);
			}, 50);
		}
	});
}

function command(cmd) {
	const bound = Array.from(sessions).filter((s) => s.bound);
	switch (cmd.cmd) {
	case 'receipt':
		bound.forEach((s) => sendReceipt(s, cmd, 0));
		break;
	case 'mo':
		bound.forEach(function (s) {
			s.deliver_sm({
				source_addr_ton: 1, source_addr_npi: 1, source_addr: '15550100002',
				dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: '15550100000',
				esm_class: 0, data_coding: 0, short_message: Buffer.from(cmd.text || 'STOP', 'latin1'),
			}, function (resp) {
				log({event: 'deliver_sm_resp', session: s.sid, mo: true, status: resp.command_status});
			});
		});
		break;
	case 'enquire_link':
		bound.forEach(function (s) {
			s.enquire_link({}, function (resp) {
				log({event: 'enquire_link_resp', session: s.sid, seq: resp.sequence_number, status: resp.command_status});
			});
		});
		break;
	case 'drop':
		sessions.forEach((s) => s.socket.destroy());
		break;
	default:
		log({event: 'bad_command', cmd: String(cmd.cmd)});
		return;
	}
	log({event: 'done', cmd: cmd.cmd, sessions: bound.length});
}

readline.createInterface({input: process.stdin}).on('line', function (line) {
	if (!line.trim()) {
		return;
	}
	try {
		command(JSON.parse(line));
	} catch (e) {
		log({event: 'bad_command', error: String(e)});
	}
}).on('close', function () {
	// The test closed our stdin (or died): stop.
	process.exit(0);
});

server.listen(port, '127.0.0.1', function () {
	log({event: 'listening', port: server.address().port});
});
