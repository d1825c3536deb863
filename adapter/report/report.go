// Package report is the wire format between connection-agent and connection-metrics-adapter:
// one node's latest scrape, as JSON over HTTPS (GET /connections).
package report

import "time"

// Path is where an agent serves its latest report.
const Path = "/connections"

// Report is one scrape of a node.
type Report struct {
	Node string `json:"node"`
	// Time is when the scrape began; every sample carries its own time too.
	Time time.Time `json:"time"`
	Pods []Pod     `json:"pods"`
}

// Pod is one pod's connections at Time.
type Pod struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       string    `json:"uid"`
	Time      time.Time `json:"time"`
	// Inbound ESTABLISHED connections on listening ports, in total and per port.
	Inbound       int            `json:"inbound"`
	InboundByPort map[uint16]int `json:"inboundByPort,omitempty"`
	Outbound      int            `json:"outbound"`
	SynRecv       int            `json:"synRecv"`
	// SynRecvUncounted: half-open handshakes were not counted (the agent counts from kernel
	// events, which do not see them); SynRecv is then meaningless.
	SynRecvUncounted bool `json:"synRecvUncounted,omitempty"`
	// PassiveOpens is the namespace's counter of accepted connections (for a rate); absent when
	// it could not be read (a failed read is not a counter of 0).
	PassiveOpens *uint64 `json:"passiveOpens,omitempty"`
	// Unsupported, when set, says why the pod cannot be measured (its runtime keeps sockets
	// outside the node's kernel, as gVisor and Kata do); the counts are then meaningless.
	Unsupported string `json:"unsupported,omitempty"`
}
