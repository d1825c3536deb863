package main

import (
	"strings"
	"testing"
)

func TestDelegateFlagsSayWhatIsMissing(t *testing.T) {
	for _, c := range []struct {
		d    delegateFlags
		want string // "" = accepted
	}{
		{delegateFlags{}, ""},
		{delegateFlags{service: "monitoring/prometheus-adapter:443", ca: "/ca.crt"}, ""},
		{delegateFlags{service: "keda/keda-metrics", insecure: true}, ""},
		{delegateFlags{service: "monitoring/prometheus-adapter"}, "--custom-metrics-delegate-ca"},
		{delegateFlags{service: "monitoring/prometheus-adapter", ca: "/ca.crt", insecure: true}, "one of the two"},
		{delegateFlags{ca: "/ca.crt"}, "without --custom-metrics-delegate"},
		{delegateFlags{service: "prometheus-adapter", insecure: true}, "namespace/name"},
	} {
		err := c.d.check(customGroup)
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.d, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.d, err, c.want)
		}
	}
}
