// Package domain holds the Customer aggregate: its states, the one transition
// table that drives every command, the events it raises as immutable facts,
// and the typed errors of rejected commands. Which event fields hold
// personal data is declared on the events, and personal.go encrypts and
// decrypts them under a key it is given.
//
// It may import only the standard library and github.com/google/uuid. It does
// no I/O and reads no clock: time and ids are passed in.
package domain
