package podns

import "testing"

func TestPodOf(t *testing.T) {
	const uid = "5d2a6a43-7f0e-4c55-9a39-2f1c0b7f3b10"
	const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, file       string
		wantUID, wantCID string
	}{
		{"cgroup v2, systemd, burstable", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/cri-containerd-" + cid + ".scope\n", uid, cid},
		{"cgroup v2, systemd, besteffort", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/cri-containerd-" + cid + ".scope\n", uid, cid},
		{"cgroup v2, systemd, guaranteed", "0::/kubepods.slice/kubepods-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/crio-" + cid + ".scope\n", uid, cid},
		{"CRI-O conmon", "0::/kubepods.slice/kubepods-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/crio-conmon-" + cid + ".scope\n", uid, cid},
		{"cgroup v1, cgroupfs, burstable", "12:pids:/kubepods/burstable/pod" + uid + "/" + cid + "\n11:memory:/kubepods/burstable/pod" + uid + "/" + cid + "\n", uid, cid},
		{"cgroup v1, cgroupfs, guaranteed", "4:cpu,cpuacct:/kubepods/pod" + uid + "/" + cid + "\n", uid, cid},
		{"cgroup v2, cgroupfs", "0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n", uid, cid},
		{"kind (nested kubelet)", "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/cri-containerd-" + cid + ".scope\n", uid, cid},
		{"static pod (config hash)", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6e5b2a3f9c4d8e7f1a2b3c4d5e6f7a8b.slice/cri-containerd-" + cid + ".scope\n", "6e5b2a3f9c4d8e7f1a2b3c4d5e6f7a8b", cid},
		{"pod cgroup itself (sandbox-less process)", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice\n", uid, ""},
	} {
		gotUID, gotCID, ok := PodOf(tc.file)
		if !ok || gotUID != tc.wantUID || gotCID != tc.wantCID {
			t.Errorf("%s: PodOf = %q %q %v, want %q %q", tc.name, gotUID, gotCID, ok, tc.wantUID, tc.wantCID)
		}
	}
	for _, file := range []string{
		"0::/system.slice/containerd.service\n",
		"0::/user.slice/user-0.slice/session-1.scope\n",
		"0::/kubepods.slice/kubepods-burstable.slice\n", // the QoS level, no pod
		"0::/\n", "",
		"0::/kubepods.slice/kubepods-podnotahexuid.slice/x.scope\n",
	} {
		if uid, _, ok := PodOf(file); ok {
			t.Errorf("PodOf(%q) = %q: not a pod's process", file, uid)
		}
	}
}

func BenchmarkPodOf(b *testing.B) {
	file := "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d2a6a43_7f0e_4c55_9a39_2f1c0b7f3b10.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"
	for i := 0; i < b.N; i++ {
		if _, _, ok := PodOf(file); !ok {
			b.Fatal("not found")
		}
	}
}
