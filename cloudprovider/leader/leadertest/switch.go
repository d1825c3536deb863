// Package leadertest has a leadership gate tests set by hand.
package leadertest

import "sync/atomic"

// Switch leads while set (a standby at first).
type Switch struct{ leads atomic.Bool }

// Set makes it lead, or not.
func (s *Switch) Set(leads bool) { s.leads.Store(leads) }

// Leads is what was set last.
func (s *Switch) Leads() (bool, string) {
	if s.leads.Load() {
		return true, ""
	}
	return false, "standby (set by the test)"
}
