// Package boundary holds the test that keeps blindpost's trust boundary an
// import boundary (DESIGN.md §3): no code on the vendor side can reach a
// PII store, and the shared pieces depend on neither side.
package boundary
