package sockdiag

import "testing"

// From a Linux 6.x /proc/<pid>/net/snmp (Ip and Udp lines trimmed).
const snmp = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 2240
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 6 14 0 0 20 410 402 0 0 2 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 0 0 0 0 0 0 0 0 0
`

func TestParseTCPCounters(t *testing.T) {
	c, err := ParseTCPCounters([]byte(snmp))
	if err != nil || c.PassiveOpens != 14 || c.ActiveOpens != 6 || c.CurrEstab != 20 {
		t.Errorf("counters = %+v, %v; want passive 14, active 6, established 20", c, err)
	}
	if _, err := ParseTCPCounters([]byte("Ip: a\nIp: 1\n")); err == nil {
		t.Error("a file without Tcp lines was accepted")
	}
}
