package sandbox

import "testing"

func TestPodCgroup(t *testing.T) {
	const uid = "5d2a6a43-7f0e-4c55-9a39-2f1c0b7f3b10"
	for _, tc := range []struct {
		layout        Layout
		qos           string
		wantPod, want string
	}{
		{SystemdV2, "BestEffort",
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice",
			"cri-containerd-abc.scope"},
		{SystemdV2, "Burstable",
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice",
			"cri-containerd-abc.scope"},
		{SystemdV2, "Guaranteed",
			"kubepods.slice/kubepods-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice", "cri-containerd-abc.scope"},
		{CgroupfsV1, "BestEffort", "kubepods/besteffort/pod" + uid, "abc"},
		{CgroupfsV1, "Guaranteed", "kubepods/pod" + uid, "abc"},
	} {
		pod, container := PodCgroup(tc.layout, tc.qos, uid, "abc")
		if pod != tc.wantPod || container != tc.want {
			t.Errorf("PodCgroup(%s, %s) = %q %q, want %q %q", tc.layout, tc.qos, pod, container, tc.wantPod, tc.want)
		}
	}
}

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("8080, 9090,")
	if err != nil || len(got) != 2 || got[0] != 8080 || got[1] != 9090 {
		t.Errorf("ParsePorts = %v %v", got, err)
	}
	for _, bad := range []string{"http", "0", "70000", "80;81"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}

func TestVethNameFitsInterfaceNames(t *testing.T) {
	if n := vethName("5d2a6a43-7f0e-4c55-9a39-2f1c0b7f3b10") + "p"; len(n) > 15 {
		t.Errorf("veth peer name %q is longer than 15 bytes", n)
	}
}
