package sockdiag

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// TCPCounters are a namespace's TCP counters from /proc/<pid>/net/snmp (an O(1) read, no walk).
type TCPCounters struct {
	// PassiveOpens counts connections accepted since the namespace was made; its rate is the
	// rate of new inbound connections.
	PassiveOpens uint64
	ActiveOpens  uint64
	CurrEstab    uint64
}

// ReadTCPCounters reads the TCP line pair of /proc/<pid>/net/snmp.
func ReadTCPCounters(pid int) (TCPCounters, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/snmp", pid))
	if err != nil {
		return TCPCounters{}, err
	}
	return ParseTCPCounters(raw)
}

// ParseTCPCounters parses the "Tcp:" header and value lines of an snmp file.
func ParseTCPCounters(raw []byte) (TCPCounters, error) {
	var names, values [][]byte
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("Tcp: ")) {
			continue
		}
		if names == nil {
			names = bytes.Fields(line[5:])
		} else {
			values = bytes.Fields(line[5:])
			break
		}
	}
	if names == nil || len(names) != len(values) {
		return TCPCounters{}, fmt.Errorf("snmp: no Tcp header and value lines")
	}
	var c TCPCounters
	for i, name := range names {
		v, err := strconv.ParseUint(string(values[i]), 10, 64)
		if err != nil {
			continue // RtoAlgorithm and MaxConn may be negative; not used
		}
		switch string(name) {
		case "PassiveOpens":
			c.PassiveOpens = v
		case "ActiveOpens":
			c.ActiveOpens = v
		case "CurrEstab":
			c.CurrEstab = v
		}
	}
	return c, nil
}
