// Package layers holds no code: its test checks that the project's
// packages import each other in one direction only, as docs/design.md
// draws it. Every package of the module must have a rule in the test's
// table; a new package without one fails the check until its place in the
// picture is decided.
package layers
