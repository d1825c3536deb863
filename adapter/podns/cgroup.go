// Package podns maps the pods of a node to their network namespaces by reading /proc: every
// process's cgroup path names its pod (the kubelet puts containers under …/kubepods…/pod<UID>…),
// and its /proc/<pid>/ns/net names its namespace. Namespaces are deduplicated by inode, and
// processes in the host's namespace (hostNetwork pods, runtime helpers such as conmon) are set
// apart.
package podns

import (
	"regexp"
	"strings"
)

// cgroup path segments naming a pod, for the layouts kubelets use:
//
//	cgroupfs (v1 or v2):   …/kubepods[/<qos>]/pod<8-4-4-4-12>/<container>
//	systemd (v1 or v2):    …/kubepods[-<qos>]-pod<8_4_4_4_12>.slice/<runtime>-<container>.scope
//	static pods:           the same with a 32-hex config hash for the UID
var podSegment = regexp.MustCompile(`(?:^|[-/])pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$`)

// PodOf returns the pod UID (with dashes) and the container ID that a /proc/<pid>/cgroup file
// names, or ok=false for processes outside pods.
func PodOf(cgroupFile string) (uid, container string, ok bool) {
	for _, line := range strings.Split(cgroupFile, "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "kubepods") {
			continue
		}
		segments := strings.Split(parts[2], "/")
		for i, seg := range segments {
			m := podSegment.FindStringSubmatch(seg)
			if m == nil {
				continue
			}
			uid = strings.ReplaceAll(m[1], "_", "-")
			if i+1 < len(segments) {
				container = containerID(segments[i+1])
			}
			return uid, container, true
		}
	}
	return "", "", false
}

// containerID strips the runtime's decoration: cri-containerd-<id>.scope, crio-<id>.scope,
// docker-<id>.scope, or a bare <id>.
func containerID(seg string) string {
	seg = strings.TrimSuffix(seg, ".scope")
	if i := strings.LastIndex(seg, "-"); i >= 0 {
		return seg[i+1:]
	}
	return seg
}
