// Package crashtest proves the gateway's durability promise (DESIGN.md §9,
// invariant 6): nothing the gateway acknowledged is lost across kill -9, and
// the duplicates a crash causes stay within the in-flight window.
//
// It has no code of its own, only a test. The test builds the real
// blindpost binary, runs `blindpost gateway` as a child process on a data
// directory that survives restarts, posts sealed envelopes to it as the
// vendor's core would, and SIGKILLs and restarts it at random moments while
// it accepts and sends. It plays both sides of the trust boundary from the
// outside: the core (sealing, posting, receiving signed callbacks and
// keeping witness copies of the audit log) and the operator's mail relay
// (an in-process SMTP capture server).
//
// The default run kills the gateway 10 times and belongs to the normal
// suite; a longer one is
//
//	go test ./internal/crashtest -run TestKill9 -crash.kills=50 -v
//
// or, where the flag cannot be given (it would reach every package),
// BLINDPOST_CRASH_KILLS=50 go test ./...
//
// -crash.seed fixes the kill schedule and -crash.keep keeps the temporary
// directory (config, data_dir, the child's log, captured mail) for a look
// after a failure.
package crashtest
