// Package message is kumogo's message model: envelope addresses, message
// metadata, the RFC 5322 data with header accessors and editors, spool ids,
// connection metadata and scheduled queue names. It depends on the standard
// library only, so every other package can share it.
package message
